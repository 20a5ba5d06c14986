import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { createVaultSource, type VaultSourceOptions } from '../src/secrets/backends/hashicorp-vault.js';
import { createSecretResolver } from '../src/secrets/resolver.js';
import { SecretError, type SecretFailure, type SecretSource } from '../src/secrets/types.js';
import { scrubSecrets } from '../src/log/redact.js';
import { startFakeVault, type FakeVault } from './helpers/fake-vault-server.js';
import { freePort } from './helpers/cli-process.js';

// Plainly fake credentials and values: they unlock nothing, anywhere.
const FAKE_TOKEN = 'hvs.fake-TEST-ONLY-static-token-00000000000000'; // fake, TEST ONLY
const FAKE_NARROW_TOKEN = 'hvs.fake-TEST-ONLY-narrow-token-1111111111111'; // fake, TEST ONLY
const FAKE_ROLE_ID = 'fake-role-id-TEST-ONLY-2222-2222'; // fake, TEST ONLY
const FAKE_SECRET_ID = 'fake-secret-id-TEST-ONLY-3333-3333-3333'; // fake, TEST ONLY
const FAKE_WRONG_SECRET_ID = 'fake-secret-id-TEST-ONLY-WRONG-9999-9999'; // fake, TEST ONLY
const FAKE_PROVIDER_KEY = 'sk-fake-TEST-ONLY-vault-openai-key-000000000000'; // fake, TEST ONLY
const FAKE_PROVIDER_KEY_2 = 'sk-fake-TEST-ONLY-vault-openai-key-rotated-0001'; // fake, TEST ONLY
const FAKE_ANTHROPIC_KEY = 'sk-ant-fake-TEST-ONLY-vault-anthropic-key-000000'; // fake, TEST ONLY

/** Everything that must never appear in an error: credentials, ids, values and every token the fake issued. */
const vaults: FakeVault[] = [];
const forbidden = (): string[] => [
  FAKE_TOKEN, FAKE_NARROW_TOKEN, FAKE_ROLE_ID, FAKE_SECRET_ID, FAKE_WRONG_SECRET_ID,
  FAKE_PROVIDER_KEY, FAKE_PROVIDER_KEY_2, FAKE_ANTHROPIC_KEY,
  ...vaults.flatMap((v) => v.issuedTokens),
];
const errorsSeen: SecretError[] = [];
const sources: SecretSource[] = [];

async function fakeVault(options?: Parameters<typeof startFakeVault>[0]): Promise<FakeVault> {
  const v = await startFakeVault(options);
  vaults.push(v);
  return v;
}

function source(options: VaultSourceOptions): SecretSource {
  const s = createVaultSource(options);
  sources.push(s);
  return s;
}

function assertNoSecretsIn(err: unknown): void {
  const text = `${String(err)}\n${(err as Error).stack ?? ''}\n${inspect(err, { depth: 5 })}`;
  for (const secret of forbidden()) assert.ok(!text.includes(secret), `error text leaks a secret: ${text}`);
}

/** Awaits a rejection with a SecretError of `reason`; checks it names no secret. */
async function rejectsWith(promise: Promise<unknown>, reason: SecretFailure, message?: RegExp): Promise<SecretError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SecretError, `expected a SecretError, got ${inspect(err)}`);
    assert.equal(err.reason, reason, `reason of: ${err.message}`);
    if (message) assert.match(err.message, message);
    assertNoSecretsIn(err);
    errorsSeen.push(err);
    return err;
  }
  assert.fail(`expected a SecretError with reason ${reason}`);
}

function throwsWith(fn: () => unknown, reason: SecretFailure, message?: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SecretError, `expected a SecretError, got ${inspect(err)}`);
    assert.equal(err.reason, reason);
    if (message) assert.match(err.message, message);
    assertNoSecretsIn(err);
    errorsSeen.push(err);
    return;
  }
  assert.fail('expected the options to be refused');
}

const reads = (v: FakeVault) => v.requests.filter((r) => r.path.includes('/data/'));
const loginRequests = (v: FakeVault) => v.requests.filter((r) => r.path.includes('/login'));

after(async () => {
  await Promise.all(sources.map((s) => s.close?.()));
  await Promise.all(vaults.map((v) => v.close()));
});

