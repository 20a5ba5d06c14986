import { inFlightRequests } from '../src/server/http-server.js';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startHarness, type Harness } from './helpers/harness.js';
import { assertErrorShape, parseJson } from './helpers/security-http.js';
import { rawExchange } from './helpers/raw-http.js';

/*
 * Threats found reviewing the public listener's move from Fastify to plain node:http
 * (THREATS.md, "HTTP parsing and headers", "Resource exhaustion", "Audit gaps"): a request
 * smuggled behind a refused one being acted on, oversized or unread bodies drained for as long as
 * a client keeps sending, and refused framing on real routes leaving no log line.
 */

let h: Harness;

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

before(async () => {
  h = await startHarness();
});

after(async () => {
  await h.close();
});

/** Writes `bytes` on one raw connection to the harness and reads what comes back. */
const exchange = (bytes: string, idleMs = 400) => rawExchange(h.url, bytes, idleMs);

/**
 * Opens a connection, writes `head`, then keeps sending body bytes as fast as the server takes
 * them for `ms`. Resolves how many bytes the server accepted and whether it closed the connection.
 */
function flood(head: string, ms: number, chunked = false): Promise<{ status: number; sent: number; closedByServer: boolean }> {
  const url = new URL(h.url);
  const block = Buffer.alloc(64 * 1024, 0x78);
  const piece = chunked ? Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from('\r\n')]) : block;
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    let text = '';
    let sent = 0;
    let closed = false;
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
    });
    socket.on('connect', async () => {
      socket.write(head);
      const started = Date.now();
      while (!closed && Date.now() - started < ms) {
        const ok = socket.write(piece);
        sent += piece.length;
        if (!ok) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 50);
            socket.once('drain', () => {
              clearTimeout(t);
              resolve();
            });
          });
        }
      }
      const closedByServer = closed;
      socket.destroy();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), sent, closedByServer });
    });
  });
}

function chatRequest(requestId: string): string {
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${requestId}\r\nAuthorization: Bearer ${h.key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(CHAT)}\r\n\r\n${CHAT}`;
}

async function settle(): Promise<void> {
  // a wrongly forwarded request needs a moment to reach the provider and the record writer
  await new Promise((resolve) => setTimeout(resolve, 150));
  await h.gateway.writer.flush();
}

describe('a request pipelined behind one refused for its framing', () => {
  const refused: Array<[string, string]> = [
    ['Transfer-Encoding: gzip, chunked', 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['Content-Encoding: gzip', 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n'],
    ['no Host', 'POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 0\r\n\r\n'],
  ];
  for (const [label, first] of refused) {
    it(`is never authenticated, forwarded, billed or logged (${label})`, async () => {
      const requestId = `smuggled-${label.replace(/[^a-z]/gi, '').toLowerCase()}-0001`;
      const providerCalls = h.mock.received.length;
      const res = await exchange(first + chatRequest(requestId));
      assert.equal(res.statuses.length, 1, `one answer only: ${res.statuses.join(',')}`);
      assert.ok(res.statuses[0] === 400 || res.statuses[0] === 415, `the refusal: ${res.statuses[0]}`);
      assert.equal(res.closedByServer, true, 'the connection is closed after the refusal');
      await settle();
      assert.equal(h.mock.received.length, providerCalls, 'the smuggled request reached the provider');
      assert.equal(h.logs.lines.filter((line) => line.includes(requestId)).length, 0, 'the smuggled request was logged as handled');
      const usage = (await h.gateway.store.records.listUsage({ limit: 10_000 })).filter((row) => row.requestId === requestId);
      assert.equal(usage.length, 0, 'the smuggled request was billed');
      // nothing is left counted as in flight, so a shutdown's drain does not wait on it
      assert.equal(inFlightRequests(h.gateway.publicApp.server), 0, 'requests left counted as in flight');
    });
  }

  it('still leaves an ordinary pipelined request on a clean connection answered', async () => {
    const res = await exchange(chatRequest('pipelined-clean-0001') + chatRequest('pipelined-clean-0002'), 800);
    assert.deepEqual(res.statuses, [200, 200]);
  });
});

describe('a refusal of ambiguous framing on a real route', () => {
  it('is logged like any other refusal there (it was, before the move off Fastify); an unknown path is not', async () => {
    const onRoute = 'framing-on-route-0001';
    const offRoute = 'framing-off-route-0001';
    const res = await exchange(`POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${onRoute}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`);
    assert.deepEqual(res.statuses, [400]);
    const body = res.text.slice(res.text.indexOf('\r\n\r\n') + 4);
    assert.equal(assertErrorShape(parseJson(body), 'anthropic', 'framing on /v1/messages'), 'request_header_invalid');
    await exchange(`POST /v1/nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${offRoute}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`);
    await settle();
    const lines = h.logs.lines.filter((line) => line.includes(onRoute)).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 1, 'one log line for the refused request on /v1/messages');
    assert.equal(lines[0]?.['status'], 400);
    assert.equal(lines[0]?.['code'], 'request_header_invalid');
    assert.equal(h.logs.lines.filter((line) => line.includes(offRoute)).length, 0, 'a probe of an unknown path is not logged');
  });
});

describe('bodies the gateway will not read to the end', () => {
  it('an oversized body is answered 413 and the connection closed, not drained for as long as the client sends', async () => {
    const declared = await flood(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n`, 1500,
    );
    assert.equal(declared.status, 413);
    assert.equal(declared.closedByServer, true, `the gateway kept reading (${declared.sent} bytes taken)`);
    const streamed = await flood(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`, 1500, true,
    );
    assert.equal(streamed.status, 413);
    assert.equal(streamed.closedByServer, true, `the gateway kept reading (${streamed.sent} bytes taken)`);
  });

  it('a 413 says connection: close, and the record is still written', async () => {
    const requestId = 'too-large-record-0001';
    const big = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(1_200_000) }] });
    const res = await exchange(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${requestId}\r\nAuthorization: Bearer ${h.key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(big)}\r\n\r\n${big}`,
    );
    assert.deepEqual(res.statuses, [413]);
    assert.match(res.text, /\r\nconnection: close\r\n/i);
    assert.match(res.text, new RegExp(`x-request-id: ${requestId}`, 'i'));
    await settle();
    const usage = (await h.gateway.store.records.listUsage({ limit: 10_000 })).filter((row) => row.requestId === requestId);
    assert.deepEqual(usage.map((row) => [row.status, row.errorCode]), [[413, 'request_body_too_large']]);
  });

  it('a small refused body (415, bad JSON) still leaves the connection usable for the next request', async () => {
    const text = 'hello';
    const res = await exchange(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}` +
        `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{` +
        chatRequest('after-small-refusals-01'),
      800,
    );
    assert.deepEqual(res.statuses, [415, 400, 200]);
  });

  for (const path of ['/healthz', '/readyz']) {
    it(`a body sent to GET ${path} (no credentials needed) is not read for as long as the client sends`, async () => {
      const declared = await flood(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n`, 1500);
      assert.equal(declared.status, 200);
      assert.equal(declared.closedByServer, true, `the gateway kept reading (${declared.sent} bytes taken)`);
      const streamed = await flood(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n`, 1500, true);
      assert.equal(streamed.status, 200);
      assert.equal(streamed.closedByServer, true, `the gateway kept reading (${streamed.sent} bytes taken)`);
    });
  }

  it(`a small body on GET /healthz leaves the connection usable`, async () => {
    const res = await exchange(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabcGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    assert.deepEqual(res.statuses, [200, 200]);
  });
});
