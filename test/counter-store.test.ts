import { startTcpProxy } from './helpers/tcp-proxy.js';
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createMemoryCounterStore } from '../src/quota/memory-store.js';
import { createRedisCounterStore } from '../src/quota/redis-store.js';
import { CounterStoreUnavailableError } from '../src/quota/types.js';
import type { CounterCheck, CounterStore } from '../src/quota/types.js';
import { counterStoreContract } from './helpers/counter-store-contract.js';

const REDIS_URL = process.env.REDIS_URL;
const SKIP_REDIS = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379); Redis counter store not tested';
// every key this run writes starts with this, and is deleted in `after`
const RUN_PREFIX = `kwtest-${randomBytes(6).toString('hex')}:`;
let storeCount = 0;
const opened: CounterStore[] = [];

function redisStore(prefix = `${RUN_PREFIX}${++storeCount}:`, url = REDIS_URL as string): CounterStore {
  const store = createRedisCounterStore({ url, keyPrefix: prefix });
  opened.push(store);
  return store;
}

after(async () => {
  await Promise.allSettled(opened.map((s) => s.close()));
  if (!REDIS_URL) return;
  const admin = new Redis(REDIS_URL, { lazyConnect: true });
  await admin.connect();
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await admin.del(...keys);
  } while (cursor !== '0');
  await admin.quit();
});

counterStoreContract('memory', async () => createMemoryCounterStore());
counterStoreContract('redis', async () => redisStore(), SKIP_REDIS ? { skip: SKIP_REDIS } : {});

describe('Redis counter store across replicas', SKIP_REDIS ? { skip: SKIP_REDIS } : {}, () => {
  it('admits exactly 50 of 200 reserves raced by three replicas sharing Redis', async () => {
    const prefix = `${RUN_PREFIX}replicas:`;
    const replicas = [redisStore(prefix), redisStore(prefix), redisStore(prefix)];
    const now = Date.now();
    const check: CounterCheck = { key: 't:t_race:tokens:minute', limit: 50_000, amount: 1000, windowEnd: now + 60_000 };
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (replicas[i % 3] as CounterStore).reserve(`race-${i}`, [check], 30_000, now)),
    );
    const admittedIds = outcomes.flatMap((o, i) => (o.admitted ? [`race-${i}`] : []));
    assert.equal(admittedIds.length, 50);
    for (const replica of replicas) {
      assert.deepEqual(await replica.read([check.key], now), [{ used: 0, reserved: 50_000 }]);
      assert.equal(await replica.reservedTotal(now), 50_000);
    }
    // each replica settles what it admitted; another replica sees the totals
    await Promise.all(
      admittedIds.map((id, i) => (replicas[i % 3] as CounterStore).settle(id, [{ key: check.key, amount: 700, windowEnd: check.windowEnd }], now + 1)),
    );
    assert.deepEqual(await (replicas[0] as CounterStore).read([check.key], now + 2), [{ used: 35_000, reserved: 0 }]);
    assert.equal(await (replicas[2] as CounterStore).reservedTotal(now + 2), 0);
  });

  it('claimOnce is true for one replica only', async () => {
    const prefix = `${RUN_PREFIX}claims:`;
    const [a, b] = [redisStore(prefix), redisStore(prefix)];
    const expiresAt = Date.now() + 60_000;
    const results = await Promise.all([a.claimOnce('alert:t_1:80', expiresAt), b.claimOnce('alert:t_1:80', expiresAt)]);
    assert.deepEqual(results.sort(), [false, true]);
    assert.equal(await a.claimOnce('alert:t_1:80', expiresAt), false);
  });

  it('keeps all of its keys under the prefix and one hash tag', async () => {
    const prefix = `${RUN_PREFIX}layout:`;
    const store = redisStore(prefix);
    const now = Date.now();
    await store.reserve('r1', [{ key: 'k:a', limit: 10, amount: 1, windowEnd: now + 60_000 }], 30_000, now);
    await store.claimOnce('once', now + 60_000);
    const admin = new Redis(REDIS_URL as string);
    try {
      const keys = await admin.keys(`${prefix}*`);
      assert.ok(keys.length >= 4, `expected counter, record, leases, total and claim keys, got ${keys.join(', ')}`);
      for (const key of keys) assert.ok(key.startsWith(`${prefix}{q}:`), key);
      // counters expire on their own (window end plus a margin)
      assert.ok((await admin.pttl(`${prefix}{q}:c:k:a`)) > 0);
    } finally {
      await admin.quit();
    }
  });

  it('refuses with CounterStoreUnavailableError, without the password, when Redis is unreachable', async () => {
    // fake credential, TEST ONLY: it must never appear in an error
    const password = 'sk-fake-TEST-ONLY-redis-password';
    const store = redisStore(`${RUN_PREFIX}down:`, `redis://:${password}@127.0.0.1:1`);
    const printed: unknown[] = [];
    const originalError = console.error;
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    console.error = (...args: unknown[]) => void printed.push(args);
    try {
      const started = Date.now();
      const now = Date.now();
      for (const attempt of [
        () => store.reserve('r1', [{ key: 'k:a', limit: 10, amount: 1, windowEnd: now + 60_000 }], 30_000, now),
        () => store.ping(),
        () => store.settle('r1', [{ key: 'k:a', amount: 1, windowEnd: now + 60_000 }], now),
        () => store.read(['k:a'], now),
      ]) {
        await assert.rejects(attempt(), (err: unknown) => {
          assert.ok(err instanceof CounterStoreUnavailableError, String(err));
          assert.ok(!err.message.includes(password), err.message);
          assert.ok(!err.message.includes('127.0.0.1:1'), err.message);
          assert.ok(!JSON.stringify(err.cause ?? null).includes(password));
          assert.ok(!String((err.cause as Error | undefined)?.message ?? '').includes(password));
          return true;
        });
      }
      // fails fast (generous bound: the command timeout is 1 s)
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      // let it retry the connection a few times: no crash, nothing printed
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      console.error = originalError;
      process.off('uncaughtException', onUncaught);
    }
    assert.deepEqual(uncaught, []);
    assert.deepEqual(printed, []);
  });

  it('fails closed while Redis is away and recovers by itself when it comes back', async () => {
    const relay = await startTcpProxy(REDIS_URL as string);
    const store = redisStore(`${RUN_PREFIX}proxy:`, relay.url);
    const now = Date.now();
    const check: CounterCheck = { key: 'k:a', limit: 10, amount: 1, windowEnd: now + 60_000 };
    try {
      assert.equal((await store.reserve('before', [check], 30_000, now)).admitted, true);

      // Redis goes away
      relay.down();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await assert.rejects(store.reserve('during', [check], 30_000, now), CounterStoreUnavailableError);

      // Redis comes back on the same address
      await relay.up();
      let recovered = false;
      for (let i = 0; i < 60 && !recovered; i++) {
        try {
          await store.ping();
          recovered = true;
        } catch (err) {
          assert.ok(err instanceof CounterStoreUnavailableError);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.ok(recovered, 'the store reconnected');
      // the refused admission reserved nothing while Redis was away
      assert.deepEqual(await store.reserve('after', [check], 30_000, now + 1), { admitted: true, states: [{ used: 0, reserved: 2 }] });
    } finally {
      await store.close();
      relay.close();
    }
  });

  it('rejects an invalid URL without echoing it', () => {
    assert.throws(
      () => createRedisCounterStore({ url: 'not a url sk-fake-TEST-ONLY-secret' }), // fake, TEST ONLY
      (err: unknown) => err instanceof TypeError && !err.message.includes('sk-fake-TEST-ONLY-secret'),
    );
  });
});

