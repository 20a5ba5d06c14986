import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { SecretError } from '../src/secrets/types.js';
import type { SecretFailure, SecretSource } from '../src/secrets/types.js';
import { createSecretResolver } from '../src/secrets/resolver.js';
import { scrubSecrets } from '../src/log/redact.js';
import { createAwsSecretsManagerSource } from '../src/secrets/backends/aws-sm.js';
import { createAzureKeyVaultSource } from '../src/secrets/backends/azure-kv.js';
import { createGcpSecretManagerSource, crc32c } from '../src/secrets/backends/gcp-sm.js';
import { loadOptional } from '../src/secrets/backends/load-optional.js';
import { AWS_ERROR_BODY_CANARY, startFakeAwsSecretsManager, type FakeAwsSecretsManager } from './helpers/fake-aws-sm.js';
import { AZURE_ERROR_BODY_CANARY, AZURE_RESOURCE, startFakeAzureKeyVault, type FakeAzureKeyVault } from './helpers/fake-azure-kv.js';
import { GCP_ERROR_BODY_CANARY, startFakeGcpSecretManager, type FakeGcpSecretManager } from './helpers/fake-gcp-sm.js';

/*
 * The managed-vault backends (aws-sm:, azure-kv:, gcp-sm:) against loopback servers that speak
 * each service's wire protocol, through the real SDK (AWS, Azure) or REST API (Google): values,
 * versions, every failure reason, and that no secret value, token or credential (nor the
 * service's own error text) ever reaches an error message.
 */

function rand(n: number): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  let out = '';
  for (const byte of randomBytes(n)) out += alphabet[byte % alphabet.length];
  return out;
}

// Plainly fake, TEST-ONLY values: they unlock nothing anywhere.
const AWS_VALUE = `sk-fake-TEST-ONLY-aws-${rand(20)}`;
const AWS_JSON_VALUE = `sk-fake-TEST-ONLY-awsjson-${rand(20)}`;
const AWS_NOT_JSON_VALUE = `sk-fake-TEST-ONLY-notjson-${rand(20)}`;
const AWS_CREDENTIALS = {
  accessKeyId: 'AKIAFAKETESTONLY0001', // fake, test only
  secretAccessKey: `fake-aws-secret-TEST-ONLY-${rand(24)}`,
  sessionToken: `fake-aws-session-TEST-ONLY-${rand(24)}`,
};
const AZURE_VALUE = `sk-fake-TEST-ONLY-azure-${rand(20)}`;
const AZURE_TOKEN = `fake-azure-token-TEST-ONLY-${rand(24)}`;
const AZURE_WRONG_TOKEN = `fake-azure-wrong-token-TEST-ONLY-${rand(24)}`;
const AZURE_CREDENTIAL_ERROR = `fake-azure-credential-error-TEST-ONLY-${rand(16)}`;
const GCP_VALUE = `sk-fake-TEST-ONLY-gcp-${rand(20)}`;
const GCP_TOKEN = `fake-gcp-token-TEST-ONLY-${rand(24)}`;
const GCP_WRONG_TOKEN = `fake-gcp-wrong-token-TEST-ONLY-${rand(24)}`;
const GCP_TOKEN_ERROR = `fake-gcp-token-error-TEST-ONLY-${rand(16)}`;

/** Everything no error may carry, in whole or in part. */
const CANARIES = [
  AWS_VALUE, AWS_JSON_VALUE, AWS_NOT_JSON_VALUE, AWS_CREDENTIALS.accessKeyId, AWS_CREDENTIALS.secretAccessKey,
  AWS_CREDENTIALS.sessionToken, AZURE_VALUE, AZURE_TOKEN, AZURE_WRONG_TOKEN, AZURE_CREDENTIAL_ERROR, GCP_VALUE,
  GCP_TOKEN, GCP_WRONG_TOKEN, GCP_TOKEN_ERROR, AWS_ERROR_BODY_CANARY, AZURE_ERROR_BODY_CANARY, GCP_ERROR_BODY_CANARY,
];

