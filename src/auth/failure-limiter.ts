import { isIP } from 'node:net';
import { BoundedMap } from '../anomaly/bounded-map.js';
import { GatewayError } from '../errors/index.js';
import { parseTenantKey } from './tenant-key.js';

/** At most `max` failed authentications per `windowMs`. */
export interface FailureWindow {
  max: number;
  windowMs: number;
}

/** The code a limited request answers with: one per listener, so clients and metrics can tell them apart. */
export type AuthRateLimitCode = 'auth_rate_limited' | 'admin_auth_rate_limited';

export interface AuthFailureLimiterOptions {
  /** Failures per client address (IPv4 address, or IPv6 /64). */
  perAddress: FailureWindow;
  /** Failures per tenant-key id, from any address. */
  perKey: FailureWindow;
  /** Most addresses, and separately most key ids, tracked at once (least recently seen forgotten first); default 100 000. */
  maxTracked?: number;
  /** The refusal's code; default `auth_rate_limited` (the public listener). */
  code?: AuthRateLimitCode;
  /** Milliseconds clock; tests inject one. */
  now?: () => number;
}

export interface AuthFailureLimiter {
  /**
   * Throws a 429 GatewayError (with `retryAfterSeconds`) when the address already has `max`
   * failures in its window. Call it before verifying, so a limited client costs no HMAC or
   * store lookup.
   */
  check(address: string): void;
  /**
   * Milliseconds until the key id's window ends when it is at its limit, else 0. Read before
   * verifying; when the credential then fails, answer `refusal(ms)` instead of the 401.
   */
  keyBlockedMs(keyId: string | undefined): number;
  /** Counts one failed authentication against the address and, when known, the key id. */
  fail(address: string, keyId?: string): void;
  /** The 429 for a limited client (says nothing about the credential). */
  refusal(waitMs: number): GatewayError;
}

/**
 * The in-process limiter plus a way to mark an entry limited from outside (the shared limiter
 * does, when the count across replicas reaches the limit). Assignable to `AuthFailureLimiter`.
 */
export interface BlockableAuthFailureLimiter extends AuthFailureLimiter {
  /**
   * Treats the address's group as at its limit until `untilMs` (clock of `now`), capped at one
   * window from now; never shortens a limit already in force.
   */
  blockAddress(address: string, untilMs: number): void;
  /** The same for a key id. */
  blockKey(keyId: string, untilMs: number): void;
}

/** One fixed window, anchored at its first failure. */
interface WindowCount {
  start: number;
  count: number;
}

const DEFAULT_MAX_TRACKED = 100_000;

/**
 * Slows credential guessing: counts failed authentications per client address and per key id,
 * and refuses further attempts (429) once either reaches its limit within its window.
 *
 * - Per address, it fails closed: while an address is limited, even a correct credential is
 *   refused unverified, so the answer tells a guesser nothing about the guess.
 * - Per key id, wrong secrets are answered 429 while the id is limited, but a correct one still
 *   gets in: key ids are public (part of the key, and shown to admin viewers), so refusing the
 *   right secret would let anyone lock a key or admin token out by sending wrong ones for its id.
 *   A right guess of a 256-bit secret is not a risk to design for; the per-address limit still
 *   bounds how often any one client can try.
 * - A success never resets a count: otherwise an attacker holding one valid key could
 *   interleave it with guesses at other keys and never be limited.
 * - Memory is bounded: addresses and key ids sit in two LRU maps of `maxTracked` entries each,
 *   separate so that a flood of made-up key ids cannot push an address out (and vice versa).
 * - Windows are fixed and start at an entry's first failure: O(1) per call, an exact
 *   `Retry-After`, at most `2 × max − 1` failures in any span of one window. No timers: expired
 *   entries are replaced when next touched or forgotten when the map is full.
 * - Check and count are two steps: requests already being verified when the limit is reached
 *   still finish (and count). Reserving a slot per attempt would close that, but would also
 *   refuse a busy client's valid concurrent requests; verification is quick, so the overshoot is small.
 * - Only the key id (public: it is part of the key) and the address are stored, never a credential.
 *
 * @example
 * const limiter = createAuthFailureLimiter({ perAddress: { max: 20, windowMs: 60_000 }, perKey: { max: 50, windowMs: 60_000 } });
 * limiter.check(address);                  // throws auth_rate_limited when the address is limited
 * const keyBlocked = limiter.keyBlockedMs(keyId);
 * try { await authenticate(credential); } catch (err) {
 *   limiter.fail(address, keyId);
 *   throw keyBlocked > 0 ? limiter.refusal(keyBlocked) : err;
 * }
 */
