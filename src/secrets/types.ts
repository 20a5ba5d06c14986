/** A loaded secret and the version it came from (for rotation and `doctor`). */
export interface SecretValue {
  value: string;
  /** A backend-specific version label (file mtime, vault version id); never derived from the value. */
  version: string;
}

/**
 * One backend of secret references: `env:`, `file:`, `vault:`, `aws-sm:`, … `load` gets the
 * part of the reference after `scheme:` and throws SecretError on failure. Backends do no
 * caching: the resolver's cache refreshes them in the background.
 */
export interface SecretSource {
  readonly scheme: string;
  load(locator: string): Promise<SecretValue>;
  /** Releases clients and timers (optional). */
  close?(): Promise<void>;
}

/** Why a secret could not be loaded; doctor and /readyz report it. */
export type SecretFailure = 'not_found' | 'access_denied' | 'throttled' | 'unavailable' | 'invalid' | 'missing_package';

/** A failure to load a secret; the message names the reference, never the value. */
export class SecretError extends Error {
  readonly reference: string;
  readonly reason: SecretFailure;
  constructor(reference: string, message: string, reason: SecretFailure = 'invalid') {
    super(`${reference}: ${message}`);
    this.name = 'SecretError';
    this.reference = reference;
    this.reason = reason;
  }
}
