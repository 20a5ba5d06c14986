import { Redis } from 'ioredis';
import { closeRedis, failFastRedisOptions } from '../store/redis/fail-fast-options.js';
import { CounterStoreUnavailableError } from './types.js';
import type { CounterCheck, CounterState, CounterStore, CounterUsage, ReserveOutcome } from './types.js';

export interface RedisCounterStoreOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://…`. Never echoed in errors. */
  url: string;
  /** Prefix of every key this store writes; default `keywarden:`. Must not contain `{` or `}`. */
  keyPrefix?: string;
  /** How long one operation may take (connecting included) before it fails closed; default 1000 ms. */
  commandTimeoutMs?: number;
  /** The Redis password, loaded from a secret reference (config keeps passwords out of the URL). */
  password?: string;
}

/** How many expired leases one admission releases before it checks (bounded work per call). */
const SWEEP_ON_RESERVE = 100;
/** `reservedTotal` is rare (metrics, tests) and may sweep more. */
const SWEEP_ON_TOTAL = 1000;
/**
 * Counters live in Redis this long past the later of their window's end and their newest lease,
 * so replicas whose clocks drift a little still see the same counter.
 */
const EXPIRY_MARGIN_MS = 10 * 60_000;
/** Encodes an absent limit (`Infinity`) for the scripts. */
const NO_LIMIT = '-1';

/*
 * Key layout (all under one hash tag `{q}`, so a Redis Cluster would keep them in one slot and a
 * script may touch keys it derives itself):
 *   <prefix>{q}:c:<counter key>   hash { used, reserved, end (window end, ms), x (PEXPIREAT set) }
 *   <prefix>{q}:r:<reservation>   hash { <counter key>: amount reserved on it }
 *   <prefix>{q}:leases            sorted set of reservation ids scored by lease expiry (ms)
 *   <prefix>{q}:total             integer: the sum of `reserved` over all counters
 *   <prefix>{q}:o:<claim key>     one-off claims (SET NX PXAT)
 * Every key a call names (the leases, the total, its own reservation and its counters) is passed in
 * KEYS; the records and counters of *other*, expired reservations released by the sweep are derived
 * in-script from the prefix (ARGV[1]), which is sound because they share the hash tag.
 *
 * Amounts stay integer strings inside the scripts (HINCRBY/INCRBY take them as they are); Lua
 * numbers (doubles, exact to 2^53) are used only to compare, and never turned back into strings,
 * because Lua's tostring keeps 14 digits.
 */
const LUA_PRELUDE = `
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local function counterKey(raw) return prefix .. '{q}:c:' .. raw end
local function recordKey(id) return prefix .. '{q}:r:' .. id end

-- lowers a counter's reserved by up to amt (a string), keeping the total equal to the sum
local function unreserve(ck, amt, totalKey)
  local cur = redis.call('HGET', ck, 'reserved')
  if not cur then return end
  local dec = amt
  if tonumber(cur) < tonumber(amt) then dec = cur end
  if tonumber(dec) > 0 then
    redis.call('HINCRBY', ck, 'reserved', '-' .. dec)
    redis.call('INCRBY', totalKey, '-' .. dec)
  end
end

local function release(id, rk, leasesKey, totalKey)
  local entries = redis.call('HGETALL', rk)
  for i = 1, #entries, 2 do unreserve(counterKey(entries[i]), entries[i + 1], totalKey) end
  redis.call('DEL', rk)
  redis.call('ZREM', leasesKey, id)
end

local function sweep(leasesKey, totalKey, limit)
  local ids = redis.call('ZRANGEBYSCORE', leasesKey, '-inf', ARGV[2], 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do release(id, recordKey(id), leasesKey, totalKey) end
  -- no reservation left means nothing is reserved anywhere: heals a total that drifted because
  -- a counter expired (Redis TTL) while still holding a reservation
  if redis.call('ZCARD', leasesKey) == 0 then redis.call('DEL', totalKey) end
end

-- used, reserved of a counter as seen at now (an ended window counts as empty)
local function peek(ck)
  local v = redis.call('HMGET', ck, 'used', 'reserved', 'end')
  if v[3] and tonumber(v[3]) > now then return v[1] or '0', v[2] or '0' end
  return '0', '0'
end

-- makes sure the counter exists for a live window, starting fresh when its window ended; a live
-- window only grows (an in-flight counter's end follows its newest lease)
local function fresh(ck, windowEnd, totalKey)
  local v = redis.call('HMGET', ck, 'reserved', 'end')
  if v[2] and tonumber(v[2]) > now then
    if tonumber(v[2]) < tonumber(windowEnd) then redis.call('HSET', ck, 'end', windowEnd) end
    return
  end
  if v[1] and tonumber(v[1]) > 0 then redis.call('INCRBY', totalKey, '-' .. v[1]) end
  redis.call('HSET', ck, 'used', '0', 'reserved', '0', 'end', windowEnd)
end

-- only ever extends a counter's Redis expiry (a shorter lease must not cut a longer one)
local function keepUntil(ck, at)
  local x = redis.call('HGET', ck, 'x')
  if not x or tonumber(x) < tonumber(at) then
    redis.call('HSET', ck, 'x', at)
    redis.call('PEXPIREAT', ck, at)
  end
end
`;

