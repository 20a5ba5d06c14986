import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type {
  AuditCheckpoint, AuditEvent, AuditRow, ContentSample, KeyWithTenant, Store, TenantRecord, UsageRecord, UsageSummaryRow,
} from '../types.js';
import { StoreConflictError } from '../types.js';
import { AUDIT_GENESIS, chainHash } from '../audit-chain.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import {
  SAMPLE_COLUMNS, toAdminToken, toAuditRow, toCheckpoint, toIncident, toKey, toProviderKey, toRotation, toSample, toTenant, toUsage,
  type AdminTokenRow, type AuditDbRow, type CheckpointRow, type IncidentRow, type KeyRow, type ProviderKeyRow, type RotationRow, type SampleRow,
  type TenantRow, type UsageDbRow,
} from '../rows.js';

interface UsageSummaryDbRow { tenant_id: string; model: string | null; requests: number; errors: number; input_tokens: number; output_tokens: number; cost_nano_usd: number }

type AuditQueryParams = [number, number, number, string | null, string | null, string | null, string | null, string | null, number];

/**
 * Audit rows of a range, optionally of some tenants and of an action prefix. The tenant an audit
 * row is about: `details.tenant` of request and key rows, the target of tenant rows. The prefix
 * is compared with substr, not LIKE, so `_` and `%` in it are plain characters.
 */
function auditQuerySql(order: 'ASC' | 'DESC'): string {
  return `SELECT * FROM audit_log WHERE seq > ? AND ts >= ? AND ts < ?
    AND (? IS NULL OR COALESCE(json_extract(details, '$.tenant'), CASE WHEN action LIKE 'tenant.%' THEN target END) IN (SELECT value FROM json_each(?)))
    AND (? IS NULL OR substr(action, 1, length(?)) = ?)
    ORDER BY seq ${order} LIMIT ?`;
}

/** Applies pending migrations inside one transaction each. */
function migrate(db: Database.Database): void {
  for (;;) {
    // read the level inside the write transaction: two processes opening a new file at once
    // (the CLI and the gateway, say) must not both apply the same migration
    const applied = db.transaction(() => {
      const level = db.pragma('user_version', { simple: true }) as number;
      if (level >= SQLITE_MIGRATIONS.length) return false;
      db.exec(SQLITE_MIGRATIONS[level] as string);
      db.pragma(`user_version = ${level + 1}`);
      return true;
    }).immediate();
    if (!applied) return;
  }
}

/** Rows per multi-row INSERT when a batch of usage or audit rows is written (20 columns × 32 = 640 parameters). */
const ROWS_PER_INSERT = 32;

/** How stale another process's commit may be when the gateway next checks its credential cache. */
const DATA_VERSION_RECHECK_MS = 2;

/**
 * The embedded store: one SQLite file in WAL mode, safe to share between the gateway and CLI
 * processes on the same machine. Every statement is prepared with parameters, never concatenated.
 *
 * @example const store = openSqliteStore('sqlite:./data/keywarden.db')
 */
