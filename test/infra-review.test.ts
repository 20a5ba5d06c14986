import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createUpstreamClient, type UpstreamClient } from '../src/upstream/client.js';
import { RequestAbort } from '../src/server/request-abort.js';
import { GatewayError } from '../src/errors/index.js';
import type { ProviderConfig } from '../src/config/types.js';
import { loadCrls } from '../src/auth/crl.js';

/*
 * Infrastructure review (shared failure limits, buffered upstream reads, CRLs): faults a mock
 * provider cannot express, driven from a raw TCP server so every byte on the wire is ours.
 */

interface RawProvider {
  port: number;
  /** Every connection accepted, with what arrived and whether it has closed. */
  conns: { socket: net.Socket; data: string; closed: boolean }[];
  close(): Promise<void>;
}

/** A TCP server that answers each request with `respond(socket, requestText, n)`. */
async function rawProvider(respond: (socket: net.Socket, n: number) => void): Promise<RawProvider> {
  const conns: RawProvider['conns'] = [];
  let n = 0;
  const server = net.createServer((socket) => {
    const c = { socket, data: '', closed: false };
    conns.push(c);
    socket.on('data', (d) => {
      c.data += d.toString('latin1');
      // one request per head seen (requests here carry small bodies)
      while (c.data.includes('\r\n\r\n')) {
        const end = c.data.indexOf('\r\n\r\n');
        const head = c.data.slice(0, end);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (c.data.length < end + 4 + len) break;
        c.data = c.data.slice(end + 4 + len);
        respond(socket, n++);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => { c.closed = true; });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    async close() {
      for (const c of conns) c.socket.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

function clientFor(port: number, timeoutMs = 2000): UpstreamClient {
  const provider = { id: 'fake', type: 'openai', baseUrl: new URL(`http://127.0.0.1:${port}/v1`), apiKey: 'file:/nonexistent', timeoutMs, connectTimeoutMs: 1000 } as ProviderConfig;
  return createUpstreamClient(provider, { connections: 2 });
}

const REQ = { method: 'POST' as const, path: '/chat/completions', headers: { 'content-type': 'application/json' }, body: '{}' };

async function waitFor(test: () => boolean, what: string, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!test()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('buffered upstream reads (sendBuffered) under faults', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  before(() => { process.on('unhandledRejection', onUnhandled); });
  after(() => {
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
  });

  it('cancels the provider request when the client leaves before the headers, and reuses the pool after', async () => {
    const p = await rawProvider((socket, n) => {
      if (n === 0) return; // never answers the first
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}');
    });
    const client = clientFor(p.port);
    try {
      const abort = new RequestAbort();
      const sending = client.sendBuffered(REQ, abort.signal, 1024, 64);
      await waitFor(() => p.conns.length === 1, 'a connection');
      await sleep(50);
      abort.abort();
      await assert.rejects(sending, (err: unknown) => err instanceof GatewayError);
      await waitFor(() => p.conns[0]!.closed, 'the provider connection closed');
      assert.equal(abort.listenerCount('abort'), 0);
      const ok = await client.sendBuffered(REQ, new RequestAbort().signal, 1024, 64);
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.body.toString(), '{}');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('cancels the provider request when the client leaves during the body', async () => {
    const p = await rawProvider((socket, n) => {
      if (n === 0) { socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":'); return; }
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}');
    });
    const client = clientFor(p.port);
    try {
      const abort = new RequestAbort();
      const sending = client.sendBuffered(REQ, abort.signal, 1024, 64);
      await sleep(100);
      abort.abort();
      await assert.rejects(sending, (err: unknown) => err instanceof GatewayError);
      await waitFor(() => p.conns[0]!.closed, 'the provider connection closed');
      assert.equal(abort.listenerCount('abort'), 0);
      const ok = await client.sendBuffered(REQ, undefined, 1024, 64);
      assert.equal(ok.body.toString(), '{}');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('answers at once when the client leaves while its request waits for a connection (found in review: it waited for a free one)', async () => {
    const p = await rawProvider(() => { /* never answers */ });
    const client = clientFor(p.port, 1500);
    try {
      // a slow provider holds both connections
      const busy = [client.sendBuffered(REQ, undefined, 1024, 64), client.sendBuffered(REQ, undefined, 1024, 64)];
      busy.forEach((b) => b.catch(() => {}));
      await waitFor(() => p.conns.length === 2, 'two connections');
      const abort = new RequestAbort();
      const queued = client.sendBuffered(REQ, abort.signal, 1024, 64);
      await sleep(20);
      const t0 = Date.now();
      abort.abort();
      await assert.rejects(queued, (e: unknown) => e instanceof GatewayError && e.code === 'upstream_unreachable');
      assert.ok(Date.now() - t0 < 300, `settled ${Date.now() - t0} ms after the abort`);
      assert.equal(abort.listenerCount('abort'), 0);
      await Promise.allSettled(busy);
      // the aborted request was never written: only the two busy ones reached the provider
      await sleep(50);
      const heads = p.conns.map((c) => c.data).join('');
      assert.equal(heads, '', 'no partial request left on a connection');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('reads no body of a 204 and keeps serving after a provider that sends one anyway', async () => {
    const p = await rawProvider((socket, n) => {
      if (n === 0) socket.write('HTTP/1.1 204 No Content\r\n\r\n{"leak":"x"}');
      else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
    });
    const client = clientFor(p.port);
    try {
      const first = await client.sendBuffered(REQ, undefined, 1024, 64);
      assert.equal(first.statusCode, 204);
      assert.equal(first.body.length, 0);
      const second = await client.sendBuffered(REQ, undefined, 1024, 64);
      assert.equal(second.statusCode, 200);
      assert.equal(second.body.toString(), '{}');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('refuses a 2xx over the limit, chunked or with a length, and an error body past the hint limit is empty', async () => {
    const big = 'x'.repeat(5000);
    const p = await rawProvider((socket, n) => {
      if (n === 0) socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n${big}`);
      else if (n === 1) socket.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`);
      else if (n === 2) socket.write(`HTTP/1.1 500 Oops\r\ncontent-length: ${big.length}\r\n\r\n${big}`);
      else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
    });
    const client = clientFor(p.port);
    try {
      await assert.rejects(client.sendBuffered(REQ, undefined, 1024, 64), (e: unknown) => e instanceof GatewayError && e.code === 'upstream_invalid_response');
      await assert.rejects(client.sendBuffered(REQ, undefined, 1024, 64), (e: unknown) => e instanceof GatewayError && e.code === 'upstream_invalid_response');
      const err = await client.sendBuffered(REQ, undefined, 1024, 64);
      assert.equal(err.statusCode, 500);
      assert.equal(err.body.length, 0);
      const ok = await client.sendBuffered(REQ, undefined, 1024, 64);
      assert.equal(ok.body.toString(), '{}');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('a short body (connection closed before content-length) is an error, not a truncated answer', async () => {
    const p = await rawProvider((socket) => {
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"a":1}');
    });
    const client = clientFor(p.port);
    try {
      await assert.rejects(client.sendBuffered(REQ, undefined, 1024, 64), (e: unknown) => e instanceof GatewayError && e.code === 'upstream_unreachable');
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('times out on a provider that stalls mid-body (bodyTimeout still applies)', async () => {
    const p = await rawProvider((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"a":');
    });
    const client = clientFor(p.port, 300);
    try {
      const t0 = Date.now();
      await assert.rejects(client.sendBuffered(REQ, undefined, 1024, 64), (e: unknown) => e instanceof GatewayError && e.code === 'upstream_timeout');
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      await client.close().catch(() => {});
      await p.close();
    }
  });

  it('a closed client rejects with a gateway error and keeps no abort listener', async () => {
    const p = await rawProvider(() => {});
    const client = clientFor(p.port);
    await client.close();
    const abort = new RequestAbort();
    await assert.rejects(client.sendBuffered(REQ, abort.signal, 1024, 64), (e: unknown) => e instanceof GatewayError && e.code === 'upstream_unreachable');
    assert.equal(abort.listenerCount('abort'), 0);
    await p.close();
  });
});

describe('CRL files (listen.public_tls.crl) that are not what they seem', () => {
  it('reads a large file of BEGIN lines with no END in linear time (found in review: quadratic, start-up held for minutes)', () => {
    const text = '-----BEGIN X509 CRL-----\nAAAA\n'.repeat(40_000); // 1.2 MB
    const t0 = Date.now();
    const loaded = loadCrls(['/fake/clients.crl'], '', 'listen.public_tls', () => text);
    const ms = Date.now() - t0;
    assert.deepEqual(loaded.pems, []);
    assert.deepEqual(loaded.problems, ['listen.public_tls.crl: /fake/clients.crl holds no PEM CRL (-----BEGIN X509 CRL-----)']);
    assert.ok(ms < 500, `took ${ms} ms`);
  });

  it('skips garbage between blocks and refuses a block that is not a CRL, naming only the file', () => {
    const text = 'garbage -----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN X509 CRL-----\nnot base64 at all!!\n-----END X509 CRL-----\ntrailing';
    const loaded = loadCrls(['/fake/clients.crl'], '', 'listen.public_tls', () => text);
    assert.deepEqual(loaded.pems, []);
    assert.deepEqual(loaded.problems, ['listen.public_tls.crl: /fake/clients.crl is not a valid CRL']);
  });
});