describe('vault: KV v2 reads with a token', () => {
  let vault: FakeVault;
  let vaultSource: SecretSource;

  before(async () => {
    vault = await fakeVault();
    vault.addToken(FAKE_TOKEN);
    vault.addToken(FAKE_NARROW_TOKEN, { paths: ['secret/data/providers/anthropic'] });
    vault.putSecret('secret/providers/openai', { api_key: FAKE_PROVIDER_KEY, owner: 'platform-team' });
    vault.putSecret('secret/providers/anthropic', { api_key: `${FAKE_ANTHROPIC_KEY}\n` });
    vault.putSecret('secret/providers/odd', { empty: '   ', number: 42, nested: { api_key: FAKE_PROVIDER_KEY } });
    vaultSource = source({ address: vault.url, auth: { method: 'token', token: FAKE_TOKEN }, timeoutMs: 2_000 });
  });
  afterEach(() => vault.setFault(undefined));

  it('reads one field of the latest version over GET /v1/MOUNT/data/PATH with X-Vault-Token', async () => {
    const before = vault.requests.length;
    const secret = await vaultSource.load('secret/providers/openai#api_key');
    assert.deepEqual(secret, { value: FAKE_PROVIDER_KEY, version: 'v1' });
    const sent = vault.requests.slice(before);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.method, 'GET');
    assert.equal(sent[0]?.path, '/v1/secret/data/providers/openai');
    assert.equal(sent[0]?.headers['x-vault-token'], FAKE_TOKEN);
    assert.equal(sent[0]?.headers['x-vault-namespace'], undefined, 'no namespace header when none is configured');
  });

  it('returns the new value and version after the secret is rotated in Vault', async () => {
    vault.putSecret('secret/providers/rotating', { api_key: FAKE_PROVIDER_KEY });
    assert.equal((await vaultSource.load('secret/providers/rotating#api_key')).version, 'v1');
    vault.putSecret('secret/providers/rotating', { api_key: FAKE_PROVIDER_KEY_2 });
    assert.deepEqual(await vaultSource.load('secret/providers/rotating#api_key'), { value: FAKE_PROVIDER_KEY_2, version: 'v2' });
  });

  it('trims a trailing newline stored with the value', async () => {
    assert.equal((await vaultSource.load('secret/providers/anthropic#api_key')).value, FAKE_ANTHROPIC_KEY);
  });

  it('resolves vault: references through the resolver and registers the value with the log redactor', async () => {
    const resolver = createSecretResolver([vaultSource]);
    const secret = await resolver.resolve('vault:secret/providers/openai#api_key');
    assert.equal(secret.value, FAKE_PROVIDER_KEY);
    assert.ok(!scrubSecrets(`upstream said ${FAKE_PROVIDER_KEY}`).includes(FAKE_PROVIDER_KEY));
  });

  it('registers the Vault token with the log redactor so a log line cannot carry it', () => {
    assert.ok(!scrubSecrets(`token=${FAKE_TOKEN}`).includes(FAKE_TOKEN));
  });

  it('answers not_found for a path that does not exist', async () => {
    const err = await rejectsWith(vaultSource.load('secret/providers/missing#api_key'), 'not_found');
    assert.equal(err.reference, 'vault:secret/providers/missing#api_key');
  });

  it('answers not_found for a mount that is not a KV engine', async () => {
    await rejectsWith(vaultSource.load('nokv/providers/openai#api_key'), 'not_found');
  });

  it('answers not_found naming the field when the secret has no such field', async () => {
    await rejectsWith(vaultSource.load('secret/providers/openai#apikey'), 'not_found', /field "apikey"/);
  });

  it('does not treat inherited object properties as fields', async () => {
    await rejectsWith(vaultSource.load('secret/providers/openai#constructor'), 'not_found', /field "constructor"/);
    await rejectsWith(vaultSource.load('secret/providers/openai#__proto__'), 'not_found', /field "__proto__"/);
  });

  it('answers not_found naming the field when the field is empty', async () => {
    await rejectsWith(vaultSource.load('secret/providers/odd#empty'), 'not_found', /field "empty" is empty/);
  });

  it('refuses a field that is not a string (invalid), without printing it', async () => {
    await rejectsWith(vaultSource.load('secret/providers/odd#number'), 'invalid', /field "number" is not a string/);
    const err = await rejectsWith(vaultSource.load('secret/providers/odd#nested'), 'invalid');
    assert.ok(!err.message.includes('api_key'));
  });

  it('answers not_found when the latest version was deleted', async () => {
    vault.putSecret('secret/providers/retired', { api_key: FAKE_PROVIDER_KEY });
    vault.deleteLatest('secret/providers/retired');
    await rejectsWith(vaultSource.load('secret/providers/retired#api_key'), 'not_found');
  });

  it('answers access_denied when the token\'s policy does not cover the path, and does not retry', async () => {
    const narrow = source({ address: vault.url, auth: { method: 'token', token: FAKE_NARROW_TOKEN } });
    const before = vault.requests.length;
    await rejectsWith(narrow.load('secret/providers/openai#api_key'), 'access_denied');
    assert.equal(vault.requests.length - before, 1, 'a static token is not retried');
    assert.equal(loginRequests(vault).length, 0, 'token auth never logs in');
    assert.equal((await narrow.load('secret/providers/anthropic#api_key')).value, FAKE_ANTHROPIC_KEY);
  });

  it('answers access_denied for an unknown token', async () => {
    const unknown = source({ address: vault.url, auth: { method: 'token', token: FAKE_WRONG_SECRET_ID } });
    await rejectsWith(unknown.load('secret/providers/openai#api_key'), 'access_denied');
  });

  it('answers throttled when Vault rate limits (429)', async () => {
    vault.setFault({ kind: 'throttled' });
    await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'throttled');
  });

  it('answers unavailable, saying so, when Vault is sealed (503)', async () => {
    vault.setFault({ kind: 'sealed' });
    await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'unavailable', /sealed/);
  });

  it('answers unavailable on a server error (500) without relaying Vault\'s error text', async () => {
    vault.setFault({ kind: 'internal' });
    const err = await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'unavailable');
    assert.ok(!err.message.includes('internal error'));
  });

  it('answers unavailable when the answer is not Vault JSON', async () => {
    vault.setFault({ kind: 'malformed' });
    await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'unavailable');
  });

  it('stops reading an answer larger than 1 MiB', async () => {
    vault.setFault({ kind: 'huge' });
    await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'unavailable', /1 MiB/);
  });

  it('never follows a standby\'s redirect, so the token is not sent to another host', async () => {
    const elsewhere = await fakeVault();
    vault.setFault({ kind: 'standby-redirect', location: elsewhere.url });
    await rejectsWith(vaultSource.load('secret/providers/openai#api_key'), 'unavailable', /redirect/);
    assert.equal(elsewhere.requests.length, 0, 'the redirect target was never called');
  });

  it('answers unavailable when Vault does not answer within timeoutMs', async () => {
    vault.setFault({ kind: 'slow', delayMs: 5_000 });
    const impatient = source({ address: vault.url, auth: { method: 'token', token: FAKE_TOKEN }, timeoutMs: 200 });
    await rejectsWith(impatient.load('secret/providers/openai#api_key'), 'unavailable', /did not answer/);
  });

  it('answers unavailable when nothing listens at the address', async () => {
    const port = await freePort();
    const nowhere = source({ address: `http://127.0.0.1:${port}`, auth: { method: 'token', token: FAKE_TOKEN }, timeoutMs: 1_000 });
    await rejectsWith(nowhere.load('secret/providers/openai#api_key'), 'unavailable', /cannot reach Vault/);
  });

  it('refuses locators that walk out of the mount, without calling Vault', async () => {
    const before = vault.requests.length;
    for (const locator of ['secret/../sys/raw/core#x', 'secret/providers/../../sys/x#f', 'secret/./openai#api_key', 'secret//openai#api_key', 'secret#api_key', 'secret/providers/openai', 'secret/providers/openai#']) {
      await rejectsWith(vaultSource.load(locator), 'invalid');
    }
    // through the resolver too: `..` passes the reference pattern, so the backend must refuse it
    await rejectsWith(createSecretResolver([vaultSource]).resolve('vault:secret/../sys/raw/core#x'), 'invalid');
    assert.equal(vault.requests.length, before, 'Vault was not called');
  });

  it('keeps the address\'s path prefix (a Vault behind a path-routing proxy)', async () => {
    const prefixed = source({ address: `${vault.url}/vault-proxy/`, auth: { method: 'token', token: FAKE_TOKEN } });
    await rejectsWith(prefixed.load('secret/providers/openai#api_key'), 'not_found');
    assert.equal(vault.requests.at(-1)?.path, '/vault-proxy/v1/secret/data/providers/openai');
  });
});