export function openSqliteStore(url: string): Store {
  const path = url.replace(/^sqlite:/, '');
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // create the file owner-only; SQLite gives its -wal and -shm files the same mode
    closeSync(openSync(path, 'a', 0o600));
  }
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db);

  const q = {
    insertTenant: db.prepare('INSERT INTO tenants (id, name, status, policy, created_at) VALUES (?, ?, ?, ?, ?)'),
    tenantByName: db.prepare<[string], TenantRow>('SELECT * FROM tenants WHERE name = ?'),
    tenants: db.prepare<[], TenantRow>('SELECT * FROM tenants ORDER BY name'),
    setTenantStatus: db.prepare('UPDATE tenants SET status = ? WHERE id = ?'),
    setTenantPolicy: db.prepare('UPDATE tenants SET policy = ? WHERE id = ?'),
    insertKey: db.prepare('INSERT INTO tenant_keys (id, tenant_id, secret_hash, label, created_at, expires_at, revoked_at, limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    setKeyLimits: db.prepare('UPDATE tenant_keys SET limits = ? WHERE id = ?'),
    keyWithTenant: db.prepare<[string], KeyRow & { t_name: string; t_status: string; t_policy: string | null; t_created_at: number }>(
      `SELECT k.*, t.name AS t_name, t.status AS t_status, t.policy AS t_policy, t.created_at AS t_created_at
       FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?`),
    key: db.prepare<[string], KeyRow>('SELECT * FROM tenant_keys WHERE id = ?'),
    keys: db.prepare<[], KeyRow>('SELECT * FROM tenant_keys ORDER BY created_at, id'),
    keysOfTenant: db.prepare<[string], KeyRow>('SELECT * FROM tenant_keys WHERE tenant_id = ? ORDER BY created_at, id'),
    revokeKey: db.prepare('UPDATE tenant_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    revokeByLabel: db.prepare('UPDATE tenant_keys SET revoked_at = ? WHERE tenant_id = ? AND label = ? AND revoked_at IS NULL'),
    sumTenantReq: db.prepare<[string, number, number], { v: number | null }>(`SELECT COUNT(*) AS v FROM usage_ledger WHERE tenant_id = ? AND ts >= ? AND ts < ? AND outcome != 'refused'`),
    sumTenantTok: db.prepare<[string, number, number], { v: number | null }>('SELECT SUM(input_tokens + output_tokens) AS v FROM usage_ledger WHERE tenant_id = ? AND ts >= ? AND ts < ?'),
    sumTenantUsd: db.prepare<[string, number, number], { v: number | null }>('SELECT SUM(cost_nano_usd) AS v FROM usage_ledger WHERE tenant_id = ? AND ts >= ? AND ts < ?'),
    sumKeyReq: db.prepare<[string, number, number], { v: number | null }>(`SELECT COUNT(*) AS v FROM usage_ledger WHERE key_id = ? AND ts >= ? AND ts < ? AND outcome != 'refused'`),
    sumKeyTok: db.prepare<[string, number, number], { v: number | null }>('SELECT SUM(input_tokens + output_tokens) AS v FROM usage_ledger WHERE key_id = ? AND ts >= ? AND ts < ?'),
    sumKeyUsd: db.prepare<[string, number, number], { v: number | null }>('SELECT SUM(cost_nano_usd) AS v FROM usage_ledger WHERE key_id = ? AND ts >= ? AND ts < ?'),
    claimDelete: db.prepare('DELETE FROM claims WHERE name = ? AND expires_at <= ?'),
    claimInsert: db.prepare('INSERT OR IGNORE INTO claims (name, expires_at) VALUES (?, ?)'),
    usage: db.prepare<[number], UsageDbRow>('SELECT * FROM usage_ledger ORDER BY id DESC LIMIT ?'),
    usageOfTenant: db.prepare<[string, number], UsageDbRow>('SELECT * FROM usage_ledger WHERE tenant_id = ? ORDER BY id DESC LIMIT ?'),
    lastAudit: db.prepare<[], { seq: number; hash: string }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1'),
    audit: db.prepare<[number, number], AuditDbRow>('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?'),
    // the tenant an audit row is about: `details.tenant` of request and key rows, the target of tenant rows
    auditQuery: db.prepare<AuditQueryParams, AuditDbRow>(auditQuerySql('ASC')),
    auditQueryNewest: db.prepare<AuditQueryParams, AuditDbRow>(auditQuerySql('DESC')),
    usageSummary: db.prepare<[number, number, string | null, string | null], UsageSummaryDbRow>(
      `SELECT tenant_id, model, COUNT(*) AS requests, SUM(CASE WHEN outcome != 'success' THEN 1 ELSE 0 END) AS errors,
       SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, SUM(cost_nano_usd) AS cost_nano_usd
       FROM usage_ledger WHERE ts >= ? AND ts < ? AND (? IS NULL OR tenant_id IN (SELECT value FROM json_each(?)))
       GROUP BY tenant_id, model ORDER BY tenant_id, model`),
    adminTokenInsert: db.prepare('INSERT INTO admin_tokens (id, owner, role, tenant_ids, secret_hash, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    adminTokenGet: db.prepare<[string], AdminTokenRow>('SELECT * FROM admin_tokens WHERE id = ?'),
    adminTokenAll: db.prepare<[], AdminTokenRow>('SELECT * FROM admin_tokens ORDER BY created_at, id'),
    adminTokenRevoke: db.prepare('UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    auditRange: db.prepare<[number, number, number, number], AuditDbRow>('SELECT * FROM audit_log WHERE seq > ? AND ts >= ? AND ts < ? ORDER BY seq LIMIT ?'),
    lastCheckpoint: db.prepare<[], CheckpointRow>('SELECT * FROM audit_checkpoints ORDER BY up_to_seq DESC, id DESC LIMIT 1'),
    firstAuditFrom: db.prepare<[number], { seq: number }>('SELECT MIN(seq) AS seq FROM audit_log WHERE ts >= ?'),
    auditAt: db.prepare<[number], { seq: number; hash: string }>('SELECT seq, hash FROM audit_log WHERE seq <= ? ORDER BY seq DESC LIMIT 1'),
    countAuditUpTo: db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM audit_log WHERE seq <= ?'),
    openPruneWindow: db.prepare('INSERT INTO audit_prune_window (up_to_seq) VALUES (?)'),
    closePruneWindow: db.prepare('DELETE FROM audit_prune_window'),
    deleteAuditUpTo: db.prepare('DELETE FROM audit_log WHERE seq <= ?'),
    insertCheckpoint: db.prepare('INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES (?, ?, ?, ?, ?)'),
    // a plain INSERT: a sample is never ignored, and a repeated sample id is an error
    insertSample: db.prepare(`INSERT INTO content_samples (${SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    samples: db.prepare<[string, number, string | null, string | null, number | null, number | null, string | null, number], SampleRow>(
      `SELECT ${SAMPLE_COLUMNS} FROM content_samples WHERE request_id = ? AND expires_at > ? AND (? IS NULL OR tenant_id = ?)
       AND (? IS NULL OR (created_at, sample_id) > (?, ?)) ORDER BY created_at, sample_id LIMIT ?`),
    deleteExpiredSamples: db.prepare('DELETE FROM content_samples WHERE expires_at <= ?'),
    metaGet: db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE name = ?'),
    metaInsert: db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)'),
    ping: db.prepare('SELECT 1'),
    ownerPut: db.prepare(
      `INSERT INTO response_owners (response_hash, tenant_id, created_at) VALUES (?, ?, ?)
       ON CONFLICT (response_hash) DO UPDATE SET tenant_id = excluded.tenant_id, created_at = excluded.created_at`),
    // the hashes travel as one JSON array parameter: one statement for any count, no SQL built from
    // input and no host-parameter limit; each is then a primary-key lookup
    ownerOf: db.prepare<[string, string, number], { response_hash: string }>(
      'SELECT response_hash FROM response_owners WHERE response_hash IN (SELECT value FROM json_each(?)) AND tenant_id = ? AND created_at >= ?'),
    ownerPrune: db.prepare('DELETE FROM response_owners WHERE created_at < ?'),
    pkAll: db.prepare<[], ProviderKeyRow>('SELECT * FROM provider_keys ORDER BY provider, created_at, id'),
    pkActive: db.prepare<[], ProviderKeyRow>(`SELECT * FROM provider_keys WHERE state IN ('pending', 'current', 'previous')`),
    pkGet: db.prepare<[string], ProviderKeyRow>('SELECT * FROM provider_keys WHERE id = ?'),
    pkAnyOfProvider: db.prepare<[string], { id: string }>('SELECT id FROM provider_keys WHERE provider = ? LIMIT 1'),
    pkCurrent: db.prepare<[string], ProviderKeyRow>(`SELECT * FROM provider_keys WHERE provider = ? AND state = 'current'`),
    pkInsert: db.prepare(
      `INSERT INTO provider_keys (id, provider, reference, fingerprint, version, state, owner, purpose, created_at, rotated_at,
        rotate_every_days, previous_until, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    pkDelete: db.prepare(`DELETE FROM provider_keys WHERE id = ? AND state = 'pending'`),
    pkToPrevious: db.prepare(`UPDATE provider_keys SET state = 'previous', previous_until = ? WHERE id = ? AND state = 'current'`),
    pkToCurrent: db.prepare(`UPDATE provider_keys SET state = 'current', rotated_at = ? WHERE id = ? AND state = 'pending'`),
    pkRevoke: db.prepare(`UPDATE provider_keys SET state = 'revoked', revoked_at = ?, previous_until = NULL WHERE id = ? AND state != 'revoked'`),
    pkExpired: db.prepare<[number], ProviderKeyRow>(`SELECT * FROM provider_keys WHERE state = 'previous' AND previous_until IS NOT NULL AND previous_until <= ?`),
    pkSetOwner: db.prepare('UPDATE provider_keys SET owner = COALESCE(?, owner), purpose = COALESCE(?, purpose), rotate_every_days = COALESCE(?, rotate_every_days) WHERE id = ?'),
    rotGet: db.prepare<[string], RotationRow>('SELECT * FROM provider_key_rotations WHERE provider = ?'),
    rotInsert: db.prepare('INSERT INTO provider_key_rotations (provider, rotation_id, step, old_key_id, new_key_id, started_at, locked_by, heartbeat_at) VALUES (?, ?, 0, NULL, NULL, ?, ?, ?)'),
    rotTakeOver: db.prepare('UPDATE provider_key_rotations SET locked_by = ?, heartbeat_at = ? WHERE provider = ? AND rotation_id = ? AND locked_by = ?'),
    rotHeartbeat: db.prepare('UPDATE provider_key_rotations SET heartbeat_at = ? WHERE provider = ? AND locked_by = ?'),
    rotSetNew: db.prepare('UPDATE provider_key_rotations SET new_key_id = ?, old_key_id = ?, step = 1 WHERE provider = ? AND rotation_id = ?'),
    rotSetStep: db.prepare('UPDATE provider_key_rotations SET step = MAX(step, ?), old_key_id = COALESCE(?, old_key_id) WHERE provider = ? AND rotation_id = ?'),
    rotDelete: db.prepare('DELETE FROM provider_key_rotations WHERE provider = ? AND rotation_id = ?'),
    incInsert: db.prepare(
      `INSERT INTO incidents (id, kind, target, target_ids, tenant_id, provider, since, contained_at, actor, details)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    incGet: db.prepare<[string], IncidentRow>('SELECT * FROM incidents WHERE id = ?'),
    incAll: db.prepare<[], IncidentRow>('SELECT * FROM incidents ORDER BY contained_at, id'),
    // every provider whose register row an incident revoked (one leaked value can be registered for several)
    incProviders: db.prepare<[], { provider: string }>(
      `SELECT DISTINCT pk.provider AS provider FROM incidents i, json_each(i.target_ids) j JOIN provider_keys pk ON pk.id = j.value
       WHERE i.kind = 'provider_key'`),
    usageWindowKey: db.prepare<[string, number, number, number], UsageDbRow>('SELECT * FROM usage_ledger WHERE key_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?'),
    usageWindowTenant: db.prepare<[string, number, number, number], UsageDbRow>('SELECT * FROM usage_ledger WHERE tenant_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?'),
    usageWindowProvider: db.prepare<[string, number, number, number], UsageDbRow>('SELECT * FROM usage_ledger WHERE provider = ? AND ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?'),
  };

  /**
   * Inserts many rows with multi-row INSERT statements of up to ROWS_PER_INSERT rows: one
   * statement step per chunk instead of one per row, most of the per-row cost of a batch. The
   * statement for each chunk size is prepared once, on first use.
   */
  function createBatchInsert(head: string, columns: number) {
    const statements = new Map<number, Database.Statement>();
    const row = `(${new Array(columns).fill('?').join(', ')})`;
    const statementFor = (rows: number) => {
      let statement = statements.get(rows);
      if (!statement) {
        statement = db.prepare(`${head} VALUES ${new Array(rows).fill(row).join(', ')}`);
        statements.set(rows, statement);
      }
      return statement;
    };
    return (params: readonly unknown[]): void => {
      const rows = params.length / columns;
      for (let first = 0; first < rows; first += ROWS_PER_INSERT) {
        const count = Math.min(ROWS_PER_INSERT, rows - first);
        statementFor(count).run(params.slice(first * columns, (first + count) * columns));
      }
    };
  }
  const insertUsageRows = createBatchInsert(
    `INSERT INTO usage_ledger (ts, request_id, tenant_id, key_id, provider, model, endpoint, status, outcome, error_code,
      input_tokens, output_tokens, cached_input_tokens, stream, gateway_ms, upstream_ms, prompt_fingerprint, cost_nano_usd, client_hmac, provider_key_id)`, 20);
  const insertAuditRows = createBatchInsert('INSERT INTO audit_log (seq, ts, actor, action, target, outcome, request_id, details, prev_hash, hash)', 10);

  // Chains events onto the audit log; must run inside a write transaction so the tail is stable.
  function appendAudit(events: readonly AuditEvent[]): void {
    // after a prune removed every row, the chain continues from the newest checkpoint
    let last: { seq: number; hash: string } | undefined = q.lastAudit.get();
    if (!last) {
      const cp = q.lastCheckpoint.get();
      if (cp) last = { seq: cp.up_to_seq, hash: cp.up_to_hash };
    }
    let seq = last?.seq ?? 0;
    let prev = last?.hash ?? AUDIT_GENESIS;
    const params: unknown[] = [];
    for (const event of events) {
      seq += 1;
      const hash = chainHash(prev, seq, event);
      params.push(seq, event.ts, event.actor, event.action, event.target, event.outcome, event.requestId, JSON.stringify(event.details), prev, hash);
      prev = hash;
    }
    insertAuditRows(params);
  }

  // A write plus its audit event commit together or not at all.
  function withAudit<T>(audit: AuditEvent, write: () => T): T {
    const result = db.transaction(() => {
      const r = write();
      appendAudit([audit]);
      return r;
    }).immediate();
    localChanges += 1;
    return result;
  }

  // changeStamp: this connection's own audited writes, plus SQLite's data_version, which moves
  // when another connection (the CLI, another process) commits
  let localChanges = 0;
  const dataVersion = db.prepare('PRAGMA data_version').pluck();
  // reading data_version is a statement (~10 µs here); on a busy gateway it is re-read at most
  // every DATA_VERSION_RECHECK_MS, so another process's change applies within that time
  let knownDataVersion = dataVersion.get() as number;
  let dataVersionReadAt = Date.now();

  const store: Store = {
    kind: 'sqlite',
    changeStamp() {
      const at = Date.now();
      if (at - dataVersionReadAt >= DATA_VERSION_RECHECK_MS || at < dataVersionReadAt) {
        knownDataVersion = dataVersion.get() as number;
        dataVersionReadAt = at;
      }
      // both counters only grow, so their sum changes whenever either does
      return localChanges + knownDataVersion;
    },
    adminTokens: {
      async create(t, audit) {
        withAudit(audit, () => q.adminTokenInsert.run(t.id, t.owner, t.role, t.tenantIds === null ? null : JSON.stringify(t.tenantIds), t.secretHash,
          t.createdAt, t.expiresAt, t.revokedAt));
      },
      async get(id) {
        const row = q.adminTokenGet.get(id);
        return row ? toAdminToken(row) : undefined;
      },
      async list() {
        return q.adminTokenAll.all().map(toAdminToken);
      },
      async revoke(id, at, audit) {
        withAudit(audit, () => q.adminTokenRevoke.run(at, id));
      },
    },
    tenants: {
      async create(name, policy, audit) {
        const tenant: TenantRecord = { id: `t_${randomUUID().replaceAll('-', '').slice(0, 16)}`, name, status: 'active', policy, createdAt: Date.now() };
        try {
          withAudit({ ...audit, target: tenant.id }, () =>
            q.insertTenant.run(tenant.id, name, tenant.status, policy === null ? null : JSON.stringify(policy), tenant.createdAt));
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new StoreConflictError('a tenant with this name exists');
          throw err;
        }
        return tenant;
      },
      async getByName(name) {
        const row = q.tenantByName.get(name);
        return row ? toTenant(row) : undefined;
      },
      async list() {
        return q.tenants.all().map(toTenant);
      },
      async setStatus(id, status, audit) {
        withAudit(audit, () => q.setTenantStatus.run(status, id));
      },
      async setPolicy(id, policy, audit) {
        withAudit(audit, () => q.setTenantPolicy.run(policy === null ? null : JSON.stringify(policy), id));
      },
    },
    keys: {
      async create(key, audit) {
        withAudit(audit, () =>
          q.insertKey.run(key.id, key.tenantId, key.secretHash, key.label, key.createdAt, key.expiresAt, key.revokedAt,
            key.limits === null ? null : JSON.stringify(key.limits)));
      },
      async findWithTenant(keyId): Promise<KeyWithTenant | undefined> {
        const row = q.keyWithTenant.get(keyId);
        if (!row) return undefined;
        return {
          key: toKey(row),
          tenant: toTenant({ id: row.tenant_id, name: row.t_name, status: row.t_status, policy: row.t_policy, created_at: row.t_created_at }),
        };
      },
      async get(keyId) {
        const row = q.key.get(keyId);
        return row ? toKey(row) : undefined;
      },
      async list(tenantId) {
        return (tenantId === undefined ? q.keys.all() : q.keysOfTenant.all(tenantId)).map(toKey);
      },
      async revoke(keyId, at, audit) {
        withAudit(audit, () => q.revokeKey.run(at, keyId));
      },
      async setLimits(keyId, limits, audit) {
        withAudit(audit, () => q.setKeyLimits.run(limits === null ? null : JSON.stringify(limits), keyId));
      },
      async revokeByLabel(tenantId, label, at) {
        const changed = q.revokeByLabel.run(at, tenantId, label).changes;
        localChanges += 1;
        return changed;
      },
    },
    records: {
      async append(usage: readonly UsageRecord[], audit: readonly AuditEvent[]) {
        db.transaction(() => {
          const params: unknown[] = [];
          for (const u of usage) {
            params.push(u.ts, u.requestId, u.tenantId, u.keyId, u.provider, u.model, u.endpoint, u.status, u.outcome, u.errorCode,
              u.inputTokens, u.outputTokens, u.cachedInputTokens, u.stream ? 1 : 0, u.gatewayMs, u.upstreamMs, u.promptFingerprint, u.costNanoUsd, u.clientHmac ?? null,
              u.providerKeyId ?? null);
          }
          insertUsageRows(params);
          if (audit.length > 0) appendAudit(audit);
        }).immediate();
      },
      async listUsage({ tenantId, limit }) {
        const rows = tenantId === undefined ? q.usage.all(limit) : q.usageOfTenant.all(tenantId, limit);
        return rows.map(toUsage);
      },
      async sumUsage({ scope, id, metric, since, until }) {
        const stmt = scope === 'tenant'
          ? (metric === 'req' ? q.sumTenantReq : metric === 'tok' ? q.sumTenantTok : q.sumTenantUsd)
          : (metric === 'req' ? q.sumKeyReq : metric === 'tok' ? q.sumKeyTok : q.sumKeyUsd);
        return stmt.get(id, since, until)?.v ?? 0;
      },
      async listAudit({ afterSeq = 0, limit }): Promise<AuditRow[]> {
        return q.audit.all(afterSeq, limit).map(toAuditRow);
      },
      async queryAudit({ tenantIds, since, until, afterSeq, limit, action, newestFirst }): Promise<AuditRow[]> {
        const scope = tenantIds === undefined ? null : JSON.stringify(tenantIds);
        const prefix = action ?? null;
        return (newestFirst ? q.auditQueryNewest : q.auditQuery).all(afterSeq, since, until, scope, scope, prefix, prefix, prefix, limit).map(toAuditRow);
      },
      async summarizeUsage({ tenantIds, since, until }): Promise<UsageSummaryRow[]> {
        const scope = tenantIds === undefined ? null : JSON.stringify(tenantIds);
        return q.usageSummary.all(since, until, scope, scope).map((r) => ({
          tenantId: r.tenant_id, model: r.model, requests: r.requests, errors: r.errors, inputTokens: r.input_tokens, outputTokens: r.output_tokens, costNanoUsd: r.cost_nano_usd,
        }));
      },
    },
    auditTrail: {
      async scan(afterSeq, limit) {
        return q.audit.all(afterSeq, limit).map((r) => ({
          seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome,
          requestId: r.request_id, details: r.details, prevHash: r.prev_hash, hash: r.hash,
        }));
      },
      async range({ since, until, afterSeq, limit }) {
        return q.auditRange.all(afterSeq, since, until, limit).map(toAuditRow);
      },
      async latestCheckpoint() {
        const row = q.lastCheckpoint.get();
        return row ? toCheckpoint(row) : undefined;
      },
      async prune(before, now, sign, audit) {
        return db.transaction((): AuditCheckpoint | undefined => {
          // a prefix only: rows up to the first one young enough to keep, so the rest still chains
          const tail = q.lastAudit.get();
          if (!tail) return undefined;
          const firstKept = q.firstAuditFrom.get(before)?.seq ?? null;
          const cut = firstKept === null ? tail.seq : firstKept - 1;
          const last = q.auditAt.get(cut);
          if (!last) return undefined;
          const removed = q.countAuditUpTo.get(last.seq)?.n ?? 0;
          if (removed === 0) return undefined;
          const fields = { upToSeq: last.seq, upToHash: last.hash, removedCount: removed, createdAt: now };
          const signature = sign(fields);
          // the delete trigger lets rows through only inside this window, opened and closed in this transaction
          q.openPruneWindow.run(last.seq);
          q.deleteAuditUpTo.run(last.seq);
          q.closePruneWindow.run();
          const id = Number(q.insertCheckpoint.run(fields.upToSeq, fields.upToHash, fields.removedCount, fields.createdAt, signature).lastInsertRowid);
          appendAudit([audit({ id, ...fields, signature })]);
          return { id, ...fields, signature };
        }).immediate();
      },
      async putSample(sample: ContentSample) {
        q.insertSample.run(sample.sampleId, sample.requestId, sample.tenantId, sample.createdAt, sample.expiresAt, sample.aadVersion, sample.iv, sample.tag, sample.ciphertext);
      },
      async getSamples(filter) {
        const tenant = filter.tenantId ?? null;
        const after = filter.after ?? null;
        return q.samples.all(filter.requestId, filter.now, tenant, tenant, after?.createdAt ?? null, after?.createdAt ?? null, after?.sampleId ?? null, filter.limit).map(toSample);
      },
      async deleteExpiredSamples(now) {
        return q.deleteExpiredSamples.run(now).changes;
      },
    },
    incidents: {
      async create(incident, audit) {
        withAudit(audit, () => q.incInsert.run(incident.id, incident.kind, incident.target, JSON.stringify(incident.targetIds), incident.tenantId,
          incident.provider, incident.since, incident.containedAt, incident.actor, JSON.stringify(incident.details)));
      },
      async get(id) {
        const r = q.incGet.get(id);
        return r ? toIncident(r) : undefined;
      },
      async list() {
        return q.incAll.all().map(toIncident);
      },
      async containedProviders() {
        return q.incProviders.all().map((r) => r.provider);
      },
      async usageWindow({ keyId, tenantId, provider, since, until, limit }) {
        const rows = keyId !== undefined ? q.usageWindowKey.all(keyId, since, until, limit)
          : tenantId !== undefined ? q.usageWindowTenant.all(tenantId, since, until, limit)
            : provider !== undefined ? q.usageWindowProvider.all(provider, since, until, limit) : [];
        return rows.map(toUsage);
      },
    },
    providerKeys: {
      async list() {
        return q.pkAll.all().map(toProviderKey);
      },
      async active() {
        return q.pkActive.all().map(toProviderKey);
      },
      async get(id) {
        const row = q.pkGet.get(id);
        return row ? toProviderKey(row) : undefined;
      },
      async bootstrap(r, audit) {
        return db.transaction(() => {
          if (q.pkAnyOfProvider.get(r.provider)) return false;
          q.pkInsert.run(r.id, r.provider, r.reference, r.fingerprint, r.version, 'current', r.owner, r.purpose, r.createdAt, r.rotatedAt,
            r.rotateEveryDays, null, null);
          appendAudit([audit]);
          return true;
        }).immediate();
      },
      async addPending(r, rotationId, audit) {
        withAudit(audit, () => {
          const current = q.pkCurrent.get(r.provider);
          q.pkInsert.run(r.id, r.provider, r.reference, r.fingerprint, r.version, 'pending', r.owner, r.purpose, r.createdAt, null,
            r.rotateEveryDays, null, null);
          q.rotSetNew.run(r.id, current?.id ?? null, r.provider, rotationId);
        });
      },
      async abandonRotation(provider, rotationId, pendingId, audit) {
        withAudit(audit, () => {
          if (pendingId !== null) q.pkDelete.run(pendingId);
          q.rotDelete.run(provider, rotationId);
        });
      },
      async promote(provider, rotationId, newId, previousUntil, at, audit) {
        db.transaction(() => {
          const row = q.pkGet.get(newId);
          if (!row || row.provider !== provider) throw new Error(`provider key ${newId} is not in the register`);
          if (row.state === 'current') {
            q.rotSetStep.run(3, null, provider, rotationId);
            return;
          }
          if (row.state !== 'pending') throw new Error(`provider key ${newId} is ${row.state}, not pending`);
          const current = q.pkCurrent.get(provider);
          if (current) q.pkToPrevious.run(previousUntil, current.id);
          q.pkToCurrent.run(at, newId);
          q.rotSetStep.run(3, current?.id ?? null, provider, rotationId);
          appendAudit([audit]);
        }).immediate();
      },
      async revoke(id, at, audit) {
        return withAudit(audit, () => q.pkRevoke.run(at, id).changes === 1);
      },
      async expirePrevious(now, actor) {
        return db.transaction(() => {
          const rows = q.pkExpired.all(now);
          for (const r of rows) q.pkRevoke.run(now, r.id);
          if (rows.length > 0) {
            appendAudit(rows.map((r) => ({
              ts: now, actor, action: 'provider_key.revoke', target: r.id, outcome: 'success' as const, requestId: null,
              details: { provider: r.provider, fingerprint: r.fingerprint, reason: 'grace_period_ended' },
            })));
          }
          return rows.map((r) => toProviderKey({ ...r, state: 'revoked', revoked_at: now, previous_until: null }));
        }).immediate();
      },
      async setOwner(id, fields, audit) {
        withAudit(audit, () => q.pkSetOwner.run(fields.owner ?? null, fields.purpose ?? null, fields.rotateEveryDays ?? null, id));
      },
      async lockRotation(provider, rotationId, lockedBy, now) {
        return db.transaction(() => {
          const existing = q.rotGet.get(provider);
          if (existing) return { created: false, rotation: toRotation(existing) };
          q.rotInsert.run(provider, rotationId, now, lockedBy, now);
          return { created: true, rotation: toRotation(q.rotGet.get(provider) as RotationRow) };
        }).immediate();
      },
      async takeOverRotation(provider, rotationId, previousHolder, lockedBy, now) {
        return q.rotTakeOver.run(lockedBy, now, provider, rotationId, previousHolder).changes === 1;
      },
      async getRotation(provider) {
        const row = q.rotGet.get(provider);
        return row ? toRotation(row) : undefined;
      },
      async heartbeat(provider, lockedBy, now) {
        q.rotHeartbeat.run(now, provider, lockedBy);
      },
      async setRotationStep(provider, rotationId, step, audit, oldKeyId) {
        const write = () => q.rotSetStep.run(step, oldKeyId ?? null, provider, rotationId);
        if (audit) withAudit(audit, write);
        else write();
      },
      async finishRotation(provider, rotationId, audit) {
        withAudit(audit, () => q.rotDelete.run(provider, rotationId));
      },
    },
    responseOwners: {
      async put(records) {
        if (records.length === 0) return;
        db.transaction(() => {
          for (const r of records) q.ownerPut.run(r.responseHash, r.tenantId, r.createdAt);
        }).immediate();
      },
      async ownedOf(responseHashes, tenantId, since) {
        if (responseHashes.length === 0) return new Set<string>();
        return new Set(q.ownerOf.all(JSON.stringify(responseHashes), tenantId, since).map((r) => r.response_hash));
      },
      async deleteBefore(before) {
        return q.ownerPrune.run(before).changes;
      },
    },
    async claimOnce(name, expiresAt) {
      return db.transaction(() => {
        q.claimDelete.run(name, Date.now());
        return q.claimInsert.run(name, expiresAt).changes === 1;
      }).immediate();
    },
    async instanceSecret(name) {
      q.metaInsert.run(`secret:${name}`, randomBytes(32));
      const row = q.metaGet.get(`secret:${name}`);
      if (!row) throw new Error('instance secret could not be stored');
      return row.value;
    },
    async ping() {
      q.ping.get();
    },
    async close() {
      if (db.open) db.close();
    },
  };
  return store;
}