/** The leaked canary's label, if any 12-character window of one appears in the text. */
function leakIn(text: string): string | undefined {
  for (const canary of CANARIES) {
    for (let i = 0; i + 12 <= canary.length; i++) {
      // the label is a prefix of the fake: never print the canary itself
      if (text.includes(canary.slice(i, i + 12))) return canary.slice(0, 16);
    }
  }
  return undefined;
}

const checkedErrors: SecretError[] = [];

/** Asserts that the promise rejects with a SecretError of that reason and that no secret is in it. */
async function expectFailure(promise: Promise<unknown>, reason: SecretFailure, reference?: string): Promise<SecretError> {
  const err = await promise.then(
    () => assert.fail(`expected a SecretError (${reason}), but the load succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SecretError, `expected a SecretError, got ${inspect(err)}`);
  assert.equal(err.reason, reason, `reason of: ${err.message}`);
  if (reference !== undefined) {
    assert.equal(err.reference, reference);
    assert.ok(err.message.startsWith(`${reference}: `), err.message);
  }
  // everything a logger could print of the error
  for (const text of [err.message, String(err), inspect(err, { depth: 4 }), JSON.stringify(err), String(err.stack)]) {
    assert.equal(leakIn(text), undefined, `error text carries a secret or a service message: ${err.message}`);
    assert.equal(scrubSecrets(text), text, `error text holds a key-shaped string: ${err.message}`);
  }
  assert.equal((err as { cause?: unknown }).cause, undefined, 'no SDK error is attached as cause');
  checkedErrors.push(err);
  return err;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('aws-sm: AWS Secrets Manager through @aws-sdk/client-secrets-manager', () => {
  let fake: FakeAwsSecretsManager;
  let source: SecretSource;
  let slowSource: SecretSource;

  before(async () => {
    fake = await startFakeAwsSecretsManager();
    const common = { region: 'us-east-1', endpoint: fake.url, credentials: AWS_CREDENTIALS };
    source = createAwsSecretsManagerSource({ ...common, timeoutMs: 5_000 });
    slowSource = createAwsSecretsManagerSource({ ...common, timeoutMs: 300 });
    fake.answers.set('prod/openai', { kind: 'found', value: AWS_VALUE, version: 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111' });
    fake.answers.set('prod/bundle', {
      kind: 'found',
      value: JSON.stringify({ api_key: AWS_JSON_VALUE, org: 'org-fake', retries: 3 }),
      version: 'b1b2c3d4-5678-90ab-cdef-EXAMPLE22222',
    });
    fake.answers.set('prod/plain', { kind: 'found', value: AWS_NOT_JSON_VALUE, version: 'c1' });
    fake.answers.set('prod/blank', { kind: 'found', value: '  \n', version: 'c2' });
    fake.answers.set('prod/denied', { kind: 'denied' });
    fake.answers.set('prod/bad-token', { kind: 'bad_token' });
    fake.answers.set('prod/throttled', { kind: 'throttled' });
    fake.answers.set('prod/broken', { kind: 'server_error', status: 500 });
    fake.answers.set('prod/slow', { kind: 'slow', ms: 5_000 });
  });
  after(async () => {
    await source.close?.();
    await slowSource.close?.();
    await fake.close();
  });

  it('loads the SecretString and its VersionId with a signed AWS JSON 1.1 GetSecretValue call', async () => {
    const before = fake.requests.length;
    const secret = await source.load('prod/openai');
    assert.deepEqual(secret, { value: AWS_VALUE, version: 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111' });
    const sent = fake.requests.slice(before);
    assert.equal(sent.length, 1);
    const request = sent[0]!;
    assert.equal(request.method, 'POST');
    assert.equal(request.headers['x-amz-target'], 'secretsmanager.GetSecretValue');
    assert.equal(request.headers['content-type'], 'application/x-amz-json-1.1');
    assert.match(request.headers.authorization ?? '', /^AWS4-HMAC-SHA256 Credential=AKIAFAKETESTONLY0001\/\d{8}\/us-east-1\/secretsmanager\/aws4_request/);
    assert.equal(request.headers['x-amz-security-token'], AWS_CREDENTIALS.sessionToken);
    assert.deepEqual(JSON.parse(request.body), { SecretId: 'prod/openai' });
  });

  it('loads a secret named by its full ARN', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/arn-named-AbCdEf';
    fake.answers.set(arn, { kind: 'found', value: AWS_VALUE, version: 'arn-version-1' });
    assert.deepEqual(await source.load(arn), { value: AWS_VALUE, version: 'arn-version-1' });
    assert.deepEqual(JSON.parse(fake.requests.at(-1)!.body), { SecretId: arn });
  });

  it('reads one field of a JSON secret with #json_field and asks for the secret id without it', async () => {
    const secret = await source.load('prod/bundle#api_key');
    assert.deepEqual(secret, { value: AWS_JSON_VALUE, version: 'b1b2c3d4-5678-90ab-cdef-EXAMPLE22222' });
    assert.deepEqual(JSON.parse(fake.requests.at(-1)!.body), { SecretId: 'prod/bundle' });
  });

  it('reports a missing JSON field as not_found, naming the field', async () => {
    const err = await expectFailure(source.load('prod/bundle#admin_key'), 'not_found', 'aws-sm:prod/bundle#admin_key');
    assert.match(err.message, /has no field "admin_key"/);
  });

  it('refuses a JSON field that is not a string without quoting the secret', async () => {
    await expectFailure(source.load('prod/bundle#retries'), 'invalid', 'aws-sm:prod/bundle#retries');
  });

  it('refuses #json_field on a secret that is not JSON without quoting it (JSON.parse would)', async () => {
    const err = await expectFailure(source.load('prod/plain#api_key'), 'invalid', 'aws-sm:prod/plain#api_key');
    assert.match(err.message, /not a JSON object/);
  });

  it('refuses an empty secret', async () => {
    await expectFailure(source.load('prod/blank'), 'invalid', 'aws-sm:prod/blank');
  });

  it('maps ResourceNotFoundException to not_found', async () => {
    const err = await expectFailure(source.load('prod/missing'), 'not_found', 'aws-sm:prod/missing');
    assert.match(err.message, /ResourceNotFoundException/);
  });

  it('maps AccessDeniedException to access_denied', async () => {
    await expectFailure(source.load('prod/denied'), 'access_denied', 'aws-sm:prod/denied');
  });

  it('maps UnrecognizedClientException (a bad access key) to access_denied', async () => {
    await expectFailure(source.load('prod/bad-token'), 'access_denied', 'aws-sm:prod/bad-token');
  });

  it('maps ThrottlingException to throttled after a single attempt', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('prod/throttled'), 'throttled', 'aws-sm:prod/throttled');
    assert.equal(fake.requests.length - before, 1, 'the SDK did not retry');
  });

  it('maps a 500 answer to unavailable after a single attempt', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('prod/broken'), 'unavailable', 'aws-sm:prod/broken');
    assert.equal(fake.requests.length - before, 1, 'the SDK did not retry');
  });

  it('gives up on a slow answer after timeoutMs with unavailable', async () => {
    const err = await expectFailure(slowSource.load('prod/slow'), 'unavailable', 'aws-sm:prod/slow');
    assert.match(err.message, /did not answer within 300 ms/);
  });

  it('maps a refused connection to unavailable', async () => {
    const port = await closedPort();
    const down = createAwsSecretsManagerSource({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, credentials: AWS_CREDENTIALS });
    try {
      await expectFailure(down.load('prod/openai'), 'unavailable', 'aws-sm:prod/openai');
    } finally {
      await down.close?.();
    }
  });

  it('refuses a malformed locator without echoing it and without calling the service', async () => {
    const before = fake.requests.length;
    const pasted = `${AWS_VALUE} #oops`; // a key pasted where a reference belongs
    const err = await expectFailure(source.load(pasted), 'invalid', '(reference)');
    assert.ok(!err.message.includes('oops'));
    await expectFailure(source.load('prod/bundle#'), 'invalid', '(reference)');
    assert.equal(fake.requests.length, before, 'no request was sent');
  });

  it('works behind the resolver, which registers the value with the log redactor', async () => {
    const resolver = createSecretResolver([source]);
    const secret = await resolver.resolve('aws-sm:prod/openai');
    assert.equal(secret.value, AWS_VALUE);
    assert.equal(scrubSecrets(`value=${AWS_VALUE}`), 'value=[REDACTED]');
    await expectFailure(resolver.resolve('aws-sm:prod/denied'), 'access_denied', 'aws-sm:prod/denied');
  });
});

