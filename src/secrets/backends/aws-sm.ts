import type * as AwsSecretsManager from '@aws-sdk/client-secrets-manager';
import type { SecretSource, SecretValue } from '../types.js';
import { SecretError } from '../types.js';
import { isSecretReference } from '../reference.js';
import { checkServiceEndpoint, checkTimeout, errorName, isTransportError, loadOptional } from './load-optional.js';

const PACKAGE = '@aws-sdk/client-secrets-manager';

/** Options of the `aws-sm:` backend. */
export interface AwsSecretsManagerSourceOptions {
  /** The AWS region (`us-east-1`); default: the SDK's own resolution (AWS_REGION, ~/.aws/config). */
  region?: string;
  /** An endpoint override (a VPC endpoint, or a local test server: http only on loopback). */
  endpoint?: string;
  /** Static credentials; default: the SDK's default provider chain (env, profile, IMDS, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Time limit of one load, including connecting (default 5000 ms). */
  timeoutMs?: number;
}

type Sdk = typeof AwsSecretsManager;
interface Loaded {
  client: AwsSecretsManager.SecretsManagerClient;
  GetSecretValueCommand: Sdk['GetSecretValueCommand'];
}

/**
 * `aws-sm:SECRET_ID[#json_field]`: a secret from AWS Secrets Manager, read with GetSecretValue
 * through `@aws-sdk/client-secrets-manager`, which is imported on the first load (an install
 * without it fails that load with reason `missing_package`). The value is the SecretString, or
 * the named string field of its JSON; the version is the VersionId. One attempt per load: the
 * resolver's cache retries, so a failure comes back quickly with its reason.
 *
 * @example
 * const source = createAwsSecretsManagerSource({ region: 'eu-west-1' });
 * const { value, version } = await source.load('prod/openai#api_key');
 */
export function createAwsSecretsManagerSource(options: AwsSecretsManagerSourceOptions = {}): SecretSource {
  const endpoint = options.endpoint === undefined ? undefined : checkServiceEndpoint('aws-sm endpoint', options.endpoint);
  const timeoutMs = checkTimeout('aws-sm timeoutMs', options.timeoutMs);
  if (options.region !== undefined && !/^[a-z]{2}(-[a-z0-9]+)+$/.test(options.region)) {
    throw new TypeError('aws-sm region is not an AWS region name (such as us-east-1)');
  }
  const credentials = options.credentials;
  if (credentials !== undefined && (!nonEmpty(credentials.accessKeyId) || !nonEmpty(credentials.secretAccessKey) ||
      (credentials.sessionToken !== undefined && !nonEmpty(credentials.sessionToken)))) {
    // never echo any part of a credential
    throw new TypeError('aws-sm credentials need a non-empty accessKeyId and secretAccessKey');
  }

  let loading: Promise<Loaded> | undefined;
  function getClient(reference: string): Promise<Loaded> {
    loading ??= (async () => {
      const sdk = await loadOptional<Sdk>(PACKAGE, reference);
      const client = new sdk.SecretsManagerClient({
        ...(options.region !== undefined ? { region: options.region } : {}),
        ...(endpoint !== undefined ? { endpoint } : {}),
        ...(credentials !== undefined ? { credentials: { ...credentials } } : {}),
        // security: the endpoint comes only from our validated option, never from AWS_ENDPOINT_URL*
        ignoreConfiguredEndpointUrls: true,
        // one attempt: the resolver's cache retries, and a throttled answer must not hide behind backoff
        maxAttempts: 1,
        requestHandler: { connectionTimeout: timeoutMs, requestTimeout: timeoutMs },
      });
      return { client, GetSecretValueCommand: sdk.GetSecretValueCommand };
    })();
    // a failed import is not remembered, so a later load tries again
    loading.catch(() => { loading = undefined; });
    return loading;
  }

  return {
    scheme: 'aws-sm',
    async load(locator: string): Promise<SecretValue> {
      // never echo a malformed locator: it may be a key pasted where a reference belongs
      if (!isSecretReference(`aws-sm:${locator}`)) {
        throw new SecretError('(reference)', 'is not a valid aws-sm reference (aws-sm:SECRET_ID[#json_field])', 'invalid');
      }
      const reference = `aws-sm:${locator}`;
      const hash = locator.indexOf('#');
      const secretId = hash < 0 ? locator : locator.slice(0, hash);
      const field = hash < 0 ? undefined : locator.slice(hash + 1);

      const { client, GetSecretValueCommand } = await getClient(reference);
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      let answer: AwsSecretsManager.GetSecretValueCommandOutput;
      try {
        answer = await client.send(new GetSecretValueCommand({ SecretId: secretId }), { abortSignal: abort.signal });
      } catch (err) {
        throw toSecretError(reference, err, abort.signal.aborted, timeoutMs);
      } finally {
        clearTimeout(timer);
      }

      if (typeof answer.SecretString !== 'string') {
        throw new SecretError(reference, 'has no SecretString (binary secrets are not supported)', 'invalid');
      }
      const raw = field === undefined ? answer.SecretString : jsonField(reference, answer.SecretString, field);
      const value = raw.trim();
      if (value === '') throw new SecretError(reference, 'is empty', 'invalid');
      if (!nonEmpty(answer.VersionId)) throw new SecretError(reference, 'answer carried no VersionId', 'invalid');
      return { value, version: answer.VersionId };
    },
    async close(): Promise<void> {
      const pending = loading;
      loading = undefined;
      const loaded = await pending?.catch(() => undefined);
      loaded?.client.destroy();
    },
  };
}

