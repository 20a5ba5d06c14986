import { isIP } from 'node:net';
import type { AuthFailureLimitsConfig, ClientCertificateRule, ClientCertificatesConfig, GatewayConfig, JwtIssuerConfig, ListenAddress, ModelRoute, ProviderConfig, PublicTlsConfig } from './types.js';
import type { TenantPolicy } from '../policy/types.js';
import { CAPABILITY_NAMES, isCapability, type Capability, type CapabilityPolicy } from '../policy/capabilities.js';
import { parseDuration } from './duration.js';
import { isSecretReference } from '../secrets/reference.js';
import { LIMIT_NAMES, type LimitName, type Limits } from '../quota/types.js';
import { DEFAULT_ANOMALY_CONFIG, type AnomalyConfig, type RateRule } from '../anomaly/types.js';
import { DLP_MODES, DLP_OFF, PII_RULE_NAMES, type DlpMode, type DlpPolicy, type PiiRuleName } from '../dlp/types.js';
import { parse as parsePostgresUrl } from 'pg-connection-string';
import { echoName } from '../policy/schema-errors.js';

/** The tenant policy that applies when config gives none: nothing is allowed but the bare request. */
export const DEFAULT_POLICY: TenantPolicy = Object.freeze({
  models: [],
  params: [],
  tools: false,
  files: false,
  maxBodyBytes: 1_048_576,
  maxOutputTokens: 4096,
  maxMessages: 256,
  maxAttachments: 8,
  maxAttachmentBytes: 1_048_576,
  limits: {},
  keyLimits: {},
  dlp: DLP_OFF,
});

type Json = unknown;

/**
 * Collects every problem of a configuration, each named by its YAML path, so an operator
 * fixes them all in one go. Never echoes a value that could be a secret.
 */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

function isRecord(value: Json): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(obj: Record<string, Json>, path: string, allowed: readonly string[], problems: Problems): void {
  for (const key of Object.keys(obj)) {
    // the same checks answer the admin API (policies, limits): a key-shaped name is not echoed
    const shown = echoName(key);
    if (!allowed.includes(key)) problems.add(path ? `${path}.${shown}` : shown, `unknown field (allowed: ${allowed.join(', ')})`);
  }
}

function section(obj: Record<string, Json>, key: string, path: string, problems: Problems): Record<string, Json> {
  const value = obj[key];
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) {
    problems.add(join(path, key), 'must be a mapping');
    return {};
  }
  return value;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  // only a literal 127.x.x.x address is loopback: a name such as `127.attacker.example` resolves anywhere
  return LOOPBACK_HOSTS.has(host) || (isIP(host) === 4 && host.startsWith('127.'));
}

function listenAddress(value: Json, path: string, fallback: ListenAddress, problems: Problems): ListenAddress {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') {
    problems.add(path, 'must be "host:port"');
    return fallback;
  }
  const match = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    problems.add(path, 'must be "host:port" with a port from 0 to 65535');
    return fallback;
  }
  let host = match[1] as string;
  if (host.startsWith('[')) host = host.slice(1, -1);
  if (host !== 'localhost' && isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host)) {
    problems.add(path, 'host must be an IP address or a host name');
  }
  return { host, port };
}

function secretRef(value: Json, path: string, problems: Problems, required: boolean): string | undefined {
  if (value === undefined || value === null) {
    if (required) problems.add(path, 'is required (a secret reference such as env:NAME or file:PATH)');
    return undefined;
  }
  // never echo the value: a literal key pasted here is exactly what must not reach a log
  if (typeof value !== 'string' || !isSecretReference(value)) {
    problems.add(path, 'must be a secret reference (env:NAME or file:/path), not a literal value');
    return undefined;
  }
  return value;
}

const JWT_ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const JWT_HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const CLAIM_NAME = /^[A-Za-z0-9_.:/-]{1,64}$/;

function jwtConfig(value: Json, problems: Problems): { issuers: readonly JwtIssuerConfig[] } | undefined {
  if (!isRecord(value)) {
    problems.add('auth.jwt', 'must be a mapping with an issuers list');
    return undefined;
  }
  checkKeys(value, 'auth.jwt', ['issuers'], problems);
  const list = value['issuers'];
  if (!Array.isArray(list) || list.length === 0) {
    problems.add('auth.jwt.issuers', 'must be a non-empty list of trusted issuers');
    return undefined;
  }
  const issuers: JwtIssuerConfig[] = [];
  const seen = new Set<string>();
  list.forEach((raw, index) => {
    const path = `auth.jwt.issuers[${index}]`;
    if (!isRecord(raw)) {
      problems.add(path, 'must be a mapping');
      return;
    }
    checkKeys(raw, path, ['issuer', 'jwks_url', 'public_keys', 'hmac_secret', 'audience', 'algorithms', 'tenant_claim', 'subject_claim', 'clock_skew', 'jwks_cooldown', 'jwks_max_age'], problems);
    const issuer = raw['issuer'];
    if (typeof issuer !== 'string' || issuer.length === 0) problems.add(`${path}.issuer`, 'is required (the exact iss value)');
    else if (seen.has(issuer)) problems.add(`${path}.issuer`, 'is listed twice');
    else seen.add(issuer);
    let jwksUrl: URL | undefined;
    if (raw['jwks_url'] !== undefined) {
      const text = raw['jwks_url'];
      let url: URL | undefined;
      try { url = typeof text === 'string' ? new URL(text) : undefined; } catch { url = undefined; }
      if (!url || (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname.replace(/^\[|\]$/g, ''))))) {
        problems.add(`${path}.jwks_url`, 'must be an https URL (http only on loopback)');
      } else jwksUrl = url;
    }
    const publicKeys: string[] = [];
    if (raw['public_keys'] !== undefined) {
      const keys = raw['public_keys'];
      if (!Array.isArray(keys) || keys.length === 0) problems.add(`${path}.public_keys`, 'must be a non-empty list of PEM public keys or file: references');
      else keys.forEach((k, i) => {
        if (typeof k === 'string' && k.trimStart().startsWith('-----BEGIN ') && !k.includes('PRIVATE KEY')) publicKeys.push(k);
        else if (typeof k === 'string' && isSecretReference(k)) publicKeys.push(k);
        else problems.add(`${path}.public_keys[${i}]`, 'must be a PEM public key or a reference such as file:PATH');
      });
    }
    const hmacSecret = secretRef(raw['hmac_secret'], `${path}.hmac_secret`, problems, false);
    const audience = raw['audience'];
    if (typeof audience !== 'string' || audience.length === 0) problems.add(`${path}.audience`, 'is required');
    const algorithms = stringList(raw['algorithms'], `${path}.algorithms`, ['RS256', 'ES256', 'EdDSA'], problems);
    for (const alg of algorithms) {
      if (JWT_HMAC_ALGORITHMS.includes(alg)) {
        if (hmacSecret === undefined) problems.add(`${path}.algorithms`, `${alg} needs hmac_secret (a secret reference)`);
      } else if (!JWT_ASYMMETRIC_ALGORITHMS.includes(alg)) problems.add(`${path}.algorithms`, `${alg === 'none' ? 'none is never allowed' : `unknown algorithm ${alg}`}`);
    }
    const hasAsymmetric = algorithms.some((a) => JWT_ASYMMETRIC_ALGORITHMS.includes(a));
    if (hasAsymmetric && !jwksUrl && publicKeys.length === 0) problems.add(path, 'needs jwks_url or public_keys for its asymmetric algorithms');
    if (hmacSecret !== undefined && !algorithms.some((a) => JWT_HMAC_ALGORITHMS.includes(a))) problems.add(`${path}.hmac_secret`, 'is set but algorithms lists no HS256/HS384/HS512');
    const claim = (key: string, fallback: string | undefined): string | undefined => {
      const v = raw[key];
      if (v === undefined) return fallback;
      if (typeof v !== 'string' || !CLAIM_NAME.test(v)) {
        problems.add(`${path}.${key}`, 'must be a claim name');
        return fallback;
      }
      return v;
    };
    const tenantClaim = claim('tenant_claim', 'tenant') as string;
    const subjectClaim = claim('subject_claim', undefined);
    if (typeof issuer === 'string' && typeof audience === 'string' && audience.length > 0) {
      issuers.push(Object.freeze({
        issuer, ...(jwksUrl ? { jwksUrl } : {}), publicKeys: Object.freeze(publicKeys), ...(hmacSecret !== undefined ? { hmacSecret } : {}),
        audience, algorithms, tenantClaim, ...(subjectClaim !== undefined ? { subjectClaim } : {}),
        clockSkewMs: duration(raw['clock_skew'], `${path}.clock_skew`, 30_000, problems),
        jwksCooldownMs: duration(raw['jwks_cooldown'], `${path}.jwks_cooldown`, 30_000, problems),
        jwksMaxAgeMs: duration(raw['jwks_max_age'], `${path}.jwks_max_age`, 600_000, problems),
      }));
    }
  });
  return { issuers: Object.freeze(issuers) };
}

