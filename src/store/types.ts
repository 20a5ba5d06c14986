/**
 * Store interfaces. Nothing above this folder knows which database implements them;
 * `src/main.ts` picks one. Every method is asynchronous so a networked engine can plug in.
 */

export type TenantStatus = 'active' | 'disabled';

export interface TenantRecord {
  id: string;
  name: string;
  status: TenantStatus;
  /** Per-tenant policy override in config form (snake_case), or null to use the defaults. */
  policy: Record<string, unknown> | null;
  createdAt: number;
}

export interface TenantKeyRecord {
  /** The public part of the key (`kw_<id>_…`), safe to show and log. */
  id: string;
  tenantId: string;
  /** Keyed hash (HMAC-SHA256, hex) of the secret part; the secret itself is never stored. */
  secretHash: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  /** This key's own limits (config form), overriding the tenant policy's `key_limits`; null for none. */
  limits: Record<string, unknown> | null;
}

export interface KeyWithTenant {
  key: TenantKeyRecord;
  tenant: TenantRecord;
}

/** One row of the usage ledger: metadata only, never content. */
export interface UsageRecord {
  ts: number;
  requestId: string;
  tenantId: string;
  keyId: string;
  provider: string | null;
  model: string | null;
  endpoint: string;
  status: number;
  outcome: string;
  errorCode: string | null;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  stream: boolean;
  gatewayMs: number;
  upstreamMs: number;
  promptFingerprint: string | null;
  /** Settled cost in nano-USD (0 when unpriced or refused). */
  costNanoUsd: number;
  /** `hmac-sha256:<hex>` of the client's address under the store's audit salt (never the address); null when unknown. */
  clientHmac?: string | null;
  /** The register id of the provider key that served the request; null when no provider key was used (or before it was recorded). */
  providerKeyId?: string | null;
}

/** Settled usage of one tenant or key over a time range, read back to seed quota counters. */
export interface UsageSumQuery {
  scope: 'tenant' | 'key';
  id: string;
  metric: 'req' | 'tok' | 'usd';
  since: number;
  until: number;
}

/** An audit event before it is chained. Details hold ids and counts, never content or secrets. */
export interface AuditEvent {
  ts: number;
  /** Who acted: `tenant-key:<id>`, `admin:<owner>` (admin API), `cli`, `system`. */
  actor: string;
  /** What happened: `request`, `tenant.create`, `key.issue`, `key.revoke`, … */
  action: string;
  /** The object acted on: a tenant id, key id, model, … */
  target: string | null;
  outcome: 'success' | 'failure';
  requestId: string | null;
  details: Record<string, string | number | boolean | null>;
}

/** A stored audit row with its position in the hash chain. */
export interface AuditRow extends AuditEvent {
  seq: number;
  prevHash: string;
  hash: string;
}

/** An audit row as stored, its details still JSON text (what `audit verify` checks). */
export interface AuditRawRow {
  seq: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  outcome: string;
  requestId: string | null;
  details: string;
  prevHash: string;
  hash: string;
}

/**
 * A signed record of a pruned prefix of the audit chain: rows 1…`upToSeq` were removed by the
 * retention job, and `upToHash` was the hash of row `upToSeq`, so the chain stays verifiable
 * from the next row on.
 */
export interface AuditCheckpoint {
  id: number;
  upToSeq: number;
  upToHash: string;
  /** Rows removed by this prune (not counting earlier prunes). */
  removedCount: number;
  createdAt: number;
  /** `hmac-sha256:<hex>` over the other fields (see `checkpointSignature`). */
  signature: string;
}

/**
 * One sampled prompt and answer, sealed with AES-256-GCM. A sample is keyed by `sampleId`, which
 * the gateway makes: the request id is the client's to choose (`x-request-id`), so many samples,
 * of one tenant or of several, may share it, and none displaces or shadows another.
 */
