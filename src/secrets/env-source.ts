import type { SecretSource, SecretValue } from './types.js';
import { SecretError } from './types.js';

/** `env:NAME`: a secret from an environment variable (development; vault backends are for production). */
export function createEnvSource(env: NodeJS.ProcessEnv = process.env): SecretSource {
  return {
    scheme: 'env',
    async load(name: string): Promise<SecretValue> {
      const value = env[name];
      if (value === undefined || value.trim() === '') throw new SecretError(`env:${name}`, 'environment variable is not set or empty', 'not_found');
      return { value: value.trim(), version: 'env' };
    },
  };
}
