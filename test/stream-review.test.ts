import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAKE_PROVIDER_KEY, startHarness, type Harness } from './helpers/harness.js';
import { newRequestId, parseSse, usageRow } from './helpers/upstream-ledger.js';
import { RequestAbort } from '../src/server/request-abort.js';

/**
 * Streamed answers relayed through undici's dispatch with the body feed (src/upstream/client.ts
 * `sendStreamed`, src/server/proxy.ts `stream`), against a raw-socket fake provider that can
 * misbehave in ways the mock provider cannot: clients that leave at every point, clients that
 * stop reading, providers that reset, stall, send garbage, answer 204/304, or keep sending after
 * the terminal event. After each fault the next request through the same gateway must work.
 *
 * Two providers point at the same fake: `openai` with a 1 s timeout, and `patient` (model
 * `gpt-4o-mini-patient`) with 4 s. The relay's write-stall limit (`server.stream_stall_timeout`)
 * is 4 s here, so a test may hold a stream unread for up to 3 s.
 */

// every RequestAbort the gateway makes, to check no 'abort' listener is left behind
const aborts: RequestAbort[] = [];
const originalOnce = RequestAbort.prototype.once;
RequestAbort.prototype.once = function (this: RequestAbort, event: string | symbol, listener: (...args: unknown[]) => void) {
  if (event === 'abort' && !aborts.includes(this)) aborts.push(this);
  return originalOnce.call(this, event, listener);
};

const problems: unknown[] = [];
const onProblem = (err: unknown) => problems.push(err);
const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);

function chatEvent(n: number): string {
  return `data: {"id":"chatcmpl-review","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok${n} "}}]}\n\n`;
}
const DONE = 'data: [DONE]\n\n';
function chunk(payload: string): string {
  return `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`;
}
const SSE_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n';
const LAST_CHUNK = '0\r\n\r\n';

interface ProviderConnection {
  mode: string;
  closed: boolean;
  written: number;
}