/** The string field `field` of a JSON object secret; messages never include the secret text. */
function jsonField(reference: string, text: string, field: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the input, that is the secret: say only what was wrong
    throw new SecretError(reference, `is not a JSON object, so it has no field "${field}"`, 'invalid');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SecretError(reference, `is not a JSON object, so it has no field "${field}"`, 'invalid');
  }
  if (!Object.hasOwn(parsed, field)) throw new SecretError(reference, `has no field "${field}"`, 'not_found');
  const value = (parsed as Record<string, unknown>)[field];
  if (typeof value !== 'string') throw new SecretError(reference, `field "${field}" is not a string`, 'invalid');
  return value;
}

const NOT_FOUND = new Set(['ResourceNotFoundException']);
const ACCESS_DENIED = new Set([
  'AccessDeniedException', 'UnrecognizedClientException', 'InvalidSignatureException', 'SignatureDoesNotMatch',
  'IncompleteSignature', 'InvalidClientTokenId', 'ExpiredTokenException', 'MissingAuthenticationTokenException',
  'DecryptionFailure', 'CredentialsProviderError',
]);
const THROTTLED = new Set(['ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded', 'Throttling']);

/**
 * Maps an SDK failure to a SecretError. Only the error's class name and HTTP status are kept:
 * the service's message is not ours to relay.
 */
function toSecretError(reference: string, err: unknown, timedOut: boolean, timeoutMs: number): SecretError {
  if (timedOut) return new SecretError(reference, `AWS Secrets Manager did not answer within ${timeoutMs} ms`, 'unavailable');
  const name = errorName(err);
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  const detail = typeof status === 'number' ? `${name}, HTTP ${status}` : name;
  if (name === 'CredentialsProviderError') return new SecretError(reference, 'no AWS credentials were found (CredentialsProviderError)', 'access_denied');
  if (NOT_FOUND.has(name)) return new SecretError(reference, `secret not found (${detail})`, 'not_found');
  if (ACCESS_DENIED.has(name) || status === 401 || status === 403) {
    return new SecretError(reference, `access denied (${detail})`, 'access_denied');
  }
  if (THROTTLED.has(name) || status === 429) return new SecretError(reference, `throttled by AWS Secrets Manager (${detail})`, 'throttled');
  if (isTransportError(err)) return new SecretError(reference, `AWS Secrets Manager could not be reached (${detail})`, 'unavailable');
  if (typeof status === 'number' && status >= 500) {
    return new SecretError(reference, `AWS Secrets Manager failed (${detail})`, 'unavailable');
  }
  if (typeof status === 'number') return new SecretError(reference, `request refused (${detail})`, 'invalid');
  // no HTTP answer and no socket error: a client-side problem such as a missing region
  if (err instanceof Error && err.message === 'Region is missing') {
    return new SecretError(reference, 'no AWS region is configured (set the region option or AWS_REGION)', 'invalid');
  }
  return new SecretError(reference, `could not be requested (${detail})`, 'invalid');
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}
