import type { ProviderType } from '../providers/types.js';
import type { TenantPolicy } from '../policy/types.js';
import type { AnomalyConfig } from '../anomaly/types.js';

/** `host:port` to listen on. */
export interface ListenAddress {
  host: string;
  port: number;
}

export interface ProviderConfig {
  /** The config key, e.g. `openai`. */
  id: string;
  type: ProviderType;
  /** Fixed by the operator; no client value can change it. */
  baseUrl: URL;
  /** A secret reference (`env:NAME`, `file:PATH`, …), never the key itself. */
  apiKey: string;
  /** Longest wait for the answer's headers, and between two chunks of its body. */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** Ownership register defaults for a key bootstrapped from this config (see docs/provider-keys.md). */
  owner?: string;
  purpose?: string;
  /** Rotation interval in days (default 60). */
  rotateEveryDays?: number;
  /**
   * A secret reference to the provider's admin key (OpenAI organization admin key, Anthropic admin
   * key), used only by `provider-keys revoke --provider-side`; never sent with model requests.
   */
  adminKey?: string;
  /** OpenAI: the project whose API keys `adminKey` manages (required with it). */
  projectId?: string;
}

export interface ModelRoute {
  /** Public name clients use. */
  name: string;
  provider: string;
  /** The provider's model name. */
  model: string;
}

/** Secret backends (each optional) and caching; references name the backend by scheme. */
export interface SecretsConfig {
  /** How long a value stays usable after its last successful load. */
  cacheTtlMs: number;
  /** How often every loaded reference is reloaded in the background. */
  refreshMs: number;
  aws: { region: string | undefined; endpoint: string | undefined };
  azure: { vaultUrlTemplate: string | undefined };
  gcp: { endpoint: string | undefined };
  vault:
    | { address: string; namespace: string | undefined; auth: { method: 'token'; token: string } | { method: 'approle'; roleId: string; secretId: string; mount: string } }
    | undefined;
  /** The reference holding the key of `enc-file:` secrets files. */
  encFileKey: string | undefined;
}

/** One trusted JWT issuer (`auth.jwt.issuers[]`). */
export interface JwtIssuerConfig {
  issuer: string;
  /** Where the issuer publishes its JWKS (https, or http on loopback). */
  jwksUrl?: URL;
  /** Static public keys: PEM text, or secret references (`file:PATH`) to PEM. */
  publicKeys: readonly string[];
  /** A secret reference to the HMAC secret; HS* algorithms are allowed only with it. */
  hmacSecret?: string;
  audience: string;
  algorithms: readonly string[];
  tenantClaim: string;
  subjectClaim?: string;
  clockSkewMs: number;
  jwksCooldownMs: number;
  jwksMaxAgeMs: number;
}

/** TLS on the public listener (`listen.public_tls`). */
export interface PublicTlsConfig {
  /** Path of the server certificate chain (PEM); not a secret. */
  cert: string;
  /** A secret reference to the server's private key (PEM). */
  key: string;
  /** Path of the CA bundle (PEM) client certificates must chain to; when set, client certificates are requested. */
  clientCa?: string;
  /** Paths of PEM CRL files (`crl`, a path or a list) client certificates are checked against; read at start-up and at each reload. */
  crl?: readonly string[];
  /** `require`: every request needs a verified certificate; `optional`: requests without one use keys or JWTs. */
  clientAuth: 'require' | 'optional';
  /**
   * `reload_interval`: how often the files and the key are read again and, when they changed,
   * applied to new handshakes (SIGHUP does it at once); 0 turns the periodic check off. Set by
   * the validator (default 5m); unset means off.
   */
  reloadIntervalMs?: number;
}

/** What of a verified client certificate names its tenant (`auth.client_certificates.map_by`). */
export type ClientCertificateRule = 'subject_cn' | 'san_uri' | 'fingerprint';

/** `auth.client_certificates`: verified client certificates → tenants. */
export interface ClientCertificatesConfig {
  mapBy: ClientCertificateRule;
  /** Mapped value → tenant name; fingerprints normalised to lowercase hex (64 characters, no separators). */
  tenants: Readonly<Record<string, string>>;
}

/** `auth.failure_limits`: slows credential guessing on both listeners (docs/configuration.md). */
export interface AuthFailureLimitsConfig {
  enabled: boolean;
  perAddress: { max: number; windowMs: number };
  perKey: { max: number; windowMs: number };
}

