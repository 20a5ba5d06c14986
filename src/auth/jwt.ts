import { createHash, createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify, type JWK, type JWTVerifyGetKey } from 'jose';
import { GatewayError } from '../errors/index.js';
import type { ErrorCode } from '../errors/codes.js';
import type { TenantRepository } from '../store/types.js';
import type { TenantPolicy } from '../policy/types.js';
import type { Principal } from './types.js';
import type { JwtIssuerConfig } from '../config/types.js';
import type { SecretResolver } from '../secrets/resolver.js';

/**
 * One trusted issuer with its keys resolved: the configuration's shape, but `publicKeys` hold PEM
 * text and `hmacSecret` the secret itself, never references.
 */
export type ResolvedJwtIssuer = JwtIssuerConfig;

export interface JwtVerifierOptions {
  issuers: readonly ResolvedJwtIssuer[];
  tenants: Pick<TenantRepository, 'getByName'>;
  policyFor(tenantId: string, override: Record<string, unknown> | null): TenantPolicy;
}

/** The principal of a verified token, and when the token expires (epoch ms, from `exp`). */
export type JwtVerifier = (token: string) => Promise<{ principal: Principal; expiresAt: number }>;

/** Resolves the secret references of the configured issuers (file: PEM keys, HMAC secrets). */
export async function resolveJwtIssuers(configs: readonly JwtIssuerConfig[], resolver: SecretResolver): Promise<ResolvedJwtIssuer[]> {
  const out: ResolvedJwtIssuer[] = [];
  for (const cfg of configs) {
    const publicKeys: string[] = [];
    for (const key of cfg.publicKeys) publicKeys.push(key.trimStart().startsWith('-----BEGIN ') ? key : (await resolver.resolve(key)).value);
    const hmacSecret = cfg.hmacSecret !== undefined ? (await resolver.resolve(cfg.hmacSecret)).value : undefined;
    out.push({
      issuer: cfg.issuer, ...(cfg.jwksUrl ? { jwksUrl: cfg.jwksUrl } : {}), publicKeys, ...(hmacSecret !== undefined ? { hmacSecret } : {}),
      audience: cfg.audience, algorithms: cfg.algorithms, tenantClaim: cfg.tenantClaim, ...(cfg.subjectClaim !== undefined ? { subjectClaim: cfg.subjectClaim } : {}),
      clockSkewMs: cfg.clockSkewMs, jwksCooldownMs: cfg.jwksCooldownMs, jwksMaxAgeMs: cfg.jwksMaxAgeMs,
    });
  }
  return out;
}

/** Longest token accepted; a larger credential is refused before any parsing. */
export const MAX_JWT_LENGTH = 8192;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_SUBJECT_LENGTH = 128;

/** True for a credential shaped like a compact JWT (three base64url segments), never for a tenant key. */
export function looksLikeJwt(credential: string): boolean {
  return !credential.startsWith('kw_') && credential.length <= MAX_JWT_LENGTH * 2 && JWT_SHAPE.test(credential);
}

/** A subject claim as it may appear in logs and audit: bounded, printable, no separators an attacker chooses. */
export function sanitiseSubject(value: unknown): string | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const text = String(value).replace(/[^A-Za-z0-9._:@/+-]/g, '_').slice(0, MAX_SUBJECT_LENGTH);
  return text.length > 0 ? text : undefined;
}

function refuse(code: ErrorCode, message: string): never {
  throw new GatewayError(code, message);
}

async function staticKeySet(pems: readonly string[]): Promise<JWTVerifyGetKey | undefined> {
  if (pems.length === 0) return undefined;
  const keys: JWK[] = [];
  for (const pem of pems) {
    const jwk = await exportJWK(createPublicKey(pem));
    // a token naming a key by kid uses the RFC 7638 thumbprint; tokens without kid try the set
    keys.push({ ...jwk, kid: await calculateJwkThumbprint(jwk) });
  }
  return createLocalJWKSet({ keys });
}

/** Maps a jose error to a specific 401; anything unexpected is a plain invalid token. */
function mapJoseError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as { code?: string; claim?: string; reason?: string };
  switch (e?.code) {
    case 'ERR_JWT_EXPIRED': return new GatewayError('auth_jwt_expired', 'the token has expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'nbf' || (e.claim === 'iat' && e.reason === 'check_failed')) return new GatewayError('auth_jwt_not_yet_valid', 'the token is not yet valid');
      if (e.claim === 'iss') return new GatewayError('auth_jwt_issuer', 'the token issuer is not trusted');
      if (e.claim === 'aud') return new GatewayError('auth_jwt_audience', 'the token is not for this audience');
      return new GatewayError('auth_jwt_invalid', 'the token is invalid');
    case 'ERR_JWKS_NO_MATCHING_KEY': return new GatewayError('auth_jwt_key_unknown', 'the token is signed with an unknown key');
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED': return new GatewayError('auth_jwt_algorithm', 'the token algorithm is not allowed');
    case 'ERR_JWKS_TIMEOUT': return new GatewayError('service_unavailable', 'the token issuer keys could not be fetched');
    case 'ERR_JWKS_INVALID': return new GatewayError('service_unavailable', 'the token issuer keys could not be read');
    default:
      if (typeof e?.code === 'string' && e.code.startsWith('ERR_')) return new GatewayError('auth_jwt_invalid', 'the token is invalid');
      // a JWKS fetch that failed at the network level
      return new GatewayError('service_unavailable', 'the token issuer keys could not be fetched');
  }
}