const CLIENT_CERT_RULES: readonly ClientCertificateRule[] = ['subject_cn', 'san_uri', 'fingerprint'];
const TENANT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** A SHA-256 fingerprint as `sha256:<hex>`, plain hex or colon-separated hex → 64 lowercase hex digits. */
export function normaliseCertFingerprint(value: string): string | undefined {
  const hex = value.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

/** `listen.public_tls` (client certificates allowed) or `listen.admin_tls` (server certificate only). */
function listenerTlsConfig(value: Json, problems: Problems, path: 'listen.public_tls' | 'listen.admin_tls'): PublicTlsConfig | undefined {
  if (!isRecord(value)) {
    problems.add(path, 'must be a mapping with cert and key');
    return undefined;
  }
  // admin tokens authenticate admins; client certificates map only tenants
  checkKeys(value, path, path === 'listen.public_tls' ? ['cert', 'key', 'client_ca', 'client_auth', 'crl', 'reload_interval'] : ['cert', 'key', 'reload_interval'], problems);
  const filePath = (key: string, required: boolean): string | undefined => {
    const v = value[key];
    if (v === undefined || v === null) {
      if (required) problems.add(`${path}.${key}`, 'is required (the path of a PEM file)');
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0 || v.includes('\0') || v.trimStart().startsWith('-----BEGIN ')) {
      problems.add(`${path}.${key}`, 'must be the path of a PEM file');
      return undefined;
    }
    return v;
  };
  const cert = filePath('cert', true);
  const key = secretRef(value['key'], `${path}.key`, problems, true);
  const clientCa = filePath('client_ca', false);
  let clientAuth: PublicTlsConfig['clientAuth'] = 'require';
  if (value['client_auth'] !== undefined) {
    if (value['client_auth'] !== 'require' && value['client_auth'] !== 'optional') problems.add(`${path}.client_auth`, 'must be require or optional');
    else if (clientCa === undefined) problems.add(`${path}.client_auth`, 'needs client_ca (the CA bundle client certificates are checked against)');
    else clientAuth = value['client_auth'];
  }
  // revocation lists for client certificates: a path or a list of paths, read at start-up and at each reload
  let crl: string[] | undefined;
  if (value['crl'] !== undefined && value['crl'] !== null) {
    const raw = value['crl'];
    const paths = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : undefined;
    if (paths === undefined || paths.length === 0) problems.add(`${path}.crl`, 'must be the path of a PEM CRL file or a non-empty list of them');
    else {
      crl = [];
      paths.forEach((p: Json, i: number) => {
        const at = typeof raw === 'string' ? `${path}.crl` : `${path}.crl[${i}]`;
        if (typeof p !== 'string' || p.length === 0 || p.includes('\0') || p.trimStart().startsWith('-----BEGIN ')) problems.add(at, 'must be the path of a PEM CRL file');
        else crl?.push(p);
      });
      if (clientCa === undefined) problems.add(`${path}.crl`, 'needs client_ca (a CRL revokes client certificates)');
    }
  }
  const reloadIntervalMs = tlsReloadInterval(value['reload_interval'], `${path}.reload_interval`, problems);
  if (cert === undefined || key === undefined) return undefined;
  return { cert, key, ...(clientCa !== undefined ? { clientCa } : {}), ...(crl !== undefined && crl.length > 0 ? { crl } : {}), clientAuth, reloadIntervalMs };
}

/** Default of `listen.*_tls.reload_interval`: a new CRL or certificate is in use within five minutes. */
export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 300_000;
const MIN_TLS_RELOAD_INTERVAL_MS = 1_000;
// setTimeout holds at most 2^31-1 ms (a longer delay fires at once), and a CRL is republished daily at the least
const MAX_TLS_RELOAD_INTERVAL_MS = 86_400_000;

/**
 * `reload_interval`: a duration from 1s to 24h, or `0`/`off`/`false` for no periodic check
 * (SIGHUP still reloads). Below a second the key's secret backend would be asked too often.
 */
function tlsReloadInterval(value: Json, path: string, problems: Problems): number {
  if (value === undefined || value === null) return DEFAULT_TLS_RELOAD_INTERVAL_MS;
  if (value === 0 || value === false || value === '0' || value === 'off') return 0;
  const ms = typeof value === 'string' ? parseDuration(value) : undefined;
  if (ms === undefined || ms < MIN_TLS_RELOAD_INTERVAL_MS || ms > MAX_TLS_RELOAD_INTERVAL_MS) {
    problems.add(path, 'must be a duration from 1s to 24h, such as 5m, or 0 (off)');
    return DEFAULT_TLS_RELOAD_INTERVAL_MS;
  }
  return ms;
}

function clientCertificatesConfig(value: Json, problems: Problems): ClientCertificatesConfig | undefined {
  const path = 'auth.client_certificates';
  if (!isRecord(value)) {
    problems.add(path, 'must be a mapping with map_by and tenants');
    return undefined;
  }
  checkKeys(value, path, ['map_by', 'tenants'], problems);
  const mapBy = value['map_by'];
  if (typeof mapBy !== 'string' || !(CLIENT_CERT_RULES as readonly string[]).includes(mapBy)) {
    problems.add(`${path}.map_by`, `must be one of ${CLIENT_CERT_RULES.join(', ')}`);
    return undefined;
  }
  const raw = value['tenants'];
  if (!isRecord(raw) || Object.keys(raw).length === 0) {
    problems.add(`${path}.tenants`, 'must be a non-empty mapping of certificate value to tenant name');
    return undefined;
  }
  // no prototype: a mapped value such as `__proto__` is an ordinary entry
  const tenants: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [mapped, tenant] of Object.entries(raw)) {
    const entry = `${path}.tenants["${mapped.slice(0, 80)}"]`;
    let normalised: string | undefined = mapped;
    if (mapBy === 'fingerprint') {
      normalised = normaliseCertFingerprint(mapped);
      if (normalised === undefined) problems.add(entry, 'must be a SHA-256 fingerprint: sha256:<64 hex digits> or colon-separated hex');
    } else if (mapBy === 'san_uri' && !/^[A-Za-z][A-Za-z0-9+.-]*:\S{1,500}$/.test(mapped)) {
      normalised = undefined;
      problems.add(entry, 'must be a URI (such as spiffe://trust-domain/path)');
    } else if (mapBy === 'subject_cn' && (mapped.length === 0 || mapped.length > 256)) {
      normalised = undefined;
      problems.add(entry, 'must be a subject common name of 1 to 256 characters');
    }
    if (typeof tenant !== 'string' || !TENANT_NAME.test(tenant)) {
      problems.add(entry, 'must name a tenant (a-z, 0-9, _ and -)');
      continue;
    }
    if (normalised === undefined) continue;
    if (Object.hasOwn(tenants, normalised)) problems.add(entry, 'is listed twice');
    else tenants[normalised] = tenant;
  }
  return { mapBy: mapBy as ClientCertificateRule, tenants: Object.freeze(tenants) };
}

