import { configWarnings } from './config/warnings.js';
import type { FastifyInstance } from 'fastify';
import type { PublicApp } from './server/public-app.js';
import type { DestinationStream } from 'pino';
import type { GatewayConfig, PublicTlsConfig } from './config/types.js';
import type { Store } from './store/types.js';
import { openSqliteStore } from './store/sqlite/index.js';
import { isPostgresUrl, openPostgresStore } from './store/postgres/index.js';
import { createSecretResolver, type SecretResolver } from './secrets/resolver.js';
import type { ProviderKeyPool } from './secrets/provider-keys.js';
import type { VerifiedKey } from './auth/authenticate.js';
import type { Logger } from './log/logger.js';
import type { ProviderTarget } from './server/proxy.js';
import type { RecordWriter } from './audit/record-writer.js';
import type { Metrics } from './metrics/registry.js';
import type { TlsListenerSource, TlsReloadOutcome } from './server/tls-reload.js';
import { createTenantService, type TenantService } from './services/tenant-service.js';
import { createAdminTokenService } from './services/admin-token-service.js';
import { createActivityService } from './services/activity-service.js';
import { checkServerTls, inFlightRequests, type HttpServerTls } from './server/http-server.js';
import { readFileSync } from 'node:fs';
import type { CounterStore } from './quota/types.js';
import { createMemoryCounterStore } from './quota/memory-store.js';
import { parseCounterKey } from './quota/windows.js';

/*
 * Wiring: the only file that picks concrete backends. Everything else takes interfaces.
 * The serving stack (HTTP framework, upstream client, tokenizer, Redis client) is imported
 * only by createGateway, so store commands of the CLI start fast.
 */

/**
 * The quota counter store a config names. The embedded one seeds each counter from the usage
 * ledger the first time it is used, so a restart keeps a month's spending.
 */
export async function openCounterStore(config: GatewayConfig, store: Store, resolver: SecretResolver): Promise<CounterStore> {
  if (config.quota.store === 'memory') {
    return createMemoryCounterStore({
      seed: async (key) => {
        const parsed = parseCounterKey(key);
        if (!parsed) return 0;
        return store.records.sumUsage({ scope: parsed.scope === 't' ? 'tenant' : 'key', id: parsed.id, metric: parsed.metric, since: parsed.start, until: parsed.end });
      },
      claimOnce: (key, expiresAt) => store.claimOnce(key, expiresAt),
    });
  }
  const password = config.quota.redisPassword ? (await resolver.resolve(config.quota.redisPassword)).value : undefined;
  const { createRedisCounterStore } = await import('./quota/redis-store.js');
  return createRedisCounterStore({ url: config.quota.store, keyPrefix: config.quota.keyPrefix, ...(password ? { password } : {}) });
}

/**
 * The Redis connection failed-authentication counts are shared through: the `limits.store`
 * server, with the same password reference and key prefix as the quota counters. Outages are
 * logged once each way; the URL and password never are.
 */
async function openAuthFailureStore(config: GatewayConfig, resolver: SecretResolver, logger: Logger) {
  const password = config.quota.redisPassword ? (await resolver.resolve(config.quota.redisPassword)).value : undefined;
  const { createAuthFailureStore } = await import('./auth/shared-failure-limiter.js');
  return createAuthFailureStore({
    url: config.quota.store, prefix: config.quota.keyPrefix, ...(password ? { password } : {}),
    onUnavailable: (reason) => logger.warn({ event: 'auth_failure_store_unavailable', ...(reason ? { reason } : {}) },
      'the limits store (Redis) is unreachable; failed authentications are limited per process until it is back'),
    onAvailable: () => logger.info({ event: 'auth_failure_store_available' }, 'the limits store (Redis) is reachable again; failed-authentication limits are shared again'),
  });
}

/**
 * Opens the store a config names: an SQLite file, or PostgreSQL shared by replicas. The
 * PostgreSQL store connects and migrates on first use, so a database that is down or refuses
 * the login is reported by the first call (at start-up, the key-hash secret), not here.
 */
