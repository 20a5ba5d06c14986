import { hash } from 'node:crypto';

export interface CredentialCacheOptions {
  /** Most credentials kept; the oldest is dropped first. */
  maxEntries?: number;
  /** Longest an entry is used, even when nothing is known to have changed. */
  ttlMs?: number;
  /**
   * Moves when tenants or keys change (`Store.changeStamp`); read on every lookup, and a new
   * value empties the cache, so a revocation or a disabled tenant applies to the next request.
   */
  changeStamp(): number;
  now?: () => number;
}

/**
 * Verified credentials, so a repeat caller skips the store lookup and keyed hash. Keyed by the
 * SHA-256 of the whole credential, never by its id or a prefix: a different secret for the same
 * key id misses and is verified in full (and refused). Only successes are kept.
 */
export function createCredentialCache<T>(options: CredentialCacheOptions) {
  const maxEntries = options.maxEntries ?? 10_000;
  const ttlMs = options.ttlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const entries = new Map<string, { value: T; at: number }>();
  let stamp = options.changeStamp();

  const keyOf = (credential: string) => hash('sha256', credential, 'base64');

  return {
    get(credential: string): T | undefined {
      const current = options.changeStamp();
      if (current !== stamp) {
        entries.clear();
        stamp = current;
        return undefined;
      }
      const key = keyOf(credential);
      const entry = entries.get(key);
      if (!entry) return undefined;
      if (now() - entry.at > ttlMs) {
        entries.delete(key);
        return undefined;
      }
      return entry.value;
    },
    /** Keeps a credential that just verified; `stampBefore` is the change stamp read before verifying it. */
    set(credential: string, value: T, stampBefore: number): void {
      // a change committed while this credential was being verified: do not keep what may be stale
      const current = options.changeStamp();
      if (current !== stampBefore) return;
      if (current !== stamp) {
        entries.clear();
        stamp = current;
      }
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value as string);
      entries.set(keyOf(credential), { value, at: now() });
    },
    stamp(): number {
      return options.changeStamp();
    },
    clear(): void {
      entries.clear();
    },
    get size(): number {
      return entries.size;
    },
  };
}

export type CredentialCache<T> = ReturnType<typeof createCredentialCache<T>>;
