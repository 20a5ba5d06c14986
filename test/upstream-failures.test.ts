import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { FAKE_PROVIDER_KEY, startHarness, type Harness } from './helpers/harness.js';
import { newRequestId, parseSse, usageRow, type ClientSseEvent } from './helpers/upstream-ledger.js';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Every fault the mock provider can inject, through the gateway, on the OpenAI and the
 * Anthropic routes, whole and streamed: the client gets a coded gateway error (never the
 * provider's own body), the ledger records what happened, and broken streams end with an
 * error event instead of quietly.
 */

interface Route {
  name: string;
  path: string;
  dialect: 'openai' | 'anthropic';
  body(directive: string, stream: boolean): Record<string, unknown>;
}

const PROMPT = 'Tell me something';

const OPENAI_ROUTE: Route = {
  name: 'OpenAI chat',
  path: '/v1/chat/completions',
  dialect: 'openai',
  body: (directive, stream) => ({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: `${PROMPT} ${directive}` }],
    ...(stream ? { stream: true } : {}),
  }),
};

const ANTHROPIC_ROUTE: Route = {
  name: 'Anthropic messages',
  path: '/v1/messages',
  dialect: 'anthropic',
  body: (directive, stream) => ({
    model: 'claude-3-5-haiku-latest',
    max_tokens: 1000,
    messages: [{ role: 'user', content: `${PROMPT} ${directive}` }],
    ...(stream ? { stream: true } : {}),
  }),
};

const ROUTES = [OPENAI_ROUTE, ANTHROPIC_ROUTE];

/** The mock's input-token count for one user message `PROMPT + ' ' + directive`. */
function inputTokensFor(directive: string): number {
  return Math.ceil((PROMPT.length + 1 + directive.length) / 4) + 3;
}

/** Phrases from the mock's error bodies: none may reach a client. */
const PROVIDER_PHRASES = [
  'sk-', 'Incorrect API key', 'invalid x-api-key', '****', 'does not have permission', 'Country, region',
  'Sorry about that', 'Internal server error', 'currently overloaded', 'per-minute rate limit', 'Rate limit reached',
  'mock fault', 'req_mock', 'stolen',
];

function assertNoProviderText(text: string): void {
  for (const phrase of PROVIDER_PHRASES) assert.ok(!text.includes(phrase), `the client must not see provider text ${JSON.stringify(phrase)}`);
  assert.ok(!text.includes(FAKE_PROVIDER_KEY.slice(-12)), 'no part of the provider key');
}

/** Sends one request the way the route's SDK would (Bearer for OpenAI, x-api-key for Anthropic). */
async function send(h: Harness, route: Route, directive: string, stream: boolean, requestId = newRequestId('up')) {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
  if (route.dialect === 'anthropic') {
    headers['x-api-key'] = h.key;
    headers['anthropic-version'] = '2023-06-01';
  } else {
    headers['authorization'] = `Bearer ${h.key}`;
  }
  const res = await fetch(h.url + route.path, { method: 'POST', headers, body: JSON.stringify(route.body(directive, stream)) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, requestId };
}

/** The `code` of an error body in either dialect, checking the dialect's shape on the way. */
function errorCode(text: string, dialect: Route['dialect']): string {
  const body = JSON.parse(text) as Record<string, any>;
  if (dialect === 'anthropic') {
    assert.equal(body['type'], 'error', 'Anthropic error shape');
    assert.equal(typeof body['error']?.type, 'string');
  } else {
    assert.equal(typeof body['error']?.type, 'string', 'OpenAI error shape');
    assert.ok('param' in body['error']);
  }
  assert.equal(typeof body['error']?.message, 'string');
  return body['error'].code as string;
}

/** Events carrying reply text (chat deltas with content, Anthropic text deltas). */
function contentEvents(events: ClientSseEvent[], dialect: Route['dialect']): number {
  return events.filter((e) => (dialect === 'anthropic' ? e.event === 'content_block_delta' : /"content":"[^"]/.test(e.data))).length;
}

function isTerminal(e: ClientSseEvent): boolean {
  return e.data === '[DONE]' || e.event === 'message_stop';
}

