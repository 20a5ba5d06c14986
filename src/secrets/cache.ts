import type { SecretValue, SecretFailure } from './types.js';
import { SecretError } from './types.js';
import type { SecretResolver } from './resolver.js';

export interface CachedSecretStatus {
  reference: string;
  /** The backend scheme (`vault`, `aws-sm`, …): safe to show. */
  backend: string;
  version: string | null;
  loadedAt: number | null;
  /** When the last good value stops being used if refreshes keep failing. */
  expiresAt: number | null;
  /** False once the value expired (or never loaded): requests needing it get 503. */
  usable: boolean;
  lastError: { reason: SecretFailure; message: string; at: number } | null;
}

export interface SecretCacheOptions {
  resolver: SecretResolver;
  /** How long a value stays usable after its last successful load (a vault outage longer than this makes it unusable). */
  ttlMs: number;
  /** How often every cached reference is reloaded in the background. */
  refreshMs: number;
  /** Called when a refresh brings a new version, or a refresh fails. Messages never hold values. */
  onEvent?: (event: { type: 'version_changed' | 'refresh_failed' | 'expired'; reference: string; version?: string; reason?: SecretFailure; message?: string }) => void;
  now?: () => number;
}

interface Entry {
  value: SecretValue | undefined;
  loadedAt: number | null;
  lastError: CachedSecretStatus['lastError'];
  refreshing: Promise<void> | undefined;
  expiredReported: boolean;
}

/**
 * Secrets cached with a time to live and refreshed in the background. During a vault outage the
 * last good value is served until `ttlMs` after its last successful load; after that `get`
 * returns undefined (requests needing it fail with 503) and `status` says which backend failed.
 *
 * @example
 * const cache = createSecretCache({ resolver, ttlMs: 3_600_000, refreshMs: 300_000 });
 * await cache.load('vault:kv/openai#api_key'); cache.start();
 * cache.get('vault:kv/openai#api_key')?.value
 */
export function createSecretCache(options: SecretCacheOptions) {
  const { resolver, ttlMs, refreshMs } = options;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  let timer: NodeJS.Timeout | undefined;

  async function refresh(reference: string, entry: Entry): Promise<void> {
    if (entry.refreshing) return entry.refreshing;
    entry.refreshing = (async () => {
      try {
        const secret = await resolver.resolve(reference);
        const changed = entry.value !== undefined && entry.value.version !== secret.version;
        entry.value = secret;
        entry.loadedAt = now();
        entry.lastError = null;
        entry.expiredReported = false;
        if (changed) options.onEvent?.({ type: 'version_changed', reference, version: secret.version });
      } catch (err) {
        const reason = err instanceof SecretError ? err.reason : 'unavailable';
        const message = err instanceof SecretError ? err.message : `${reference}: could not be loaded`;
        entry.lastError = { reason, message, at: now() };
        options.onEvent?.({ type: 'refresh_failed', reference, reason, message });
        throw err;
      } finally {
        entry.refreshing = undefined;
      }
    })();
    return entry.refreshing;
  }

  function entryFor(reference: string): Entry {
    let entry = entries.get(reference);
    if (!entry) {
      entry = { value: undefined, loadedAt: null, lastError: null, refreshing: undefined, expiredReported: false };
      entries.set(reference, entry);
    }
    return entry;
  }

  function usable(entry: Entry): boolean {
    return entry.value !== undefined && entry.loadedAt !== null && now() - entry.loadedAt < ttlMs;
  }

  return {
    /** Loads a reference now (or returns its usable cached value); throws SecretError on failure. */
    async load(reference: string): Promise<SecretValue> {
      const entry = entryFor(reference);
      if (usable(entry)) return entry.value as SecretValue;
      await refresh(reference, entry);
      return entry.value as SecretValue;
    },

    /** Reloads one reference now, even when its cached value is still usable (a new version is expected). */
    async reload(reference: string): Promise<SecretValue> {
      const entry = entryFor(reference);
      await refresh(reference, entry);
      return entry.value as SecretValue;
    },

    /** The cached value, or undefined when it never loaded or expired. Synchronous: the request path calls it. */
    get(reference: string): SecretValue | undefined {
      const entry = entries.get(reference);
      if (!entry) return undefined;
      if (usable(entry)) return entry.value;
      if (entry.value !== undefined && !entry.expiredReported) {
        entry.expiredReported = true;
        options.onEvent?.({ type: 'expired', reference });
      }
      return undefined;
    },

    /** Reloads every cached reference (failures keep the last good value until it expires). */
    async refreshAll(): Promise<void> {
      await Promise.all([...entries].map(([reference, entry]) => refresh(reference, entry).catch(() => undefined)));
    },

    start(): void {
      if (timer) return;
      timer = setInterval(() => void this.refreshAll(), refreshMs);
      timer.unref();
    },

    stop(): void {
      if (timer) clearInterval(timer);
      timer = undefined;
    },

    status(): CachedSecretStatus[] {
      return [...entries].map(([reference, entry]) => ({
        reference,
        backend: reference.slice(0, reference.indexOf(':')),
        version: entry.value?.version ?? null,
        loadedAt: entry.loadedAt,
        expiresAt: entry.loadedAt === null ? null : entry.loadedAt + ttlMs,
        usable: usable(entry),
        lastError: entry.lastError,
      }));
    },
  };
}

export type SecretCache = ReturnType<typeof createSecretCache>;