describe('vault: namespaces', () => {
  let vault: FakeVault;
  before(async () => {
    vault = await fakeVault({ namespace: 'team-a' });
    vault.addToken(FAKE_TOKEN);
    vault.putSecret('secret/providers/openai', { api_key: FAKE_PROVIDER_KEY });
  });

  it('sends X-Vault-Namespace and reads from that namespace', async () => {
    const namespaced = source({ address: vault.url, namespace: 'team-a', auth: { method: 'token', token: FAKE_TOKEN } });
    assert.equal((await namespaced.load('secret/providers/openai#api_key')).value, FAKE_PROVIDER_KEY);
    assert.equal(vault.requests.at(-1)?.headers['x-vault-namespace'], 'team-a');
  });

  it('is refused without the namespace the token belongs to', async () => {
    const rootNs = source({ address: vault.url, auth: { method: 'token', token: FAKE_TOKEN } });
    await rejectsWith(rootNs.load('secret/providers/openai#api_key'), 'access_denied');
  });
});

describe('vault: AppRole login', () => {
  let vault: FakeVault;
  const approle = (extra: Partial<VaultSourceOptions> = {}, secretId = FAKE_SECRET_ID, mount?: string) => source({
    address: vault.url,
    auth: { method: 'approle', roleId: FAKE_ROLE_ID, secretId, ...(mount ? { mount } : {}) },
    timeoutMs: 2_000,
    ...extra,
  });

  before(async () => {
    vault = await fakeVault();
    vault.addRole('approle', FAKE_ROLE_ID, FAKE_SECRET_ID, { leaseSeconds: 3600 });
    vault.addRole('kw-approle', FAKE_ROLE_ID, FAKE_SECRET_ID, { leaseSeconds: 3600 });
    vault.putSecret('secret/providers/openai', { api_key: FAKE_PROVIDER_KEY });
  });
  afterEach(() => vault.setFault(undefined));

  it('logs in with role_id and secret_id, then reads with the client token it got', async () => {
    const logins = vault.logins();
    const s = approle();
    assert.equal((await s.load('secret/providers/openai#api_key')).value, FAKE_PROVIDER_KEY);
    assert.equal(vault.logins(), logins + 1);
    const login = loginRequests(vault).at(-1);
    assert.equal(login?.method, 'POST');
    assert.equal(login?.path, '/v1/auth/approle/login');
    assert.deepEqual(JSON.parse(login?.body ?? '{}'), { role_id: FAKE_ROLE_ID, secret_id: FAKE_SECRET_ID });
    assert.equal(login?.headers['x-vault-token'], undefined, 'the login itself carries no token');
    assert.equal(reads(vault).at(-1)?.headers['x-vault-token'], vault.issuedTokens.at(-1));
  });

  it('reuses the token while its lease lasts', async () => {
    const s = approle();
    await s.load('secret/providers/openai#api_key');
    const logins = vault.logins();
    await s.load('secret/providers/openai#api_key');
    await s.load('secret/providers/openai#api_key');
    assert.equal(vault.logins(), logins);
  });

  it('logs in once for concurrent loads', async () => {
    const logins = vault.logins();
    const s = approle();
    const all = await Promise.all(Array.from({ length: 5 }, () => s.load('secret/providers/openai#api_key')));
    assert.ok(all.every((secret) => secret.value === FAKE_PROVIDER_KEY));
    assert.equal(vault.logins(), logins + 1);
  });

  it('logs in at a custom AppRole mount', async () => {
    const s = approle({}, FAKE_SECRET_ID, 'kw-approle');
    await s.load('secret/providers/openai#api_key');
    assert.equal(loginRequests(vault).at(-1)?.path, '/v1/auth/kw-approle/login');
  });

  it('registers the secret id and the issued client token with the log redactor', async () => {
    const s = approle();
    await s.load('secret/providers/openai#api_key');
    const issued = vault.issuedTokens.at(-1) ?? '';
    const line = scrubSecrets(`secret_id=${FAKE_SECRET_ID} token=${issued}`);
    assert.ok(!line.includes(FAKE_SECRET_ID) && !line.includes(issued), line);
  });

  it('answers access_denied for a wrong secret id, and reads nothing', async () => {
    const readsBefore = reads(vault).length;
    await rejectsWith(approle({}, FAKE_WRONG_SECRET_ID).load('secret/providers/openai#api_key'), 'access_denied', /AppRole login/);
    assert.equal(reads(vault).length, readsBefore);
  });

  it('answers throttled when the login is rate limited', async () => {
    vault.setFault({ kind: 'throttled' }, 'login');
    await rejectsWith(approle().load('secret/providers/openai#api_key'), 'throttled');
  });

  it('answers unavailable when Vault is sealed at login', async () => {
    vault.setFault({ kind: 'sealed' }, 'login');
    await rejectsWith(approle().load('secret/providers/openai#api_key'), 'unavailable', /sealed/);
  });

  it('answers unavailable when the login does not answer in time', async () => {
    vault.setFault({ kind: 'slow', delayMs: 5_000 }, 'login');
    await rejectsWith(approle({ timeoutMs: 200 }).load('secret/providers/openai#api_key'), 'unavailable', /did not answer/);
  });

  it('logs in again after a 403 on a revoked token, and succeeds', async () => {
    const s = approle();
    await s.load('secret/providers/openai#api_key');
    const logins = vault.logins();
    const denied = vault.requests.filter((r) => r.status === 403).length;
    vault.revokeAllTokens();
    assert.equal((await s.load('secret/providers/openai#api_key')).value, FAKE_PROVIDER_KEY);
    assert.equal(vault.logins(), logins + 1);
    assert.equal(vault.requests.filter((r) => r.status === 403).length, denied + 1, 'exactly one refused read');
  });

  it('logs in again once, not in a loop, when the role\'s policy denies the path', async () => {
    vault.addRole('approle', 'fake-role-id-TEST-ONLY-narrow', FAKE_SECRET_ID, { paths: ['secret/data/other/'] }); // fake, TEST ONLY
    const s = source({ address: vault.url, auth: { method: 'approle', roleId: 'fake-role-id-TEST-ONLY-narrow', secretId: FAKE_SECRET_ID } });
    const logins = vault.logins();
    const readsBefore = reads(vault).length;
    await rejectsWith(s.load('secret/providers/openai#api_key'), 'access_denied');
    assert.equal(vault.logins(), logins + 2, 'the first login and one more after the 403');
    assert.equal(reads(vault).length, readsBefore + 2);
  });

  it('logs in again before the token\'s lease runs out, so no read is refused', async () => {
    vault.addRole('approle', 'fake-role-id-TEST-ONLY-short', FAKE_SECRET_ID, { leaseSeconds: 1 }); // fake, TEST ONLY
    const s = source({ address: vault.url, auth: { method: 'approle', roleId: 'fake-role-id-TEST-ONLY-short', secretId: FAKE_SECRET_ID } });
    await s.load('secret/providers/openai#api_key');
    const logins = vault.logins();
    const denied = vault.requests.filter((r) => r.status === 403).length;
    await sleep(900); // past three quarters of the 1 s lease
    assert.equal((await s.load('secret/providers/openai#api_key')).value, FAKE_PROVIDER_KEY);
    assert.equal(vault.logins(), logins + 1, 'logged in again');
    assert.equal(vault.requests.filter((r) => r.status === 403).length, denied, 'and no read was refused on the way');
  });
});

