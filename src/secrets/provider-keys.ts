import { createHash, randomUUID } from 'node:crypto';
import type { ProviderConfig } from '../config/types.js';
import type { AuditEvent, ProviderKeyRecord, ProviderKeyRepository } from '../store/types.js';
import type { SecretCache } from './cache.js';
import type { SecretValue } from './types.js';

export interface ProviderKeyStatus {
  provider: string;
  /** The backend scheme of the key's reference (`vault`, `aws-sm`, …). */
  backend: string;
  loaded: boolean;
  version: string | null;
  /** Why it is not usable; names the reference, never a value. */
  error: string | null;
}

/** First 16 hex characters of SHA-256 of a key value: what the register, logs and audit rows show. */
export function providerKeyFingerprint(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex').slice(0, 16);
}

/** A register id for a provider key: `pk_` and 16 hex characters. */
export function newProviderKeyId(): string {
  return `pk_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

/**
 * Registers each provider's configured `api_key` reference as its `current` key when the register
 * has no row for that provider yet (first start after the upgrade, or a new provider). The value is
 * loaded to record its fingerprint. Returns the providers bootstrapped.
 */
export async function bootstrapProviderKeys(
  providers: Readonly<Record<string, ProviderConfig>>,
  repo: ProviderKeyRepository,
  load: (reference: string) => Promise<SecretValue>,
  actor: string,
  now: () => number = Date.now,
): Promise<string[]> {
  const known = new Set((await repo.list()).map((r) => r.provider));
  const done: string[] = [];
  for (const provider of Object.values(providers)) {
    if (known.has(provider.id)) continue;
    const secret = await load(provider.apiKey);
    const at = now();
    const record: ProviderKeyRecord = {
      id: newProviderKeyId(), provider: provider.id, reference: provider.apiKey, fingerprint: providerKeyFingerprint(secret.value),
      version: secret.version ?? null, state: 'current', owner: provider.owner ?? null, purpose: provider.purpose ?? null,
      createdAt: at, rotatedAt: null, rotateEveryDays: provider.rotateEveryDays ?? 60, previousUntil: null, revokedAt: null,
    };
    const audit: AuditEvent = {
      ts: at, actor, action: 'provider_key.register', target: record.id, outcome: 'success', requestId: null,
      details: { provider: provider.id, fingerprint: record.fingerprint, state: 'current', source: 'config' },
    };
    if (await repo.bootstrap(record, audit)) done.push(provider.id);
  }
  return done;
}

/**
 * The provider keys the gateway calls upstream with. The register (store) says which key is
 * `current` for each provider; values come from the secret cache (refreshed in the background,
 * the last good value kept through a vault outage until it expires).
 *
 * - Only the `current` row is used for new requests; `pending` references are preloaded so a
 *   promotion is instant; `previous` and `revoked` rows are never handed out.
 * - The register is polled (`pollMs`, default 250 ms): a key revoked in the store stops being
 *   used within a second. The poll also revokes `previous` keys whose grace period ended.
 * - Version pinning: a cached value is served only when its fingerprint equals the register's
 *   fingerprint for the row. When the vault holds a new, unverified version under the current
 *   reference, the last verified value is kept (while its reference's cache entry is usable) and
 *   `provider_key_unverified_version` is logged; `keywarden provider-keys rotate` verifies and promotes it.
 */
export interface ProviderKeyPool {
  /** Bootstraps the register, reads it and loads every current key; throws when one cannot be loaded (the gateway refuses to start). */
  load(): Promise<void>;
  /** Starts polling the register. */
  start(): void;
  stop(): void;
  /** Reads the register once now (tests, and the poll). */
  poll(): Promise<void>;
  /** The key to use for a new request, or undefined when none is usable (the request gets 503). */
  current(providerId: string): string | undefined;
  /** The register id of the provider's current key (what the ledger records as `provider_key_id`). */
  currentId?(providerId: string): string | undefined;
  /** True when the provider has no current key because an incident contained it (the request gets 503 `provider_key_contained`). */
  contained?(providerId: string): boolean;
  status(): ProviderKeyStatus[];
}

export interface ProviderKeyPoolOptions {
  providers: Readonly<Record<string, ProviderConfig>>;
  cache: SecretCache;
  repo: ProviderKeyRepository;
  pollMs?: number;
  /** Providers with a key contained by an incident (read on each poll). */
  containedProviders?: () => Promise<readonly string[]>;
  /** Where the pool reports events; messages hold ids, references and fingerprints, never values. */
  onEvent?: (event: { type: 'unverified_version' | 'poll_failed' | 'revoked' | 'preload_failed'; provider?: string; keyId?: string; reference?: string; fingerprint?: string; message?: string }) => void;
  now?: () => number;
}

/** A register held in memory only (no store): each provider's config key, current. For tests and tools without a store. */
function memoryRegister(): Pick<ProviderKeyRepository, 'list' | 'active' | 'bootstrap' | 'expirePrevious'> {
  const rows: ProviderKeyRecord[] = [];
  return {
    list: async () => [...rows],
    active: async () => rows.filter((r) => r.state !== 'revoked'),
    bootstrap: async (record) => {
      if (rows.some((r) => r.provider === record.provider)) return false;
      rows.push(record);
      return true;
    },
    expirePrevious: async () => [],
  };
}

export function createProviderKeyPool(providersOrOptions: ProviderKeyPoolOptions | Readonly<Record<string, ProviderConfig>>, legacyCache?: SecretCache): ProviderKeyPool {
  const options: ProviderKeyPoolOptions = legacyCache
    ? { providers: providersOrOptions as Readonly<Record<string, ProviderConfig>>, cache: legacyCache, repo: memoryRegister() as ProviderKeyRepository }
    : providersOrOptions as ProviderKeyPoolOptions;
  const { providers, cache, repo } = options;
  const pollMs = options.pollMs ?? 250;
  const now = options.now ?? Date.now;
  const list = Object.values(providers);
  /** Current row per provider (from the last poll). */
  let currentRows = new Map<string, ProviderKeyRecord>();
  let activeFingerprints = new Set<string>();
  let containedSet = new Set<string>();
  /** Values whose fingerprint matched a non-revoked register row, by fingerprint. */
  const verified = new Map<string, string>();
  const fingerprints = new WeakMap<SecretValue, string>();
  const reported = new Set<string>();
  const lastReload = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;

  function fingerprintOf(secret: SecretValue): string {
    let fp = fingerprints.get(secret);
    if (fp === undefined) {
      fp = providerKeyFingerprint(secret.value);
      fingerprints.set(secret, fp);
    }
    return fp;
  }

  /** Looks at the cached value of a row's reference: remembers it when it is the row's verified value. */
  function observe(row: ProviderKeyRecord): SecretValue | undefined {
    const secret = cache.get(row.reference);
    if (secret && fingerprintOf(secret) === row.fingerprint) verified.set(row.fingerprint, secret.value);
    return secret;
  }

  function ensureLoaded(row: ProviderKeyRecord): void {
    const secret = observe(row);
    if (verified.has(row.fingerprint) && secret) return;
    // never loaded, or the cache holds another version: reload (at most once a second per reference)
    const last = lastReload.get(row.reference) ?? 0;
    if (now() - last < 1000) return;
    lastReload.set(row.reference, now());
    const load = secret === undefined ? cache.load(row.reference) : cache.reload(row.reference);
    load.then(() => observe(row), (err: unknown) => {
      options.onEvent?.({ type: 'preload_failed', provider: row.provider, keyId: row.id, reference: row.reference, message: (err as Error).message });
    });
  }

  async function readRegister(): Promise<void> {
    const expired = await repo.expirePrevious(now(), 'system');
    for (const r of expired) options.onEvent?.({ type: 'revoked', provider: r.provider, keyId: r.id, fingerprint: r.fingerprint, message: 'grace period ended' });
    const rows = await repo.active();
    const next = new Map<string, ProviderKeyRecord>();
    const fps = new Set<string>();
    for (const row of rows) {
      fps.add(row.fingerprint);
      if (row.state === 'current') next.set(row.provider, row);
    }
    if (options.containedProviders) containedSet = new Set(await options.containedProviders());
    currentRows = next;
    activeFingerprints = fps;
    // a revoked (or deleted) key's value is forgotten: it can never be handed out again
    for (const fp of [...verified.keys()]) if (!fps.has(fp)) verified.delete(fp);
    for (const row of rows) if (row.state === 'current' || row.state === 'pending') ensureLoaded(row);
  }

  return {
    async load() {
      const failures: string[] = [];
      // each provider bootstrapped on its own, so every failing reference is named at once
      for (const provider of list) {
        try {
          await bootstrapProviderKeys({ [provider.id]: provider }, repo, (ref) => cache.load(ref), 'system', now);
        } catch (err) {
          failures.push(`providers.${provider.id}.api_key: ${err instanceof Error ? err.message : 'cannot be loaded'}`);
        }
      }
      const rows = (await repo.active()).filter((r) => r.state === 'current' || r.state === 'pending');
      await Promise.all(rows.map(async (row) => {
        try {
          await cache.load(row.reference);
          observe(row);
        } catch (err) {
          if (row.state === 'current') failures.push(`providers.${row.provider} key ${row.id} (${row.reference}): ${err instanceof Error ? err.message : 'cannot be loaded'}`);
        }
      }));
      await readRegister();
      if (failures.length > 0) throw new Error(`provider keys could not be loaded:\n  ${failures.sort().join('\n  ')}`);
    },
    start() {
      if (timer) return;
      timer = setInterval(() => { void this.poll(); }, pollMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    poll() {
      polling ??= readRegister()
        .catch((err: unknown) => { options.onEvent?.({ type: 'poll_failed', message: (err as Error).message }); })
        .finally(() => { polling = undefined; });
      return polling;
    },
    current(providerId) {
      const row = currentRows.get(providerId);
      if (!row) return undefined;
      const secret = observe(row);
      // the reference's cache entry expired (a vault outage longer than the TTL): nothing is served
      if (!secret) return undefined;
      if (fingerprintOf(secret) !== row.fingerprint && !activeFingerprints.has(fingerprintOf(secret))) {
        const tag = `${row.id}:${fingerprintOf(secret)}`;
        if (!reported.has(tag)) {
          reported.add(tag);
          options.onEvent?.({ type: 'unverified_version', provider: providerId, keyId: row.id, reference: row.reference, fingerprint: fingerprintOf(secret) });
        }
      }
      return verified.get(row.fingerprint);
    },
    currentId(providerId) {
      return currentRows.get(providerId)?.id;
    },
    contained(providerId) {
      return !currentRows.has(providerId) && containedSet.has(providerId);
    },
    status() {
      const byRef = new Map(cache.status().map((s) => [s.reference, s]));
      return list.map((provider) => {
        const row = currentRows.get(provider.id);
        const reference = row?.reference ?? provider.apiKey;
        const s = byRef.get(reference);
        const loaded = row !== undefined && (s?.usable ?? false) && verified.has(row.fingerprint);
        return {
          provider: provider.id,
          backend: reference.slice(0, reference.indexOf(':')),
          loaded,
          version: s?.version ?? null,
          error: loaded ? null : (s?.lastError?.message ?? (row === undefined ? 'no current key in the register' : s?.usable ? 'the cached value is not the verified key version' : 'not loaded')),
        };
      });
    },
  };
}
