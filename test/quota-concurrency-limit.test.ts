/**
 * `concurrent_requests`: the most requests of a tenant (or of one key) in flight at once, so one
 * tenant holding many slow streams cannot take every upstream connection from the others
 * (unbounded consumption, noisy neighbour).
 *
 * Through a real gateway and the mock provider's delay and stream faults:
 * - over the limit: 429 `tenant_concurrent_requests_exceeded` / `key_concurrent_requests_exceeded`,
 *   `Retry-After: 1`, the endpoint's error shape, and the provider never called;
 * - every way a request ends gives its slot back exactly once (whole answer, completed stream,
 *   broken stream, client abort before and during the answer, upstream error and timeout);
 *   refusals before admission (validation, policy, DLP) never take one;
 * - a key's limit counts apart from its tenant's; the CLI flag and the admin API set it;
 * - on Redis, two gateway processes share the slots, and a gateway killed with SIGKILL while
 *   holding slots frees them when their lease ends.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';
import { createRedisCounterStore } from '../src/quota/redis-store.js';
import { counterKey, inFlightWindow, parseCounterKey, type Scope } from '../src/quota/windows.js';
import type { CounterStore } from '../src/quota/types.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { Gateway } from '../src/main.js';
import { CONTRACT_POLICY, postJson, startHarness, type Harness } from './helpers/harness.js';
import { cliEnv, runCli, startServeReplicas, type CliProcess } from './helpers/cli-process.js';
import {
  adminPut, chat, gatewayOnSameStore, ledgerRow, rateHeaders, readCounter, roomInMinute, sleep, tenantIdOf, until,
} from './helpers/quota-http.js';
import { FAKE } from './fixtures/detect/fixtures.js';

const REDIS_URL = process.env['REDIS_URL'];
const SKIP_REDIS = REDIS_URL
  ? undefined
  : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379): the two-process Redis runs are skipped';

// Plainly fake secrets: they unlock nothing, anywhere.
const FAKE_PROVIDER_KEY = 'sk-fake-TEST-ONLY-concurrency-limit-00000000000'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-conc-limit-000000'; // fake, TEST ONLY
const FAKE_HMAC_KEY = 'fake-prompt-hmac-TEST-ONLY-conc-limit-00000'; // fake, TEST ONLY
// FAKE, TEST ONLY: a detector fixture (an OpenAI project-key shape with "FAKE" inside); unlocks nothing
const FAKE_SECRET_IN_PROMPT = FAKE.openaiProject;

/** The in-flight counter of a tenant (`t`) or key (`k`): one key for as long as it is used. */
function slotsKey(scope: Scope, id: string): string {
  return counterKey(scope, id, 'con', inFlightWindow(Date.now(), 1000));
}

function chatCalls(mock: MockProvider): number {
  return mock.received.filter((r) => r.path === '/v1/chat/completions' || r.path === '/v1/messages').length;
}

async function inFlight(gateway: Gateway, scope: Scope, id: string): Promise<number> {
  return (await readCounter(gateway, slotsKey(scope, id))).reserved;
}

