import type * as KeyVaultSecrets from '@azure/keyvault-secrets';
import type * as AzureIdentity from '@azure/identity';
import type { SecretSource, SecretValue } from '../types.js';
import { SecretError } from '../types.js';
import { isSecretReference } from '../reference.js';
import { checkServiceEndpoint, checkTimeout, errorName, isLoopbackHost, isTransportError, loadOptional } from './load-optional.js';

const SECRETS_PACKAGE = '@azure/keyvault-secrets';
const IDENTITY_PACKAGE = '@azure/identity';
const DEFAULT_TEMPLATE = 'https://{vault}.vault.azure.net';

/** The part of `@azure/core-auth`'s TokenCredential this backend uses (DefaultAzureCredential fits). */
export interface AzureTokenCredentialLike {
  getToken(scopes: string | string[], options?: object): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

/** Options of the `azure-kv:` backend. */
export interface AzureKeyVaultSourceOptions {
  /**
   * The vault URL, with `{vault}` standing for the vault name of the reference
   * (default `https://{vault}.vault.azure.net`; http only on loopback, for tests).
   */
  vaultUrlTemplate?: string;
  /** Default: DefaultAzureCredential from `@azure/identity`, imported on first use. */
  credential?: AzureTokenCredentialLike;
  /** Time limit of one load, including the authentication challenge (default 5000 ms). */
  timeoutMs?: number;
}

/**
 * `azure-kv:VAULT_NAME/SECRET_NAME`: the current version of a secret in Azure Key Vault, read
 * through `SecretClient` from `@azure/keyvault-secrets` (imported on the first load; an install
 * without it fails that load with reason `missing_package`). The version is the secret's version
 * id. The challenge resource is verified against the vault's domain except on a loopback test
 * endpoint. One attempt per load and no redirects: the resolver's cache retries.
 *
 * @example
 * const source = createAzureKeyVaultSource();
 * const { value, version } = await source.load('prod-keys/openai-api-key');
 */
export function createAzureKeyVaultSource(options: AzureKeyVaultSourceOptions = {}): SecretSource {
  const template = options.vaultUrlTemplate ?? DEFAULT_TEMPLATE;
  // validate once with a sample vault name: locator vault names are [A-Za-z0-9-], so they keep a URL valid
  const sample = new URL(checkServiceEndpoint('azure-kv vaultUrlTemplate', template.replaceAll('{vault}', 'vault-name')));
  const loopback = isLoopbackHost(sample.hostname);
  const timeoutMs = checkTimeout('azure-kv timeoutMs', options.timeoutMs);
  if (options.credential !== undefined && typeof options.credential.getToken !== 'function') {
    throw new TypeError('azure-kv credential must have a getToken method');
  }

  let credential: Promise<AzureTokenCredentialLike> | undefined;
  function getCredential(reference: string): Promise<AzureTokenCredentialLike> {
    if (options.credential !== undefined) return Promise.resolve(options.credential);
    credential ??= loadOptional<typeof AzureIdentity>(IDENTITY_PACKAGE, reference).then((identity) => new identity.DefaultAzureCredential());
    credential.catch(() => { credential = undefined; });
    return credential;
  }

  const clients = new Map<string, KeyVaultSecrets.SecretClient>();
  async function getClient(reference: string, vault: string): Promise<KeyVaultSecrets.SecretClient> {
    const vaultUrl = template.replaceAll('{vault}', vault.toLowerCase()).replace(/\/+$/, '');
    const existing = clients.get(vaultUrl);
    if (existing) return existing;
    const sdk = await loadOptional<typeof KeyVaultSecrets>(SECRETS_PACKAGE, reference);
    const cred = guardCredential(await getCredential(reference));
    const client = new sdk.SecretClient(vaultUrl, cred, {
      // plain http is possible only for a loopback test server (checked above)
      allowInsecureConnection: sample.protocol === 'http:',
      // security: outside loopback, the token is requested only for a resource the vault's domain belongs to
      disableChallengeResourceVerification: loopback,
      retryOptions: { maxRetries: 0 },
      redirectOptions: { maxRetries: 0 },
    });
    clients.set(vaultUrl, client);
    return client;
  }

  return {
    scheme: 'azure-kv',
    async load(locator: string): Promise<SecretValue> {
      // never echo a malformed locator: it may be a key pasted where a reference belongs
      if (!isSecretReference(`azure-kv:${locator}`)) {
        throw new SecretError('(reference)', 'is not a valid azure-kv reference (azure-kv:VAULT_NAME/SECRET_NAME)', 'invalid');
      }
      const reference = `azure-kv:${locator}`;
      const slash = locator.indexOf('/');
      const vault = locator.slice(0, slash);
      const name = locator.slice(slash + 1);

      const client = await getClient(reference, vault);
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      let secret: KeyVaultSecrets.KeyVaultSecret;
      try {
        secret = await client.getSecret(name, { abortSignal: abort.signal, requestOptions: { timeout: timeoutMs } });
      } catch (err) {
        throw toSecretError(reference, err, abort.signal.aborted, timeoutMs);
      } finally {
        clearTimeout(timer);
      }

      const value = typeof secret.value === 'string' ? secret.value.trim() : '';
      if (value === '') throw new SecretError(reference, 'is empty', 'invalid');
      const version = secret.properties.version;
      if (typeof version !== 'string' || version === '') throw new SecretError(reference, 'answer carried no version id', 'invalid');
      return { value, version };
    },
    async close(): Promise<void> {
      // SecretClient holds no timers; its keep-alive sockets close when idle
      clients.clear();
    },
  };
}

/** A credential that gave no token; only its error's class name is kept. */
class CredentialFailure extends Error {
  readonly label: string;
  readonly transport: boolean;
  constructor(label: string, transport: boolean) {
    super('no Azure token could be obtained');
    this.name = 'CredentialFailure';
    this.label = label;
    this.transport = transport;
  }
}

/**
 * Wraps the credential so that its failures (an exception, or no token) reach toSecretError
 * recognisably: the SDK's token cycler would otherwise turn `null` into a bare Error.
 */
function guardCredential(credential: AzureTokenCredentialLike): AzureTokenCredentialLike {
  return {
    async getToken(scopes, options) {
      let token: Awaited<ReturnType<AzureTokenCredentialLike['getToken']>>;
      try {
        token = await credential.getToken(scopes, options);
      } catch (err) {
        throw new CredentialFailure(errorName(err), isTransportError(err));
      }
      if (token === null || typeof token.token !== 'string' || token.token === '') throw new CredentialFailure('no token', false);
      return token;
    },
  };
}

function findCredentialFailure(err: unknown): CredentialFailure | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    if (current instanceof CredentialFailure) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Maps a Key Vault failure to a SecretError, keeping only the HTTP status and the service's
 * error code word: its message is not ours to relay.
 */
function toSecretError(reference: string, err: unknown, timedOut: boolean, timeoutMs: number): SecretError {
  if (timedOut) return new SecretError(reference, `Azure Key Vault did not answer within ${timeoutMs} ms`, 'unavailable');
  const name = errorName(err);
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  const code = (err as { code?: unknown } | null)?.code;
  const word = typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code) ? code : name;
  const detail = typeof status === 'number' ? `HTTP ${status} ${word}` : word;
  const credentialFailure = findCredentialFailure(err);
  if (credentialFailure) {
    return new SecretError(reference, `no Azure token could be obtained (${credentialFailure.label})`,
      credentialFailure.transport ? 'unavailable' : 'access_denied');
  }
  if (status === 404) return new SecretError(reference, `secret not found (${detail})`, 'not_found');
  if (status === 401 || status === 403) return new SecretError(reference, `access denied (${detail})`, 'access_denied');
  if (status === 429) return new SecretError(reference, `throttled by Azure Key Vault (${detail})`, 'throttled');
  if (typeof status === 'number' && status >= 500) return new SecretError(reference, `Azure Key Vault failed (${detail})`, 'unavailable');
  if (typeof status === 'number') return new SecretError(reference, `request refused (${detail})`, 'invalid');
  if (isTransportError(err)) return new SecretError(reference, `Azure Key Vault could not be reached (${detail})`, 'unavailable');
  return new SecretError(reference, `could not be requested (${detail})`, 'invalid');
}
