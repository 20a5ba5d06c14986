/**
 * Schema migrations for the SQLite store, applied in order at open. A migration is never
 * edited once released: a change is a new entry. `PRAGMA user_version` records the level.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: tenants, tenant keys, usage ledger, audit chain, instance secrets
  `
  CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
  );
  CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    policy TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE tenant_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    secret_hash TEXT NOT NULL,
    label TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
  );
  CREATE INDEX tenant_keys_tenant ON tenant_keys(tenant_id);
  CREATE TABLE usage_ledger (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    gateway_ms REAL NOT NULL,
    upstream_ms REAL NOT NULL,
    prompt_fingerprint TEXT
  );
  CREATE INDEX usage_ledger_tenant_ts ON usage_ledger(tenant_id, ts);
  CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    request_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  `,
  // 2: quotas: per-key limits, cost in the ledger (counters are seeded from it), one-off claims
  `
  ALTER TABLE tenant_keys ADD COLUMN limits TEXT;
  ALTER TABLE usage_ledger ADD COLUMN cost_nano_usd INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX usage_ledger_key_ts ON usage_ledger(key_id, ts);
  CREATE TABLE claims (
    name TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  );
  `,
  // 3: the provider key register (pool states, ownership) and the rotation lock/progress
  `
  CREATE TABLE provider_keys (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    reference TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    version TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'current', 'previous', 'revoked')),
    owner TEXT,
    purpose TEXT,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER,
    rotate_every_days INTEGER NOT NULL DEFAULT 60,
    previous_until INTEGER,
    revoked_at INTEGER
  );
  CREATE INDEX provider_keys_state ON provider_keys(state, provider);
  CREATE UNIQUE INDEX provider_keys_one_current ON provider_keys(provider) WHERE state = 'current';
  CREATE TABLE provider_key_rotations (
    provider TEXT PRIMARY KEY,
    rotation_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    old_key_id TEXT,
    new_key_id TEXT,
    started_at INTEGER NOT NULL,
    locked_by TEXT NOT NULL,
    heartbeat_at INTEGER NOT NULL
  );
  `,
  // 4: audit trail: client address HMAC in the ledger, append-only audit rows (the retention job
  // opens a window to delete a prefix), signed checkpoints of pruned prefixes, sealed content samples
  `
  ALTER TABLE usage_ledger ADD COLUMN client_hmac TEXT;
  CREATE INDEX audit_log_ts ON audit_log(ts);
  CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY,
    up_to_seq INTEGER NOT NULL,
    up_to_hash TEXT NOT NULL,
    removed_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    signature TEXT NOT NULL
  );
  CREATE TABLE audit_prune_window (
    up_to_seq INTEGER NOT NULL
  );
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
  END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  WHEN NOT EXISTS (SELECT 1 FROM audit_prune_window WHERE OLD.seq <= up_to_seq)
  BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only; rows are removed only by keywarden audit prune');
  END;
  CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
  END;
  CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
  END;
  CREATE TABLE content_samples (
    request_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    iv BLOB NOT NULL,
    tag BLOB NOT NULL,
    ciphertext BLOB NOT NULL
  );
  CREATE INDEX content_samples_expiry ON content_samples(expires_at);
  `,  // 5: incidents opened by `keywarden incident contain` (ids and fingerprints only)
  `
  CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('provider_key', 'tenant_key', 'tenant')),
    target TEXT NOT NULL,
    target_ids TEXT NOT NULL,
    tenant_id TEXT,
    provider TEXT,
    since INTEGER NOT NULL,
    contained_at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    details TEXT NOT NULL
  );
  CREATE INDEX incidents_kind ON incidents(kind, provider);
  CREATE INDEX usage_ledger_ts ON usage_ledger(ts);
  `,
  // 6: admin tokens issued per person or automation, with a role and an optional tenant scope
  `
  CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    tenant_ids TEXT,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
  );
  `,
  // 7: which provider key (register id) served each request, so a provider-key incident counts only its own requests
  `
  ALTER TABLE usage_ledger ADD COLUMN provider_key_id TEXT;
  `,
  // 8: content samples keyed by a gateway-made sample id, not the client's request id, so a second
  // request with the same x-request-id (another tenant's or the same one's) cannot pre-empt or evade
  // a sample. Rows kept from before are sealed with the request id alone as AAD (aad_version 1).
  `
  ALTER TABLE content_samples RENAME TO content_samples_v1;
  CREATE TABLE content_samples (
    sample_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    aad_version INTEGER NOT NULL CHECK (aad_version IN (1, 2)),
    iv BLOB NOT NULL,
    tag BLOB NOT NULL,
    ciphertext BLOB NOT NULL
  );
  INSERT INTO content_samples (sample_id, request_id, tenant_id, created_at, expires_at, aad_version, iv, tag, ciphertext)
    SELECT 'smp_' || lower(hex(randomblob(16))), request_id, tenant_id, created_at, expires_at, 1, iv, tag, ciphertext FROM content_samples_v1;
  DROP TABLE content_samples_v1;
  CREATE INDEX content_samples_request ON content_samples(request_id, created_at, sample_id);
  CREATE INDEX content_samples_expiry ON content_samples(expires_at);
  `,
  // 9: which tenant each stored provider response (OpenAI Responses) was relayed to, so only that
  // tenant can chain on it (`previous_response_id`); the id is kept as a SHA-256, pruned after retention
  `
  CREATE TABLE response_owners (
    response_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX response_owners_created ON response_owners(created_at);
  `,
];