/** Longest `auth.failure_limits` window: a count held longer locks out more than it slows. */
const MAX_FAILURE_WINDOW_MS = 86_400_000;

/** Validates `auth.failure_limits`; absent, the safe defaults apply (on: 20 per address, 50 per key id, per minute). */
function failureLimitsConfig(raw: Record<string, Json>, problems: Problems): AuthFailureLimitsConfig {
  checkKeys(raw, 'auth.failure_limits', ['enabled', 'per_address', 'per_key'], problems);
  const limit = (key: string, fallback: { max: number; windowMs: number }) => {
    const path = `auth.failure_limits.${key}`;
    const r = section(raw, key, 'auth.failure_limits', problems);
    checkKeys(r, path, ['max', 'window'], problems);
    const windowMs = duration(r['window'], `${path}.window`, fallback.windowMs, problems);
    if (windowMs > MAX_FAILURE_WINDOW_MS) problems.add(`${path}.window`, 'must be at most 24h');
    return Object.freeze({ max: positiveInt(r['max'], `${path}.max`, fallback.max, problems, 1_000_000), windowMs });
  };
  return Object.freeze({
    enabled: bool(raw['enabled'], 'auth.failure_limits.enabled', true, problems),
    perAddress: limit('per_address', { max: 20, windowMs: 60_000 }),
    perKey: limit('per_key', { max: 50, windowMs: 60_000 }),
  });
}

function duration(value: Json, path: string, fallback: number, problems: Problems): number {
  if (value === undefined) return fallback;
  const ms = typeof value === 'string' ? parseDuration(value) : typeof value === 'number' ? value * 1000 : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) {
    problems.add(path, 'must be a duration such as 500ms, 60s or 5m');
    return fallback;
  }
  return ms;
}

function positiveInt(value: Json, path: string, fallback: number, problems: Problems, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    problems.add(path, `must be a whole number from 1 to ${max}`);
    return fallback;
  }
  return value;
}

function bool(value: Json, path: string, fallback: boolean, problems: Problems): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    problems.add(path, 'must be true or false');
    return fallback;
  }
  return value;
}

function stringList(value: Json, path: string, fallback: readonly string[], problems: Problems): readonly string[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0)) {
    problems.add(path, 'must be a list of names');
    return fallback;
  }
  return Object.freeze([...new Set(value as string[])]);
}

const POLICY_FIELDS = [
  'models', 'params', 'tools', 'files', 'max_body_bytes', 'max_output_tokens',
  'max_messages', 'max_attachments', 'max_attachment_bytes', 'limits', 'key_limits', 'dlp', 'capabilities',
] as const;

/**
 * Validates `capabilities: { "<model or *>": [tools, web_search, …] }` (docs/configuration.md).
 * Left out keeps the base's value; `null` removes it (the `tools`/`files` booleans apply again).
 */
export function parseCapabilities(
  value: Json,
  path: string,
  base: CapabilityPolicy | undefined,
  problems: { add(path: string, message: string): void },
): CapabilityPolicy | undefined {
  if (value === undefined) return base;
  if (value === null) return undefined;
  if (!isRecord(value)) {
    problems.add(path, 'must be a mapping of model name (or *) to a list of capabilities');
    return base;
  }
  const out = Object.create(null) as Record<string, readonly Capability[]>;
  for (const [model, list] of Object.entries(value)) {
    if (model.length === 0 || !Array.isArray(list) || !list.every(isCapability)) {
      // a model name from config or the admin API: echoed unless it is shaped like a key
      problems.add(join(path, echoName(model, '(model)')), `must be a list of ${CAPABILITY_NAMES.join(', ')}`);
      continue;
    }
    out[model] = Object.freeze([...new Set(list)]);
  }
  return Object.freeze(out);
}

function dlpMode(value: Json, path: string, fallback: DlpMode, problems: Problems): DlpMode {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(DLP_MODES as readonly string[]).includes(value)) {
    problems.add(path, `must be one of ${DLP_MODES.join(', ')}`);
    return fallback;
  }
  return value as DlpMode;
}

/**
 * Validates `dlp: { secrets, pii, pii_rules }` (prompt DLP, docs/configuration.md). Fields left
 * out keep the base's value; the default is everything off.
 */
