import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONTRACT_POLICY, postJson, startHarness, type Harness } from './helpers/harness.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import {
  RATE_HEADER_NAMES, RESET_FORMAT, adminPut, chat, counterKeyAt, gatewayOnSameStore, ledgerRow, rateHeaders, readCounter,
  roomInMinute, settledIdle, tenantIdOf, until,
} from './helpers/quota-http.js';
import type { Gateway } from '../src/main.js';

const REDIS_URL = process.env.REDIS_URL;
const SKIP_REDIS = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379); admission over the Redis counter store not tested';

/** The harness's routes plus one whose upstream name has no price anywhere. */
const MODELS_WITH_UNPRICED = {
  'gpt-4o-mini': { provider: 'openai' },
  fast: { provider: 'openai', model: 'gpt-4o-mini' },
  'text-embedding-3-small': { provider: 'openai' },
  'claude-3-5-haiku-latest': { provider: 'anthropic' },
  mystery: { provider: 'openai', model: 'mystery-model-without-a-price' },
};
const POLICY_WITH_UNPRICED = { models: [...CONTRACT_POLICY.models, 'mystery'] };

/** gpt-4o-mini list prices in nano-USD per token: 0.15 and 0.60 USD per million tokens. */
const MINI_IN_NANO = 150;
const MINI_OUT_NANO = 600;

function retryAfterOf(headers: Headers): number {
  const value = headers.get('retry-after');
  assert.ok(value !== null, 'a refusal carries Retry-After');
  assert.match(value, /^\d+$/);
  return Number(value);
}

function tokensOf(headers: Headers): { input: number; output: number } {
  return { input: Number(headers.get('x-keywarden-input-tokens')), output: Number(headers.get('x-keywarden-output-tokens')) };
}

