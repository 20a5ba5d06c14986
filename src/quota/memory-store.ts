import type { CounterCheck, CounterState, CounterStore, CounterUsage, ReserveOutcome } from './types.js';

interface Counter {
  used: number;
  reserved: number;
  windowEnd: number;
}

interface Reservation {
  entries: Array<{ key: string; amount: number }>;
  expiresAt: number;
}

export interface MemoryCounterStoreOptions {
  /**
   * Settled usage of a counter the store has not seen since it started (the embedded gateway
   * reads it back from the usage ledger, so a restart does not reset a monthly budget).
   */
  seed?: (key: string) => number | Promise<number>;
  /** Persists one-off claims (threshold alerts) across restarts; in memory only when absent. */
  claimOnce?: (key: string, expiresAt: number) => Promise<boolean>;
}

const SWEEP_INTERVAL_MS = 1000;

/**
 * The embedded counter store: counters and reservations in this process. Each operation runs
 * synchronously once its counters are seeded, so check-and-reserve is atomic in Node's single
 * thread. Correct for one gateway process; replicas share the Redis store instead.
 */
export function createMemoryCounterStore(options: MemoryCounterStoreOptions = {}): CounterStore {
  const counters = new Map<string, Counter>();
  const reservations = new Map<string, Reservation>();
  const claims = new Map<string, number>();
  const seeding = new Map<string, Promise<void>>();
  let lastSweep = 0;

  async function ensureSeeded(keys: readonly { key: string; windowEnd: number }[]): Promise<void> {
    if (!options.seed) return;
    const waits: Promise<void>[] = [];
    for (const { key, windowEnd } of keys) {
      if (counters.has(key)) continue;
      let pending = seeding.get(key);
      if (!pending) {
        const seed = options.seed;
        pending = Promise.resolve(seed(key)).then((used) => {
          // a reservation may have created the counter meanwhile; add the seed to it
          const existing = counters.get(key);
          if (existing) existing.used += used;
          else counters.set(key, { used, reserved: 0, windowEnd });
        }).finally(() => seeding.delete(key));
        seeding.set(key, pending);
      }
      waits.push(pending);
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  function counter(key: string, windowEnd: number, now: number): Counter {
    let c = counters.get(key);
    if (!c || c.windowEnd <= now) {
      c = { used: 0, reserved: 0, windowEnd };
      counters.set(key, c);
    } else if (c.windowEnd < windowEnd) {
      // a live window only grows: an in-flight counter's end follows its newest lease
      c.windowEnd = windowEnd;
    }
    return c;
  }

  function release(id: string): void {
    const r = reservations.get(id);
    if (!r) return;
    reservations.delete(id);
    for (const { key, amount } of r.entries) {
      const c = counters.get(key);
      if (c) c.reserved = Math.max(0, c.reserved - amount);
    }
  }

  // releases expired leases and forgets ended windows; cheap enough to run once a second
  function sweep(now: number, force = false): void {
    if (!force && now - lastSweep < SWEEP_INTERVAL_MS) return;
    lastSweep = now;
    for (const [id, r] of reservations) if (r.expiresAt <= now) release(id);
    for (const [key, c] of counters) if (c.windowEnd <= now && c.reserved === 0) counters.delete(key);
    for (const [key, expiresAt] of claims) if (expiresAt <= now) claims.delete(key);
  }

  const store: CounterStore = {
    kind: 'memory',
    async reserve(reservationId: string, checks: readonly CounterCheck[], leaseMs: number, now: number): Promise<ReserveOutcome> {
      await ensureSeeded(checks);
      // from here to the return: no await, so no other admission interleaves
      sweep(now);
      release(reservationId);
      const states: CounterState[] = [];
      for (let i = 0; i < checks.length; i++) {
        const check = checks[i] as CounterCheck;
        const c = counter(check.key, check.windowEnd, now);
        states.push({ used: c.used, reserved: c.reserved });
        if (c.used + c.reserved + check.amount > check.limit) return { admitted: false, failed: i, states };
      }
      const entries: Reservation['entries'] = [];
      for (let i = 0; i < checks.length; i++) {
        const check = checks[i] as CounterCheck;
        const c = counter(check.key, check.windowEnd, now);
        c.reserved += check.amount;
        entries.push({ key: check.key, amount: check.amount });
        (states[i] as CounterState).reserved = c.reserved;
      }
      reservations.set(reservationId, { entries, expiresAt: now + leaseMs });
      return { admitted: true, states };
    },
    async settle(reservationId: string, actual: readonly CounterUsage[], now: number): Promise<void> {
      await ensureSeeded(actual);
      release(reservationId);
      for (const usage of actual) counter(usage.key, usage.windowEnd, now).used += usage.amount;
    },
    async read(keys: readonly string[], now: number): Promise<CounterState[]> {
      return keys.map((key) => {
        const c = counters.get(key);
        return c && c.windowEnd > now ? { used: c.used, reserved: c.reserved } : { used: 0, reserved: 0 };
      });
    },
    async reservedTotal(now: number): Promise<number> {
      sweep(now, true);
      let total = 0;
      for (const c of counters.values()) total += c.reserved;
      return total;
    },
    async claimOnce(key: string, expiresAt: number): Promise<boolean> {
      if (claims.has(key)) return false;
      claims.set(key, expiresAt);
      if (options.claimOnce) {
        const first = await options.claimOnce(key, expiresAt);
        if (!first) return false;
      }
      return true;
    },
    async ping(): Promise<void> {},
    async close(): Promise<void> {
      counters.clear();
      reservations.clear();
    },
  };
  return store;
}