/** A validated, frozen configuration. Field names in YAML are snake_case; here camelCase. */
export interface GatewayConfig {
  /** `publicTls`: TLS (and client certificates) on the public listener; unset, it speaks plain HTTP. */
  /** `adminTls`: TLS on the admin listener (server certificate only), for `--admin-url https://…` from another host. */
  listen: { public: ListenAddress; admin: ListenAddress; publicTls?: PublicTlsConfig; adminTls?: PublicTlsConfig };
  /** `sqlite:PATH` (or `sqlite::memory:` for tests), or `postgres://user@host:port/db` (also `postgresql://`) shared by replicas. */
  store: string;
  /** `store_password`: secret reference for the PostgreSQL password (never in the URL); unset, PGPASSWORD or ~/.pgpass apply. */
  storePassword: string | undefined;
  admin: { token: string };
  audit: {
    promptHmacKey: string;
    /** `audit.hash_key_ids`: request audit rows name tenant keys by their HMAC under the store's audit salt. */
    hashKeyIds: boolean;
    /** `audit.retention`: audit rows older than this are pruned (with a signed checkpoint); undefined keeps them. */
    retentionMs: number | undefined;
    /** `audit.checkpoint_key`: a secret reference signing retention checkpoints; unset, the store's own secret signs them. */
    checkpointKey: string | undefined;
    /** `audit.sampling`: encrypted content sampling of whole answers; undefined (the default) is off. */
    sampling: { rate: number; key: string; retentionMs: number } | undefined;
  };
  /** Keyed hash for tenant-key secrets; when unset, a random key persisted in the store is used. */
  auth: {
    keyHashKey: string | undefined;
    /** `auth.jwt`: trusted OIDC/JWT issuers (docs/configuration.md); unset, only tenant keys authenticate. */
    jwt?: { issuers: readonly JwtIssuerConfig[] };
    /** `auth.client_certificates`: how verified client certificates map to tenants (with `listen.public_tls.client_ca`). */
    clientCertificates?: ClientCertificatesConfig;
    /** `auth.failure_limits`: failed authentications allowed per client address and per key id before 429s. */
    failureLimits: AuthFailureLimitsConfig;
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  providers: Readonly<Record<string, ProviderConfig>>;
  models: Readonly<Record<string, ModelRoute>>;
  /**
   * `responseOwnerRetentionMs` (`tenants.response_owner_retention`, default 30d): how long the
   * gateway remembers which tenant a stored Responses answer went to; chaining on an older id is refused.
   */
  tenants: { defaults: { policy: TenantPolicy }; responseOwnerRetentionMs: number };
  /** HTTP-level bounds of the listeners and the upstream client. */
  server: {
    /** Most header bytes per request (Node's parser refuses more). */
    maxHeaderBytes: number;
    /** Most headers per request. */
    maxHeaders: number;
    /** Largest upstream answer (non-streamed) the gateway will buffer. */
    maxUpstreamResponseBytes: number;
    /** Longest a streamed answer waits for its client to take buffered output before it is ended (`client_read_timeout`). */
    streamStallMs: number;
  };
  shutdown: { drainTimeoutMs: number };
  /**
   * Where quota counters live: `memory` (embedded, this process) or a `redis://` URL shared by
   * replicas (failed-authentication counts are then shared through it too). `keyPrefix`
   * (`limits.key_prefix`) starts every key written there.
   */
  quota: { store: string; redisPassword: string | undefined; leaseMs: number; keyPrefix: string };
  /** Price overrides, USD per million tokens, by upstream model name. */
  prices: Readonly<Record<string, { input: number; output: number; cachedInput?: number }>>;
  /** Secret backends and the cache in front of them. */
  secrets: SecretsConfig;
  /** Budget threshold alerts. */
  alerts: { webhookUrl: URL | undefined; webhookSecret: string | undefined; thresholds: readonly number[] };
  /** Anomaly detection on per-tenant rolling baselines (docs/anomalies.md); alerts go to `alerts.webhook_url`. */
  anomaly: AnomalyConfig;
  /** Provider key rotation: how long a replaced key stays `previous` before it is revoked. */
  rotation?: { gracePeriodMs: number };
}
