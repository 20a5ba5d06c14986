import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startHarness, FAKE_ADMIN_TOKEN, FAKE_PROVIDER_KEY, type Harness } from './helpers/harness.js';

describe('provider key age metric', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('exposes the age of each current provider key by fingerprint, never the key', async () => {
    const text = await (await fetch(`${h.adminUrl}/metrics`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` } })).text();
    const fingerprint = createHash('sha256').update(FAKE_PROVIDER_KEY).digest('hex').slice(0, 16);
    for (const provider of ['openai', 'anthropic']) {
      const line = text.split('\n').find((l) => l.startsWith(`keywarden_provider_key_age_seconds{provider="${provider}"`));
      assert.ok(line, `no age for ${provider}`);
      assert.ok(line.includes(`fingerprint="${fingerprint}"`) && line.includes('state="current"'));
      const age = Number(line.split(' ').pop());
      assert.ok(age >= 0 && age < 600, `age ${age}`);
    }
    assert.ok(!text.includes(FAKE_PROVIDER_KEY));
  });
});
