import { startTcpProxy } from './helpers/tcp-proxy.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createAuthFailureLimiter } from '../src/auth/failure-limiter.js';
import { createSharedAuthFailureLimiter, type AuthFailureStore, type FailureCount } from '../src/auth/shared-failure-limiter.js';
import { GatewayError } from '../src/errors/index.js';
import { validateConfig } from '../src/config/validate.js';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';

/*
 * Credential guessing spread over replicas: with `limits.store` on Redis, refused credentials are
 * counted across every gateway sharing it, so N replicas do not allow N times the guesses. The
 * request path stays local; while Redis is away each gateway still enforces the limits itself.
 */

const REDIS_URL = process.env['REDIS_URL'];
const SKIP_REDIS = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379); failed-authentication limits shared through Redis not tested';
/** Every key these tests write starts with this, so runs never meet and cleanup is exact. */
const RUN_PREFIX = `kwtest-authfail-${process.pid}-${randomBytes(4).toString('hex')}:`;

// Plainly fake credentials shaped like tenant keys and admin tokens: they unlock nothing, anywhere. TEST-ONLY.
const FAKE_SECRET = 'TESTONLYfakeSecretTESTONLYfakeSecret0000000'; // 43 chars, TEST-ONLY
const FAKE_ADMIN_SECRET = 'TESTONLYfakeAdminSecretTESTONLYfakeAdmin000'; // 43 chars, TEST-ONLY
const FAKE_REDIS_PASSWORD = 'fake-redis-password-TEST-ONLY-0000'; // TEST-ONLY
const fakeKey = (id: string, secret = FAKE_SECRET) => `kw_${id}_${secret}`;
const fakeId = (n: number) => `testonly${String(n).padStart(8, '0')}`;

/** The key with its secret replaced: right id, wrong secret. */
function wrongSecretOf(key: string): string {
  return `${key.slice(0, -1)}${key.at(-1) === 'A' ? 'B' : 'A'}`;
}

async function models(url: string, key: string | undefined) {
  const res = await fetch(`${url}/v1/models`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  const json = JSON.parse(await res.text()) as Record<string, any>;
  return { status: res.status, code: json['error']?.code as string | undefined };
}

async function admin(adminUrl: string, token: string) {
  const res = await fetch(`${adminUrl}/admin/tenants`, { headers: { authorization: `Bearer ${token}` } });
  const json = JSON.parse(await res.text()) as Record<string, any>;
  return { status: res.status, code: (json['error']?.code ?? json['code']) as string | undefined };
}

function events(h: Harness, name: string): Record<string, unknown>[] {
  return h.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['event'] === name);
}

