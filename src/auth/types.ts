import type { TenantPolicy } from '../policy/types.js';
import type { Limits } from '../quota/types.js';

/** Who is calling, established by authentication; never empty (a failed check throws). */
export interface Principal {
  tenantId: string;
  tenantName: string;
  keyId: string;
  policy: TenantPolicy;
  /** This key's limits: its own, else the policy's `key_limits`. */
  keyLimits: Limits;
  /** A JWT caller's subject claim (bounded, sanitised), recorded in logs and audit; never the token. */
  subject?: string;
}
