import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { PoolClient } from 'pg';
import type { AuditCheckpoint, AuditEvent, AuditRow, ContentSample, KeyWithTenant, Store, TenantRecord, UsageRecord, UsageSummaryRow } from '../types.js';
import { StoreConflictError } from '../types.js';
import { AUDIT_GENESIS, chainHash } from '../audit-chain.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import {
  type TenantRow, type KeyRow, type AdminTokenRow, type AuditDbRow, type UsageDbRow, type IncidentRow, type CheckpointRow, type SampleRow, type ProviderKeyRow, type RotationRow, SAMPLE_COLUMNS, json, toSample, toTenant, toKey, toAdminToken, toUsage, toIncident, toAuditRow, toCheckpoint, toProviderKey, toRotation,
} from '../rows.js';
import { clientConfig, inTransaction, type PostgresStoreOptions } from './connection.js';
import { NOTIFY_CREDENTIALS, startChangeFeed, type ChangeFeed } from './change-feed.js';

export { isPostgresUrl, type PostgresStoreOptions } from './connection.js';

/*
 * Advisory lock keys. Migrations take one lock for the whole database (schemas are created under
 * it); the audit chain takes one per schema, so stores in different schemas do not wait on each other.
 */
const MIGRATION_LOCK = `SELECT pg_advisory_xact_lock(hashtextextended('keywarden:migrate', 0))`;
const AUDIT_CHAIN_LOCK = `SELECT pg_advisory_xact_lock(hashtextextended('keywarden:audit-chain:' || current_schema(), 0))`;