/** A provider on a raw socket: the mode is picked by `mode:NAME` in the prompt. */
async function startScriptedProvider() {
  const connections: ProviderConnection[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createNetServer((socket) => {
    sockets.add(socket);
    let buffer = Buffer.alloc(0);
    let busy = false;
    const conn: ProviderConnection = { mode: '', closed: false, written: 0 };
    socket.on('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
    socket.on('error', () => {});
    const write = (text: string) => {
      if (socket.destroyed) return true;
      conn.written += Buffer.byteLength(text);
      return socket.write(text);
    };
    const next = () => {
      if (busy) return;
      const headEnd = buffer.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = buffer.subarray(0, headEnd).toString('latin1');
      const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? '0');
      if (buffer.length < headEnd + 4 + length) return;
      const body = buffer.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8');
      buffer = buffer.subarray(headEnd + 4 + length);
      const mode = /mode:([a-z0-9-]+)/.exec(body)?.[1] ?? 'ok';
      conn.mode = mode;
      connections.push({ ...conn, mode });
      const record = connections[connections.length - 1] as ProviderConnection;
      socket.once('close', () => {
        record.closed = true;
      });
      const w = (text: string) => {
        record.written += Buffer.byteLength(text);
        return write(text);
      };
      busy = true;
      const done = () => {
        busy = false;
        next();
      };
      serve(mode, socket, w, done);
    };
    socket.on('data', (data: Buffer) => {
      buffer = Buffer.concat([buffer, data]);
      next();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connections,
    last(mode: string): ProviderConnection {
      const found = connections.filter((c) => c.mode === mode).pop();
      assert.ok(found, `the provider got no ${mode} request`);
      return found;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function serve(mode: string, socket: Socket, w: (text: string) => boolean, done: () => void): void {
  const endless = (first: string, each: (n: number) => string, everyMs: number) => {
    w(first);
    let n = 0;
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer);
      w(chunk(each(n++)));
    }, everyMs);
    socket.once('close', () => clearInterval(timer));
  };
  switch (mode) {
    case 'ok': {
      let out = SSE_HEAD;
      for (let i = 0; i < 5; i++) out += chunk(chatEvent(i));
      w(out + chunk(DONE) + LAST_CHUNK);
      return done();
    }
    case 'burst': {
      // headers, 400 chunks and the end in one write: all of it is read before the relay consumes
      let out = SSE_HEAD;
      for (let i = 0; i < 400; i++) out += chunk(chatEvent(i));
      w(out + chunk(DONE) + LAST_CHUNK);
      return done();
    }
    case 'slowheaders':
      return; // never answers; the client leaves first
    case 'drip':
      return endless(SSE_HEAD, chatEvent, 20);
    case 'flood': {
      // 40 MB of events as fast as the gateway takes them, then the end
      w(SSE_HEAD);
      let i = 0;
      const total = 40_000;
      const big = 'x'.repeat(900);
      const pump = () => {
        while (i < total) {
          const ok = w(chunk(`data: {"choices":[{"index":0,"delta":{"content":"${i} ${big}"}}]}\n\n`));
          i++;
          if (!ok) return void socket.once('drain', pump);
        }
        w(chunk(DONE) + LAST_CHUNK);
        done();
      };
      pump();
      return;
    }
    case 'reset': {
      w(SSE_HEAD + chunk(chatEvent(0)) + chunk(chatEvent(1)));
      setTimeout(() => socket.resetAndDestroy(), 30);
      return;
    }
    case 'truncated':
      w(SSE_HEAD + chunk(chatEvent(0)) + chunk(chatEvent(1)) + LAST_CHUNK);
      return done();
    case 'cutoff':
      // the socket closes in the middle of a chunk
      w(SSE_HEAD + chunk(chatEvent(0)) + '40\r\ndata: {"cho');
      setTimeout(() => socket.end(), 30);
      return;
    case 'malformed':
      return endless(SSE_HEAD + chunk(chatEvent(0)) + chunk('data: not json at all\n\n'), chatEvent, 5);
    case 'stall':
      w(SSE_HEAD + chunk(chatEvent(0)));
      return;
    case 'nosse':
      return endless('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n', () => ' '.repeat(16_000), 1);
    case 'err-small':
      w('HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 46\r\n\r\n{"error":{"message":"mock fault","type":"x"}}\n');
      return done();
    case 'err-large': {
      const body = `{"error":{"message":"${'y'.repeat(200_000)}"}}`;
      w(`HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      return done();
    }
    case 'err-endless':
      return endless('HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n', () => ' '.repeat(16_000), 1);
    case 'no-content':
      w('HTTP/1.1 204 No Content\r\n\r\n');
      return done();
    case 'no-content-sse':
      w('HTTP/1.1 204 No Content\r\ncontent-type: text/event-stream\r\n\r\n');
      return done();
    case 'not-modified':
      w('HTTP/1.1 304 Not Modified\r\n\r\n');
      return done();
    case 'after-done-endless':
      // the terminal event, then events forever (never the end of the answer)
      return endless(SSE_HEAD + chunk(chatEvent(0)) + chunk(DONE), chatEvent, 1);
    case 'after-done-stall':
      w(SSE_HEAD + chunk(chatEvent(0)) + chunk(DONE));
      return;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

interface ClientResult {
  status: number;
  text: string;
  requestId: string;
}

const PATIENT = 'gpt-4o-mini-patient';

function body(mode: string, model = 'gpt-4o-mini'): string {
  return JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: `review mode:${mode}` }] });
}

/** A streamed chat request through the gateway, read whole. */
async function streamChat(h: Harness, mode: string, key = h.key): Promise<ClientResult> {
  const requestId = newRequestId('sr');
  const res = await fetch(`${h.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId },
    body: body(mode),
  });
  return { status: res.status, text: await res.text(), requestId };
}

/** A streamed chat request on its own socket, with the response handed over unread. */
function openStream(h: Harness, mode: string, model?: string): Promise<{ res: IncomingMessage; requestId: string; destroy(): void }> {
  const requestId = newRequestId('sr');
  const url = new URL(h.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: url.hostname, port: url.port, path: '/v1/chat/completions', method: 'POST', agent: false,
      headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json', 'x-request-id': requestId },
    }, (res) => resolve({ res, requestId, destroy: () => req.destroy() }));
    req.on('error', () => {});
    req.once('error', reject);
    req.end(body(mode, model));
  });
}

/**
 * A streamed chat request on a raw socket (nothing between the test and the kernel buffers),
 * sent with `connection: close`; the socket is paused at the first bytes of the answer.
 */
function rawStream(h: Harness, mode: string, key = h.key): Promise<{ socket: Socket; requestId: string; first: Buffer }> {
  const requestId = newRequestId('sr');
  const url = new URL(h.url);
  const payload = body(mode);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    socket.once('error', reject);
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${key}\r\n`
      + `content-type: application/json\r\nx-request-id: ${requestId}\r\nconnection: close\r\n`
      + `content-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      resolve({ socket, requestId, first });
    });
  });
}

