import type { LimitName } from './types.js';

export type WindowKind = 'minute' | 'day' | 'month';
export type Metric = 'req' | 'tok' | 'usd';

export interface Window {
  kind: WindowKind;
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

/** What each configurable limit counts, and over which window. */
export const LIMIT_DEFS: Readonly<Record<LimitName, { metric: Metric; window: WindowKind; label: string }>> = {
  requests_per_minute: { metric: 'req', window: 'minute', label: 'requests_per_minute' },
  tokens_per_minute: { metric: 'tok', window: 'minute', label: 'tokens_per_minute' },
  tokens_per_day: { metric: 'tok', window: 'day', label: 'tokens_per_day' },
  usd_per_day: { metric: 'usd', window: 'day', label: 'budget_day' },
  usd_per_month: { metric: 'usd', window: 'month', label: 'budget_month' },
};

export type Scope = 't' | 'k';

/** `t:<tenant id>:tok:d20261127`: a counter's key. Ids are store-generated ([a-z0-9_]), never client text. */
export function counterKey(scope: Scope, id: string, metric: Metric, window: Window): string {
  return `${scope}:${id}:${metric}:${window.id}`;
}

export interface ParsedCounterKey {
  scope: Scope;
  id: string;
  metric: Metric;
  start: number;
  end: number;
}

/** Parses a counter key back (the embedded store seeds counters from the ledger with it). */
export function parseCounterKey(key: string): ParsedCounterKey | undefined {
  const match = /^([tk]):([a-z0-9_]+):(req|tok|usd):(m\d+|d\d{8}|M\d{6})$/.exec(key);
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
  return { scope: match[1] as Scope, id: match[2] as string, metric: match[3] as Metric, start, end };
}

/** USD (as configured) to integer nano-USD, the unit counters use. */
export function usdToNano(usd: number): number {
  return Math.round(usd * 1e9);
}
