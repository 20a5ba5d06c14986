import { randomUUID } from 'node:crypto';
import { GatewayError, type ErrorCode } from '../errors/index.js';
import type { Principal } from '../auth/types.js';
import type { Endpoint, ProviderType, Usage } from '../providers/types.js';
import type { Logger } from '../log/logger.js';
import type { CounterCheck, CounterState, CounterStore, CounterUsage, LimitName, Limits } from './types.js';
import { CounterStoreUnavailableError, LIMIT_NAMES } from './types.js';
import { LIMIT_DEFS, counterKey, inFlightWindow, usdToNano, windowAt, type Scope } from './windows.js';
import { costNanoUsd, type PriceTable } from './prices.js';
import type { TokenEstimator } from './estimate.js';
import { createReleaseQueue } from './release-queue.js';

/** What admission needs to know about a validated request. */
export interface AdmissionRequest {
  endpoint: Endpoint;
  providerType: ProviderType;
  upstreamModel: string;
  body: Record<string, unknown>;
  /** The output cap that is sent upstream (undefined for embeddings). */
  maxOutputTokens: number | undefined;
}

/** A threshold crossing of a budget, reported once per window. */
export interface ThresholdEvent {
  scope: 'tenant' | 'key';
  tenantId: string;
  tenantName: string;
  keyId: string | null;
  limit: LimitName;
  percent: number;
  used: number;
  max: number;
  windowEnd: number;
}

/** One admitted request's reservation; settle it exactly once, whatever happened. */
export interface Admission {
  /** OpenAI-style rate-limit headers for every answer to this request. */
  headers: Record<string, string>;
  /**
   * Settles the reservation to the real usage and returns what was billed: the usage (with the
   * input estimate when a broken answer never reported its input) and its cost in nano-USD.
   * The store update runs in the background (off the answer's path). Should the store be away,
   * the usage is not counted (sending it again could count it twice), but the reservation (the
   * request's concurrency slot) is released as soon as the store answers again.
   */
  settle(usage: Usage, billInputEstimate: boolean): { usage: Usage; costNanoUsd: number };
}

export interface AdmissionOptions {
  store: CounterStore;
  prices: PriceTable;
  estimator: TokenEstimator;
  leaseMs: number;
  logger: Logger;
  /** Budget thresholds in percent (default 50, 80, 100). */
  thresholds?: readonly number[];
  onThreshold?: (event: ThresholdEvent) => void;
  now?: () => number;
}

interface PlannedCheck extends CounterCheck {
  scope: Scope;
  name: LimitName;
}

const CODES: Record<Scope, Record<LimitName, ErrorCode>> = {
  t: {
    requests_per_minute: 'tenant_requests_per_minute_exceeded',
    tokens_per_minute: 'tenant_tokens_per_minute_exceeded',
    tokens_per_day: 'tenant_tokens_per_day_exceeded',
    usd_per_day: 'tenant_budget_day_exceeded',
    usd_per_month: 'tenant_budget_month_exceeded',
    concurrent_requests: 'tenant_concurrent_requests_exceeded',
  },
  k: {
    requests_per_minute: 'key_requests_per_minute_exceeded',
    tokens_per_minute: 'key_tokens_per_minute_exceeded',
    tokens_per_day: 'key_tokens_per_day_exceeded',
    usd_per_day: 'key_budget_day_exceeded',
    usd_per_month: 'key_budget_month_exceeded',
    concurrent_requests: 'key_concurrent_requests_exceeded',
  },
};

/** Whether any limit is set (the one test of "limited" for a tenant, a key or a default policy). */
export function hasAny(limits: Limits): boolean {
  for (const name of LIMIT_NAMES) if (limits[name] !== undefined) return true;
  return false;
}

/** Seconds a client refused for concurrency should wait: a slot frees when any request ends. */
const CONCURRENCY_RETRY_AFTER_S = 1;

function isInFlight(name: LimitName): boolean {
  return LIMIT_DEFS[name].metric === 'con';
}