export function openStore(config: GatewayConfig): Store {
  if (!isPostgresUrl(config.store)) return openSqliteStore(config.store);
  const reference = config.storePassword;
  if (reference === undefined) return openPostgresStore(config.store);
  // read through the configured secret backends when a connection opens (their cache applies)
  let resolver: Promise<SecretResolver> | undefined;
  const password = async (): Promise<string> => {
    resolver ??= import('./secrets/from-config.js').then(({ createConfiguredResolver }) => createConfiguredResolver(config.secrets)).catch((err: unknown) => {
      resolver = undefined;
      throw err;
    });
    return (await (await resolver).resolve(reference)).value;
  };
  return openPostgresStore(config.store, { password });
}

/** The key that hashes tenant-key secrets: from config when set, else the store's own random one. */
export async function loadKeyHashKey(config: GatewayConfig, store: Store, resolver: SecretResolver): Promise<Buffer> {
  if (config.auth.keyHashKey !== undefined) return Buffer.from((await resolver.resolve(config.auth.keyHashKey)).value, 'utf8');
  return store.instanceSecret('tenant-key-hash');
}

/**
 * Loads the public listener's TLS material: the certificate, CA bundle and CRLs from their paths, the
 * private key through the secret resolver; then checks they work together (a client CA bundle must
 * hold whole, parseable certificates). Errors name the config path and file, never the key. The
 * start and every reload (SIGHUP, `reload_interval`) load through here.
 */
