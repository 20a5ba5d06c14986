import { createHash, createSecretKey, timingSafeEqual } from 'node:crypto';
import type { AdminRole, AdminTokenRecord, AuditEvent, Store } from '../store/types.js';
import { hashKeySecret, hashesEqual } from '../auth/tenant-key.js';
import { mintCredential, parseAdminToken } from '../auth/admin-token.js';
import { ServiceError } from './tenant-service.js';
import { echoName } from '../policy/schema-errors.js';

export const ADMIN_ROLES: readonly AdminRole[] = ['viewer', 'operator', 'admin'];

/** True when `role` carries at least the rights of `needed` (viewer < operator < admin). */
export function roleAtLeast(role: AdminRole, needed: AdminRole): boolean {
  return ADMIN_ROLES.indexOf(role) >= ADMIN_ROLES.indexOf(needed);
}

/** Who is calling the admin API, established from a verified admin token. */
export interface AdminIdentity {
  /** The issued token's id, or `config` for the bootstrap token of `admin.token`. */
  tokenId: string;
  owner: string;
  role: AdminRole;
  /** The tenant ids this token may touch; null for every tenant. */
  tenantIds: ReadonlySet<string> | null;
}

/** An admin token as operators see it: never the secret or its hash. */
export interface AdminTokenView {
  id: string;
  owner: string;
  role: AdminRole;
  /** Tenant names it is limited to; null for every tenant. */
  tenants: string[] | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  status: 'active' | 'expired' | 'revoked';
}

/** The owner named for the configured bootstrap token (`admin.token`). */
export const BOOTSTRAP_OWNER = 'admin.token';
const OWNER = /^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}$/;

/**
 * Admin tokens issued per person or automation, each with a role and an optional tenant scope.
 * Only an HMAC of the secret is stored (under the same key as tenant keys); verification takes
 * the same path for every wrong token, like tenant keys.
 */
export function createAdminTokenService(options: { store: Store; hashKey: Buffer; bootstrapToken?: string; now?: () => number }) {
  const { store } = options;
  const hashKey = createSecretKey(options.hashKey);
  const now = options.now ?? Date.now;
  const decoyHash = hashKeySecret(hashKey, 'decoy');
  const bootstrapDigest = options.bootstrapToken === undefined ? undefined : createHash('sha256').update(options.bootstrapToken).digest();

  function event(actor: string, action: string, target: string | null, details: AuditEvent['details'] = {}): AuditEvent {
    return { ts: now(), actor, action, target, outcome: 'success', requestId: null, details };
  }

  async function view(t: AdminTokenRecord): Promise<AdminTokenView> {
    const names = t.tenantIds === null ? null : new Map((await store.tenants.list()).map((x) => [x.id, x.name]));
    const status = t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && t.expiresAt <= now() ? 'expired' : 'active';
    return {
      id: t.id, owner: t.owner, role: t.role, tenants: t.tenantIds === null ? null : t.tenantIds.map((id) => names?.get(id) ?? id),
      created_at: new Date(t.createdAt).toISOString(), expires_at: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
      revoked_at: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(), status,
    };
  }

  return {
    /** Issues a token; the returned `token` is shown once and never stored. */
    async issue(request: { owner: string; role: string; tenants?: readonly string[]; expiresInMs?: number }, actor: string): Promise<AdminTokenView & { token: string }> {
      if (!OWNER.test(request.owner) || request.owner === BOOTSTRAP_OWNER) throw new ServiceError('invalid', 'owner: letters, digits, space and . _ @ + - (at most 64), naming the person or automation');
      if (!ADMIN_ROLES.includes(request.role as AdminRole)) throw new ServiceError('invalid', `role must be one of ${ADMIN_ROLES.join(', ')}`);
      if (request.expiresInMs !== undefined && (!Number.isFinite(request.expiresInMs) || request.expiresInMs <= 0)) throw new ServiceError('invalid', 'expiry must be a positive duration');
      let tenantIds: string[] | null = null;
      if (request.tenants !== undefined) {
        if (request.tenants.length === 0) throw new ServiceError('invalid', 'a scoped token names at least one tenant');
        tenantIds = [];
        for (const name of request.tenants) {
          const tenant = await store.tenants.getByName(name);
          if (!tenant) throw new ServiceError('not_found', `no tenant named "${echoName(name, '(name)')}"`);
          if (!tenantIds.includes(tenant.id)) tenantIds.push(tenant.id);
        }
      }
      const minted = mintCredential('kwa');
      const createdAt = now();
      const record: AdminTokenRecord = {
        id: minted.id, owner: request.owner, role: request.role as AdminRole, tenantIds, secretHash: hashKeySecret(hashKey, minted.secret),
        createdAt, expiresAt: request.expiresInMs === undefined ? null : createdAt + request.expiresInMs, revokedAt: null,
      };
      await store.adminTokens.create(record, event(actor, 'admin_token.issue', record.id, {
        owner: record.owner, role: record.role, tenants: tenantIds === null ? null : tenantIds.join(','), expires_at: record.expiresAt,
      }));
      return { ...(await view(record)), token: minted.key };
    },

    async list(): Promise<AdminTokenView[]> {
      return Promise.all((await store.adminTokens.list()).map(view));
    },

    async revoke(id: string, actor: string): Promise<AdminTokenView> {
      const token = /^[a-z0-9]{16}$/.test(id) ? await store.adminTokens.get(id) : undefined;
      if (!token) throw new ServiceError('not_found', 'no admin token with this id');
      const at = token.revokedAt ?? now();
      if (token.revokedAt === null) await store.adminTokens.revoke(id, at, event(actor, 'admin_token.revoke', id, { owner: token.owner }));
      return view({ ...token, revokedAt: at });
    },

    /**
     * The identity behind a presented admin credential, or undefined when it is not a valid,
     * unexpired, unrevoked token. Every wrong issued-token shape computes one HMAC.
     */
    async verify(presented: string | undefined): Promise<AdminIdentity | undefined> {
      if (presented === undefined || presented.length === 0) return undefined;
      const parsed = parseAdminToken(presented);
      if (!parsed) {
        if (!bootstrapDigest) return undefined;
        // compare digests so length does not leak and the comparison is constant-time
        const ok = timingSafeEqual(createHash('sha256').update(presented).digest(), bootstrapDigest);
        return ok ? { tokenId: 'config', owner: BOOTSTRAP_OWNER, role: 'admin', tenantIds: null } : undefined;
      }
      const found = await store.adminTokens.get(parsed.id);
      const valid = hashesEqual(hashKeySecret(hashKey, parsed.secret), found?.secretHash ?? decoyHash) && found !== undefined;
      if (!valid || !found) return undefined;
      if (found.revokedAt !== null || (found.expiresAt !== null && found.expiresAt <= now())) return undefined;
      return { tokenId: found.id, owner: found.owner, role: found.role, tenantIds: found.tenantIds === null ? null : new Set(found.tenantIds) };
    },
  };
}

export type AdminTokenService = ReturnType<typeof createAdminTokenService>;
