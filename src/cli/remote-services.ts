import type { TenantKeyView, TenantService, TenantView } from '../services/tenant-service.js';
import type { ContainTarget, IncidentService, IncidentView, BlastRadius } from '../services/incident-service.js';
import type { AdminTokenService, AdminTokenView } from '../services/admin-token-service.js';
import type { UsageView } from '../services/activity-service.js';
import { adminPath, type AdminClient } from './admin-client.js';

/** The tenant and key operations the CLI uses: the local `TenantService` or the admin API. */
export type TenantOperations = Pick<TenantService, 'createTenant' | 'listTenants' | 'getTenant' | 'setTenantStatus' | 'setTenantPolicy'
  | 'setTenantLimits' | 'issueKey' | 'listKeys' | 'revokeKey' | 'setKeyLimits'>;

/** The incident operations the CLI uses (contain, list, investigate, report). */
export type IncidentOperations = Pick<IncidentService, 'contain' | 'list' | 'investigate' | 'report'>;

/** Admin token operations (issue, list, revoke). */
export type AdminTokenOperations = Pick<AdminTokenService, 'issue' | 'list' | 'revoke'>;

export interface UsageReport {
  since: string;
  until: string;
  data: UsageView[];
}

/**
 * A duration in milliseconds as the admin API's `expires_in` (`30d`, `90s`, `1500ms`): the
 * largest unit that divides it exactly, so the server computes the same expiry.
 */
export function durationText(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/**
 * The tenant operations over the admin API, with `TenantService`'s names and shapes. The
 * `actor` argument is not sent: the server records the identity of the admin token.
 */
export function createRemoteTenantOperations(client: AdminClient): TenantOperations {
  return {
    createTenant: (name: string, _actor: string, policy?: unknown) =>
      client.json<TenantView>('POST', '/admin/tenants', { body: policy === undefined ? { name } : { name, policy } }),
    listTenants: async () => (await client.json<{ data: TenantView[] }>('GET', '/admin/tenants')).data,
    getTenant: (name: string) => client.json<TenantView>('GET', adminPath`/admin/tenants/${name}`),
    setTenantStatus: (name: string, status: 'active' | 'disabled') =>
      client.json<TenantView>('POST', status === 'disabled' ? adminPath`/admin/tenants/${name}/disable` : adminPath`/admin/tenants/${name}/enable`, { body: {} }),
    setTenantPolicy: (name: string, policy: unknown) => client.json<TenantView>('PUT', adminPath`/admin/tenants/${name}/policy`, { body: { policy: policy ?? null } }),
    setTenantLimits: (name: string, changes: { limits?: Record<string, unknown>; key_limits?: Record<string, unknown> }) =>
      client.json<TenantView>('PUT', adminPath`/admin/tenants/${name}/limits`, { body: changes }),
    issueKey: (tenantName: string, _actor: string, opts: { expiresInMs?: number; label?: string } = {}) =>
      client.json<TenantKeyView & { key: string }>('POST', adminPath`/admin/tenants/${tenantName}/keys`, {
        body: {
          ...(opts.expiresInMs !== undefined ? { expires_in: durationText(opts.expiresInMs) } : {}),
          ...(opts.label !== undefined ? { label: opts.label } : {}),
        },
      }),
    listKeys: async (tenantName?: string) => (await client.json<{ data: TenantKeyView[] }>('GET', '/admin/keys', { query: { tenant: tenantName } })).data,
    revokeKey: (keyId: string) => client.json<TenantKeyView>('POST', adminPath`/admin/keys/${keyId}/revoke`, { body: {} }),
    setKeyLimits: (keyId: string, limits: Record<string, unknown> | null) => client.json<TenantKeyView>('PUT', adminPath`/admin/keys/${keyId}/limits`, { body: { limits } }),
  };
}

/** Incident contain/list/investigate/report over the admin API (the drill stays local). */
export function createRemoteIncidentOperations(client: AdminClient): IncidentOperations {
  return {
    contain: (target: ContainTarget) => client.json<IncidentView>('POST', '/admin/incidents/contain', {
      body: {
        ...(target.providerKey !== undefined ? { provider_key: target.providerKey } : {}),
        ...(target.tenantKey !== undefined ? { tenant_key: target.tenantKey } : {}),
        ...(target.tenant !== undefined ? { tenant: target.tenant } : {}),
      },
    }),
    list: async () => (await client.json<{ data: IncidentView[] }>('GET', '/admin/incidents')).data,
    investigate: (id: string, opts: { since?: number; until?: number } = {}) =>
      client.json<BlastRadius>('GET', adminPath`/admin/incidents/${id}/investigate`, { query: { since: iso(opts.since), until: iso(opts.until) } }),
    report: (id: string, opts: { since?: number } = {}) => client.text('GET', adminPath`/admin/incidents/${id}/report`, { query: { since: iso(opts.since) } }),
  };
}

/** Admin tokens over the admin API (an `admin` role token is needed for each). */
export function createRemoteAdminTokenOperations(client: AdminClient): AdminTokenOperations {
  return {
    issue: (request: { owner: string; role: string; tenants?: readonly string[]; expiresInMs?: number }) =>
      client.json<AdminTokenView & { token: string }>('POST', '/admin/tokens', {
        body: {
          owner: request.owner, role: request.role,
          ...(request.tenants !== undefined ? { tenants: request.tenants } : {}),
          ...(request.expiresInMs !== undefined ? { expires_in: durationText(request.expiresInMs) } : {}),
        },
      }),
    list: async () => (await client.json<{ data: AdminTokenView[] }>('GET', '/admin/tokens')).data,
    revoke: (id: string) => client.json<AdminTokenView>('POST', adminPath`/admin/tokens/${id}/revoke`, { body: {} }),
  };
}

/** `GET /admin/usage`: usage per tenant and model in [since, until). */
export function fetchRemoteUsage(client: AdminClient, filter: { tenant?: string; since: number; until: number }): Promise<UsageReport> {
  return client.json<UsageReport>('GET', '/admin/usage', { query: { tenant: filter.tenant, since: iso(filter.since), until: iso(filter.until) } });
}