/**
 * The admit and settle stages. Admission reserves a request's worst case (estimated input plus
 * the output cap; its cost at the model's price) on every configured limit of the tenant and
 * of the key in one atomic store operation: all limits admit it or nothing is reserved.
 * Settlement replaces the reservation with the real usage. A tenant and key without limits
 * skip both stages entirely.
 *
 * `concurrent_requests` rides on the same reservation: its counter's reservation *is* the
 * request's slot (amount 1 against the limit), taken atomically with the other limits, and
 * settlement adds nothing to it, so releasing the reservation frees the slot. A replica that
 * dies holding slots frees them when their lease (`leaseMs`) runs out, like any reservation.
 *
 * A living replica never leaves a slot to its lease (docs/quotas.md, "Store timeouts, outages and shutdown"):
 * - a reservation whose fate is unknown (the reserve timed out, maybe after the store ran it) is
 *   released in the background;
 * - a release (or settlement) the store could not take is released again, retried with backoff
 *   until the store answers or the lease has passed (see release-queue.ts);
 * - at shutdown, `drain()` waits (bounded) for requests still holding a reservation to settle
 *   and for those releases, before the store is closed.
 */
export function createAdmission(options: AdmissionOptions) {
  const { store, prices, estimator, leaseMs, logger } = options;
  const now = options.now ?? Date.now;
  const thresholds = options.thresholds ?? [50, 80, 100];
  const retries = createReleaseQueue({ release: (id) => store.settle(id, [], now()), logger, now });
  // what shutdown waits for: admitted requests not settled yet, and store calls still running
  let unsettled = 0;
  const running = new Set<Promise<unknown>>();
  const quietWaiters = new Set<() => void>();

  function quiet(): boolean {
    return unsettled === 0 && running.size === 0;
  }

  function wakeIfQuiet(): void {
    if (quiet()) for (const wake of quietWaiters) wake();
  }

  /** Tracks a store call (with whatever it does on failure) until it is over. */
  function track(work: Promise<unknown>): void {
    running.add(work);
    const done = (): void => {
      running.delete(work);
      wakeIfQuiet();
    };
    work.then(done, done);
  }

  function plan(principal: Principal, tokens: number, cost: number | undefined, at: number): PlannedCheck[] {
    const windowed: PlannedCheck[] = [];
    const inFlight: PlannedCheck[] = [];
    const add = (scope: Scope, id: string, limits: Limits) => {
      for (const name of LIMIT_NAMES) {
        const limit = limits[name];
        if (limit === undefined) continue;
        const def = LIMIT_DEFS[name];
        const window = def.window === 'in_flight' ? inFlightWindow(at, leaseMs) : windowAt(def.window, at);
        const amount = def.metric === 'req' || def.metric === 'con' ? 1 : def.metric === 'tok' ? tokens : (cost as number);
        (def.metric === 'con' ? inFlight : windowed).push({
          scope, name, key: counterKey(scope, id, def.metric, window), windowEnd: window.end, amount,
          limit: def.metric === 'usd' ? usdToNano(limit) : limit,
        });
      }
    };
    add('t', principal.tenantId, principal.policy.limits);
    add('k', principal.keyId, principal.keyLimits);
    // the store reports the first check that refuses: windowed limits come first, so a request
    // that is over a rate or budget as well is told that wait (its Retry-After), not "retry in 1s"
    return [...windowed, ...inFlight];
  }

  function thresholdEvents(principal: Principal, checks: readonly PlannedCheck[], states: readonly CounterState[], refusedIndex: number | undefined) {
    if (!options.onThreshold) return;
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i] as PlannedCheck;
      // budgets: money per day and month, and tokens per day
      if (!(check.name === 'usd_per_day' || check.name === 'usd_per_month' || check.name === 'tokens_per_day')) continue;
      const used = (states[i] as CounterState).used;
      const percentUsed = (used / check.limit) * 100;
      for (const percent of thresholds) {
        // a refusal counts as 100 % only when settled spending alone leaves no room for an
        // ordinary request (not when one oversized request or concurrent reservations were refused)
        const exhausted = refusedIndex === i && check.amount <= check.limit && used + check.amount > check.limit;
        const crossed = percentUsed >= percent || (percent === 100 && exhausted);
        if (!crossed) continue;
        const event: ThresholdEvent = {
          scope: check.scope === 't' ? 'tenant' : 'key', tenantId: principal.tenantId, tenantName: principal.tenantName,
          keyId: check.scope === 'k' ? principal.keyId : null, limit: check.name, percent, used, max: check.limit, windowEnd: check.windowEnd,
        };
        const onThreshold = options.onThreshold;
        store.claimOnce(`alert:${check.key}:${percent}`, check.windowEnd).then(
          (first) => { if (first) onThreshold(event); },
          (err: unknown) => logger.warn({ err }, 'threshold alert could not be claimed'),
        );
      }
    }
  }

  /**
   * Settles a reservation in the background: releases it and adds `actual`. Should the store
   * refuse the usage itself (a value it cannot count, not an outage), the reservation is still
   * released without it, so a request's concurrency slot never waits for its lease because of
   * its usage. Should the store be away, the usage is given up (whether it was counted is
   * unknown, and sending it again could count it twice) and the release alone is retried until
   * the store answers or `leaseExpiresAt` has passed.
   */
  function release(reservationId: string, actual: readonly CounterUsage[], leaseExpiresAt: number, logOutage = true): void {
    // the failure handling is tracked too: a retry it queues is in the queue before shutdown looks
    track(store.settle(reservationId, actual, now()).catch((err: unknown) => {
      if (err instanceof CounterStoreUnavailableError) {
        if (logOutage) logger.error({ err }, actual.length > 0
          ? 'quota settlement failed; its usage may not be counted, and the reservation is released once the store answers again'
          : 'quota release failed; it is retried until the store answers again');
        retries.add(reservationId, leaseExpiresAt);
        return;
      }
      if (actual.length === 0) {
        logger.error({ err }, 'quota release failed; the reservation will be released when its lease expires');
        return;
      }
      logger.error({ err }, 'quota settlement refused the usage; releasing the reservation without it');
      release(reservationId, [], leaseExpiresAt);
    }));
  }

  return {
    /**
     * The rate-limit headers as things stand, without reserving: for answers to requests of a
     * limited tenant that were refused before admission (a policy refusal, say). One read of the
     * counters; a store failure just leaves the headers out.
     */
    async currentHeaders(principal: Principal): Promise<Record<string, string>> {
      const at = now();
      // only what the headers show: request and token limits (not budgets, not requests in flight)
      const checks = plan(principal, 0, 0, at).filter((c) => LIMIT_DEFS[c.name].metric === 'req' || LIMIT_DEFS[c.name].metric === 'tok');
      if (checks.length === 0) return {};
      try {
        const states = await store.read(checks.map((c) => c.key), at);
        return rateHeaders(checks, states, at);
      } catch {
        return {};
      }
    },

    /** True when neither the tenant nor the key has a limit (admission is skipped). */
    unlimited(principal: Principal): boolean {
      return !hasAny(principal.policy.limits) && !hasAny(principal.keyLimits);
    },

    /** Reserves, or throws a 429 (limit), 403 (unpriced model under a budget) or 503 (store down). */
    async admit(principal: Principal, request: AdmissionRequest): Promise<Admission> {
      const at = now();
      const price = prices.priceFor(request.upstreamModel);
      const needsPrice = [principal.policy.limits, principal.keyLimits].some((l) => l.usd_per_day !== undefined || l.usd_per_month !== undefined);
      if (needsPrice && !price) {
        throw new GatewayError('quota_model_unpriced', 'this model has no price, and the tenant has a money budget: the operator must add a price for it');
      }
      const inputEstimate = estimator.estimate(request.endpoint, request.providerType, request.upstreamModel, request.body);
      // chat `n` asks for n answers, each up to the cap
      const choices = typeof request.body['n'] === 'number' && request.body['n'] > 1 ? Math.floor(request.body['n']) : 1;
      const outputCap = (request.maxOutputTokens ?? 0) * choices;
      const worstCost = price ? costNanoUsd(price, { inputTokens: inputEstimate, outputTokens: outputCap }) : 0;
      const checks = plan(principal, inputEstimate + outputCap, worstCost, at);
      const reservationId = randomUUID();
      const leaseExpiresAt = at + leaseMs;

      let outcome;
      let reserved = false;
      try {
        const reserving = store.reserve(reservationId, checks, leaseMs, at);
        track(reserving);
        outcome = await reserving;
        reserved = true;
        // a refusal reports states only up to the refusing check: read the rest, which the
        // rate headers and the threshold events need for every check
        if (!outcome.admitted && outcome.states.length < checks.length) {
          const rest = await store.read(checks.slice(outcome.states.length).map((c) => c.key), at);
          outcome = { ...outcome, states: [...outcome.states, ...rest] };
        }
      } catch (err) {
        if (err instanceof CounterStoreUnavailableError) {
          // a reserve that timed out may still have run in the store (only its answer was lost):
          // release the id in the background, or the slot it may hold would wait for its lease
          // (the outage itself is logged just below, once). One never sent took nothing: skipped,
          // so a long outage does not fill the retry queue with releases of nothing.
          if (!reserved && !err.notSent) release(reservationId, [], leaseExpiresAt, false);
          logger.error({ err }, 'quota store unavailable: refusing requests (fail closed)');
          throw new GatewayError('quota_store_unavailable', 'limits cannot be checked right now; try again shortly', { retryAfterSeconds: 1 });
        }
        throw err;
      }
      const headers = rateHeaders(checks, outcome.states, at);
      if (!outcome.admitted) {
        const check = checks[outcome.failed] as PlannedCheck;
        thresholdEvents(principal, checks, outcome.states, outcome.failed);
        const scopeName = check.scope === 't' ? 'tenant' : 'key';
        if (isInFlight(check.name)) {
          // no window to wait for: a slot frees as soon as one of the requests in flight ends
          throw Object.assign(
            new GatewayError(CODES[check.scope][check.name],
              `${scopeName} limit concurrent_requests reached (${check.limit} in flight); retry when one of them has finished`,
              { retryAfterSeconds: CONCURRENCY_RETRY_AFTER_S }),
            { headers },
          );
        }
        const retryAfter = Math.max(1, Math.ceil((check.windowEnd - at) / 1000));
        const alone = check.amount > check.limit;
        throw Object.assign(
          new GatewayError(CODES[check.scope][check.name], alone
            ? `this request alone exceeds the ${scopeName} limit ${check.name}; lower max_tokens or the input`
            : `${scopeName} limit ${check.name} reached; retry after ${retryAfter}s`,
          { retryAfterSeconds: retryAfter }),
          { headers },
        );
      }
      try {
        thresholdEvents(principal, checks, outcome.states, undefined);
      } catch (err) {
        // never strand what was just reserved (a concurrency slot above all) on a failure here
        release(reservationId, [], leaseExpiresAt);
        throw err;
      }

      let settled = false;
      unsettled += 1;
      return {
        headers,
        settle(usage: Usage, billInputEstimate: boolean): { usage: Usage; costNanoUsd: number } {
          if (settled) return { usage, costNanoUsd: 0 };
          settled = true;
          unsettled -= 1;
          let actual: CounterUsage[] = [];
          try {
            // a broken stream may not report the input: the prompt was still sent, so bill the estimate
            const input = usage.inputTokens > 0 || !billInputEstimate ? usage.inputTokens : inputEstimate;
            const real: Usage = { ...usage, inputTokens: input };
            const cost = price ? costNanoUsd(price, real) : 0;
            const tokens = real.inputTokens + real.outputTokens;
            // requests in flight get nothing added: releasing the reservation frees the slot
            actual = checks.filter((c) => !isInFlight(c.name)).map((c) => ({
              key: c.key, windowEnd: c.windowEnd,
              amount: LIMIT_DEFS[c.name].metric === 'req' ? 1 : LIMIT_DEFS[c.name].metric === 'tok' ? tokens : cost,
            }));
            return { usage: real, costNanoUsd: cost };
          } finally {
            // runs even when working out the usage threw: the reservation (and the slot) is released
            release(reservationId, actual, leaseExpiresAt);
          }
        },
      };
    },

    /**
     * For shutdown, once the listeners stopped taking requests and before the store is closed:
     * waits until every admitted request has settled and its store update is done, then retries
     * releases still queued, all within `timeoutMs`. Then stops retrying; anything left (the store
     * is away, a request did not end in time) is logged and left to its lease. Never rejects.
     */
    async drain(timeoutMs: number): Promise<void> {
      const deadline = performance.now() + Math.max(0, timeoutMs);
      if (!quiet()) {
        let wake: (() => void) | undefined;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          quietWaiters.add(resolve);
          timer = setTimeout(resolve, Math.max(0, deadline - performance.now()));
        });
        if (wake) quietWaiters.delete(wake);
        clearTimeout(timer);
      }
      const left = deadline - performance.now();
      if (left > 0) await retries.flush(left);
      const notSettled = unsettled;
      const stillRunning = running.size;
      const notReleased = retries.stop();
      if (notSettled + stillRunning + notReleased > 0) {
        logger.warn({ event: 'quota_drain_incomplete', unsettled: notSettled, running: stillRunning, unreleased: notReleased },
          'shutdown: some quota reservations could not be settled or released in time; their lease releases them');
      }
    },

    /** Cost of a request that was not admitted through limits (for the ledger). */
    costOf(upstreamModel: string, usage: Usage): number {
      const price = prices.priceFor(upstreamModel);
      return price ? costNanoUsd(price, usage) : 0;
    },
  };
}

