import { createHash } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import { GatewayError } from '../errors/index.js';
import type { ClientCertificatesConfig } from '../config/types.js';
import type { TenantRepository } from '../store/types.js';
import type { TenantPolicy } from '../policy/types.js';
import type { Principal } from './types.js';
import { sanitiseSubject } from './jwt.js';

/** What the TLS layer established about a client certificate; never the certificate itself. */
export interface PresentedCertificate {
  /** True when the certificate chains to the configured CA bundle, is within its validity dates and (with CRLs) not revoked. */
  authorized: boolean;
  /** OpenSSL's verification error (`CERT_HAS_EXPIRED`, `CERT_REVOKED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE` …) when not authorized. */
  verifyError: string | null;
  /** The subject's common names (more than one makes `subject_cn` mapping refuse the certificate). */
  commonNames: readonly string[];
  /** The certificate's URI subject alternative names (SPIFFE IDs and the like). */
  sanUris: readonly string[];
  /** SHA-256 of the DER certificate, 64 lowercase hex digits. */
  fingerprint: string;
}

/**
 * Reads the client certificate of a TLS connection, or undefined when the connection is not TLS
 * or the client sent none. The listener asks for a certificate without rejecting bad ones in the
 * handshake (`rejectUnauthorized: false`), so the verdict is read here and refused with a coded 401.
 */
export function presentedCertificate(socket: unknown): PresentedCertificate | undefined {
  if (!(socket instanceof TLSSocket)) return undefined;
  const peer = socket.getPeerCertificate(false) as Partial<ReturnType<TLSSocket['getPeerCertificate']>> | null;
  if (!peer || !Buffer.isBuffer(peer.raw) || peer.raw.length === 0) return undefined;
  const cn = peer.subject?.CN as string | string[] | undefined;
  const authError = socket.authorizationError as unknown;
  const fingerprint = createHash('sha256').update(peer.raw).digest('hex');
  // defence in depth behind disabled renegotiation: Node keeps `authorized` from the first
  // handshake, so a certificate that is not the one verified then is never trusted
  const pinned = handshakeCertificates.get(socket);
  const changed = pinned !== undefined && pinned !== fingerprint;
  return {
    authorized: socket.authorized === true && !changed,
    verifyError: changed ? 'CERTIFICATE_CHANGED' : authError === null || authError === undefined ? null : String((authError as { code?: string }).code ?? authError),
    commonNames: cn === undefined ? [] : Array.isArray(cn) ? cn : [cn],
    sanUris: parseSubjectAltNames(peer.subjectaltname ?? '').filter((n) => n.type === 'URI').map((n) => n.value),
    fingerprint,
  };
}

/** The fingerprint of the certificate each TLS connection presented in its handshake. */
const handshakeCertificates = new WeakMap<TLSSocket, string>();

/**
 * Called once a TLS connection is established: refuses renegotiation on it (a TLS 1.2
 * renegotiation could swap in another certificate after the first one was verified; Node does
 * not reset `authorized` when the new one fails) and remembers the handshake's certificate.
 */
export function secureClientConnection(socket: TLSSocket): void {
  socket.disableRenegotiation();
  const peer = socket.getPeerCertificate(false) as Partial<ReturnType<TLSSocket['getPeerCertificate']>> | null;
  if (peer && Buffer.isBuffer(peer.raw) && peer.raw.length > 0) handshakeCertificates.set(socket, createHash('sha256').update(peer.raw).digest('hex'));
}

/**
 * Splits Node's `subjectaltname` text (`DNS:a, URI:spiffe://x, …`) into entries. Node quotes a
 * value holding a separator as a JSON string (`URI:"a, b"`), so a crafted name cannot pose as
 * two; such a value is read back with JSON.parse.
 */
export function parseSubjectAltNames(text: string): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // a quoted value: find the closing quote that is not escaped
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        return out;
      }
      next = text.indexOf(', ', end + 1);
    } else {
      next = text.indexOf(', ', colon + 1);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    out.push({ type: type.trim(), value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

export interface ClientCertAuthenticatorOptions {
  mapping: ClientCertificatesConfig;
  tenants: Pick<TenantRepository, 'getByName'>;
  policyFor(tenantId: string, override: Record<string, unknown> | null): TenantPolicy;
}

/** Verifies a presented certificate's verdict and mapping; undefined means the client sent none. */
export type ClientCertAuthenticator = (certificate: PresentedCertificate | undefined) => Promise<Principal>;

const VALIDITY_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/**
 * Turns a verified client certificate into the Principal of the tenant the configured rule maps
 * it to (`subject_cn`, `san_uri` or `fingerprint`), or throws a 401: `auth_cert_required` (none),
 * `auth_cert_expired`, `auth_cert_revoked` (listed in a configured CRL), `auth_cert_untrusted` (any other
 * verification failure, an expired CRL included), `auth_cert_unknown`
 * (maps to no tenant, or to more than one) and `auth_tenant_disabled`. The tenant is looked up on
 * every request, so disabling it takes effect at once.
 *
 * keyId is `cert:<first 16 hex digits of the SHA-256 fingerprint>`, so key-level limits apply
 * per certificate; `subject` is the mapped value (bounded, sanitised), recorded in logs and audit.
 */
export function createClientCertAuthenticator(options: ClientCertAuthenticatorOptions): ClientCertAuthenticator {
  const { mapping, tenants, policyFor } = options;
  return async function authenticateCertificate(certificate) {
    if (!certificate) throw new GatewayError('auth_cert_required', 'a client certificate is required');
    // fail closed: only OpenSSL's positive verdict counts, whatever the error text says
    if (!certificate.authorized) {
      if (certificate.verifyError !== null && VALIDITY_ERRORS.has(certificate.verifyError)) {
        throw new GatewayError('auth_cert_expired', 'the client certificate is expired or not yet valid');
      }
      // listed in a configured CRL; an expired or missing CRL (CRL_HAS_EXPIRED, UNABLE_TO_GET_CRL) stays untrusted
      if (certificate.verifyError === 'CERT_REVOKED') throw new GatewayError('auth_cert_revoked', 'the client certificate has been revoked');
      throw new GatewayError('auth_cert_untrusted', 'the client certificate is not trusted');
    }
    const values = mapping.mapBy === 'fingerprint' ? [certificate.fingerprint]
      : mapping.mapBy === 'san_uri' ? certificate.sanUris
      // a subject with several CNs is ambiguous: which one names the tenant is not the client's choice
      : certificate.commonNames.length === 1 ? certificate.commonNames : [];
    const matched = values.filter((value) => Object.hasOwn(mapping.tenants, value));
    const tenantNames = new Set(matched.map((value) => mapping.tenants[value] as string));
    const value = matched[0];
    if (value === undefined || tenantNames.size !== 1) throw new GatewayError('auth_cert_unknown', 'the client certificate is not mapped to a tenant');
    const tenant = await tenants.getByName(mapping.tenants[value] as string);
    if (!tenant) throw new GatewayError('auth_cert_unknown', 'the client certificate is not mapped to a tenant');
    if (tenant.status !== 'active') throw new GatewayError('auth_tenant_disabled', 'this tenant is disabled');
    const policy = policyFor(tenant.id, tenant.policy);
    const subject = sanitiseSubject(mapping.mapBy === 'fingerprint' ? `sha256:${value}` : value);
    return {
      tenantId: tenant.id, tenantName: tenant.name, keyId: `cert:${certificate.fingerprint.slice(0, 16)}`, policy, keyLimits: policy.keyLimits,
      ...(subject !== undefined ? { subject } : {}), authMethod: 'mtls', authRule: mapping.mapBy,
    };
  };
}