/** Waits (bounded) until the in-flight counter reads `count`; fails with the last value seen. */
async function untilInFlight(read: () => Promise<number>, count: number, what: string, timeoutMs = 5000): Promise<void> {
  let last = -1;
  await until(async () => (last = await read()) === count, `${what} (in flight: ${count})`, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; last seen ${last}`);
  });
}

interface Sent {
  status: number;
  text: string;
  headers: Headers;
}

/**
 * Starts a chat request without waiting for it: `answer` settles with what the client got
 * (status 0 and the error when the request itself failed); `abort` leaves; `firstChunk` resolves
 * once a streamed answer's first bytes arrived.
 */
function start(url: string, key: string, content: string, opts: { stream?: boolean; maxTokens?: number } = {}) {
  const controller = new AbortController();
  let firstChunk!: () => void;
  const gotFirst = new Promise<void>((resolve) => { firstChunk = resolve; });
  const answer: Promise<Sent> = (async () => {
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: opts.maxTokens ?? 40, messages: [{ role: 'user', content }], ...(opts.stream ? { stream: true } : {}) }),
        signal: controller.signal,
      });
      let text = '';
      const reader = res.body?.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const chunk = await reader?.read();
        if (!chunk || chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
        firstChunk();
      }
      return { status: res.status, text, headers: res.headers };
    } catch (err) {
      return { status: 0, text: (err as Error).name, headers: new Headers() };
    }
  })();
  return { answer, firstChunk: gotFirst, abort: () => controller.abort() };
}

function assertConcurrencyRefusal(res: { status: number; headers: Headers; json: Record<string, any> }, code: string): void {
  assert.equal(res.status, 429, JSON.stringify(res.json));
  assert.equal(res.json['error']?.code, code);
  assert.equal(res.json['error']?.type, 'rate_limit_error');
  assert.equal(res.headers.get('retry-after'), '1', 'a concurrency refusal says: retry in a second');
}

describe('concurrent_requests on one gateway (embedded counter store)', () => {
  let h: Harness;

  before(async () => {
    // a provider timeout of 3 s: the timeout case below, and an upper bound on how long a slot
    // could stay held if a client's abort were not passed on
    h = await startHarness({ timeout: '3s' });
  });
  after(async () => {
    await h?.close();
  });

  it('refuses a third simultaneous request with 429 tenant_concurrent_requests_exceeded and Retry-After: 1, never calling the provider; admits a new one once the first ends', async () => {
    const { key } = await h.tenantKey('two-at-once', { limits: { concurrent_requests: 2 } });
    const tenantId = await tenantIdOf(h.gateway, 'two-at-once');
    const calls = chatCalls(h.mock);
    const first = start(h.url, key, '[[mock:delay=700]] first');
    const second = start(h.url, key, '[[mock:delay=2500]] second');
    await until(() => chatCalls(h.mock) === calls + 2, 'both requests to reach the provider');
    assert.deepEqual(await readCounter(h.gateway, slotsKey('t', tenantId)), { used: 0, reserved: 2 });

    const third = await chat(h.url, key, 'third');
    assertConcurrencyRefusal(third, 'tenant_concurrent_requests_exceeded');
    // only a concurrency limit: no x-ratelimit-* header describes it (it has no reset time)
    assert.deepEqual(rateHeaders(third.headers), {});
    // the Anthropic endpoint answers in its own error shape
    const messages = await postJson(`${h.url}/v1/messages`, key, { model: 'claude-3-5-haiku-latest', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] },
      { 'anthropic-version': '2023-06-01' });
    assert.equal(messages.status, 429);
    assert.equal(messages.json.type, 'error');
    assert.equal(messages.json.error.type, 'rate_limit_error');
    assert.equal(messages.json.error.code, 'tenant_concurrent_requests_exceeded');
    assert.equal(messages.headers.get('retry-after'), '1');
    assert.equal(chatCalls(h.mock), calls + 2, 'the refused requests never reached the provider');

    // the first ends: its slot frees and a new request is admitted while the second still runs
    assert.equal((await first.answer).status, 200);
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 1, 'the first request to give its slot back');
    const fourth = await chat(h.url, key, 'fourth');
    assert.equal(fourth.status, 200, fourth.text);
    assert.deepEqual(rateHeaders(fourth.headers), {});
    assert.equal((await second.answer).status, 200);
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 0, 'every slot to be given back');
    // settlement adds nothing to an in-flight counter
    assert.deepEqual(await readCounter(h.gateway, slotsKey('t', tenantId)), { used: 0, reserved: 0 });

    // a refusal is recorded as one and consumed nothing
    const row = await ledgerRow(h.gateway, third.headers.get('x-request-id'));
    assert.equal(row.outcome, 'refused');
    assert.equal(row.status, 429);
    assert.equal(row.errorCode, 'tenant_concurrent_requests_exceeded');
    assert.equal(row.inputTokens + row.outputTokens, 0);
  });

  it('gives the slot back exactly once however a request ends: whole, streamed, broken, aborted, upstream error or timeout', async () => {
    // limit 2, one of them held throughout by a slow stream: after each case the count must come
    // back to exactly 1 (a leaked slot leaves 2; and while a case runs, a third is refused)
    const { key } = await h.tenantKey('every-exit', { limits: { concurrent_requests: 2 } });
    const tenantId = await tenantIdOf(h.gateway, 'every-exit');
    const count = () => inFlight(h.gateway, 't', tenantId);
    // 300 events 400 ms apart: two minutes, far longer than the cases below
    const anchor = start(h.url, key, '[[mock:chunk-delay=400,tokens=300]] the long stream that holds one slot', { stream: true, maxTokens: 1000 });
    await anchor.firstChunk;
    await untilInFlight(count, 1, 'the anchor stream to hold its slot');

    interface Case {
      name: string;
      content: string;
      stream?: boolean;
      /** How the request ends: by itself (default), or the client leaves (`abort-*`). */
      end?: 'abort-before-answer' | 'abort-mid-stream';
      check?: (sent: Sent) => void;
    }
    const cases: Case[] = [
      { name: 'whole answer', content: '[[mock:delay=800]] whole', check: (s) => assert.equal(s.status, 200) },
      { name: 'completed stream', content: '[[mock:delay=800]] stream', stream: true, check: (s) => assert.ok(s.status === 200 && s.text.includes('[DONE]'), s.text) },
      { name: 'stream reset by the provider', content: '[[mock:delay=800,reset-mid-stream]] broken', stream: true, check: (s) => assert.ok(!s.text.includes('[DONE]')) },
      { name: 'stream ended early by the provider', content: '[[mock:delay=800,truncate]] truncated', stream: true, check: (s) => assert.ok(!s.text.includes('[DONE]')) },
      { name: 'upstream 500', content: '[[mock:delay=800,status=500]] failing', check: (s) => assert.ok(s.status >= 500, String(s.status)) },
      { name: 'upstream 500 on a stream', content: '[[mock:delay=800,status=500]] failing stream', stream: true, check: (s) => assert.ok(s.status >= 500, String(s.status)) },
      { name: 'upstream 429 (a refusal after admission)', content: '[[mock:delay=800,status=429]] limited upstream', check: (s) => assert.equal(s.status, 429) },
      { name: 'upstream timeout', content: '[[mock:delay=8000]] too slow', check: (s) => assert.equal(s.status, 504) },
      // the provider would hold these for 8 s (3 s until the gateway's timeout): only the abort frees them sooner
      { name: 'client leaves before the answer', content: '[[mock:delay=8000]] whole, client leaves', end: 'abort-before-answer' },
      { name: 'client leaves mid-stream', content: '[[mock:stall=8000]] stream, client leaves', stream: true, end: 'abort-mid-stream' },
    ];
    for (const c of cases) {
      const calls = chatCalls(h.mock);
      const req = start(h.url, key, c.content, c.stream ? { stream: true } : {});
      await until(() => chatCalls(h.mock) === calls + 1, `${c.name}: the request to reach the provider`);
      if (c.end === 'abort-mid-stream') await req.firstChunk;
      // while it runs it holds a slot: the limit is full
      assert.equal(await count(), 2, `${c.name}: holds a slot while in flight`);
      assertConcurrencyRefusal(await chat(h.url, key, 'probe'), 'tenant_concurrent_requests_exceeded');
      let timeoutMs = 6000;
      if (c.end) {
        req.abort();
        // freed by the abort itself, well before the provider or the gateway's timeout would end it
        timeoutMs = 1500;
      }
      const sent = await req.answer;
      c.check?.(sent);
      await untilInFlight(count, 1, `${c.name}: the slot to be given back`, timeoutMs);
    }
    // the anchor still runs and holds exactly its own slot; when it is cancelled, nothing is left
    assert.equal(await count(), 1);
    anchor.abort();
    await anchor.answer;
    await untilInFlight(count, 0, 'the anchor to give its slot back', 1500);
    // every case was recorded once, the aborted ones as client_aborted
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listUsage({ tenantId, limit: 1000 });
    assert.equal(rows.filter((r) => r.outcome === 'client_aborted').length, 3);
  });

  it('takes no slot for refusals before admission (validation, policy, DLP), even while the limit is full', async () => {
    const { key } = await h.tenantKey('guarded', { limits: { concurrent_requests: 1 }, dlp: { secrets: 'block' } });
    const tenantId = await tenantIdOf(h.gateway, 'guarded');
    const calls = chatCalls(h.mock);
    const slow = start(h.url, key, '[[mock:delay=1500]] holds the only slot');
    await until(() => chatCalls(h.mock) === calls + 1, 'the slow request to reach the provider');

    // refused for what they are, not for the full limit
    const dlp = await chat(h.url, key, `my key is ${FAKE_SECRET_IN_PROMPT}`);
    assert.equal(dlp.status, 400);
    assert.equal(dlp.json.error.code, 'dlp_secret_blocked');
    const invalid = await postJson(`${h.url}/v1/chat/completions`, key, { model: 'gpt-4o-mini', messages: 'not a list' });
    assert.equal(invalid.status, 400);
    assert.match(invalid.json.error.code, /^request_/);
    const notAllowed = await chat(h.url, key, 'hello', { model: 'no-such-model' });
    assert.ok(notAllowed.status === 400 || notAllowed.status === 403 || notAllowed.status === 404, String(notAllowed.status));
    assert.doesNotMatch(notAllowed.json.error.code, /concurrent/);
    assert.equal(await inFlight(h.gateway, 't', tenantId), 1, 'only the slow request holds a slot');
    assertConcurrencyRefusal(await chat(h.url, key, 'over'), 'tenant_concurrent_requests_exceeded');
    assert.equal((await slow.answer).status, 200);
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 0, 'the slow request to give its slot back');

    // many refusals in a row leave the one slot free
    for (let i = 0; i < 5; i++) {
      assert.equal((await chat(h.url, key, `again ${FAKE_SECRET_IN_PROMPT}`)).status, 400);
      assert.equal((await postJson(`${h.url}/v1/chat/completions`, key, { model: 'gpt-4o-mini' })).status, 400);
    }
    assert.equal(await inFlight(h.gateway, 't', tenantId), 0);
    assert.equal((await chat(h.url, key, 'fits')).status, 200);
    assert.equal(chatCalls(h.mock), calls + 2, 'only the two admitted requests reached the provider');
  });

  it("counts a key's limit apart from its tenant's: key_ refusals for one key, tenant_ refusals once the tenant is full", async () => {
    const policy = { limits: { concurrent_requests: 3 }, key_limits: { concurrent_requests: 1 } };
    const a = await h.tenantKey('keyed', policy);
    const [b, c, d] = [await h.tenantKey('keyed'), await h.tenantKey('keyed'), await h.tenantKey('keyed')];
    const tenantId = await tenantIdOf(h.gateway, 'keyed');
    const calls = chatCalls(h.mock);
    const a1 = start(h.url, a.key, '[[mock:delay=1500]] a1');
    await until(() => chatCalls(h.mock) === calls + 1, 'a1 to reach the provider');
    // the key is full, the tenant is not
    assertConcurrencyRefusal(await chat(h.url, a.key, 'a2'), 'key_concurrent_requests_exceeded');
    const b1 = start(h.url, b.key, '[[mock:delay=1500]] b1');
    const c1 = start(h.url, c.key, '[[mock:delay=1500]] c1');
    await until(() => chatCalls(h.mock) === calls + 3, 'b1 and c1 to reach the provider');
    // d has nothing in flight, but the tenant has its three
    assertConcurrencyRefusal(await chat(h.url, d.key, 'd1'), 'tenant_concurrent_requests_exceeded');
    assert.equal(await inFlight(h.gateway, 't', tenantId), 3);
    for (const k of [a, b, c]) assert.equal(await inFlight(h.gateway, 'k', k.id), 1);
    assert.equal(await inFlight(h.gateway, 'k', d.id), 0, 'a refused request takes no slot on any counter');
    for (const r of [a1, b1, c1]) assert.equal((await r.answer).status, 200);
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 0, 'every slot to be given back');
    assert.equal(chatCalls(h.mock), calls + 3);

    // a key's own limit (admin API) replaces the tenant's key_limits for that key
    const put = await adminPut(h.adminUrl, `/admin/keys/${a.id}/limits`, { limits: { concurrent_requests: 2 } });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.deepEqual(put.json.limits, { concurrent_requests: 2 });
    const x = start(h.url, a.key, '[[mock:delay=1200]] x');
    const y = start(h.url, a.key, '[[mock:delay=1200]] y');
    await until(() => chatCalls(h.mock) === calls + 5, 'both of the key\'s requests to reach the provider');
    assertConcurrencyRefusal(await chat(h.url, a.key, 'z'), 'key_concurrent_requests_exceeded');
    for (const r of [x, y]) assert.equal((await r.answer).status, 200);
  });

  it('keeps x-ratelimit-* headers about request windows: a concurrency refusal consumes nothing there, and a full window is reported first', async () => {
    await roomInMinute(10_000);
    const { key } = await h.tenantKey('with-rpm', { limits: { requests_per_minute: 100, concurrent_requests: 1 } });
    const tenantId = await tenantIdOf(h.gateway, 'with-rpm');
    const calls = chatCalls(h.mock);
    const slow = start(h.url, key, '[[mock:delay=1200]] slow');
    await until(() => chatCalls(h.mock) === calls + 1, 'the slow request to reach the provider');
    assert.equal(await inFlight(h.gateway, 't', tenantId), 1);
    const refused = await chat(h.url, key, 'probe');
    assertConcurrencyRefusal(refused, 'tenant_concurrent_requests_exceeded');
    // the request window as it stands: the slow request counted, the refused one not
    assert.equal(refused.headers.get('x-ratelimit-limit-requests'), '100');
    assert.equal(refused.headers.get('x-ratelimit-remaining-requests'), '99');
    const slowAnswer = await slow.answer;
    assert.equal(slowAnswer.status, 200);
    assert.equal(slowAnswer.headers.get('x-ratelimit-remaining-requests'), '99');
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 0, 'the slot to be given back');
    const next = await chat(h.url, key, 'next');
    assert.equal(next.status, 200);
    assert.equal(next.headers.get('x-ratelimit-remaining-requests'), '98', 'the refused request used nothing of the window');

    // over both a window and the concurrency limit: the window's refusal (its real wait) is given
    const { key: tight } = await h.tenantKey('rpm-one', { limits: { requests_per_minute: 1, concurrent_requests: 1 } });
    const holding = start(h.url, tight, '[[mock:delay=1000]] holding');
    await until(async () => (await inFlight(h.gateway, 't', await tenantIdOf(h.gateway, 'rpm-one'))) === 1, 'the first request to hold its slot');
    const both = await chat(h.url, tight, 'over both');
    assert.equal(both.status, 429);
    assert.equal(both.json.error.code, 'tenant_requests_per_minute_exceeded');
    assert.ok(Number(both.headers.get('retry-after')) >= 1);
    assert.equal((await holding.answer).status, 200);
  });

  it('sets and removes the limit with `keywarden tenants set-limits --concurrent` and `keys set-limits --concurrent`', async () => {
    const { key, id: keyId } = await h.tenantKey('cli-concurrent');
    const tenantId = await tenantIdOf(h.gateway, 'cli-concurrent');
    // a config file for the CLI over the harness's own SQLite file and secret files
    const configPath = join(h.dir, 'cli-concurrent.json');
    writeFileSync(configPath, JSON.stringify({
      listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
      store: `sqlite:${join(h.dir, 'keywarden.db')}`,
      admin: { token: `file:${join(h.dir, 'admin-token')}` },
      audit: { prompt_hmac_key: `file:${join(h.dir, 'prompt-key')}` },
      providers: {
        openai: { type: 'openai', base_url: `${h.mock.url}/v1`, api_key: `file:${join(h.dir, 'openai-key')}` },
        anthropic: { type: 'anthropic', base_url: h.mock.url, api_key: `file:${join(h.dir, 'anthropic-key')}` },
      },
      models: { 'gpt-4o-mini': { provider: 'openai' }, 'claude-3-5-haiku-latest': { provider: 'anthropic' } },
      tenants: { defaults: { policy: { ...CONTRACT_POLICY, models: ['gpt-4o-mini', 'claude-3-5-haiku-latest'] } } },
    }));
    const cli = (...args: string[]) => runCli([...args, '--config', configPath], { cwd: h.dir, env: cliEnv({}) });

    const set = await cli('tenants', 'set-limits', 'cli-concurrent', '--concurrent', '1', '--json');
    assert.equal(set.code, 0, set.stderr);
    assert.equal((JSON.parse(set.stdout) as { policy: { limits: Record<string, number> } }).policy.limits['concurrent_requests'], 1);
    const calls = chatCalls(h.mock);
    const slow = start(h.url, key, '[[mock:delay=1000]] slow');
    await until(() => chatCalls(h.mock) === calls + 1, 'the slow request');
    assertConcurrencyRefusal(await chat(h.url, key, 'second'), 'tenant_concurrent_requests_exceeded');
    assert.equal((await slow.answer).status, 200);
    await untilInFlight(() => inFlight(h.gateway, 't', tenantId), 0, 'the slot to be given back');

    // a count of at least 1: 0 is refused, like any count limit
    const zero = await cli('tenants', 'set-limits', 'cli-concurrent', '--concurrent', '0');
    assert.notEqual(zero.code, 0);
    assert.match(zero.stderr, /concurrent_requests/);
    const bad = await cli('tenants', 'set-limits', 'cli-concurrent', '--concurrent', 'many');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--concurrent must be a number or "none"/);

    // the key's own limit, then the tenant's removed
    const keySet = await cli('keys', 'set-limits', keyId, '--concurrent', '2', '--json');
    assert.equal(keySet.code, 0, keySet.stderr);
    assert.deepEqual((JSON.parse(keySet.stdout) as { limits: unknown }).limits, { concurrent_requests: 2 });
    const unset = await cli('tenants', 'set-limits', 'cli-concurrent', '--concurrent', 'none');
    assert.equal(unset.code, 0, unset.stderr);
    const before2 = chatCalls(h.mock);
    const p = start(h.url, key, '[[mock:delay=1000]] p');
    const q = start(h.url, key, '[[mock:delay=1000]] q');
    await until(() => chatCalls(h.mock) === before2 + 2, 'two requests of the key, the tenant limit removed');
    assertConcurrencyRefusal(await chat(h.url, key, 'third'), 'key_concurrent_requests_exceeded');
    for (const r of [p, q]) assert.equal((await r.answer).status, 200);
  });

  it('starts an in-flight counter at 0 after a restart (never seeded from the usage ledger)', async () => {
    assert.equal(parseCounterKey(slotsKey('t', 't_x')), undefined, 'the ledger seed skips in-flight counters');
    // tenant two-at-once has ledger rows from the first case
    const { key } = await h.tenantKey('two-at-once');
    const tenantId = await tenantIdOf(h.gateway, 'two-at-once');
    await h.gateway.writer.flush();
    assert.ok((await h.gateway.store.records.listUsage({ tenantId, limit: 100 })).length >= 4);
    const restarted = await gatewayOnSameStore(h);
    try {
      const calls = chatCalls(h.mock);
      const x = start(restarted.url, key, '[[mock:delay=1000]] x');
      const y = start(restarted.url, key, '[[mock:delay=1000]] y');
      await until(() => chatCalls(h.mock) === calls + 2, 'both requests to reach the provider');
      assert.deepEqual(await readCounter(restarted.gateway, slotsKey('t', tenantId)), { used: 0, reserved: 2 });
      assertConcurrencyRefusal(await chat(restarted.url, key, 'z'), 'tenant_concurrent_requests_exceeded');
      for (const r of [x, y]) assert.equal((await r.answer).status, 200);
      await untilInFlight(() => inFlight(restarted.gateway, 't', tenantId), 0, 'the restarted gateway to give the slots back');
    } finally {
      await restarted.gateway.close();
    }
  });
});

describe('concurrent_requests shared by two gateway processes on Redis', SKIP_REDIS ? { skip: SKIP_REDIS } : {}, () => {
  /** Short, so the SIGKILL case waits seconds, not minutes; every request here is shorter. */
  const LEASE_MS = 4000;
  // every Redis key of this run starts with this, and is deleted in `after`
  const prefix = `kwtest-conc-limit-${randomBytes(6).toString('hex')}:`;
  let dir: string;
  let mock: MockProvider;
  let key: string;
  let tenantId: string;
  let redis: CounterStore;
  const gateways: Array<{ proc: CliProcess; url: string }> = [];

  const slots = async () => (await redis.read([slotsKey('t', tenantId)], Date.now()))[0]?.reserved ?? -1;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-conc-limit-'));
    mock = await createMockProvider({ port: 0, apiKey: FAKE_PROVIDER_KEY });
    const secret = (name: string, value: string) => {
      const path = join(dir, name);
      writeFileSync(path, value, { mode: 0o600 });
      return `file:${path}`;
    };
    const providerKey = secret('provider-key', FAKE_PROVIDER_KEY);
    const dbPath = join(dir, 'keywarden.db');
    const doc = {
      listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
      store: `sqlite:${dbPath}`,
      admin: { token: secret('admin-token', FAKE_ADMIN_TOKEN) },
      audit: { prompt_hmac_key: secret('prompt-hmac-key', FAKE_HMAC_KEY) },
      log: { level: 'info' },
      providers: {
        openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: providerKey, timeout: '30s' },
        anthropic: { type: 'anthropic', base_url: mock.url, api_key: providerKey, timeout: '30s' },
      },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
      tenants: { defaults: { policy: { ...CONTRACT_POLICY, models: ['gpt-4o-mini'], limits: { concurrent_requests: 2 } } } },
      limits: { store: REDIS_URL, key_prefix: prefix, reservation_lease: `${LEASE_MS}ms` },
      shutdown: { drain_timeout: '2s' },
    };
    const configPath = join(dir, 'keywarden.yaml');
    writeFileSync(configPath, `# generated by quota-concurrency-limit.test.ts; secrets are fake\n${stringify(doc)}`, { mode: 0o600 });
    const env = cliEnv({});
    const created = await runCli(['tenants', 'create', 'shared', '--config', configPath], { cwd: dir, env });
    assert.equal(created.code, 0, created.stderr);
    const issued = await runCli(['keys', 'issue', '--tenant', 'shared', '--json', '--config', configPath], { cwd: dir, env });
    assert.equal(issued.code, 0, issued.stderr);
    key = (JSON.parse(issued.stdout) as { key: string }).key;
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      tenantId = (await store.tenants.getByName('shared'))?.id as string;
    } finally {
      await store.close();
    }
    assert.ok(tenantId);

    gateways.push(...(await startServeReplicas(configPath, { cwd: dir, env }, 2)));
    redis = createRedisCounterStore({ url: REDIS_URL as string, keyPrefix: prefix });
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.proc.stop('SIGKILL')));
    await redis?.close();
    await mock?.close();
    if (REDIS_URL) {
      const admin = new Redis(REDIS_URL, { lazyConnect: true });
      await admin.connect();
      let cursor = '0';
      do {
        const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await admin.del(...keys);
      } while (cursor !== '0');
      await admin.quit();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shares the slots: with two requests in flight on one process each, both processes refuse a third', async () => {
    const [a, b] = [gateways[0], gateways[1]] as [{ url: string }, { url: string }];
    const calls = chatCalls(mock);
    const first = start(a.url, key, '[[mock:delay=1500]] on A');
    const second = start(b.url, key, '[[mock:delay=1500]] on B');
    await until(() => chatCalls(mock) === calls + 2, 'both requests to reach the provider');
    assert.equal(await slots(), 2);
    for (const g of [a, b]) {
      const refused = await chat(g.url, key, 'third');
      assertConcurrencyRefusal(refused, 'tenant_concurrent_requests_exceeded');
    }
    assert.equal(chatCalls(mock), calls + 2, 'the refused requests never reached the provider');
    for (const r of [first, second]) assert.equal((await r.answer).status, 200);
    await untilInFlight(slots, 0, 'both processes to give their slots back');
    // both slots free again: one request on each process at once
    const again = await Promise.all([chat(a.url, key, 'again on A'), chat(b.url, key, 'again on B')]);
    assert.deepEqual(again.map((r) => r.status), [200, 200]);
  });

  it('frees the slots of a process killed with SIGKILL when their lease ends, not before', async () => {
    const [a, b] = [gateways[0], gateways[1]] as [{ proc: CliProcess; url: string }, { proc: CliProcess; url: string }];
    await untilInFlight(slots, 0, 'an idle tenant');
    const calls = chatCalls(mock);
    // two requests the provider would answer only in a minute
    const held = [start(a.url, key, '[[mock:delay=60000]] held 1'), start(a.url, key, '[[mock:delay=60000]] held 2')];
    await until(() => chatCalls(mock) === calls + 2, 'both held requests to reach the provider');
    const takenAt = Date.now();
    assert.equal(await slots(), 2);
    assertConcurrencyRefusal(await chat(b.url, key, 'before the kill'), 'tenant_concurrent_requests_exceeded');

    const killed = await a.proc.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    for (const r of held) assert.equal((await r.answer).status, 0, 'the killed process never answered');
    // the dead process never settled: its slots stay taken until the lease ends
    const stillHeld = await chat(b.url, key, 'right after the kill');
    if (Date.now() - takenAt < LEASE_MS - 500) {
      assertConcurrencyRefusal(stillHeld, 'tenant_concurrent_requests_exceeded');
    }
    // then the other process admits again, by itself (its next admission releases the expired leases)
    let admittedAt = 0;
    await until(async () => {
      const res = await chat(b.url, key, 'after the lease');
      if (res.status === 200) admittedAt = Date.now();
      else {
        assertConcurrencyRefusal(res, 'tenant_concurrent_requests_exceeded');
        await sleep(100);
      }
      return res.status === 200;
    }, 'the dead process\'s slots to be freed by their lease', LEASE_MS + 10_000);
    assert.ok(admittedAt - takenAt >= LEASE_MS - 1000, `freed after ${admittedAt - takenAt} ms, before the lease of ${LEASE_MS} ms`);
    await untilInFlight(slots, 0, 'nothing left in flight');
    const both = await Promise.all([chat(b.url, key, 'one'), chat(b.url, key, 'two')]);
    assert.deepEqual(both.map((r) => r.status), [200, 200]);
  });
});