/** Asserts a stream that broke: a 200 SSE answer whose last event is an error with `code`. */
function assertBrokenStream(res: { status: number; headers: Headers; text: string }, route: Route, code: string): ClientSseEvent[] {
  assert.equal(res.status, 200, 'the stream had started');
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const events = parseSse(res.text);
  const last = events[events.length - 1];
  assert.ok(last, 'events arrived');
  assert.equal(last.event, 'error', 'the stream ends with an error event');
  assert.equal(errorCode(last.data, route.dialect), code);
  assert.ok(!events.some(isTerminal), 'no terminal event was relayed');
  assertNoProviderText(last.data);
  return events;
}

interface StatusCase {
  fault: string;
  status: number;
  code: string;
  retryAfter?: string;
}

const STATUS_CASES: readonly StatusCase[] = [
  { fault: 'status=500', status: 502, code: 'upstream_error' },
  { fault: 'status=503', status: 503, code: 'upstream_overloaded' },
  { fault: 'status=529', status: 503, code: 'upstream_overloaded' },
  { fault: 'status=429', status: 429, code: 'upstream_rate_limited', retryAfter: '7' },
  { fault: 'status=400', status: 400, code: 'upstream_rejected_request' },
  { fault: 'reset', status: 502, code: 'upstream_unreachable' },
];

