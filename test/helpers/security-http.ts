import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { ERROR_CODES } from '../../src/errors/codes.js';

/**
 * Small tools shared by the security suites (key-leak canary, malformed input, header
 * smuggling): raw HTTP over a socket, a bounded-concurrency runner, a seeded PRNG and the
 * error-shape check.
 */

export interface RawResponse {
  /** 0 when the server closed the connection without a status line. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** True when the server closed the connection without sending anything. */
  dropped: boolean;
}

/**
 * Writes `bytes` as-is to the listener of `baseUrl` and reads one HTTP response (by
 * `content-length`, chunked, or up to the close). Resolves `dropped: true` when the connection
 * closes with nothing read; rejects when nothing at all happens within `timeoutMs`.
 */
export function rawRequest(baseUrl: string, bytes: Buffer | string, timeoutMs = 5000): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    function finish(err?: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) {
        reject(err);
        return;
      }
      resolve(parseRaw(Buffer.concat(chunks)));
    }
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (isComplete(Buffer.concat(chunks))) finish();
    });
    // a reset after the answer was read is fine; before it, the parse shows `dropped`
    socket.on('error', () => finish());
    socket.on('close', () => finish());
  });
}

function splitHead(buf: Buffer): { head: string; body: Buffer } | undefined {
  const at = buf.indexOf('\r\n\r\n');
  if (at === -1) return undefined;
  return { head: buf.subarray(0, at).toString('latin1'), body: buf.subarray(at + 4) };
}

function headersOf(head: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return headers;
}

function isComplete(buf: Buffer): boolean {
  const parts = splitHead(buf);
  if (!parts) return false;
  const headers = headersOf(parts.head);
  const length = headers['content-length'];
  if (length !== undefined) return parts.body.length >= Number(length);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) return parts.body.includes('\r\n0\r\n\r\n') || parts.body.subarray(0, 5).toString() === '0\r\n\r\n';
  return false;
}

function dechunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const eol = body.indexOf('\r\n', at);
    if (eol === -1) break;
    const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function parseRaw(buf: Buffer): RawResponse {
  if (buf.length === 0) return { status: 0, headers: {}, body: '', dropped: true };
  const parts = splitHead(buf);
  if (!parts) return { status: 0, headers: {}, body: buf.toString('latin1'), dropped: true };
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(parts.head)?.[1] ?? 0);
  const headers = headersOf(parts.head);
  const body = /chunked/i.test(headers['transfer-encoding'] ?? '') ? dechunk(parts.body) : parts.body;
  return { status, headers, body: body.toString('utf8'), dropped: false };
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** mulberry32: a tiny deterministic PRNG, so a failing generated case reproduces from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Dialect = 'openai' | 'anthropic';

/**
 * Asserts `json` is a gateway error in the dialect's shape with a documented code, and returns
 * the code. OpenAI: `{error:{message,type,param,code}}`; Anthropic: `{type:'error',error:{type,message,code},request_id}`.
 */
export function assertErrorShape(json: unknown, dialect: Dialect, label: string): string {
  assert.ok(typeof json === 'object' && json !== null && !Array.isArray(json), `${label}: error body is not a JSON object`);
  const body = json as Record<string, unknown>;
  const error = body['error'] as Record<string, unknown> | undefined;
  assert.ok(typeof error === 'object' && error !== null, `${label}: no "error" object`);
  assert.equal(typeof error['message'], 'string', `${label}: error.message`);
  assert.equal(typeof error['type'], 'string', `${label}: error.type`);
  const code = error['code'];
  assert.ok(typeof code === 'string' && Object.hasOwn(ERROR_CODES, code), `${label}: error.code ${String(code)} is not in src/errors/codes.ts`);
  if (dialect === 'anthropic') {
    assert.equal(body['type'], 'error', `${label}: Anthropic errors carry type: "error"`);
    assert.equal(typeof body['request_id'], 'string', `${label}: Anthropic errors carry request_id`);
  } else {
    assert.ok(Object.hasOwn(error, 'param'), `${label}: OpenAI errors carry error.param`);
    assert.equal(body['type'], undefined, `${label}: OpenAI errors have no top-level type`);
  }
  return code;
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