/** Applies pending migrations, one transaction each, serialised across replicas by an advisory lock. */
async function migrate(pool: pg.Pool, schema: string | undefined): Promise<void> {
  for (;;) {
    const applied = await inTransaction(pool, async (c) => {
      await c.query(MIGRATION_LOCK);
      if (schema !== undefined) await c.query(`CREATE SCHEMA IF NOT EXISTS ${c.escapeIdentifier(schema)}`);
      await c.query('CREATE TABLE IF NOT EXISTS keywarden_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
      // read the level under the lock: replicas starting together must not apply a migration twice
      const level = (await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM keywarden_schema')).rows[0]?.v ?? 0;
      if (level >= POSTGRES_MIGRATIONS.length) return false;
      await c.query(POSTGRES_MIGRATIONS[level] as string);
      await c.query('INSERT INTO keywarden_schema (version, applied_at) VALUES ($1, $2)', [level + 1, Date.now()]);
      return true;
    });
    if (!applied) return;
  }
}

const USAGE_COLUMNS = `ts, request_id, tenant_id, key_id, provider, model, endpoint, status, outcome, error_code,
  input_tokens, output_tokens, cached_input_tokens, stream, gateway_ms, upstream_ms, prompt_fingerprint, cost_nano_usd, client_hmac, provider_key_id`;
const PROVIDER_KEY_INSERT = `INSERT INTO provider_keys (id, provider, reference, fingerprint, version, state, owner, purpose, created_at, rotated_at,
  rotate_every_days, previous_until, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)`;
const ROTATION_SET_STEP = 'UPDATE provider_key_rotations SET step = GREATEST(step, $1), old_key_id = COALESCE($2, old_key_id) WHERE provider = $3 AND rotation_id = $4';
const PROVIDER_KEY_REVOKE = `UPDATE provider_keys SET state = 'revoked', revoked_at = $1, previous_until = NULL WHERE id = $2 AND state != 'revoked'`;

/*
 * PostgreSQL TEXT cannot hold U+0000 (SQLite can). A client-chosen value carrying one (a model
 * name, say) must not make the whole batch of records fail, so it is stored as U+FFFD. In audit
 * rows this happens before hashing, so the chain covers exactly what is stored.
 */
function pgText<T extends string | null>(value: T): T {
  return (typeof value === 'string' && value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value) as T;
}

function storableEvent(e: AuditEvent): AuditEvent {
  return { ...e, actor: pgText(e.actor), action: pgText(e.action), target: pgText(e.target), requestId: pgText(e.requestId) };
}

/** Chains events onto the audit log. Runs inside a transaction that holds the chain lock, so the tail is stable. */
async function appendAudit(c: PoolClient, raw: readonly AuditEvent[]): Promise<void> {
  if (raw.length === 0) return;
  const events = raw.map(storableEvent);
  let last = (await c.query<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1')).rows[0];
  if (!last) {
    // after a prune removed every row, the chain continues from the newest checkpoint
    const cp = (await c.query<CheckpointRow>('SELECT * FROM audit_checkpoints ORDER BY up_to_seq DESC, id DESC LIMIT 1')).rows[0];
    if (cp) last = { seq: cp.up_to_seq, hash: cp.up_to_hash };
  }
  let seq = last?.seq ?? 0;
  let prev = last?.hash ?? AUDIT_GENESIS;
  const cols: { seq: number[]; ts: number[]; actor: string[]; action: string[]; target: (string | null)[]; outcome: string[]; requestId: (string | null)[]; details: string[]; prev: string[]; hash: string[] } =
    { seq: [], ts: [], actor: [], action: [], target: [], outcome: [], requestId: [], details: [], prev: [], hash: [] };
  for (const event of events) {
    seq += 1;
    const hash = chainHash(prev, seq, event);
    cols.seq.push(seq); cols.ts.push(event.ts); cols.actor.push(event.actor); cols.action.push(event.action); cols.target.push(event.target);
    cols.outcome.push(event.outcome); cols.requestId.push(event.requestId); cols.details.push(JSON.stringify(event.details));
    cols.prev.push(prev); cols.hash.push(hash);
    prev = hash;
  }
  // one statement for the whole batch, whatever its size
  await c.query(
    `INSERT INTO audit_log (seq, ts, actor, action, target, outcome, request_id, details, prev_hash, hash)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])`,
    [cols.seq, cols.ts, cols.actor, cols.action, cols.target, cols.outcome, cols.requestId, cols.details, cols.prev, cols.hash]);
}

async function insertUsage(c: PoolClient, usage: readonly UsageRecord[]): Promise<void> {
  if (usage.length === 0) return;
  const col = <T>(pick: (u: UsageRecord) => T): T[] => usage.map((u) => {
    const v = pick(u);
    return (typeof v === 'string' ? pgText(v) : v) as T;
  });
  await c.query(
    `INSERT INTO usage_ledger (${USAGE_COLUMNS})
     SELECT ts, request_id, tenant_id, key_id, provider, model, endpoint, status, outcome, error_code, input_tokens, output_tokens,
       cached_input_tokens, stream, gateway_ms, upstream_ms, prompt_fingerprint, cost_nano_usd, client_hmac, provider_key_id
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::text[],
       $11::bigint[], $12::bigint[], $13::bigint[], $14::boolean[], $15::float8[], $16::float8[], $17::text[], $18::bigint[], $19::text[], $20::text[])
       WITH ORDINALITY AS u(ts, request_id, tenant_id, key_id, provider, model, endpoint, status, outcome, error_code, input_tokens, output_tokens,
         cached_input_tokens, stream, gateway_ms, upstream_ms, prompt_fingerprint, cost_nano_usd, client_hmac, provider_key_id, n)
     ORDER BY n`,
    [col((u) => u.ts), col((u) => u.requestId), col((u) => u.tenantId), col((u) => u.keyId), col((u) => u.provider), col((u) => u.model),
      col((u) => u.endpoint), col((u) => u.status), col((u) => u.outcome), col((u) => u.errorCode), col((u) => u.inputTokens), col((u) => u.outputTokens),
      col((u) => u.cachedInputTokens), col((u) => u.stream), col((u) => u.gatewayMs), col((u) => u.upstreamMs), col((u) => u.promptFingerprint),
      col((u) => u.costNanoUsd), col((u) => u.clientHmac ?? null), col((u) => u.providerKeyId ?? null)]);
}

/** How an audited write affects the credential caches of every replica. */
interface WriteOptions {
  /** Tenant, tenant-key and admin-token writes notify the other replicas in the same transaction. */
  credentials?: boolean;
}

/**
 * Opens the scaled-out store: PostgreSQL, shared by every gateway replica and the CLI. Returns
 * at once; the pool connects and migrations run on first use, so the first call (at start-up,
 * the key-hash secret) reports a database that cannot be reached or migrated. Every statement
 * takes parameters, never concatenated values.
 *
 * @example const store = openPostgresStore('postgres://keywarden@db.internal:5432/keywarden')
 */
export function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Store & { ready(): Promise<void> } {
  const config = clientConfig(url, options);
  const pool = new pg.Pool({ ...config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
  // an idle connection dropped by the server is removed by the pool; the next query opens another
  pool.on('error', () => undefined);

  let feed: ChangeFeed | undefined;
  let closed = false;
  const open = (): Promise<void> => {
    const attempt = migrate(pool, options.schema).then(() => {
      if (!closed) feed ??= startChangeFeed(config);
    });
    // callers see a failure through their own call; this only keeps it from being unhandled
    attempt.catch(() => undefined);
    return attempt;
  };
  let opening = open();
  // every call waits until the schema is migrated; a database that was down when the store
  // opened is tried again by the next call instead of failing it for good
  async function ready(): Promise<void> {
    const attempt = opening;
    try {
      await attempt;
    } catch (err) {
      if (closed) throw err;
      if (opening === attempt) opening = open();
      await opening;
    }
  }

  const query = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> => {
    await ready();
    return (await pool.query<R>(sql, params)).rows;
  };
  const one = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R | undefined> => (await query<R>(sql, params))[0];
  const run = async (sql: string, params: unknown[] = []): Promise<number> => {
    await ready();
    return (await pool.query(sql, params)).rowCount ?? 0;
  };
  const transaction = async <T>(fn: (c: PoolClient) => Promise<T>): Promise<T> => {
    await ready();
    return inTransaction(pool, fn);
  };
  // a transaction that appends to the audit chain: the chain lock comes first, so every such
  // transaction (of any replica) waits in one queue and none holds row locks while waiting
  const chained = <T>(fn: (c: PoolClient) => Promise<T>): Promise<T> =>
    transaction(async (c) => {
      await c.query(AUDIT_CHAIN_LOCK);
      return fn(c);
    });

  // this replica's own audited writes; the feed adds every replica's credential writes
  let localChanges = 0;
  let openingReads = 0;

  // A write plus its audit event commit together or not at all.
  async function withAudit<T>(audit: AuditEvent, write: (c: PoolClient) => Promise<T>, opts: WriteOptions = {}): Promise<T> {
    const result = await chained(async (c) => {
      const r = await write(c);
      await appendAudit(c, [audit]);
      if (opts.credentials) await c.query(NOTIFY_CREDENTIALS);
      return r;
    });
    localChanges += 1;
    return result;
  }

  const store: Store & { ready(): Promise<void> } = {
    kind: 'postgres',
    ready,
    changeStamp() {
      // no feed yet (still opening) counts as down: the stamp moves on every read
      if (!feed) openingReads += 1;
      // every counter only grows, so the sum moves whenever one does
      return localChanges + openingReads + (feed ? feed.stamp() : 0);
    },
    adminTokens: {
      async create(t, audit) {
        await withAudit(audit, (c) => c.query(
          'INSERT INTO admin_tokens (id, owner, role, tenant_ids, secret_hash, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
          [t.id, t.owner, t.role, json(t.tenantIds), t.secretHash, t.createdAt, t.expiresAt, t.revokedAt]), { credentials: true });
      },
      async get(id) {
        const row = await one<AdminTokenRow>('SELECT * FROM admin_tokens WHERE id = $1', [id]);
        return row ? toAdminToken(row) : undefined;
      },
      async list() {
        return (await query<AdminTokenRow>('SELECT * FROM admin_tokens ORDER BY created_at, id COLLATE "C"')).map(toAdminToken);
      },
      async revoke(id, at, audit) {
        await withAudit(audit, (c) => c.query('UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id]), { credentials: true });
      },
    },
    tenants: {
      async create(name, policy, audit) {
        const tenant: TenantRecord = { id: `t_${randomUUID().replaceAll('-', '').slice(0, 16)}`, name, status: 'active', policy, createdAt: Date.now() };
        try {
          await withAudit({ ...audit, target: tenant.id }, (c) => c.query(
            'INSERT INTO tenants (id, name, status, policy, created_at) VALUES ($1, $2, $3, $4, $5)',
            [tenant.id, name, tenant.status, json(policy), tenant.createdAt]), { credentials: true });
        } catch (err) {
          if ((err as { code?: string; constraint?: string }).code === '23505') throw new StoreConflictError('a tenant with this name exists');
          throw err;
        }
        return tenant;
      },
      async getByName(name) {
        const row = await one<TenantRow>('SELECT * FROM tenants WHERE name = $1', [name]);
        return row ? toTenant(row) : undefined;
      },
      async list() {
        // byte order, as SQLite sorts, whatever the database's collation
        return (await query<TenantRow>('SELECT * FROM tenants ORDER BY name COLLATE "C"')).map(toTenant);
      },
      async setStatus(id, status, audit) {
        await withAudit(audit, (c) => c.query('UPDATE tenants SET status = $1 WHERE id = $2', [status, id]), { credentials: true });
      },
      async setPolicy(id, policy, audit) {
        await withAudit(audit, (c) => c.query('UPDATE tenants SET policy = $1 WHERE id = $2', [json(policy), id]), { credentials: true });
      },
    },
    keys: {
      async create(key, audit) {
        await withAudit(audit, (c) => c.query(
          'INSERT INTO tenant_keys (id, tenant_id, secret_hash, label, created_at, expires_at, revoked_at, limits) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
          [key.id, key.tenantId, key.secretHash, key.label, key.createdAt, key.expiresAt, key.revokedAt, json(key.limits)]), { credentials: true });
      },
      async findWithTenant(keyId): Promise<KeyWithTenant | undefined> {
        const row = await one<KeyRow & { t_name: string; t_status: string; t_policy: string | null; t_created_at: number }>(
          `SELECT k.*, t.name AS t_name, t.status AS t_status, t.policy AS t_policy, t.created_at AS t_created_at
           FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1`, [keyId]);
        if (!row) return undefined;
        return {
          key: toKey(row),
          tenant: toTenant({ id: row.tenant_id, name: row.t_name, status: row.t_status, policy: row.t_policy, created_at: row.t_created_at }),
        };
      },
      async get(keyId) {
        const row = await one<KeyRow>('SELECT * FROM tenant_keys WHERE id = $1', [keyId]);
        return row ? toKey(row) : undefined;
      },
      async list(tenantId) {
        const rows = tenantId === undefined
          ? await query<KeyRow>('SELECT * FROM tenant_keys ORDER BY created_at, id COLLATE "C"')
          : await query<KeyRow>('SELECT * FROM tenant_keys WHERE tenant_id = $1 ORDER BY created_at, id COLLATE "C"', [tenantId]);
        return rows.map(toKey);
      },
      async revoke(keyId, at, audit) {
        await withAudit(audit, (c) => c.query('UPDATE tenant_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, keyId]), { credentials: true });
      },
      async setLimits(keyId, limits, audit) {
        await withAudit(audit, (c) => c.query('UPDATE tenant_keys SET limits = $1 WHERE id = $2', [json(limits), keyId]), { credentials: true });
      },
      async revokeByLabel(tenantId, label, at) {
        const changed = await transaction(async (c) => {
          const n = (await c.query('UPDATE tenant_keys SET revoked_at = $1 WHERE tenant_id = $2 AND label = $3 AND revoked_at IS NULL', [at, tenantId, label])).rowCount ?? 0;
          if (n > 0) await c.query(NOTIFY_CREDENTIALS);
          return n;
        });
        localChanges += 1;
        return changed;
      },
    },
    records: {
      async append(usage, audit) {
        if (usage.length === 0 && audit.length === 0) return;
        const write = async (c: PoolClient) => {
          await insertUsage(c, usage);
          await appendAudit(c, audit);
        };
        // usage rows alone need no place in the chain, so they skip its lock
        if (audit.length > 0) await chained(write);
        else await transaction(write);
      },
      async listUsage({ tenantId, limit }) {
        const rows = tenantId === undefined
          ? await query<UsageDbRow>('SELECT * FROM usage_ledger ORDER BY id DESC LIMIT $1', [limit])
          : await query<UsageDbRow>('SELECT * FROM usage_ledger WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2', [tenantId, limit]);
        return rows.map(toUsage);
      },
      async sumUsage({ scope, id, metric, since, until }) {
        const column = scope === 'tenant' ? 'tenant_id' : 'key_id';
        // the column and aggregate come from these fixed strings, never from the caller
        const aggregate = metric === 'req' ? 'COUNT(*)' : metric === 'tok' ? 'SUM(input_tokens + output_tokens)' : 'SUM(cost_nano_usd)';
        const refusedExcluded = metric === 'req' ? ` AND outcome != 'refused'` : '';
        const row = await one<{ v: number | null }>(
          `SELECT ${aggregate} AS v FROM usage_ledger WHERE ${column} = $1 AND ts >= $2 AND ts < $3${refusedExcluded}`, [id, since, until]);
        return row?.v ?? 0;
      },
      async listAudit({ afterSeq = 0, limit }): Promise<AuditRow[]> {
        return (await query<AuditDbRow>('SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSeq, limit])).map(toAuditRow);
      },
      async queryAudit({ tenantIds, since, until, afterSeq, limit, action, newestFirst }): Promise<AuditRow[]> {
        // the tenant an audit row is about: `details.tenant` of request and key rows, the target of tenant rows;
        // the action prefix is compared with left(), not LIKE, so `_` and `%` in it are plain characters
        return (await query<AuditDbRow>(
          `SELECT * FROM audit_log WHERE seq > $1 AND ts >= $2 AND ts < $3
           AND ($4::text[] IS NULL OR COALESCE(details::jsonb ->> 'tenant', CASE WHEN action LIKE 'tenant.%' THEN target END) = ANY ($4::text[]))
           AND ($6::text IS NULL OR left(action, length($6::text)) = $6::text)
           ORDER BY seq ${newestFirst ? 'DESC' : 'ASC'} LIMIT $5`,
          [afterSeq, since, until, tenantIds === undefined ? null : [...tenantIds], limit, action ?? null])).map(toAuditRow);
      },
      async summarizeUsage({ tenantIds, since, until }): Promise<UsageSummaryRow[]> {
        const rows = await query<{ tenant_id: string; model: string | null; requests: number; errors: number; input_tokens: number; output_tokens: number; cost_nano_usd: number }>(
          `SELECT tenant_id, model, COUNT(*) AS requests, COUNT(*) FILTER (WHERE outcome <> 'success') AS errors, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, SUM(cost_nano_usd) AS cost_nano_usd
           FROM usage_ledger WHERE ts >= $1 AND ts < $2 AND ($3::text[] IS NULL OR tenant_id = ANY ($3::text[]))
           GROUP BY tenant_id, model ORDER BY tenant_id COLLATE "C", model COLLATE "C" NULLS FIRST`,
          [since, until, tenantIds === undefined ? null : [...tenantIds]]);
        return rows.map((r) => ({
          tenantId: r.tenant_id, model: r.model, requests: r.requests, errors: r.errors, inputTokens: r.input_tokens, outputTokens: r.output_tokens, costNanoUsd: r.cost_nano_usd,
        }));
      },
    },
    auditTrail: {
      async scan(afterSeq, limit) {
        return (await query<AuditDbRow>('SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSeq, limit])).map((r) => ({
          seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome,
          requestId: r.request_id, details: r.details, prevHash: r.prev_hash, hash: r.hash,
        }));
      },
      async range({ since, until, afterSeq, limit }) {
        return (await query<AuditDbRow>('SELECT * FROM audit_log WHERE seq > $1 AND ts >= $2 AND ts < $3 ORDER BY seq LIMIT $4', [afterSeq, since, until, limit]))
          .map(toAuditRow);
      },
      async latestCheckpoint() {
        const row = await one<CheckpointRow>('SELECT * FROM audit_checkpoints ORDER BY up_to_seq DESC, id DESC LIMIT 1');
        return row ? toCheckpoint(row) : undefined;
      },
      async prune(before, now, sign, audit) {
        return chained(async (c): Promise<AuditCheckpoint | undefined> => {
          // a prefix only: rows up to the first one young enough to keep, so the rest still chains
          const tail = (await c.query<{ seq: number }>('SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1')).rows[0];
          if (!tail) return undefined;
          const firstKept = (await c.query<{ seq: number | null }>('SELECT MIN(seq) AS seq FROM audit_log WHERE ts >= $1', [before])).rows[0]?.seq ?? null;
          const cut = firstKept === null ? tail.seq : firstKept - 1;
          const last = (await c.query<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_log WHERE seq <= $1 ORDER BY seq DESC LIMIT 1', [cut])).rows[0];
          if (!last) return undefined;
          const removed = (await c.query<{ n: number }>('SELECT COUNT(*) AS n FROM audit_log WHERE seq <= $1', [last.seq])).rows[0]?.n ?? 0;
          if (removed === 0) return undefined;
          const fields = { upToSeq: last.seq, upToHash: last.hash, removedCount: removed, createdAt: now };
          const signature = sign(fields);
          // the delete trigger lets rows through only inside this window, opened and closed in this
          // transaction (no other transaction ever sees it)
          await c.query('INSERT INTO audit_prune_window (up_to_seq) VALUES ($1)', [last.seq]);
          await c.query('DELETE FROM audit_log WHERE seq <= $1', [last.seq]);
          await c.query('DELETE FROM audit_prune_window');
          const id = (await c.query<{ id: number }>(
            'INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES ($1, $2, $3, $4, $5) RETURNING id',
            [fields.upToSeq, fields.upToHash, fields.removedCount, fields.createdAt, signature])).rows[0]?.id as number;
          await appendAudit(c, [audit({ id, ...fields, signature })]);
          return { id, ...fields, signature };
        });
      },
      async putSample(sample: ContentSample) {
        // no ON CONFLICT: a sample is never ignored, and a repeated sample id is an error
        await run(
          `INSERT INTO content_samples (${SAMPLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [sample.sampleId, sample.requestId, sample.tenantId, sample.createdAt, sample.expiresAt, sample.aadVersion, sample.iv, sample.tag, sample.ciphertext]);
      },
      async getSamples(filter) {
        const after = filter.after ?? null;
        const rows = await query<SampleRow>(
          `SELECT ${SAMPLE_COLUMNS} FROM content_samples WHERE request_id = $1 AND expires_at > $2 AND ($3::text IS NULL OR tenant_id = $3)
           AND ($4::bigint IS NULL OR (created_at, sample_id) > ($4::bigint, $5::text)) ORDER BY created_at, sample_id LIMIT $6`,
          [filter.requestId, filter.now, filter.tenantId ?? null, after?.createdAt ?? null, after?.sampleId ?? null, filter.limit]);
        return rows.map(toSample);
      },
      async deleteExpiredSamples(now) {
        return run('DELETE FROM content_samples WHERE expires_at <= $1', [now]);
      },
    },
    incidents: {
      async create(incident, audit) {
        await withAudit(audit, (c) => c.query(
          `INSERT INTO incidents (id, kind, target, target_ids, tenant_id, provider, since, contained_at, actor, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [incident.id, incident.kind, incident.target, JSON.stringify(incident.targetIds), incident.tenantId, incident.provider, incident.since,
            incident.containedAt, incident.actor, JSON.stringify(incident.details)]));
      },
      async get(id) {
        const r = await one<IncidentRow>('SELECT * FROM incidents WHERE id = $1', [id]);
        return r ? toIncident(r) : undefined;
      },
      async list() {
        return (await query<IncidentRow>('SELECT * FROM incidents ORDER BY contained_at, id COLLATE "C"')).map(toIncident);
      },
      async containedProviders() {
        // every provider whose register row an incident revoked (one leaked value can be registered for several)
        return (await query<{ provider: string }>(
          `SELECT DISTINCT pk.provider AS provider
           FROM incidents i CROSS JOIN LATERAL json_array_elements_text(i.target_ids::json) AS j(value)
           JOIN provider_keys pk ON pk.id = j.value
           WHERE i.kind = 'provider_key'`)).map((r) => r.provider);
      },
      async usageWindow({ keyId, tenantId, provider, since, until, limit }) {
        const [column, value] = keyId !== undefined ? ['key_id', keyId] : tenantId !== undefined ? ['tenant_id', tenantId] : provider !== undefined ? ['provider', provider] : [null, null];
        if (column === null) return [];
        return (await query<UsageDbRow>(`SELECT * FROM usage_ledger WHERE ${column} = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, id LIMIT $4`, [value, since, until, limit]))
          .map(toUsage);
      },
    },
    providerKeys: {
      async list() {
        return (await query<ProviderKeyRow>('SELECT * FROM provider_keys ORDER BY provider COLLATE "C", created_at, id COLLATE "C"')).map(toProviderKey);
      },
      async active() {
        return (await query<ProviderKeyRow>(`SELECT * FROM provider_keys WHERE state IN ('pending', 'current', 'previous')`)).map(toProviderKey);
      },
      async get(id) {
        const row = await one<ProviderKeyRow>('SELECT * FROM provider_keys WHERE id = $1', [id]);
        return row ? toProviderKey(row) : undefined;
      },
      async bootstrap(r, audit) {
        // under the chain lock, so two replicas bootstrapping at once see each other's row
        const inserted = await chained(async (c) => {
          if ((await c.query('SELECT id FROM provider_keys WHERE provider = $1 LIMIT 1', [r.provider])).rowCount) return false;
          await c.query(PROVIDER_KEY_INSERT, [r.id, r.provider, r.reference, r.fingerprint, r.version, 'current', r.owner, r.purpose, r.createdAt, r.rotatedAt, r.rotateEveryDays]);
          await appendAudit(c, [audit]);
          return true;
        });
        if (inserted) localChanges += 1;
        return inserted;
      },
      async addPending(r, rotationId, audit) {
        await withAudit(audit, async (c) => {
          const current = (await c.query<{ id: string }>(`SELECT id FROM provider_keys WHERE provider = $1 AND state = 'current'`, [r.provider])).rows[0];
          await c.query(PROVIDER_KEY_INSERT, [r.id, r.provider, r.reference, r.fingerprint, r.version, 'pending', r.owner, r.purpose, r.createdAt, null, r.rotateEveryDays]);
          await c.query('UPDATE provider_key_rotations SET new_key_id = $1, old_key_id = $2, step = 1 WHERE provider = $3 AND rotation_id = $4',
            [r.id, current?.id ?? null, r.provider, rotationId]);
        });
      },
      async abandonRotation(provider, rotationId, pendingId, audit) {
        await withAudit(audit, async (c) => {
          if (pendingId !== null) await c.query(`DELETE FROM provider_keys WHERE id = $1 AND state = 'pending'`, [pendingId]);
          await c.query('DELETE FROM provider_key_rotations WHERE provider = $1 AND rotation_id = $2', [provider, rotationId]);
        });
      },
      async promote(provider, rotationId, newId, previousUntil, at, audit) {
        await chained(async (c) => {
          const row = (await c.query<ProviderKeyRow>('SELECT * FROM provider_keys WHERE id = $1', [newId])).rows[0];
          if (!row || row.provider !== provider) throw new Error(`provider key ${newId} is not in the register`);
          if (row.state === 'current') {
            await c.query(ROTATION_SET_STEP, [3, null, provider, rotationId]);
            return;
          }
          if (row.state !== 'pending') throw new Error(`provider key ${newId} is ${row.state}, not pending`);
          const current = (await c.query<{ id: string }>(`SELECT id FROM provider_keys WHERE provider = $1 AND state = 'current'`, [provider])).rows[0];
          if (current) await c.query(`UPDATE provider_keys SET state = 'previous', previous_until = $1 WHERE id = $2 AND state = 'current'`, [previousUntil, current.id]);
          await c.query(`UPDATE provider_keys SET state = 'current', rotated_at = $1 WHERE id = $2 AND state = 'pending'`, [at, newId]);
          await c.query(ROTATION_SET_STEP, [3, current?.id ?? null, provider, rotationId]);
          await appendAudit(c, [audit]);
        });
      },
      async revoke(id, at, audit) {
        return withAudit(audit, async (c) => (await c.query(PROVIDER_KEY_REVOKE, [at, id])).rowCount === 1);
      },
      async expirePrevious(now, actor) {
        return chained(async (c) => {
          const rows = (await c.query<ProviderKeyRow>(
            `SELECT * FROM provider_keys WHERE state = 'previous' AND previous_until IS NOT NULL AND previous_until <= $1`, [now])).rows;
          for (const r of rows) await c.query(PROVIDER_KEY_REVOKE, [now, r.id]);
          await appendAudit(c, rows.map((r) => ({
            ts: now, actor, action: 'provider_key.revoke', target: r.id, outcome: 'success' as const, requestId: null,
            details: { provider: r.provider, fingerprint: r.fingerprint, reason: 'grace_period_ended' },
          })));
          return rows.map((r) => toProviderKey({ ...r, state: 'revoked', revoked_at: now, previous_until: null }));
        });
      },
      async setOwner(id, fields, audit) {
        await withAudit(audit, (c) => c.query(
          'UPDATE provider_keys SET owner = COALESCE($1, owner), purpose = COALESCE($2, purpose), rotate_every_days = COALESCE($3, rotate_every_days) WHERE id = $4',
          [fields.owner ?? null, fields.purpose ?? null, fields.rotateEveryDays ?? null, id]));
      },
      async lockRotation(provider, rotationId, lockedBy, now) {
        // the insert either creates the lock or meets the holder's row; a row finished between
        // the two statements is retried
        for (let attempt = 0; ; attempt += 1) {
          const created = await one<RotationRow>(
            `INSERT INTO provider_key_rotations (provider, rotation_id, step, old_key_id, new_key_id, started_at, locked_by, heartbeat_at)
             VALUES ($1, $2, 0, NULL, NULL, $3, $4, $5) ON CONFLICT (provider) DO NOTHING RETURNING *`, [provider, rotationId, now, lockedBy, now]);
          if (created) return { created: true, rotation: toRotation(created) };
          const existing = await one<RotationRow>('SELECT * FROM provider_key_rotations WHERE provider = $1', [provider]);
          if (existing) return { created: false, rotation: toRotation(existing) };
          if (attempt >= 5) throw new Error(`the rotation lock of ${provider} could not be read`);
        }
      },
      async takeOverRotation(provider, rotationId, previousHolder, lockedBy, now) {
        return (await run('UPDATE provider_key_rotations SET locked_by = $1, heartbeat_at = $2 WHERE provider = $3 AND rotation_id = $4 AND locked_by = $5',
          [lockedBy, now, provider, rotationId, previousHolder])) === 1;
      },
      async getRotation(provider) {
        const row = await one<RotationRow>('SELECT * FROM provider_key_rotations WHERE provider = $1', [provider]);
        return row ? toRotation(row) : undefined;
      },
      async heartbeat(provider, lockedBy, now) {
        await run('UPDATE provider_key_rotations SET heartbeat_at = $1 WHERE provider = $2 AND locked_by = $3', [now, provider, lockedBy]);
      },
      async setRotationStep(provider, rotationId, step, audit, oldKeyId) {
        const params = [step, oldKeyId ?? null, provider, rotationId];
        if (audit) await withAudit(audit, (c) => c.query(ROTATION_SET_STEP, params));
        else await run(ROTATION_SET_STEP, params);
      },
      async finishRotation(provider, rotationId, audit) {
        await withAudit(audit, (c) => c.query('DELETE FROM provider_key_rotations WHERE provider = $1 AND rotation_id = $2', [provider, rotationId]));
      },
    },
    responseOwners: {
      async put(records) {
        if (records.length === 0) return;
        // one row per hash (the last one wins): ON CONFLICT DO UPDATE cannot touch a row twice in one statement
        const last = new Map<string, { tenantId: string; createdAt: number }>();
        for (const r of records) last.set(r.responseHash, { tenantId: r.tenantId, createdAt: r.createdAt });
        await run(
          `INSERT INTO response_owners (response_hash, tenant_id, created_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
           ON CONFLICT (response_hash) DO UPDATE SET tenant_id = excluded.tenant_id, created_at = excluded.created_at`,
          [[...last.keys()], [...last.values()].map((v) => pgText(v.tenantId)), [...last.values()].map((v) => v.createdAt)]);
      },
      async ownedOf(responseHashes, tenantId, since) {
        if (responseHashes.length === 0) return new Set<string>();
        // one array parameter for any count (no statement built from input, no 65 535-parameter limit)
        const rows = await query<{ response_hash: string }>(
          'SELECT response_hash FROM response_owners WHERE response_hash = ANY($1::text[]) AND tenant_id = $2 AND created_at >= $3',
          [[...responseHashes], pgText(tenantId), since]);
        return new Set(rows.map((r) => r.response_hash));
      },
      async deleteBefore(before) {
        return run('DELETE FROM response_owners WHERE created_at < $1', [before]);
      },
    },
    async claimOnce(name, expiresAt) {
      return transaction(async (c) => {
        await c.query('DELETE FROM claims WHERE name = $1 AND expires_at <= $2', [name, Date.now()]);
        // a concurrent claimer waits for this insert to commit, then finds the row and gets false
        return (await c.query('INSERT INTO claims (name, expires_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, expiresAt])).rowCount === 1;
      });
    },
    async instanceSecret(name) {
      // whichever replica inserts first wins; every one reads the winner's value
      await run('INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [`secret:${name}`, randomBytes(32)]);
      const row = await one<{ value: Buffer }>('SELECT value FROM meta WHERE name = $1', [`secret:${name}`]);
      if (!row) throw new Error('instance secret could not be stored');
      return row.value;
    },
    async ping() {
      await query('SELECT 1');
    },
    async close() {
      if (closed) return;
      closed = true;
      await opening.catch(() => undefined);
      await feed?.close();
      await pool.end();
    },
  };
  return store;
}

/** Opens the PostgreSQL store and waits until it is migrated and listening (tests, tools). */
export async function createPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<Store> {
  const store = openPostgresStore(url, options);
  try {
    await store.ready();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
