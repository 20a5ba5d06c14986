/**
 * Quotas: the counter stores behind admission (reserve before forwarding, settle after).
 * One contract, two implementations: in-process memory (embedded, persisted through the usage
 * ledger) and Redis (shared by replicas; one Lua round trip per operation).
 */

/**
 * The limits an operator can set, per tenant and per key. Any may be unset. All but
 * `concurrent_requests` count over a calendar window; `concurrent_requests` counts the requests
 * in flight (a reservation of 1 held from admission until the request ends, see admission.ts).
 */
export const LIMIT_NAMES = ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'usd_per_day', 'usd_per_month', 'concurrent_requests'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** Limits in config form: counts, and budgets in US dollars. */
export type Limits = Readonly<Partial<Record<LimitName, number>>>;

/** One counter that an admission checks and reserves on. Amounts are integers (cost in nano-USD). */
export interface CounterCheck {
  /**
   * Unique per scope, metric and window instance (see `counterKey` in windows.ts), e.g.
   * `t:t_0123:tok:d20261127`. Stores treat it as opaque.
   */
  key: string;
  /** The most `used + reserved` may reach on this counter. */
  limit: number;
  /** What this request reserves on it (its worst case). */
  amount: number;
  /**
   * When the window ends (ms since epoch); the counter may be dropped after it. A live counter's
   * end only ever moves later: a check naming a later end than the counter has extends it (a
   * calendar counter's checks all name the same end; an in-flight counter's end follows its
   * newest lease, so it never ends while a slot on it may still be held).
   */
  windowEnd: number;
}

/** Actual usage to add to one counter when a reservation settles. */
export interface CounterUsage {
  key: string;
  amount: number;
  windowEnd: number;
}

export interface CounterState {
  /** Settled usage in the window. */
  used: number;
  /** Outstanding reservations in the window. */
  reserved: number;
}

export type ReserveOutcome =
  /** Every counter admitted; `states` (one per check, in order) are after the reservation. */
  | { admitted: true; states: CounterState[] }
  /** Nothing was reserved; `failed` is the index of the first check that refused, `states` as seen. */
  | { admitted: false; failed: number; states: CounterState[] };

export interface CounterStore {
  readonly kind: 'memory' | 'redis';
  /**
   * In one atomic step: release expired leases, then check every counter
   * (`used + reserved + amount <= limit`) and reserve on all of them, or on none.
   * The reservation is kept under `reservationId` until settled or until `leaseMs` passes.
   */
  reserve(reservationId: string, checks: readonly CounterCheck[], leaseMs: number, now: number): Promise<ReserveOutcome>;
  /**
   * Settles a reservation in one atomic step: releases whatever is still reserved under
   * `reservationId` (nothing when its lease already expired) and adds each actual usage to its
   * counter. `actual` names the counters itself, so usage is counted even after a lease expired.
   */
  settle(reservationId: string, actual: readonly CounterUsage[], now: number): Promise<void>;
  /** Current states of counters (zeros for unknown ones). */
  read(keys: readonly string[], now: number): Promise<CounterState[]>;
  /** Sum of all outstanding reserved amounts across live counters (zero when idle). */
  reservedTotal(now: number): Promise<number>;
  /** Marks a one-off event (a threshold alert); true only for the first caller across replicas. */
  claimOnce(key: string, expiresAt: number): Promise<boolean>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by a store that cannot be reached: admission fails closed with 503. */
export class CounterStoreUnavailableError extends Error {
  /**
   * True when the operation was never sent (no connection), so it cannot have taken effect; false
   * when it may have run and only its answer was lost (a timeout, a dropped connection).
   */
  readonly notSent: boolean;
  constructor(message: string, options?: { cause?: unknown; notSent?: boolean }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CounterStoreUnavailableError';
    this.notSent = options?.notSent ?? false;
  }
}