describe('upstream failures through the gateway', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  for (const route of ROUTES) {
    for (const stream of [false, true]) {
      const mode = stream ? 'streamed' : 'whole';
      describe(`${route.name}, ${mode}`, () => {
        for (const c of STATUS_CASES) {
          it(`answers [[mock:${c.fault}]] with ${c.status} ${c.code}${c.retryAfter ? ` and Retry-After ${c.retryAfter}` : ''}`, async () => {
            const res = await send(h, route, `[[mock:${c.fault}]]`, stream);
            assert.equal(res.status, c.status);
            assert.match(res.headers.get('content-type') ?? '', /^application\/json/, 'an error before the first byte is a plain error answer');
            assert.equal(errorCode(res.text, route.dialect), c.code);
            assert.equal(res.headers.get('x-request-id'), res.requestId);
            if (c.retryAfter !== undefined) assert.equal(res.headers.get('retry-after'), c.retryAfter);
            else assert.equal(res.headers.get('retry-after'), null);
            assertNoProviderText(res.text);
            const row = await usageRow(h, res.requestId);
            assert.equal(row.outcome, 'upstream_error');
            assert.equal(row.errorCode, c.code);
            assert.equal(row.status, c.status);
          });
        }

        for (const status of [401, 403]) {
          it(`hides a provider ${status} behind 502 upstream_auth_failed and alerts operators`, async () => {
            const res = await send(h, route, `[[mock:status=${status}]]`, stream);
            assert.equal(res.status, 502);
            assert.equal(errorCode(res.text, route.dialect), 'upstream_auth_failed');
            assertNoProviderText(res.text);
            const events = h.logs.lines
              .map((line) => JSON.parse(line) as Record<string, unknown>)
              .filter((l) => l['event'] === 'upstream_auth_failed' && l['requestId'] === res.requestId);
            assert.equal(events.length, 1, 'one operator log event upstream_auth_failed');
            assert.equal(events[0]?.['upstreamStatus'], status);
            assert.equal(events[0]?.['provider'], route.dialect);
            const logText = h.logs.text();
            assert.ok(!logText.includes('Incorrect API key') && !logText.includes('****'), 'the provider body is not logged either');
            assert.ok(!logText.includes(FAKE_PROVIDER_KEY), 'the provider key is never logged');
          });
        }

        it('does not follow an upstream redirect', async () => {
          const before = h.mock.received.length;
          const res = await send(h, route, '[[mock:redirect]]', stream);
          assert.equal(res.status, 502);
          // following it would have reached 127.0.0.1:1 and failed as upstream_unreachable
          assert.equal(errorCode(res.text, route.dialect), 'upstream_error');
          assertNoProviderText(res.text);
          const after = h.mock.received.slice(before);
          assert.equal(after.length, 1, 'exactly the one request to the provider');
          assert.ok(!after.some((r) => r.path.includes('stolen')));
        });
      });
    }

    describe(`${route.name}, corrupt answers`, () => {
      for (const fault of ['malformed', 'truncate']) {
        it(`answers a ${fault} whole answer with 502 upstream_invalid_response`, async () => {
          const res = await send(h, route, `[[mock:${fault}]]`, false);
          assert.equal(res.status, 502);
          assert.equal(errorCode(res.text, route.dialect), 'upstream_invalid_response');
          assert.ok(!res.text.includes('this is not JSON'), 'the broken body is not relayed');
          const row = await usageRow(h, res.requestId);
          assert.equal(row.outcome, 'upstream_error');
          assert.equal(row.errorCode, 'upstream_invalid_response');
        });
      }

      it('ends a stream reset mid-way with an error event upstream_unreachable and records stream_broken', async () => {
        const directive = '[[mock:reset-mid-stream]]';
        const res = await send(h, route, directive, true);
        const events = assertBrokenStream(res, route, 'upstream_unreachable');
        const delivered = contentEvents(events, route.dialect);
        assert.ok(delivered > 0 && delivered < 12, `part of the reply was relayed (${delivered} of 12)`);
        const row = await usageRow(h, res.requestId);
        assert.equal(row.outcome, 'stream_broken');
        assert.equal(row.errorCode, 'upstream_unreachable');
        assert.equal(row.stream, true);
        if (route.dialect === 'anthropic') {
          // message_start was seen: its input count and first output count are what was used so far
          assert.equal(row.inputTokens, inputTokensFor(directive));
          assert.equal(row.outputTokens, 1);
        }
      });

      it('ends a stream cut before its terminal event with an error event upstream_invalid_response', async () => {
        const directive = '[[mock:truncate]]';
        const res = await send(h, route, directive, true);
        const events = assertBrokenStream(res, route, 'upstream_invalid_response');
        assert.equal(contentEvents(events, route.dialect), 12, 'the whole reply was relayed');
        const row = await usageRow(h, res.requestId);
        assert.equal(row.outcome, 'stream_broken');
        assert.equal(row.errorCode, 'upstream_invalid_response');
        // the usage events came before the missing terminal event: they count
        assert.equal(row.inputTokens, inputTokensFor(directive));
        assert.equal(row.outputTokens, 12);
      });

      it('ends a stream with a malformed event with an error event upstream_invalid_response, never relaying the broken event', async () => {
        const res = await send(h, route, '[[mock:malformed]]', true);
        const events = assertBrokenStream(res, route, 'upstream_invalid_response');
        const delivered = contentEvents(events, route.dialect);
        assert.ok(delivered > 0 && delivered < 12, `the events before the broken one were relayed (${delivered})`);
        for (const event of events) {
          if (event.data && event.data !== '[DONE]') assert.doesNotThrow(() => JSON.parse(event.data), 'every relayed event is whole JSON');
        }
        const row = await usageRow(h, res.requestId);
        assert.equal(row.outcome, 'stream_broken');
        assert.equal(row.errorCode, 'upstream_invalid_response');
      });

      it('records client_aborted and stops reading the upstream when the client leaves mid-stream', async () => {
        // 400 tokens at 50 ms each: the whole stream would take 20 s
        const requestId = newRequestId('up');
        const controller = new AbortController();
        const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId, authorization: `Bearer ${h.key}` };
        if (route.dialect === 'anthropic') headers['anthropic-version'] = '2023-06-01';
        const res = await fetch(h.url + route.path, {
          method: 'POST',
          headers,
          body: JSON.stringify(route.body('[[mock:chunk-delay=50,tokens=400]]', true)),
          signal: controller.signal,
        });
        assert.equal(res.status, 200);
        assert.ok(res.body);
        const reader = res.body.getReader();
        let chunks = 0;
        while (chunks < 3) {
          const { done } = await reader.read();
          if (done) break;
          chunks++;
        }
        assert.equal(chunks, 3, 'a few chunks arrived');
        controller.abort();
        await reader.cancel().catch(() => undefined);

        // the row is written once the gateway has stopped relaying; far sooner than the 20 s stream
        const row = await usageRow(h, requestId, 8000);
        assert.equal(row.outcome, 'client_aborted');
        assert.equal(row.status, 499);
        assert.equal(row.errorCode, null);
        // the final usage (400 output tokens) comes at the very end: the gateway stopped reading before it
        assert.ok(row.outputTokens < 400, `output tokens ${row.outputTokens} < 400`);
      });
    });
  }

  describe('SDKs see a broken stream as an error', () => {
    it('the openai SDK raises an APIError with code upstream_unreachable', async () => {
      const client = new OpenAI({ apiKey: h.key, baseURL: h.url + '/v1', maxRetries: 0 });
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi [[mock:reset-mid-stream]]' }],
        stream: true,
      });
      let text = '';
      const err = await (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      })().then(() => assert.fail('the stream should fail'), (e: unknown) => e);
      assert.ok(err instanceof OpenAI.APIError, `an APIError, got ${String(err)}`);
      assert.equal(err.code, 'upstream_unreachable');
      assert.ok(text.length > 0, 'part of the reply arrived first');
    });

    it('the anthropic SDK raises an APIError carrying the Anthropic-shaped error', async () => {
      const client = new Anthropic({ apiKey: h.key, baseURL: h.url, maxRetries: 0 });
      const stream = client.messages.stream({
        model: 'claude-3-5-haiku-latest',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi [[mock:truncate]]' }],
      });
      const err = await stream.finalMessage().then(() => assert.fail('the stream should fail'), (e: unknown) => e);
      assert.ok(err instanceof Anthropic.APIError, `an APIError, got ${String(err)}`);
      const body = err.error as { type: string; error: { code: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.code, 'upstream_invalid_response');
    });
  });
});

