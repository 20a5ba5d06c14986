import type { ProviderConfig } from '../config/types.js';
import type { SecretCache } from './cache.js';

export interface ProviderKeyStatus {
  provider: string;
  /** The backend scheme of the key's reference (`vault`, `aws-sm`, …). */
  backend: string;
  loaded: boolean;
  version: string | null;
  /** Why it is not usable; names the reference, never a value. */
  error: string | null;
}

/**
 * The provider keys the gateway calls upstream with, read through the secret cache: refreshed
 * in the background, the last good value kept through a vault outage until it expires.
 * (Rotation with pending/current/previous/revoked states builds on this.)
 */
export interface ProviderKeyPool {
  /** Loads every provider's key now; throws when one cannot be loaded (the gateway refuses to start). */
  load(): Promise<void>;
  /** The key to use for a new request, or undefined when none is usable (the request gets 503). */
  current(providerId: string): string | undefined;
  status(): ProviderKeyStatus[];
}

export function createProviderKeyPool(providers: Readonly<Record<string, ProviderConfig>>, cache: SecretCache): ProviderKeyPool {
  const list = Object.values(providers);
  return {
    async load() {
      const failures: string[] = [];
      await Promise.all(list.map(async (provider) => {
        try {
          await cache.load(provider.apiKey);
        } catch (err) {
          failures.push(`providers.${provider.id}.api_key: ${err instanceof Error ? err.message : 'cannot be loaded'}`);
        }
      }));
      if (failures.length > 0) throw new Error(`provider keys could not be loaded:\n  ${failures.sort().join('\n  ')}`);
    },
    current: (providerId) => {
      const provider = providers[providerId];
      return provider ? cache.get(provider.apiKey)?.value : undefined;
    },
    status: () => {
      const byRef = new Map(cache.status().map((s) => [s.reference, s]));
      return list.map((provider) => {
        const s = byRef.get(provider.apiKey);
        const loaded = s?.usable ?? false;
        return {
          provider: provider.id,
          backend: provider.apiKey.slice(0, provider.apiKey.indexOf(':')),
          loaded,
          version: s?.version ?? null,
          error: loaded ? null : (s?.lastError?.message ?? 'not loaded'),
        };
      });
    },
  };
}