/*
 * KEYS: leases, total, own record, counter 1..n
 * ARGV: prefix, now, lease expiry, sweep limit, reservation id, n,
 *       then per check: limit, amount, window end, expire-at, counter key
 * Returns { 1, -1, used1, reserved1, … } (states after) or { 0, failed index, states seen … }.
 */
const LUA_RESERVE = `${LUA_PRELUDE}
local leasesKey, totalKey, rk = KEYS[1], KEYS[2], KEYS[3]
sweep(leasesKey, totalKey, tonumber(ARGV[4]))
local id = ARGV[5]
local n = tonumber(ARGV[6])
local out = {}
for i = 1, n do
  local o = 6 + (i - 1) * 5
  local used, reserved = peek(KEYS[3 + i])
  out[#out + 1] = used
  out[#out + 1] = reserved
  local limit = ARGV[o + 1]
  if limit ~= '${NO_LIMIT}' and tonumber(used) + tonumber(reserved) + tonumber(ARGV[o + 2]) > tonumber(limit) then
    local refused = { 0, i - 1 }
    for j = 1, #out do refused[#refused + 1] = out[j] end
    return refused
  end
end
-- an id still in use (a retried admission) gives back what it held first, so nothing leaks
if redis.call('EXISTS', rk) == 1 then release(id, rk, leasesKey, totalKey) end
local admitted = { 1, -1 }
for i = 1, n do
  local o = 6 + (i - 1) * 5
  local ck, amount = KEYS[3 + i], ARGV[o + 2]
  fresh(ck, ARGV[o + 3], totalKey)
  local reserved = redis.call('HINCRBY', ck, 'reserved', amount)
  redis.call('INCRBY', totalKey, amount)
  redis.call('HINCRBY', rk, ARGV[o + 5], amount)
  keepUntil(ck, ARGV[o + 4])
  admitted[#admitted + 1] = redis.call('HGET', ck, 'used')
  admitted[#admitted + 1] = reserved
end
redis.call('ZADD', leasesKey, ARGV[3], id)
return admitted
`;

/*
 * KEYS: leases, total, own record, counter 1..n
 * ARGV: prefix, now, reservation id, n, then per usage: amount, window end, expire-at, counter key
 */
const LUA_SETTLE = `${LUA_PRELUDE}
local leasesKey, totalKey, rk = KEYS[1], KEYS[2], KEYS[3]
release(ARGV[3], rk, leasesKey, totalKey)
local n = tonumber(ARGV[4])
for i = 1, n do
  local o = 4 + (i - 1) * 4
  local ck = KEYS[3 + i]
  fresh(ck, ARGV[o + 2], totalKey)
  redis.call('HINCRBY', ck, 'used', ARGV[o + 1])
  keepUntil(ck, ARGV[o + 3])
end
return 1
`;

/* KEYS: counters. ARGV: prefix, now. Returns { used1, reserved1, … }. */
const LUA_READ = `${LUA_PRELUDE}
local out = {}
for i = 1, #KEYS do
  local used, reserved = peek(KEYS[i])
  out[#out + 1] = used
  out[#out + 1] = reserved
end
return out
`;

/* KEYS: leases, total. ARGV: prefix, now, sweep limit. */
const LUA_TOTAL = `${LUA_PRELUDE}
sweep(KEYS[1], KEYS[2], tonumber(ARGV[3]))
return redis.call('GET', KEYS[2]) or '0'
`;