describe('azure-kv: Azure Key Vault through @azure/keyvault-secrets', () => {
  let fake: FakeAzureKeyVault;
  let source: SecretSource;
  let slowSource: SecretSource;
  const scopesAsked: string[] = [];
  const credential = {
    async getToken(scopes: string | string[]) {
      scopesAsked.push(...[scopes].flat());
      return { token: AZURE_TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 };
    },
  };

  before(async () => {
    fake = await startFakeAzureKeyVault(AZURE_TOKEN);
    source = createAzureKeyVaultSource({ vaultUrlTemplate: fake.url, credential, timeoutMs: 5_000 });
    slowSource = createAzureKeyVaultSource({ vaultUrlTemplate: fake.url, credential, timeoutMs: 300 });
    fake.answers.set('openai-key', { kind: 'found', value: AZURE_VALUE, version: '0f3c2e1d4b5a69788796a5b4c3d2e1f0' });
    fake.answers.set('blank', { kind: 'found', value: '', version: '1f3c2e1d4b5a69788796a5b4c3d2e1f0' });
    fake.answers.set('denied', { kind: 'denied' });
    fake.answers.set('throttled', { kind: 'throttled' });
    fake.answers.set('broken', { kind: 'server_error', status: 500 });
    fake.answers.set('slow', { kind: 'slow', ms: 5_000 });
  });
  after(async () => {
    await source.close?.();
    await slowSource.close?.();
    await fake.close();
  });

  it('answers the Key Vault challenge, then loads the value and its version id', async () => {
    const before = fake.requests.length;
    const secret = await source.load('kv-prod/openai-key');
    assert.deepEqual(secret, { value: AZURE_VALUE, version: '0f3c2e1d4b5a69788796a5b4c3d2e1f0' });
    const sent = fake.requests.slice(before);
    assert.equal(sent.length, 2, 'a challenge round, then the authorised request');
    assert.equal(sent[0]!.headers.authorization, undefined, 'the first request carries no token');
    assert.equal(sent[1]!.headers.authorization, `Bearer ${AZURE_TOKEN}`);
    for (const request of sent) {
      assert.equal(request.method, 'GET');
      const url = new URL(request.url, 'http://fake');
      assert.match(url.pathname, /^\/secrets\/openai-key\/?$/);
      assert.match(url.searchParams.get('api-version') ?? '', /^[0-9.-]+$/);
    }
    assert.deepEqual(scopesAsked, [`${AZURE_RESOURCE}/.default`], 'the token was asked for the challenge resource');
  });

  it('reuses the token for the next load of the same vault', async () => {
    const before = fake.requests.length;
    assert.equal((await source.load('kv-prod/openai-key')).value, AZURE_VALUE);
    assert.equal(fake.requests.length - before, 1);
  });

  it('puts the vault name into the URL template', async () => {
    const templated = createAzureKeyVaultSource({ vaultUrlTemplate: `${fake.url}/{vault}`, credential });
    const before = fake.requests.length;
    assert.equal((await templated.load('kv-team-a/openai-key')).value, AZURE_VALUE);
    const sent = fake.requests.slice(before);
    assert.ok(sent.length >= 1);
    for (const request of sent) assert.match(request.url, /^\/kv-team-a\/secrets\/openai-key/);
  });

  it('maps 404 SecretNotFound to not_found', async () => {
    const err = await expectFailure(source.load('kv-prod/missing'), 'not_found', 'azure-kv:kv-prod/missing');
    assert.match(err.message, /SecretNotFound/);
  });

  it('maps 403 to access_denied', async () => {
    await expectFailure(source.load('kv-prod/denied'), 'access_denied', 'azure-kv:kv-prod/denied');
  });

  it('maps 429 to throttled without waiting out Retry-After', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('kv-prod/throttled'), 'throttled', 'azure-kv:kv-prod/throttled');
    assert.equal(fake.requests.length - before, 1, 'the SDK did not retry');
  });

  it('maps a 500 answer to unavailable after a single attempt', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('kv-prod/broken'), 'unavailable', 'azure-kv:kv-prod/broken');
    assert.equal(fake.requests.length - before, 1, 'the SDK did not retry');
  });

  it('gives up on a slow answer after timeoutMs with unavailable', async () => {
    const err = await expectFailure(slowSource.load('kv-prod/slow'), 'unavailable', 'azure-kv:kv-prod/slow');
    assert.match(err.message, /did not answer within 300 ms/);
  });

  it('refuses an empty secret', async () => {
    await expectFailure(source.load('kv-prod/blank'), 'invalid', 'azure-kv:kv-prod/blank');
  });

  it('maps a token the vault rejects to access_denied', async () => {
    const wrong = createAzureKeyVaultSource({
      vaultUrlTemplate: fake.url,
      credential: { getToken: async () => ({ token: AZURE_WRONG_TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 }) },
    });
    await expectFailure(wrong.load('kv-prod/openai-key'), 'access_denied', 'azure-kv:kv-prod/openai-key');
  });

  it('maps a credential that cannot get a token to access_denied, and sends no token', async () => {
    const failing = createAzureKeyVaultSource({
      vaultUrlTemplate: fake.url,
      credential: {
        getToken: async () => {
          throw Object.assign(new Error(`no identity (${AZURE_CREDENTIAL_ERROR})`), { name: 'CredentialUnavailableError' });
        },
      },
    });
    const before = fake.requests.length;
    const err = await expectFailure(failing.load('kv-prod/openai-key'), 'access_denied', 'azure-kv:kv-prod/openai-key');
    assert.match(err.message, /no Azure token could be obtained \(CredentialUnavailableError\)/);
    for (const request of fake.requests.slice(before)) assert.equal(request.headers.authorization, undefined);
  });

  it('maps a credential that answers with no token to access_denied', async () => {
    const empty = createAzureKeyVaultSource({ vaultUrlTemplate: fake.url, credential: { getToken: async () => null } });
    const before = fake.requests.length;
    await expectFailure(empty.load('kv-prod/openai-key'), 'access_denied', 'azure-kv:kv-prod/openai-key');
    for (const request of fake.requests.slice(before)) assert.equal(request.headers.authorization, undefined);
  });

  it('maps a refused connection to unavailable', async () => {
    const port = await closedPort();
    const down = createAzureKeyVaultSource({ vaultUrlTemplate: `http://127.0.0.1:${port}`, credential });
    await expectFailure(down.load('kv-prod/openai-key'), 'unavailable', 'azure-kv:kv-prod/openai-key');
  });

  it('refuses a malformed locator without echoing it and without calling the vault', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load(AZURE_VALUE), 'invalid', '(reference)');
    await expectFailure(source.load('kv-prod/openai-key/extra'), 'invalid', '(reference)');
    assert.equal(fake.requests.length, before);
  });
});

