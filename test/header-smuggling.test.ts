import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, FAKE_PROVIDER_KEY, startHarness, type Harness } from './helpers/harness.js';
import { assertErrorShape, mapLimit, parseJson, rawRequest, type RawResponse } from './helpers/security-http.js';

/*
 * Threats (THREATS.md, "HTTP parsing and headers", "Authentication bypass", "SSRF"): request
 * smuggling through ambiguous framing, oversized or too many headers, hop-by-hop and client
 * credential headers leaking upstream, crafted paths and Host headers reaching unchecked
 * routes, request fields choosing the upstream, and redirects followed off the provider.
 * Everything here is written byte for byte on raw sockets to the public listener.
 */

let h: Harness;

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
const MESSAGES = JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });

/** A request head with our own framing lines; `lines` go in as written (no normalisation). */
function head(method: string, path: string, lines: readonly string[]): string {
  return `${method} ${path} HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
}

function chunked(body: string): string {
  return `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
}

/** Standard lines of an authenticated JSON request, without any framing header. */
function authLines(): string[] {
  return ['Host: 127.0.0.1', `Authorization: Bearer ${h.key}`, 'Content-Type: application/json', 'Connection: close'];
}

function send(bytes: string | Buffer): Promise<RawResponse> {
  return rawRequest(h.url, bytes);
}

/** Asserts a coded JSON error with `status` and `code`, in the OpenAI shape unless told. */
function assertCoded(res: RawResponse, status: number, code: string | readonly string[], label: string, dialect: 'openai' | 'anthropic' = 'openai'): void {
  assert.equal(res.dropped, false, `${label}: the connection was dropped without an answer`);
  assert.equal(res.status, status, `${label}: status ${res.status} ${res.body.slice(0, 200)}`);
  const got = assertErrorShape(parseJson(res.body), dialect, label);
  assert.ok((typeof code === 'string' ? [code] : code).includes(got), `${label}: code ${got}`);
  assert.ok(res.headers['x-request-id'], `${label}: x-request-id`);
}

/** Runs `fn` and asserts the provider was not called meanwhile. */
async function upstreamUntouched<T>(fn: () => Promise<T>): Promise<T> {
  const before = h.mock.received.length;
  const result = await fn();
  // give a wrongly forwarded request time to land before counting
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(h.mock.received.slice(before).map((r) => `${r.method} ${r.path}`), [], 'the provider was called');
  return result;
}