describe('a slow provider (timeout 300 ms)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ timeout: '300ms' });
  });
  after(async () => {
    await h.close();
  });

  for (const route of ROUTES) {
    it(`still serves a prompt answer on the ${route.name} route`, async () => {
      const res = await send(h, route, '', false);
      assert.equal(res.status, 200);
    });

    for (const stream of [false, true]) {
      it(`answers a ${stream ? 'streamed' : 'whole'} ${route.name} request whose headers come too late with 504 upstream_timeout`, async () => {
        const res = await send(h, route, '[[mock:delay=1500]]', stream);
        assert.equal(res.status, 504);
        assert.equal(errorCode(res.text, route.dialect), 'upstream_timeout');
        const row = await usageRow(h, res.requestId);
        assert.equal(row.outcome, 'upstream_error');
        assert.equal(row.errorCode, 'upstream_timeout');
      });
    }

    it(`ends a ${route.name} stream that stalls mid-way with an error event upstream_timeout`, async () => {
      const res = await send(h, route, '[[mock:stall=2000]]', true);
      assertBrokenStream(res, route, 'upstream_timeout');
      const row = await usageRow(h, res.requestId);
      assert.equal(row.outcome, 'stream_broken');
      assert.equal(row.errorCode, 'upstream_timeout');
    });
  }
});

describe('a provider that cannot be reached', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    // nothing listens on the provider's port any more: connections are refused
    await h.mock.close();
  });
  after(async () => {
    await h.close();
  });

  for (const route of ROUTES) {
    for (const stream of [false, true]) {
      it(`answers a ${stream ? 'streamed' : 'whole'} ${route.name} request with 502 upstream_unreachable`, async () => {
        const res = await send(h, route, '', stream);
        assert.equal(res.status, 502);
        assert.equal(errorCode(res.text, route.dialect), 'upstream_unreachable');
        assert.ok(!res.text.includes('ECONNREFUSED') && !res.text.includes('127.0.0.1'), 'transport details stay in the gateway');
        const row = await usageRow(h, res.requestId);
        assert.equal(row.outcome, 'upstream_error');
        assert.equal(row.errorCode, 'upstream_unreachable');
      });
    }
  }
});

describe('a provider that rejects the gateway’s own key', () => {
  let h: Harness;
  before(async () => {
    // the mock expects another (equally fake, TEST-ONLY) key than the one the gateway holds
    h = await startHarness({ mockKey: 'sk-fake-TEST-ONLY-some-other-key-99999999999999' });
  });
  after(async () => {
    await h.close();
  });

  for (const route of ROUTES) {
    it(`answers the ${route.name} route with 502 upstream_auth_failed, naming no part of the key`, async () => {
      const res = await send(h, route, '', false);
      assert.equal(res.status, 502);
      assert.equal(errorCode(res.text, route.dialect), 'upstream_auth_failed');
      assertNoProviderText(res.text);
      assert.ok(h.logs.lines.some((line) => line.includes('"event":"upstream_auth_failed"') && line.includes(res.requestId)));
      // the mock's real 401 names the gateway key masked (sk-fake****0000): it must go nowhere
      assert.ok(!h.logs.text().includes('****'));
    });
  }
});

