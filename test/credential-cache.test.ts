import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { Store, TenantKeyRepository } from '../src/store/types.js';
import { createTenantService } from '../src/services/tenant-service.js';
import { createAuthenticator, type VerifiedKey } from '../src/auth/authenticate.js';
import { createCredentialCache } from '../src/auth/credential-cache.js';
import { createPolicyResolver } from '../src/policy/resolve.js';
import { configFromDocument } from '../src/config/load.js';
import { DEMO_POLICY } from '../src/cli/demo.js';
import { GatewayError } from '../src/errors/index.js';

/*
 * The cache of verified tenant keys: keyed by the hash of the whole key, emptied whenever a
 * tenant or key changes in this process or another one sharing the SQLite file, so it never
 * lets a revoked key, a disabled tenant or a wrong secret through.
 */

const HASH_KEY = Buffer.from('fake-key-hash-key-TEST-ONLY-000000000000');

let dir: string;
let store: Store;
let other: Store;
let lookups = 0;

function setup(now: () => number = Date.now) {
  const config = configFromDocument({
    listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' }, store: 'sqlite::memory:', admin: { token: 'env:T' }, audit: { prompt_hmac_key: 'env:P' },
    providers: { openai: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'env:K' }, anthropic: { type: 'anthropic', base_url: 'http://127.0.0.1:9', api_key: 'env:K' } },
    models: { 'gpt-4o-mini': { provider: 'openai' }, fast: { provider: 'openai', model: 'gpt-4o-mini' }, 'text-embedding-3-small': { provider: 'openai' }, 'claude-3-5-haiku-latest': { provider: 'anthropic' } },
    tenants: { defaults: { policy: DEMO_POLICY } },
  }, 'test', {});
  const policyFor = createPolicyResolver(config.tenants.defaults.policy);
  // count store lookups: a cache hit makes none
  const keys: TenantKeyRepository = { ...store.keys, findWithTenant: async (id) => { lookups += 1; return store.keys.findWithTenant(id); } };
  const cache = createCredentialCache<VerifiedKey>({ changeStamp: () => store.changeStamp(), now });
  const authenticate = createAuthenticator({ keys, hashKey: HASH_KEY, policyFor, cache, now });
  return { authenticate, cache, tenants: createTenantService({ store, hashKey: HASH_KEY, defaults: config.tenants.defaults.policy, now }) };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'accepted';
  } catch (err) {
    assert.ok(err instanceof GatewayError, String(err));
    return err.code;
  }
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'keywarden-credcache-'));
  store = openSqliteStore(`sqlite:${join(dir, 'kw.db')}`);
  // a second connection to the same file stands in for the CLI or another process
  other = openSqliteStore(`sqlite:${join(dir, 'kw.db')}`);
});
after(async () => {
  await store.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('verified credential cache', () => {
  it('a repeat caller skips the store lookup', async () => {
    const { authenticate, tenants } = setup();
    await tenants.createTenant('cache-a', 'test');
    const { key } = await tenants.issueKey('cache-a', 'test');
    lookups = 0;
    const first = await authenticate(key);
    const second = await authenticate(key);
    assert.equal(first.tenantName, 'cache-a');
    assert.equal(second, first);
    assert.equal(lookups, 1);
  });

  it('is keyed by the whole key: a wrong secret for a cached key id is verified in full and refused', async () => {
    const { authenticate, tenants } = setup();
    await tenants.createTenant('cache-b', 'test');
    const { key, id } = await tenants.issueKey('cache-b', 'test');
    await authenticate(key);
    lookups = 0;
    const forged = `kw_${id}_${'A'.repeat(43)}`; // fake, TEST ONLY
    assert.equal(await refusal(authenticate(forged)), 'auth_invalid_credentials');
    // differs only in the last character of the secret
    const nearMiss = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    assert.equal(await refusal(authenticate(nearMiss)), 'auth_invalid_credentials');
    assert.equal(lookups, 2);
  });

  it('a key revoked in this process is refused on the next request', async () => {
    const { authenticate, tenants } = setup();
    await tenants.createTenant('cache-c', 'test');
    const { key, id } = await tenants.issueKey('cache-c', 'test');
    await authenticate(key);
    await tenants.revokeKey(id, 'test');
    assert.equal(await refusal(authenticate(key)), 'auth_key_revoked');
  });

  it('a key revoked or a tenant disabled by another connection (the CLI) is refused on the next request', async () => {
    const { authenticate, tenants } = setup();
    const fromCli = createTenantService({ store: other, hashKey: HASH_KEY, defaults: {} as never });
    await tenants.createTenant('cache-d', 'test');
    const one = await tenants.issueKey('cache-d', 'test');
    const two = await tenants.issueKey('cache-d', 'test');
    await authenticate(one.key);
    await authenticate(two.key);
    await fromCli.revokeKey(one.id, 'cli');
    // another process's commit is seen within DATA_VERSION_RECHECK_MS (2 ms)
    await sleep(5);
    assert.equal(await refusal(authenticate(one.key)), 'auth_key_revoked');
    assert.equal((await authenticate(two.key)).tenantName, 'cache-d');
    await other.tenants.setStatus((await other.tenants.getByName('cache-d'))!.id, 'disabled',
      { ts: Date.now(), actor: 'cli', action: 'tenant.disable', target: null, outcome: 'success', requestId: null, details: {} });
    await sleep(5);
    assert.equal(await refusal(authenticate(two.key)), 'auth_tenant_disabled');
  });

  it('a policy or limits change applies to the next request', async () => {
    const { authenticate, tenants } = setup();
    await tenants.createTenant('cache-e', 'test');
    const { key } = await tenants.issueKey('cache-e', 'test');
    assert.equal((await authenticate(key)).policy.tools, false);
    await tenants.setTenantPolicy('cache-e', { tools: true }, 'test');
    assert.equal((await authenticate(key)).policy.tools, true);
  });

  it('a cached key still expires on time', async () => {
    let clock = Date.now();
    const { authenticate, tenants } = setup(() => clock);
    await tenants.createTenant('cache-f', 'test');
    const { key } = await tenants.issueKey('cache-f', 'test', { expiresInMs: 1_000 });
    await authenticate(key);
    lookups = 0;
    await authenticate(key);
    assert.equal(lookups, 0, 'the second call should be a cache hit');
    clock += 1_001;
    assert.equal(await refusal(authenticate(key)), 'auth_key_expired');
  });

  it('a cached JWT still expires at its exp, answering auth_jwt_expired', async () => {
    let clock = Date.now();
    const policyFor = createPolicyResolver(DEMO_POLICY as never);
    let verifications = 0;
    const principal = { tenantId: 't_x', tenantName: 'x', keyId: 'jwt:0', policy: policyFor('t_x', null), keyLimits: {} } as never;
    const cache = createCredentialCache<VerifiedKey>({ changeStamp: () => store.changeStamp(), now: () => clock });
    const authenticate = createAuthenticator({
      keys: store.keys, hashKey: HASH_KEY, policyFor, cache, now: () => clock,
      jwt: async () => { verifications += 1; return { principal, expiresAt: clock + 1_000 }; },
    });
    const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLVRFU1QtT05MWQ'; // fake, TEST ONLY
    await authenticate(token);
    await authenticate(token);
    assert.equal(verifications, 1, 'the second use is a cache hit');
    clock += 1_001;
    assert.equal(await refusal(authenticate(token)), 'auth_jwt_expired');
  });

  it('keeps no failure, holds at most maxEntries and ages entries out', async () => {
    let clock = 1_000_000;
    let stamp = 1;
    const cache = createCredentialCache<string>({ maxEntries: 2, ttlMs: 100, changeStamp: () => stamp, now: () => clock });
    cache.set('one', 'a', cache.stamp());
    cache.set('two', 'b', cache.stamp());
    cache.set('three', 'c', cache.stamp());
    assert.equal(cache.size, 2);
    assert.equal(cache.get('one'), undefined, 'the oldest entry is dropped first');
    assert.equal(cache.get('three'), 'c');
    clock += 101;
    assert.equal(cache.get('three'), undefined, 'past its ttl');
    // a change between reading the stamp and verifying: the result is not kept
    const before = cache.stamp();
    stamp += 1;
    cache.set('four', 'd', before);
    assert.equal(cache.get('four'), undefined);
    cache.set('five', 'e', cache.stamp());
    assert.equal(cache.get('five'), 'e');
    stamp += 1;
    assert.equal(cache.get('five'), undefined, 'a change empties the cache');
  });
});
