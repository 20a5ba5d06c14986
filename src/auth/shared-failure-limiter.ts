import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { closeRedis, failFastRedisOptions } from '../store/redis/fail-fast-options.js';
import { addressGroup, createAuthFailureLimiter, type AuthFailureLimiter, type AuthFailureLimiterOptions, type BlockableAuthFailureLimiter } from './failure-limiter.js';

/*
 * Failed-authentication counts shared by replicas through the limits Redis.
 *
 * The request path stays synchronous and local: `check`, `keyBlockedMs` and `fail` touch only the
 * in-process limiter. `fail` also sends, in the background, one MULTI that INCRs a fixed-window
 * counter for the address group and one for the key id; when an answer reaches the limit the entry
 * is marked limited in the local limiter until that window ends. Other replicas learn it from the
 * answer to their own next failure for the same address or key id.
 *
 * Key layout (`<prefix>` is `limits.key_prefix`, default `keywarden:`):
 *   <prefix>authfail:<listener>:a:<address group>:<window start ms>   integer, PEXPIREd past the window end
 *   <prefix>authfail:<listener>:k:<key id>:<window start ms>
 * Only the address group and the public key id are written, never a credential; a value that is
 * long or holds characters other than the expected ones is written as a hash of it.
 */

/** One counter to increment: its full Redis key and how long Redis keeps it. */
export interface FailureCount {
  key: string;
  ttlMs: number;
}

/** What the shared limiters need from Redis; one per gateway, shared by both listeners. */
export interface AuthFailureStore {
  /** Starts every key this store writes. */
  readonly prefix: string;
  /**
   * Increments every counter (setting its expiry) in one round trip and resolves their new
   * values; resolves undefined, never rejects, when Redis is not connected or the call failed
   * (nothing is counted remotely then).
   */
  increment(counts: readonly FailureCount[]): Promise<number[] | undefined>;
  /** Waits for increments in flight, then closes the connection. */
  close(): Promise<void>;
}

export interface AuthFailureStoreOptions {
  /** `redis://host:port[/db]` or `rediss://…` (`limits.store`). Never echoed. */
  url: string;
  /** The Redis password, from `limits.redis_password` (a secret reference). */
  password?: string;
  /** Prefix of every key; default `keywarden:`. */
  prefix?: string;
  /** How long one call may take before it counts as failed; default 1000 ms. */
  commandTimeoutMs?: number;
  /** Once when Redis goes away (or is not there at start); `reason` is an error code such as `ECONNREFUSED`, never a message. */
  onUnavailable?: (reason: string | undefined) => void;
  /** Once when Redis is back after `onUnavailable`. */
  onAvailable?: () => void;
}

/** Increments in flight at once; past that, failures are counted locally only (bounded memory when Redis is slow). */
const MAX_IN_FLIGHT = 10_000;

/**
 * Opens the Redis connection the shared failure limiters count through. It never blocks or fails a
 * caller: while Redis is unreachable `increment` resolves undefined at once (no offline queue) and
 * the connection keeps retrying in the background; `onUnavailable` / `onAvailable` fire once per
 * outage so the gateway can log it. Errors are never passed on, so neither the URL nor the
 * password can reach a log.
 *
 * @example
 * const store = createAuthFailureStore({ url: 'redis://redis.internal:6379', onUnavailable: () => log.warn(…) });
 * const limiter = createSharedAuthFailureLimiter({ local: { perAddress, perKey }, store, listener: 'public' });
 */
export function createAuthFailureStore(options: AuthFailureStoreOptions): AuthFailureStore {
  const prefix = options.prefix ?? 'keywarden:';
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) throw new TypeError('prefix must be 1 to 64 characters of A-Z, a-z, 0-9, _ . : -');
  const timeoutMs = options.commandTimeoutMs ?? 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('commandTimeoutMs must be a positive number');
  let protocol: string;
  try {
    protocol = new URL(options.url).protocol;
  } catch {
    // never echo the URL: it may hold a password
    throw new TypeError('invalid Redis URL');
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') throw new TypeError('Redis URL must start with redis:// or rediss://');

  // never waits for a connection (a failure is counted locally at once instead) and keeps
  // reconnecting, so sharing resumes by itself when Redis is back
  const redis = new Redis(options.url, failFastRedisOptions(timeoutMs, options.password));
  let state: 'unknown' | 'up' | 'down' = 'unknown';
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  function down(err?: unknown): void {
    if (closed || state === 'down') return;
    state = 'down';
    const code = (err as { code?: unknown } | undefined)?.code;
    // only a short error code goes out: messages may quote the URL
    options.onUnavailable?.(typeof code === 'string' && /^[A-Z0-9_]{2,32}$/.test(code) ? code : undefined);
  }
  function up(): void {
    if (closed || state === 'up') return;
    const wasDown = state === 'down';
    state = 'up';
    if (wasDown) options.onAvailable?.();
  }
  // without a listener ioredis would print connection errors (with the address) to stderr
  redis.on('error', (err: unknown) => down(err));
  redis.on('close', () => down());
  redis.on('ready', () => up());

  async function send(counts: readonly FailureCount[]): Promise<number[] | undefined> {
    const multi = redis.multi();
    for (const c of counts) multi.incr(c.key).pexpire(c.key, c.ttlMs);
    try {
      const replies = await multi.exec();
      if (replies === null) throw new Error('transaction aborted');
      const values: number[] = [];
      for (let i = 0; i < counts.length; i++) {
        const [err, value] = replies[i * 2] ?? [new Error('missing reply'), null];
        if (err) throw err;
        values.push(Number(value));
      }
      up();
      return values;
    } catch (err) {
      down(err);
      return undefined;
    }
  }

  return {
    prefix,
    increment(counts) {
      // not connected (starting, reconnecting): count nothing remotely rather than queue or wait
      if (closed || counts.length === 0 || redis.status !== 'ready' || inFlight.size >= MAX_IN_FLIGHT) return Promise.resolve(undefined);
      const call = send(counts);
      inFlight.add(call);
      void call.finally(() => inFlight.delete(call));
      return call;
    },
    async close() {
      if (closed) return;
      await Promise.allSettled([...inFlight]);
      closed = true;
      await closeRedis(redis);
    },
  };
}

