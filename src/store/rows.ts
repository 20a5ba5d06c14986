/**
 * The stored rows of every table as both stores read them back (snake_case columns), and their
 * mapping to the records of ./types.ts: one definition, so SQLite and PostgreSQL cannot drift.
 * JSON columns are text in both; booleans are 0/1 in SQLite and boolean in PostgreSQL.
 */
import type {
  AdminRole, AdminTokenRecord, AuditCheckpoint, AuditRow, ContentSample, IncidentKind, IncidentRecord, ProviderKeyRecord,
  ProviderKeyRotation, ProviderKeyState, TenantKeyRecord, TenantRecord, TenantStatus, UsageRecord,
} from './types.js';

export interface TenantRow { id: string; name: string; status: string; policy: string | null; created_at: number }
export interface KeyRow { id: string; tenant_id: string; secret_hash: string; label: string | null; created_at: number; expires_at: number | null; revoked_at: number | null; limits: string | null }
export interface AdminTokenRow { id: string; owner: string; role: string; tenant_ids: string | null; secret_hash: string; created_at: number; expires_at: number | null; revoked_at: number | null }
export interface AuditDbRow { seq: number; ts: number; actor: string; action: string; target: string | null; outcome: string; request_id: string | null; details: string; prev_hash: string; hash: string }
export interface UsageDbRow {
  ts: number; request_id: string; tenant_id: string; key_id: string; provider: string | null; model: string | null; endpoint: string;
  status: number; outcome: string; error_code: string | null; input_tokens: number; output_tokens: number; cached_input_tokens: number;
  stream: boolean | number; gateway_ms: number; upstream_ms: number; prompt_fingerprint: string | null; cost_nano_usd: number; client_hmac: string | null; provider_key_id: string | null;
}
export interface IncidentRow {
  id: string; kind: string; target: string; target_ids: string; tenant_id: string | null; provider: string | null;
  since: number; contained_at: number; actor: string; details: string;
}
export interface CheckpointRow { id: number; up_to_seq: number; up_to_hash: string; removed_count: number; created_at: number; signature: string }
export interface SampleRow {
  sample_id: string; request_id: string; tenant_id: string; created_at: number; expires_at: number; aad_version: number; iv: Buffer; tag: Buffer; ciphertext: Buffer;
}
export interface ProviderKeyRow {
  id: string; provider: string; reference: string; fingerprint: string; version: string | null; state: string; owner: string | null;
  purpose: string | null; created_at: number; rotated_at: number | null; rotate_every_days: number; previous_until: number | null; revoked_at: number | null;
}
export interface RotationRow { provider: string; rotation_id: string; step: number; old_key_id: string | null; new_key_id: string | null; started_at: number; locked_by: string; heartbeat_at: number }

/** A JSON column's text, or NULL. */
export const json = (value: unknown): string | null => (value === null ? null : JSON.stringify(value));

export function toTenant(r: TenantRow): TenantRecord {
  return { id: r.id, name: r.name, status: r.status as TenantStatus, policy: r.policy === null ? null : (JSON.parse(r.policy) as Record<string, unknown>), createdAt: r.created_at };
}

export function toKey(r: KeyRow): TenantKeyRecord {
  return {
    id: r.id, tenantId: r.tenant_id, secretHash: r.secret_hash, label: r.label, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at,
    limits: r.limits === null ? null : (JSON.parse(r.limits) as Record<string, unknown>),
  };
}

export function toAdminToken(r: AdminTokenRow): AdminTokenRecord {
  return {
    id: r.id, owner: r.owner, role: r.role as AdminRole, tenantIds: r.tenant_ids === null ? null : (JSON.parse(r.tenant_ids) as string[]),
    secretHash: r.secret_hash, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at,
  };
}

export function toUsage(r: UsageDbRow): UsageRecord {
  return {
    ts: r.ts, requestId: r.request_id, tenantId: r.tenant_id, keyId: r.key_id, provider: r.provider, model: r.model,
    endpoint: r.endpoint, status: r.status, outcome: r.outcome, errorCode: r.error_code, inputTokens: r.input_tokens,
    outputTokens: r.output_tokens, cachedInputTokens: r.cached_input_tokens, stream: r.stream === true || r.stream === 1,
    gatewayMs: r.gateway_ms, upstreamMs: r.upstream_ms, promptFingerprint: r.prompt_fingerprint, costNanoUsd: r.cost_nano_usd,
    clientHmac: r.client_hmac, providerKeyId: r.provider_key_id,
  };
}

export function toIncident(r: IncidentRow): IncidentRecord {
  return {
    id: r.id, kind: r.kind as IncidentKind, target: r.target, targetIds: JSON.parse(r.target_ids) as string[], tenantId: r.tenant_id,
    provider: r.provider, since: r.since, containedAt: r.contained_at, actor: r.actor, details: JSON.parse(r.details) as IncidentRecord['details'],
  };
}

export function toAuditRow(r: AuditDbRow): AuditRow {
  return {
    seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome as AuditRow['outcome'],
    requestId: r.request_id, details: JSON.parse(r.details) as AuditRow['details'], prevHash: r.prev_hash, hash: r.hash,
  };
}

export function toCheckpoint(r: CheckpointRow): AuditCheckpoint {
  return { id: r.id, upToSeq: r.up_to_seq, upToHash: r.up_to_hash, removedCount: r.removed_count, createdAt: r.created_at, signature: r.signature };
}

/** The columns of a content sample, in the order both stores insert them. */
export const SAMPLE_COLUMNS = 'sample_id, request_id, tenant_id, created_at, expires_at, aad_version, iv, tag, ciphertext';

/** A sample row; any AAD version but 1 is read as 2, so an altered version fails to open rather than opening weaker. */
export function toSample(r: SampleRow): ContentSample {
  return {
    sampleId: r.sample_id, requestId: r.request_id, tenantId: r.tenant_id, createdAt: r.created_at, expiresAt: r.expires_at,
    aadVersion: r.aad_version === 1 ? 1 : 2, iv: r.iv, tag: r.tag, ciphertext: r.ciphertext,
  };
}

export function toProviderKey(r: ProviderKeyRow): ProviderKeyRecord {
  return {
    id: r.id, provider: r.provider, reference: r.reference, fingerprint: r.fingerprint, version: r.version, state: r.state as ProviderKeyState,
    owner: r.owner, purpose: r.purpose, createdAt: r.created_at, rotatedAt: r.rotated_at, rotateEveryDays: r.rotate_every_days,
    previousUntil: r.previous_until, revokedAt: r.revoked_at,
  };
}

export function toRotation(r: RotationRow): ProviderKeyRotation {
  return {
    provider: r.provider, rotationId: r.rotation_id, step: r.step, oldKeyId: r.old_key_id, newKeyId: r.new_key_id,
    startedAt: r.started_at, lockedBy: r.locked_by, heartbeatAt: r.heartbeat_at,
  };
}