describe('gcp-sm: Google Secret Manager through its REST API', () => {
  let fake: FakeGcpSecretManager;
  let source: SecretSource;
  let slowSource: SecretSource;
  let tokenCalls = 0;
  const getAccessToken = async (): Promise<string> => {
    tokenCalls++;
    return GCP_TOKEN;
  };

  before(async () => {
    fake = await startFakeGcpSecretManager(GCP_TOKEN);
    source = createGcpSecretManagerSource({ endpoint: fake.url, getAccessToken, timeoutMs: 5_000 });
    slowSource = createGcpSecretManagerSource({ endpoint: fake.url, getAccessToken, timeoutMs: 300 });
    fake.answers.set('projects/acme/secrets/openai', { kind: 'found', value: `${GCP_VALUE}\n`, version: 7 });
    fake.answers.set('projects/acme/secrets/no-crc', { kind: 'found', value: GCP_VALUE, version: 2, crc: 'absent' });
    fake.answers.set('projects/acme/secrets/corrupt', { kind: 'found', value: GCP_VALUE, version: 3, crc: 'wrong' });
    fake.answers.set('projects/acme/secrets/binary', { kind: 'found', value: Buffer.from([0xff, 0xfe, 0x00, 0x41]), version: 1 });
    fake.answers.set('projects/acme/secrets/denied', { kind: 'denied' });
    fake.answers.set('projects/acme/secrets/throttled', { kind: 'throttled' });
    fake.answers.set('projects/acme/secrets/broken', { kind: 'server_error', status: 503 });
    fake.answers.set('projects/acme/secrets/slow', { kind: 'slow', ms: 5_000 });
    fake.answers.set('projects/acme/secrets/moved', {
      kind: 'redirect',
      location: `${fake.url}/v1/projects/acme/secrets/openai/versions/latest:access`,
    });
  });
  after(async () => {
    await source.close?.();
    await slowSource.close?.();
    await fake.close();
  });

  it('loads the latest version: base64 payload decoded and trimmed, version number from the name', async () => {
    const before = fake.requests.length;
    const secret = await source.load('projects/acme/secrets/openai');
    assert.deepEqual(secret, { value: GCP_VALUE, version: '7' });
    const sent = fake.requests.slice(before);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.method, 'GET');
    assert.equal(sent[0]!.url, '/v1/projects/acme/secrets/openai/versions/latest:access');
    assert.equal(sent[0]!.headers.authorization, `Bearer ${GCP_TOKEN}`);
    assert.ok(tokenCalls >= 1);
  });

  it('loads a pinned version, and reports another version as not_found', async () => {
    assert.deepEqual(await source.load('projects/acme/secrets/openai/versions/7'), { value: GCP_VALUE, version: '7' });
    assert.equal(fake.requests.at(-1)!.url, '/v1/projects/acme/secrets/openai/versions/7:access');
    await expectFailure(source.load('projects/acme/secrets/openai/versions/6'), 'not_found', 'gcp-sm:projects/acme/secrets/openai/versions/6');
  });

  it('accepts an answer without dataCrc32c', async () => {
    assert.deepEqual(await source.load('projects/acme/secrets/no-crc'), { value: GCP_VALUE, version: '2' });
  });

  it('refuses a payload whose CRC32C does not match, as unavailable', async () => {
    const err = await expectFailure(source.load('projects/acme/secrets/corrupt'), 'unavailable', 'gcp-sm:projects/acme/secrets/corrupt');
    assert.match(err.message, /CRC32C/);
  });

  it('computes CRC32C (Castagnoli) as Google does', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  });

  it('refuses a payload that is not UTF-8 text', async () => {
    await expectFailure(source.load('projects/acme/secrets/binary'), 'invalid', 'gcp-sm:projects/acme/secrets/binary');
  });

  it('maps 404 NOT_FOUND to not_found', async () => {
    const err = await expectFailure(source.load('projects/acme/secrets/missing'), 'not_found', 'gcp-sm:projects/acme/secrets/missing');
    assert.match(err.message, /HTTP 404 NOT_FOUND/);
  });

  it('maps 403 PERMISSION_DENIED to access_denied', async () => {
    await expectFailure(source.load('projects/acme/secrets/denied'), 'access_denied', 'gcp-sm:projects/acme/secrets/denied');
  });

  it('maps 401 UNAUTHENTICATED (a rejected token) to access_denied', async () => {
    const wrong = createGcpSecretManagerSource({ endpoint: fake.url, getAccessToken: async () => GCP_WRONG_TOKEN });
    try {
      await expectFailure(wrong.load('projects/acme/secrets/openai'), 'access_denied', 'gcp-sm:projects/acme/secrets/openai');
    } finally {
      await wrong.close?.();
    }
  });

  it('maps 429 RESOURCE_EXHAUSTED to throttled', async () => {
    await expectFailure(source.load('projects/acme/secrets/throttled'), 'throttled', 'gcp-sm:projects/acme/secrets/throttled');
  });

  it('maps a 503 answer to unavailable after a single attempt', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('projects/acme/secrets/broken'), 'unavailable', 'gcp-sm:projects/acme/secrets/broken');
    assert.equal(fake.requests.length - before, 1);
  });

  it('gives up on a slow answer after timeoutMs with unavailable', async () => {
    const err = await expectFailure(slowSource.load('projects/acme/secrets/slow'), 'unavailable', 'gcp-sm:projects/acme/secrets/slow');
    assert.match(err.message, /did not answer within 300 ms/);
  });

  it('does not follow a redirect (the token is never sent to another location)', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load('projects/acme/secrets/moved'), 'invalid', 'gcp-sm:projects/acme/secrets/moved');
    assert.equal(fake.requests.length - before, 1, 'only the redirecting request was made');
  });

  it('maps a token provider failure to access_denied and calls nothing', async () => {
    const failing = createGcpSecretManagerSource({
      endpoint: fake.url,
      getAccessToken: async () => {
        throw new Error(`metadata said no (${GCP_TOKEN_ERROR})`);
      },
    });
    const before = fake.requests.length;
    await expectFailure(failing.load('projects/acme/secrets/openai'), 'access_denied', 'gcp-sm:projects/acme/secrets/openai');
    assert.equal(fake.requests.length, before);
  });

  it('refuses a token that would inject a header, and calls nothing', async () => {
    const injecting = createGcpSecretManagerSource({ endpoint: fake.url, getAccessToken: async () => `${GCP_TOKEN}\r\nx-evil: 1` });
    const before = fake.requests.length;
    await expectFailure(injecting.load('projects/acme/secrets/openai'), 'access_denied', 'gcp-sm:projects/acme/secrets/openai');
    assert.equal(fake.requests.length, before);
  });

  it('maps a refused connection to unavailable', async () => {
    const port = await closedPort();
    const down = createGcpSecretManagerSource({ endpoint: `http://127.0.0.1:${port}`, getAccessToken });
    try {
      await expectFailure(down.load('projects/acme/secrets/openai'), 'unavailable', 'gcp-sm:projects/acme/secrets/openai');
    } finally {
      await down.close?.();
    }
  });

  it('refuses a malformed locator without echoing it and without calling the service', async () => {
    const before = fake.requests.length;
    await expectFailure(source.load(GCP_VALUE), 'invalid', '(reference)');
    await expectFailure(source.load('projects/acme/secrets/openai/versions/../../x'), 'invalid', '(reference)');
    assert.equal(fake.requests.length, before);
  });
});

