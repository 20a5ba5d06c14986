import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_CODES } from '../errors/codes.js';
import type { RequestContext } from '../server/proxy.js';
import type { LimitName } from '../quota/types.js';
import { LIMIT_NAMES } from '../quota/types.js';
import type { AnomalyKind } from '../anomaly/types.js';

/*
 * Prometheus metrics, served by the admin listener at `GET /metrics` (docs/metrics.md).
 *
 * Label values are bounded, always: each one is either chosen by the operator (tenant names,
 * configured model names, provider ids) or taken from a fixed list (status codes, error codes,
 * limit names). Anything else folds into `other`, and a value that is not known yet into `none`.
 * No label ever holds a request id, a key id, a client address, a key or any text of a request.
 *
 * The per-request counters are plain numbers in tables kept here, copied into prom-client's
 * metrics when they are scraped: the record stage pays one map walk and a few additions per
 * request, never the label hashing and validation prom-client does on each `inc`.
 */

/** One provider key's age, for `keywarden_provider_key_age_seconds`. */
export interface ProviderKeyAge {
  provider: string;
  /** The register's fingerprint of the key (16 hex characters of its SHA-256), never the key. */
  fingerprint: string;
  /** The register state: `pending`, `current` or `previous` (revoked keys are not reported). */
  state: string;
  /** Seconds since the key was created (or last rotated in). */
  ageSeconds: number;
}

/** Kinds of alert the gateway fires. */
export type AlertKind = 'budget_threshold' | 'anomaly';

export interface MetricsOptions {
  /** The public model names of the configuration; any other model is counted as `other`. */
  models: Iterable<string>;
  /** The configured provider ids; any other is counted as `other`. */
  providers: Iterable<string>;
  /**
   * Called at each scrape for the ages of the provider keys in use. A key whose age is unknown
   * is left out. Failures leave the gauge empty for that scrape; they never fail the scrape.
   */
  providerKeyAges?: () => readonly ProviderKeyAge[] | Promise<readonly ProviderKeyAge[]>;
  /** Node.js process metrics (`keywarden_process_…`, `keywarden_nodejs_…`); default true. */
  processMetrics?: boolean;
  /** The listeners serving TLS, whose reload series start at 0. */
  tlsListeners?: Iterable<TlsListenerLabel>;
}

/** `keywarden_tls_reloads_total` labels: the listener and the check's result. */
export type TlsListenerLabel = 'public' | 'admin';
export type TlsReloadLabel = 'reloaded' | 'unchanged' | 'failed';
const TLS_RELOAD_RESULTS: readonly TlsReloadLabel[] = ['reloaded', 'unchanged', 'failed'];

/** Upper bounds in seconds: from a quarter of a millisecond (gateway work) to a minute (long streams). */
export const DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/** Label value for a fact not known when the request ended (no tenant before authentication, say). */
export const NONE = 'none';
/** Label value for anything outside a bounded set. */
export const OTHER = 'other';

const ALL_CODES = Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>;
/** `keywarden_auth_failures_total{code}`: the public listener's auth codes and the admin token's. */
export const AUTH_FAILURE_CODES: readonly string[] = [...ALL_CODES.filter((c) => c.startsWith('auth_')), 'admin_unauthorized'];
/** `keywarden_quota_refusals_total{limit}`: the quota stage's refusal codes. */
export const QUOTA_REFUSAL_CODES: readonly string[] = ALL_CODES.filter((c) => c.endsWith('_exceeded') || c.startsWith('quota_'));
/** `keywarden_upstream_errors_total{kind}`: failures of the provider call. */
export const UPSTREAM_ERROR_KINDS: readonly string[] = ALL_CODES.filter((c) => c.startsWith('upstream_') || c === 'provider_key_unavailable');
/** Status codes labelled exactly; any other status is labelled by its class (`2xx`, `4xx`, …). */
export const EXACT_STATUSES: readonly number[] = [...new Set([200, 499, ...Object.values(ERROR_CODES).map((c) => c.status)])].sort((a, b) => a - b);
const PROVIDER_KEY_STATES = new Set(['pending', 'current', 'previous']);
const FINGERPRINT = /^[0-9a-f]{16}$/;

/** What an error code counts towards besides the request itself. */
const AUTH = 1;
const QUOTA = 2;
const UPSTREAM = 3;

/**
 * Creates the gateway's metrics in a registry of their own (never prom-client's global one, so
 * two gateways in one process never mix their counts).
 *
 * @example
 * const metrics = createMetrics({ models: Object.keys(config.models), providers: ['openai'] });
 * metrics.observeRequest(ctx); // in the record stage, once per request
 * reply.header('content-type', metrics.contentType).send(await metrics.render());
 */