export async function loadPublicTls(
  tls: PublicTlsConfig, resolver: SecretResolver, path: 'listen.public_tls' | 'listen.admin_tls' = 'listen.public_tls', onWarning?: (message: string) => void,
): Promise<HttpServerTls> {
  const read = (file: string, field: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`${path}.${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const loaded: HttpServerTls = {
    cert: read(tls.cert, 'cert'),
    key: await resolver.resolve(tls.key).then((secret) => secret.value, (err: unknown) => {
      throw new Error(`${path}.key: ${(err as Error).message}`);
    }),
    ...(tls.clientCa !== undefined ? { clientCa: read(tls.clientCa, 'client_ca') } : {}),
  };
  if (tls.clientCa !== undefined && loaded.clientCa !== undefined) {
    // OpenSSL takes an empty or half-written bundle silently and then trusts no client at all
    const problems = (await import('./auth/ca-bundle.js')).caBundleProblems(loaded.clientCa, tls.clientCa, path);
    if (problems.length > 0) throw new Error(problems.join('\n'));
  }
  if (tls.crl !== undefined && loaded.clientCa !== undefined) {
    // every CRL problem listed at once; warnings name conditions under which OpenSSL refuses certificates
    const crls = (await import('./auth/crl.js')).loadCrls(tls.crl, loaded.clientCa, path, (file) => readFileSync(file, 'utf8'));
    if (crls.problems.length > 0) throw new Error(crls.problems.join('\n'));
    for (const warning of crls.warnings) onWarning?.(warning);
    loaded.crl = crls.pems;
  }
  checkServerTls(loaded, path);
  return loaded;
}

/** The services the admin API and the CLI share, over one store. */
export async function openServices(config: GatewayConfig, resolver?: SecretResolver) {
  if (!resolver && config.auth.keyHashKey !== undefined) {
    const { createConfiguredResolver } = await import('./secrets/from-config.js');
    resolver = await createConfiguredResolver(config.secrets);
  }
  const store = openStore(config);
  try {
    const hashKey = await loadKeyHashKey(config, store, resolver ?? createSecretResolver());
    const tenants = createTenantService({ store, hashKey, defaults: config.tenants.defaults.policy });
    // without the bootstrap token: the CLI issues and revokes tokens, the gateway verifies them
    const adminTokens = createAdminTokenService({ store, hashKey });
    return { store, hashKey, tenants, adminTokens };
  } catch (err) {
    await store.close();
    throw err;
  }
}

export interface GatewayOptions {
  /** Log destination (tests capture it); stdout by default. */
  logDestination?: DestinationStream;
  logger?: Logger;
  resolver?: SecretResolver;
  /** Record writer flush interval (tests shorten it). */
  flushIntervalMs?: number;
  /** The clock anomaly detection learns and judges by (tests move it to other hours and days). */
  anomalyClock?: () => number;
}

export interface Gateway {
  config: GatewayConfig;
  logger: Logger;
  store: Store;
  tenants: TenantService;
  keys: ProviderKeyPool;
  writer: RecordWriter;
  counters: CounterStore;
  /** Prometheus metrics, served by the admin listener at `/metrics`. */
  metrics: Metrics;
  publicApp: PublicApp;
  adminApp: FastifyInstance;
  /** Starts both listeners; returns their base URLs. */
  listen(): Promise<{ publicUrl: string; adminUrl: string }>;
  /**
   * Reads the TLS listeners' files and key again and puts changed material in use for new
   * connections (`keywarden serve` calls it on SIGHUP). Never rejects: a failure keeps the
   * material in use and is logged (`tls_reload_failed`). Empty without TLS listeners.
   */
  reloadTls(trigger?: 'signal' | 'call'): Promise<readonly TlsReloadOutcome[]>;
  /** Stops accepting, drains in-flight requests, flushes records and logs, closes the store. */
  close(): Promise<void>;
}

/**
 * Builds a gateway from a validated configuration: loads secrets (refusing to start when one
 * is missing), opens the store and wires the request stages.
 */
export async function createGateway(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const [
    { createSecretCache }, { createConfiguredResolver },
    { createLogger }, { createProviderKeyPool }, { createAuthenticator }, { createPolicyResolver }, { createProviderAdapter },
    { createUpstreamClient }, { createProxy }, { createPublicApp }, { createAdminApp }, { createPromptFingerprinter },
    { createRecordWriter }, { createRequestRecorder }, { createAdmission, hasAny: hasAnyLimit }, { createPriceTable }, { createTokenEstimator }, { createAlertSink },
    { createMetrics }, trail, sampling, { createAnomalyDetector }, { createAnomalyAlertSink },
  ] = await Promise.all([
    import('./secrets/cache.js'), import('./secrets/from-config.js'),
    import('./log/logger.js'), import('./secrets/provider-keys.js'), import('./auth/authenticate.js'), import('./policy/resolve.js'),
    import('./providers/registry.js'), import('./upstream/client.js'), import('./server/proxy.js'), import('./server/public-app.js'),
    import('./admin/app.js'), import('./audit/fingerprint.js'), import('./audit/record-writer.js'), import('./audit/request-recorder.js'),
    import('./quota/admission.js'), import('./quota/prices.js'), import('./quota/estimate.js'), import('./quota/alerts.js'),
    import('./metrics/registry.js'), import('./audit/trail.js'), import('./audit/sampling.js'),
    import('./anomaly/detector.js'), import('./anomaly/alerts.js'),
  ]);
  const logger = options.logger ?? createLogger({ level: config.log.level, ...(options.logDestination ? { destination: options.logDestination } : {}) });
  const resolver = options.resolver ?? await createConfiguredResolver(config.secrets, { onWarning: (message) => logger.warn({ event: 'secret_from_env' }, message) });

  // secrets first: a gateway that cannot authenticate admins or fingerprint prompts must not start
  const adminToken = (await resolver.resolve(config.admin.token)).value;
  const promptKey = (await resolver.resolve(config.audit.promptHmacKey)).value;
  const sampleKey = config.audit.sampling ? sampling.parseSampleKey((await resolver.resolve(config.audit.sampling.key)).value) : undefined;
  const configuredCheckpointKey = config.audit.checkpointKey ? (await resolver.resolve(config.audit.checkpointKey)).value : undefined;
  // TLS of the public listener: files read, key resolved and checked now, so a bad one stops the gateway
  const publicTlsWarnings: string[] = [];
  const publicTls = config.listen.publicTls
    ? await loadPublicTls(config.listen.publicTls, resolver, 'listen.public_tls', (message) => {
      publicTlsWarnings.push(message);
      logger.warn({ event: 'tls_crl_warning', listener: 'public' }, message);
    })
    : undefined;
  const adminTls = config.listen.adminTls ? await loadPublicTls(config.listen.adminTls, resolver, 'listen.admin_tls') : undefined;
  const secretCache = createSecretCache({
    resolver, ttlMs: config.secrets.cacheTtlMs, refreshMs: config.secrets.refreshMs,
    onEvent: (event) => {
      if (event.type === 'version_changed') logger.info({ event: 'secret_version_changed', reference: event.reference, version: event.version }, 'a secret has a new version');
      else if (event.type === 'refresh_failed') logger.warn({ event: 'secret_refresh_failed', reference: event.reference, reason: event.reason }, event.message ?? 'secret refresh failed');
      else logger.error({ event: 'secret_expired', reference: event.reference }, 'a secret expired after failed refreshes; requests needing it are refused');
    },
  });
  const { store, tenants, hashKey } = await openServices(config, resolver);
  // the provider key pool reads the register in the store: only `current` keys serve requests
  const keys = createProviderKeyPool({
    providers: config.providers, cache: secretCache, repo: store.providerKeys,
    containedProviders: () => store.incidents.containedProviders(),
    onEvent: (event) => {
      if (event.type === 'unverified_version') {
        logger.error({ event: 'provider_key_unverified_version', provider: event.provider, key_id: event.keyId, reference: event.reference, fingerprint: event.fingerprint },
          'the vault holds a key version the register has not verified; the last verified key is kept; run keywarden provider-keys rotate');
      } else if (event.type === 'revoked') {
        logger.info({ event: 'provider_key_revoked', provider: event.provider, key_id: event.keyId, fingerprint: event.fingerprint }, event.message ?? 'provider key revoked');
      } else if (event.type === 'preload_failed') {
        logger.warn({ event: 'provider_key_preload_failed', provider: event.provider, key_id: event.keyId, reference: event.reference }, event.message ?? 'provider key could not be loaded');
      } else {
        logger.warn({ event: 'provider_key_poll_failed' }, event.message ?? 'the provider key register could not be read');
      }
    },
  });
  try {
    await keys.load();
  } catch (err) {
    await store.close();
    throw err;
  }
  secretCache.start();
  keys.start();

  const writer = createRecordWriter({ records: store.records, logger, flushIntervalMs: options.flushIntervalMs ?? 200 });
  // the audit trail: identifiers as HMACs under the store's salt, optional sealed content samples,
  // and the daily retention job (prune with a signed checkpoint, expired samples deleted)
  const hashIdentifier = trail.createIdentifierHasher(await store.instanceSecret(trail.AUDIT_SALT_SECRET));
  const hashAddress = trail.createAddressHasher(hashIdentifier);
  const sampler = sampleKey && config.audit.sampling
    ? sampling.createContentSampler({ key: sampleKey, rate: config.audit.sampling.rate, retentionMs: config.audit.sampling.retentionMs, trail: store.auditTrail })
    : undefined;
  const checkpointKey = await trail.loadCheckpointKey(store, configuredCheckpointKey === undefined ? undefined : async () => configuredCheckpointKey);
  // always on: with no retention it only deletes expired samples (left behind even if sampling was turned off)
  const auditJobs = trail.startAuditMaintenance({
    trail: store.auditTrail, retentionMs: config.audit.retentionMs, actor: 'system', checkpointKey,
    onRun: (r) => {
      if (r.checkpoint || r.samplesDeleted > 0) {
        logger.info({ event: 'audit_retention', up_to_seq: r.checkpoint?.upToSeq ?? null, removed: r.checkpoint?.removedCount ?? 0, samples_deleted: r.samplesDeleted }, 'audit retention job ran');
      }
    },
    onError: (err) => logger.error({ event: 'audit_retention_failed', err }, 'the audit retention job failed; it runs again tomorrow'),
  });
  const policyFor = createPolicyResolver(config.tenants.defaults.policy);
  // JWT (OIDC) tenants: keys and secrets are resolved at start, so a bad reference stops the gateway
  const jwtIssuers = config.auth.jwt?.issuers;
  const jwt = jwtIssuers ? await import('./auth/jwt.js').then(async (m) => m.createJwtVerifier({ issuers: await m.resolveJwtIssuers(jwtIssuers, resolver), tenants: store.tenants, policyFor })) : undefined;
  // verified tenant keys by the hash of the whole key; emptied whenever tenants or keys change (here or in another process)
  const { createCredentialCache } = await import('./auth/credential-cache.js');
  const credentialCache = createCredentialCache<VerifiedKey>({ changeStamp: () => store.changeStamp() });
  const authenticate = createAuthenticator({ keys: store.keys, hashKey, policyFor, cache: credentialCache, ...(jwt ? { jwt } : {}) });
  // mutual TLS: verified client certificates map to tenants (auth.client_certificates)
  const certMapping = config.auth.clientCertificates;
  const clientCertificates = publicTls?.clientCa !== undefined && certMapping && config.listen.publicTls
    ? {
      mode: config.listen.publicTls.clientAuth,
      authenticate: (await import('./auth/client-cert.js')).createClientCertAuthenticator({ mapping: certMapping, tenants: store.tenants, policyFor }),
    }
    : undefined;

  const providers = new Map<string, ProviderTarget>();
  for (const provider of Object.values(config.providers)) {
    providers.set(provider.id, { id: provider.id, adapter: createProviderAdapter(provider.type), client: createUpstreamClient(provider) });
  }
  const proxy = createProxy({
    models: config.models,
    routedModels: new Set(Object.keys(config.models)),
    providers,
    keys,
    fingerprint: createPromptFingerprinter(promptKey),
    logger,
    maxUpstreamResponseBytes: config.server.maxUpstreamResponseBytes,
    streamStallMs: config.server.streamStallMs,
    ...(sampler ? { pickSample: sampler.pick } : {}),
  });
  const metrics = createMetrics({
    models: Object.keys(config.models),
    providers: Object.values(config.providers).map((p) => p.id),
    tlsListeners: [...(publicTls ? ['public' as const] : []), ...(adminTls ? ['admin' as const] : [])],
    // the register's dates, read at each scrape (revoked keys are not reported)
    providerKeyAges: async () => (await store.providerKeys.active()).map((k) => ({
      provider: k.provider, fingerprint: k.fingerprint, state: k.state, ageSeconds: Math.max(0, (Date.now() - k.createdAt) / 1000),
    })),
  });
  const webhookSecret = config.alerts.webhookSecret ? (await resolver.resolve(config.alerts.webhookSecret)).value : undefined;
  // anomaly alerts share the alerts webhook; client addresses are tagged with the audit trail's
  // identifier HMAC, so an alert's `client` matches `details.client` of the request audit rows
  const anomalyAlerts = createAnomalyAlertSink({ logger, writer, metrics, webhookUrl: config.alerts.webhookUrl, webhookSecret });
  const anomaly = config.anomaly.enabled
    ? createAnomalyDetector({
      config: config.anomaly, hashClient: hashAddress, onAlert: (alert) => anomalyAlerts.alert(alert),
      ...(options.anomalyClock ? { now: options.anomalyClock } : {}),
      onError: (err) => logger.error({ event: 'anomaly_detector_failed', err }, 'anomaly detection failed for a request'),
    })
    : undefined;
  const recordRequest = createRequestRecorder({
    writer, logger, metrics, hashIdentifier, hashAddress, hashKeyIds: config.audit.hashKeyIds, ...(sampler ? { sampler } : {}), ...(anomaly ? { anomaly } : {}),
  });
  // response ids relayed to a tenant are bound to it: only that tenant may chain on them (docs/security.md)
  const { createResponseOwners } = await import('./services/response-owners.js');
  const responseOwners = createResponseOwners({ repo: store.responseOwners, logger, retentionMs: config.tenants.responseOwnerRetentionMs });
  const record = (ctx: Parameters<typeof recordRequest>[0]): void => {
    responseOwners.remember(ctx);
    recordRequest(ctx);
  };
  for (const warning of configWarnings(config)) logger.warn({ event: 'config_warning' }, warning);
  const counters = await openCounterStore(config, store, resolver);
  const alerts = createAlertSink({ logger, writer, metrics, webhookUrl: config.alerts.webhookUrl, webhookSecret });
  const admission = createAdmission({
    store: counters, prices: createPriceTable(config.prices), estimator: await createTokenEstimator(), leaseMs: config.quota.leaseMs,
    logger, thresholds: config.alerts.thresholds, onThreshold: (event) => alerts.alert(event),
  });

  // prompt DLP: audit rows through the record writer; personal data fingerprinted with the audit salt's HMAC
  const { createDlpStage } = await import('./dlp/stage.js');
  const dlp = createDlpStage({
    audit: (event) => writer.audit(event), fingerprintPii: hashIdentifier, logger,
    ...(config.audit.hashKeyIds ? { hashKeyId: hashIdentifier } : {}),
  });
  // failed authentications are slowed per client address and key id; one limiter per listener,
  // so guesses at admin tokens and at tenant keys are counted apart
  const { createAuthFailureLimiter } = await import('./auth/failure-limiter.js');
  const failureLimits = config.auth.failureLimits;
  // with quota counters on Redis, the counts are shared through it too (docs/security.md): the
  // request path stays local, failures are counted there in the background; while Redis is
  // away each process still enforces the limits on its own
  const failureStore = failureLimits.enabled && config.quota.store !== 'memory'
    ? await openAuthFailureStore(config, resolver, logger)
    : undefined;
  const limiterFor = async (code: 'auth_rate_limited' | 'admin_auth_rate_limited', listener: 'public' | 'admin') => {
    const local = { perAddress: failureLimits.perAddress, perKey: failureLimits.perKey, code };
    if (!failureStore) return createAuthFailureLimiter(local);
    const { createSharedAuthFailureLimiter } = await import('./auth/shared-failure-limiter.js');
    return createSharedAuthFailureLimiter({ local, store: failureStore, listener });
  };
  const authFailures = failureLimits.enabled
    ? { public: await limiterFor('auth_rate_limited', 'public'), admin: await limiterFor('admin_auth_rate_limited', 'admin') }
    : undefined;
  const publicApp = createPublicApp({
    authenticate, proxy, admission, dlp, responseOwners, record, logger, models: config.models,
    ...(authFailures ? { authFailures: authFailures.public } : {}),
    maxHeaderBytes: config.server.maxHeaderBytes, maxHeaders: config.server.maxHeaders,
    ...(publicTls ? { tls: publicTls } : {}), ...(clientCertificates ? { clientCertificates } : {}),
    readiness: [
      { name: 'config', check: () => null },
      { name: 'store', check: async () => { try { await store.ping(); return null; } catch { return 'store is not reachable'; } } },
      // degraded, not unready, while tenants without limits are still served (with every replica
      // on one Redis a failing readiness would take them all out of the load balancer at once);
      // when the default policy itself sets limits, every tenant needs the store: not ready
      {
        name: 'limits_store', degrades: !hasAnyLimit(config.tenants.defaults.policy.limits) && !hasAnyLimit(config.tenants.defaults.policy.keyLimits),
        check: async () => { try { await counters.ping(); return null; } catch { return `${counters.kind} quota store is not reachable; requests of tenants and keys with limits are refused (503)`; } },
      },
      {
        name: 'provider_keys',
        check: () => {
          const bad = keys.status().filter((s) => !s.loaded).map((s) => `${s.provider} (${s.backend})`);
          return bad.length === 0 ? null : `not usable: ${bad.join(', ')}`;
        },
      },
    ],
  });
  const { createIncidentService } = await import('./services/incident-service.js');
  const { createAdminProviderKeys } = await import('./admin/provider-keys.js');
  const { createAuditService } = await import('./services/audit-service.js');
  // a poll already in flight may have read the register before the change: read it once more
  const repollKeys = async () => { await keys.poll(); await keys.poll(); };
  const adminApp = createAdminApp({
    adminTokens: createAdminTokenService({ store, hashKey, bootstrapToken: adminToken }),
    tenants, activity: createActivityService({ store }), audit: (event) => writer.audit(event), logger, metrics,
    ...(authFailures ? { authFailures: authFailures.admin } : {}), ...(adminTls ? { tls: adminTls } : {}),
    // the gateway re-reads the provider key register at once after a containment made here
    incidents: createIncidentService({ store, afterContain: repollKeys }),
    // provider key rotation and revocation through the API switch this gateway at once
    providerKeys: createAdminProviderKeys({ config, store, resolver, afterChange: repollKeys }),
    ...(sampleKey ? { readSample: sampling.createSampleReader({ key: sampleKey, trail: store.auditTrail, records: store.records }) } : {}),
    // verify and export of the audit chain, as `keywarden audit verify|export` on the store
    auditChain: createAuditService({ trail: store.auditTrail, checkpointKey }),
  });

  // TLS reload: the same loader as above, applied to the running servers when the bytes changed
  const tlsSources: TlsListenerSource[] = [];
  if (publicTls && config.listen.publicTls) {
    const tls = config.listen.publicTls;
    tlsSources.push({
      listener: 'public', path: 'listen.public_tls', server: publicApp.server, initial: publicTls, initialWarnings: publicTlsWarnings,
      intervalMs: tls.reloadIntervalMs ?? 0, load: (onWarning) => loadPublicTls(tls, resolver, 'listen.public_tls', onWarning),
    });
  }
  if (adminTls && config.listen.adminTls) {
    const tls = config.listen.adminTls;
    tlsSources.push({
      listener: 'admin', path: 'listen.admin_tls', server: adminApp.server, initial: adminTls, initialWarnings: [],
      intervalMs: tls.reloadIntervalMs ?? 0, load: (onWarning) => loadPublicTls(tls, resolver, 'listen.admin_tls', onWarning),
    });
  }
  const tlsReloader = tlsSources.length > 0
    ? (await import('./server/tls-reload.js')).createTlsReloader({ listeners: tlsSources, logger, onResult: (listener, result) => metrics.tlsReload(listener, result) })
    : undefined;

  let closed = false;
  return {
    config, logger, store, tenants, keys, writer, counters, metrics, publicApp, adminApp,
    async reloadTls(trigger = 'call') {
      if (!tlsReloader || closed) return [];
      return tlsReloader.reload(trigger);
    },
    async listen() {
      const publicUrl = await publicApp.listen({ host: config.listen.public.host, port: config.listen.public.port });
      const adminUrl = await adminApp.listen({ host: config.listen.admin.host, port: config.listen.admin.port });
      tlsReloader?.start();
      // Fastify names the scheme from its own https option, which the server factory bypasses
      return {
        publicUrl: normaliseUrl(publicTls ? publicUrl.replace(/^http:/, 'https:') : publicUrl),
        adminUrl: normaliseUrl(adminTls ? adminUrl.replace(/^http:/, 'https:') : adminUrl),
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      tlsReloader?.stop();
      // stop taking requests, let in-flight ones finish (bounded), then flush what they recorded
      const drain = Promise.all([publicApp.close(), adminApp.close()]);
      // a keep-alive connection whose request finishes during the drain goes idle but stays open
      // until its keep-alive timeout, holding the drain up to its limit: close such connections as they go idle
      // and once no request is in flight, close the rest (a client may hold a connection that never sent a byte)
      const sweep = setInterval(() => {
        for (const server of [publicApp.server, adminApp.server]) {
          if (inFlightRequests(server) === 0) server.closeAllConnections();
          else server.closeIdleConnections();
        }
      }, 25);
      sweep.unref();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          logger.warn({ drainTimeoutMs: config.shutdown.drainTimeoutMs }, 'drain timeout reached; closing remaining connections');
          // recorded as ended by the gateway at shutdown, not as the clients' aborts
          publicApp.endInFlight();
          adminApp.server.closeAllConnections();
          resolve();
        }, config.shutdown.drainTimeoutMs);
        timer.unref();
      });
      await Promise.race([drain, timeout]);
      clearInterval(sweep);
      if (timer) clearTimeout(timer);
      // requests cut above settle and record in the next ticks: wait (bounded) for their quota
      // settlements and for releases still being retried, so no slot is left to its lease and
      // their records reach the writer before it closes (docs/quotas.md)
      await admission.drain(settleDrainMs(config.shutdown.drainTimeoutMs));
      secretCache.stop();
      keys.stop();
      await alerts.drain();
      await anomalyAlerts.drain();
      await auditJobs.stop();
      await writer.close();
      await responseOwners.close();
      await counters.close();
      await failureStore?.close();
      await Promise.all([...providers.values()].map((p) => p.client.close()));
      await store.close();
      logger.flush();
    },
  };
}

/**
 * How long shutdown waits, after the drain, for quota settlements and releases: as long as the
 * drain, between 1 s (one store round trip with its timeout) and 5 s. Usually they are over in
 * milliseconds; the bound only matters when the limits store is away at shutdown.
 */
function settleDrainMs(drainTimeoutMs: number): number {
  return Math.max(1000, Math.min(drainTimeoutMs, 5000));
}

function normaliseUrl(url: string): string {
  // Fastify may report [::1] or 127.0.0.1; keep whatever it bound
  return url.replace(/\/$/, '');
}
