/**
 * Quotas under concurrency (issue 3, "Must show"):
 *
 * - 200 simultaneous requests from one tenant whose `tokens_per_day` budget admits about 50 of
 *   them: the settled usage in the ledger never exceeds the budget, and every refused request got
 *   a 429 `tenant_tokens_per_day_exceeded`. Once against one embedded gateway (memory counter
 *   store), once against three `keywarden serve` processes sharing one Redis and one SQLite file.
 *   Then, one at a time, what the over-estimates left is filled until a refusal: the settled usage
 *   ends within one reservation of the budget, and each budget alert (50, 80, 100 %) is raised
 *   once, across the replicas too.
 * - Whole answers, streams, streams that end early, upstream errors and client aborts all settle
 *   their reservation: the reserved total returns to zero when the gateway is idle.
 *
 * The per-request reservation is the input estimate (the gateway's own tokenizer) plus the
 * `max_tokens` sent; the mock provider is told to produce more than that cap (`[[mock:tokens=40]]`),
 * so every admitted request uses exactly its cap of output and nearly all of its reservation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch } from 'undici';
import { stringify } from 'yaml';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { createTokenEstimator } from '../src/quota/estimate.js';
import { createRedisCounterStore } from '../src/quota/redis-store.js';
import { counterKey, windowAt } from '../src/quota/windows.js';
import type { CounterStore } from '../src/quota/types.js';
import type { AuditRow, UsageRecord } from '../src/store/types.js';
import { CONTRACT_POLICY, startHarness, type Harness } from './helpers/harness.js';
import { cliEnv, jsonLines, runCli, startServeReplicas, type CliProcess } from './helpers/cli-process.js';

const REDIS_URL = process.env['REDIS_URL'];
const SKIP_REDIS = REDIS_URL
  ? undefined
  : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379): the three-replica Redis run is skipped';

// Plainly fake secrets: they unlock nothing, anywhere.
const FAKE_PROVIDER_KEY = 'sk-fake-TEST-ONLY-quota-concurrency-000000000000'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-quota-conc-0000000'; // fake, TEST ONLY
const FAKE_HMAC_KEY = 'fake-prompt-hmac-TEST-ONLY-quota-conc-000000'; // fake, TEST ONLY

const TOTAL = 200;
const ADMITS = 50;
const MAX_TOKENS = 20;
/** Asks the mock for more output than the cap, so each answer's output is exactly MAX_TOKENS. */
const CROWD_PROMPT = 'Say hello. [[mock:tokens=40]]';
/** The mock's own input count (ceil(chars / 4) + 3 per message) and its capped output. */
const MOCK_USAGE = Math.ceil(CROWD_PROMPT.length / 4) + 3 + MAX_TOKENS;

function crowdBody(stream: boolean): Record<string, unknown> {
  return { model: 'gpt-4o-mini', max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: CROWD_PROMPT }], ...(stream ? { stream: true } : {}) };
}

/**
 * What admission reserves for one crowd request: the gateway's input estimate plus the output cap.
 * The estimator gives itself 25 ms and counts UTF-8 bytes instead when it runs out (a cold
 * tokenizer on a busy machine), which only ever reserves more; the smallest of a few calls is the
 * tokenizer's own count.
 */
async function reservationPerRequest(): Promise<number> {
  const estimator = await createTokenEstimator();
  let least = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) least = Math.min(least, estimator.estimate('chat', 'openai', 'gpt-4o-mini', crowdBody(false)));
  return least + MAX_TOKENS;
}

interface Answer {
  status: number;
  code: string | undefined;
  text: string;
  retryAfter: string | null;
  limitTokens: string | null;
  remainingTokens: string | null;
}