describe('vault: options are checked at creation', () => {
  const token = { method: 'token', token: FAKE_TOKEN } as const;

  it('refuses http to a host other than loopback (the token would travel in clear)', () => {
    throwsWith(() => createVaultSource({ address: 'http://vault.example.com:8200', auth: token }), 'invalid', /https/);
    throwsWith(() => createVaultSource({ address: 'http://10.0.0.5:8200', auth: token }), 'invalid', /https/);
  });

  it('accepts https anywhere and http on loopback', async () => {
    for (const address of ['https://vault.example.com:8200', 'http://127.0.0.1:8200', 'http://localhost:8200', 'http://[::1]:8200']) {
      const s = createVaultSource({ address, auth: token });
      await s.close?.();
    }
  });

  it('refuses addresses that are not URLs, other schemes, credentials and queries', () => {
    throwsWith(() => createVaultSource({ address: 'vault.example.com', auth: token }), 'invalid');
    throwsWith(() => createVaultSource({ address: 'ftp://vault.example.com', auth: token }), 'invalid');
    throwsWith(() => createVaultSource({ address: `https://user:${FAKE_SECRET_ID}@vault.example.com`, auth: token }), 'invalid', /credentials/);
    throwsWith(() => createVaultSource({ address: `https://vault.example.com/?token=${FAKE_TOKEN}`, auth: token }), 'invalid');
  });

  it('refuses empty or header-breaking credentials without echoing them', () => {
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', auth: { method: 'token', token: '' } }), 'invalid');
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', auth: { method: 'token', token: `${FAKE_TOKEN}\r\nx-evil: 1` } }), 'invalid');
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', auth: { method: 'approle', roleId: FAKE_ROLE_ID, secretId: '' } }), 'invalid');
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', auth: { method: 'approle', roleId: FAKE_ROLE_ID, secretId: FAKE_SECRET_ID, mount: '../sys' } }), 'invalid');
  });

  it('refuses a bad namespace or timeout', () => {
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', namespace: 'team a\r\n', auth: token }), 'invalid');
    throwsWith(() => createVaultSource({ address: 'https://vault.example.com', auth: token, timeoutMs: 0 }), 'invalid');
  });
});

describe('vault: no secret in any error', () => {
  it('no error raised in this file carries a token, secret id, role id or secret value', () => {
    assert.ok(errorsSeen.length >= 30, `expected many errors to check, saw ${errorsSeen.length}`);
    for (const err of errorsSeen) assertNoSecretsIn(err);
  });
});
