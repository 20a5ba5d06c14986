import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type {
  AuditEvent, AuditRow, KeyWithTenant, Store, TenantKeyRecord, TenantRecord, TenantStatus, UsageRecord,
} from '../types.js';
import { StoreConflictError } from '../types.js';
import { AUDIT_GENESIS, chainHash } from '../audit-chain.js';
import { SQLITE_MIGRATIONS } from './migrations.js';

interface TenantRow { id: string; name: string; status: string; policy: string | null; created_at: number }
interface KeyRow { id: string; tenant_id: string; secret_hash: string; label: string | null; created_at: number; expires_at: number | null; revoked_at: number | null; limits: string | null }
interface AuditDbRow { seq: number; ts: number; actor: string; action: string; target: string | null; outcome: string; request_id: string | null; details: string; prev_hash: string; hash: string }
interface UsageDbRow {
  ts: number; request_id: string; tenant_id: string; key_id: string; provider: string | null; model: string | null; endpoint: string;
  status: number; outcome: string; error_code: string | null; input_tokens: number; output_tokens: number; cached_input_tokens: number;
  stream: number; gateway_ms: number; upstream_ms: number; prompt_fingerprint: string | null; cost_nano_usd: number;
}

function toTenant(row: TenantRow): TenantRecord {
  return {
    id: row.id,
    name: row.name,
    status: row.status as TenantStatus,
    policy: row.policy === null ? null : (JSON.parse(row.policy) as Record<string, unknown>),
    createdAt: row.created_at,
  };
}

function toKey(row: KeyRow): TenantKeyRecord {
  return {
    id: row.id, tenantId: row.tenant_id, secretHash: row.secret_hash, label: row.label,
    createdAt: row.created_at, expiresAt: row.expires_at, revokedAt: row.revoked_at,
    limits: row.limits === null ? null : (JSON.parse(row.limits) as Record<string, unknown>),
  };
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
    insertUsage: db.prepare(
      `INSERT INTO usage_ledger (ts, request_id, tenant_id, key_id, provider, model, endpoint, status, outcome, error_code,
        input_tokens, output_tokens, cached_input_tokens, stream, gateway_ms, upstream_ms, prompt_fingerprint, cost_nano_usd)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
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
    insertAudit: db.prepare(
      `INSERT INTO audit_log (seq, ts, actor, action, target, outcome, request_id, details, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    audit: db.prepare<[number, number], AuditDbRow>('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?'),
    metaGet: db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE name = ?'),
    metaInsert: db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)'),
    ping: db.prepare('SELECT 1'),
  };

  // Chains events onto the audit log; must run inside a write transaction so the tail is stable.
  function appendAudit(events: readonly AuditEvent[]): void {
    const last = q.lastAudit.get();
    let seq = last?.seq ?? 0;
    let prev = last?.hash ?? AUDIT_GENESIS;
    for (const event of events) {
      seq += 1;
      const hash = chainHash(prev, seq, event);
      q.insertAudit.run(seq, event.ts, event.actor, event.action, event.target, event.outcome, event.requestId,
        JSON.stringify(event.details), prev, hash);
      prev = hash;
    }
  }

  // A write plus its audit event commit together or not at all.
  function withAudit<T>(audit: AuditEvent, write: () => T): T {
    return db.transaction(() => {
      const result = write();
      appendAudit([audit]);
      return result;
    }).immediate();
  }

  const store: Store = {
    kind: 'sqlite',
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
        return q.revokeByLabel.run(at, tenantId, label).changes;
      },
    },
    records: {
      async append(usage: readonly UsageRecord[], audit: readonly AuditEvent[]) {
        db.transaction(() => {
          for (const u of usage) {
            q.insertUsage.run(u.ts, u.requestId, u.tenantId, u.keyId, u.provider, u.model, u.endpoint, u.status, u.outcome, u.errorCode,
              u.inputTokens, u.outputTokens, u.cachedInputTokens, u.stream ? 1 : 0, u.gatewayMs, u.upstreamMs, u.promptFingerprint, u.costNanoUsd);
          }
          if (audit.length > 0) appendAudit(audit);
        }).immediate();
      },
      async listUsage({ tenantId, limit }) {
        const rows = tenantId === undefined ? q.usage.all(limit) : q.usageOfTenant.all(tenantId, limit);
        return rows.map((r) => ({
          ts: r.ts, requestId: r.request_id, tenantId: r.tenant_id, keyId: r.key_id, provider: r.provider, model: r.model,
          endpoint: r.endpoint, status: r.status, outcome: r.outcome, errorCode: r.error_code, inputTokens: r.input_tokens,
          outputTokens: r.output_tokens, cachedInputTokens: r.cached_input_tokens, stream: r.stream === 1,
          gatewayMs: r.gateway_ms, upstreamMs: r.upstream_ms, promptFingerprint: r.prompt_fingerprint, costNanoUsd: r.cost_nano_usd,
        }));
      },
      async sumUsage({ scope, id, metric, since, until }) {
        const stmt = scope === 'tenant'
          ? (metric === 'req' ? q.sumTenantReq : metric === 'tok' ? q.sumTenantTok : q.sumTenantUsd)
          : (metric === 'req' ? q.sumKeyReq : metric === 'tok' ? q.sumKeyTok : q.sumKeyUsd);
        return stmt.get(id, since, until)?.v ?? 0;
      },
      async listAudit({ afterSeq = 0, limit }): Promise<AuditRow[]> {
        return q.audit.all(afterSeq, limit).map((r) => ({
          seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome as AuditRow['outcome'],
          requestId: r.request_id, details: JSON.parse(r.details) as AuditRow['details'], prevHash: r.prev_hash, hash: r.hash,
        }));
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