/** Sends `count` crowd requests at once (every fourth one streamed), spread round-robin over `urls`. */
async function crowd(urls: readonly string[], key: string, count: number): Promise<Answer[]> {
  const agent = new Agent({ connections: count, pipelining: 0, keepAliveTimeout: 1000 });
  try {
    return await Promise.all(Array.from({ length: count }, async (_, i) => {
      const res = await fetch(`${urls[i % urls.length]}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(crowdBody(i % 4 === 3)),
      });
      const text = await res.text();
      let code: string | undefined;
      if (res.status !== 200) {
        try {
          code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
        } catch { /* not JSON */ }
      }
      return {
        status: res.status, code, text, retryAfter: res.headers.get('retry-after'),
        limitTokens: res.headers.get('x-ratelimit-limit-tokens'), remainingTokens: res.headers.get('x-ratelimit-remaining-tokens'),
      };
    }));
  } finally {
    await agent.close();
  }
}

/** The crowd's answers: about 50 admitted, every other one refused by the token budget. */
function assertCrowdAnswers(answers: readonly Answer[], budget: number, reservation: number): number {
  const admitted = answers.filter((a) => a.status === 200);
  // every request that was not admitted got exactly the token-budget refusal, with its headers
  for (const a of answers.filter((x) => x.status !== 200)) assertBudgetRefusal(a, budget);
  // each admitted request uses exactly MOCK_USAGE of the budget, so never more than budget / MOCK_USAGE
  // are admitted; about budget / reservation (50) are. (A reservation can be larger than
  // `reservation` when the estimator runs out of its time budget on a busy machine: hence 40.)
  assert.ok(admitted.length >= ADMITS - 10, `only ${admitted.length} of ${answers.length} admitted`);
  assert.ok(admitted.length <= Math.floor(budget / MOCK_USAGE), `${admitted.length} of ${answers.length} admitted`);
  for (const a of admitted) {
    const remaining = Number(a.remainingTokens);
    assert.ok(Number.isInteger(remaining) && remaining >= 0 && remaining <= budget - reservation, `x-ratelimit-remaining-tokens ${a.remainingTokens}`);
  }
  return admitted.length;
}

function assertBudgetRefusal(a: Answer, budget: number): void {
  assert.equal(a.status, 429, `a refused request answered ${a.status}: ${a.text.slice(0, 200)}`);
  assert.equal(a.code, 'tenant_tokens_per_day_exceeded');
  assert.ok(Number(a.retryAfter) >= 1, 'a refusal carries Retry-After');
  assert.equal(a.limitTokens, String(budget));
}

/**
 * After the crowd, with nothing in flight: one request at a time (waiting each time until it is
 * settled) is admitted while the settled usage leaves room for one more reservation, then refused.
 */
async function topUp(urls: readonly string[], key: string, budget: number, idle: () => Promise<number>): Promise<Answer[]> {
  const out: Answer[] = [];
  for (let i = 0; i < 20; i++) {
    assert.equal(await untilZero(idle), 0);
    const [answer] = await crowd([urls[i % urls.length] as string], key, 1);
    out.push(answer as Answer);
    if (answer?.status !== 200) break;
  }
  const last = out[out.length - 1] as Answer;
  assertBudgetRefusal(last, budget);
  assert.ok(out.slice(0, -1).every((a) => a.status === 200));
  return out;
}

/** The ledger: one row per request, and the settled usage within the budget, using nearly all of it. */
function assertLedger(rows: readonly UsageRecord[], requests: number, admitted: number, budget: number, reservation: number): number {
  assert.equal(rows.length, requests, 'every request, admitted or refused, has a ledger row');
  const successes = rows.filter((r) => r.outcome === 'success');
  assert.equal(successes.length, admitted);
  for (const r of successes) assert.equal(r.inputTokens + r.outputTokens, MOCK_USAGE);
  for (const r of rows.filter((row) => row.outcome !== 'success')) {
    assert.equal(r.status, 429);
    assert.equal(r.errorCode, 'tenant_tokens_per_day_exceeded');
    assert.equal(r.inputTokens + r.outputTokens, 0, 'a refused request consumes nothing');
  }
  const settled = rows.reduce((sum, r) => sum + r.inputTokens + r.outputTokens, 0);
  assert.ok(settled <= budget, `settled ${settled} tokens over a budget of ${budget}`);
  // refused only once no reservation fits (a busy estimator may reserve up to the prompt's bytes more)
  assert.ok(settled > budget - reservation - Buffer.byteLength(CROWD_PROMPT), `settled only ${settled} of ${budget} tokens`);
  return settled;
}

/** Budget alerts of a tenant in the audit trail: the thresholds reported, in order. */
function thresholdPercents(audit: readonly AuditRow[], tenantId: string): number[] {
  return audit
    .filter((a) => a.action === 'quota.threshold' && a.details['tenant'] === tenantId)
    .map((a) => Number(a.details['percent']))
    .sort((x, y) => x - y);
}

/** Waits (bounded) until `read` returns 0; returns the last value. */
async function untilZero(read: () => Promise<number>, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (value !== 0 && Date.now() < deadline) {
    await sleep(20);
    value = await read();
  }
  return value;
}

function chatCalls(mock: MockProvider): number {
  return mock.received.filter((r) => r.path === '/v1/chat/completions').length;
}

describe('200 simultaneous requests against a token budget, embedded counter store', () => {
  let h: Harness;
  let reservation: number;
  let budget: number;

  before(async () => {
    h = await startHarness({ timeout: '10s' });
    reservation = await reservationPerRequest();
    budget = ADMITS * reservation + Math.floor(reservation / 2);
  });
  after(async () => {
    await h?.close();
  });

  it('reserves the input estimate plus max_tokens per request (the basis of the budget below)', async () => {
    const probe = await h.tenantKey('probe', { limits: { tokens_per_day: 1_000_000 } });
    const answers = await crowd([h.url], probe.key, 1);
    assert.equal(answers[0]?.status, 200);
    // exactly `reservation`, or more if the estimator ran out of time and counted bytes
    const reserved = 1_000_000 - Number(answers[0]?.remainingTokens);
    assert.ok(reserved >= reservation && reserved <= reservation + Buffer.byteLength(CROWD_PROMPT), `reserved ${reserved}`);
  });

  it('admits about 50, refuses the rest with 429 tenant_tokens_per_day_exceeded, and settles within the budget', async () => {
    const tenant = await h.tenantKey('crowd', { limits: { tokens_per_day: budget } });
    const tenantId = (await h.gateway.store.tenants.getByName('crowd'))?.id as string;
    const key = counterKey('t', tenantId, 'tok', windowAt('day', Date.now()));
    const reserved = async () => (await h.gateway.counters.read([key], Date.now()))[0]?.reserved ?? -1;
    h.mock.reset();

    const answers = await crowd([h.url], tenant.key, TOTAL);
    const admitted = assertCrowdAnswers(answers, budget, reservation);
    // refused requests never reached the provider
    assert.equal(chatCalls(h.mock), admitted);

    // what the over-estimates left: filled one request at a time, then refused
    const more = await topUp([h.url], tenant.key, budget, reserved);
    const admittedMore = more.length - 1;
    assert.equal(chatCalls(h.mock), admitted + admittedMore);

    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listUsage({ tenantId, limit: 1000 });
    const settled = assertLedger(rows, TOTAL + more.length, admitted + admittedMore, budget, reservation);

    // the counter agrees with the ledger, and nothing stays reserved
    assert.equal(await untilZero(reserved), 0);
    assert.deepEqual(await h.gateway.counters.read([key], Date.now()), [{ used: settled, reserved: 0 }]);
    assert.equal(await untilZero(() => h.gateway.counters.reservedTotal(Date.now())), 0);

    // each budget threshold was reported once (100 %: refused once settled spending left no room)
    let percents: number[] = [];
    for (let i = 0; i < 100 && percents.length < 3; i++) {
      await sleep(20);
      await h.gateway.writer.flush();
      percents = thresholdPercents(await h.gateway.store.records.listAudit({ limit: 10_000 }), tenantId);
    }
    assert.deepEqual(percents, [50, 80, 100]);
    process.stdout.write(`# embedded: ${admitted} of ${TOTAL} admitted at once, ${admittedMore} more one by one; settled ${settled} of ${budget} tokens ` +
      `(reservation ${reservation}, usage ${MOCK_USAGE} per request)\n`);
  });

  it('settles whole, streamed, truncated, failed, reset and client-aborted requests: the reserved total returns to zero', async () => {
    const mixed = await h.tenantKey('mixed', { limits: { tokens_per_day: 1_000_000, requests_per_minute: 1000 } });
    const send = (content: string, stream: boolean, signal?: AbortSignal) => fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${mixed.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: MAX_TOKENS, messages: [{ role: 'user', content }], ...(stream ? { stream: true } : {}) }),
      ...(signal ? { signal } : {}),
    });
    const read = async (res: Awaited<ReturnType<typeof send>>) => {
      try {
        return { status: res.status, text: await res.text() };
      } catch (err) {
        return { status: res.status, text: `(body failed: ${(err as Error).message})` };
      }
    };
    h.mock.reset();

    // requests that finish by themselves, one of each kind
    const finished = await Promise.all([
      send('whole answer', false).then(read),
      send('streamed answer', true).then(read),
      send('[[mock:truncate]] whole cut short', false).then(read),
      send('[[mock:truncate]] stream ends early', true).then(read),
      send('[[mock:status=500]] whole upstream error', false).then(read),
      send('[[mock:status=500]] stream upstream error', true).then(read),
      send('[[mock:reset-mid-stream]] stream reset', true).then(read),
      send('[[mock:reset]] whole reset', false).then(read),
      send('[[mock:malformed]] stream malformed', true).then(read),
    ]);
    assert.deepEqual(finished.slice(0, 2).map((r) => r.status), [200, 200]);
    assert.ok(finished[1]?.text.includes('[DONE]'));
    assert.ok(!finished[3]?.text.includes('[DONE]'), 'the truncated stream did not end with [DONE]');
    for (const i of [2, 4, 5, 7]) assert.ok((finished[i]?.status ?? 0) >= 500, `request ${i} answered ${finished[i]?.status}`);

    // requests the client gives up on: before the answer, before the first byte, mid-stream
    const controllers = [new AbortController(), new AbortController(), new AbortController()];
    const pending = [
      send('[[mock:delay=8000]] whole, client leaves', false, controllers[0]?.signal),
      send('[[mock:delay=8000]] stream, client leaves before the first byte', true, controllers[1]?.signal),
      send('[[mock:stall=8000]] stream, client leaves mid-stream', true, controllers[2]?.signal),
    ].map((p) => p.then(async (res) => {
      // mid-stream: read the first chunk, then leave
      const reader = res.body?.getReader();
      await reader?.read();
      return reader;
    }));
    const deadline = Date.now() + 5000;
    while (chatCalls(h.mock) < finished.length + 3 && Date.now() < deadline) await sleep(10);
    assert.equal(chatCalls(h.mock), finished.length + 3, 'the three slow requests reached the provider');
    const midStream = await pending[2];
    // while they are in flight, their reservations are held
    assert.ok(await h.gateway.counters.reservedTotal(Date.now()) >= 3 * MAX_TOKENS, 'in-flight requests hold reservations');
    for (const c of controllers) c.abort();
    await midStream?.cancel().catch(() => {});
    await Promise.allSettled(pending);

    assert.equal(await untilZero(() => h.gateway.counters.reservedTotal(Date.now())), 0, 'nothing stays reserved once the gateway is idle');

    // every one of them was settled and recorded
    await sleep(50);
    await h.gateway.writer.flush();
    const tenantId = (await h.gateway.store.tenants.getByName('mixed'))?.id as string;
    const rows = await h.gateway.store.records.listUsage({ tenantId, limit: 100 });
    assert.equal(rows.length, finished.length + 3);
    assert.equal(rows.filter((r) => r.outcome === 'client_aborted').length, 3);
  });

  it('records in the ledger the tokens the counters were charged, broken streams included (a restart seeds counters from the ledger)', async () => {
    const tenantId = (await h.gateway.store.tenants.getByName('mixed'))?.id as string;
    const rows = await h.gateway.store.records.listUsage({ tenantId, limit: 100 });
    const ledger = rows.reduce((sum, r) => sum + r.inputTokens + r.outputTokens, 0);
    const [state] = await h.gateway.counters.read([counterKey('t', tenantId, 'tok', windowAt('day', Date.now()))], Date.now());
    assert.equal(state?.used, ledger);
  });
});