/** The numbers of the flood's events in a raw (chunked) answer: each chunk holds whole events. */
function floodTokens(raw: string): number[] {
  return [...raw.matchAll(/"content":"(\d+) /g)].map((m) => Number(m[1]));
}

function tokens(text: string): number[] {
  return parseSse(text)
    .filter((e) => e.data !== '[DONE]' && e.event === undefined)
    .map((e) => Number(/tok(\d+) /.exec(e.data)?.[1] ?? /"content":"(\d+) /.exec(e.data)?.[1] ?? NaN));
}

async function until(check: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return check();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('streamed answers through the dispatch relay', () => {
  let h: Harness;
  let provider: Awaited<ReturnType<typeof startScriptedProvider>>;
  let keyDir: string;

  before(async () => {
    process.on('unhandledRejection', onProblem);
    process.on('uncaughtException', onProblem);
    process.on('warning', onWarning);
    provider = await startScriptedProvider();
    keyDir = mkdtempSync(join(tmpdir(), 'keywarden-stream-review-'));
    const keyFile = join(keyDir, 'openai-key');
    writeFileSync(keyFile, FAKE_PROVIDER_KEY, { mode: 0o600 });
    h = await startHarness({
      config: {
        providers: {
          openai: { type: 'openai', base_url: `http://127.0.0.1:${provider.port}/v1`, api_key: `file:${keyFile}`, timeout: '1s' },
          patient: { type: 'openai', base_url: `http://127.0.0.1:${provider.port}/v1`, api_key: `file:${keyFile}`, timeout: '4s' },
        },
        models: { 'gpt-4o-mini': { provider: 'openai' }, [PATIENT]: { provider: 'patient', model: 'gpt-4o-mini' } },
        tenants: { defaults: { policy: { models: ['gpt-4o-mini', PATIENT], params: ['stream'], tools: false, files: false } } },
        server: { stream_stall_timeout: '4s' },
      },
    });
  });

  after(async () => {
    await h.close();
    await provider.close();
    rmSync(keyDir, { recursive: true, force: true });
    process.removeListener('unhandledRejection', onProblem);
    process.removeListener('uncaughtException', onProblem);
    process.removeListener('warning', onWarning);
    RequestAbort.prototype.once = originalOnce;
  });

  /** The next plain stream through the same gateway is whole (the pool is not poisoned). */
  async function assertStillWorks(): Promise<void> {
    const res = await streamChat(h, 'ok');
    assert.equal(res.status, 200);
    assert.deepEqual(tokens(res.text), [0, 1, 2, 3, 4]);
    assert.ok(res.text.endsWith(DONE), 'the stream ends with [DONE]');
    // an answer still being read after its terminal event keeps its listener until it ends or times out (1 s here)
    assert.ok(await until(() => aborts.every((a) => a.listenerCount('abort') === 0), 2500), 'no abort listener is left on a finished request');
    assert.deepEqual(problems, [], 'no unhandled rejection or exception');
    // one drain wait per pause, not one per queued chunk the full buffer refused
    assert.deepEqual(warnings.filter((w) => w.includes('MaxListeners')), [], 'no listener pile-up on the response');
  }

  it('relays a plain stream whole', async () => {
    await assertStillWorks();
  });

  it('relays 400 events that arrive with the end before the relay consumes, in order, once each', async () => {
    const res = await streamChat(h, 'burst');
    assert.equal(res.status, 200);
    assert.deepEqual(tokens(res.text), Array.from({ length: 400 }, (_, i) => i));
    assert.ok(res.text.endsWith(DONE));
    assert.equal((await usageRow(h, res.requestId)).status, 200);
    await assertStillWorks();
  });

  it('hangs up on the provider and records 499 when the client leaves before the headers', async () => {
    const url = new URL(h.url);
    const requestId = newRequestId('sr');
    const req = httpRequest({
      host: url.hostname, port: url.port, path: '/v1/chat/completions', method: 'POST', agent: false,
      headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json', 'x-request-id': requestId },
    });
    req.on('error', () => {});
    req.end(body('slowheaders'));
    assert.ok(await until(() => provider.connections.some((c) => c.mode === 'slowheaders' && !c.closed)));
    req.destroy();
    assert.ok(await until(() => provider.last('slowheaders').closed), 'the provider connection was closed');
    const row = await usageRow(h, requestId);
    assert.equal(row.status, 499);
    assert.equal(row.outcome, 'client_aborted');
    await assertStillWorks();
  });

  it('hangs up on the provider and records 499 when the client leaves mid-stream', async () => {
    const { res, requestId, destroy } = await openStream(h, 'drip');
    assert.equal(res.statusCode, 200);
    let seen = '';
    await new Promise<void>((resolve) => {
      res.on('data', (d: Buffer) => {
        seen += d.toString();
        if (tokens(seen).length >= 3) resolve();
      });
    });
    destroy();
    assert.ok(await until(() => provider.last('drip').closed), 'the provider connection was closed');
    const row = await usageRow(h, requestId);
    assert.equal(row.status, 499);
    await assertStillWorks();
  });

  it('stops reading the provider while the client does not read, and delivers every event once it does', async () => {
    // 3 s without reading: within the 4 s write-stall limit
    const { res, requestId } = await openStream(h, 'flood', PATIENT);
    assert.equal(res.statusCode, 200);
    res.pause();
    await sleep(1500);
    const atPause = provider.last('flood').written;
    await sleep(1500);
    const later = provider.last('flood').written;
    assert.equal(later, atPause, `the gateway kept reading a provider its client does not read (${atPause} → ${later} bytes)`);
    assert.ok(later < 30_000_000, `the provider was not paused (${later} bytes sent)`);
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      text += d;
    });
    res.resume();
    await new Promise((resolve) => res.once('end', resolve));
    const got = tokens(text);
    assert.equal(got.length, 40_000);
    assert.ok(got.every((n, i) => n === i), 'events in order, none lost or repeated');
    assert.equal((await usageRow(h, requestId)).status, 200);
    await assertStillWorks();
  });

  it('hangs up on the provider and records 499 when a paused client leaves', async () => {
    const { res, requestId, destroy } = await openStream(h, 'flood', PATIENT);
    res.pause();
    await sleep(500);
    destroy();
    assert.ok(await until(() => provider.last('flood').closed), 'the provider connection was closed');
    assert.equal((await usageRow(h, requestId)).status, 499);
    await assertStillWorks();
  });

  it('ends a stream whose client stops reading for longer than server.stream_stall_timeout, hangs up on the provider and frees the slot', async () => {
    const { key } = await h.tenantKey('stalling', { limits: { concurrent_requests: 1 } });
    const { socket, requestId, first } = await rawStream(h, 'flood', key);
    const stalledAt = Date.now();
    let closedAt = 0;
    socket.once('close', () => {
      closedAt = Date.now();
    });
    assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
    try {
      // while the stream is open it holds the tenant's one slot
      const second = await streamChat(h, 'ok', key);
      assert.equal(second.status, 429);
      assert.equal(JSON.parse(second.text).error.code, 'tenant_concurrent_requests_exceeded');

      // the stall limit is 4 s: the gateway gives up on the client soon after, not never (and not
      // after the provider's 1 s timeout, which a slow but steady reader can exceed between drains)
      assert.ok(await until(() => provider.last('flood').closed, 9000), 'the provider connection of a stalled stream was closed');
      const elapsed = Date.now() - stalledAt;
      assert.ok(elapsed >= 3500 && elapsed < 8000, `the stalled stream was ended after ${elapsed} ms`);
      const row = await usageRow(h, requestId);
      assert.equal(row.outcome, 'stream_broken');
      assert.equal(row.errorCode, 'client_read_timeout');
      assert.equal(row.status, 200);

      // the client's connection is closed: what the kernel still held arrives, then the end, without [DONE]
      const chunks: Buffer[] = [first];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('error', () => {});
      socket.resume();
      assert.ok(await until(() => closedAt > 0, 3000), 'the gateway closed the stalled client\'s connection');
      const raw = Buffer.concat(chunks).toString('utf8');
      assert.ok(!raw.includes('[DONE]'), 'a stream cut off is not presented as complete');
      assert.ok(floodTokens(raw).length < 40_000, 'the stream was cut off before its end');

      // the slot came back through the normal settle path: the tenant can stream again
      const again = await streamChat(h, 'ok', key);
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(tokens(again.text), [0, 1, 2, 3, 4]);
    } finally {
      socket.destroy();
    }
    await assertStillWorks();
  });

  it('keeps relaying to a client that reads slowly but steadily, for longer than the provider timeout', async () => {
    const { socket, requestId, first } = await rawStream(h, 'flood');
    const startedAt = Date.now();
    const chunks: Buffer[] = [first];
    socket.on('data', (d: Buffer) => chunks.push(d));
    let ended = false;
    socket.once('end', () => {
      ended = true;
    });
    // a chunk every 200 ms: whatever one turn of the event loop reads, then paused again. The
    // 40 MB answer is far more than the socket buffers hold, so the relay waits for drains
    // throughout, each one well within the 4 s stall limit
    const reader = setInterval(() => {
      socket.resume();
      setImmediate(() => {
        if (!ended) socket.pause();
      });
    }, 200);
    try {
      assert.ok(await until(() => ended, 60_000), 'the slow reader got the whole stream');
    } finally {
      clearInterval(reader);
      socket.destroy();
    }
    const took = Date.now() - startedAt;
    assert.ok(took > 1000, `the stream outlasted the provider's timeout (${took} ms), so it was paced by the reader`);
    const raw = Buffer.concat(chunks).toString('utf8');
    const got = floodTokens(raw);
    assert.equal(got.length, 40_000);
    assert.ok(got.every((n, i) => n === i), 'events in order, none lost or repeated');
    assert.ok(raw.includes('data: [DONE]'), 'the stream is complete');
    const row = await usageRow(h, requestId);
    assert.equal(row.status, 200);
    assert.equal(row.outcome, 'success');
    assert.equal(row.errorCode, null);
    await assertStillWorks();
  });

  for (const [mode, code] of [
    ['reset', 'upstream_unreachable'],
    ['truncated', 'upstream_invalid_response'],
    ['cutoff', 'upstream_unreachable'],
    ['malformed', 'upstream_invalid_response'],
    ['stall', 'upstream_timeout'],
  ] as const) {
    it(`ends a stream broken by the provider (${mode}) with an error event ${code}`, async () => {
      const res = await streamChat(h, mode);
      assert.equal(res.status, 200);
      const events = parseSse(res.text);
      const last = events[events.length - 1];
      assert.equal(last?.event, 'error');
      assert.equal(JSON.parse(last.data).error.code, code);
      assert.ok(!res.text.includes('not json'), 'the malformed event is never relayed');
      const row = await usageRow(h, res.requestId);
      assert.equal(row.outcome, 'stream_broken');
      assert.equal(row.errorCode, code);
      assert.ok(await until(() => provider.last(mode).closed || mode === 'truncated'), 'the provider connection was closed');
      await assertStillWorks();
    });
  }

  for (const [mode, status, code] of [
    ['nosse', 502, 'upstream_invalid_response'],
    ['err-small', 502, 'upstream_error'],
    ['err-large', 429, null],
    ['err-endless', 503, null],
    ['no-content', 502, 'upstream_invalid_response'],
    ['no-content-sse', 200, null],
    ['not-modified', 502, null],
  ] as const) {
    it(`answers a stream request the provider refused (${mode}) with a coded error and keeps working`, async () => {
      const res = await streamChat(h, mode);
      if (status === 200) {
        // a 204 claiming to be a stream: an empty stream, ended with an error event
        assert.equal(res.status, 200);
        const last = parseSse(res.text).pop();
        assert.equal(last?.event, 'error');
      } else {
        assert.ok(res.status >= 400, `status ${res.status}`);
        const parsed = JSON.parse(res.text);
        assert.equal(typeof parsed.error.code, 'string');
        if (code) assert.equal(parsed.error.code, code);
        assert.ok(!res.text.includes('mock fault') && !res.text.includes('yyyy'), 'no provider text');
      }
      if (mode === 'nosse' || mode === 'err-endless') {
        assert.ok(await until(() => provider.last(mode).closed), 'the gateway stopped reading the provider');
      }
      await assertStillWorks();
    });
  }

  it('ends the client stream at the terminal event even if the provider keeps sending after it', async () => {
    const started = Date.now();
    const { res, requestId } = await openStream(h, 'after-done-endless');
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      text += d;
    });
    const ended = await Promise.race([new Promise((r) => res.once('end', () => r(true))), sleep(3000).then(() => false)]);
    res.destroy();
    assert.ok(ended, `the client stream did not end at [DONE] (${provider.last('after-done-endless').written} bytes read from the provider meanwhile)`);
    assert.ok(Date.now() - started < 3000);
    assert.deepEqual(tokens(text), [0]);
    assert.ok(text.endsWith(DONE));
    assert.ok(await until(() => provider.last('after-done-endless').closed), 'the gateway stopped reading the provider');
    const row = await usageRow(h, requestId);
    assert.equal(row.status, 200);
    assert.equal(row.errorCode, null);
    await assertStillWorks();
  });

  it('ends the client stream at the terminal event when the provider then stalls, without an error after it', async () => {
    const res = await streamChat(h, 'after-done-stall');
    assert.equal(res.status, 200);
    assert.ok(res.text.endsWith(DONE), 'nothing follows [DONE]');
    assert.equal(parseSse(res.text).filter((e) => e.event === 'error').length, 0);
    const row = await usageRow(h, res.requestId);
    assert.equal(row.outcome === 'stream_broken', false, `outcome ${row.outcome}`);
    await assertStillWorks();
  });
});