describe('endpoint overrides', () => {
  const refused: Array<[string, () => unknown]> = [
    ['aws-sm over http to a non-loopback host', () => createAwsSecretsManagerSource({ endpoint: 'http://secretsmanager.example.com' })],
    ['aws-sm over http to localhost (a name, not a loopback address)', () => createAwsSecretsManagerSource({ endpoint: 'http://localhost:4566' })],
    ['aws-sm with credentials in the URL', () => createAwsSecretsManagerSource({ endpoint: `https://user:${AWS_CREDENTIALS.secretAccessKey}@vpce.example.com` })],
    ['aws-sm with a non-http scheme', () => createAwsSecretsManagerSource({ endpoint: 'file:///etc/passwd' })],
    ['azure-kv over http to a non-loopback host', () => createAzureKeyVaultSource({ vaultUrlTemplate: 'http://{vault}.vault.azure.net' })],
    ['azure-kv over http to 10.0.0.5', () => createAzureKeyVaultSource({ vaultUrlTemplate: 'http://10.0.0.5:8443' })],
    ['gcp-sm over http to a non-loopback host', () => createGcpSecretManagerSource({ endpoint: 'http://secretmanager.googleapis.com' })],
    ['gcp-sm with a query string', () => createGcpSecretManagerSource({ endpoint: 'https://secretmanager.googleapis.com/?key=x' })],
  ];
  for (const [label, create] of refused) {
    it(`refuses ${label} at creation`, () => {
      assert.throws(create, (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.equal(leakIn(err.message), undefined);
        return true;
      });
    });
  }

  it('accepts https endpoints and http on loopback addresses', () => {
    createAwsSecretsManagerSource({ region: 'eu-west-1', endpoint: 'https://vpce-0a1b.secretsmanager.eu-west-1.vpce.amazonaws.com' });
    createAwsSecretsManagerSource({ endpoint: 'http://127.0.0.1:4566' });
    createAzureKeyVaultSource({ vaultUrlTemplate: 'https://{vault}.vault.azure.cn' });
    createAzureKeyVaultSource({ vaultUrlTemplate: 'http://[::1]:8443' });
    createGcpSecretManagerSource({ endpoint: 'https://europe-west1-secretmanager.googleapis.com' });
    createGcpSecretManagerSource({ endpoint: 'http://127.0.0.1:9999' });
  });

  it('refuses a bad timeoutMs at creation', () => {
    assert.throws(() => createAwsSecretsManagerSource({ timeoutMs: 0 }), TypeError);
    assert.throws(() => createAzureKeyVaultSource({ timeoutMs: -1 }), TypeError);
    assert.throws(() => createGcpSecretManagerSource({ timeoutMs: 1.5 }), TypeError);
  });
});