export interface SharedAuthFailureLimiterOptions {
  /** The in-process limits, enforced by each replica on its own whatever Redis does. */
  local: AuthFailureLimiterOptions;
  store: AuthFailureStore;
  /** Names the listener in the keys, so admin-token and tenant-key guesses are counted apart. */
  listener: 'public' | 'admin';
  /** Milliseconds clock; tests inject one. Replicas need synchronised clocks (NTP): windows are aligned to it. */
  now?: () => number;
}

/** The shared limiter: the `AuthFailureLimiter` interface, plus a way to wait for its background counts. */
export interface SharedAuthFailureLimiter extends AuthFailureLimiter {
  /** Resolves when every count sent so far has been answered (shutdown, tests). */
  settled(): Promise<void>;
}

/** Redis keeps a counter this long past its window's end, so replicas with slightly different clocks still meet on it. */
const EXPIRY_MARGIN_MS = 30_000;

/**
 * Failed-authentication limits that hold across replicas sharing one Redis, with the request
 * path kept synchronous and free of network calls.
 *
 * - `check`, `keyBlockedMs` and `refusal` are the local limiter's: no round trip.
 * - `fail` counts locally at once, then INCRs the address group's and the key id's counters of
 *   the current fixed window (`floor(now / window) × window`) in one MULTI. When a counter's new
 *   value reaches its `max`, the entry is marked limited locally until the window ends, so the
 *   next request from that address (or for that key id) on this replica is refused.
 * - Another replica learns it from its own next failure for that address or key id (its INCR
 *   answers over the limit), so across N replicas at most `max + N − 1` failures are answered 401
 *   per window, plus requests already being verified, or arriving within one Redis round trip of
 *   the failure that reached the limit.
 * - Redis unreachable: nothing is counted remotely, the local (per-process) limits still apply,
 *   and the store reports the outage once (and the recovery once).
 *
 * @example
 * const publicLimiter = createSharedAuthFailureLimiter({
 *   local: { perAddress: { max: 20, windowMs: 60_000 }, perKey: { max: 50, windowMs: 60_000 }, code: 'auth_rate_limited' },
 *   store, listener: 'public',
 * });
 */
export function createSharedAuthFailureLimiter(options: SharedAuthFailureLimiterOptions): SharedAuthFailureLimiter {
  const now = options.now ?? options.local.now ?? Date.now;
  const local: BlockableAuthFailureLimiter = createAuthFailureLimiter({ ...options.local, now });
  const { perAddress, perKey } = options.local;
  const base = `${options.store.prefix}authfail:${options.listener}:`;
  const pending = new Set<Promise<void>>();

  function windowOf(at: number, windowMs: number): { start: number; end: number } {
    const start = Math.floor(at / windowMs) * windowMs;
    return { start, end: start + windowMs };
  }

  async function share(address: string, keyId: string | undefined, at: number): Promise<void> {
    const addressWindow = windowOf(at, perAddress.windowMs);
    const counts: FailureCount[] = [
      { key: `${base}a:${keyPart(addressGroup(address))}:${addressWindow.start}`, ttlMs: addressWindow.end - at + EXPIRY_MARGIN_MS },
    ];
    const keyWindow = windowOf(at, perKey.windowMs);
    if (keyId !== undefined) counts.push({ key: `${base}k:${keyPart(keyId)}:${keyWindow.start}`, ttlMs: keyWindow.end - at + EXPIRY_MARGIN_MS });
    const values = await options.store.increment(counts);
    if (values === undefined) return;
    // at the limit across replicas: refuse here too until the shared window ends
    if ((values[0] ?? 0) >= perAddress.max) local.blockAddress(address, addressWindow.end);
    if (keyId !== undefined && (values[1] ?? 0) >= perKey.max) local.blockKey(keyId, keyWindow.end);
  }

  return {
    check: (address) => local.check(address),
    keyBlockedMs: (keyId) => local.keyBlockedMs(keyId),
    refusal: (waitMs) => local.refusal(waitMs),
    fail(address, keyId) {
      const at = now();
      local.fail(address, keyId);
      // in the background: the answer to the client never waits for Redis
      const shared = share(address, keyId, at).catch(() => {});
      pending.add(shared);
      void shared.finally(() => pending.delete(shared));
    },
    async settled() {
      await Promise.allSettled([...pending]);
    },
  };
}

/**
 * A bounded, printable key segment: an address group or key id as it is when short and made of
 * the characters they normally hold, else `#<hash>` (an unexpected remote address, a long value).
 */
function keyPart(value: string): string {
  if (/^[A-Za-z0-9._:/-]{1,64}$/.test(value)) return value;
  // `#` is outside the kept characters, so a hash never equals a kept value
  return `#${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;
}
