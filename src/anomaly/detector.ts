import { createHmac, randomBytes } from 'node:crypto';
import type { RequestContext } from '../server/proxy.js';
import { ERROR_CODES } from '../errors/codes.js';
import { BoundedMap } from './bounded-map.js';
import type { AnomalyAlert, AnomalyConfig, AnomalyKind, AnomalyScope, RateRule } from './types.js';

/** The facts of a finished request the detector reads (a subset of the request context). */
export type ObservedRequest = Pick<RequestContext, 'requestId' | 'principal' | 'status' | 'outcome' | 'errorCode' | 'usage' | 'clientAddress'>;

export interface AnomalyDetectorOptions {
  config: AnomalyConfig;
  /**
   * Told about each alert, synchronously, from `observe`: it must only queue the alert (the
   * request path calls `observe`). Exceptions are caught and passed to `onError`.
   */
  onAlert: (alert: AnomalyAlert) => void;
  /**
   * How a client address becomes the `hmac-sha256:…` tag kept in memory and put in alerts. The
   * gateway passes the audit trail's identifier hasher, so a tag matches `details.client` of the
   * request audit rows. Default: HMAC-SHA256 under `hmacKey`.
   */
  hashClient?: (address: string) => string;
  /** Key of the default client-address HMAC; a random per-process key when not given. */
  hmacKey?: Buffer;
  /** The clock (ms since the epoch); tests inject one to drive baselines without waiting. */
  now?: () => number;
  /** Told about an internal failure; detection never fails a request. */
  onError?: (err: unknown) => void;
  /** Bounds of the in-memory tables (tenants, keys, open alerts); defaults suit large installs. */
  maxTenants?: number;
  maxKeys?: number;
}

/** A baseline computed once per bucket per tenant: the buckets before the current one in the window. */
interface Baseline {
  /** Bucket index the baseline was computed for. */
  idx: number;
  /** Undefined while the tenant has less history than `minHistoryMs`. */
  stats: { n: number; reqMean: number; reqSd: number; tokMean: number; tokSd: number; errRate: number; errSd: number } | undefined;
}

interface TenantState {
  tenantId: string;
  tenantName: string;
  firstSeen: number;
  firstIdx: number;
  /** Ring of per-bucket counts: slot = bucket index mod length; a slot whose `idx` is stale counts as zero. */
  idx: Float64Array;
  req: Float64Array;
  tok: Float64Array;
  err: Float64Array;
  /** Per bucket, which rate detectors found it anomalous (REQ | TOK | ERR): such buckets are left out of later baselines. */
  flags: Uint8Array;
  baseline: Baseline;
  /** Requests per hour of the week (UTC, Monday 00:00 = 0). */
  hours: Uint32Array;
  hoursTotal: number;
}

interface KeyState {
  firstSeen: number;
  requests: number;
  /** HMACs of the client addresses this key was used from (never the addresses). */
  addresses: BoundedMap<string, true>;
}

interface Counter {
  idx: number;
  count: number;
}

const REQ = 1;
const TOK = 2;
const ERR = 4;

const AUTH_CODES: ReadonlySet<string> = new Set(Object.keys(ERROR_CODES).filter((code) => code.startsWith('auth_')));
const HOUR_MS = 3_600_000;
/** 1970-01-01 was a Thursday: three days after a Monday. */
const EPOCH_HOUR_OF_WEEK = 3 * 24;

/** The hour of the week in UTC, Monday 00:00–01:00 being 0 and Sunday 23:00–24:00 being 167. */
export function hourOfWeek(ms: number): number {
  return (Math.floor(ms / HOUR_MS) + EPOCH_HOUR_OF_WEEK) % 168;
}

/**
 * Creates the anomaly detector: per-tenant rolling baselines in memory, fed by the record stage
 * with each finished request. `observe` costs a few additions and at most one HMAC per request,
 * does no I/O and never throws; an anomaly is handed to `onAlert` once per (tenant, kind) until
 * the condition has been clear for the quiet time.
 *
 * Detectors: request-rate, token-rate and error-rate spikes against mean + k·stddev of the
 * tenant's recent buckets (once it has `minHistoryMs` of history, and above a minimum volume so
 * quiet tenants stay quiet); authentication-failure bursts per client address and overall; a
 * tenant key used from an address it was never used from (after a learning period); traffic in
 * an hour of the week the tenant never used (after a learning period).
 *
 * @example
 * const detector = createAnomalyDetector({ config: config.anomaly, onAlert: (a) => sink.alert(a) });
 * detector.observe(ctx); // in the record stage, once per finished request
 */
