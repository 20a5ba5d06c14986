import type { SecretSource, SecretValue } from './types.js';
import { SecretError } from './types.js';
import { isSecretReference, splitReference } from './reference.js';
import { registerSecret } from '../log/redact.js';
import { createEnvSource } from './env-source.js';
import { createFileSource } from './file-source.js';

/** Loads secret references through the backend their scheme names. */
export interface SecretResolver {
  resolve(reference: string): Promise<SecretValue>;
}

/**
 * A resolver over the given sources (env: and file: by default). Every value it loads is
 * registered with the central log redactor, so it can never appear in a log line.
 */
export function createSecretResolver(sources: readonly SecretSource[] = [createEnvSource(), createFileSource()]): SecretResolver {
  const byScheme = new Map(sources.map((source) => [source.scheme, source]));
  return {
    async resolve(reference: string): Promise<SecretValue> {
      if (!isSecretReference(reference)) throw new SecretError('(reference)', 'is not a secret reference');
      const { scheme, locator } = splitReference(reference);
      const source = byScheme.get(scheme);
      if (!source) throw new SecretError(reference, `no backend for scheme "${scheme}"`);
      const secret = await source.load(locator);
      registerSecret(secret.value);
      return secret;
    },
  };
}
