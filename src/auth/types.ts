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
  /** How the caller authenticated when it was not a tenant key or JWT: `mtls` for a client certificate. */
  authMethod?: 'mtls';
  /** For `mtls`: the rule that mapped the certificate to the tenant (`subject_cn`, `san_uri`, `fingerprint`). */
  authRule?: string;
}
