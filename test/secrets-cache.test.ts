import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { createSecretCache } from '../src/secrets/cache.js';
import { SecretError, type SecretValue } from '../src/secrets/types.js';
import type { SecretResolver } from '../src/secrets/resolver.js';
import { startHarness, postJson, type Harness } from './helpers/harness.js';

/** A resolver whose answers the test controls. */
function controlledResolver() {
  const state: { value: string; version: string; failing: boolean; calls: number } = { value: 'fake-secret-TEST-ONLY-v1', version: 'v1', failing: false, calls: 0 };
  const resolver: SecretResolver = {
    async resolve(reference: string): Promise<SecretValue> {
      state.calls += 1;
      if (state.failing) throw new SecretError(reference, 'backend unavailable', 'unavailable');
      return { value: state.value, version: state.version };
    },
  };
  return { state, resolver };
}

describe('secret cache', () => {
  it('serves the loaded value and picks up a new version on refresh, without a restart', async () => {
    const { state, resolver } = controlledResolver();
    const events: string[] = [];
    const cache = createSecretCache({ resolver, ttlMs: 60_000, refreshMs: 60_000, onEvent: (e) => events.push(`${e.type}:${e.version ?? ''}`) });
    assert.equal((await cache.load('vault:kv/openai#api_key')).version, 'v1');
    state.value = 'fake-secret-TEST-ONLY-v2';
    state.version = 'v2';
    assert.equal(cache.get('vault:kv/openai#api_key')?.version, 'v1', 'no reload before the refresh');
    await cache.refreshAll();
    assert.equal(cache.get('vault:kv/openai#api_key')?.value, 'fake-secret-TEST-ONLY-v2');
    assert.deepEqual(events, ['version_changed:v2']);
  });

  it('keeps the last good value through an outage until the TTL, then stops serving it', async () => {
    const { state, resolver } = controlledResolver();
    let clock = 1_000_000;
    const events: string[] = [];
    const cache = createSecretCache({ resolver, ttlMs: 10_000, refreshMs: 1000, now: () => clock, onEvent: (e) => events.push(e.type) });
    await cache.load('aws-sm:prod/openai');
    state.failing = true;
    clock += 5000;
    await cache.refreshAll();
    assert.equal(cache.get('aws-sm:prod/openai')?.value, 'fake-secret-TEST-ONLY-v1', 'the last good value during the outage');
    const during = cache.status()[0];
    assert.equal(during?.usable, true);
    assert.equal(during?.lastError?.reason, 'unavailable');
    assert.equal(during?.backend, 'aws-sm');
    clock += 6000;
    assert.equal(cache.get('aws-sm:prod/openai'), undefined, 'expired after the TTL');
    assert.equal(cache.status()[0]?.usable, false);
    assert.ok(events.includes('refresh_failed') && events.includes('expired'));
    assert.ok(!JSON.stringify(cache.status()).includes('fake-secret-TEST-ONLY'), 'status never shows a value');
    // the backend comes back: the value is usable again
    state.failing = false;
    await cache.refreshAll();
    assert.equal(cache.get('aws-sm:prod/openai')?.value, 'fake-secret-TEST-ONLY-v1');
  });

  it('loads a reference once for concurrent callers', async () => {
    const { state, resolver } = controlledResolver();
    const cache = createSecretCache({ resolver, ttlMs: 60_000, refreshMs: 60_000 });
    await Promise.all(Array.from({ length: 20 }, () => cache.load('gcp-sm:projects/p/secrets/s')));
    assert.equal(state.calls, 1);
  });
});

describe('a provider key whose backend stays down past the cache TTL', () => {
  let h: Harness;
  after(async () => {
    await h?.close();
  });

  it('keeps serving through a short outage, then answers 503 and reports the backend in /readyz, and recovers', async () => {
    h = await startHarness({ config: { secrets: { cache_ttl: '1500ms', refresh_interval: '100ms' } } });
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'outage test' }] };
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat)).status, 200);
    const keyFile = join(h.dir, 'openai-key');
    renameSync(keyFile, `${keyFile}.away`); // the backend "goes down": every refresh now fails
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat)).status, 200, 'the last good value is used during the outage');
    await new Promise((r) => setTimeout(r, 1700));
    const refused = await postJson(`${h.url}/v1/chat/completions`, h.key, chat);
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, 'provider_key_unavailable');
    const ready = await fetch(`${h.url}/readyz`);
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { checks: Record<string, string> };
    assert.match(body.checks['provider_keys'] ?? '', /openai \(file\)/);
    // the anthropic key (another file) is unaffected
    const anthropic = await postJson(`${h.url}/v1/messages`, h.key, { model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'still fine' }] }, { 'anthropic-version': '2023-06-01' });
    assert.equal(anthropic.status, 200);
    renameSync(`${keyFile}.away`, keyFile);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat)).status, 200, 'recovers when the backend is back');
    assert.equal((await fetch(`${h.url}/readyz`)).status, 200);
  });
});
