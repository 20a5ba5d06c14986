/**
 * A `concurrent_requests` slot (a reservation released when its request settles) must come back
 * on a living gateway whatever the limits Redis does, not when its lease ends (`reservation_lease`,
 * 15 minutes by default, during which a tenant at its limit is locked out). Found in review:
 * - shutdown: requests the gateway cuts when `shutdown.drain_timeout` runs out settled after the
 *   counter store was closed ("store closed"), and were recorded as the clients' aborts (499);
 * - a reserve that timed out on the client after Redis had run it left its slot taken;
 * - a release (settlement) that failed while Redis was briefly away left its slot taken.
 * Each scenario ends with the in-flight counter back at 0 and the request and token counters
 * holding each usage at most once (a release is retried, a usage never is).
 *
 * The limits Redis sits behind a TCP relay (test/helpers/tcp-proxy.ts) that can go away or
 * hold its answers; the counters are read past the relay, straight from Redis.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisCounterStore } from '../src/quota/redis-store.js';
import { createReleaseQueue } from '../src/quota/release-queue.js';
import { createLogger } from '../src/log/logger.js';
import { CounterStoreUnavailableError } from '../src/quota/types.js';
import { counterKey, inFlightWindow, windowAt } from '../src/quota/windows.js';
import type { CounterState, CounterStore } from '../src/quota/types.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { LogCapture, startHarness, type Harness } from './helpers/harness.js';
import { chat, ledgerRow, roomInMinute, sleep, tenantIdOf, until } from './helpers/quota-http.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';

const REDIS_URL = process.env['REDIS_URL'];
const SKIP = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379): slot release on Redis not tested';
const PREFIX = `kw-test-slot-release-${process.pid}:`;

/** The limits every tenant here gets: slots, and request and token counters to check for double counting. */
const LIMITS = { concurrent_requests: 2, requests_per_minute: 1000, tokens_per_minute: 1_000_000 };

interface Counters {
  slots: CounterState;
  requests: CounterState;
  tokens: CounterState;
}

/** The tenant's in-flight, requests-per-minute and tokens-per-minute counters, read straight from Redis. */
async function countersOf(direct: CounterStore, tenantId: string, minuteAt: number): Promise<Counters> {
  const minute = windowAt('minute', minuteAt);
  const [slots, requests, tokens] = await direct.read([
    counterKey('t', tenantId, 'con', inFlightWindow(Date.now(), 1)),
    counterKey('t', tenantId, 'req', minute),
    counterKey('t', tenantId, 'tok', minute),
  ], Date.now());
  return { slots: slots as CounterState, requests: requests as CounterState, tokens: tokens as CounterState };
}

/** Waits (bounded) until the tenant holds no slot and no reservation; fails with the last counters seen. */
async function untilReleased(read: () => Promise<Counters>, what: string, timeoutMs: number): Promise<Counters> {
  let last: Counters | undefined;
  await until(async () => {
    last = await read();
    return last.slots.reserved === 0 && last.requests.reserved === 0 && last.tokens.reserved === 0;
  }, what, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
  });
  return last as Counters;
}

/** A chat request that reads its whole answer; status 0 when the connection was cut. */
function send(url: string, key: string, content: string, opts: { stream?: boolean; onFirstChunk?: () => void } = {}) {
  return (async () => {
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 200, messages: [{ role: 'user', content }], ...(opts.stream ? { stream: true } : {}) }),
      });
      const reader = res.body?.getReader();
      let text = '';
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const chunk = await reader?.read();
          if (!chunk || chunk.done) break;
          text += decoder.decode(chunk.value, { stream: true });
          opts.onFirstChunk?.();
        }
        return { status: res.status, text, requestId: res.headers.get('x-request-id'), cut: false };
      } catch {
        return { status: res.status, text, requestId: res.headers.get('x-request-id'), cut: true };
      }
    } catch {
      return { status: 0, text: '', requestId: null, cut: true };
    }
  })();
}