describe('memory counter store seeding', () => {
  it('starts an unseen counter at its seed from the usage ledger', async () => {
    const store = createMemoryCounterStore({ seed: (key) => (key === 't:t_1:usd:month' ? 40 : 0) });
    const now = Date.now();
    const check: CounterCheck = { key: 't:t_1:usd:month', limit: 50, amount: 10, windowEnd: now + 60_000 };
    assert.deepEqual(await store.reserve('r1', [check], 30_000, now), { admitted: true, states: [{ used: 40, reserved: 10 }] });
    const refused = await store.reserve('r2', [{ ...check, amount: 1 }], 30_000, now);
    assert.equal(refused.admitted, false);
    await store.settle('r1', [{ key: check.key, amount: 7, windowEnd: check.windowEnd }], now + 1);
    assert.deepEqual(await store.read([check.key], now + 1), [{ used: 47, reserved: 0 }]);
    // settle seeds too: usage on an unseen counter adds to its seed
    const seeded = createMemoryCounterStore({ seed: () => 100 });
    await seeded.settle('unknown', [{ key: 'k:b', amount: 5, windowEnd: now + 60_000 }], now);
    assert.deepEqual(await seeded.read(['k:b'], now), [{ used: 105, reserved: 0 }]);
  });

  it('fetches each seed once even under concurrent reserves', async () => {
    const calls = new Map<string, number>();
    const store = createMemoryCounterStore({
      seed: async (key) => {
        calls.set(key, (calls.get(key) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
        return 45_000;
      },
    });
    const now = Date.now();
    const check: CounterCheck = { key: 't:t_1:tokens:day', limit: 50_000, amount: 1000, windowEnd: now + 60_000 };
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => store.reserve(`r${i}`, [check], 30_000, now)));
    assert.deepEqual([...calls], [['t:t_1:tokens:day', 1]]);
    assert.equal(outcomes.filter((o) => o.admitted).length, 5);
    assert.deepEqual(await store.read([check.key], now), [{ used: 45_000, reserved: 5000 }]);
  });
});
