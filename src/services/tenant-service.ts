import type { AuditEvent, Store, TenantKeyRecord, TenantRecord } from '../store/types.js';
import { StoreConflictError } from '../store/types.js';
import type { TenantPolicy } from '../policy/types.js';
import { checkPolicyOverride, parseLimits } from '../config/validate.js';
import { generateTenantKey, hashKeySecret } from '../auth/tenant-key.js';
import { echoName } from '../policy/schema-errors.js';

/** A failure a caller (admin API or CLI) shows to the operator; `kind` picks the status. */
export class ServiceError extends Error {
  readonly kind: 'invalid' | 'not_found' | 'conflict';
  constructor(kind: ServiceError['kind'], message: string) {
    super(message);
    this.name = 'ServiceError';
    this.kind = kind;
  }
}

/** A tenant key as operators see it: never the secret or its hash. */
export interface TenantKeyView {
  id: string;
  tenant: string;
  label: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  status: 'active' | 'expired' | 'revoked';
  /** The key's own limits, or null when the tenant's `key_limits` apply. */
  limits: Record<string, unknown> | null;
}

export interface TenantView {
  id: string;
  name: string;
  status: string;
  policy: Record<string, unknown> | null;
  created_at: string;
}

const TENANT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Audit details for a limits change: which limits changed and their new values (numbers only). */
function limitDetails(changes: { limits?: Record<string, unknown>; key_limits?: Record<string, unknown> }): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [scope, values] of Object.entries(changes)) {
    for (const [k, v] of Object.entries(values ?? {})) out[`${scope}.${k}`.slice(0, 64)] = typeof v === 'number' ? v : null;
  }
  return out;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * Tenant and tenant-key operations shared by the admin API and the CLI. Every change writes
 * its audit event in the same transaction; audit rows hold ids, never key material.
 */