type ScriptArg = string | number;
interface ScriptedRedis extends Redis {
  kwReserve(numKeys: number, ...args: ScriptArg[]): Promise<ScriptArg[]>;
  kwSettle(numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  kwRead(numKeys: number, ...args: ScriptArg[]): Promise<ScriptArg[]>;
  kwTotal(numKeys: number, ...args: ScriptArg[]): Promise<ScriptArg>;
}

function safeInt(value: number, what: string): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative safe integer`);
  return String(value);
}

function limitArg(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return NO_LIMIT;
  return safeInt(value, 'limit');
}

function timeArg(value: number, what: string): number {
  if (!Number.isFinite(value)) throw new RangeError(`${what} must be a finite number of ms`);
  return Math.ceil(value);
}

function nonEmpty(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${what} must be a non-empty string`);
  return value;
}

/**
 * The counter store shared by replicas: counters, reservations and leases in Redis, each
 * admission and each settlement one Lua script (EVALSHA, falling back to EVAL after a Redis
 * restart), so check-and-reserve is atomic across every replica that shares the server.
 *
 * Time is always the caller's `now` (never Redis TIME), so tests can move it; replicas therefore
 * need synchronised clocks (NTP), and Redis's own clock only decides when idle keys expire
 * (window end or lease expiry plus ten minutes).
 *
 * Fails closed and fast: no offline queue, a per-command timeout, no resending after a dropped
 * connection; any failure rejects with `CounterStoreUnavailableError` (whose message never holds
 * the URL or its password), so admission answers 503. The client reconnects by itself when Redis
 * comes back.
 *
 * @example
 *   const store = createRedisCounterStore({ url: process.env.REDIS_URL! });
 *   const outcome = await store.reserve(requestId, checks, 120_000, Date.now());
 */