describe('concurrency slots come back without waiting for their lease (Redis)', { skip: SKIP }, () => {
  let direct: CounterStore;

  before(() => {
    direct = createRedisCounterStore({ url: REDIS_URL as string, keyPrefix: PREFIX });
  });

  after(async () => {
    await direct?.close();
    if (!REDIS_URL) return;
    const admin = new Redis(REDIS_URL);
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await admin.del(...keys);
    } while (cursor !== '0');
    await admin.quit();
  });

  it('shutdown: requests cut at the drain timeout give their slots back before the store closes, settled once and recorded as ended at shutdown', async () => {
    await roomInMinute(20_000);
    // a lease far longer than the test: only a release can bring the counter back to 0
    const h = await startHarness({
      timeout: '30s',
      config: { limits: { store: REDIS_URL, key_prefix: `${PREFIX}drain:`, reservation_lease: '10m' }, shutdown: { drain_timeout: '300ms' } },
    });
    const drainDirect = createRedisCounterStore({ url: REDIS_URL as string, keyPrefix: `${PREFIX}drain:` });
    try {
      const { key } = await h.tenantKey('drain', { limits: { ...LIMITS, concurrent_requests: 10 } });
      const tenantId = await tenantIdOf(h.gateway, 'drain');
      const at = Date.now();
      const read = () => countersOf(drainDirect, tenantId, at);

      let streaming = 0;
      const requests = [
        // streams of 100 events 200 ms apart (20 s) and whole answers 10 s away: all outlast the drain
        send(h.url, key, '[[mock:chunk-delay=200,tokens=100]] stream one', { stream: true, onFirstChunk: () => { streaming |= 1; } }),
        send(h.url, key, '[[mock:chunk-delay=200,tokens=100]] stream two', { stream: true, onFirstChunk: () => { streaming |= 2; } }),
        send(h.url, key, '[[mock:delay=10000]] whole one'),
        send(h.url, key, '[[mock:delay=10000]] whole two'),
      ];
      const quick = await send(h.url, key, 'a quick one that finishes before the shutdown');
      assert.equal(quick.status, 200);
      await until(async () => streaming === 3 && (await read()).slots.reserved === 4, 'four requests in flight, both streams under way');

      await h.gateway.close();
      // close() returned: every slot is back already, nothing is left to the lease
      const afterClose = await read();
      assert.deepEqual(afterClose.slots, { used: 0, reserved: 0 }, 'slots still held after shutdown');
      assert.equal(afterClose.requests.reserved, 0);
      assert.equal(afterClose.tokens.reserved, 0);
      const results = await Promise.all(requests);
      assert.ok(results.every((r) => r.cut), `every slow request was cut: ${JSON.stringify(results.map((r) => r.status))}`);
      assert.ok(!h.logs.text().includes('store closed'), 'a settlement ran into the closed counter store');

      // the ledger (written before the writer closed): the four cut requests are the gateway's doing
      const store = openSqliteStore(`sqlite:${join(h.dir, 'keywarden.db')}`);
      try {
        const rows = (await store.records.listUsage({ limit: 1000 })).filter((r) => r.tenantId === tenantId);
        assert.equal(rows.length, 5, `five requests recorded: ${JSON.stringify(rows.map((r) => r.outcome))}`);
        const cut = rows.filter((r) => r.outcome === 'ended_at_shutdown');
        assert.equal(cut.length, 4, `outcomes ${JSON.stringify(rows.map((r) => [r.outcome, r.status, r.errorCode]))}`);
        assert.ok(cut.every((r) => r.errorCode === 'shutdown_drain_timeout'));
        // what the clients got: the streams had started (200), the whole answers had not (503)
        assert.deepEqual(cut.map((r) => r.status).sort(), [200, 200, 503, 503]);
        assert.equal(rows.filter((r) => r.outcome === 'client_aborted').length, 0);
        // each usage settled exactly once: the counters hold what the ledger holds
        assert.equal(afterClose.requests.used, 5);
        const ledgerTokens = rows.reduce((sum, r) => sum + r.inputTokens + r.outputTokens, 0);
        assert.ok(ledgerTokens > 0);
        assert.equal(afterClose.tokens.used, ledgerTokens);
      } finally {
        await store.close();
      }
    } finally {
      await drainDirect.close();
      await h.close();
    }
  });

  describe('with the limits Redis behind a relay', () => {
    let h: Harness;
    let relay: Awaited<ReturnType<typeof startTcpProxy>>;

    before(async () => {
      relay = await startTcpProxy(REDIS_URL as string);
      // a long lease: a slot that comes back in seconds was released, not expired
      h = await startHarness({ config: { limits: { store: relay.url, key_prefix: PREFIX, reservation_lease: '10m' } } });
    });

    after(async () => {
      relay?.release();
      await relay?.up().catch(() => {});
      await h?.close();
      relay?.close();
    });

    it('a reserve that times out after Redis ran it (503 quota_store_unavailable) gives its slot back once Redis answers again', async () => {
      await roomInMinute(15_000);
      const { key } = await h.tenantKey('reserve-timeout', { limits: LIMITS });
      const tenantId = await tenantIdOf(h.gateway, 'reserve-timeout');
      const at = Date.now();
      const read = () => countersOf(direct, tenantId, at);
      // an ordinary request first: the gateway's Redis connection is up
      const warm = await chat(h.url, key, 'warm up');
      assert.equal(warm.status, 200, warm.text);
      const before = await untilReleased(read, 'the warm-up to settle', 5000);
      assert.equal(before.requests.used, 1);

      // Redis runs the reserve script, but its answer is held past the 1 s command timeout
      relay.hold();
      let refused;
      try {
        const sent = chat(h.url, key, 'admitted by Redis, but the answer never comes');
        // the reservation exists in Redis: the request holds a slot, though its admission cannot answer
        await until(async () => (await read()).slots.reserved === 1, 'the reserve to run in Redis');
        refused = await sent;
        assert.equal(refused.status, 503, refused.text);
        assert.equal(refused.json?.error?.code, 'quota_store_unavailable');
      } finally {
        relay.release();
      }
      const released = await untilReleased(read, 'the timed-out reservation to be released', 5000);
      // the refused request was never forwarded and counts nothing
      assert.deepEqual(released.slots, { used: 0, reserved: 0 });
      assert.equal(released.requests.used, before.requests.used);
      assert.equal(released.tokens.used, before.tokens.used);
    });

    it('a settlement that fails while Redis is away gives its slot back once Redis is back, and never counts usage twice', async () => {
      await roomInMinute(20_000);
      const { key } = await h.tenantKey('blip', { limits: LIMITS });
      const tenantId = await tenantIdOf(h.gateway, 'blip');
      const at = Date.now();
      const read = () => countersOf(direct, tenantId, at);
      const warm = await chat(h.url, key, 'warm up');
      assert.equal(warm.status, 200, warm.text);
      const before = await untilReleased(read, 'the warm-up to settle', 5000);
      const warmRow = await ledgerRow(h.gateway, warm.headers.get('x-request-id'));

      // two requests take both slots; Redis goes away while the provider works on them
      const calls = h.mock.received.length;
      const inFlight = [send(h.url, key, '[[mock:delay=1200]] one'), send(h.url, key, '[[mock:delay=1200]] two')];
      await until(async () => h.mock.received.length === calls + 2 && (await read()).slots.reserved === 2, 'both requests to take their slots');
      const failedBefore = h.logs.lines.filter((l) => l.includes('quota settlement failed')).length;
      relay.down();
      const answers = await Promise.all(inFlight);
      assert.deepEqual(answers.map((a) => a.status), [200, 200]);
      await until(() => h.logs.lines.filter((l) => l.includes('quota settlement failed')).length === failedBefore + 2, 'both settlements to fail');
      // Redis itself is fine (read past the relay): the slots are still taken while the gateway cannot reach it
      assert.equal((await read()).slots.reserved, 2);
      await sleep(300);

      await relay.up();
      const released = await untilReleased(read, 'the slots to be released once Redis is back', 8000);
      assert.deepEqual(released.slots, { used: 0, reserved: 0 });
      // a failed settlement's usage is never sent again: at most once each
      const rows = await Promise.all(answers.map((a) => ledgerRow(h.gateway, a.requestId)));
      const blipTokens = rows.reduce((sum, r) => sum + r.inputTokens + r.outputTokens, 0);
      assert.ok(released.requests.used - before.requests.used <= 2, `requests counted ${released.requests.used - before.requests.used} times for 2`);
      assert.ok(released.tokens.used - before.tokens.used <= blipTokens, `tokens ${released.tokens.used - before.tokens.used} > ${blipTokens}`);
      assert.ok(before.tokens.used >= warmRow.inputTokens + warmRow.outputTokens);

      // the tenant has its whole limit again: two at once are admitted (a leaked slot would refuse one)
      const probes = await Promise.all([send(h.url, key, '[[mock:delay=300]] probe one'), send(h.url, key, '[[mock:delay=300]] probe two')]);
      assert.deepEqual(probes.map((p) => p.status), [200, 200], probes.map((p) => p.text).join('\n'));
      const end = await untilReleased(read, 'the probes to settle', 5000);
      // each probe counted exactly once, and no retried release added any usage
      const probeRows = await Promise.all(probes.map((p) => ledgerRow(h.gateway, p.requestId)));
      assert.equal(end.requests.used, released.requests.used + 2);
      assert.equal(end.tokens.used, released.tokens.used + probeRows.reduce((sum, r) => sum + r.inputTokens + r.outputTokens, 0));
    });
  });
});