describe('header smuggling, hop-by-hop headers, path tricks and SSRF', () => {
  before(async () => {
    h = await startHarness();
  });

  after(async () => {
    await h?.close();
  });

  // ---------------------------------------------------------------- framing

  describe('ambiguous framing is refused before any route', () => {
    const cases: Array<[string, (body: string) => string]> = [
      ['Content-Length and Transfer-Encoding: chunked', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(b)}`, 'Transfer-Encoding: chunked']) + chunked(b)],
      ['Transfer-Encoding: chunked before Content-Length', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked', `Content-Length: ${Buffer.byteLength(b)}`]) + chunked(b)],
      ['Content-Length twice, same value', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(b)}`, `Content-Length: ${Buffer.byteLength(b)}`]) + b],
      ['Content-Length twice, different values', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(b)}`, 'Content-Length: 5']) + b],
      ['Content-Length as a list', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(b)}, ${Buffer.byteLength(b)}`]) + b],
      ['Content-Length with a sign', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: +${Buffer.byteLength(b)}`]) + b],
      ['Content-Length in hex', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: 0x${Buffer.byteLength(b).toString(16)}`]) + b],
      ['Content-Length : (space before the colon)', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length : ${Buffer.byteLength(b)}`]) + b],
      ['Transfer-Encoding: chunked, identity', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked, identity']) + chunked(b)],
      ['Transfer-Encoding: xchunked', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: xchunked']) + chunked(b)],
      ['Transfer-Encoding : chunked (space before the colon)', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding : chunked']) + chunked(b)],
      ['Transfer-Encoding folded onto a continuation line ( chunked)', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding:', ' chunked']) + chunked(b)],
      ['a header line starting with a space ( Transfer-Encoding: chunked)', (b) => head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(b)}`, ' Transfer-Encoding: chunked']) + b],
      ['Transfer-Encoding: chunked with a trailing tab', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked\t']) + chunked(b)],
      ['Transfer-Encoding: \\x0bchunked', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: \x0bchunked']) + chunked(b)],
      ['Transfer-Encoding: identity', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: identity']) + b],
      ['Transfer-Encoding: chunked, chunked', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked, chunked']) + chunked(b)],
      ['Transfer-Encoding twice', (b) => head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']) + chunked(b)],
      ['a bare LF line ending', (b) => `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\nTransfer-Encoding: chunked\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\n\r\n` + chunked(b)],
    ];
    for (const [name, build] of cases) {
      it(`refuses ${name} with a coded 400, without calling the provider`, async () => {
        const res = await upstreamUntouched(() => send(build(CHAT)));
        assertCoded(res, 400, 'request_header_invalid', name);
      });
    }

    it('refuses the same framing tricks on the Anthropic route', async () => {
      const res = await upstreamUntouched(() =>
        send(head('POST', '/v1/messages', ['Host: 127.0.0.1', `x-api-key: ${h.key}`, 'anthropic-version: 2023-06-01', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(MESSAGES)}`, 'Transfer-Encoding: chunked']) + chunked(MESSAGES)));
      // the parser fails before a route is known, so this answer is always in the OpenAI shape
      assertCoded(res, 400, 'request_header_invalid', 'CL+TE on /v1/messages');
    });

    it('does not treat a body that follows a framed request as a second request (no smuggled admin call)', async () => {
      const smuggled = head('GET', '/admin/tenants', ['Host: 127.0.0.1', `Authorization: Bearer ${FAKE_ADMIN_TOKEN}`]);
      const bytes = head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`, 'Transfer-Encoding: chunked']) + chunked(CHAT) + smuggled;
      const res = await upstreamUntouched(() => send(bytes));
      assertCoded(res, 400, 'request_header_invalid', 'smuggled request');
      assert.doesNotMatch(res.body, /"data"/);
    });

    it('still accepts honest chunked and Content-Length requests (the refusals above are about the tricks)', async () => {
      const a = await send(head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: chunked']) + chunked(CHAT));
      assert.equal(a.status, 200, a.body);
      const b = await send(head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`]) + CHAT);
      assert.equal(b.status, 200, b.body);
      const c = await send(head('POST', '/v1/chat/completions', [...authLines(), 'Transfer-Encoding: CHUNKED']) + chunked(CHAT));
      assert.equal(c.status, 200, 'transfer codings are case-insensitive');
    });

    it('refuses a transfer coding it does not decode (Transfer-Encoding: gzip, chunked)', async () => {
      // Node removes only the chunking; the still-encoded bytes must not be parsed as if plain
      for (const te of ['gzip, chunked', 'deflate, chunked', 'identity, chunked']) {
        const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...authLines(), `Transfer-Encoding: ${te}`]) + chunked(CHAT)));
        assertCoded(res, 400, 'request_header_invalid', `Transfer-Encoding: ${te}`);
      }
    });
  });

  // ---------------------------------------------------------------- header count and size

  describe('header count and size are bounded', () => {
    const filler = (n: number) => Array.from({ length: n }, (_, i) => `X-Filler-${i}: ${i}`);

    it('refuses more than 100 headers with request_header_invalid, without calling the provider', async () => {
      const lines = [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`];
      const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...lines, ...filler(101 - lines.length)]) + CHAT));
      assertCoded(res, 400, 'request_header_invalid', '101 headers');
    });

    it('refuses 1000 headers the same way', async () => {
      const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`, ...filler(1000)]) + CHAT));
      assert.ok(res.status === 400 || res.status === 431, `status ${res.status}`);
      assertCoded(res, res.status, 'request_header_invalid', '1000 headers');
    });

    it('accepts exactly 100 headers (the bound is 100, not less)', async () => {
      const lines = [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`];
      const res = await send(head('POST', '/v1/chat/completions', [...lines, ...filler(100 - lines.length)]) + CHAT);
      assert.equal(res.status, 200, res.body);
    });

    it('answers 431 to headers over 16 KiB, without calling the provider', async () => {
      for (const lines of [[`X-Big: ${'a'.repeat(17_000)}`], filler(40).map((l) => `${l}${'b'.repeat(500)}`), [`Authorization-Extra: ${'c'.repeat(16_400)}`]]) {
        const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(CHAT)}`, ...lines]) + CHAT));
        assertCoded(res, 431, 'request_header_invalid', 'headers over 16 KiB');
      }
    });

    it('answers 431 to a 17 KiB request line (URL) as well', async () => {
      const res = await upstreamUntouched(() => send(head('GET', `/v1/models?q=${'q'.repeat(17_000)}`, authLines())));
      assert.ok(res.status === 431 || res.status === 414 || res.status === 400, `status ${res.status}`);
      assertCoded(res, res.status, 'request_header_invalid', 'long URL');
    });
  });

  // ---------------------------------------------------------------- hop-by-hop and client headers

  describe('client headers do not travel upstream', () => {
    const HOSTILE: ReadonlyArray<[string, string]> = [
      ['Connection', 'keep-alive, x-secret-hop, x-forwarded-for'],
      ['x-secret-hop', '1'],
      ['Keep-Alive', 'timeout=99'],
      ['TE', 'trailers'],
      ['Upgrade', 'websocket'],
      ['Trailer', 'x-late'],
      ['Proxy-Authorization', 'Basic c2VjcmV0OnByb3h5'],
      ['Proxy-Connection', 'keep-alive'],
      ['X-Forwarded-For', '10.6.6.6'],
      ['X-Forwarded-Host', 'evil.example'],
      ['X-Forwarded-Proto', 'gopher'],
      ['X-Real-IP', '10.6.6.6'],
      ['Forwarded', 'for=10.6.6.6;host=evil.example;proto=http'],
      ['Cookie', 'session=fake-TEST-ONLY-cookie'],
      ['OpenAI-Organization', 'org-fake-TEST-ONLY'],
      ['OpenAI-Project', 'proj-fake-TEST-ONLY'],
      ['OpenAI-Beta', 'assistants=v2'],
      ['Anthropic-Beta', 'fake-beta-TEST-ONLY'],
      ['anthropic-dangerous-direct-browser-access', 'true'],
      ['X-Mock-Fault', 'status=500'],
      ['X-Stainless-Lang', 'js'],
      ['Idempotency-Key', 'fake-TEST-ONLY-idem'],
      ['Origin', 'https://evil.example'],
      ['Referer', 'https://evil.example/page'],
      ['User-Agent', 'fake-TEST-ONLY-agent/1.0'],
      ['X-Request-Id', 'client-chosen-request-id-0001'],
    ];
    /** Header names that may legitimately appear on the gateway's upstream request. */
    const ALLOWED_UPSTREAM = new Set(['host', 'connection', 'content-length', 'content-type', 'accept', 'authorization', 'x-api-key', 'anthropic-version', 'transfer-encoding', 'user-agent', 'accept-encoding']);

    async function relay(path: string, credentialLines: string[], body: string) {
      const before = h.mock.received.length;
      const lines = ['Host: 127.0.0.1', ...credentialLines, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, ...HOSTILE.map(([k, v]) => `${k}: ${v}`)];
      const res = await send(head('POST', path, lines) + body);
      const received = h.mock.received.slice(before);
      return { res, received };
    }

    function assertClean(headers: Record<string, string | string[] | undefined>, label: string) {
      const names = Object.keys(headers).map((n) => n.toLowerCase());
      const unexpected = names.filter((n) => !ALLOWED_UPSTREAM.has(n));
      assert.deepEqual(unexpected, [], `${label}: forwarded ${unexpected.join(', ')}`);
      const text = JSON.stringify(headers);
      for (const [, value] of HOSTILE) {
        if (['1', 'true', 'keep-alive', 'js', 'trailers'].includes(value)) continue;
        assert.ok(!text.includes(value), `${label}: a client header value reached the provider (${value})`);
      }
      assert.ok(!text.includes(h.key), `${label}: the client's tenant key reached the provider`);
      assert.ok(!text.includes(h.keyId), `${label}: the client's key id reached the provider`);
      assert.ok(!/x-secret-hop|evil\.example|10\.6\.6\.6/i.test(text), `${label}: hop-by-hop or forwarding data reached the provider`);
    }

    it('strips hop-by-hop, forwarding, cookie and provider-option headers on the OpenAI route', async () => {
      for (const stream of [false, true]) {
        const { res, received } = await relay('/v1/chat/completions', [`Authorization: Bearer ${h.key}`], JSON.stringify({ ...JSON.parse(CHAT), stream }));
        assert.equal(res.status, 200, res.body);
        assert.equal(received.length, 1);
        const headers = (received[0] as (typeof received)[number]).headers;
        assertClean(headers, `chat stream=${stream}`);
        // never forward the client's credential: the provider sees only the server-held key
        assert.equal(headers['authorization'], `Bearer ${FAKE_PROVIDER_KEY}`);
        assert.equal(headers['x-api-key'], undefined);
        // and the provider's own headers do not come back to the client
        assert.doesNotMatch(res.headers['x-request-id'] ?? '', /^req_mock/);
      }
    });

    it('strips the same headers on the Anthropic route, keeping only a validated anthropic-version', async () => {
      for (const stream of [false, true]) {
        const { res, received } = await relay('/v1/messages', [`x-api-key: ${h.key}`, 'anthropic-version: 2023-06-01'], JSON.stringify({ ...JSON.parse(MESSAGES), stream }));
        assert.equal(res.status, 200, res.body);
        assert.equal(received.length, 1);
        const headers = (received[0] as (typeof received)[number]).headers;
        assertClean(headers, `messages stream=${stream}`);
        assert.equal(headers['x-api-key'], FAKE_PROVIDER_KEY);
        assert.equal(headers['authorization'], undefined);
        assert.equal(headers['anthropic-version'], '2023-06-01');
        assert.equal(res.headers['request-id'], undefined, "the provider's request-id header is not relayed");
      }
    });

    it('forwards neither credential when a client sends both Authorization and x-api-key', async () => {
      const { res, received } = await relay('/v1/chat/completions', [`Authorization: Bearer ${h.key}`, `x-api-key: ${h.key}`], CHAT);
      assert.equal(res.status, 200, res.body);
      const headers = (received[0] as (typeof received)[number]).headers;
      assert.equal(headers['authorization'], `Bearer ${FAKE_PROVIDER_KEY}`);
      assert.equal(headers['x-api-key'], undefined);
    });
  });

  // ---------------------------------------------------------------- paths and hosts

  describe('crafted paths and Host headers reach no unchecked route', () => {
    const TRICKS = [
      '//v1/chat/completions', '/v1/chat/completions/', '/v1/./chat/completions', '/v1/%2e%2e/v1/chat/completions',
      '/V1/CHAT/COMPLETIONS', '/v1/chat/completions%23', '/v1//chat/completions', '/./v1/chat/completions',
      '/v1/chat%2Fcompletions', '/v1/chat/completions;x=1', '/v1/chat/completions%20',
      '/v1/chat/completions%00', '/admin/tenants', '/admin/keys', '/admin/tenants/acme/keys', '/v1/../admin/tenants',
      '/v1/%2e%2e/admin/tenants', '/metrics', '/dashboard', '/v1/messages/', '/v1/Messages', '/v1/models/', '/v1/models/../models',
    ];
    /**
     * The real route with a query or fragment, or with unreserved characters percent-encoded (the
     * same URL by RFC 3986, and the router decodes them): authenticated like the route itself.
     */
    const REAL_ROUTE = ['/v1/chat/completions?x=1#frag', '/v1/chat/completions#', '/v1/chat/completions?api_key=x', '/%76%31/chat/completions', '/v1/chat/complet%69ons'];

    async function probe(method: 'GET' | 'POST', path: string, credential: boolean, host = '127.0.0.1') {
      const lines = [`Host: ${host}`, 'Connection: close'];
      if (credential) lines.push(`Authorization: Bearer ${h.key}`);
      if (method === 'POST') lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(CHAT)}`);
      return send(head(method, path, lines) + (method === 'POST' ? CHAT : ''));
    }

    it('never answers 2xx to a crafted path, with or without credentials, and never calls the provider', async () => {
      const results = await upstreamUntouched(() =>
        mapLimit(TRICKS.flatMap((p) => (['GET', 'POST'] as const).flatMap((m) => [true, false].map((c) => ({ p, m, c })))), 8, async ({ p, m, c }) => ({ p, m, c, res: await probe(m, p, c) })));
      for (const { p, m, c, res } of results) {
        const label = `${m} ${p} ${c ? 'with' : 'without'} credentials`;
        assert.equal(res.dropped, false, label);
        assert.ok(res.status >= 400 && res.status < 500, `${label}: status ${res.status}`);
        assertErrorShape(parseJson(res.body), p.toLowerCase().startsWith('/v1/messages') && !p.startsWith('/v1/Messages') ? 'anthropic' : 'openai', label);
      }
    });

    it('answers route_not_found to a crafted path without a body', async () => {
      for (const path of TRICKS) {
        for (const credential of [true, false]) {
          const res = await upstreamUntouched(() => probe('GET', path, credential));
          // a GET that happens to land on a real POST route would be 405; none of these do
          assertCoded(res, 404, 'route_not_found', `GET ${path}`, path.startsWith('/v1/messages') ? 'anthropic' : 'openai');
        }
      }
    });

    it('answers route_not_found to a crafted path carrying a body, with or without credentials (the body is never parsed)', async () => {
      for (const path of TRICKS) {
        for (const credential of [true, false]) {
          const res = await upstreamUntouched(() => probe('POST', path, credential));
          assertCoded(res, 404, 'route_not_found', `POST ${path}`, path.startsWith('/v1/messages') ? 'anthropic' : 'openai');
        }
      }
    });

    it('answers 401 on the real route reached with a query or fragment and no credentials', async () => {
      for (const path of REAL_ROUTE) {
        const res = await upstreamUntouched(() => probe('POST', path, false));
        assertCoded(res, 401, 'auth_missing_credentials', `POST ${path}`);
      }
    });

    it('does not reach the admin API through the public listener, whatever the Host header says', async () => {
      const adminHost = new URL(h.adminUrl).host;
      const hosts = [adminHost, `localhost:${new URL(h.adminUrl).port}`, 'admin', 'admin.internal', 'evil.example', '127.0.0.1', '[::1]', 'localhost'];
      for (const host of hosts) {
        for (const path of ['/admin/tenants', '/admin/keys', `http://${adminHost}/admin/tenants`]) {
          const res = await upstreamUntouched(() =>
            send(head('GET', path, [`Host: ${host}`, `Authorization: Bearer ${FAKE_ADMIN_TOKEN}`, 'X-Forwarded-Host: ' + adminHost, 'X-Original-URL: /admin/tenants', 'X-Rewrite-URL: /admin/tenants', 'Connection: close'])));
          assertCoded(res, 404, 'route_not_found', `GET ${path} with Host ${host}`);
          assert.doesNotMatch(res.body, /acme/, 'no tenant data');
        }
      }
    });

    it('routes by path only: X-Original-URL and X-Rewrite-URL do not change the route', async () => {
      const res = await send(head('GET', '/healthz', ['Host: 127.0.0.1', 'X-Original-URL: /admin/tenants', 'X-Rewrite-URL: /v1/models', 'Connection: close']));
      assert.equal(res.status, 200);
      assert.deepEqual(parseJson(res.body), { status: 'ok' });
    });

    it('answers a request without a Host header with the coded JSON error', async () => {
      const res = await upstreamUntouched(() => send(`GET /v1/models HTTP/1.1\r\nAuthorization: Bearer ${h.key}\r\nConnection: close\r\n\r\n`));
      assertCoded(res, 400, 'request_header_invalid', 'no Host');
    });

    it('refuses two Host headers (a proxy in front may have routed on the other one), with or without the same value', async () => {
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      for (const hosts of [['Host: a.example', 'Host: b.example'], ['Host: 127.0.0.1', 'host: 127.0.0.1'], ['HOST: 127.0.0.1', 'Host: evil.example']]) {
        const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...hosts, `Authorization: Bearer ${h.key}`, 'Content-Type: application/json',
          `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close']) + body));
        assertCoded(res, 400, 'request_header_invalid', hosts.join(' + '));
      }
      // one Host header still works
      const ok = await send(head('POST', '/v1/chat/completions', ['Host: 127.0.0.1', `Authorization: Bearer ${h.key}`, 'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close']) + body);
      assert.equal(ok.status, 200, ok.body.slice(0, 200));
    });
  });

  // ---------------------------------------------------------------- SSRF

  describe('no request field chooses the upstream', () => {
    const NAMES = ['base_url', 'api_base', 'baseURL', 'url', 'headers', 'extra_headers', 'provider', 'api_key', 'extra_body', 'extra_query', 'endpoint', 'host', 'proxy'];
    const VALUE = (name: string): unknown =>
      name.includes('headers') ? { authorization: 'Bearer fake-TEST-ONLY', host: '127.0.0.1:1' } : name === 'provider' ? { base_url: 'http://127.0.0.1:1' } : 'http://127.0.0.1:1/steal';

    /** Places a field named `name` at several depths of a valid body; returns [where, body]. */
    function placements(name: string): Array<[string, string, Record<string, unknown>]> {
      const v = VALUE(name);
      const chatMsg = { role: 'user', content: 'hi' };
      return [
        ['/v1/chat/completions', name, { ...JSON.parse(CHAT), [name]: v }],
        ['/v1/chat/completions', `messages[0].${name}`, { model: 'gpt-4o-mini', messages: [{ ...chatMsg, [name]: v }] }],
        ['/v1/chat/completions', `messages[0].content[0].${name}`, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', [name]: v }] }] }],
        ['/v1/chat/completions', `stream_options.${name}`, { ...JSON.parse(CHAT), stream: true, stream_options: { include_usage: true, [name]: v } }],
        ['/v1/chat/completions', `response_format.json_schema.${name}`, { ...JSON.parse(CHAT), response_format: { type: 'json_schema', json_schema: { name: 'x', [name]: v } } }],
        ['/v1/responses', name, { model: 'gpt-4o-mini', input: 'hi', [name]: v }],
        ['/v1/responses', `input[0].${name}`, { model: 'gpt-4o-mini', input: [{ role: 'user', content: 'hi', [name]: v }] }],
        ['/v1/responses', `reasoning.${name}`, { model: 'gpt-4o-mini', input: 'hi', reasoning: { effort: 'low', [name]: v } }],
        ['/v1/embeddings', name, { model: 'text-embedding-3-small', input: 'hi', [name]: v }],
        ['/v1/messages', name, { ...JSON.parse(MESSAGES), [name]: v }],
        ['/v1/messages', `messages[0].${name}`, { model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ ...chatMsg, [name]: v }] }],
        ['/v1/messages', `metadata.${name}`, { ...JSON.parse(MESSAGES), metadata: { user_id: 'u', [name]: v } }],
        ['/v1/messages', `system[0].${name}`, { ...JSON.parse(MESSAGES), system: [{ type: 'text', text: 'x', [name]: v }] }],
      ];
    }

    it('refuses base_url, api_base, baseURL, url, headers, extra_headers, provider (and kin) at any depth with request_unknown_field', async () => {
      const cases = NAMES.flatMap((name) => placements(name).map(([path, where, body]) => ({ path, where, body })));
      const results = await upstreamUntouched(() =>
        mapLimit(cases, 16, async (c) => {
          const credential = c.path === '/v1/messages' ? [`x-api-key: ${h.key}`, 'anthropic-version: 2023-06-01'] : [`Authorization: Bearer ${h.key}`];
          const body = JSON.stringify(c.body);
          const res = await send(head('POST', c.path, ['Host: 127.0.0.1', ...credential, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close']) + body);
          return { c, res };
        }));
      assert.ok(results.length >= 150);
      for (const { c, res } of results) {
        const dialect = c.path === '/v1/messages' ? 'anthropic' : 'openai';
        assertCoded(res, 400, 'request_unknown_field', `${c.path} ${c.where}`, dialect);
        const json = parseJson(res.body) as { error: { param?: string; message: string } };
        if (dialect === 'openai') assert.equal(json.error.param, c.where, `${c.path}: the refusal names the field`);
        assert.ok(!res.body.includes('127.0.0.1:1'), 'the value is not echoed');
      }
    });

    it('refuses a model name that looks like a URL or a provider path', async () => {
      for (const model of ['http://127.0.0.1:1/v1', '//127.0.0.1:1', 'openai/gpt-4o-mini', '../gpt-4o-mini', 'gpt-4o-mini@127.0.0.1:1', 'gpt-4o-mini#']) {
        const body = JSON.stringify({ ...JSON.parse(CHAT), model });
        const res = await upstreamUntouched(() => send(head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(body)}`]) + body));
        assertCoded(res, 403, 'policy_model_not_allowed', model);
      }
    });

    it('does not follow the mock provider\'s redirect off the provider', async () => {
      const before = h.mock.received.length;
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi [[mock:redirect]]' }] });
      const res = await send(head('POST', '/v1/chat/completions', [...authLines(), `Content-Length: ${Buffer.byteLength(body)}`]) + body);
      // followed, it would have tried 127.0.0.1:1 and reported the provider unreachable
      assertCoded(res, 502, 'upstream_error', 'redirect');
      assert.equal(h.mock.received.length - before, 1);
    });
  });

  describe('upstream redirects are never followed (a provider answering 301/302/303/307/308)', () => {
    let trap: Server;
    let redirector: Server;
    let trapHits = 0;
    let redirectorHits = 0;
    let g: Harness;
    let dir: string;

    const listen = (server: Server) => new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));

    before(async () => {
      trap = createServer((req, res) => {
        trapHits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } }));
      });
      const trapUrl = await listen(trap);
      // the redirector cycles through the redirect statuses (client headers are not forwarded, so it cannot be told)
      const statuses = [301, 302, 303, 307, 308];
      redirector = createServer((req, res) => {
        const status = statuses[redirectorHits % statuses.length] as number;
        redirectorHits++;
        req.resume();
        res.writeHead(status, { location: `${trapUrl}/v1/chat/completions`, 'content-length': 0 }).end();
      });
      const redirectorUrl = await listen(redirector);
      dir = mkdtempSync(join(tmpdir(), 'keywarden-redirect-'));
      const keyFile = join(dir, 'provider-key');
      writeFileSync(keyFile, 'sk-fake-TEST-ONLY-redirect-0000000000000000', { mode: 0o600 }); // plainly fake
      g = await startHarness({
        config: {
          providers: { openai: { type: 'openai', base_url: `${redirectorUrl}/v1`, api_key: `file:${keyFile}`, timeout: '2s' } },
          models: { 'gpt-4o-mini': { provider: 'openai' } },
        },
        policy: { models: ['gpt-4o-mini'] },
      });
    });

    after(async () => {
      await g?.close();
      await new Promise<void>((resolve) => trap?.close(() => resolve()));
      await new Promise<void>((resolve) => redirector?.close(() => resolve()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('answers an upstream error for each redirect status and never calls the redirect target', async () => {
      for (let i = 0; i < 5; i++) {
        for (const stream of [false, true]) {
          const res = await fetch(`${g.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${g.key}` },
            body: JSON.stringify({ ...JSON.parse(CHAT), stream }),
          });
          const text = await res.text();
          assert.equal(res.status, 502, text);
          assert.equal((parseJson(text) as { error: { code: string } }).error.code, 'upstream_error');
          assert.equal(res.headers.get('location'), null, 'the redirect is not relayed either');
        }
      }
      assert.equal(redirectorHits, 10);
      assert.equal(trapHits, 0, 'the gateway followed a redirect off the provider');
    });
  });
});
