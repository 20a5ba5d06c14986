import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, postJson, type Harness } from './helpers/harness.js';

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'headers check' }], max_tokens: 16, ...extra });

describe('rate-limit headers on every answer of a limited tenant', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policy: { limits: { requests_per_minute: 50, tokens_per_minute: 100_000 } } });
  });
  after(async () => {
    await h?.close();
  });

  it('sends them on a success, counting the request', async () => {
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-ratelimit-limit-requests'), '50');
    assert.equal(res.headers.get('x-ratelimit-remaining-requests'), '49');
    assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '100000');
    assert.match(res.headers.get('x-ratelimit-reset-requests') ?? '', /^\d+s$/);
  });

  it('sends them on a policy refusal before admission, which consumes nothing', async () => {
    await h.gateway.writer.flush();
    const before = await postJson(`${h.url}/v1/chat/completions`, h.key, chat({ logprobs: true }));
    assert.equal(before.status, 400);
    assert.equal(before.json.error.code, 'policy_param_not_allowed');
    assert.equal(before.headers.get('x-ratelimit-limit-requests'), '50');
    const remaining = Number(before.headers.get('x-ratelimit-remaining-requests'));
    const again = await postJson(`${h.url}/v1/chat/completions`, h.key, chat({ logprobs: true }));
    assert.equal(Number(again.headers.get('x-ratelimit-remaining-requests')), remaining, 'a refused request does not count');
  });

  it('sends none to a tenant without limits', async () => {
    const free = await h.tenantKey('unlimited-tenant', { limits: null });
    const res = await postJson(`${h.url}/v1/chat/completions`, free.key, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-ratelimit-limit-requests'), null);
  });
});