describe('200 simultaneous requests across three gateway processes sharing Redis', SKIP_REDIS ? { skip: SKIP_REDIS } : {}, () => {
  let dir: string;
  let mock: MockProvider;
  let configPath: string;
  let dbPath: string;
  let env: NodeJS.ProcessEnv;
  let tenantKey: string;
  let tenantId: string;
  let warmupKey: string;
  let warmupId: string;
  let reservation: number;
  let budget: number;
  let redis: CounterStore;
  const gateways: Array<{ proc: CliProcess; url: string }> = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-quota-conc-'));
    mock = await createMockProvider({ port: 0, apiKey: FAKE_PROVIDER_KEY });
    reservation = await reservationPerRequest();
    budget = ADMITS * reservation + Math.floor(reservation / 2);
    const secret = (name: string, value: string) => {
      const path = join(dir, name);
      writeFileSync(path, value, { mode: 0o600 });
      return `file:${path}`;
    };
    const providerKey = secret('provider-key', FAKE_PROVIDER_KEY);
    dbPath = join(dir, 'keywarden.db');
    const doc = {
      // replaced per process through KEYWARDEN_LISTEN_PUBLIC / KEYWARDEN_LISTEN_ADMIN
      listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
      store: `sqlite:${dbPath}`,
      admin: { token: secret('admin-token', FAKE_ADMIN_TOKEN) },
      audit: { prompt_hmac_key: secret('prompt-hmac-key', FAKE_HMAC_KEY) },
      log: { level: 'info' },
      providers: {
        openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: providerKey, timeout: '10s' },
        anthropic: { type: 'anthropic', base_url: mock.url, api_key: providerKey, timeout: '10s' },
      },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
      tenants: { defaults: { policy: { ...CONTRACT_POLICY, models: ['gpt-4o-mini'], limits: { tokens_per_day: budget } } } },
      limits: { store: REDIS_URL },
      shutdown: { drain_timeout: '5s' },
    };
    configPath = join(dir, 'keywarden.yaml');
    writeFileSync(configPath, `# generated by quota-concurrency.test.ts; secrets are fake\n${stringify(doc)}`, { mode: 0o600 });
    env = cliEnv({});

    // the tenant and its key first, so the SQLite file is created by one process
    const created = await runCli(['tenants', 'create', 'crowd', '--config', configPath], { cwd: dir, env });
    assert.equal(created.code, 0, created.stderr);
    const issued = await runCli(['keys', 'issue', '--tenant', 'crowd', '--json', '--config', configPath], { cwd: dir, env });
    assert.equal(issued.code, 0, issued.stderr);
    tenantKey = (JSON.parse(issued.stdout) as { key: string }).key;
    const warm = await runCli(['tenants', 'create', 'warmup', '--config', configPath], { cwd: dir, env });
    assert.equal(warm.code, 0, warm.stderr);
    const warmIssued = await runCli(['keys', 'issue', '--tenant', 'warmup', '--json', '--config', configPath], { cwd: dir, env });
    assert.equal(warmIssued.code, 0, warmIssued.stderr);
    warmupKey = (JSON.parse(warmIssued.stdout) as { key: string }).key;
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      warmupId = (await store.tenants.getByName('warmup'))?.id as string;
      tenantId = (await store.tenants.getByName('crowd'))?.id as string;
    } finally {
      await store.close();
    }
    assert.ok(tenantId);

    gateways.push(...(await startServeReplicas(configPath, { cwd: dir, env }, 3)));
    redis = createRedisCounterStore({ url: REDIS_URL as string });

    // one request to each fresh replica first, from another tenant: a cold tokenizer may run out
    // of its time budget and reserve by bytes (more), which would lower the count admitted below
    const warmKey = counterKey('t', warmupId, 'tok', windowAt('day', Date.now()));
    const coldReservations: number[] = [];
    for (const g of gateways) {
      const [before] = await redis.read([warmKey], Date.now());
      const [answer] = await crowd([g.url], warmupKey, 1);
      assert.equal(answer?.status, 200, answer?.text);
      coldReservations.push(budget - (before?.used ?? 0) - Number(answer?.remainingTokens));
      assert.equal(await untilZero(async () => (await redis.read([warmKey], Date.now()))[0]?.reserved ?? -1), 0);
    }
    process.stdout.write(`# first request to each fresh replica reserved ${coldReservations.join(', ')} tokens (warm: ${reservation})\n`);
    mock.reset();
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.proc.stop('SIGKILL')));
    await redis?.close();
    await mock?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('admits about 50 across the replicas, refuses the rest with 429 tenant_tokens_per_day_exceeded, and settles within the budget', async () => {
    const urls = gateways.map((g) => g.url);
    const key = counterKey('t', tenantId, 'tok', windowAt('day', Date.now()));
    const reserved = async () => (await redis.read([key], Date.now()))[0]?.reserved ?? -1;

    const answers = await crowd(urls, tenantKey, TOTAL);
    const admitted = assertCrowdAnswers(answers, budget, reservation);
    assert.equal(chatCalls(mock), admitted, 'refused requests never reached the provider');

    // what the over-estimates left: filled one request at a time, round-robin, then refused
    const more = await topUp(urls, tenantKey, budget, reserved);
    const admittedMore = more.length - 1;
    assert.equal(chatCalls(mock), admitted + admittedMore);
    // idle: nothing of this tenant stays reserved in Redis
    assert.equal(await untilZero(reserved), 0);

    // each replica flushes its records when it stops; then the shared ledger is read
    const stopped = await Promise.all(gateways.map((g) => g.proc.stop('SIGTERM')));
    for (const s of stopped) assert.equal(s.code, 0);
    for (const g of gateways) {
      const problems = jsonLines(g.proc.stdout()).filter((l) => Number(l['level']) >= 50);
      assert.deepEqual(problems.map((l) => l['msg']), [], `errors logged by ${g.url}`);
    }
    // each replica answered its third of the crowd (and logged each request)
    const perReplica = gateways.map((g) => jsonLines(g.proc.stdout()).filter((l) => l['msg'] === 'request').length);
    assert.ok(perReplica.every((n) => n >= Math.floor(TOTAL / 3)), `request log lines per replica: ${perReplica.join(', ')}`);

    const store = openSqliteStore(`sqlite:${dbPath}`);
    let rows: UsageRecord[];
    let audit: AuditRow[];
    try {
      rows = await store.records.listUsage({ tenantId, limit: 1000 });
      audit = await store.records.listAudit({ limit: 10_000 });
    } finally {
      await store.close();
    }
    const settled = assertLedger(rows, TOTAL + more.length, admitted + admittedMore, budget, reservation);
    // the Redis counter holds exactly the settled usage
    assert.deepEqual(await redis.read([key], Date.now()), [{ used: settled, reserved: 0 }]);
    // each budget threshold was reported once across the three replicas, not once per replica
    assert.deepEqual(thresholdPercents(audit, tenantId), [50, 80, 100]);
    process.stdout.write(`# redis, 3 replicas: ${admitted} of ${TOTAL} admitted at once, ${admittedMore} more one by one; settled ${settled} of ${budget} tokens ` +
      `(reservation ${reservation}, usage ${MOCK_USAGE} per request)\n`);
  });
});