describe('a provider answer larger than server.max_upstream_response_bytes', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: { server: { max_upstream_response_bytes: 2048 } } });
  });
  after(async () => {
    await h.close();
  });

  it('is refused with 502 upstream_invalid_response, never relayed in part; a small answer still passes', async () => {
    const big = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${h.key}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long please [[mock:tokens=2000]]' }] }),
    });
    const text = await big.text();
    assert.equal(big.status, 502, text);
    assert.equal(JSON.parse(text).error.code, 'upstream_invalid_response');
    assert.ok(text.length < 1024, 'the answer is the gateway error alone');
    const small = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${h.key}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'short [[mock:tokens=3]]' }] }),
    });
    assert.equal(small.status, 200);
    // the gateway keeps serving: the connection to the provider was dropped, not poisoned
    assert.equal((await fetch(`${h.url}/healthz`)).status, 200);
  });
});

/**
 * A provider that answers every request with `status` and a body that never ends (or, `cut`, one
 * that breaks off after a few bytes of the length it announced); tells whether the gateway hung up.
 */
async function startEndlessProvider(status: number, cut = false) {
  const state = { closed: false, sent: 0, port: 0 };
  const server = createServer((req, res) => {
    req.resume();
    if (cut) {
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': '1000', 'retry-after': '2' });
      res.write('{"error":{');
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(16_384, 0x20);
    const timer = setInterval(() => {
      if (res.writableLength < 1_048_576) {
        res.write(chunk);
        state.sent += chunk.length;
      }
    }, 1);
    res.once('close', () => {
      state.closed = true;
      clearInterval(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as { port: number }).port;
  const keyDir = mkdtempSync(join(tmpdir(), 'keywarden-endless-'));
  const keyFile = join(keyDir, 'openai-key');
  writeFileSync(keyFile, FAKE_PROVIDER_KEY, { mode: 0o600 });
  const h = await startHarness({
    config: {
      providers: {
        openai: { type: 'openai', base_url: `http://127.0.0.1:${state.port}/v1`, api_key: `file:${keyFile}`, timeout: '5s' },
      },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
      tenants: { defaults: { policy: { models: ['gpt-4o-mini'], params: ['stream'], tools: false, files: false } } },
    },
  });
  return {
    h,
    state,
    /** Waits up to 2 s for the gateway to hang up on the provider. */
    async hungUp(): Promise<boolean> {
      const deadline = Date.now() + 2_000;
      while (!state.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return state.closed;
    },
    async close() {
      // the provider hangs up first: a gateway that kept reading would otherwise hold its own close open
      server.closeAllConnections();
      await h.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(keyDir, { recursive: true, force: true });
    },
  };
}

async function chatThrough(h: Harness, stream: boolean) {
  const res = await fetch(`${h.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.key}` },
    body: JSON.stringify({ model: 'gpt-4o-mini', ...(stream ? { stream: true } : {}), messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() as { error: { code: string } } };
}

describe('a provider that answers a stream request with an endless non-stream body', () => {
  it('answers 502 and stops reading the provider at once (found in review: the body was drained forever)', async () => {
    const provider = await startEndlessProvider(200);
    try {
      const res = await chatThrough(provider.h, true);
      assert.equal(res.status, 502);
      assert.equal(res.body.error.code, 'upstream_invalid_response');
      assert.ok(await provider.hungUp(), `the gateway kept reading the provider (${provider.state.sent} bytes sent)`);
    } finally {
      await provider.close();
    }
  });
});

describe('a provider that answers an error with an endless body', () => {
  for (const stream of [false, true]) {
    it(`maps the status without reading more than a hint of the body, and stops reading the provider (${stream ? 'stream' : 'whole'} request)`, async () => {
      const provider = await startEndlessProvider(500);
      try {
        const res = await chatThrough(provider.h, stream);
        assert.equal(res.status, 502);
        assert.equal(res.body.error.code, 'upstream_error');
        assert.ok(await provider.hungUp(), `the gateway kept reading the provider (${provider.state.sent} bytes sent)`);
      } finally {
        await provider.close();
      }
    });
  }
});

describe('a provider whose error answer breaks off mid-body', () => {
  for (const stream of [false, true]) {
    it(`is still mapped by its status (${stream ? 'stream' : 'whole'} request): the body is only a hint`, async () => {
      const provider = await startEndlessProvider(429, true);
      try {
        const res = await chatThrough(provider.h, stream);
        assert.equal(res.status, 429);
        assert.equal(res.body.error.code, 'upstream_rate_limited');
        assert.equal(res.retryAfter, '2');
      } finally {
        await provider.close();
      }
    });
  }
});
