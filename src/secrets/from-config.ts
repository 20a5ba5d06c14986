import type { SecretsConfig } from '../config/types.js';
import type { SecretSource } from './types.js';
import { createSecretResolver, type SecretResolver } from './resolver.js';
import { createEnvSource } from './env-source.js';
import { createFileSource } from './file-source.js';
import { createAwsSecretsManagerSource } from './backends/aws-sm.js';
import { createAzureKeyVaultSource } from './backends/azure-kv.js';
import { createGcpSecretManagerSource } from './backends/gcp-sm.js';
import { createVaultSource } from './backends/hashicorp-vault.js';
import { createEncFileSource } from './backends/enc-file.js';

export interface ConfiguredResolverOptions {
  env?: NodeJS.ProcessEnv;
  /** Told once per environment variable read as a secret, unless NODE_ENV is development or test. */
  onWarning?: (message: string) => void;
}

/**
 * A resolver with every backend the configuration enables. Cloud backends are always present
 * (their SDKs load on first use); Vault and encrypted files need their credentials, which are
 * themselves references loaded first through the other backends.
 */
export async function createConfiguredResolver(config: SecretsConfig, options: ConfiguredResolverOptions = {}): Promise<SecretResolver> {
  const env = options.env ?? process.env;
  const warned = new Set<string>();
  const envSource = createEnvSource(env);
  // env: references are for development (DESIGN): anywhere else — NODE_ENV unset included, as it
  // usually is under `keywarden serve` — each one is named once in a warning
  const development = env['NODE_ENV'] === 'development' || env['NODE_ENV'] === 'test';
  const watchedEnv: SecretSource = {
    scheme: 'env',
    async load(name) {
      if (!development && !warned.has(name)) {
        warned.add(name);
        options.onWarning?.(`secret env:${name} is read from an environment variable, which is meant for development (NODE_ENV=${env['NODE_ENV'] ?? 'unset'}); use a vault backend or a file: reference`);
      }
      return envSource.load(name);
    },
  };
  const base: SecretSource[] = [
    watchedEnv,
    createFileSource(),
    createAwsSecretsManagerSource({ ...(config.aws.region ? { region: config.aws.region } : {}), ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}) }),
    createAzureKeyVaultSource(config.azure.vaultUrlTemplate ? { vaultUrlTemplate: config.azure.vaultUrlTemplate } : {}),
    createGcpSecretManagerSource(config.gcp.endpoint ? { endpoint: config.gcp.endpoint } : {}),
  ];
  const bootstrap = createSecretResolver(base);
  const extra: SecretSource[] = [];
  if (config.vault) {
    const v = config.vault;
    const auth = v.auth.method === 'token'
      ? { method: 'token' as const, token: (await bootstrap.resolve(v.auth.token)).value }
      : { method: 'approle' as const, roleId: (await bootstrap.resolve(v.auth.roleId)).value, secretId: (await bootstrap.resolve(v.auth.secretId)).value, mount: v.auth.mount };
    extra.push(createVaultSource({ address: v.address, ...(v.namespace ? { namespace: v.namespace } : {}), auth }));
  }
  if (config.encFileKey) extra.push(createEncFileSource({ key: (await bootstrap.resolve(config.encFileKey)).value }));
  return createSecretResolver([...base, ...extra]);
}
