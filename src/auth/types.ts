import type { TenantPolicy } from '../policy/types.js';

/** Who is calling, established by authentication; never empty (a failed check throws). */
export interface Principal {
  tenantId: string;
  tenantName: string;
  keyId: string;
  policy: TenantPolicy;
}
