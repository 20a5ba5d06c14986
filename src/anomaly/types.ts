/*
 * Anomaly detection: the configuration (`anomaly:` in the config file, docs/anomalies.md) and
 * the alerts the detector raises. The detector keeps per-tenant rolling baselines in memory;
 * nothing here does I/O.
 */

/** What an anomaly alert is about. Bounded: these are also metric label values. */
export const ANOMALY_KINDS = [
  'request_rate', 'token_rate', 'error_rate', 'auth_failure_burst', 'new_client_address', 'unusual_hour',
] as const;
export type AnomalyKind = typeof ANOMALY_KINDS[number];

/** A rate rule: the current bucket is anomalous when it is at least `minCount`, above mean + k·stddev of the baseline, and at least `factor` × the mean. */
export interface RateRule {
  enabled: boolean;
  k: number;
  factor: number;
  minCount: number;
}

export interface AnomalyConfig {
  enabled: boolean;
  /** Length of one baseline bucket (per-minute by default). */
  bucketMs: number;
  /** The rolling baseline: the buckets before the current one within this window. */
  windowMs: number;
  /** A tenant is judged by the rate and error detectors only once it has this much history. */
  minHistoryMs: number;
  /** One alert per (tenant, kind) until the condition has been clear this long. */
  quietMs: number;
  requestRate: RateRule;
  /** Counted in input + output tokens. */
  tokenRate: RateRule;
  /** Errors are answers with status ≥ 500 and streams broken after they started. */
  errorRate: { enabled: boolean; k: number; minRate: number; minErrors: number };
  /** Refused credentials in one bucket, from one client address and from all addresses together. */
  authFailures: { enabled: boolean; perAddress: number; global: number; maxAddresses: number };
  /** A key used from an address it was never used from, once the key has a history. */
  newAddress: { enabled: boolean; learningMs: number; minRequests: number; maxAddressesPerKey: number };
  /** Traffic in an hour of the week (UTC) in which the tenant had none, once it has a history. */
  unusualHours: { enabled: boolean; learningMs: number; minRequests: number };
}

/** The defaults of every field (docs/configuration.md). */
export const DEFAULT_ANOMALY_CONFIG: AnomalyConfig = Object.freeze({
  enabled: true,
  bucketMs: 60_000,
  windowMs: 60 * 60_000,
  minHistoryMs: 30 * 60_000,
  quietMs: 15 * 60_000,
  requestRate: Object.freeze({ enabled: true, k: 4, factor: 3, minCount: 60 }),
  tokenRate: Object.freeze({ enabled: true, k: 4, factor: 3, minCount: 50_000 }),
  errorRate: Object.freeze({ enabled: true, k: 4, minRate: 0.25, minErrors: 10 }),
  authFailures: Object.freeze({ enabled: true, perAddress: 30, global: 300, maxAddresses: 10_000 }),
  newAddress: Object.freeze({ enabled: true, learningMs: 24 * 3_600_000, minRequests: 50, maxAddressesPerKey: 256 }),
  unusualHours: Object.freeze({ enabled: true, learningMs: 14 * 86_400_000, minRequests: 200 }),
}) as AnomalyConfig;

/** `tenant`: a tenant's traffic; `key`: one tenant key; `address`: one client address; `global`: all traffic. */
export type AnomalyScope = 'tenant' | 'key' | 'address' | 'global';

/** One anomaly, as the detector reports it (before delivery). Ids, counts and an HMAC only: never content, keys or addresses. */
export interface AnomalyAlert {
  kind: AnomalyKind;
  scope: AnomalyScope;
  /** Tenant name and id, when the anomaly belongs to a tenant. */
  tenant: string | null;
  tenantId: string | null;
  keyId: string | null;
  /** `hmac-sha256:<hex>` of the client address, when one is involved; never the address. */
  client: string | null;
  /** The request that tripped the detector. */
  requestId: string | null;
  /** Observed value, baseline and threshold (names per kind, numbers only). */
  values: Readonly<Record<string, number>>;
  /** Clock time (ms) of detection. */
  at: number;
}