export interface ContentSample {
  /** `smp_` and 32 hex digits, random, made by the gateway before sealing (never client-chosen). */
  sampleId: string;
  requestId: string;
  tenantId: string;
  /** The request's time: the same `ts` as its usage-ledger and `request` audit rows. */
  createdAt: number;
  expiresAt: number;
  /**
   * What the GCM additional data binds (src/audit/sampling.ts): 2 = sample id, request id, tenant
   * and both times; 1 = the request id only (samples stored before schema level 8 / PostgreSQL 3).
   */
  aadVersion: 1 | 2;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/** Which unexpired samples `getSamples` returns: one request id, optionally one tenant, one page. */
export interface SampleQuery {
  requestId: string;
  now: number;
  tenantId?: string;
  /** Only samples after this one in the order (created_at, sample_id): the previous page's last. */
  after?: { createdAt: number; sampleId: string };
  limit: number;
}

/** The audit chain's maintenance side: verification reads, export, retention, content samples. */
export interface AuditTrailRepository {
  /** Raw rows with seq > afterSeq, in seq order. */
  scan(afterSeq: number, limit: number): Promise<AuditRawRow[]>;
  /** Rows with since ≤ ts < until and seq > afterSeq, in seq order (for export). */
  range(query: { since: number; until: number; afterSeq: number; limit: number }): Promise<AuditRow[]>;
  /** The checkpoint with the highest `upToSeq`, if any prune ever ran. */
  latestCheckpoint(): Promise<AuditCheckpoint | undefined>;
  /**
   * In one transaction: removes the audit rows before the first row with ts ≥ `before` (a
   * prefix of the chain), writes a checkpoint signed by `sign`, then appends the event `audit`
   * makes of it to the chain. Returns undefined (and writes nothing) when no row is old enough.
   */
  prune(before: number, now: number, sign: (c: Omit<AuditCheckpoint, 'id' | 'signature'>) => string, audit: (c: AuditCheckpoint) => AuditEvent): Promise<AuditCheckpoint | undefined>;
  /**
   * Stores a new sample. Never ignores or replaces one: another sample with the same request id
   * is a row of its own, and a second write of the same sample id fails.
   */
  putSample(sample: ContentSample): Promise<void>;
  /**
   * Unexpired samples of a request id (expired ones are treated as gone even before the job
   * deletes them), oldest first by (created_at, sample_id), at most `limit`.
   */
  getSamples(query: SampleQuery): Promise<ContentSample[]>;
  /** Deletes samples whose expiry passed; returns how many. */
  deleteExpiredSamples(now: number): Promise<number>;
}

/**
 * Which tenant a provider object id (an OpenAI Responses answer `resp_…`, or one of its output
 * items `msg_…`, `rs_…`, `fc_…`, …) was relayed to, so a later request may chain on it
 * (`previous_response_id`) or replay it (an input item's `id`) only from that tenant.
 */
export interface ResponseOwnerRecord {
  /** SHA-256 (hex) of the provider id and the object's id: the id itself is never stored. */
  responseHash: string;
  tenantId: string;
  createdAt: number;
}

export interface ResponseOwnerRepository {
  /**
   * Records owners in one transaction. A later record of the same hash replaces the earlier
   * one (the provider issued the id again: its newest object is the one a chain would read).
   */
  put(records: readonly ResponseOwnerRecord[]): Promise<void>;
  /**
   * Which of `responseHashes` were recorded for this tenant at or after `since`: one
   * parameterised query for the whole list (a request's `previous_response_id` and its input
   * items' ids), whatever the answer, so ids of another tenant cost what unknown ones do. An
   * empty list reads nothing. The caller bounds the list (the request's item cap).
   */
  ownedOf(responseHashes: readonly string[], tenantId: string, since: number): Promise<ReadonlySet<string>>;
  /** Deletes records created before `before` (the retention job); returns how many. */
  deleteBefore(before: number): Promise<number>;
}

export interface TenantRepository {
  create(name: string, policy: Record<string, unknown> | null, audit: AuditEvent): Promise<TenantRecord>;
  getByName(name: string): Promise<TenantRecord | undefined>;
  list(): Promise<TenantRecord[]>;
  setStatus(id: string, status: TenantStatus, audit: AuditEvent): Promise<void>;
  setPolicy(id: string, policy: Record<string, unknown> | null, audit: AuditEvent): Promise<void>;
}

export interface TenantKeyRepository {
  create(key: TenantKeyRecord, audit: AuditEvent): Promise<void>;
  /** The hot-path lookup: a key and its tenant in one query. */
  findWithTenant(keyId: string): Promise<KeyWithTenant | undefined>;
  get(keyId: string): Promise<TenantKeyRecord | undefined>;
  list(tenantId?: string): Promise<TenantKeyRecord[]>;
  revoke(keyId: string, at: number, audit: AuditEvent): Promise<void>;
  setLimits(keyId: string, limits: Record<string, unknown> | null, audit: AuditEvent): Promise<void>;
  /** Revokes every unrevoked key of a tenant carrying this label (used by the demo to replace its key). */
  revokeByLabel(tenantId: string, label: string, at: number): Promise<number>;
}

export interface RecordRepository {
  /** Appends usage rows and audit events in one transaction (the batched writer calls this). */
  append(usage: readonly UsageRecord[], audit: readonly AuditEvent[]): Promise<void>;
  listUsage(filter: { tenantId?: string; limit: number }): Promise<UsageRecord[]>;
  listAudit(filter: { afterSeq?: number; limit: number }): Promise<AuditRow[]>;
  /**
   * Audit rows in a time range, oldest first; with `tenantIds`, only rows about those tenants
   * (a request or key row whose `details.tenant` is one of them, or a tenant row targeting one);
   * with `action`, only rows whose action starts with it (a plain prefix: no wildcards);
   * with `newestFirst`, the newest `limit` rows above `afterSeq`, newest first.
   */
  queryAudit(filter: AuditQuery): Promise<AuditRow[]>;
  /** Usage per tenant and model in [since, until); with `tenantIds`, those tenants only. */
  summarizeUsage(filter: { tenantIds?: readonly string[]; since: number; until: number }): Promise<UsageSummaryRow[]>;
  /** Requests (not refused), tokens or nano-USD of a tenant or key in [since, until). */
  sumUsage(query: UsageSumQuery): Promise<number>;
}

/** The lifecycle of a provider key in the pool (modelled on the staging labels of managed vaults). */
export type ProviderKeyState = 'pending' | 'current' | 'previous' | 'revoked';

/** One provider key in the ownership register. Holds a reference and a fingerprint, never a value. */
export interface ProviderKeyRecord {
  id: string;
  provider: string;
  /** The secret reference the value is read from (`vault:…`, `file:…`). */
  reference: string;
  /** First 16 hex characters of SHA-256 of the verified value. */
  fingerprint: string;
  /** The backend's version of the value when it was registered, when known. */
  version: string | null;
  state: ProviderKeyState;
  owner: string | null;
  purpose: string | null;
  createdAt: number;
  /** When this key became current (null while pending, or for a bootstrapped key). */
  rotatedAt: number | null;
  rotateEveryDays: number;
  /** For `previous`: when its grace period ends. */
  previousUntil: number | null;
  revokedAt: number | null;
}

/** An in-progress rotation of one provider: the lock and the last completed step. */
export interface ProviderKeyRotation {
  provider: string;
  rotationId: string;
  /** The last completed step (0: none). */
  step: number;
  oldKeyId: string | null;
  newKeyId: string | null;
  startedAt: number;
  /** Who holds the lock: `host:pid`. */
  lockedBy: string;
  heartbeatAt: number;
}

export interface ProviderKeyRepository {
  /** Every row, ordered by provider and creation. */
  list(): Promise<ProviderKeyRecord[]>;
  /** The hot path of the gateway's poll: rows that are not revoked (indexed on state). */
  active(): Promise<ProviderKeyRecord[]>;
  get(id: string): Promise<ProviderKeyRecord | undefined>;
  /** Inserts `record` as current when the provider has no row at all; false when it had one. */
  bootstrap(record: ProviderKeyRecord, audit: AuditEvent): Promise<boolean>;
  /** Inserts a pending key and records it in the rotation (step 1), in one transaction. */
  addPending(record: ProviderKeyRecord, rotationId: string, audit: AuditEvent): Promise<void>;
  /** Drops a pending key that failed verification and ends the rotation. */
  abandonRotation(provider: string, rotationId: string, pendingId: string | null, audit: AuditEvent): Promise<void>;
  /** Makes `newId` current and the old current previous until `previousUntil`; records step 3. Idempotent. */
  promote(provider: string, rotationId: string, newId: string, previousUntil: number, at: number, audit: AuditEvent): Promise<void>;
  /** Revokes one key (any state). False when it was already revoked or does not exist. */
  revoke(id: string, at: number, audit: AuditEvent): Promise<boolean>;
  /** Revokes every `previous` key whose grace period ended; returns the revoked rows. */
  expirePrevious(now: number, actor: string): Promise<ProviderKeyRecord[]>;
  setOwner(id: string, fields: { owner?: string; purpose?: string; rotateEveryDays?: number }, audit: AuditEvent): Promise<void>;
  /** Takes the rotation lock: a new rotation at step 0, or the existing row untouched (the caller decides). */
  lockRotation(provider: string, rotationId: string, lockedBy: string, now: number): Promise<{ created: boolean; rotation: ProviderKeyRotation }>;
  /** Takes over a stale lock held by `previousHolder`; false when someone else got it first. */
  takeOverRotation(provider: string, rotationId: string, previousHolder: string, lockedBy: string, now: number): Promise<boolean>;
  getRotation(provider: string): Promise<ProviderKeyRotation | undefined>;
  heartbeat(provider: string, lockedBy: string, now: number): Promise<void>;
  /** Records a completed step (optionally with the old key id) under an audit event. */
  setRotationStep(provider: string, rotationId: string, step: number, audit: AuditEvent | null, oldKeyId?: string | null): Promise<void>;
  /** Ends a rotation (the lock is released) with its closing audit event. */
  finishRotation(provider: string, rotationId: string, audit: AuditEvent): Promise<void>;
}

/** What an incident contained: a provider key (by fingerprint), a tenant key, or a whole tenant. */
export type IncidentKind = 'provider_key' | 'tenant_key' | 'tenant';

/** An incident opened by `keywarden incident contain`: what was contained, when and by whom (ids only). */
export interface IncidentRecord {
  /** `inc_` and 16 hex characters. */
  id: string;
  kind: IncidentKind;
  /** The fingerprint, tenant key id or tenant name the operator named. */
  target: string;
  /** Provider key register ids, the tenant key id, or the tenant id that were contained. */
  targetIds: string[];
  tenantId: string | null;
  provider: string | null;
  /** Start of the investigation window by default (when the contained key or tenant was created). */
  since: number;
  containedAt: number;
  actor: string;
  /** What containment did (ids, states, counts), for the report. */
  details: Record<string, string | number | boolean | null>;
}

/** Ledger rows of one key, tenant or provider in [since, until), oldest first. */
export interface UsageWindowQuery {
  keyId?: string;
  tenantId?: string;
  provider?: string;
  since: number;
  until: number;
  limit: number;
}

export interface IncidentRepository {
  /** Stores the incident with its audit event in one transaction. */
  create(incident: IncidentRecord, audit: AuditEvent): Promise<void>;
  get(id: string): Promise<IncidentRecord | undefined>;
  list(): Promise<IncidentRecord[]>;
  /** Providers with a contained provider key (the gateway answers `provider_key_contained` when they have no current key). */
  containedProviders(): Promise<string[]>;
  usageWindow(query: UsageWindowQuery): Promise<UsageRecord[]>;
}

export type AdminRole = 'viewer' | 'operator' | 'admin';

/** An issued admin token: only a keyed hash of its secret is kept. */
export interface AdminTokenRecord {
  id: string;
  /** The person or automation it was issued to; named in every audit row of its calls. */
  owner: string;
  role: AdminRole;
  /** Tenant ids it is limited to; null for every tenant. */
  tenantIds: string[] | null;
  secretHash: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface AdminTokenRepository {
  create(token: AdminTokenRecord, audit: AuditEvent): Promise<void>;
  get(id: string): Promise<AdminTokenRecord | undefined>;
  list(): Promise<AdminTokenRecord[]>;
  revoke(id: string, at: number, audit: AuditEvent): Promise<void>;
}

/** The filter of `RecordRepository.queryAudit`. */
export interface AuditQuery {
  tenantIds?: readonly string[];
  since: number;
  until: number;
  afterSeq: number;
  limit: number;
  /** A prefix of the action (`anomaly.`), compared as plain text. */
  action?: string;
  newestFirst?: boolean;
}

/** Usage over a time range, summed per tenant and model (the admin API's usage report). */
export interface UsageSummaryRow {
  tenantId: string;
  model: string | null;
  requests: number;
  /** Requests whose outcome was not `success` (refused, upstream errors, aborted or broken streams). */
  errors: number;
  inputTokens: number;
  outputTokens: number;
  costNanoUsd: number;
}

export interface Store {
  readonly kind: string;
  /**
   * A number that changes once any change to tenants or keys has committed, by this process or
   * another one sharing the store. Cheap enough to read on every request: caches of verified
   * credentials drop their entries when it moves, so a revocation applies to the next request.
   */
  changeStamp(): number;
  adminTokens: AdminTokenRepository;
  incidents: IncidentRepository;
  tenants: TenantRepository;
  keys: TenantKeyRepository;
  records: RecordRepository;
  providerKeys: ProviderKeyRepository;
  auditTrail: AuditTrailRepository;
  responseOwners: ResponseOwnerRepository;
  /** A random secret generated once and kept in the store (the default tenant-key hash key). */
  instanceSecret(name: string): Promise<Buffer>;
  /** True for the first caller only (until `expiresAt`): one-off events such as threshold alerts. */
  claimOnce(name: string, expiresAt: number): Promise<boolean>;
  /** Cheap liveness probe for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Thrown for expected store conflicts (a duplicate tenant name) so services can map them to 409. */
export class StoreConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConflictError';
  }
}