export function parseDlp(value: Json, path: string, base: DlpPolicy, problems: { add(path: string, message: string): void }): DlpPolicy {
  const p = problems as Problems;
  if (value === undefined) return base;
  if (value === null) return DLP_OFF;
  if (!isRecord(value)) {
    p.add(path, 'must be a mapping such as { secrets: mask, pii: off }');
    return base;
  }
  checkKeys(value, path, ['secrets', 'pii', 'pii_rules'], p);
  let piiRules = base.piiRules;
  const rules = value['pii_rules'];
  if (rules !== undefined) {
    if (!Array.isArray(rules) || !rules.every((r) => typeof r === 'string' && (PII_RULE_NAMES as readonly string[]).includes(r))) {
      p.add(join(path, 'pii_rules'), `must be a list of ${PII_RULE_NAMES.join(', ')}`);
    } else piiRules = Object.freeze([...new Set(rules as PiiRuleName[])]);
  }
  return Object.freeze({
    secrets: dlpMode(value['secrets'], join(path, 'secrets'), base.secrets, p),
    pii: dlpMode(value['pii'], join(path, 'pii'), base.pii, p),
    piiRules,
  });
}

/**
 * Validates a limits mapping (`requests_per_minute`, `tokens_per_minute`, `tokens_per_day`,
 * `usd_per_day`, `usd_per_month`, `concurrent_requests`). Counts (requests in flight included)
 * are whole numbers ≥ 1; budgets are dollars > 0. `null` unsets a limit inherited from the base.
 */
export function parseLimits(value: Json, path: string, base: Limits, problems: { add(path: string, message: string): void }): Limits {
  if (value === undefined) return base;
  if (value === null) return Object.freeze({});
  if (!isRecord(value)) {
    problems.add(path, 'must be a mapping of limits');
    return base;
  }
  checkKeys(value, path, LIMIT_NAMES, problems as Problems);
  const out: Partial<Record<LimitName, number>> = { ...base };
  for (const name of LIMIT_NAMES) {
    const v = value[name];
    if (v === undefined) continue;
    if (v === null) {
      delete out[name];
      continue;
    }
    const isBudget = name.startsWith('usd_');
    const ok = typeof v === 'number' && Number.isFinite(v) && (isBudget ? v > 0 && v <= 1e7 : Number.isInteger(v) && v >= 1 && v <= 1e12);
    if (!ok) problems.add(join(path, name), isBudget ? 'must be a dollar amount above 0' : 'must be a whole number of at least 1');
    else out[name] = v;
  }
  return Object.freeze(out);
}

/**
 * Validates a policy mapping (snake_case, as in YAML or the admin API) over a base policy.
 * Fields left out keep the base's value. Used for `tenants.defaults.policy` and per-tenant overrides.
 */
export function parsePolicy(value: Json, path: string, base: TenantPolicy, problems: { add(path: string, message: string): void }): TenantPolicy {
  const p = problems as Problems;
  if (value === undefined || value === null) return base;
  if (!isRecord(value)) {
    p.add(path, 'must be a mapping');
    return base;
  }
  checkKeys(value, path, POLICY_FIELDS, p);
  return Object.freeze({
    models: stringList(value['models'], join(path, 'models'), base.models, p),
    params: stringList(value['params'], join(path, 'params'), base.params, p),
    tools: bool(value['tools'], join(path, 'tools'), base.tools, p),
    files: bool(value['files'], join(path, 'files'), base.files, p),
    maxBodyBytes: positiveInt(value['max_body_bytes'], join(path, 'max_body_bytes'), base.maxBodyBytes, p, 64 * 1_048_576),
    maxOutputTokens: positiveInt(value['max_output_tokens'], join(path, 'max_output_tokens'), base.maxOutputTokens, p, 1_000_000),
    maxMessages: positiveInt(value['max_messages'], join(path, 'max_messages'), base.maxMessages, p, 100_000),
    maxAttachments: positiveInt(value['max_attachments'], join(path, 'max_attachments'), base.maxAttachments, p, 1000),
    maxAttachmentBytes: positiveInt(value['max_attachment_bytes'], join(path, 'max_attachment_bytes'), base.maxAttachmentBytes, p, 64 * 1_048_576),
    limits: parseLimits(value['limits'], join(path, 'limits'), base.limits, p),
    keyLimits: parseLimits(value['key_limits'], join(path, 'key_limits'), base.keyLimits, p),
    dlp: parseDlp(value['dlp'], join(path, 'dlp'), base.dlp ?? DLP_OFF, p),
    ...capabilitiesField(parseCapabilities(value['capabilities'], join(path, 'capabilities'), base.capabilities, p)),
  });
}

/** `exactOptionalPropertyTypes`-safe: the field is left out rather than set to undefined. */
function capabilitiesField(capabilities: CapabilityPolicy | undefined): { capabilities?: CapabilityPolicy } {
  return capabilities === undefined ? {} : { capabilities };
}

/** Validates a policy override and returns its problems (empty when valid). */
export function checkPolicyOverride(value: Json, base: TenantPolicy): { policy: TenantPolicy; problems: string[] } {
  const problems = new Problems();
  const policy = parsePolicy(value, 'policy', base, problems);
  return { policy, problems: problems.list };
}