export function createTenantService(options: { store: Store; hashKey: Buffer; defaults: TenantPolicy; now?: () => number }) {
  const { store, hashKey, defaults } = options;
  const now = options.now ?? Date.now;

  function event(actor: string, action: string, target: string | null, details: AuditEvent['details'] = {}): AuditEvent {
    return { ts: now(), actor, action, target, outcome: 'success', requestId: null, details };
  }

  function tenantView(t: TenantRecord): TenantView {
    return { id: t.id, name: t.name, status: t.status, policy: t.policy, created_at: iso(t.createdAt) as string };
  }

  function keyView(k: TenantKeyRecord, tenantName: string): TenantKeyView {
    const status = k.revokedAt !== null ? 'revoked' : k.expiresAt !== null && k.expiresAt <= now() ? 'expired' : 'active';
    return {
      id: k.id, tenant: tenantName, label: k.label, created_at: iso(k.createdAt) as string,
      expires_at: iso(k.expiresAt), revoked_at: iso(k.revokedAt), status, limits: k.limits,
    };
  }

  async function requireTenant(name: string): Promise<TenantRecord> {
    const tenant = await store.tenants.getByName(name);
    if (!tenant) throw new ServiceError('not_found', `no tenant named "${echoName(name, '(name)')}"`);
    return tenant;
  }

  function checkPolicy(policy: unknown): Record<string, unknown> | null {
    if (policy === undefined || policy === null) return null;
    const { problems } = checkPolicyOverride(policy, defaults);
    if (problems.length > 0) throw new ServiceError('invalid', problems.join('; '));
    return policy as Record<string, unknown>;
  }

  return {
    async createTenant(name: string, actor: string, policy?: unknown): Promise<TenantView> {
      if (!TENANT_NAME.test(name)) throw new ServiceError('invalid', 'tenant names use a-z, 0-9, _ and - (at most 63 characters)');
      const override = checkPolicy(policy);
      try {
        return tenantView(await store.tenants.create(name, override, event(actor, 'tenant.create', null, { name })));
      } catch (err) {
        if (err instanceof StoreConflictError) throw new ServiceError('conflict', `a tenant named "${name}" already exists`);
        throw err;
      }
    },

    async listTenants(): Promise<TenantView[]> {
      return (await store.tenants.list()).map(tenantView);
    },

    /** The id of the tenant with this name, if any (admin scope checks). */
    async tenantIdOf(name: string): Promise<string | undefined> {
      return (await store.tenants.getByName(name))?.id;
    },

    /** The id of the tenant owning this key, if the key exists (admin scope checks). */
    async tenantIdOfKey(keyId: string): Promise<string | undefined> {
      return /^[a-z0-9]{16}$/.test(keyId) ? (await store.keys.get(keyId))?.tenantId : undefined;
    },

    async getTenant(name: string): Promise<TenantView> {
      return tenantView(await requireTenant(name));
    },

    async setTenantStatus(name: string, status: 'active' | 'disabled', actor: string): Promise<TenantView> {
      const tenant = await requireTenant(name);
      await store.tenants.setStatus(tenant.id, status, event(actor, status === 'disabled' ? 'tenant.disable' : 'tenant.enable', tenant.id));
      return tenantView({ ...tenant, status });
    },

    async setTenantPolicy(name: string, policy: unknown, actor: string): Promise<TenantView> {
      const tenant = await requireTenant(name);
      const override = checkPolicy(policy);
      await store.tenants.setPolicy(tenant.id, override, event(actor, 'tenant.policy', tenant.id));
      return tenantView({ ...tenant, policy: override });
    },

    /** Issues a key; the returned `key` is shown once and never stored. */
    async issueKey(tenantName: string, actor: string, opts: { expiresInMs?: number; label?: string } = {}): Promise<TenantKeyView & { key: string }> {
      const tenant = await requireTenant(tenantName);
      if (opts.expiresInMs !== undefined && (!Number.isFinite(opts.expiresInMs) || opts.expiresInMs <= 0)) {
        throw new ServiceError('invalid', 'expiry must be a positive duration');
      }
      if (opts.label !== undefined && !/^[A-Za-z0-9 _.:-]{1,64}$/.test(opts.label)) {
        throw new ServiceError('invalid', 'labels use letters, digits, space and _ . : - (at most 64)');
      }
      const minted = generateTenantKey();
      const createdAt = now();
      const record: TenantKeyRecord = {
        id: minted.id, tenantId: tenant.id, secretHash: hashKeySecret(hashKey, minted.secret), label: opts.label ?? null,
        createdAt, expiresAt: opts.expiresInMs === undefined ? null : createdAt + opts.expiresInMs, revokedAt: null, limits: null,
      };
      // the audit row names the key id only, never the key
      await store.keys.create(record, event(actor, 'key.issue', minted.id, { tenant: tenant.id, expires_at: record.expiresAt }));
      return { ...keyView(record, tenant.name), key: minted.key };
    },

    /**
     * Sets limits on a tenant: `limits` over the whole tenant and `key_limits` for each of its
     * keys, stored in its policy override (merged with the fields already there). Effective on
     * the next request, no restart. A field set to null removes that limit.
     */
    async setTenantLimits(name: string, changes: { limits?: Record<string, unknown>; key_limits?: Record<string, unknown> }, actor: string): Promise<TenantView> {
      const tenant = await requireTenant(name);
      const override: Record<string, unknown> = { ...(tenant.policy ?? {}) };
      for (const field of ['limits', 'key_limits'] as const) {
        const change = changes[field];
        if (change === undefined) continue;
        const merged: Record<string, unknown> = { ...((override[field] as Record<string, unknown> | undefined) ?? {}), ...change };
        for (const [k, v] of Object.entries(merged)) if (v === null) delete merged[k];
        override[field] = merged;
      }
      const checked = checkPolicy(override);
      await store.tenants.setPolicy(tenant.id, checked, event(actor, 'tenant.limits', tenant.id, limitDetails(changes)));
      return tenantView({ ...tenant, policy: checked });
    },

    /** Sets a key's own limits (replacing the tenant's `key_limits` for this key); null clears them. */
    async setKeyLimits(keyId: string, limits: Record<string, unknown> | null, actor: string): Promise<TenantKeyView> {
      const key = /^[a-z0-9]{16}$/.test(keyId) ? await store.keys.get(keyId) : undefined;
      if (!key) throw new ServiceError('not_found', 'no key with this id');
      if (limits !== null) {
        const problems: string[] = [];
        parseLimits(limits, 'limits', {}, { add: (path, message) => problems.push(`${path}: ${message}`) });
        if (problems.length > 0) throw new ServiceError('invalid', problems.join('; '));
      }
      await store.keys.setLimits(key.id, limits, event(actor, 'key.limits', key.id, { tenant: key.tenantId }));
      const tenants = await store.tenants.list();
      return keyView({ ...key, limits }, tenants.find((t) => t.id === key.tenantId)?.name ?? key.tenantId);
    },

    async listKeys(tenantName?: string): Promise<TenantKeyView[]> {
      const tenants = await store.tenants.list();
      const names = new Map(tenants.map((t) => [t.id, t.name]));
      const tenantId = tenantName === undefined ? undefined : (await requireTenant(tenantName)).id;
      return (await store.keys.list(tenantId)).map((k) => keyView(k, names.get(k.tenantId) ?? k.tenantId));
    },

    async revokeKey(keyId: string, actor: string): Promise<TenantKeyView> {
      const key = /^[a-z0-9]{16}$/.test(keyId) ? await store.keys.get(keyId) : undefined;
      if (!key) throw new ServiceError('not_found', 'no key with this id');
      const at = key.revokedAt ?? now();
      if (key.revokedAt === null) await store.keys.revoke(key.id, at, event(actor, 'key.revoke', key.id, { tenant: key.tenantId }));
      const tenants = await store.tenants.list();
      return keyView({ ...key, revokedAt: at }, tenants.find((t) => t.id === key.tenantId)?.name ?? key.tenantId);
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
