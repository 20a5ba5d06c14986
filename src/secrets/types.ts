/** A loaded secret and the version it came from (for rotation and `doctor`). */
export interface SecretValue {
  value: string;
  /** A backend-specific version label (file mtime, vault version id); never derived from the value. */
  version: string;
}

/**
 * One backend of secret references: `env:`, `file:`, and later vaults (`aws-sm:`, `vault:`, …).
 * `load` gets the part of the reference after `scheme:` and throws SecretError on failure.
 */
export interface SecretSource {
  readonly scheme: string;
  load(locator: string): Promise<SecretValue>;
}

/** A failure to load a secret; the message names the reference, never the value. */
export class SecretError extends Error {
  readonly reference: string;
  constructor(reference: string, message: string) {
    super(`${reference}: ${message}`);
    this.name = 'SecretError';
    this.reference = reference;
  }
}