function baseUrl(value: Json, path: string, problems: Problems, keepPath = false): URL | undefined {
  if (typeof value !== 'string') {
    problems.add(path, 'is required (an https URL)');
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.add(path, 'must be an https URL');
    return undefined;
  }
  const loopback = isLoopbackHost(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    problems.add(path, 'must be an https URL (plain http is allowed only on loopback)');
    return undefined;
  }
  if (url.username || url.password || url.search || url.hash) {
    problems.add(path, 'must not carry credentials, a query or a fragment');
    return undefined;
  }
  // keep the path without a trailing slash so adapters can append `/chat/completions`
  if (!keepPath) url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

const PROVIDER_TYPES = ['openai', 'anthropic'] as const;

function providers(value: Record<string, Json>, problems: Problems): Record<string, ProviderConfig> {
  const out: Record<string, ProviderConfig> = {};
  for (const [id, raw] of Object.entries(value)) {
    const path = `providers.${id}`;
    if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(id)) problems.add(path, 'provider names use a-z, 0-9, _ and -');
    if (!isRecord(raw)) {
      problems.add(path, 'must be a mapping');
      continue;
    }
    checkKeys(raw, path, ['type', 'base_url', 'api_key', 'admin_key', 'project_id', 'timeout', 'connect_timeout', 'owner', 'purpose', 'rotate_every'], problems);
    const text = (key: string): string | undefined => {
      const v = raw[key];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v.trim() === '' || v.length > 200) {
        problems.add(`${path}.${key}`, 'must be a non-empty string of at most 200 characters');
        return undefined;
      }
      return v.trim();
    };
    const owner = text('owner');
    const purpose = text('purpose');
    let rotateEveryDays: number | undefined;
    if (raw['rotate_every'] !== undefined) {
      const ms = typeof raw['rotate_every'] === 'string' ? parseDuration(raw['rotate_every']) : undefined;
      if (ms === undefined || ms < 86_400_000 || ms % 86_400_000 !== 0) problems.add(`${path}.rotate_every`, 'must be a whole number of days such as 60d');
      else rotateEveryDays = ms / 86_400_000;
    }
    const type = raw['type'];
    if (typeof type !== 'string' || !(PROVIDER_TYPES as readonly string[]).includes(type)) {
      problems.add(`${path}.type`, `must be one of ${PROVIDER_TYPES.join(', ')}`);
    }
    const url = baseUrl(raw['base_url'], `${path}.base_url`, problems);
    const apiKey = secretRef(raw['api_key'], `${path}.api_key`, problems, true);
    // provider-side revocation (docs/provider-keys.md): an admin key, and OpenAI's project
    const adminKey = secretRef(raw['admin_key'], `${path}.admin_key`, problems, false);
    let projectId: string | undefined;
    if (raw['project_id'] !== undefined) {
      // it becomes a URL path segment: token characters only
      if (typeof raw['project_id'] !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(raw['project_id'])) {
        problems.add(`${path}.project_id`, 'must be a project id such as proj_abc123 (letters, digits, _ and -)');
      } else if (type !== 'openai') problems.add(`${path}.project_id`, 'is only used by type openai');
      else projectId = raw['project_id'];
    }
    if (adminKey !== undefined && type === 'openai' && raw['project_id'] === undefined) {
      problems.add(`${path}.project_id`, 'is required with admin_key for type openai (the project whose API keys the admin key manages)');
    }
    const timeoutMs = duration(raw['timeout'], `${path}.timeout`, 60_000, problems);
    const connectTimeoutMs = duration(raw['connect_timeout'], `${path}.connect_timeout`, 10_000, problems);
    if (url && apiKey && typeof type === 'string' && (PROVIDER_TYPES as readonly string[]).includes(type)) {
      out[id] = Object.freeze({
        id, type: type as ProviderConfig['type'], baseUrl: url, apiKey, timeoutMs, connectTimeoutMs,
        ...(owner !== undefined ? { owner } : {}), ...(purpose !== undefined ? { purpose } : {}),
        ...(rotateEveryDays !== undefined ? { rotateEveryDays } : {}),
        ...(adminKey !== undefined ? { adminKey } : {}), ...(projectId !== undefined ? { projectId } : {}),
      });
    }
  }
  return out;
}