describe('admission over HTTP with the embedded counter store', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({ config: { models: MODELS_WITH_UNPRICED }, policy: POLICY_WITH_UNPRICED });
  });
  after(async () => {
    await h?.close();
  });

  it('answers a tenant without limits without any x-ratelimit header (admission skipped)', async () => {
    const res = await chat(h.url, h.key, 'hello');
    assert.equal(res.status, 200);
    assert.deepEqual(rateHeaders(res.headers), {});
    const stream = await chat(h.url, h.key, 'hello', { stream: true });
    assert.equal(stream.status, 200);
    assert.deepEqual(rateHeaders(stream.headers), {});
  });

  it('refuses the request after requests_per_minute with 429 tenant_requests_per_minute_exceeded, Retry-After and rate headers', async () => {
    await roomInMinute();
    const { key } = await h.tenantKey('rpm3', { limits: { requests_per_minute: 3, tokens_per_minute: 100_000 } });
    const tenantId = await tenantIdOf(h.gateway, 'rpm3');
    const receivedBefore = h.mock.received.length;
    for (let i = 0; i < 3; i++) {
      const res = await chat(h.url, key, `hello ${i}`, { maxTokens: 20 });
      assert.equal(res.status, 200, res.text);
      const headers = rateHeaders(res.headers);
      assert.deepEqual(Object.keys(headers).sort(), [...RATE_HEADER_NAMES].sort(), 'all six headers with a request and a token limit');
      assert.equal(headers['x-ratelimit-limit-requests'], '3');
      assert.equal(headers['x-ratelimit-remaining-requests'], String(2 - i));
      assert.match(headers['x-ratelimit-reset-requests'] as string, RESET_FORMAT);
      assert.equal(headers['x-ratelimit-limit-tokens'], '100000');
      const remainingTokens = Number(headers['x-ratelimit-remaining-tokens']);
      assert.ok(remainingTokens > 0 && remainingTokens < 100_000, `remaining tokens ${remainingTokens}`);
      assert.match(headers['x-ratelimit-reset-tokens'] as string, RESET_FORMAT);
    }
    await settledIdle(h.gateway);
    const refused = await chat(h.url, key, 'one too many', { maxTokens: 20 });
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, 'tenant_requests_per_minute_exceeded');
    assert.equal(refused.json.error.type, 'rate_limit_error');
    const retryAfter = retryAfterOf(refused.headers);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    const headers = rateHeaders(refused.headers);
    assert.equal(headers['x-ratelimit-limit-requests'], '3');
    assert.equal(headers['x-ratelimit-remaining-requests'], '0');
    assert.match(headers['x-ratelimit-reset-requests'] as string, RESET_FORMAT);
    assert.equal(headers['x-ratelimit-limit-tokens'], '100000');
    assert.equal(h.mock.received.length, receivedBefore + 3, 'the refused request never reached the provider');

    // a refused request consumes nothing: recorded as refused, counters as before
    const row = await ledgerRow(h.gateway, refused.headers.get('x-request-id'));
    assert.equal(row.outcome, 'refused');
    assert.equal(row.errorCode, 'tenant_requests_per_minute_exceeded');
    assert.equal(row.inputTokens + row.outputTokens, 0);
    assert.equal(row.costNanoUsd, 0);
    assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'req', 'minute')), { used: 3, reserved: 0 });
    assert.equal(await h.gateway.counters.reservedTotal(Date.now()), 0);
  });

  it("answers a refusal in the endpoint's own error shape (Anthropic messages)", async () => {
    await roomInMinute();
    const { key } = await h.tenantKey('rpm1-anthropic', { limits: { requests_per_minute: 1 } });
    const body = { model: 'claude-3-5-haiku-latest', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] };
    const ok = await postJson(`${h.url}/v1/messages`, key, body, { 'anthropic-version': '2023-06-01' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-ratelimit-limit-requests'), '1');
    const refused = await postJson(`${h.url}/v1/messages`, key, body, { 'anthropic-version': '2023-06-01' });
    assert.equal(refused.status, 429);
    assert.equal(refused.json.type, 'error');
    assert.equal(refused.json.error.code, 'tenant_requests_per_minute_exceeded');
    assert.equal(refused.json.error.type, 'rate_limit_error');
    assert.equal(refused.headers.get('x-ratelimit-remaining-requests'), '0');
  });

  it("counts a tenant's limit across all of the tenant's keys", async () => {
    await roomInMinute();
    const a = await h.tenantKey('shared', { limits: { requests_per_minute: 2 } });
    const b = await h.tenantKey('shared');
    assert.equal((await chat(h.url, a.key, 'a1')).status, 200);
    const b1 = await chat(h.url, b.key, 'b1');
    assert.equal(b1.status, 200);
    assert.equal(b1.headers.get('x-ratelimit-remaining-requests'), '0', 'the second key sees the first key\'s request');
    for (const key of [a.key, b.key]) {
      const refused = await chat(h.url, key, 'over');
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'tenant_requests_per_minute_exceeded');
    }
  });

  it("refuses a key over its tenant's key_limits with key_ codes while another key of the tenant still works", async () => {
    await roomInMinute();
    const a = await h.tenantKey('perkey', { key_limits: { requests_per_minute: 1 } });
    const b = await h.tenantKey('perkey');
    const a1 = await chat(h.url, a.key, 'a1');
    assert.equal(a1.status, 200);
    assert.equal(a1.headers.get('x-ratelimit-limit-requests'), '1');
    const a2 = await chat(h.url, a.key, 'a2');
    assert.equal(a2.status, 429);
    assert.equal(a2.json.error.code, 'key_requests_per_minute_exceeded');
    const retryAfter = retryAfterOf(a2.headers);
    assert.ok(retryAfter >= 1 && retryAfter <= 60);
    assert.equal((await chat(h.url, b.key, 'b1')).status, 200, 'the other key has its own count');
    const b2 = await chat(h.url, b.key, 'b2');
    assert.equal(b2.json.error.code, 'key_requests_per_minute_exceeded');
  });

  it("applies a key's own limits set through the admin API in place of the tenant's key_limits, and clears them", async () => {
    await roomInMinute();
    const a = await h.tenantKey('ownkey', { key_limits: { requests_per_minute: 1 } });
    const b = await h.tenantKey('ownkey');
    const set = await adminPut(h.adminUrl, `/admin/keys/${a.id}/limits`, { limits: { requests_per_minute: 2 } });
    assert.equal(set.status, 200, JSON.stringify(set.json));
    // key a: its own limit of 2 replaces the tenant's key_limits of 1
    const a1 = await chat(h.url, a.key, 'a1');
    assert.equal(a1.status, 200);
    assert.equal(a1.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal((await chat(h.url, a.key, 'a2')).status, 200);
    const a3 = await chat(h.url, a.key, 'a3');
    assert.equal(a3.status, 429);
    assert.equal(a3.json.error.code, 'key_requests_per_minute_exceeded');
    // key b: still under the tenant's key_limits of 1
    assert.equal((await chat(h.url, b.key, 'b1')).status, 200);
    assert.equal((await chat(h.url, b.key, 'b2')).json.error.code, 'key_requests_per_minute_exceeded');
    // cleared: key a is back under the tenant's key_limits (1), and has used 2 this minute
    const cleared = await adminPut(h.adminUrl, `/admin/keys/${a.id}/limits`, { limits: null });
    assert.equal(cleared.status, 200);
    const a4 = await chat(h.url, a.key, 'a4');
    assert.equal(a4.status, 429);
    assert.equal(a4.json.error.code, 'key_requests_per_minute_exceeded');
    assert.equal(a4.headers.get('x-ratelimit-limit-requests'), '1');
  });

  it('refuses a key whose own limits were set through the admin API while the tenant has none', async () => {
    await roomInMinute();
    const a = await h.tenantKey('ownonly');
    const b = await h.tenantKey('ownonly');
    assert.equal((await adminPut(h.adminUrl, `/admin/keys/${a.id}/limits`, { limits: { requests_per_minute: 1 } })).status, 200);
    assert.equal((await chat(h.url, a.key, 'a1')).status, 200);
    const a2 = await chat(h.url, a.key, 'a2');
    assert.equal(a2.status, 429);
    assert.equal(a2.json.error.code, 'key_requests_per_minute_exceeded');
    const b1 = await chat(h.url, b.key, 'b1');
    assert.equal(b1.status, 200);
    assert.deepEqual(rateHeaders(b1.headers), {}, 'the other key has no limits at all');
  });

  it('takes tenant limits changed through the admin API on the next request, without a restart', async () => {
    await roomInMinute();
    const { key } = await h.tenantKey('live');
    const first = await chat(h.url, key, 'before any limit');
    assert.equal(first.status, 200);
    assert.deepEqual(rateHeaders(first.headers), {});
    // the new limit counts what the tenant already did this minute (read back from the ledger)
    await h.gateway.writer.flush();
    const set = await adminPut(h.adminUrl, '/admin/tenants/live/limits', { limits: { requests_per_minute: 2 } });
    assert.equal(set.status, 200, JSON.stringify(set.json));
    const second = await chat(h.url, key, 'second');
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(second.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal((await chat(h.url, key, 'third')).json.error.code, 'tenant_requests_per_minute_exceeded');

    const raised = await adminPut(h.adminUrl, '/admin/tenants/live/limits', { limits: { requests_per_minute: 5 } });
    assert.equal(raised.status, 200);
    const fourth = await chat(h.url, key, 'fourth');
    assert.equal(fourth.status, 200);
    assert.equal(fourth.headers.get('x-ratelimit-limit-requests'), '5');

    const removed = await adminPut(h.adminUrl, '/admin/tenants/live/limits', { limits: { requests_per_minute: null } });
    assert.equal(removed.status, 200);
    const fifth = await chat(h.url, key, 'fifth');
    assert.equal(fifth.status, 200);
    assert.deepEqual(rateHeaders(fifth.headers), {});

    const perKey = await adminPut(h.adminUrl, '/admin/tenants/live/limits', { key_limits: { tokens_per_minute: 100 } });
    assert.equal(perKey.status, 200);
    const tooBig = await chat(h.url, key, 'sixth', { maxTokens: 500 });
    assert.equal(tooBig.status, 429);
    assert.equal(tooBig.json.error.code, 'key_tokens_per_minute_exceeded');
  });

  it('takes limits set with `keywarden tenants set-limits` (CLI, same store) on the next request', async () => {
    await roomInMinute(8000);
    const { key } = await h.tenantKey('cli-limits');
    // a config file for the CLI over the harness's own SQLite file and secret files
    const configPath = join(h.dir, 'cli-config.json');
    writeFileSync(configPath, JSON.stringify({
      listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
      store: `sqlite:${join(h.dir, 'keywarden.db')}`,
      admin: { token: `file:${join(h.dir, 'admin-token')}` },
      audit: { prompt_hmac_key: `file:${join(h.dir, 'prompt-key')}` },
      providers: {
        openai: { type: 'openai', base_url: `${h.mock.url}/v1`, api_key: `file:${join(h.dir, 'openai-key')}` },
        anthropic: { type: 'anthropic', base_url: h.mock.url, api_key: `file:${join(h.dir, 'anthropic-key')}` },
      },
      models: MODELS_WITH_UNPRICED,
      tenants: { defaults: { policy: { ...CONTRACT_POLICY, ...POLICY_WITH_UNPRICED } } },
    }));
    const cli = (...args: string[]) => runCli([...args, '--config', configPath], { cwd: h.dir, env: cliEnv({}) });

    const set = await cli('tenants', 'set-limits', 'cli-limits', '--rpm', '1');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /requests_per_minute/);
    const ok = await chat(h.url, key, 'one');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-ratelimit-limit-requests'), '1');
    assert.equal((await chat(h.url, key, 'two')).json.error.code, 'tenant_requests_per_minute_exceeded');

    const unset = await cli('tenants', 'set-limits', 'cli-limits', '--rpm', 'none', '--tpm', '300', '--per-key');
    assert.equal(unset.code, 0, unset.stderr);
    // --rpm none with --per-key removes a key limit (none was set); the tenant's rpm 1 stays
    assert.equal((await chat(h.url, key, 'three')).json.error.code, 'tenant_requests_per_minute_exceeded');
    const tenantWide = await cli('tenants', 'set-limits', 'cli-limits', '--rpm', 'none');
    assert.equal(tenantWide.code, 0, tenantWide.stderr);
    const alone = await chat(h.url, key, 'four', { maxTokens: 1000 });
    assert.equal(alone.status, 429);
    assert.equal(alone.json.error.code, 'key_tokens_per_minute_exceeded', 'the per-key tokens limit from --per-key applies');
    const fits = await chat(h.url, key, 'five', { maxTokens: 20 });
    assert.equal(fits.status, 200, fits.text);
    assert.equal(fits.headers.get('x-ratelimit-limit-tokens'), '300');
    assert.equal(fits.headers.get('x-ratelimit-limit-requests'), null, 'the tenant rpm was removed');

    const bad = await cli('tenants', 'set-limits', 'cli-limits', '--tpm', 'lots');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--tpm must be a number or "none"/);
    const none = await cli('tenants', 'set-limits', 'cli-limits');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /needs at least one of/);
  });

  describe('tokens_per_minute', () => {
    const LIMIT = 1000;
    const CONTENT = 'count my tokens, please';
    let key: string;
    let tenantId: string;
    let estimate: number;
    let used: number;

    before(async () => {
      await roomInMinute(6000);
      ({ key } = await h.tenantKey('tpm', { limits: { tokens_per_minute: LIMIT } }));
      tenantId = await tenantIdOf(h.gateway, 'tpm');
    });

    it('reserves the estimated input plus max_tokens, then settles to the real usage', async () => {
      const res = await chat(h.url, key, CONTENT, { maxTokens: 100 });
      assert.equal(res.status, 200, res.text);
      const reserved = LIMIT - Number(res.headers.get('x-ratelimit-remaining-tokens'));
      estimate = reserved - 100;
      assert.ok(estimate > 0 && estimate < 50, `input estimate ${estimate}`);
      await settledIdle(h.gateway);
      const real = tokensOf(res.headers);
      used = real.input + real.output;
      assert.ok(real.output > 0 && real.output <= 100);
      assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'tok', 'minute')), { used, reserved: 0 });
    });

    it('refuses a request whose worst case exceeds what is left, and reserves nothing', async () => {
      const receivedBefore = h.mock.received.length;
      const left = LIMIT - used;
      const refused = await chat(h.url, key, CONTENT, { maxTokens: left - estimate + 1 });
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'tenant_tokens_per_minute_exceeded');
      assert.doesNotMatch(refused.json.error.message, /alone/);
      assert.equal(refused.headers.get('x-ratelimit-limit-tokens'), String(LIMIT));
      assert.equal(refused.headers.get('x-ratelimit-remaining-tokens'), String(left));
      assert.equal(await h.gateway.counters.reservedTotal(Date.now()), 0, 'nothing reserved by the refusal');
      assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'tok', 'minute')), { used, reserved: 0 });
      assert.equal(h.mock.received.length, receivedBefore);
      const row = await ledgerRow(h.gateway, refused.headers.get('x-request-id'));
      assert.equal(row.outcome, 'refused');
      assert.equal(row.errorCode, 'tenant_tokens_per_minute_exceeded');
      assert.equal(row.inputTokens + row.outputTokens, 0);
    });

    it('says so when a request alone is larger than the limit', async () => {
      const refused = await chat(h.url, key, CONTENT, { maxTokens: LIMIT + 500 });
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error.code, 'tenant_tokens_per_minute_exceeded');
      assert.match(refused.json.error.message, /alone exceeds/);
      assert.match(refused.json.error.message, /max_tokens/);
      assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'tok', 'minute')), { used, reserved: 0 });
    });

    it('admits a request whose worst case exactly fills what is left', async () => {
      const fits = await chat(h.url, key, CONTENT, { maxTokens: LIMIT - used - estimate });
      assert.equal(fits.status, 200, fits.text);
      assert.equal(fits.headers.get('x-ratelimit-remaining-tokens'), '0');
      await settledIdle(h.gateway);
    });
  });

  describe('money budgets', () => {
    it('refuses an unpriced model with 403 quota_model_unpriced when the tenant has a money budget, without calling the provider', async () => {
      const { key } = await h.tenantKey('budget', { limits: { usd_per_day: 1 } });
      const receivedBefore = h.mock.received.length;
      const refused = await chat(h.url, key, 'hello', { model: 'mystery' });
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error.code, 'quota_model_unpriced');
      assert.equal(h.mock.received.length, receivedBefore);
    });

    it('refuses an unpriced model for a key with its own money budget only', async () => {
      const a = await h.tenantKey('keybudget');
      const b = await h.tenantKey('keybudget');
      assert.equal((await adminPut(h.adminUrl, `/admin/keys/${a.id}/limits`, { limits: { usd_per_month: 5 } })).status, 200);
      assert.equal((await chat(h.url, a.key, 'hello', { model: 'mystery' })).json.error.code, 'quota_model_unpriced');
      assert.equal((await chat(h.url, b.key, 'hello', { model: 'mystery' })).status, 200);
    });

    it('serves an unpriced model at no cost to a tenant with limits but no money budget', async () => {
      const { key } = await h.tenantKey('nobudget', { limits: { requests_per_minute: 1000 } });
      const res = await chat(h.url, key, 'hello', { model: 'mystery' });
      assert.equal(res.status, 200, res.text);
      assert.equal((await ledgerRow(h.gateway, res.headers.get('x-request-id'))).costNanoUsd, 0);
    });

    it('records the cost of a priced model as price × usage (gpt-4o-mini: 0.15 in, 0.60 out per MTok), also through an alias', async () => {
      const { key } = await h.tenantKey('budget');
      for (const model of ['gpt-4o-mini', 'fast']) {
        const res = await chat(h.url, key, 'what does this cost? [[mock:tokens=30]]', { model, maxTokens: 50 });
        assert.equal(res.status, 200, res.text);
        const { input, output } = tokensOf(res.headers);
        assert.equal(output, 30);
        const row = await ledgerRow(h.gateway, res.headers.get('x-request-id'));
        assert.equal(row.inputTokens, input);
        assert.equal(row.costNanoUsd, input * MINI_IN_NANO + output * MINI_OUT_NANO, `${model}: ${input} in, ${output} out`);
      }
      await settledIdle(h.gateway);
      const tenantId = await tenantIdOf(h.gateway, 'budget');
      const rows = (await h.gateway.store.records.listUsage({ tenantId, limit: 100 })).filter((r) => r.outcome === 'success');
      const spent = rows.reduce((sum, r) => sum + r.costNanoUsd, 0);
      assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'usd', 'day')), { used: spent, reserved: 0 }, 'the budget counter holds the ledger\'s cost');
    });
  });

  describe('settlement returns every reservation', () => {
    const LIMIT = 10_000_000;
    let key: string;
    let tenantId: string;

    before(async () => {
      ({ key } = await h.tenantKey('settle', { limits: { tokens_per_day: LIMIT, requests_per_minute: 10_000 } }));
      tenantId = await tenantIdOf(h.gateway, 'settle');
    });

    const tokKey = () => counterKeyAt('t', tenantId, 'tok', 'day');

    /** Runs one request, waits for settlement and returns what the tokens counter gained, the ledger row and the input estimate. */
    async function settleOf(send: () => Promise<{ headers: Headers; requestId: string | null }>, maxTokens: number) {
      await roomInMinute();
      await settledIdle(h.gateway);
      const before = await readCounter(h.gateway, tokKey());
      const { headers, requestId } = await send();
      const remaining = headers.get('x-ratelimit-remaining-tokens');
      assert.ok(remaining !== null, 'the answer carries the rate headers');
      const estimate = LIMIT - Number(remaining) - before.used - maxTokens;
      await until(async () => {
        await h.gateway.writer.flush();
        return (await h.gateway.store.records.listUsage({ tenantId, limit: 1000 })).some((r) => r.requestId === requestId);
      }, 'the request to be recorded');
      await settledIdle(h.gateway);
      const afterState = await readCounter(h.gateway, tokKey());
      assert.equal(afterState.reserved, 0);
      return { gained: afterState.used - before.used, row: await ledgerRow(h.gateway, requestId), estimate };
    }

    const whole = (content: string, maxTokens: number) => async () => {
      const res = await chat(h.url, key, content, { maxTokens });
      return { headers: res.headers, requestId: res.headers.get('x-request-id'), status: res.status };
    };

    it('after a whole answer: adds the real usage', async () => {
      const { gained, row } = await settleOf(whole('a whole answer', 64), 64);
      assert.equal(row.outcome, 'success');
      assert.ok(row.inputTokens > 0 && row.outputTokens > 0);
      assert.equal(gained, row.inputTokens + row.outputTokens);
    });

    it('after a whole stream: adds the usage the provider reported', async () => {
      const { gained, row } = await settleOf(async () => {
        const res = await chat(h.url, key, 'a stream', { maxTokens: 64, stream: true });
        assert.equal(res.status, 200);
        assert.match(res.text, /\[DONE\]/);
        return { headers: res.headers, requestId: res.headers.get('x-request-id') };
      }, 64);
      assert.equal(row.outcome, 'success');
      assert.ok(row.inputTokens > 0);
      assert.equal(gained, row.inputTokens + row.outputTokens);
    });

    it('after a stream that ended early: adds the usage it reported', async () => {
      const { gained, row } = await settleOf(async () => {
        const res = await chat(h.url, key, 'cut short [[mock:truncate]]', { maxTokens: 64, stream: true });
        assert.equal(res.status, 200);
        return { headers: res.headers, requestId: res.headers.get('x-request-id') };
      }, 64);
      assert.equal(row.outcome, 'stream_broken');
      assert.equal(gained, row.inputTokens + row.outputTokens);
    });

    it('after an upstream error: releases everything and adds no tokens', async () => {
      for (const stream of [false, true]) {
        const reqBefore = await readCounter(h.gateway, counterKeyAt('t', tenantId, 'req', 'minute'));
        const { gained, row } = await settleOf(async () => {
          const res = await chat(h.url, key, 'fail please [[mock:status=500]]', { maxTokens: 64, stream });
          assert.ok(res.status >= 500, `status ${res.status}`);
          return { headers: res.headers, requestId: res.headers.get('x-request-id') };
        }, 64);
        assert.equal(row.outcome, 'upstream_error');
        assert.equal(gained, 0);
        const reqAfter = await readCounter(h.gateway, counterKeyAt('t', tenantId, 'req', 'minute'));
        assert.equal(reqAfter.used, reqBefore.used + 1, 'the request itself still counts against requests_per_minute');
      }
    });

    it('after a reset mid-stream: bills the streamed output and the input estimate', async () => {
      const { gained, row, estimate } = await settleOf(async () => {
        const res = await chat(h.url, key, 'break [[mock:reset-mid-stream]]', { maxTokens: 64, stream: true });
        assert.equal(res.status, 200);
        return { headers: res.headers, requestId: res.headers.get('x-request-id') };
      }, 64);
      assert.equal(row.outcome, 'stream_broken');
      assert.ok(row.outputTokens > 0, 'deltas before the break are counted');
      assert.equal(gained, row.outputTokens + estimate, `gained ${gained}, output ${row.outputTokens}, estimate ${estimate}`);
    });

    it('after the client aborts mid-stream: bills the streamed output and the input estimate', async () => {
      const { gained, row, estimate } = await settleOf(async () => {
        const controller = new AbortController();
        const res = await fetch(`${h.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'I will leave [[mock:stall=5000]]' }] }),
          signal: controller.signal,
        });
        assert.equal(res.status, 200);
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        const first = await reader.read();
        assert.equal(first.done, false);
        controller.abort();
        await reader.cancel().catch(() => {});
        return { headers: res.headers, requestId: res.headers.get('x-request-id') };
      }, 64);
      assert.equal(row.outcome, 'client_aborted');
      assert.equal(row.status, 499);
      assert.equal(gained, (row.inputTokens > 0 ? row.inputTokens : estimate) + row.outputTokens);
    });

    it('records the billed input estimate of a broken stream in the ledger too, so the ledger and the counters agree',
      async () => {
        const { gained, row } = await settleOf(async () => {
          const res = await chat(h.url, key, 'break again [[mock:reset-mid-stream]]', { maxTokens: 64, stream: true });
          return { headers: res.headers, requestId: res.headers.get('x-request-id') };
        }, 64);
        assert.equal(row.inputTokens + row.outputTokens, gained);
      });
  });
});

describe('prices from config', () => {
  let h: Harness;
  before(async () => {
    // 1 and 2 USD per million tokens: 1000 and 2000 nano-USD per token
    h = await startHarness({ config: { prices: { 'gpt-4o-mini': { input: 1, output: 2 } } } });
  });
  after(async () => {
    await h?.close();
  });

  it('costs requests at the configured price instead of the shipped one', async () => {
    const { key } = await h.tenantKey('priced', { limits: { usd_per_day: 1 } });
    const res = await chat(h.url, key, 'price me [[mock:tokens=20]]', { maxTokens: 40 });
    assert.equal(res.status, 200, res.text);
    const { input, output } = tokensOf(res.headers);
    const row = await ledgerRow(h.gateway, res.headers.get('x-request-id'));
    assert.equal(row.costNanoUsd, input * 1000 + output * 2000);
    assert.notEqual(row.costNanoUsd, input * MINI_IN_NANO + output * MINI_OUT_NANO);
  });
});

describe('the embedded store across a restart', () => {
  let h: Harness;
  let second: Gateway | undefined;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await second?.close();
    await h?.close();
  });

  it('refuses after a restart on the same SQLite file once the monthly budget was spent before it', async () => {
    // 0.00005 USD: a handful of tiny gpt-4o-mini requests (about 8,000 nano-USD each)
    const { key } = await h.tenantKey('persist', { limits: { usd_per_month: 0.00005 } });
    const tenantId = await tenantIdOf(h.gateway, 'persist');
    let admitted = 0;
    let refusal: Awaited<ReturnType<typeof chat>> | undefined;
    for (let i = 0; i < 20 && !refusal; i++) {
      const res = await chat(h.url, key, 'spend', { maxTokens: 12 });
      if (res.status === 200) admitted++;
      else refusal = res;
      await settledIdle(h.gateway);
    }
    assert.ok(admitted >= 2, `admitted ${admitted}`);
    assert.ok(refusal, 'the budget ran out');
    assert.equal(refusal.json.error.code, 'tenant_budget_month_exceeded');
    const retryAfter = retryAfterOf(refusal.headers);
    assert.ok(retryAfter > 60, 'a monthly budget resets at the start of next month');
    const usdKey = counterKeyAt('t', tenantId, 'usd', 'month');
    const spent = (await readCounter(h.gateway, usdKey)).used;
    assert.ok(spent > 0);

    await h.gateway.close();
    const restarted = await gatewayOnSameStore(h);
    second = restarted.gateway;
    const receivedBefore = h.mock.received.length;
    const after = await chat(restarted.url, key, 'spend', { maxTokens: 12 });
    assert.equal(after.status, 429, after.text);
    assert.equal(after.json.error.code, 'tenant_budget_month_exceeded');
    assert.equal(h.mock.received.length, receivedBefore);
    assert.deepEqual(await readCounter(restarted.gateway, usdKey), { used: spent, reserved: 0 }, 'the counter was seeded from the ledger');
  });
});

describe('admission over the Redis counter store', SKIP_REDIS ? { skip: SKIP_REDIS } : {}, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: { limits: { store: REDIS_URL } } });
  });
  after(async () => {
    await h?.close();
  });

  it('uses Redis for the counters', () => {
    assert.equal(h.gateway.counters.kind, 'redis');
  });

  it('refuses over requests_per_minute with the same code and headers, and settles to the real usage', async () => {
    await roomInMinute();
    // tenant ids are random per run, so these counters are this run's own
    const { key } = await h.tenantKey('redis-rpm', { limits: { requests_per_minute: 2, tokens_per_minute: 100_000 } });
    const tenantId = await tenantIdOf(h.gateway, 'redis-rpm');
    const answers = [];
    for (let i = 0; i < 2; i++) {
      const res = await chat(h.url, key, `hello ${i}`, { maxTokens: 20 });
      assert.equal(res.status, 200, res.text);
      answers.push(res);
    }
    const refused = await chat(h.url, key, 'over', { maxTokens: 20 });
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, 'tenant_requests_per_minute_exceeded');
    assert.equal(refused.headers.get('x-ratelimit-remaining-requests'), '0');
    const retryAfter = retryAfterOf(refused.headers);
    assert.ok(retryAfter >= 1 && retryAfter <= 60);

    const tokens = answers.reduce((sum, res) => sum + tokensOf(res.headers).input + tokensOf(res.headers).output, 0);
    const tokKey = counterKeyAt('t', tenantId, 'tok', 'minute');
    // the shared total may hold other replicas' reservations: check this tenant's counters
    await until(async () => (await readCounter(h.gateway, tokKey)).reserved === 0, 'the Redis reservations to settle');
    assert.deepEqual(await readCounter(h.gateway, tokKey), { used: tokens, reserved: 0 });
    assert.deepEqual(await readCounter(h.gateway, counterKeyAt('t', tenantId, 'req', 'minute')), { used: 2, reserved: 0 });
  });

  it("refuses a key over its key_limits while another key of the tenant still works", async () => {
    await roomInMinute();
    const a = await h.tenantKey('redis-keys', { key_limits: { requests_per_minute: 1 } });
    const b = await h.tenantKey('redis-keys');
    assert.equal((await chat(h.url, a.key, 'a1')).status, 200);
    assert.equal((await chat(h.url, a.key, 'a2')).json.error.code, 'key_requests_per_minute_exceeded');
    assert.equal((await chat(h.url, b.key, 'b1')).status, 200);
  });
});

describe('an unreachable Redis counter store', () => {
  let h: Harness;
  before(async () => {
    // nothing listens on port 1
    h = await startHarness({ config: { limits: { store: 'redis://127.0.0.1:1' } } });
  });
  after(async () => {
    await h?.close();
  });

  it('refuses requests with 503 quota_store_unavailable and never forwards them (fails closed)', async () => {
    const { key } = await h.tenantKey('closed', { limits: { requests_per_minute: 100 } });
    for (const stream of [false, true]) {
      const res = await chat(h.url, key, 'hello', { stream });
      assert.equal(res.status, 503);
      assert.equal(res.json.error.code, 'quota_store_unavailable');
      assert.ok(res.headers.get('retry-after') !== null);
    }
    assert.equal(h.mock.received.length, 0, 'the provider was never called');
  });

  it('reports degraded (still 200: tenants without limits are served) on /readyz, naming limits_store', async () => {
    const res = await fetch(`${h.url}/readyz`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { status: string; checks: Record<string, string> };
    assert.equal(body.status, 'degraded');
    assert.ok(body.checks['limits_store'] && body.checks['limits_store'] !== 'ok', JSON.stringify(body));
    assert.match(body.checks['limits_store'] as string, /redis/);
    assert.equal(body.checks['store'], 'ok');
  });

  it('reports not ready instead when the default policy sets limits: then no tenant can be served', async () => {
    const limitedByDefault = await startHarness({ config: { limits: { store: 'redis://127.0.0.1:1' } }, policy: { limits: { requests_per_minute: 100 } } });
    try {
      const res = await fetch(`${limitedByDefault.url}/readyz`);
      assert.equal(res.status, 503);
      const body = (await res.json()) as { status: string; checks: Record<string, string> };
      assert.equal(body.status, 'not_ready');
      assert.match(body.checks['limits_store'] as string, /redis/);
    } finally {
      await limitedByDefault.close();
    }
  });

  it('still serves a tenant without limits, which skips admission', async () => {
    const res = await chat(h.url, h.key, 'hello');
    assert.equal(res.status, 200);
    assert.deepEqual(rateHeaders(res.headers), {});
  });
});

describe('counter keys of JWT and client-certificate callers', () => {
  it('parse back, so the embedded store seeds their per-key windows from the ledger after a restart (found in review)', async () => {
    const { parseCounterKey } = await import('../src/quota/windows.js');
    const minute = parseCounterKey('k:jwt:0:t_0123456789abcdef:req:m29000000');
    assert.equal(minute?.id, 'jwt:0:t_0123456789abcdef');
    assert.equal(minute?.scope, 'k');
    assert.equal(minute?.metric, 'req');
    assert.equal(minute?.start, 29_000_000 * 60_000);
    assert.equal(parseCounterKey('k:jwt:1:0123456789abcdef:tok:d20261127')?.id, 'jwt:1:0123456789abcdef');
    assert.equal(parseCounterKey('k:cert:0123456789abcdef:usd:M202611')?.id, 'cert:0123456789abcdef');
    assert.equal(parseCounterKey('t:t_0123456789abcdef:usd:M202611')?.id, 't_0123456789abcdef');
    // in-flight counters still never seed, and odd ids do not parse
    assert.equal(parseCounterKey('k:jwt:0:t_x:con:live'), undefined);
    assert.equal(parseCounterKey("k:x' OR 1=1:req:m1"), undefined);
  });
});
