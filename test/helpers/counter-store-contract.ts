/**
 * The one contract every CounterStore keeps (types.ts), run against each implementation:
 * `counterStoreContract('memory', async () => createMemoryCounterStore())`.
 * `factory` must return a fresh, empty store on every call (a Redis factory gives each store its
 * own key prefix); each case closes the stores it makes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CounterCheck, CounterStore } from '../../src/quota/types.js';

const MINUTE = 60_000;
const LEASE = 30_000;

export function counterStoreContract(name: string, factory: () => Promise<CounterStore>, opts: { skip?: string } = {}): void {
  describe(`CounterStore contract: ${name}`, opts.skip ? { skip: opts.skip } : {}, () => {
    // times are real-clock based: a Redis store sets key expiries from them
    const base = (): number => Date.now();

    async function withStore(fn: (store: CounterStore) => Promise<void>): Promise<void> {
      const store = await factory();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    }

    it('admits under the limit and reports the states after the reservation', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + MINUTE;
        const checks: CounterCheck[] = [
          { key: 'k:requests', limit: 10, amount: 1, windowEnd: end },
          { key: 'k:tokens', limit: 1000, amount: 400, windowEnd: end },
        ];
        const first = await store.reserve('r1', checks, LEASE, now);
        assert.deepEqual(first, { admitted: true, states: [{ used: 0, reserved: 1 }, { used: 0, reserved: 400 }] });
        const second = await store.reserve('r2', checks, LEASE, now + 1);
        assert.deepEqual(second, { admitted: true, states: [{ used: 0, reserved: 2 }, { used: 0, reserved: 800 }] });
        assert.deepEqual(await store.read(['k:requests', 'k:tokens', 'k:unknown'], now + 2), [
          { used: 0, reserved: 2 },
          { used: 0, reserved: 800 },
          { used: 0, reserved: 0 },
        ]);
        assert.equal(await store.reservedTotal(now + 2), 802);
      }));

    it('admits an amount that reaches the limit exactly', () =>
      withStore(async (store) => {
        const now = base();
        const outcome = await store.reserve('r1', [{ key: 'k:exact', limit: 500, amount: 500, windowEnd: now + MINUTE }], LEASE, now);
        assert.equal(outcome.admitted, true);
        assert.deepEqual(outcome.states, [{ used: 0, reserved: 500 }]);
      }));

    it('refuses when one check would exceed and reserves on none of the counters', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + MINUTE;
        await store.reserve('r0', [{ key: 'k:tokens', limit: 1000, amount: 700, windowEnd: end }], LEASE, now);
        const outcome = await store.reserve(
          'r1',
          [
            { key: 'k:requests', limit: 10, amount: 1, windowEnd: end },
            { key: 'k:tokens', limit: 1000, amount: 400, windowEnd: end },
            { key: 'k:cost', limit: 10, amount: 1, windowEnd: end },
          ],
          LEASE,
          now + 1,
        );
        assert.equal(outcome.admitted, false);
        assert.ok(!outcome.admitted);
        assert.equal(outcome.failed, 1);
        // states as seen, up to the refusing check
        assert.deepEqual(outcome.states.slice(0, 2), [{ used: 0, reserved: 0 }, { used: 0, reserved: 700 }]);
        // the first check's counter was not touched, nor the one after the refusal
        assert.deepEqual(await store.read(['k:requests', 'k:tokens', 'k:cost'], now + 2), [
          { used: 0, reserved: 0 },
          { used: 0, reserved: 700 },
          { used: 0, reserved: 0 },
        ]);
        assert.equal(await store.reservedTotal(now + 2), 700);
        // the refused reservation holds nothing, so settling it only adds usage
        await store.settle('r1', [], now + 3);
        assert.deepEqual(await store.read(['k:tokens'], now + 3), [{ used: 0, reserved: 700 }]);
      }));

    it('settle releases the reservation and adds the actual usage', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + MINUTE;
        await store.reserve('r1', [{ key: 'k:a', limit: 1000, amount: 600, windowEnd: end }, { key: 'k:b', limit: 10, amount: 1, windowEnd: end }], LEASE, now);
        await store.settle('r1', [{ key: 'k:a', amount: 250, windowEnd: end }, { key: 'k:b', amount: 1, windowEnd: end }], now + 10);
        assert.deepEqual(await store.read(['k:a', 'k:b'], now + 10), [{ used: 250, reserved: 0 }, { used: 1, reserved: 0 }]);
        // the released headroom is usable again: 250 used + 750 = 1000
        const next = await store.reserve('r2', [{ key: 'k:a', limit: 1000, amount: 750, windowEnd: end }], LEASE, now + 20);
        assert.deepEqual(next, { admitted: true, states: [{ used: 250, reserved: 750 }] });
        // settling the same reservation twice releases nothing more
        await store.settle('r1', [{ key: 'k:a', amount: 0, windowEnd: end }], now + 30);
        assert.deepEqual(await store.read(['k:a'], now + 30), [{ used: 250, reserved: 750 }]);
      }));

    it('settling an unknown or expired reservation adds usage only', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + 10 * MINUTE;
        await store.settle('never-reserved', [{ key: 'k:a', amount: 5, windowEnd: end }], now);
        assert.deepEqual(await store.read(['k:a'], now), [{ used: 5, reserved: 0 }]);

        await store.reserve('short', [{ key: 'k:a', limit: 1000, amount: 50, windowEnd: end }], 1000, now);
        // a later admission (on another counter) releases the expired lease
        const later = now + 3000;
        await store.reserve('other', [{ key: 'k:other', limit: 10, amount: 1, windowEnd: end }], LEASE, later);
        assert.deepEqual(await store.read(['k:a'], later), [{ used: 5, reserved: 0 }]);
        await store.settle('short', [{ key: 'k:a', amount: 20, windowEnd: end }], later + 1);
        // reserved never goes below zero, and usage is counted although the lease expired
        assert.deepEqual(await store.read(['k:a'], later + 1), [{ used: 25, reserved: 0 }]);
      }));

    it('releases an expired lease on a later reserve', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + 10 * MINUTE;
        const check: CounterCheck = { key: 'k:tokens', limit: 100, amount: 80, windowEnd: end };
        assert.equal((await store.reserve('crashed', [check], 1000, now)).admitted, true);
        const early = await store.reserve('early', [check], LEASE, now + 500);
        assert.equal(early.admitted, false);
        assert.deepEqual(early.states, [{ used: 0, reserved: 80 }]);
        const late = await store.reserve('late', [check], LEASE, now + 2500);
        assert.deepEqual(late, { admitted: true, states: [{ used: 0, reserved: 80 }] });
        assert.equal(await store.reservedTotal(now + 2500), 80);
      }));

    it('starts a counter afresh once its window has ended', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + MINUTE;
        await store.reserve('r1', [{ key: 'k:rpm', limit: 100, amount: 90, windowEnd: end }], LEASE, now);
        await store.settle('r1', [{ key: 'k:rpm', amount: 90, windowEnd: end }], now + 100);
        const full = await store.reserve('r2', [{ key: 'k:rpm', limit: 100, amount: 20, windowEnd: end }], LEASE, now + 200);
        assert.equal(full.admitted, false);
        assert.deepEqual(full.states, [{ used: 90, reserved: 0 }]);
        // at windowEnd the window is over
        assert.deepEqual(await store.read(['k:rpm'], end), [{ used: 0, reserved: 0 }]);
        const fresh = await store.reserve('r3', [{ key: 'k:rpm', limit: 100, amount: 20, windowEnd: end + MINUTE }], LEASE, end);
        assert.deepEqual(fresh, { admitted: true, states: [{ used: 0, reserved: 20 }] });
        assert.deepEqual(await store.read(['k:rpm'], end + 1), [{ used: 0, reserved: 20 }]);
      }));

    it('only ever extends a live window: a check naming a later end keeps the counter past the earlier one', () =>
      withStore(async (store) => {
        const now = base();
        // an in-flight counter: one key, each admission naming its own lease expiry as the end
        const slot = (end: number): CounterCheck => ({ key: 't:t_1:con:live', limit: 2, amount: 1, windowEnd: end });
        assert.equal((await store.reserve('first', [slot(now + 1000)], LEASE, now)).admitted, true);
        assert.equal((await store.reserve('second', [slot(now + 5000)], LEASE, now + 500)).admitted, true);
        // past the first end, before the second: both slots are still counted, not started afresh
        assert.deepEqual(await store.read(['t:t_1:con:live'], now + 1500), [{ used: 0, reserved: 2 }]);
        const third = await store.reserve('third', [slot(now + 1500 + 1000)], LEASE, now + 1500);
        assert.equal(third.admitted, false);
        assert.deepEqual(third.states, [{ used: 0, reserved: 2 }]);
        // an admission naming an earlier end never shortens it
        await store.settle('first', [], now + 1600);
        assert.equal((await store.reserve('fourth', [slot(now + 2000)], LEASE, now + 1700)).admitted, true);
        assert.deepEqual(await store.read(['t:t_1:con:live'], now + 4999), [{ used: 0, reserved: 2 }]);
        // past the latest end it is over
        assert.deepEqual(await store.read(['t:t_1:con:live'], now + 5000), [{ used: 0, reserved: 0 }]);
      }));

    it('frees an in-flight slot when its reservation settles with nothing added to its counter', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + LEASE + MINUTE;
        const checks: CounterCheck[] = [
          { key: 'k:rpm', limit: 100, amount: 1, windowEnd: now + MINUTE },
          { key: 'k:slots', limit: 2, amount: 1, windowEnd: end },
        ];
        assert.equal((await store.reserve('a', checks, LEASE, now)).admitted, true);
        assert.equal((await store.reserve('b', checks, LEASE, now + 1)).admitted, true);
        const full = await store.reserve('c', checks, LEASE, now + 2);
        assert.ok(!full.admitted);
        assert.equal(full.failed, 1);
        // the refusal reserved nothing on the counter before the one that refused
        assert.deepEqual(await store.read(['k:rpm'], now + 2), [{ used: 0, reserved: 2 }]);
        // settle names only the windowed counter: the slot's counter gets no usage
        await store.settle('a', [{ key: 'k:rpm', amount: 1, windowEnd: now + MINUTE }], now + 3);
        assert.deepEqual(await store.read(['k:rpm', 'k:slots'], now + 3), [{ used: 1, reserved: 1 }, { used: 0, reserved: 1 }]);
        assert.deepEqual(await store.reserve('c', checks, LEASE, now + 4), { admitted: true, states: [{ used: 1, reserved: 2 }, { used: 0, reserved: 2 }] });
        // a slot whose holder died is freed by its lease: 'd' leases for 1 s, then the next admission sweeps it
        await store.settle('b', [], now + 5);
        await store.settle('c', [], now + 5);
        assert.equal((await store.reserve('d', checks, 1000, now + 6)).admitted, true);
        assert.equal((await store.reserve('e', checks, LEASE, now + 7)).admitted, true);
        assert.equal((await store.reserve('f', checks, LEASE, now + 8)).admitted, false);
        assert.equal((await store.reserve('g', checks, LEASE, now + 1007)).admitted, true);
        assert.deepEqual(await store.read(['k:slots'], now + 1008), [{ used: 0, reserved: 2 }]);
      }));

    it('reservedTotal returns to zero once every reservation has settled or expired', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + 10 * MINUTE;
        assert.equal(await store.reservedTotal(now), 0);
        for (let i = 0; i < 5; i++) {
          const outcome = await store.reserve(
            `r${i}`,
            [{ key: 'k:rpm', limit: 10, amount: 1, windowEnd: end }, { key: `k:tokens:${i % 2}`, limit: 1000, amount: 100, windowEnd: end }],
            LEASE,
            now + i,
          );
          assert.equal(outcome.admitted, true);
        }
        const refused = await store.reserve('big', [{ key: 'k:rpm', limit: 10, amount: 1, windowEnd: end }, { key: 'k:tokens:0', limit: 1000, amount: 1000, windowEnd: end }], LEASE, now + 5);
        assert.equal(refused.admitted, false);
        assert.equal(await store.reservedTotal(now + 6), 505);
        // one reservation is abandoned (its replica died): its lease runs out instead
        await store.reserve('abandoned', [{ key: 'k:rpm', limit: 10, amount: 1, windowEnd: end }], 1000, now + 6);
        assert.equal(await store.reservedTotal(now + 7), 506);
        for (let i = 0; i < 5; i++) {
          await store.settle(`r${i}`, [{ key: 'k:rpm', amount: 1, windowEnd: end }, { key: `k:tokens:${i % 2}`, amount: 42, windowEnd: end }], now + 10 + i);
        }
        assert.equal(await store.reservedTotal(now + 20), 1);
        assert.equal(await store.reservedTotal(now + 5000), 0);
        assert.deepEqual(await store.read(['k:rpm', 'k:tokens:0', 'k:tokens:1'], now + 5000), [
          { used: 5, reserved: 0 },
          { used: 126, reserved: 0 },
          { used: 84, reserved: 0 },
        ]);
      }));

    it('claimOnce is true for the first claim only', () =>
      withStore(async (store) => {
        const expiresAt = Date.now() + 10 * MINUTE;
        assert.equal(await store.claimOnce('alert:t_1:usd_per_day:80', expiresAt), true);
        assert.equal(await store.claimOnce('alert:t_1:usd_per_day:80', expiresAt), false);
        assert.equal(await store.claimOnce('alert:t_1:usd_per_day:100', expiresAt), true);
      }));

    it('admits exactly as many of 200 concurrent reserves as the limit allows', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + MINUTE;
        const outcomes = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            store.reserve(`race-${i}`, [{ key: 'k:race', limit: 50_000, amount: 1000, windowEnd: end }], LEASE, now),
          ),
        );
        const admitted = outcomes.filter((o) => o.admitted);
        assert.equal(admitted.length, 50);
        for (const o of outcomes) if (!o.admitted) assert.equal(o.failed, 0);
        assert.deepEqual(await store.read(['k:race'], now), [{ used: 0, reserved: 50_000 }]);
        assert.equal(await store.reservedTotal(now), 50_000);
        // every admitted state is distinct: no two admissions saw the same counter value
        const seen = new Set(admitted.map((o) => o.states[0]?.reserved));
        assert.equal(seen.size, 50);
      }));

    it('keeps nano-USD amounts beyond 2^32 exact', () =>
      withStore(async (store) => {
        const now = base();
        const end = now + 30 * 24 * 60 * MINUTE;
        const amount = 3_000_000_000_000_001; // odd, above 2^32 and below 2^53
        const key = 't:t_big:usd:month:202611';
        await store.reserve('r1', [{ key, limit: Number.MAX_SAFE_INTEGER, amount, windowEnd: end }], LEASE, now);
        await store.settle('r1', [{ key, amount, windowEnd: end }], now + 1);
        await store.settle('r2', [{ key, amount, windowEnd: end }], now + 2);
        assert.deepEqual(await store.read([key], now + 3), [{ used: 6_000_000_000_000_002, reserved: 0 }]);
        // the limit comparison is exact too: one nano-dollar short refuses, the exact sum admits
        const short = await store.reserve('r3', [{ key, limit: 9_000_000_000_000_002, amount, windowEnd: end }], LEASE, now + 4);
        assert.equal(short.admitted, false);
        const exact = await store.reserve('r4', [{ key, limit: 9_000_000_000_000_003, amount, windowEnd: end }], LEASE, now + 5);
        assert.deepEqual(exact, { admitted: true, states: [{ used: 6_000_000_000_000_002, reserved: amount }] });
        assert.equal(await store.reservedTotal(now + 6), amount);
        const small = 4_294_967_297; // 2^32 + 1
        await store.settle('r4', [{ key: 'k:small', amount: small, windowEnd: end }], now + 7);
        assert.deepEqual(await store.read([key, 'k:small'], now + 7), [{ used: 6_000_000_000_000_002, reserved: 0 }, { used: small, reserved: 0 }]);
      }));
  });
}