function models(value: Record<string, Json>, known: Record<string, ProviderConfig>, problems: Problems): Record<string, ModelRoute> {
  const out: Record<string, ModelRoute> = {};
  for (const [name, raw] of Object.entries(value)) {
    const path = `models.${name}`;
    if (!isRecord(raw)) {
      problems.add(path, 'must be a mapping such as { provider: openai }');
      continue;
    }
    checkKeys(raw, path, ['provider', 'model'], problems);
    const provider = raw['provider'];
    if (typeof provider !== 'string' || !Object.hasOwn(known, provider)) {
      problems.add(`${path}.provider`, 'must name a provider configured under providers');
      continue;
    }
    const model = raw['model'] ?? name;
    if (typeof model !== 'string' || model.length === 0) {
      problems.add(`${path}.model`, 'must be a model name');
      continue;
    }
    out[name] = Object.freeze({ name, provider, model });
  }
  return out;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * True when a URL's query has a `password` parameter (its name in any percent-encoding): pg
 * reads a password from there as well as from the user-info part.
 */
/**
 * Whether a PostgreSQL URL holds a password anywhere pg would find one: the user-info part as a
 * URL parser reads it (split at the last `@`, so `user@server:secret@host` is caught), as pg's
 * own parser reads it, or a `password` query parameter.
 */
function urlCarriesPassword(url: string): boolean {
  try {
    if (new URL(url).password !== '') return true;
  } catch {
    // not a WHATWG URL: pg's parser below decides
  }
  try {
    if (parsePostgresUrl(url).password) return true;
  } catch {
    // pg cannot read it either: the store fails to open, with pg's (redacted) message
  }
  return queryNamesPassword(url);
}

function queryNamesPassword(url: string): boolean {
  const beforeFragment = url.split('#')[0] as string;
  const q = beforeFragment.indexOf('?');
  if (q < 0) return false;
  for (const name of new URLSearchParams(beforeFragment.slice(q + 1)).keys()) if (name.toLowerCase() === 'password') return true;
  return false;
}

/**
 * Validates a parsed YAML document and returns a frozen GatewayConfig, or the full list of problems.
 */
export function validateConfig(doc: Json): { config?: GatewayConfig; problems: string[] } {
  const problems = new Problems();
  if (!isRecord(doc)) return { problems: ['(root): must be a mapping'] };
  checkKeys(doc, '', ['listen', 'store', 'store_password', 'admin', 'audit', 'auth', 'log', 'providers', 'models', 'tenants', 'server', 'shutdown', 'limits', 'prices', 'alerts', 'secrets', 'rotation', 'anomaly'], problems);

  const listen = section(doc, 'listen', '', problems);
  checkKeys(listen, 'listen', ['public', 'admin', 'public_tls', 'admin_tls'], problems);
  const publicAddr = listenAddress(listen['public'], 'listen.public', { host: '127.0.0.1', port: 8080 }, problems);
  const publicTls = listen['public_tls'] === undefined || listen['public_tls'] === null ? undefined : listenerTlsConfig(listen['public_tls'], problems, 'listen.public_tls');
  const adminTls = listen['admin_tls'] === undefined || listen['admin_tls'] === null ? undefined : listenerTlsConfig(listen['admin_tls'], problems, 'listen.admin_tls');
  const adminAddr = listenAddress(listen['admin'], 'listen.admin', { host: '127.0.0.1', port: 8081 }, problems);

  const store = doc['store'] ?? 'sqlite:./data/keywarden.db';
  const postgresStore = typeof store === 'string' && /^postgres(ql)?:\/\/[^\s]+$/.test(store);
  if (typeof store !== 'string' || !(/^sqlite:.+/.test(store) || postgresStore)) {
    problems.add('store', 'must be sqlite:PATH or a postgres://user@host:port/db (or postgresql://) URL');
  } else if (postgresStore && urlCarriesPassword(store)) {
    // a password in the URL would sit in a config file and in doctor's output: use a reference
    problems.add('store', 'must not carry a password; set store_password to a secret reference (or use PGPASSWORD or ~/.pgpass)');
  }
  const storePassword = secretRef(doc['store_password'], 'store_password', problems, false);
  if (storePassword !== undefined && typeof store === 'string' && !postgresStore) problems.add('store_password', 'applies only to a postgres:// store');

  const admin = section(doc, 'admin', '', problems);
  checkKeys(admin, 'admin', ['token'], problems);
  const adminToken = secretRef(admin['token'], 'admin.token', problems, true);

  const audit = section(doc, 'audit', '', problems);
  checkKeys(audit, 'audit', ['prompt_hmac_key', 'hash_key_ids', 'retention', 'checkpoint_key', 'sampling'], problems);
  const promptHmacKey = secretRef(audit['prompt_hmac_key'], 'audit.prompt_hmac_key', problems, true);
  const hashKeyIds = bool(audit['hash_key_ids'], 'audit.hash_key_ids', false, problems);
  let auditRetentionMs: number | undefined;
  if (audit['retention'] !== undefined && audit['retention'] !== null) {
    const ms = typeof audit['retention'] === 'string' ? parseDuration(audit['retention']) : undefined;
    if (ms === undefined || ms < 86_400_000) problems.add('audit.retention', 'must be a duration of at least 1d, such as 400d');
    else auditRetentionMs = ms;
  }
  const checkpointKey = secretRef(audit['checkpoint_key'], 'audit.checkpoint_key', problems, false);
  let sampling: GatewayConfig['audit']['sampling'];
  if (audit['sampling'] !== undefined && audit['sampling'] !== null) {
    const s = section(audit, 'sampling', 'audit', problems);
    checkKeys(s, 'audit.sampling', ['rate', 'key', 'retention'], problems);
    const rate = s['rate'];
    const rateOk = typeof rate === 'number' && Number.isFinite(rate) && rate >= 0 && rate <= 1;
    if (!rateOk) problems.add('audit.sampling.rate', 'must be a fraction from 0 to 1, such as 0.01');
    const key = secretRef(s['key'], 'audit.sampling.key', problems, true);
    const retentionMs = duration(s['retention'], 'audit.sampling.retention', 7 * 86_400_000, problems);
    if (rateOk && key !== undefined && (rate as number) > 0) sampling = { rate: rate as number, key, retentionMs };
  }

  const auth = section(doc, 'auth', '', problems);
  checkKeys(auth, 'auth', ['key_hash_key', 'jwt', 'failure_limits', 'client_certificates'], problems);
  const keyHashKey = secretRef(auth['key_hash_key'], 'auth.key_hash_key', problems, false);
  const jwt = auth['jwt'] === undefined ? undefined : jwtConfig(auth['jwt'], problems);
  const failureLimits = failureLimitsConfig(section(auth, 'failure_limits', 'auth', problems), problems);
  const clientCertificates = auth['client_certificates'] === undefined || auth['client_certificates'] === null
    ? undefined : clientCertificatesConfig(auth['client_certificates'], problems);
  // a CA without a mapping would admit certificates that name no tenant; a mapping without a CA is never used
  if (publicTls?.clientCa !== undefined && auth['client_certificates'] === undefined) {
    problems.add('listen.public_tls.client_ca', 'needs auth.client_certificates (how a certificate maps to a tenant)');
  }
  if (auth['client_certificates'] !== undefined && publicTls?.clientCa === undefined) {
    problems.add('auth.client_certificates', 'needs listen.public_tls with client_ca (the CA bundle client certificates are checked against)');
  }

  const log = section(doc, 'log', '', problems);
  checkKeys(log, 'log', ['level'], problems);
  const level = log['level'] ?? 'info';
  if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
    problems.add('log.level', `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const providerMap = providers(section(doc, 'providers', '', problems), problems);
  if (Object.keys(providerMap).length === 0 && !problems.list.some((p) => p.startsWith('providers.'))) {
    problems.add('providers', 'configure at least one provider');
  }
  const modelMap = models(section(doc, 'models', '', problems), providerMap, problems);

  const tenants = section(doc, 'tenants', '', problems);
  checkKeys(tenants, 'tenants', ['defaults', 'response_owner_retention'], problems);
  // as long as the provider keeps stored responses (OpenAI: 30 days by default)
  const responseOwnerRetentionMs = duration(tenants['response_owner_retention'], 'tenants.response_owner_retention', 30 * 86_400_000, problems);
  if (responseOwnerRetentionMs < 3_600_000) problems.add('tenants.response_owner_retention', 'must be a duration of at least 1h, such as 30d');
  const defaults = section(tenants, 'defaults', 'tenants', problems);
  checkKeys(defaults, 'tenants.defaults', ['policy'], problems);
  const policy = parsePolicy(defaults['policy'], 'tenants.defaults.policy', DEFAULT_POLICY, problems);
  policy.models.forEach((name, i) => {
    if (!Object.hasOwn(modelMap, name)) problems.add(`tenants.defaults.policy.models[${i}]`, 'names a model not configured under models');
  });

  const server = section(doc, 'server', '', problems);
  checkKeys(server, 'server', ['max_header_bytes', 'max_headers', 'max_upstream_response_bytes', 'stream_stall_timeout'], problems);
  // how long a streamed answer may wait on a client that does not take its output (see docs/api.md):
  // it must end before the request's reservation lease, or a stalled stream would outlive its slot
  const stallSet = server['stream_stall_timeout'] !== undefined && server['stream_stall_timeout'] !== null;
  let streamStallMs = duration(server['stream_stall_timeout'], 'server.stream_stall_timeout', 5 * 60_000, problems);
  const shutdown = section(doc, 'shutdown', '', problems);
  checkKeys(shutdown, 'shutdown', ['drain_timeout'], problems);

  const limitsSection = section(doc, 'limits', '', problems);
  checkKeys(limitsSection, 'limits', ['store', 'redis_password', 'reservation_lease', 'key_prefix'], problems);
  const quotaStore = limitsSection['store'] ?? 'memory';
  // replicas share a PostgreSQL store; counters in each process's memory would let N replicas
  // allow N times every limit, so on PostgreSQL the choice is the operator's, made explicitly
  if ((limitsSection['store'] === undefined || limitsSection['store'] === null) && typeof store === 'string' && /^postgres(ql)?:\/\//.test(store)) {
    problems.add('limits.store', 'must be set with a postgres:// store: a redis:// URL shares quota counters across replicas; memory counts in each process (N replicas allow N times each limit)');
  }
  if (typeof quotaStore !== 'string' || !(quotaStore === 'memory' || /^rediss?:\/\/[^\s]+$/.test(quotaStore))) {
    problems.add('limits.store', 'must be memory or a redis:// (or rediss://) URL');
  } else if (/^rediss?:\/\/[^/@]*:[^/@]+@/.test(quotaStore)) {
    // a password in the URL would sit in a config file and in error messages: use a reference
    problems.add('limits.store', 'must not carry a password; set limits.redis_password to a secret reference');
  }
  const redisPassword = secretRef(limitsSection['redis_password'], 'limits.redis_password', problems, false);
  const leaseMs = duration(limitsSection['reservation_lease'], 'limits.reservation_lease', 15 * 60_000, problems);
  // unset, it follows a short lease down (half of it); set, it must stay below the lease
  if (!stallSet) streamStallMs = Math.min(streamStallMs, Math.floor(leaseMs / 2));
  else if (streamStallMs >= leaseMs) problems.add('server.stream_stall_timeout', 'must be shorter than limits.reservation_lease (a stalled stream would outlive its reservation)');
  // names every key written to the limits Redis (several deployments may share one server)
  const keyPrefix = limitsSection['key_prefix'] ?? 'keywarden:';
  if (typeof keyPrefix !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(keyPrefix)) {
    problems.add('limits.key_prefix', 'must be 1 to 64 characters of A-Z, a-z, 0-9, _ . : -');
  }

  const prices: Record<string, { input: number; output: number; cachedInput?: number }> = {};
  for (const [model, raw] of Object.entries(section(doc, 'prices', '', problems))) {
    const path = `prices.${model}`;
    if (!isRecord(raw)) {
      problems.add(path, 'must be a mapping such as { input: 0.15, output: 0.6 } (USD per million tokens)');
      continue;
    }
    checkKeys(raw, path, ['input', 'output', 'cached_input'], problems);
    const price = (key: string, required: boolean): number | undefined => {
      const v = raw[key];
      if (v === undefined && !required) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        problems.add(`${path}.${key}`, 'must be a price in USD per million tokens (0 or more)');
        return undefined;
      }
      return v;
    };
    const input = price('input', true);
    const output = price('output', true);
    const cachedInput = price('cached_input', false);
    if (input !== undefined && output !== undefined) prices[model] = { input, output, ...(cachedInput !== undefined ? { cachedInput } : {}) };
  }

  const alerts = section(doc, 'alerts', '', problems);
  checkKeys(alerts, 'alerts', ['webhook_url', 'webhook_secret', 'thresholds'], problems);
  const webhookUrl = alerts['webhook_url'] === undefined ? undefined : baseUrl(alerts['webhook_url'], 'alerts.webhook_url', problems, true);
  const webhookSecret = secretRef(alerts['webhook_secret'], 'alerts.webhook_secret', problems, false);
  let thresholds: readonly number[] = [50, 80, 100];
  if (alerts['thresholds'] !== undefined) {
    const t = alerts['thresholds'];
    if (!Array.isArray(t) || t.length === 0 || !t.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 100)) {
      problems.add('alerts.thresholds', 'must be a list of percentages from 1 to 100');
    } else thresholds = [...new Set(t as number[])].sort((a, b) => a - b);
  }

  const anomaly = anomalyConfig(section(doc, 'anomaly', '', problems), problems);

  const rotationSection = section(doc, 'rotation', '', problems);
  checkKeys(rotationSection, 'rotation', ['grace_period'], problems);
  const gracePeriodMs = duration(rotationSection['grace_period'], 'rotation.grace_period', 10 * 60_000, problems);

  const secretsSection = section(doc, 'secrets', '', problems);
  checkKeys(secretsSection, 'secrets', ['cache_ttl', 'refresh_interval', 'aws', 'azure', 'gcp', 'vault', 'enc_file'], problems);
  const aws = section(secretsSection, 'aws', 'secrets', problems);
  checkKeys(aws, 'secrets.aws', ['region', 'endpoint'], problems);
  const azure = section(secretsSection, 'azure', 'secrets', problems);
  checkKeys(azure, 'secrets.azure', ['vault_url_template'], problems);
  const gcp = section(secretsSection, 'gcp', 'secrets', problems);
  checkKeys(gcp, 'secrets.gcp', ['endpoint'], problems);
  const encFile = section(secretsSection, 'enc_file', 'secrets', problems);
  checkKeys(encFile, 'secrets.enc_file', ['key'], problems);
  const endpoint = (value: Json, path: string): string | undefined => {
    if (value === undefined) return undefined;
    const url = baseUrl(value, path, problems, true);
    return url?.toString().replace(/\/$/, '');
  };
  const vaultSection = secretsSection['vault'] === undefined ? undefined : section(secretsSection, 'vault', 'secrets', problems);
  let vault: GatewayConfig['secrets']['vault'];
  if (vaultSection) {
    checkKeys(vaultSection, 'secrets.vault', ['address', 'namespace', 'auth'], problems);
    const address = endpoint(vaultSection['address'] ?? null, 'secrets.vault.address');
    const auth = section(vaultSection, 'auth', 'secrets.vault', problems);
    checkKeys(auth, 'secrets.vault.auth', ['method', 'token', 'role_id', 'secret_id', 'mount'], problems);
    const namespace = typeof vaultSection['namespace'] === 'string' ? vaultSection['namespace'] : undefined;
    if (auth['method'] === 'approle') {
      const roleId = secretRef(auth['role_id'], 'secrets.vault.auth.role_id', problems, true);
      const secretId = secretRef(auth['secret_id'], 'secrets.vault.auth.secret_id', problems, true);
      const mount = typeof auth['mount'] === 'string' ? auth['mount'] : 'approle';
      if (address && roleId && secretId) vault = { address, namespace, auth: { method: 'approle', roleId, secretId, mount } };
    } else if (auth['method'] === 'token' || auth['method'] === undefined) {
      const token = secretRef(auth['token'], 'secrets.vault.auth.token', problems, true);
      if (address && token) vault = { address, namespace, auth: { method: 'token', token } };
    } else {
      problems.add('secrets.vault.auth.method', 'must be token or approle');
    }
  }
  const secrets: GatewayConfig['secrets'] = {
    cacheTtlMs: duration(secretsSection['cache_ttl'], 'secrets.cache_ttl', 3_600_000, problems),
    refreshMs: duration(secretsSection['refresh_interval'], 'secrets.refresh_interval', 300_000, problems),
    aws: { region: typeof aws['region'] === 'string' ? aws['region'] : undefined, endpoint: endpoint(aws['endpoint'], 'secrets.aws.endpoint') },
    azure: { vaultUrlTemplate: typeof azure['vault_url_template'] === 'string' ? azure['vault_url_template'] : undefined },
    gcp: { endpoint: endpoint(gcp['endpoint'], 'secrets.gcp.endpoint') },
    vault,
    encFileKey: secretRef(encFile['key'], 'secrets.enc_file.key', problems, false),
  };

  const config: GatewayConfig = {
    listen: { public: publicAddr, admin: adminAddr, ...(publicTls ? { publicTls } : {}), ...(adminTls ? { adminTls } : {}) },
    store: String(store),
    storePassword,
    admin: { token: adminToken ?? '' },
    audit: { promptHmacKey: promptHmacKey ?? '', hashKeyIds, retentionMs: auditRetentionMs, checkpointKey, sampling },
    auth: { keyHashKey, failureLimits, ...(jwt ? { jwt } : {}), ...(clientCertificates ? { clientCertificates } : {}) },
    log: { level: level as GatewayConfig['log']['level'] },
    providers: Object.freeze(providerMap),
    models: Object.freeze(modelMap),
    tenants: { defaults: { policy }, responseOwnerRetentionMs },
    server: {
      maxHeaderBytes: positiveInt(server['max_header_bytes'], 'server.max_header_bytes', 16_384, problems, 1_048_576),
      maxHeaders: positiveInt(server['max_headers'], 'server.max_headers', 100, problems, 2000),
      maxUpstreamResponseBytes: positiveInt(server['max_upstream_response_bytes'], 'server.max_upstream_response_bytes', 32 * 1_048_576, problems),
      streamStallMs,
    },
    shutdown: { drainTimeoutMs: duration(shutdown['drain_timeout'], 'shutdown.drain_timeout', 30_000, problems) },
    quota: { store: String(quotaStore), redisPassword, leaseMs, keyPrefix: String(keyPrefix) },
    prices,
    alerts: { webhookUrl, webhookSecret, thresholds },
    anomaly,
    secrets,
    rotation: { gracePeriodMs },
  };
  if (problems.list.length > 0) return { problems: problems.list };
  return { config: deepFreeze(config), problems: [] };
}

function positiveNumber(value: Json, path: string, fallback: number, problems: Problems, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    problems.add(path, `must be a number from ${min} to ${max}`);
    return fallback;
  }
  return value;
}

/** Most buckets in the baseline window: each tenant keeps one ring of them. */
const MAX_ANOMALY_BUCKETS = 10_080;

/** Validates `anomaly:` (docs/anomalies.md); every field has a default. */
function anomalyConfig(raw: Record<string, Json>, problems: Problems): AnomalyConfig {
  const d = DEFAULT_ANOMALY_CONFIG;
  checkKeys(raw, 'anomaly', ['enabled', 'bucket', 'window', 'min_history', 'quiet_time', 'request_rate', 'token_rate', 'error_rate',
    'auth_failures', 'new_address', 'unusual_hours'], problems);
  const bucketMs = duration(raw['bucket'], 'anomaly.bucket', d.bucketMs, problems);
  const windowMs = duration(raw['window'], 'anomaly.window', d.windowMs, problems);
  // a zero history is allowed: `0s` judges a tenant from its first full bucket on
  const minHistoryMs = raw['min_history'] === 0 || raw['min_history'] === '0s' ? 0 : duration(raw['min_history'], 'anomaly.min_history', d.minHistoryMs, problems);
  const quietMs = duration(raw['quiet_time'], 'anomaly.quiet_time', d.quietMs, problems);
  if (windowMs < bucketMs) problems.add('anomaly.window', 'must be at least one bucket long');
  else if (windowMs / bucketMs > MAX_ANOMALY_BUCKETS) problems.add('anomaly.window', `must hold at most ${MAX_ANOMALY_BUCKETS} buckets`);
  if (minHistoryMs > windowMs) problems.add('anomaly.min_history', 'must not be longer than anomaly.window');

  const rate = (key: string, base: RateRule): RateRule => {
    const r = section(raw, key, 'anomaly', problems);
    const path = `anomaly.${key}`;
    checkKeys(r, path, ['enabled', 'k', 'factor', 'min_count'], problems);
    return Object.freeze({
      enabled: bool(r['enabled'], `${path}.enabled`, base.enabled, problems),
      k: positiveNumber(r['k'], `${path}.k`, base.k, problems, 0, 100),
      factor: positiveNumber(r['factor'], `${path}.factor`, base.factor, problems, 1, 1000),
      minCount: positiveInt(r['min_count'], `${path}.min_count`, base.minCount, problems, 1e12),
    });
  };
  const err = section(raw, 'error_rate', 'anomaly', problems);
  checkKeys(err, 'anomaly.error_rate', ['enabled', 'k', 'min_rate', 'min_errors'], problems);
  const auth = section(raw, 'auth_failures', 'anomaly', problems);
  checkKeys(auth, 'anomaly.auth_failures', ['enabled', 'per_address', 'global', 'max_addresses'], problems);
  const fresh = section(raw, 'new_address', 'anomaly', problems);
  checkKeys(fresh, 'anomaly.new_address', ['enabled', 'learning_period', 'min_requests', 'max_addresses_per_key'], problems);
  const hours = section(raw, 'unusual_hours', 'anomaly', problems);
  checkKeys(hours, 'anomaly.unusual_hours', ['enabled', 'learning_period', 'min_requests'], problems);
  return {
    enabled: bool(raw['enabled'], 'anomaly.enabled', d.enabled, problems),
    bucketMs, windowMs, minHistoryMs, quietMs,
    requestRate: rate('request_rate', d.requestRate),
    tokenRate: rate('token_rate', d.tokenRate),
    errorRate: Object.freeze({
      enabled: bool(err['enabled'], 'anomaly.error_rate.enabled', d.errorRate.enabled, problems),
      k: positiveNumber(err['k'], 'anomaly.error_rate.k', d.errorRate.k, problems, 0, 100),
      minRate: positiveNumber(err['min_rate'], 'anomaly.error_rate.min_rate', d.errorRate.minRate, problems, 0.001, 1),
      minErrors: positiveInt(err['min_errors'], 'anomaly.error_rate.min_errors', d.errorRate.minErrors, problems, 1e9),
    }),
    authFailures: Object.freeze({
      enabled: bool(auth['enabled'], 'anomaly.auth_failures.enabled', d.authFailures.enabled, problems),
      perAddress: positiveInt(auth['per_address'], 'anomaly.auth_failures.per_address', d.authFailures.perAddress, problems, 1e9),
      global: positiveInt(auth['global'], 'anomaly.auth_failures.global', d.authFailures.global, problems, 1e9),
      maxAddresses: positiveInt(auth['max_addresses'], 'anomaly.auth_failures.max_addresses', d.authFailures.maxAddresses, problems, 10_000_000),
    }),
    newAddress: Object.freeze({
      enabled: bool(fresh['enabled'], 'anomaly.new_address.enabled', d.newAddress.enabled, problems),
      learningMs: duration(fresh['learning_period'], 'anomaly.new_address.learning_period', d.newAddress.learningMs, problems),
      minRequests: positiveInt(fresh['min_requests'], 'anomaly.new_address.min_requests', d.newAddress.minRequests, problems, 1e12),
      maxAddressesPerKey: positiveInt(fresh['max_addresses_per_key'], 'anomaly.new_address.max_addresses_per_key', d.newAddress.maxAddressesPerKey, problems, 100_000),
    }),
    unusualHours: Object.freeze({
      enabled: bool(hours['enabled'], 'anomaly.unusual_hours.enabled', d.unusualHours.enabled, problems),
      learningMs: duration(hours['learning_period'], 'anomaly.unusual_hours.learning_period', d.unusualHours.learningMs, problems),
      minRequests: positiveInt(hours['min_requests'], 'anomaly.unusual_hours.min_requests', d.unusualHours.minRequests, problems, 1e12),
    }),
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !(value instanceof URL) && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