describe('optional SDK packages', () => {
  it('names the package to install when it is missing', async () => {
    const err = await expectFailure(
      loadOptional('@keywarden-test/not-installed-sdk', 'aws-sm:prod/openai'),
      'missing_package',
      'aws-sm:prod/openai',
    );
    assert.match(err.message, /install it with: npm install @keywarden-test\/not-installed-sdk$/);
  });

  it('loads an installed package once and hands back the same module', async () => {
    const first = await loadOptional<{ GoogleAuth: unknown }>('google-auth-library', 'gcp-sm:projects/p/secrets/s');
    const second = await loadOptional<{ GoogleAuth: unknown }>('google-auth-library', 'gcp-sm:projects/p/secrets/s');
    assert.equal(typeof first.GoogleAuth, 'function');
    assert.equal(first, second);
  });

  it('without the cloud SDKs (an --omit=dev install), sources still start and each load names its package', async () => {
    // a child process whose module resolution hides every cloud SDK, as a production install would
    const hook = `
      export async function resolve(specifier, context, next) {
        if (/^(@aws-sdk\\/|@azure\\/|google-auth-library)/.test(specifier)) {
          const err = new Error('Cannot find package ' + JSON.stringify(specifier));
          err.code = 'ERR_MODULE_NOT_FOUND';
          throw err;
        }
        return next(specifier, context);
      }`;
    const backends = (name: string): string => fileURLToPath(new URL(`../src/secrets/backends/${name}.js`, import.meta.url));
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
      const { createAwsSecretsManagerSource } = await import(${JSON.stringify(backends('aws-sm'))});
      const { createAzureKeyVaultSource } = await import(${JSON.stringify(backends('azure-kv'))});
      const { createGcpSecretManagerSource } = await import(${JSON.stringify(backends('gcp-sm'))});
      const sources = [
        [createAwsSecretsManagerSource({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' }), 'prod/openai'],
        [createAzureKeyVaultSource({ vaultUrlTemplate: 'http://127.0.0.1:9' }), 'kv-prod/openai-key'],
        [createGcpSecretManagerSource({ endpoint: 'http://127.0.0.1:9' }), 'projects/acme/secrets/openai'],
      ];
      const out = [];
      for (const [source, locator] of sources) {
        try { await source.load(locator); out.push({ loaded: true }); }
        catch (err) { out.push({ name: err.name, reason: err.reason, message: err.message }); }
      }
      process.stdout.write(JSON.stringify(out));`;
    const child = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(child.status, 0, child.stderr);
    const results = JSON.parse(child.stdout) as Array<{ name?: string; reason?: string; message?: string }>;
    assert.deepEqual(results.map((r) => r.reason), ['missing_package', 'missing_package', 'missing_package']);
    assert.match(results[0]!.message!, /^aws-sm:prod\/openai: .*install it with: npm install @aws-sdk\/client-secrets-manager$/);
    assert.match(results[1]!.message!, /^azure-kv:kv-prod\/openai-key: .*install it with: npm install @azure\/keyvault-secrets$/);
    assert.match(results[2]!.message!, /^gcp-sm:projects\/acme\/secrets\/openai: .*install it with: npm install google-auth-library$/);
  });
});

describe('error messages', () => {
  it('no error in this file carried a secret value, token, credential or service message', () => {
    // each expectFailure checked its own error; this guards against the checks silently not running
    assert.ok(checkedErrors.length >= 40, `only ${checkedErrors.length} errors were checked`);
    for (const err of checkedErrors) assert.equal(leakIn(err.message), undefined);
  });
});