export type AdmissionStage = ReturnType<typeof createAdmission>;

/**
 * `x-ratelimit-*` headers as OpenAI names them, from the tightest request limit and the
 * tightest token limit (tenant or key) after this request's reservation. Budgets and
 * `concurrent_requests` are not shown: OpenAI's headers describe windows that reset, and a count
 * of requests in flight has no reset time (its refusal carries `Retry-After: 1` instead).
 */
function rateHeaders(checks: readonly PlannedCheck[], states: readonly CounterState[], at: number): Record<string, string> {
  const headers: Record<string, string> = {};
  const tightest = (metric: 'req' | 'tok') => {
    let best: { limit: number; remaining: number; reset: number } | undefined;
    checks.forEach((check, i) => {
      if (LIMIT_DEFS[check.name].metric !== metric) return;
      const state = states[i] as CounterState;
      const remaining = Math.max(0, check.limit - state.used - state.reserved);
      if (!best || remaining < best.remaining) best = { limit: check.limit, remaining, reset: check.windowEnd - at };
    });
    return best;
  };
  const req = tightest('req');
  if (req) {
    headers['x-ratelimit-limit-requests'] = String(req.limit);
    headers['x-ratelimit-remaining-requests'] = String(req.remaining);
    headers['x-ratelimit-reset-requests'] = formatReset(req.reset);
  }
  const tok = tightest('tok');
  if (tok) {
    headers['x-ratelimit-limit-tokens'] = String(tok.limit);
    headers['x-ratelimit-remaining-tokens'] = String(tok.remaining);
    headers['x-ratelimit-reset-tokens'] = formatReset(tok.reset);
  }
  return headers;
}

/** OpenAI's duration style: `59s`, `6m0s`, `3h0m0s`. */
export function formatReset(ms: number): string {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}