export function createRedisCounterStore(options: RedisCounterStoreOptions): CounterStore {
  const prefix = options.keyPrefix ?? 'keywarden:';
  if (/[{}]/.test(prefix)) throw new TypeError('keyPrefix must not contain { or } (the store adds its own hash tag)');
  const timeoutMs = options.commandTimeoutMs ?? 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('commandTimeoutMs must be a positive number');

  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    // never echo the URL: it may hold a password
    throw new TypeError('invalid Redis URL');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new TypeError('Redis URL must start with redis:// or rediss://');
  const secrets = [parsed.password, safeDecode(parsed.password), parsed.username, safeDecode(parsed.username), options.password ?? '']
    .filter((s) => s.length >= 3);

  // key prefixes are applied by this store, not by ioredis's keyPrefix (scripts derive keys)
  const redis = new Redis(options.url, failFastRedisOptions(timeoutMs, options.password)) as ScriptedRedis;
  // connection errors are returned to callers as CounterStoreUnavailableError; an 'error' event
  // without a listener would only print, so take it and say nothing here
  redis.on('error', () => {});
  redis.defineCommand('kwReserve', { lua: LUA_RESERVE });
  redis.defineCommand('kwSettle', { lua: LUA_SETTLE });
  redis.defineCommand('kwRead', { lua: LUA_READ, readOnly: true });
  redis.defineCommand('kwTotal', { lua: LUA_TOTAL });

  const leasesKey = `${prefix}{q}:leases`;
  const totalKey = `${prefix}{q}:total`;
  const counterKey = (key: string): string => `${prefix}{q}:c:${key}`;
  const recordKey = (id: string): string => `${prefix}{q}:r:${id}`;
  let closed = false;
  let readyWait: Promise<void> | null = null;

  function redact(message: string): string {
    let out = message;
    for (const s of secrets) out = out.split(s).join('***');
    return out;
  }

  function unavailable(reason: string, cause?: unknown, notSent = false): CounterStoreUnavailableError {
    let safeCause: Error | undefined;
    if (cause instanceof Error) {
      // a copy with the password taken out: error objects end up in logs
      safeCause = new Error(redact(cause.message));
      safeCause.name = cause.name;
      const code = (cause as { code?: unknown }).code;
      if (typeof code === 'string') Object.assign(safeCause, { code });
    }
    return new CounterStoreUnavailableError(`redis counter store unavailable: ${redact(reason)}`, { ...(safeCause ? { cause: safeCause } : {}), notSent });
  }

  // waits (bounded) for a connection that is being made; a connection known to be down fails now.
  // Its failures say the operation was never sent (admission need not undo anything).
  function whenReady(): Promise<void> {
    if (closed || redis.status === 'end') return Promise.reject(unavailable('store closed', undefined, true));
    if (redis.status === 'ready') return Promise.resolve();
    if (redis.status === 'reconnecting' || redis.status === 'close') return Promise.reject(unavailable('not connected', undefined, true));
    readyWait ??= new Promise<void>((resolve, reject) => {
      const done = (err?: CounterStoreUnavailableError): void => {
        clearTimeout(timer);
        redis.off('ready', onReady);
        redis.off('close', onClose);
        redis.off('end', onClose);
        readyWait = null;
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done();
      const onClose = (): void => done(unavailable('connection failed', undefined, true));
      const timer = setTimeout(() => done(unavailable('connect timed out', undefined, true)), timeoutMs);
      redis.once('ready', onReady);
      redis.once('close', onClose);
      redis.once('end', onClose);
    });
    return readyWait;
  }

  async function run<T>(op: () => Promise<T>): Promise<T> {
    await whenReady();
    try {
      return await op();
    } catch (err) {
      // fail closed on anything Redis says or does not say (timeouts, resets, script errors)
      throw unavailable(err instanceof Error ? err.message : 'command failed', err);
    }
  }

  const store: CounterStore = {
    kind: 'redis',
    async reserve(reservationId: string, checks: readonly CounterCheck[], leaseMs: number, now: number): Promise<ReserveOutcome> {
      nonEmpty(reservationId, 'reservationId');
      const at = timeArg(now, 'now');
      const leaseExpiry = at + Math.max(0, timeArg(leaseMs, 'leaseMs'));
      const keys = [leasesKey, totalKey, recordKey(reservationId)];
      const args: ScriptArg[] = [prefix, at, leaseExpiry, SWEEP_ON_RESERVE, reservationId, checks.length];
      for (const check of checks) {
        const windowEnd = timeArg(check.windowEnd, 'windowEnd');
        keys.push(counterKey(nonEmpty(check.key, 'key')));
        args.push(limitArg(check.limit), safeInt(check.amount, 'amount'), windowEnd, Math.max(windowEnd, leaseExpiry) + EXPIRY_MARGIN_MS, check.key);
      }
      const reply = await run(() => redis.kwReserve(keys.length, ...keys, ...args));
      const states = toStates(reply.slice(2));
      if (Number(reply[0]) === 1) return { admitted: true, states };
      return { admitted: false, failed: Number(reply[1]), states };
    },
    async settle(reservationId: string, actual: readonly CounterUsage[], now: number): Promise<void> {
      nonEmpty(reservationId, 'reservationId');
      const keys = [leasesKey, totalKey, recordKey(reservationId)];
      const args: ScriptArg[] = [prefix, timeArg(now, 'now'), reservationId, actual.length];
      for (const usage of actual) {
        const windowEnd = timeArg(usage.windowEnd, 'windowEnd');
        keys.push(counterKey(nonEmpty(usage.key, 'key')));
        args.push(safeInt(usage.amount, 'amount'), windowEnd, windowEnd + EXPIRY_MARGIN_MS, usage.key);
      }
      await run(() => redis.kwSettle(keys.length, ...keys, ...args));
    },
    async read(keys: readonly string[], now: number): Promise<CounterState[]> {
      if (keys.length === 0) return [];
      const names = keys.map((key) => counterKey(nonEmpty(key, 'key')));
      const reply = await run(() => redis.kwRead(names.length, ...names, prefix, timeArg(now, 'now')));
      return toStates(reply);
    },
    async reservedTotal(now: number): Promise<number> {
      const reply = await run(() => redis.kwTotal(2, leasesKey, totalKey, prefix, timeArg(now, 'now'), SWEEP_ON_TOTAL));
      return Number(reply);
    },
    async claimOnce(key: string, expiresAt: number): Promise<boolean> {
      const at = Math.max(1, timeArg(expiresAt, 'expiresAt'));
      const reply = await run(() => redis.set(`${prefix}{q}:o:${nonEmpty(key, 'key')}`, '1', 'PXAT', at, 'NX'));
      return reply === 'OK';
    },
    async ping(): Promise<void> {
      await run(() => redis.ping());
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await closeRedis(redis);
    },
  };
  return store;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function toStates(flat: readonly ScriptArg[]): CounterState[] {
  const states: CounterState[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) states.push({ used: Number(flat[i]), reserved: Number(flat[i + 1]) });
  return states;
}
