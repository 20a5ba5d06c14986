/**
 * Schema migrations for the PostgreSQL store, applied in order at open, each in its own
 * transaction under an advisory lock so replicas starting together apply each one once. A
 * migration is never edited once released: a change is a new entry. `keywarden_schema` records
 * the applied versions.
 *
 * The schema mirrors the SQLite store at its level 6. Timestamps are epoch milliseconds in
 * BIGINT; JSON columns are TEXT (as in SQLite), so an audit row's details are kept byte for
 * byte as they were hashed.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  // 1: everything the SQLite store has at level 6
  `
  CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
  );
  CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    policy TEXT,
    created_at BIGINT NOT NULL
  );
  CREATE TABLE tenant_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    secret_hash TEXT NOT NULL,
    label TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    limits TEXT
  );
  CREATE INDEX tenant_keys_tenant ON tenant_keys(tenant_id);
  CREATE TABLE usage_ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    stream BOOLEAN NOT NULL,
    gateway_ms DOUBLE PRECISION NOT NULL,
    upstream_ms DOUBLE PRECISION NOT NULL,
    prompt_fingerprint TEXT,
    cost_nano_usd BIGINT NOT NULL DEFAULT 0,
    client_hmac TEXT
  );
  CREATE INDEX usage_ledger_tenant_ts ON usage_ledger(tenant_id, ts);
  CREATE INDEX usage_ledger_key_ts ON usage_ledger(key_id, ts);
  CREATE INDEX usage_ledger_ts ON usage_ledger(ts);
  CREATE TABLE claims (
    name TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
  );

  CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    request_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE INDEX audit_log_ts ON audit_log(ts);
  CREATE TABLE audit_checkpoints (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    up_to_seq BIGINT NOT NULL,
    up_to_hash TEXT NOT NULL,
    removed_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    signature TEXT NOT NULL
  );
  -- the retention job opens this window (a row) inside its own transaction to delete a prefix;
  -- no other transaction ever sees the row
  CREATE TABLE audit_prune_window (
    up_to_seq BIGINT NOT NULL
  );
  -- SET search_path FROM CURRENT: the guard reads the window of its own schema, whatever the
  -- session's search_path
  CREATE FUNCTION keywarden_audit_log_guard() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_prune_window WHERE OLD.seq <= up_to_seq) THEN
      RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' THEN
      RAISE EXCEPTION 'audit_log is append-only; rows are removed only by keywarden audit prune';
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
  END
  $fn$;
  CREATE FUNCTION keywarden_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
  END
  $fn$;
  CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION keywarden_audit_log_guard();
  -- TRUNCATE skips row triggers: refuse it outright
  CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION keywarden_append_only();
  CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION keywarden_append_only();
  CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION keywarden_append_only();
  CREATE TABLE content_samples (
    request_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    iv BYTEA NOT NULL,
    tag BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL
  );
  CREATE INDEX content_samples_expiry ON content_samples(expires_at);

  CREATE TABLE provider_keys (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    reference TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    version TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'current', 'previous', 'revoked')),
    owner TEXT,
    purpose TEXT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    rotate_every_days INTEGER NOT NULL DEFAULT 60,
    previous_until BIGINT,
    revoked_at BIGINT
  );
  CREATE INDEX provider_keys_state ON provider_keys(state, provider);
  CREATE UNIQUE INDEX provider_keys_one_current ON provider_keys(provider) WHERE state = 'current';
  CREATE TABLE provider_key_rotations (
    provider TEXT PRIMARY KEY,
    rotation_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    old_key_id TEXT,
    new_key_id TEXT,
    started_at BIGINT NOT NULL,
    locked_by TEXT NOT NULL,
    heartbeat_at BIGINT NOT NULL
  );

  CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('provider_key', 'tenant_key', 'tenant')),
    target TEXT NOT NULL,
    target_ids TEXT NOT NULL,
    tenant_id TEXT,
    provider TEXT,
    since BIGINT NOT NULL,
    contained_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    details TEXT NOT NULL
  );
  CREATE INDEX incidents_kind ON incidents(kind, provider);

  CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    tenant_ids TEXT,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
  );
  `,
  // 2: which provider key (register id) served each request, so a provider-key incident counts only its own requests
  `
  ALTER TABLE usage_ledger ADD COLUMN provider_key_id TEXT;
  `,
  // 3 (SQLite 8): content samples keyed by a gateway-made sample id, not the client's request id, so a
  // second request with the same x-request-id (another tenant's or the same one's) cannot pre-empt or
  // evade a sample. Rows kept from before are sealed with the request id alone as AAD (aad_version 1).
  `
  ALTER TABLE content_samples DROP CONSTRAINT content_samples_pkey;
  ALTER TABLE content_samples ADD COLUMN sample_id TEXT;
  ALTER TABLE content_samples ADD COLUMN aad_version INTEGER NOT NULL DEFAULT 1 CHECK (aad_version IN (1, 2));
  UPDATE content_samples SET sample_id = 'smp_' || md5(request_id || ':' || random()::text || ':' || clock_timestamp()::text);
  ALTER TABLE content_samples ALTER COLUMN sample_id SET NOT NULL, ADD PRIMARY KEY (sample_id), ALTER COLUMN aad_version DROP DEFAULT;
  CREATE INDEX content_samples_request ON content_samples(request_id, created_at, sample_id);
  `,
  // 4 (SQLite 9): which tenant each stored provider response (OpenAI Responses) was relayed to, so
  // only that tenant can chain on it (`previous_response_id`); the id is kept as a SHA-256, pruned after retention
  `
  CREATE TABLE response_owners (
    response_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX response_owners_created ON response_owners(created_at);
  `,
];
