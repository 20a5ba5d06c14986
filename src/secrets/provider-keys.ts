import type { ProviderConfig } from '../config/types.js';
import type { SecretResolver } from './resolver.js';

export interface ProviderKeyStatus {
  provider: string;
  loaded: boolean;
  version: string | null;
  /** Why it is not loaded; names the reference, never a value. */
  error: string | null;
}

/**
 * The provider keys the gateway calls upstream with, loaded from their secret references.
 * (Issue: rotation and states pending/current/previous/revoked build on this.)
 */
export interface ProviderKeyPool {
  /** Loads or reloads every provider's key; keeps the last good value of a key that fails to reload. */
  load(): Promise<void>;
  /** The key to use for a new request, or undefined when none is loaded. */
  current(providerId: string): string | undefined;
  status(): ProviderKeyStatus[];
}

export function createProviderKeyPool(providers: Readonly<Record<string, ProviderConfig>>, resolver: SecretResolver): ProviderKeyPool {
  const keys = new Map<string, { value: string; version: string }>();
  const errors = new Map<string, string>();
  return {
    async load() {
      await Promise.all(Object.values(providers).map(async (provider) => {
        try {
          const secret = await resolver.resolve(provider.apiKey);
          keys.set(provider.id, secret);
          errors.delete(provider.id);
        } catch (err) {
          errors.set(provider.id, err instanceof Error ? err.message : 'cannot be loaded');
        }
      }));
    },
    current: (providerId) => keys.get(providerId)?.value,
    status: () => Object.keys(providers).map((id) => ({
      provider: id,
      loaded: keys.has(id),
      version: keys.get(id)?.version ?? null,
      error: errors.get(id) ?? null,
    })),
  };
}