export function createMetrics(options: MetricsOptions) {
  const models = new Set(options.models);
  const providers = new Set(options.providers);
  const registry = new Registry();
  const codeClass = new Map<string, number>();
  for (const code of AUTH_FAILURE_CODES) codeClass.set(code, AUTH);
  for (const code of QUOTA_REFUSAL_CODES) codeClass.set(code, QUOTA);
  for (const code of UPSTREAM_ERROR_KINDS) codeClass.set(code, UPSTREAM);
  // label strings made once: the record stage looks them up, never formats them
  const statusLabels = new Map<number, string>(EXACT_STATUSES.map((s) => [s, String(s)]));
  const statusClasses = ['1xx', '2xx', '3xx', '4xx', '5xx'];

  const requests = new SeriesTable<{ value: number }>(['tenant', 'provider', 'model', 'status', 'outcome'], () => ({ value: 0 }));
  const usage = new SeriesTable<{ input: number; output: number; costNanoUsd: number }>(['tenant', 'model'], () => ({ input: 0, output: 0, costNanoUsd: 0 }));
  const authFailures = new SeriesTable<{ value: number }>(['code'], () => ({ value: 0 }));
  const quotaRefusals = new SeriesTable<{ value: number }>(['limit'], () => ({ value: 0 }));
  const upstreamErrors = new SeriesTable<{ value: number }>(['provider', 'kind'], () => ({ value: 0 }));
  const alerts = new SeriesTable<{ value: number }>(['kind', 'limit'], () => ({ value: 0 }));
  const tlsReloads = new SeriesTable<{ value: number }>(['listener', 'result'], () => ({ value: 0 }));
  // known, bounded series start at 0 so that rate() and alert rules see the first increment
  for (const code of AUTH_FAILURE_CODES) authFailures.get(code);
  for (const code of QUOTA_REFUSAL_CODES) quotaRefusals.get(code);
  for (const provider of providers) for (const kind of UPSTREAM_ERROR_KINDS) upstreamErrors.get(provider, kind);
  for (const limit of LIMIT_NAMES) alerts.get('budget_threshold', limit);
  for (const listener of options.tlsListeners ?? []) for (const result of TLS_RELOAD_RESULTS) tlsReloads.get(listener, result);

  counterFrom(registry, 'keywarden_requests_total', 'Requests finished on the public listener, by tenant, provider, model, HTTP status and outcome.',
    requests, (s) => s.value);
  counterFrom(registry, 'keywarden_input_tokens_total', 'Input tokens billed, by tenant and model.', usage, (s) => s.input);
  counterFrom(registry, 'keywarden_output_tokens_total', 'Output tokens billed, by tenant and model.', usage, (s) => s.output);
  // summed in integer nano-USD, converted at scrape time: no floating-point drift across many small costs
  counterFrom(registry, 'keywarden_cost_usd_total', 'Cost billed in US dollars, by tenant and model.', usage, (s) => s.costNanoUsd / 1e9);
  counterFrom(registry, 'keywarden_auth_failures_total', 'Refused credentials, by error code (admin_unauthorized: the admin listener).', authFailures, (s) => s.value);
  counterFrom(registry, 'keywarden_quota_refusals_total', 'Requests refused by the quota stage, by refusal code.', quotaRefusals, (s) => s.value);
  counterFrom(registry, 'keywarden_upstream_errors_total', 'Failed provider calls and broken streams, by provider and error code.', upstreamErrors, (s) => s.value);
  counterFrom(registry, 'keywarden_alerts_fired_total', 'Alerts fired, by kind and limit.', alerts, (s) => s.value);
  counterFrom(registry, 'keywarden_tls_reloads_total', 'Checks of a listener\'s TLS files (SIGHUP or periodic), by listener and result (reloaded, unchanged, failed).',
    tlsReloads, (s) => s.value);

  const gatewayDuration = new Histogram({
    name: 'keywarden_gateway_duration_seconds', help: 'Time spent in the gateway per request, excluding the time waiting on the provider.',
    buckets: [...DURATION_BUCKETS], registers: [registry],
  });
  const upstreamDuration = new Histogram({
    name: 'keywarden_upstream_duration_seconds', help: 'Time from sending a request to the provider until its answer (or stream) ended, by provider.',
    labelNames: ['provider'] as const, buckets: [...DURATION_BUCKETS], registers: [registry],
  });
  const providerLabels = new Map<string, { provider: string }>();
  for (const provider of [...providers, OTHER]) providerLabels.set(provider, { provider });

  const keyAges = options.providerKeyAges;
  new Gauge({
    name: 'keywarden_provider_key_age_seconds', help: 'Age of each provider key in the register, by provider, key fingerprint and state.',
    labelNames: ['provider', 'fingerprint', 'state'] as const, registers: [registry],
    async collect() {
      this.reset();
      if (!keyAges) return;
      let ages: readonly ProviderKeyAge[];
      try {
        ages = await keyAges();
      } catch {
        return; // a register that cannot be read leaves the gauge empty; the scrape still works
      }
      for (const age of ages) {
        // bounded: configured providers, register fingerprints of keys in use, three states
        if (!PROVIDER_KEY_STATES.has(age.state) || !FINGERPRINT.test(age.fingerprint) || !Number.isFinite(age.ageSeconds)) continue;
        this.set({ provider: providers.has(age.provider) ? age.provider : OTHER, fingerprint: age.fingerprint, state: age.state }, Math.max(0, age.ageSeconds));
      }
    },
  });

  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'keywarden_' });

  function statusLabel(status: number): string {
    return statusLabels.get(status) ?? statusClasses[Math.floor(status / 100) - 1] ?? OTHER;
  }

  return {
    /** The content type of `render()`'s text (Prometheus text exposition format). */
    contentType: registry.contentType as string,

    /**
     * Counts one finished public request: the record stage's only metrics call. `totalMs` is
     * the request's whole time (computed from `ctx.startedAt` when not given).
     */
    observeRequest(ctx: RequestContext, totalMs: number = performance.now() - ctx.startedAt): void {
      const tenant = ctx.principal?.tenantName ?? NONE;
      const model = ctx.model === null ? NONE : models.has(ctx.model) ? ctx.model : OTHER;
      const provider = ctx.provider === null ? NONE : providers.has(ctx.provider) ? ctx.provider : OTHER;
      requests.get(tenant, provider, model, statusLabel(ctx.status), ctx.outcome).value++;

      if (ctx.principal !== undefined && (ctx.usage.inputTokens > 0 || ctx.usage.outputTokens > 0 || ctx.costNanoUsd > 0)) {
        const series = usage.get(tenant, model);
        series.input += ctx.usage.inputTokens;
        series.output += ctx.usage.outputTokens;
        series.costNanoUsd += ctx.costNanoUsd;
      }

      if (ctx.errorCode !== null) {
        const cls = codeClass.get(ctx.errorCode);
        if (cls === AUTH) authFailures.get(ctx.errorCode).value++;
        else if (cls === QUOTA) quotaRefusals.get(ctx.errorCode).value++;
        else if (cls === UPSTREAM) upstreamErrors.get(provider, ctx.errorCode).value++;
      }

      const upstreamMs = ctx.upstreamMs;
      const gatewayMs = totalMs - upstreamMs;
      gatewayDuration.observe(gatewayMs > 0 ? gatewayMs / 1000 : 0);
      if (upstreamMs > 0) upstreamDuration.observe(providerLabels.get(provider) ?? { provider: OTHER }, upstreamMs / 1000);
    },

    /** Counts a refused admin token (the admin listener's authentication failure). */
    adminAuthFailed(): void {
      authFailures.get('admin_unauthorized').value++;
    },

    /**
     * Counts an alert fired (logged, audited, and handed to the webhook if one is set). The
     * `limit` label holds the budget limit of a `budget_threshold` alert, the anomaly kind of an
     * `anomaly` alert: both from fixed lists.
     */
    alertFired(kind: AlertKind, limit?: LimitName | AnomalyKind): void {
      alerts.get(kind, limit ?? NONE).value++;
    },

    /** Counts one check of a listener's TLS material (both labels from fixed lists). */
    tlsReload(listener: TlsListenerLabel, result: TlsReloadLabel): void {
      tlsReloads.get(listener, result).value++;
    },

    /** The metrics in Prometheus text format. */
    render(): Promise<string> {
      return registry.metrics();
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Series keyed by label values, in nested maps: finding one allocates nothing once it exists.
 * Values are plain objects the caller adds to; `counterFrom` copies them out at scrape time.
 */
class SeriesTable<S> {
  private readonly root = new Map<string, unknown>();
  readonly series: Array<{ labels: Record<string, string>; state: S }> = [];

  constructor(readonly names: readonly string[], private readonly make: () => S) {
    if (names.length < 1 || names.length > 5) throw new RangeError('a series table has one to five labels');
  }

  /** The series of these label values (one per label name, in order), created at 0 the first time. */
  get(a: string, b?: string, c?: string, d?: string, e?: string): S {
    const depth = this.names.length;
    let map = this.root;
    if (depth > 1) map = step(map, a);
    if (depth > 2) map = step(map, b as string);
    if (depth > 3) map = step(map, c as string);
    if (depth > 4) map = step(map, d as string);
    const last = (depth === 1 ? a : depth === 2 ? b : depth === 3 ? c : depth === 4 ? d : e) as string;
    let state = map.get(last) as S | undefined;
    if (state === undefined) {
      state = this.make();
      map.set(last, state);
      const values = [a, b, c, d, e];
      const labels: Record<string, string> = {};
      for (let i = 0; i < depth; i++) labels[this.names[i] as string] = values[i] as string;
      this.series.push({ labels, state });
    }
    return state;
  }
}

function step(map: Map<string, unknown>, key: string): Map<string, unknown> {
  let next = map.get(key) as Map<string, unknown> | undefined;
  if (next === undefined) {
    next = new Map();
    map.set(key, next);
  }
  return next;
}

/** A prom-client counter whose values are copied from a table when scraped. */
function counterFrom<S>(registry: Registry, name: string, help: string, table: SeriesTable<S>, value: (state: S) => number): void {
  new Counter({
    name, help, labelNames: table.names, registers: [registry],
    collect() {
      this.reset();
      for (const { labels, state } of table.series) this.inc(labels, value(state));
    },
  });
}
