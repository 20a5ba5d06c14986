import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY, FAKE_PROVIDER_KEY, postJson, startHarness, type Harness } from './helpers/harness.js';
import { settledIdle, until } from './helpers/quota-http.js';
import { AUTH_FAILURE_CODES, EXACT_STATUSES, QUOTA_REFUSAL_CODES, UPSTREAM_ERROR_KINDS, createMetrics } from '../src/metrics/registry.js';
import { newRequestContext } from '../src/server/proxy.js';
import { LIMIT_NAMES } from '../src/quota/types.js';

/** Prompt text that must never reach the metrics. */
const CANARY = 'CANARY-PROMPT-metrics-7d3e91';
/** A model nobody configured: must not become a label value. */
const UNKNOWN_MODEL = 'canary-model-metrics-b41f0c';
/** A well-formed client request id: ids are never labels. */
const CLIENT_REQUEST_ID = 'canary-request-id-metrics-9a2c';
// plainly fake, never issued: an invalid tenant credential
const FAKE_BAD_TENANT_KEY = 'kw_fake_TEST_ONLY_not_a_real_key_000000000000';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text format into samples (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample with exactly these labels (0 when there is none). */
function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const want = Object.keys(labels).sort();
  const found = samples.filter((s) => s.name === name && Object.keys(s.labels).sort().join() === want.join() && want.every((k) => s.labels[k] === labels[k]));
  assert.ok(found.length <= 1, `several ${name} samples for ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

function sum(samples: readonly Sample[], name: string, where: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

async function scrape(h: Harness, authorization: string | null = `Bearer ${FAKE_ADMIN_TOKEN}`) {
  const res = await fetch(`${h.adminUrl}/metrics`, { headers: authorization === null ? {} : { authorization } });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function metrics(h: Harness): Promise<{ text: string; samples: Sample[] }> {
  const res = await scrape(h);
  assert.equal(res.status, 200);
  return { text: res.text, samples: parseMetrics(res.text) };
}

const chatBody = (content: string, model = 'gpt-4o-mini') => ({ model, messages: [{ role: 'user', content }] });

describe('Prometheus metrics on the admin listener', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('refuses /metrics without the admin token, and counts the refusal as an admin auth failure', async () => {
    const before = value((await metrics(h)).samples, 'keywarden_auth_failures_total', { code: 'admin_unauthorized' });
    for (const authorization of [null, 'Bearer wrong-admin-token', `Basic ${FAKE_ADMIN_TOKEN}`]) {
      const res = await scrape(h, authorization);
      assert.equal(res.status, 401, `authorization ${authorization}`);
      assert.equal(JSON.parse(res.text).error.code, 'admin_unauthorized');
      assert.ok(!res.text.includes('keywarden_'), 'no metric text behind a refused token');
    }
    const after = value((await metrics(h)).samples, 'keywarden_auth_failures_total', { code: 'admin_unauthorized' });
    assert.equal(after - before, 3);
  });

  it('serves the Prometheus text format with process metrics under the keywarden_ prefix', async () => {
    const res = await scrape(h);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.match(res.text, /^# TYPE keywarden_process_cpu_user_seconds_total counter$/m);
    assert.match(res.text, /^# TYPE keywarden_gateway_duration_seconds histogram$/m);
    assert.match(res.text, /^# TYPE keywarden_upstream_duration_seconds histogram$/m);
    assert.match(res.text, /^# TYPE keywarden_provider_key_age_seconds gauge$/m);
    // its own registry with a prefix: nothing unprefixed from prom-client's global default
    for (const s of parseMetrics(res.text)) assert.ok(s.name.startsWith('keywarden_'), `unprefixed metric ${s.name}`);
    // known bounded series start at zero so that rate() sees the first failure
    const samples = parseMetrics(res.text);
    for (const code of AUTH_FAILURE_CODES) assert.ok(samples.some((s) => s.name === 'keywarden_auth_failures_total' && s.labels['code'] === code), code);
    for (const code of QUOTA_REFUSAL_CODES) assert.equal(value(samples, 'keywarden_quota_refusals_total', { limit: code }), 0, code);
    for (const kind of UPSTREAM_ERROR_KINDS) assert.equal(value(samples, 'keywarden_upstream_errors_total', { provider: 'anthropic', kind }), 0, kind);
  });

  it('is not served on the public listener', async () => {
    const res = await fetch(`${h.url}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 404);
    assert.equal(JSON.parse(text).error.code, 'route_not_found');
    assert.ok(!text.includes('keywarden_'));
  });

  describe('after a mix of requests', () => {
    let q: { key: string; id: string };
    let s: Sample[];
    let text: string;
    const requestIds: string[] = [];
    const tokens = { acme: { input: 0, output: 0 }, q: { input: 0, output: 0 } };
    let sent = 0;
    let upstreamCalls = 0;

    before(async () => {
      q = await h.tenantKey('q', { limits: { requests_per_minute: 1 } });
      const chatUrl = `${h.url}/v1/chat/completions`;
      const send = async (key: string | undefined, body: unknown, expect: { status: number; code?: string }, headers: Record<string, string> = {}) => {
        const res = await postJson(chatUrl, key, body, headers);
        sent++;
        assert.equal(res.status, expect.status, res.text);
        if (expect.code) assert.equal(res.json.error.code, expect.code);
        requestIds.push(res.headers.get('x-request-id') ?? '');
        return res;
      };
      const mockBefore = h.mock.received.length;

      // success, with a client request id that must not become a label
      const ok = await send(h.key, chatBody(`${CANARY} [[mock:tokens=7]]`), { status: 200 }, { 'x-request-id': CLIENT_REQUEST_ID });
      tokens.acme.input += Number(ok.headers.get('x-keywarden-input-tokens'));
      tokens.acme.output += Number(ok.headers.get('x-keywarden-output-tokens'));
      // policy refusal: tools for a tenant without tools
      await send(h.key, { ...chatBody(CANARY), tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, { status: 400, code: 'policy_tools_not_allowed' });
      // a model nobody configured
      await send(h.key, chatBody(CANARY, UNKNOWN_MODEL), { status: 403, code: 'policy_model_not_allowed' });
      // authentication failures: a wrong key, and none at all
      await send(FAKE_BAD_TENANT_KEY, chatBody(CANARY), { status: 401, code: 'auth_invalid_credentials' });
      await send(undefined, chatBody(CANARY), { status: 401, code: 'auth_missing_credentials' });
      // the provider fails
      await send(h.key, chatBody(`${CANARY} [[mock:status=500]]`), { status: 502, code: 'upstream_error' });
      // a limited tenant: one request a minute, the second refused
      const qOk = await send(q.key, chatBody(CANARY), { status: 200 });
      tokens.q.input += Number(qOk.headers.get('x-keywarden-input-tokens'));
      tokens.q.output += Number(qOk.headers.get('x-keywarden-output-tokens'));
      await send(q.key, chatBody(CANARY), { status: 429, code: 'tenant_requests_per_minute_exceeded' });

      upstreamCalls = h.mock.received.length - mockBefore;
      await settledIdle(h.gateway);
      await h.gateway.writer.flush();
      ({ text, samples: s } = await metrics(h));
    });

    it('counts each request once, by tenant, provider, model, status and outcome', () => {
      assert.equal(sum(s, 'keywarden_requests_total'), sent);
      const r = (tenant: string, provider: string, model: string, status: string, outcome: string) =>
        value(s, 'keywarden_requests_total', { tenant, provider, model, status, outcome });
      assert.equal(r('acme', 'openai', 'gpt-4o-mini', '200', 'success'), 1);
      assert.equal(r('acme', 'none', 'none', '400', 'refused'), 1, 'policy refusal before a model is chosen');
      assert.equal(r('acme', 'none', 'none', '403', 'refused'), 1, 'unknown model');
      assert.equal(r('none', 'none', 'none', '401', 'refused'), 2, 'no tenant before authentication');
      assert.equal(r('acme', 'openai', 'gpt-4o-mini', '502', 'upstream_error'), 1);
      assert.equal(r('q', 'openai', 'gpt-4o-mini', '200', 'success'), 1);
      assert.equal(r('q', 'openai', 'gpt-4o-mini', '429', 'refused'), 1);
    });

    it('counts authentication failures, quota refusals and upstream errors by their code', () => {
      assert.equal(value(s, 'keywarden_auth_failures_total', { code: 'auth_invalid_credentials' }), 1);
      assert.equal(value(s, 'keywarden_auth_failures_total', { code: 'auth_missing_credentials' }), 1);
      for (const code of ['auth_key_expired', 'auth_key_revoked', 'auth_tenant_disabled']) assert.equal(value(s, 'keywarden_auth_failures_total', { code }), 0, code);

      assert.equal(value(s, 'keywarden_quota_refusals_total', { limit: 'tenant_requests_per_minute_exceeded' }), 1);
      assert.equal(sum(s, 'keywarden_quota_refusals_total'), 1, 'no other quota refusal');

      assert.equal(value(s, 'keywarden_upstream_errors_total', { provider: 'openai', kind: 'upstream_error' }), 1);
      assert.equal(sum(s, 'keywarden_upstream_errors_total'), 1, 'no other upstream error');
    });

    it('counts tokens and cost by tenant and model as billed in the usage ledger', async () => {
      assert.ok(tokens.acme.output === 7 && tokens.acme.input > 0, JSON.stringify(tokens));
      assert.equal(value(s, 'keywarden_input_tokens_total', { tenant: 'acme', model: 'gpt-4o-mini' }), tokens.acme.input);
      assert.equal(value(s, 'keywarden_output_tokens_total', { tenant: 'acme', model: 'gpt-4o-mini' }), tokens.acme.output);
      assert.equal(value(s, 'keywarden_input_tokens_total', { tenant: 'q', model: 'gpt-4o-mini' }), tokens.q.input);
      assert.equal(value(s, 'keywarden_output_tokens_total', { tenant: 'q', model: 'gpt-4o-mini' }), tokens.q.output);
      assert.equal(sum(s, 'keywarden_input_tokens_total'), tokens.acme.input + tokens.q.input, 'refused requests add no tokens');

      const rows = await h.gateway.store.records.listUsage({ limit: 1000 });
      for (const tenant of ['acme', 'q'] as const) {
        const tenantId = (await h.gateway.store.tenants.getByName(tenant))?.id;
        const nano = rows.filter((row) => row.tenantId === tenantId).reduce((a, row) => a + row.costNanoUsd, 0);
        assert.ok(nano > 0, `${tenant} was billed`);
        const usd = value(s, 'keywarden_cost_usd_total', { tenant, model: 'gpt-4o-mini' });
        assert.ok(Math.abs(usd - nano / 1e9) < 1e-12, `${tenant}: ${usd} USD in metrics, ${nano} nano-USD in the ledger`);
      }
    });

    it('times the gateway for every request and the provider only when it was called', () => {
      assert.equal(upstreamCalls, 3);
      assert.equal(value(s, 'keywarden_gateway_duration_seconds_count'), sent);
      assert.equal(value(s, 'keywarden_gateway_duration_seconds_bucket', { le: '+Inf' }), sent);
      assert.equal(value(s, 'keywarden_upstream_duration_seconds_count', { provider: 'openai' }), upstreamCalls);
      assert.equal(value(s, 'keywarden_upstream_duration_seconds_count', { provider: 'anthropic' }), 0);
      assert.ok(value(s, 'keywarden_upstream_duration_seconds_sum', { provider: 'openai' }) > 0);
      // buckets reach below a millisecond and up to tens of seconds
      const bounds = s.filter((x) => x.name === 'keywarden_gateway_duration_seconds_bucket').map((x) => x.labels['le']);
      assert.ok(bounds.includes('0.00025') && bounds.includes('0.001') && bounds.includes('30'), bounds.join());
    });

    it('never shows prompt text, keys, tokens of admin, request ids or key ids', () => {
      const secrets = [
        CANARY, UNKNOWN_MODEL, CLIENT_REQUEST_ID, h.key, q.key, FAKE_BAD_TENANT_KEY, FAKE_PROVIDER_KEY, FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY,
        h.keyId, q.id, ...requestIds,
      ];
      for (const secret of secrets) {
        assert.ok(secret.length >= 8, 'a meaningful needle');
        assert.ok(!text.includes(secret), `metrics text holds ${secret.slice(0, 10)}…`);
      }
      // nor the secret part of a tenant key on its own
      for (const key of [h.key, q.key]) assert.ok(!text.includes(key.slice('kw_'.length + 16 + 1)));
      assert.ok(!/\[\[mock:/.test(text), 'no mock directive (request text)');
    });

    it('keeps every label value within its bounded set', () => {
      const models = new Set([...Object.keys(h.config.models), 'none', 'other']);
      const providers = new Set([...Object.keys(h.config.providers), 'none', 'other']);
      const tenants = new Set(['acme', 'q', 'none']);
      const statuses = new Set([...EXACT_STATUSES.map(String), '1xx', '2xx', '3xx', '4xx', '5xx']);
      const outcomes = new Set(['success', 'refused', 'upstream_error', 'client_aborted', 'stream_broken']);
      const allowed: Record<string, Set<string>> = {
        tenant: tenants, model: models, provider: providers, status: statuses, outcome: outcomes,
        code: new Set(AUTH_FAILURE_CODES), limit: new Set([...QUOTA_REFUSAL_CODES, ...LIMIT_NAMES, 'none']),
        kind: new Set([...UPSTREAM_ERROR_KINDS, 'budget_threshold']),
      };
      const own = s.filter((x) => !/^keywarden_(process|nodejs)_/.test(x.name) && !x.name.startsWith('keywarden_provider_key_age'));
      assert.ok(own.length > 0);
      for (const sample of own) {
        for (const [label, v] of Object.entries(sample.labels)) {
          if (label === 'le') continue;
          const set = allowed[label];
          assert.ok(set, `unexpected label ${label} on ${sample.name}`);
          assert.ok(set.has(v), `${sample.name}{${label}="${v}"} is outside its bounded set`);
        }
      }
    });

    it('adds no label value for a model nobody configured, however many are tried', async () => {
      const seriesBefore = s.filter((x) => x.name === 'keywarden_requests_total').length;
      for (let i = 0; i < 5; i++) {
        const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chatBody('hi', `${UNKNOWN_MODEL}-${i}`));
        assert.equal(res.json.error.code, 'policy_model_not_allowed');
      }
      const after = (await metrics(h));
      assert.ok(!after.text.includes(UNKNOWN_MODEL));
      assert.equal(after.samples.filter((x) => x.name === 'keywarden_requests_total').length, seriesBefore, 'the same series, only higher counts');
      assert.equal(value(after.samples, 'keywarden_requests_total', { tenant: 'acme', provider: 'none', model: 'none', status: '403', outcome: 'refused' }), 6);
    });
  });

  it('counts budget threshold alerts by limit, as often as they are logged', async () => {
    const { key } = await h.tenantKey('metrics-alerts', { limits: { tokens_per_day: 200 } });
    const before = value((await metrics(h)).samples, 'keywarden_alerts_fired_total', { kind: 'budget_threshold', limit: 'tokens_per_day' });
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${h.url}/v1/chat/completions`, key, { ...chatBody(`${CANARY} [[mock:tokens=40]]`), max_tokens: 40 });
      assert.equal(res.status, 200, res.text);
      await settledIdle(h.gateway);
    }
    const logged = () => h.logs.lines.filter((l) => l.includes('"event":"budget_threshold"') && l.includes('"tenant":"metrics-alerts"')).length;
    await until(() => logged() >= 1, 'a budget threshold alert');
    const { samples, text } = await metrics(h);
    assert.equal(value(samples, 'keywarden_alerts_fired_total', { kind: 'budget_threshold', limit: 'tokens_per_day' }) - before, logged());
    assert.ok(!text.includes('metrics-alerts-') && !text.includes(key));
  });
});

describe('metrics without a gateway (the provider key age source and the registry)', () => {
  const FP = '0123456789abcdef';

  it('reports the ages a source gives, leaving out revoked keys, malformed fingerprints and unknown ages', async () => {
    const metrics = createMetrics({
      models: ['m'], providers: ['openai'], processMetrics: false,
      providerKeyAges: async () => [
        { provider: 'openai', fingerprint: FP, state: 'current', ageSeconds: 86_400 },
        { provider: 'openai', fingerprint: 'fedcba9876543210', state: 'previous', ageSeconds: 90 },
        { provider: 'openai', fingerprint: 'aaaaaaaaaaaaaaaa', state: 'revoked', ageSeconds: 5 },
        // plainly fake key-like text in the fingerprint field: never a label
        { provider: 'openai', fingerprint: 'sk-fake-TEST-ONLY-0000', state: 'current', ageSeconds: 5 },
        { provider: 'openai', fingerprint: 'bbbbbbbbbbbbbbbb', state: 'current', ageSeconds: Number.NaN },
        { provider: 'made-up-provider', fingerprint: 'cccccccccccccccc', state: 'pending', ageSeconds: 7 },
      ],
    });
    const text = await metrics.render();
    const s = parseMetrics(text);
    assert.equal(value(s, 'keywarden_provider_key_age_seconds', { provider: 'openai', fingerprint: FP, state: 'current' }), 86_400);
    assert.equal(value(s, 'keywarden_provider_key_age_seconds', { provider: 'openai', fingerprint: 'fedcba9876543210', state: 'previous' }), 90);
    assert.equal(value(s, 'keywarden_provider_key_age_seconds', { provider: 'other', fingerprint: 'cccccccccccccccc', state: 'pending' }), 7);
    assert.equal(s.filter((x) => x.name === 'keywarden_provider_key_age_seconds').length, 3);
    assert.ok(!text.includes('sk-fake') && !text.includes('made-up-provider') && !text.includes('state="revoked"'));
  });

  it('still answers a scrape when the key age source fails', async () => {
    const metrics = createMetrics({ models: [], providers: ['openai'], processMetrics: false, providerKeyAges: () => { throw new Error('register unreadable'); } });
    const text = await metrics.render();
    assert.match(text, /^# TYPE keywarden_provider_key_age_seconds gauge$/m);
    assert.equal(parseMetrics(text).filter((x) => x.name === 'keywarden_provider_key_age_seconds').length, 0);
  });

  it('keeps each instance\'s counts in its own registry', async () => {
    const a = createMetrics({ models: ['m'], providers: ['p'], processMetrics: false });
    const b = createMetrics({ models: ['m'], providers: ['p'], processMetrics: false });
    const ctx = newRequestContext('req-not-a-label-0001', 'openai', performance.now());
    ctx.status = 401;
    ctx.outcome = 'refused';
    ctx.errorCode = 'auth_invalid_credentials';
    a.observeRequest(ctx);
    a.observeRequest(ctx);
    const sa = parseMetrics(await a.render());
    const sb = parseMetrics(await b.render());
    assert.equal(value(sa, 'keywarden_auth_failures_total', { code: 'auth_invalid_credentials' }), 2);
    assert.equal(value(sb, 'keywarden_auth_failures_total', { code: 'auth_invalid_credentials' }), 0);
    assert.equal(value(sa, 'keywarden_requests_total', { tenant: 'none', provider: 'none', model: 'none', status: '401', outcome: 'refused' }), 2);
    assert.ok(!(await a.render()).includes('req-not-a-label'));
  });
});
