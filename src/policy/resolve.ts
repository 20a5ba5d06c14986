import type { TenantPolicy } from './types.js';
import { checkPolicyOverride } from '../config/validate.js';

/**
 * Returns a function giving a tenant's effective policy: the configured defaults with the
 * tenant's stored override on top. Results are cached per tenant and override, so the hot
 * path does not re-merge; an invalid stored override fails closed to the defaults' strictest
 * reading (nothing allowed) rather than to "anything goes".
 */
export function createPolicyResolver(defaults: TenantPolicy): (tenantId: string, override: Record<string, unknown> | null) => TenantPolicy {
  const cache = new Map<string, { source: string; policy: TenantPolicy }>();
  const denyAll: TenantPolicy = Object.freeze({ ...defaults, models: [], params: [], tools: false, files: false, capabilities: {} });
  return function policyFor(tenantId, override) {
    if (override === null) return defaults;
    const hit = cache.get(tenantId);
    // overrides come from the store as fresh objects; compare by content
    const key = JSON.stringify(override);
    if (hit && hit.source === key) return hit.policy;
    const { policy, problems } = checkPolicyOverride(override, defaults);
    const effective = problems.length > 0 ? denyAll : policy;
    cache.set(tenantId, { source: key, policy: effective });
    return effective;
  };
}