export function createAuthFailureLimiter(options: AuthFailureLimiterOptions): BlockableAuthFailureLimiter {
  checkWindow(options.perAddress, 'perAddress');
  checkWindow(options.perKey, 'perKey');
  const maxTracked = options.maxTracked ?? DEFAULT_MAX_TRACKED;
  const addresses = new BoundedMap<string, WindowCount>(maxTracked);
  const keys = new BoundedMap<string, WindowCount>(maxTracked);
  const now = options.now ?? Date.now;
  const code = options.code ?? 'auth_rate_limited';

  /** Milliseconds until the entry's window ends when it is at its limit, else 0. */
  function blockedFor(map: BoundedMap<string, WindowCount>, key: string, limit: FailureWindow, at: number): number {
    const entry = map.peek(key);
    if (entry === undefined || entry.count < limit.max) return 0;
    const left = entry.start + limit.windowMs - at;
    if (left <= 0) return 0;
    // a limited client that keeps trying stays the most recently seen: it is not the one forgotten
    map.get(key);
    return left;
  }

  function refusal(waitMs: number): GatewayError {
    return new GatewayError(code, 'too many failed authentication attempts; retry later', { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) });
  }

  function count(map: BoundedMap<string, WindowCount>, key: string, limit: FailureWindow, at: number): void {
    const entry = map.get(key);
    if (entry === undefined || at - entry.start >= limit.windowMs) map.set(key, { start: at, count: 1 });
    else entry.count++;
  }

  function block(map: BoundedMap<string, WindowCount>, key: string, limit: FailureWindow, untilMs: number): void {
    const at = now();
    // a clock ahead of this one must not hold an entry for longer than one window
    const until = Math.min(untilMs, at + limit.windowMs);
    if (!(until > at)) return;
    const entry = map.get(key);
    if (entry !== undefined && entry.count >= limit.max && entry.start + limit.windowMs >= until) return;
    // the window is moved so that it ends at `until`: at its limit until then, counted afresh after
    map.set(key, { start: until - limit.windowMs, count: Math.max(limit.max, entry?.count ?? 0) });
  }

  return {
    blockAddress(address, untilMs) {
      block(addresses, addressGroup(address), options.perAddress, untilMs);
    },
    blockKey(keyId, untilMs) {
      block(keys, keyId, options.perKey, untilMs);
    },
    check(address) {
      const waitMs = blockedFor(addresses, addressGroup(address), options.perAddress, now());
      // says nothing about the credential: it was not even looked at
      if (waitMs > 0) throw refusal(waitMs);
    },
    keyBlockedMs(keyId) {
      return keyId === undefined ? 0 : blockedFor(keys, keyId, options.perKey, now());
    },
    refusal,
    fail(address, keyId) {
      const at = now();
      count(addresses, addressGroup(address), options.perAddress, at);
      if (keyId !== undefined) count(keys, keyId, options.perKey, at);
    },
  };
}

function checkWindow(limit: FailureWindow, name: string): void {
  if (!Number.isInteger(limit.max) || limit.max < 1) throw new RangeError(`${name}.max must be a whole number of at least 1`);
  if (!Number.isFinite(limit.windowMs) || limit.windowMs <= 0) throw new RangeError(`${name}.windowMs must be a positive number of milliseconds`);
}

/**
 * The key id of a presented credential when it is shaped like a tenant key (`kw_<id>_<secret>`),
 * else undefined (JWTs, garbage, nothing sent): those are limited per address only. The id is
 * public; the secret is dropped here and never stored.
 */
export function tenantKeyIdOf(credential: string | undefined): string | undefined {
  return credential === undefined ? undefined : parseTenantKey(credential)?.id;
}

/**
 * The unit an address is limited as: an IPv4 address as it is (an IPv4-mapped IPv6 address as
 * its IPv4 address, as in the audit trail), an IPv6 address by its /64, because one host
 * commonly holds a whole /64 and could otherwise change address on every guess.
 *
 * @example addressGroup('2001:db8:1:2::7') // '2001:db8:1:2::/64'
 * @example addressGroup('::ffff:10.0.0.1') // '10.0.0.1'
 */
export function addressGroup(address: string): string {
  // a zone (`fe80::1%eth0`) names the local interface, not the peer
  const bare = address.includes('%') ? address.slice(0, address.indexOf('%')) : address;
  if (isIP(bare) !== 6) return bare;
  const groups = expandIpv6(bare);
  if (groups === undefined) return bare.toLowerCase();
  // IPv4-mapped (`::ffff:a.b.c.d`, in either notation): the IPv4 address
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const high = groups[6] as number;
    const low = groups[7] as number;
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (embedded IPv4 tail included). */
function expandIpv6(address: string): number[] | undefined {
  let text = address.toLowerCase();
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}