export function createAnomalyDetector(options: AnomalyDetectorOptions) {
  const config = options.config;
  const now = options.now ?? Date.now;
  const hmacKey = options.hmacKey ?? randomBytes(32);
  if (hmacKey.length < 16) throw new RangeError('the client-address HMAC key must be at least 16 bytes');
  if (!(config.bucketMs > 0) || !(config.windowMs >= config.bucketMs)) throw new RangeError('anomaly window must hold at least one bucket');
  const bucketMs = config.bucketMs;
  const windowBuckets = Math.max(1, Math.floor(config.windowMs / bucketMs));
  const ringSize = windowBuckets + 1;
  const minHistoryBuckets = Math.ceil(config.minHistoryMs / bucketMs);

  const tenants = new BoundedMap<string, TenantState>(options.maxTenants ?? 10_000);
  const keys = new BoundedMap<string, KeyState>(options.maxKeys ?? 100_000);
  const authByAddress = new BoundedMap<string, Counter>(config.authFailures.maxAddresses);
  const authGlobal: Counter = { idx: -1, count: 0 };
  /** Open alerts: when each (kind, subject) condition was last seen true. */
  const active = new BoundedMap<string, number>(100_000);
  let lastPruneIdx = -1;

  // the address itself is never kept, logged or sent: only this keyed hash
  const clientTag = options.hashClient ?? ((address: string): string => `hmac-sha256:${createHmac('sha256', hmacKey).update(address).digest('hex')}`);

  /**
   * Raises an alert unless one for the same (kind, subject) is open: an alert stays open until
   * its condition has been clear (not seen true) for the quiet time.
   */
  function raise(subject: string, at: number, alert: () => Omit<AnomalyAlert, 'at'>): void {
    const last = active.peek(subject);
    active.set(subject, at);
    if (last !== undefined && at - last < config.quietMs) return;
    try {
      options.onAlert({ ...alert(), at });
    } catch (err) {
      options.onError?.(err);
    }
  }

  function tenantState(tenantId: string, tenantName: string, at: number, idx: number): TenantState {
    let t = tenants.get(tenantId);
    if (t === undefined) {
      t = {
        tenantId, tenantName, firstSeen: at, firstIdx: idx,
        idx: new Float64Array(ringSize).fill(-1), req: new Float64Array(ringSize), tok: new Float64Array(ringSize), err: new Float64Array(ringSize), flags: new Uint8Array(ringSize),
        baseline: { idx: -1, stats: undefined }, hours: new Uint32Array(168), hoursTotal: 0,
      };
      tenants.set(tenantId, t);
    }
    t.tenantName = tenantName;
    return t;
  }

  /** The slot of bucket `idx`, reset when it held an older bucket. */
  function slot(t: TenantState, idx: number): number {
    const s = idx % ringSize;
    if (t.idx[s] !== idx) {
      t.idx[s] = idx;
      t.req[s] = 0;
      t.tok[s] = 0;
      t.err[s] = 0;
      t.flags[s] = 0;
    }
    return s;
  }

  function baseline(t: TenantState, idx: number): Baseline['stats'] {
    if (t.baseline.idx === idx) return t.baseline.stats;
    let stats: Baseline['stats'];
    const history = idx - t.firstIdx;
    if (history >= Math.max(1, minHistoryBuckets)) {
      const n = Math.min(windowBuckets, history);
      // a bucket a detector found anomalous is left out of that detector's baseline, so one
      // episode does not raise the bar for the next (don't learn from the anomaly)
      let reqN = 0, reqSum = 0, reqSq = 0, tokN = 0, tokSum = 0, tokSq = 0;
      let errReq = 0, errSum = 0, rateSum = 0, rateSq = 0, rateN = 0;
      for (let j = 1; j <= n; j++) {
        const b = idx - j;
        const s = b % ringSize;
        const live = t.idx[s] === b; // a bucket without traffic counts as zeros
        const r = live ? t.req[s] as number : 0;
        const k = live ? t.tok[s] as number : 0;
        const e = live ? t.err[s] as number : 0;
        const flags = live ? t.flags[s] as number : 0;
        if ((flags & REQ) === 0) {
          reqN++; reqSum += r; reqSq += r * r;
        }
        if ((flags & TOK) === 0) {
          tokN++; tokSum += k; tokSq += k * k;
        }
        if ((flags & ERR) === 0 && r > 0) {
          const rate = e / r;
          errReq += r; errSum += e; rateSum += rate; rateSq += rate * rate; rateN++;
        }
      }
      const reqMean = reqN > 0 ? reqSum / reqN : 0;
      const tokMean = tokN > 0 ? tokSum / tokN : 0;
      const rateMean = rateN > 0 ? rateSum / rateN : 0;
      stats = {
        n, reqMean, reqSd: reqN > 0 ? Math.sqrt(Math.max(0, reqSq / reqN - reqMean * reqMean)) : 0,
        tokMean, tokSd: tokN > 0 ? Math.sqrt(Math.max(0, tokSq / tokN - tokMean * tokMean)) : 0,
        errRate: errReq > 0 ? errSum / errReq : 0,
        errSd: rateN > 0 ? Math.sqrt(Math.max(0, rateSq / rateN - rateMean * rateMean)) : 0,
      };
    }
    t.baseline = { idx, stats };
    return stats;
  }

  function rateCheck(rule: RateRule, observed: number, mean: number, sd: number): number | undefined {
    if (!rule.enabled || observed < rule.minCount) return undefined;
    const threshold = Math.max(rule.minCount, mean + rule.k * sd, rule.factor * mean);
    // strictly above mean + k·sd: steady traffic (sd 0) at the minimum is not a spike
    return observed >= threshold && observed > mean + rule.k * sd ? threshold : undefined;
  }

  function tenantAlert(t: TenantState, kind: AnomalyKind, scope: AnomalyScope, req: ObservedRequest, values: Record<string, number>,
    extra: { keyId?: string; client?: string } = {}): Omit<AnomalyAlert, 'at'> {
    return {
      kind, scope, tenant: t.tenantName, tenantId: t.tenantId, keyId: extra.keyId ?? null, client: extra.client ?? null,
      requestId: req.requestId, values: Object.freeze(values),
    };
  }

  function observeAuthFailure(req: ObservedRequest, at: number, idx: number): void {
    const rule = config.authFailures;
    if (!rule.enabled) return;
    if (authGlobal.idx !== idx) {
      authGlobal.idx = idx;
      authGlobal.count = 0;
    }
    authGlobal.count++;
    if (authGlobal.count >= rule.global) {
      const count = authGlobal.count;
      raise('auth_failure_burst\u0000global', at, () => ({
        kind: 'auth_failure_burst', scope: 'global', tenant: null, tenantId: null, keyId: null, client: null, requestId: req.requestId,
        values: Object.freeze({ failures: count, threshold: rule.global, bucket_seconds: bucketMs / 1000 }),
      }));
    }
    if (req.clientAddress === '') return;
    const client = clientTag(req.clientAddress);
    let c = authByAddress.get(client);
    if (c === undefined) {
      c = { idx, count: 0 };
      authByAddress.set(client, c);
    }
    if (c.idx !== idx) {
      c.idx = idx;
      c.count = 0;
    }
    c.count++;
    if (c.count >= rule.perAddress) {
      const count = c.count;
      raise(`auth_failure_burst\u0000${client}`, at, () => ({
        kind: 'auth_failure_burst', scope: 'address', tenant: null, tenantId: null, keyId: null, client, requestId: req.requestId,
        values: Object.freeze({ failures: count, threshold: rule.perAddress, bucket_seconds: bucketMs / 1000 }),
      }));
    }
  }

  function observeTenant(req: ObservedRequest, at: number, idx: number): void {
    const principal = req.principal;
    if (principal === undefined) return;
    const t = tenantState(principal.tenantId, principal.tenantName, at, idx);
    const s = slot(t, idx);
    const tokens = req.usage.inputTokens + req.usage.outputTokens;
    const isError = req.status >= 500 || req.outcome === 'stream_broken';
    t.req[s] = (t.req[s] as number) + 1;
    t.tok[s] = (t.tok[s] as number) + tokens;
    if (isError) t.err[s] = (t.err[s] as number) + 1;

    const stats = baseline(t, idx);
    if (stats !== undefined) {
      const bucketSeconds = bucketMs / 1000;
      const requests = t.req[s] as number;
      const reqThreshold = rateCheck(config.requestRate, requests, stats.reqMean, stats.reqSd);
      if (reqThreshold !== undefined) {
        t.flags[s] = (t.flags[s] as number) | REQ;
        raise(`request_rate\u0000${t.tenantId}`, at, () => tenantAlert(t, 'request_rate', 'tenant', req, {
          requests, baseline_mean: round(stats.reqMean), baseline_stddev: round(stats.reqSd), threshold: round(reqThreshold), bucket_seconds: bucketSeconds,
        }));
      }
      if (tokens > 0) {
        const used = t.tok[s] as number;
        const tokThreshold = rateCheck(config.tokenRate, used, stats.tokMean, stats.tokSd);
        if (tokThreshold !== undefined) {
          t.flags[s] = (t.flags[s] as number) | TOK;
          raise(`token_rate\u0000${t.tenantId}`, at, () => tenantAlert(t, 'token_rate', 'tenant', req, {
            tokens: used, baseline_mean: round(stats.tokMean), baseline_stddev: round(stats.tokSd), threshold: round(tokThreshold), bucket_seconds: bucketSeconds,
          }));
        }
      }
      const rule = config.errorRate;
      const errors = t.err[s] as number;
      if (isError && rule.enabled && errors >= rule.minErrors) {
        const rate = errors / requests;
        if (rate >= rule.minRate && rate > stats.errRate + rule.k * stats.errSd) {
          t.flags[s] = (t.flags[s] as number) | ERR;
          raise(`error_rate\u0000${t.tenantId}`, at, () => tenantAlert(t, 'error_rate', 'tenant', req, {
            errors, requests, rate: round(rate), baseline_rate: round(stats.errRate), baseline_stddev: round(stats.errSd), bucket_seconds: bucketSeconds,
          }));
        }
      }
    }

    const hours = config.unusualHours;
    if (hours.enabled) {
      const how = hourOfWeek(at);
      if ((t.hours[how] as number) === 0 && at - t.firstSeen >= hours.learningMs && t.hoursTotal >= hours.minRequests) {
        const history = t.hoursTotal;
        raise(`unusual_hour\u0000${t.tenantId}`, at, () => tenantAlert(t, 'unusual_hour', 'tenant', req, {
          hour_of_week: how, weekday: Math.floor(how / 24), hour_utc: how % 24, history_requests: history,
          hours_used: t.hours.reduce((n, v) => n + (v > 0 ? 1 : 0), 0),
        }));
      }
      t.hours[how] = (t.hours[how] as number) + 1;
      t.hoursTotal++;
    }

    const fresh = config.newAddress;
    if (fresh.enabled && req.clientAddress !== '') {
      let k = keys.get(principal.keyId);
      if (k === undefined) {
        k = { firstSeen: at, requests: 0, addresses: new BoundedMap(fresh.maxAddressesPerKey) };
        keys.set(principal.keyId, k);
      }
      const client = clientTag(req.clientAddress);
      if (!k.addresses.has(client)) {
        if (at - k.firstSeen >= fresh.learningMs && k.requests >= fresh.minRequests) {
          const known = k.addresses.size;
          const keyRequests = k.requests;
          raise(`new_client_address\u0000${t.tenantId}`, at, () => tenantAlert(t, 'new_client_address', 'key', req, {
            known_addresses: known, key_requests: keyRequests,
          }, { keyId: principal.keyId, client }));
        }
      }
      k.addresses.set(client, true);
      k.requests++;
    }
  }

  return {
    /** Feeds one finished request (the record stage calls this once per request). Never throws. */
    observe(req: ObservedRequest): void {
      if (!config.enabled) return;
      try {
        const at = now();
        const idx = Math.floor(at / bucketMs);
        if (req.principal === undefined && req.errorCode !== null && AUTH_CODES.has(req.errorCode)) observeAuthFailure(req, at, idx);
        else observeTenant(req, at, idx);
        if (idx !== lastPruneIdx && active.size > 1000) {
          lastPruneIdx = idx;
          prune(at);
        }
      } catch (err) {
        options.onError?.(err);
      }
    },
    /** Sizes of the in-memory tables (tests, diagnostics). */
    sizes(): { tenants: number; keys: number; addresses: number; open: number } {
      return { tenants: tenants.size, keys: keys.size, addresses: authByAddress.size, open: active.size };
    },
  };

  /** Forgets alerts whose quiet time has passed (they would fire again anyway). */
  function prune(at: number): void {
    for (const [subject, last] of active.entries()) if (at - last >= config.quietMs) active.delete(subject);
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export type AnomalyDetector = ReturnType<typeof createAnomalyDetector>;
