import type { LimitName } from './types.js';

/** Calendar windows (UTC), which reset at fixed times. */
export type WindowKind = 'minute' | 'day' | 'month';
/** Counted on a counter: requests, tokens, nano-USD, or requests in flight (`con`, for concurrency). */
export type Metric = 'req' | 'tok' | 'usd' | 'con';
/** Where a limit counts: a calendar window, or `in_flight` (the requests running now, see inFlightWindow). */
export type LimitWindow = WindowKind | 'in_flight';

export interface Window {
  kind: LimitWindow;
  start: number;
  end: number;
  /** Short, sortable id of this window instance: `m29613412`, `d20261127`, `M202611`. */
  id: string;
}

/** The fixed (UTC) window of a kind that contains `now`. */
export function windowAt(kind: WindowKind, now: number): Window {
  if (kind === 'minute') {
    const n = Math.floor(now / 60_000);
    return { kind, start: n * 60_000, end: (n + 1) * 60_000, id: `m${n}` };
  }
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (kind === 'day') {
    const start = Date.UTC(y, m, d.getUTCDate());
    return { kind, start, end: start + 86_400_000, id: `d${y}${pad(m + 1)}${pad(d.getUTCDate())}` };
  }
  return { kind, start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1), id: `M${y}${pad(m + 1)}` };
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * How long an in-flight window outlives the lease of the newest slot taken on it. Leases are
 * stamped with each replica's own clock; the margin keeps a replica whose clock runs a little
 * ahead from starting the counter afresh while another replica's slots are still leased.
 */
export const IN_FLIGHT_MARGIN_MS = 60_000;

/**
 * The window of a concurrency counter (`concurrent_requests`), for an admission at `now` whose
 * slot is leased for `leaseMs`. It has no calendar: a counter of requests in flight must never
 * start afresh while any of them still runs, or a tenant would get a second set of slots (a fixed
 * window ending at midnight would hand out N more at 00:00 while N streams were still open).
 * So its id is constant (`live`) and its end is this admission's lease expiry plus a margin;
 * stores only ever move a live counter's end later (see `CounterCheck.windowEnd`), so the window
 * lasts until every slot taken on it has been released or its lease has run out, and an idle
 * tenant's counter is then dropped (from memory, and by Redis expiry).
 */
export function inFlightWindow(now: number, leaseMs: number): Window {
  return { kind: 'in_flight', start: now, end: now + Math.max(0, leaseMs) + IN_FLIGHT_MARGIN_MS, id: 'live' };
}

/** What each configurable limit counts, and over which window. */
export const LIMIT_DEFS: Readonly<Record<LimitName, { metric: Metric; window: LimitWindow; label: string }>> = {
  requests_per_minute: { metric: 'req', window: 'minute', label: 'requests_per_minute' },
  tokens_per_minute: { metric: 'tok', window: 'minute', label: 'tokens_per_minute' },
  tokens_per_day: { metric: 'tok', window: 'day', label: 'tokens_per_day' },
  usd_per_day: { metric: 'usd', window: 'day', label: 'budget_day' },
  usd_per_month: { metric: 'usd', window: 'month', label: 'budget_month' },
  concurrent_requests: { metric: 'con', window: 'in_flight', label: 'concurrent_requests' },
};

export type Scope = 't' | 'k';

/**
 * `t:<tenant id>:tok:d20261127`: a counter's key (`t:<tenant id>:con:live` for requests in
 * flight). Ids are store-generated ([a-z0-9_]), never client text.
 */
export function counterKey(scope: Scope, id: string, metric: Metric, window: Window): string {
  return `${scope}:${id}:${metric}:${window.id}`;
}

export interface ParsedCounterKey {
  scope: Scope;
  id: string;
  /** Only metrics the usage ledger can sum (never `con`). */
  metric: Exclude<Metric, 'con'>;
  start: number;
  end: number;
}

/**
 * Parses a counter key back (the embedded store seeds counters from the ledger with it).
 * In-flight counters (`…:con:live`) are deliberately not parsed: the ledger records requests
 * that ended, never what is running now, so such a counter seeds to 0 (a restarted process has
 * nothing in flight; its old slots, on Redis, are freed by their leases).
 */
export function parseCounterKey(key: string): ParsedCounterKey | undefined {
  // key ids of JWT and client-certificate callers hold colons (`jwt:0:t_…`, `cert:…`): they seed too
  const match = /^([tk]):([A-Za-z0-9_]+(?::[A-Za-z0-9_]+){0,3}):(req|tok|usd):(m\d+|d\d{8}|M\d{6})$/.exec(key);
  if (!match) return undefined;
  const windowId = match[4] as string;
  let start: number;
  let end: number;
  if (windowId.startsWith('m')) {
    start = Number(windowId.slice(1)) * 60_000;
    end = start + 60_000;
  } else if (windowId.startsWith('d')) {
    start = Date.UTC(Number(windowId.slice(1, 5)), Number(windowId.slice(5, 7)) - 1, Number(windowId.slice(7, 9)));
    end = start + 86_400_000;
  } else {
    const y = Number(windowId.slice(1, 5));
    const m = Number(windowId.slice(5, 7)) - 1;
    start = Date.UTC(y, m, 1);
    end = Date.UTC(y, m + 1, 1);
  }
  return { scope: match[1] as Scope, id: match[2] as string, metric: match[3] as ParsedCounterKey['metric'], start, end };
}

/** USD (as configured) to integer nano-USD, the unit counters use. */
export function usdToNano(usd: number): number {
  return Math.round(usd * 1e9);
}