async function waitFor(test: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!test()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Config of a replica: limits on a shared Redis under `prefix`; a 24h window so a test never straddles one. */
function replicaConfig(url: string, prefix: string, perAddress: number, perKey: number, extraLimits: Record<string, unknown> = {}) {
  return {
    limits: { store: url, key_prefix: prefix, ...extraLimits },
    auth: { failure_limits: { per_address: { max: perAddress, window: '24h' }, per_key: { max: perKey, window: '24h' } } },
  };
}

/**
 * Sends `attempts` refused credentials from this test's address, alternating between replicas,
 * and returns the statuses. The short pause lets each failure's background count reach Redis, as
 * it does between a real client's requests (the documented overshoot covers requests faster than
 * one Redis round trip).
 */
async function alternate(attempts: number, send: (i: number) => Promise<{ status: number; code: string | undefined }>) {
  const answers: { status: number; code: string | undefined }[] = [];
  for (let i = 0; i < attempts; i++) {
    answers.push(await send(i));
    await sleep(20);
  }
  return answers;
}

describe('the in-process limiter can be marked limited from outside (block)', () => {
  it('refuses a blocked address until the given time, and never shortens a limit in force', () => {
    let now = 1_000_000;
    const limiter = createAuthFailureLimiter({ perAddress: { max: 3, windowMs: 60_000 }, perKey: { max: 3, windowMs: 60_000 }, now: () => now });
    limiter.check('10.0.0.1');
    limiter.blockAddress('10.0.0.1', now + 10_000);
    assert.throws(() => limiter.check('10.0.0.1'), (err: unknown) => err instanceof GatewayError && err.code === 'auth_rate_limited' && err.retryAfterSeconds === 10);
    // another address is untouched
    limiter.check('10.0.0.2');
    // a shorter block does not cut the longer one
    limiter.blockAddress('10.0.0.1', now + 2_000);
    now += 5_000;
    assert.throws(() => limiter.check('10.0.0.1'));
    now += 5_000;
    limiter.check('10.0.0.1');
  });

  it('caps a block at one window (a clock far ahead cannot lock an address out for longer)', () => {
    const now = 1_000_000;
    const limiter = createAuthFailureLimiter({ perAddress: { max: 3, windowMs: 60_000 }, perKey: { max: 3, windowMs: 60_000 }, now: () => now });
    limiter.blockKey('testonly00000001', now + 86_400_000);
    assert.equal(limiter.keyBlockedMs('testonly00000001'), 60_000);
    assert.equal(limiter.keyBlockedMs('testonly00000002'), 0);
  });
});

describe('shared failure limiter over a store double (no Redis needed)', () => {
  function recordingStore(answer: (counts: readonly FailureCount[]) => number[] | undefined) {
    const sent: FailureCount[][] = [];
    const store: AuthFailureStore = {
      prefix: 'kwtest:',
      increment: async (counts) => { sent.push([...counts]); return answer(counts); },
      close: async () => {},
    };
    return { store, sent };
  }
  const local = { perAddress: { max: 5, windowMs: 60_000 }, perKey: { max: 5, windowMs: 60_000 } };

  it('refuses the next request from an address once the shared count reaches the limit', async () => {
    const { store, sent } = recordingStore((counts) => counts.map(() => 5));
    const limiter = createSharedAuthFailureLimiter({ local, store, listener: 'public', now: () => 120_500 });
    limiter.check('10.1.1.1');
    limiter.fail('10.1.1.1', 'testonly00000001');
    await limiter.settled();
    assert.throws(() => limiter.check('10.1.1.1'), (err: unknown) => err instanceof GatewayError && err.code === 'auth_rate_limited');
    // until the end of the shared (aligned) window: 180 000 − 120 500 ms
    assert.equal(limiter.keyBlockedMs('testonly00000001'), 59_500);
    assert.deepEqual(sent[0]?.map((c) => c.key), ['kwtest:authfail:public:a:10.1.1.1:120000', 'kwtest:authfail:public:k:testonly00000001:120000']);
  });

  it('counts locally only when the store does not answer (Redis away)', async () => {
    const { store } = recordingStore(() => undefined);
    const limiter = createSharedAuthFailureLimiter({ local, store, listener: 'admin' });
    for (let i = 0; i < 4; i++) limiter.fail('10.1.1.2');
    await limiter.settled();
    limiter.check('10.1.1.2');
    limiter.fail('10.1.1.2');
    assert.throws(() => limiter.check('10.1.1.2'), (err: unknown) => err instanceof GatewayError && err.code === 'auth_rate_limited');
  });

  it('writes bounded key names: an IPv6 address by its /64 without a zone, odd values hashed', async () => {
    const { store, sent } = recordingStore((counts) => counts.map(() => 1));
    const limiter = createSharedAuthFailureLimiter({ local, store, listener: 'public' });
    const longId = `testonly${'x'.repeat(300)}`;
    limiter.fail('fe80::1:2:3:4%eth0', longId);
    limiter.fail('not an address %zone', undefined);
    await limiter.settled();
    const keys = sent.flat().map((c) => c.key);
    assert.match(keys[0] as string, /^kwtest:authfail:public:a:fe80:0:0:0::\/64:\d+$/);
    assert.match(keys[1] as string, /^kwtest:authfail:public:k:#[0-9a-f]{32}:\d+$/);
    assert.match(keys[2] as string, /^kwtest:authfail:public:a:#[0-9a-f]{32}:\d+$/);
    for (const key of keys) {
      assert.ok(key.length <= 128, key);
      assert.ok(!key.includes('%') && !key.includes('eth0') && !key.includes(' '), key);
    }
  });
});

describe('limits.key_prefix', () => {
  const base = {
    admin: { token: 'env:KW_TEST_ADMIN' }, audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_OPENAI' } },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
  };
  it('defaults to keywarden: and refuses characters a key name should not hold', () => {
    assert.equal(validateConfig(base).config?.quota.keyPrefix, 'keywarden:');
    assert.equal(validateConfig({ ...base, limits: { key_prefix: 'staging:kw:' } }).config?.quota.keyPrefix, 'staging:kw:');
    for (const bad of ['', 'a{q}', 'has space', 'x'.repeat(65), 7]) {
      const { problems } = validateConfig({ ...base, limits: { key_prefix: bad } });
      assert.ok(problems.some((p) => p.includes('limits.key_prefix')), `accepted ${String(bad)}`);
    }
  });
});

describe('failed-authentication limits shared by replicas through Redis', { skip: SKIP_REDIS }, () => {
  const harnesses: Harness[] = [];
  let testCount = 0;
  const secretsSeen: string[] = [FAKE_SECRET, FAKE_ADMIN_SECRET, FAKE_ADMIN_TOKEN, FAKE_REDIS_PASSWORD];
  async function replicas(count: number, config: Record<string, unknown>): Promise<Harness[]> {
    const started: Harness[] = [];
    for (let i = 0; i < count; i++) {
      const h = await startHarness({ config });
      harnesses.push(h);
      started.push(h);
      secretsSeen.push(h.key);
    }
    return started;
  }
  const nextPrefix = () => `${RUN_PREFIX}${++testCount}:`;

  after(async () => {
    await Promise.all(harnesses.map((h) => h.close()));
    // the keys of this run, and only those
    const redis = new Redis(REDIS_URL as string);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  });

  it('limits one address at about max failures in total across two gateways, not max per gateway', async () => {
    const max = 6;
    const [a, b] = await replicas(2, replicaConfig(REDIS_URL as string, nextPrefix(), max, 1000)) as [Harness, Harness];
    const answers = await alternate(4 * max, (i) => models((i % 2 === 0 ? a : b).url, fakeKey(fakeId(i))));
    assert.deepEqual(answers.filter((r) => r.status >= 500), [], 'no server errors');
    const refused = answers.filter((r) => r.status === 401).length;
    // per process, the two would have allowed 2 × max
    assert.ok(refused >= max && refused <= max + 1, `${refused} failures answered 401 before the limit (max ${max}, two replicas)`);
    // once limited, every answer on either gateway is the 429, and the last ones come from both
    const firstLimited = answers.findIndex((r) => r.status === 429);
    assert.ok(answers.slice(firstLimited).every((r) => r.status === 429 && r.code === 'auth_rate_limited'));
    // the address is limited on both, fail closed: even the right key is refused unverified
    assert.equal((await models(a.url, a.key)).status, 429);
    assert.equal((await models(b.url, b.key)).status, 429);
  });

  it('limits one key id across gateways, and its right secret still gets in', async () => {
    const max = 5;
    const [a, b] = await replicas(2, replicaConfig(REDIS_URL as string, nextPrefix(), 1000, max)) as [Harness, Harness];
    const wrong = wrongSecretOf(a.key);
    const answers = await alternate(4 * max, (i) => models((i % 2 === 0 ? a : b).url, wrong));
    assert.deepEqual(answers.filter((r) => r.status >= 500), [], 'no server errors');
    const refused = answers.filter((r) => r.status === 401).length;
    assert.ok(refused >= max && refused <= max + 1, `${refused} wrong secrets answered 401 before the key-id limit (max ${max}, two replicas)`);
    assert.deepEqual(await models(a.url, wrong), { status: 429, code: 'auth_rate_limited' });
    assert.deepEqual(await models(b.url, wrong), { status: 429, code: 'auth_rate_limited' });
    // key ids are public: others' wrong guesses never lock the owner out
    assert.equal((await models(a.url, a.key)).status, 200, 'the right secret of a limited key id still gets in');
    // another key id is not limited
    assert.equal((await models(b.url, b.key)).status, 200);
  });

  it('shares admin-listener failures apart from the public listener', async () => {
    const max = 4;
    const [a, b] = await replicas(2, replicaConfig(REDIS_URL as string, nextPrefix(), max, 1000)) as [Harness, Harness];
    const answers = await alternate(4 * max, (i) => admin((i % 2 === 0 ? a : b).adminUrl, `kwa_${fakeId(i)}_${FAKE_ADMIN_SECRET}`));
    assert.deepEqual(answers.filter((r) => r.status >= 500), [], 'no server errors');
    const refused = answers.filter((r) => r.status === 401).length;
    assert.ok(refused >= max && refused <= max + 1, `${refused} admin failures answered 401 before the limit (max ${max}, two replicas)`);
    assert.equal((await admin(a.adminUrl, FAKE_ADMIN_TOKEN)).status, 429);
    assert.equal((await admin(b.adminUrl, FAKE_ADMIN_TOKEN)).status, 429);
    // tenant keys on the public listener are counted apart
    assert.equal((await models(a.url, a.key)).status, 200);
    assert.equal((await models(b.url, b.key)).status, 200);
  });

  it('keeps the local limits, answers no 5xx and warns once when Redis cannot be reached', async () => {
    // a port nothing listens on
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const dir = mkdtempSync(join(tmpdir(), 'keywarden-authfail-'));
    try {
      const passwordFile = join(dir, 'redis-password');
      writeFileSync(passwordFile, FAKE_REDIS_PASSWORD, { mode: 0o600 });
      const max = 3;
      const [h] = await replicas(1, replicaConfig(`redis://127.0.0.1:${port}`, nextPrefix(), max, 1000, { redis_password: `file:${passwordFile}` })) as [Harness];
      const answers = await alternate(3 * max, (i) => models(h.url, fakeKey(fakeId(i))));
      assert.deepEqual(answers.map((r) => r.status), [...new Array<number>(max).fill(401), ...new Array<number>(2 * max).fill(429)]);
      await waitFor(() => events(h, 'auth_failure_store_unavailable').length > 0, 'the unavailable warning');
      await sleep(300); // the client keeps retrying meanwhile: still one warning
      const warnings = events(h, 'auth_failure_store_unavailable');
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]?.['level'], 40);
      const logs = h.logs.text();
      assert.ok(!logs.includes(FAKE_REDIS_PASSWORD), 'the Redis password was logged');
      assert.ok(!logs.includes(FAKE_SECRET), 'a refused secret was logged');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('counts locally while Redis is away, says so once each way, and shares again when it is back', async () => {
    const relay = await startTcpProxy(REDIS_URL as string);
    const prefix = nextPrefix();
    const max = 4;
    try {
      const [h] = await replicas(1, replicaConfig(relay.url, prefix, max, 1000)) as [Harness];
      // a second replica straight on Redis: sees what the first one shares
      const [direct] = await replicas(1, replicaConfig(REDIS_URL as string, prefix, max, 1000)) as [Harness];

      const sharedCount = async (): Promise<number> => {
        const redis = new Redis(REDIS_URL as string);
        try {
          const [, keys] = await redis.scan('0', 'MATCH', `${prefix}authfail:public:a:*`, 'COUNT', 1000);
          return keys.length === 0 ? 0 : Number(await redis.get(keys[0] as string));
        } finally {
          redis.disconnect();
        }
      };

      // Redis goes away for the first replica
      relay.down();
      await waitFor(() => events(h, 'auth_failure_store_unavailable').length > 0, 'the unavailable warning');
      const during = await alternate(2, (i) => models(h.url, fakeKey(fakeId(i))));
      assert.deepEqual(during.map((r) => r.status), [401, 401], 'no 5xx while Redis is away');
      assert.equal(await sharedCount(), 0, 'nothing is counted remotely while Redis is away');

      // Redis comes back on the same address
      await relay.up();
      await waitFor(() => events(h, 'auth_failure_store_available').length > 0, 'the recovery notice');
      assert.equal(events(h, 'auth_failure_store_unavailable').length, 1, 'one warning for the outage');
      assert.equal(events(h, 'auth_failure_store_available').length, 1, 'one notice for the recovery');

      // shared again. Local counts: h 2 (from the outage), direct 0; shared 0.
      const after = await alternate(4, (i) => models((i % 2 === 0 ? direct : h).url, fakeKey(fakeId(10 + i))));
      assert.deepEqual(after.map((r) => r.status), [401, 401, 401, 401]);
      // h 4 (limited by its own count; its failure was the one reaching 4), direct 2, shared 4
      assert.equal(await sharedCount(), 4);
      assert.equal((await models(h.url, h.key)).status, 429);
      // direct's next failure learns the shared count from Redis: limited with only 3 failures of its own
      assert.equal((await models(direct.url, fakeKey(fakeId(20)))).status, 401);
      await sleep(50);
      assert.equal((await models(direct.url, direct.key)).status, 429, 'the shared count reached the second replica');
    } finally {
      relay.close();
    }
  });

  it('writes only address groups and public key ids to Redis, never a credential', async () => {
    const redis = new Redis(REDIS_URL as string);
    const keys: string[] = [];
    try {
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    const failureKeys = keys.filter((k) => k.includes(':authfail:'));
    assert.ok(failureKeys.length >= 4, `found ${failureKeys.length} failure counters`);
    for (const key of failureKeys) {
      assert.match(key, /^kwtest-authfail-\d+-[0-9a-f]{8}:\d+:authfail:(public|admin):(a:127\.0\.0\.1|k:[a-z0-9]{16}):\d+$/);
    }
    for (const key of keys) {
      for (const secret of secretsSeen) {
        assert.ok(!key.includes(secret), 'a credential reached a Redis key name');
        // nor the secret part of a tenant key (everything after its id)
        const secretPart = secret.startsWith('kw_') ? secret.slice(20) : secret;
        assert.ok(!key.includes(secretPart), 'a secret reached a Redis key name');
      }
    }
  });
});
