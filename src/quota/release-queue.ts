import type { Logger } from '../log/logger.js';
import { CounterStoreUnavailableError } from './types.js';

export interface ReleaseQueueOptions {
  /**
   * Releases one reservation: a settle with no usage. Releasing is idempotent (a reservation
   * already released or expired releases nothing), so a retry can never count anything twice.
   */
  release(reservationId: string): Promise<void>;
  logger: Logger;
  /** The clock leases are measured by (admission's `now`). */
  now: () => number;
  /** Most reservations kept for retrying; more are left to their lease (default 10 000). */
  maxSize?: number;
  /** First retry delay and the most the backoff grows to (defaults 100 ms and 2 s). */
  minDelayMs?: number;
  maxDelayMs?: number;
}

export interface ReleaseQueue {
  /**
   * Queues a reservation whose release failed because the store was away. Kept until a release
   * succeeds or until `leaseExpiresAt`, after which the store has released it by itself.
   */
  add(reservationId: string, leaseExpiresAt: number): void;
  /** Reservations waiting for a retry. */
  readonly size: number;
  /** Retries at once and then often, until the queue is empty (true) or `timeoutMs` has passed (false). */
  flush(timeoutMs: number): Promise<boolean>;
  /** Stops retrying and forgets what is queued (left to its lease); returns how many that were. */
  stop(): number;
}

/** Releases sent at once per round: bounded work per turn, and a round stops at the first outage. */
const BATCH = 50;
/** Retry delay while flushing at shutdown, whatever the backoff had grown to. */
const FLUSH_DELAY_MS = 100;

/**
 * Retries the release of reservations (concurrency slots above all) that failed while the
 * counter store was away, so a short outage does not hold slots until their lease ends.
 *
 * Only releases are retried, never usage: a settle whose answer was lost may have run, and
 * sending its usage again could count it twice; a release sent twice releases once.
 * The backoff is shared by the whole queue (one outage, not one per reservation): a round stops
 * at the first release the store cannot take, and the next waits longer, up to `maxDelayMs`.
 */
export function createReleaseQueue(options: ReleaseQueueOptions): ReleaseQueue {
  const { logger, now } = options;
  const maxSize = options.maxSize ?? 10_000;
  const minDelayMs = options.minDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 2000;
  const entries = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let failures = 0;
  let flushing = 0;
  let stopped = false;
  let warnedFull = false;
  const emptyWaiters = new Set<() => void>();

  function delay(): number {
    if (flushing > 0) return FLUSH_DELAY_MS;
    if (failures === 0) return minDelayMs;
    // jittered, so replicas that lost the same store do not all come back at the same instant
    return Math.min(maxDelayMs, minDelayMs * 2 ** failures) * (0.5 + Math.random() / 2);
  }

  function schedule(ms: number): void {
    if (stopped || running || timer || entries.size === 0) return;
    timer = setTimeout(() => {
      timer = undefined;
      void round();
    }, ms);
    // retries never keep a process alive on their own
    timer.unref();
  }

  function settledEmpty(): void {
    if (entries.size > 0) return;
    warnedFull = false;
    for (const wake of emptyWaiters) wake();
  }

  async function round(): Promise<void> {
    running = true;
    try {
      const at = now();
      // a lease that has passed has been (or will be, at the store's next sweep) released already
      for (const [id, expiresAt] of entries) if (expiresAt <= at) entries.delete(id);
      const ids = [...entries.keys()];
      for (let i = 0; i < ids.length && !stopped; i += BATCH) {
        const batch = ids.slice(i, i + BATCH);
        const results = await Promise.allSettled(batch.map((id) => options.release(id)));
        let away = false;
        results.forEach((result, j) => {
          const id = batch[j] as string;
          if (result.status === 'fulfilled') entries.delete(id);
          else if (result.reason instanceof CounterStoreUnavailableError) away = true;
          else {
            // not an outage (a value the store refuses): retrying cannot help
            entries.delete(id);
            logger.error({ err: result.reason }, 'quota release refused; the reservation will be released when its lease expires');
          }
        });
        if (away) {
          failures += 1;
          return;
        }
      }
      failures = 0;
    } finally {
      running = false;
      settledEmpty();
      schedule(delay());
    }
  }

  return {
    add(reservationId: string, leaseExpiresAt: number): void {
      if (stopped || leaseExpiresAt <= now()) return;
      if (!entries.has(reservationId) && entries.size >= maxSize) {
        if (!warnedFull) {
          warnedFull = true;
          logger.warn({ event: 'quota_release_queue_full', size: entries.size },
            'too many quota releases wait for the store; further ones are left to their lease until the queue empties');
        }
        return;
      }
      entries.set(reservationId, Math.max(leaseExpiresAt, entries.get(reservationId) ?? 0));
      schedule(delay());
    },
    get size() {
      return entries.size;
    },
    async flush(timeoutMs: number): Promise<boolean> {
      if (entries.size === 0) return true;
      if (stopped) return false;
      flushing += 1;
      let wake: (() => void) | undefined;
      let deadline: NodeJS.Timeout | undefined;
      try {
        if (timer) {
          clearTimeout(timer);
          timer = undefined;
        }
        schedule(0);
        await new Promise<void>((resolve) => {
          wake = resolve;
          emptyWaiters.add(resolve);
          deadline = setTimeout(resolve, Math.max(0, timeoutMs));
        });
        return entries.size === 0;
      } finally {
        flushing -= 1;
        if (wake) emptyWaiters.delete(wake);
        clearTimeout(deadline);
      }
    },
    stop(): number {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const left = entries.size;
      entries.clear();
      for (const wake of emptyWaiters) wake();
      return left;
    },
  };
}