/**
 * Verifies OIDC/JWT bearer tokens with `jose` against the configured issuers and returns the
 * Principal of the tenant the token names. The issuer is picked by the (unverified) `iss`
 * claim and then verified with that issuer's keys, audience, algorithms and clock skew; the
 * tenant must exist and be active. This verifier caches nothing itself; the authenticator
 * (src/auth/authenticate.ts) keeps a verified token's Principal, keyed by a hash of the whole
 * token, until its `exp` or the credential cache's TTL, whichever comes first.
 *
 * keyId is `jwt:<issuer index>:<tenant id>` (with a subject claim, `jwt:<issuer index>:<hash of
 * tenant id and subject>`): callers of one issuer and tenant share it (and the policy's key_limits)
 * in the ledger and quotas; other tenants of the issuer never do.
 */
export async function createJwtVerifier(options: JwtVerifierOptions): Promise<JwtVerifier> {
  const prepared = await Promise.all(options.issuers.map(async (cfg, index) => {
    const remote = cfg.jwksUrl ? createRemoteJWKSet(cfg.jwksUrl, { cooldownDuration: cfg.jwksCooldownMs, cacheMaxAge: cfg.jwksMaxAgeMs, timeoutDuration: 5000 }) : undefined;
    const local = await staticKeySet(cfg.publicKeys);
    const hmac = cfg.hmacSecret !== undefined ? new TextEncoder().encode(cfg.hmacSecret) : undefined;
    const getKey: JWTVerifyGetKey = async (header, token) => {
      if (header.alg.startsWith('HS')) {
        if (!hmac) refuse('auth_jwt_algorithm', 'the token algorithm is not allowed');
        return hmac;
      }
      if (local) {
        try {
          return await local(header, token);
        } catch (err) {
          if (!remote || (err as { code?: string })?.code !== 'ERR_JWKS_NO_MATCHING_KEY') throw err;
        }
      }
      if (remote) return remote(header, token);
      return refuse('auth_jwt_key_unknown', 'the token is signed with an unknown key');
    };
    return { cfg, index, getKey };
  }));
  const byIssuer = new Map(prepared.map((p) => [p.cfg.issuer, p]));

  return async function verifyJwt(token) {
    if (token.length > MAX_JWT_LENGTH) refuse('auth_jwt_invalid', 'the token is invalid');
    let alg: unknown;
    let iss: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch {
      refuse('auth_jwt_invalid', 'the token is invalid');
    }
    const entry = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
    if (!entry) refuse('auth_jwt_issuer', 'the token issuer is not trusted');
    const { cfg } = entry;
    if (typeof alg !== 'string' || alg === 'none' || !cfg.algorithms.includes(alg)) refuse('auth_jwt_algorithm', 'the token algorithm is not allowed');

    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, entry.getKey, {
        issuer: cfg.issuer, audience: cfg.audience, algorithms: [...cfg.algorithms],
        clockTolerance: Math.round(cfg.clockSkewMs / 1000), requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw mapJoseError(err);
    }

    const tenantName = payload[cfg.tenantClaim];
    if (typeof tenantName !== 'string' || tenantName.length === 0 || tenantName.length > 128) refuse('auth_jwt_tenant_unknown', 'the token names no known tenant');
    const tenant = await options.tenants.getByName(tenantName);
    if (!tenant) refuse('auth_jwt_tenant_unknown', 'the token names no known tenant');
    if (tenant.status !== 'active') refuse('auth_tenant_disabled', 'this tenant is disabled');
    const policy = options.policyFor(tenant.id, tenant.policy);
    const subject = cfg.subjectClaim !== undefined ? sanitiseSubject(payload[cfg.subjectClaim]) : undefined;
    // the key id is the unit of key-level limits and of the ledger: it names the tenant, so two
    // tenants of one issuer never share counters (a subject of one tenant cannot hold another's
    // per-key slots or budget); with a subject claim each workload or user of the tenant gets its
    // own, holding only a short hash of tenant and subject (the subject is recorded separately)
    const keyId = subject !== undefined
      ? `jwt:${entry.index}:${createHash('sha256').update(`${tenant.id}\n${subject}`).digest('hex').slice(0, 16)}`
      : `jwt:${entry.index}:${tenant.id}`;
    const principal: Principal = {
      tenantId: tenant.id, tenantName: tenant.name, keyId, policy, keyLimits: policy.keyLimits,
      ...(subject !== undefined ? { subject } : {}),
    };
    // exp is a required claim, checked by jwtVerify above with the same clock skew allowed
    return { principal, expiresAt: (payload['exp'] as number) * 1000 + Math.round(cfg.clockSkewMs / 1000) * 1000 };
  };
}
