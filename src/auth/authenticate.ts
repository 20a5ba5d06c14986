import { createSecretKey } from 'node:crypto';
import { GatewayError } from '../errors/index.js';
import type { TenantKeyRepository } from '../store/types.js';
import type { TenantPolicy } from '../policy/types.js';
import type { Principal } from './types.js';
import type { Limits } from '../quota/types.js';
import { parseLimits } from '../config/validate.js';
import { hashKeySecret, hashesEqual, parseTenantKey } from './tenant-key.js';
import { looksLikeJwt, type JwtVerifier } from './jwt.js';
import type { CredentialCache } from './credential-cache.js';

export interface AuthenticatorOptions {
  keys: TenantKeyRepository;
  hashKey: Buffer;
  /** Resolves a tenant's effective policy (defaults merged with its override). */
  policyFor(tenantId: string, override: Record<string, unknown> | null): TenantPolicy;
  now?: () => number;
  /** Verifies JWT bearer tokens (auth.jwt); unset, a JWT-shaped credential is an invalid tenant key. */
  jwt?: JwtVerifier;
  /** Verified tenant keys and JWTs by the hash of the whole credential; unset, every request verifies in full. */
  cache?: CredentialCache<VerifiedKey>;
}

/** What the cache keeps for a verified tenant key or JWT: the principal, and when the credential expires. */
export interface VerifiedKey {
  principal: Principal;
  expiresAt: number | null;
  /** A JWT (its expiry answers `auth_jwt_expired`). */
  jwt?: boolean;
}

// a key's own limits were validated when set; should a stored value not parse, fail closed
function keyLimitsOf(raw: Record<string, unknown>): Limits {
  const problems: string[] = [];
  const limits = parseLimits(raw, 'limits', {}, { add: (path, message) => problems.push(`${path}: ${message}`) });
  if (problems.length > 0) throw new GatewayError('service_unavailable', 'this key cannot be used until its limits are fixed');
  return limits;
}

export type Authenticator = (credential: string | undefined) => Promise<Principal>;

/**
 * Verifies a tenant key and returns the Principal, or throws a 401 GatewayError.
 *
 * Every wrong credential takes the same path whatever its content: malformed, unknown id and
 * wrong secret all compute one HMAC and one constant-time compare, and all answer
 * `auth_invalid_credentials`. Only a key whose secret verified learns why it is refused
 * (expired, revoked, tenant disabled). The store is queried with the parsed id as a
 * parameter, never with raw header text.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { keys, policyFor } = options;
  // a KeyObject is prepared once, not per request
  const hashKey = createSecretKey(options.hashKey);
  const now = options.now ?? Date.now;
  // a fixed hash to compare against when the key id is unknown, so timing does not tell
  const decoyHash = hashKeySecret(hashKey, 'decoy');

  return async function authenticate(credential) {
    if (credential === undefined) throw new GatewayError('auth_missing_credentials', 'missing credentials: send Authorization: Bearer <key> or x-api-key');
    // a credential verified before (by the hash of all of it) skips the store and the signature
    const { cache } = options;
    const cached = cache?.get(credential);
    if (cached) {
      if (cached.expiresAt !== null && cached.expiresAt <= now()) {
        throw cached.jwt ? new GatewayError('auth_jwt_expired', 'the token has expired') : new GatewayError('auth_key_expired', 'this key has expired');
      }
      return cached.principal;
    }
    const stampBefore = cache?.stamp();
    // a credential shaped like a JWT (never a `kw_` key) goes to the JWT verifier when one is configured
    if (options.jwt && looksLikeJwt(credential)) {
      // a verified token is kept until its exp (at most the cache's ttl): the signature is not checked again
      const verified = await options.jwt(credential);
      if (cache && stampBefore !== undefined) cache.set(credential, { principal: verified.principal, expiresAt: verified.expiresAt, jwt: true }, stampBefore);
      return verified.principal;
    }
    const parsed = parseTenantKey(credential);
    const found = parsed ? await keys.findWithTenant(parsed.id) : undefined;
    const presentedHash = hashKeySecret(hashKey, parsed?.secret ?? 'decoy-mismatch');
    const valid = hashesEqual(presentedHash, found?.key.secretHash ?? decoyHash) && found !== undefined;
    if (!valid || !found) throw new GatewayError('auth_invalid_credentials', 'invalid credentials');

    const { key, tenant } = found;
    if (key.revokedAt !== null) throw new GatewayError('auth_key_revoked', 'this key has been revoked');
    if (key.expiresAt !== null && key.expiresAt <= now()) throw new GatewayError('auth_key_expired', 'this key has expired');
    if (tenant.status !== 'active') throw new GatewayError('auth_tenant_disabled', 'this tenant is disabled');
    const policy = policyFor(tenant.id, tenant.policy);
    const principal: Principal = { tenantId: tenant.id, tenantName: tenant.name, keyId: key.id, policy, keyLimits: key.limits === null ? policy.keyLimits : keyLimitsOf(key.limits) };
    if (cache && stampBefore !== undefined) cache.set(credential, { principal, expiresAt: key.expiresAt }, stampBefore);
    return principal;
  };
}