describe('the release retry queue', () => {
  /** A store stand-in: away until `back` is set; records every release it took. */
  function fakeStore() {
    const state = { back: false, calls: 0, released: [] as string[] };
    const release = async (id: string): Promise<void> => {
      state.calls += 1;
      if (!state.back) throw new CounterStoreUnavailableError('fake store away', { notSent: true });
      state.released.push(id);
    };
    return { state, release };
  }

  it('retries while the store is away, releases each reservation once when it is back, and stops retrying', async () => {
    const store = fakeStore();
    const logs = new LogCapture();
    const queue = createReleaseQueue({ release: store.release, logger: createLogger({ level: 'info', destination: logs }), now: Date.now, minDelayMs: 10, maxDelayMs: 40 });
    queue.add('r-1', Date.now() + 60_000);
    queue.add('r-2', Date.now() + 60_000);
    queue.add('r-1', Date.now() + 60_000);
    assert.equal(queue.size, 2, 'one entry per reservation');
    await until(() => store.state.calls >= 3, 'a few retries while the store is away');
    assert.deepEqual(store.state.released, []);
    store.state.back = true;
    await until(() => queue.size === 0, 'the queue to empty once the store is back');
    assert.deepEqual(store.state.released.sort(), ['r-1', 'r-2']);
    const calls = store.state.calls;
    await sleep(100);
    assert.equal(store.state.calls, calls, 'an empty queue sends nothing');
    assert.equal(queue.stop(), 0);
  });

  it('is bounded: beyond its size a release is left to its lease, with one warning', async () => {
    const store = fakeStore();
    const logs = new LogCapture();
    const queue = createReleaseQueue({ release: store.release, logger: createLogger({ level: 'info', destination: logs }), now: Date.now, maxSize: 3, minDelayMs: 1000 });
    for (let i = 0; i < 10; i++) queue.add(`r-${i}`, Date.now() + 60_000);
    assert.equal(queue.size, 3);
    await until(() => logs.lines.length > 0, 'the warning to be logged');
    assert.equal(logs.lines.filter((l) => l.includes('quota_release_queue_full')).length, 1, logs.text());
    assert.equal(queue.stop(), 3, 'stop reports what is left to the lease');
    queue.add('late', Date.now() + 60_000);
    assert.equal(queue.size, 0, 'a stopped queue takes nothing');
  });

  it('gives up on a reservation once its lease has passed, and flush() is bounded', async () => {
    const store = fakeStore();
    const queue = createReleaseQueue({ release: store.release, logger: createLogger({ level: 'info', destination: new LogCapture() }), now: Date.now, minDelayMs: 10, maxDelayMs: 20 });
    queue.add('short', Date.now() + 150);
    queue.add('long', Date.now() + 60_000);
    queue.add('already-expired', Date.now() - 1);
    assert.equal(queue.size, 2, 'a lease already over needs no release');
    const started = Date.now();
    assert.equal(await queue.flush(300), false, 'the store is away: the flush ends at its bound');
    assert.ok(Date.now() - started < 1000);
    assert.equal(queue.size, 1, 'the reservation whose lease passed was dropped');
    store.state.back = true;
    assert.equal(await queue.flush(1000), true);
    assert.deepEqual(store.state.released, ['long']);
    queue.stop();
  });
});
