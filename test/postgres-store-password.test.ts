/**
 * The PostgreSQL password from `store_password` (a secret reference), proven against a fake
 * server that asks for it: the local PostgreSQL trusts every login, so it cannot tell whether a
 * password was sent at all. `keywarden serve` and `keywarden doctor` run as processes with a
 * config naming the fake; it records what each connection sent and always refuses the login
 * (SQLSTATE 28P01), as a real server does for a wrong password. No real database is needed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliEnv, runCli, type CliResult } from './helpers/cli-process.js';
import { createLeakFinder, type Secret } from './helpers/leak-finder.js';
import { md5PasswordMessage, md5Verifier, startFakePgAuth, type FakePgAttempt, type FakePgAuthMethod, type FakePgAuthServer } from './helpers/fake-pg-auth.js';
import { shownStore } from '../src/cli/commands/doctor.js';

// Plainly fake values: they open nothing, anywhere.
const FAKE_PG_PASSWORD = 'FAKE-TEST-ONLY-pg-password-1234'; // fake, TEST ONLY
const FAKE_ENV_PG_PASSWORD = 'FAKE-TEST-ONLY-pg-env-password-5678'; // fake, TEST ONLY
// what pg would send if the reference were ignored: PGPASSWORD is set to this decoy in every child
const DECOY_PGPASSWORD = 'FAKE-TEST-ONLY-decoy-PGPASSWORD-0000'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-pgpass-000000000'; // fake, TEST ONLY
const FAKE_HMAC_KEY = 'fake-prompt-hmac-TEST-ONLY-pgpass-00000000'; // fake, TEST ONLY
const FAKE_OPENAI_KEY = 'fake-openai-TEST-ONLY-pgpass-0000000000000'; // fake, TEST ONLY
const USER = 'keywarden';

let dir: string;
let passwordFile: string;
const fakes: FakePgAuthServer[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'keywarden-pgpass-'));
  passwordFile = join(dir, 'pg-password');
  writeFileSync(passwordFile, `${FAKE_PG_PASSWORD}\n`);
  // the file source refuses secret files others can read
  chmodSync(passwordFile, 0o600);
});

after(async () => {
  await Promise.all(fakes.map((f) => f.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function fake(method: FakePgAuthMethod, expectedPassword?: string): Promise<FakePgAuthServer> {
  const server = await startFakePgAuth({ method, ...(expectedPassword !== undefined ? { expectedPassword } : {}) });
  fakes.push(server);
  return server;
}

let configs = 0;
/** Writes a config (JSON is YAML) whose store is `store`, with `store_password` when given. */
function writeConfig(store: string, storePassword?: string): string {
  const doc = {
    listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
    store,
    ...(storePassword !== undefined ? { store_password: storePassword } : {}),
    admin: { token: 'env:KW_TEST_ADMIN_TOKEN' },
    audit: { prompt_hmac_key: 'env:KW_TEST_HMAC_KEY' },
    log: { level: 'info' },
    // required beside a postgres store; one process here, so its own counters do
    limits: { store: 'memory' },
    // never called: the gateway stops at the store
    providers: { openai: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'env:KW_TEST_OPENAI_KEY' } },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
  };
  const path = join(dir, `config-${++configs}.yaml`);
  writeFileSync(path, JSON.stringify(doc, null, 2));
  chmodSync(path, 0o600);
  return path;
}

function keywarden(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, {
    cwd: dir,
    env: cliEnv({
      NODE_ENV: 'test',
      KW_TEST_ADMIN_TOKEN: FAKE_ADMIN_TOKEN, KW_TEST_HMAC_KEY: FAKE_HMAC_KEY, KW_TEST_OPENAI_KEY: FAKE_OPENAI_KEY,
      PGPASSWORD: DECOY_PGPASSWORD, PGPASSFILE: join(dir, 'no-such-pgpass'),
      ...extraEnv,
    }),
    timeoutMs: 30_000,
  });
}

const findLeaks = createLeakFinder('(no provider key masked here)');

/** Every planted value (and its password-equivalent md5 forms), none of which may be printed. */
function secretsOf(password: string, attempts: readonly FakePgAttempt[] = []): Secret[] {
  const out: Secret[] = [
    { name: 'store password', value: password },
    { name: 'md5 verifier of the store password', value: md5Verifier(USER, password) },
  ];
  for (const a of attempts) if (a.password !== undefined && a.password !== '') out.push({ name: 'password message as sent', value: a.password });
  return out;
}

function assertNoLeaks(result: CliResult, secrets: readonly Secret[]): void {
  const found = [...findLeaks('stdout', result.stdout, secrets), ...findLeaks('stderr', result.stderr, secrets)];
  assert.deepEqual(found, [], `secret material was printed:\n${found.join('\n')}`);
}

/** The attempts that got as far as answering the authentication request. */
function answered(server: FakePgAuthServer): FakePgAttempt[] {
  return server.attempts.filter((a) => a.password !== undefined || a.scram !== undefined);
}

describe('store_password against a server that asks for a password', () => {
  it('serve sends the file: reference in clear text when asked, then stops with exit 1 naming the failed login, printing neither', async () => {
    const server = await fake('cleartext');
    const config = writeConfig(`postgres://${USER}@127.0.0.1:${server.port}/kw`, `file:${passwordFile}`);
    const result = await keywarden(['serve', '--config', config]);

    const sent = answered(server);
    assert.ok(sent.length >= 1, `the gateway never answered the password request:\n${result.stderr}`);
    for (const a of sent) {
      assert.equal(a.password, FAKE_PG_PASSWORD, 'the password sent is not the one the reference names');
      assert.equal(a.startup?.['user'], USER);
      assert.equal(a.startup?.['database'], 'kw');
    }
    assert.equal(result.code, 1, `exit status\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.match(result.stderr, /^keywarden: password authentication failed for user "keywarden"$/m);
    assert.doesNotMatch(result.stdout, /keywarden listening/);
    assertNoLeaks(result, secretsOf(FAKE_PG_PASSWORD, sent));
    assert.ok(!(result.stdout + result.stderr).includes(DECOY_PGPASSWORD));
  });

  it('doctor answers an md5 request with md5(md5(password + user) + salt), fails the store check and exits 1, printing neither', async () => {
    const server = await fake('md5');
    const store = `postgres://${USER}@127.0.0.1:${server.port}/kw`;
    const config = writeConfig(store, `file:${passwordFile}`);
    const result = await keywarden(['doctor', '--config', config]);

    const sent = answered(server);
    assert.ok(sent.length >= 1, `doctor never answered the password request:\n${result.stdout}`);
    for (const a of sent) {
      assert.ok(a.salt, 'the fake sent a salt');
      assert.equal(a.password, md5PasswordMessage(USER, FAKE_PG_PASSWORD, a.salt), 'the md5 answer is not derived from the referenced password');
    }
    assert.equal(result.code, 1, `exit status\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.ok(result.stdout.split('\n').includes(`FAIL  store ${store}: password authentication failed for user "keywarden"`), result.stdout);
    assert.match(result.stdout, /^1 check\(s\) failed$/m);
    assertNoLeaks(result, secretsOf(FAKE_PG_PASSWORD, sent));
  });

  it('takes an env: reference as well, over PGPASSWORD', async () => {
    const server = await fake('cleartext');
    const config = writeConfig(`postgres://${USER}@127.0.0.1:${server.port}/kw`, 'env:KW_TEST_PG_PASSWORD');
    const result = await keywarden(['serve', '--config', config], { KW_TEST_PG_PASSWORD: FAKE_ENV_PG_PASSWORD });

    const sent = answered(server);
    assert.ok(sent.length >= 1, `the gateway never answered the password request:\n${result.stderr}`);
    for (const a of sent) assert.equal(a.password, FAKE_ENV_PG_PASSWORD);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /password authentication failed for user "keywarden"/);
    assertNoLeaks(result, secretsOf(FAKE_ENV_PG_PASSWORD, sent));
  });

  it('proves the referenced password in a SCRAM-SHA-256 exchange (and a wrong one does not prove it)', async () => {
    const server = await fake('scram-sha-256', FAKE_ENV_PG_PASSWORD);
    const config = writeConfig(`postgres://${USER}@127.0.0.1:${server.port}/kw`, 'env:KW_TEST_PG_PASSWORD');
    const right = await keywarden(['doctor', '--config', config], { KW_TEST_PG_PASSWORD: FAKE_ENV_PG_PASSWORD });
    const sent = answered(server);
    assert.ok(sent.length >= 1, `doctor never answered the SASL request:\n${right.stdout}`);
    for (const a of sent) assert.deepEqual(a.scram, { mechanism: 'SCRAM-SHA-256', proofValid: true });
    assert.equal(right.code, 1);
    assert.match(right.stdout, /^FAIL {2}store .*: password authentication failed for user "keywarden"$/m);
    assertNoLeaks(right, secretsOf(FAKE_ENV_PG_PASSWORD));

    // the control: the same exchange with another password is told apart by the fake
    const before = sent.length;
    const wrong = await keywarden(['doctor', '--config', config], { KW_TEST_PG_PASSWORD: FAKE_PG_PASSWORD });
    const later = answered(server).slice(before);
    assert.ok(later.length >= 1);
    for (const a of later) assert.deepEqual(a.scram, { mechanism: 'SCRAM-SHA-256', proofValid: false });
    assert.equal(wrong.code, 1);
    assertNoLeaks(wrong, [...secretsOf(FAKE_ENV_PG_PASSWORD), ...secretsOf(FAKE_PG_PASSWORD)]);
  });

  // sslmode=… and pg's own ssl=… forms (string values included: a review found ssl=require and
  // ssl=no-verify read as "no TLS" when the URL was parsed by anything but pg's own merge)
  for (const query of ['sslmode=verify-full', 'sslmode=require', 'ssl=require', 'ssl=no-verify', 'ssl=true', 'ssl=verify-full']) {
    it(`sends no password when TLS was asked for (${query}) and the server has none`, async () => {
      const server = await fake('cleartext');
      const config = writeConfig(`postgres://${USER}@127.0.0.1:${server.port}/kw?${query}`, `file:${passwordFile}`);
      const result = await keywarden(['doctor', '--config', config]);
      assert.ok(server.attempts.length >= 1, 'doctor never connected');
      for (const a of server.attempts) {
        assert.equal(a.sslRequested, true, 'no SSLRequest: the connection went out in clear text');
        assert.equal(a.startup, undefined, 'a startup message followed the refused SSLRequest');
        assert.equal(a.password, undefined);
      }
      assert.equal(result.code, 1);
      assert.match(result.stdout, /^FAIL {2}store .*: The server does not support SSL connections$/m);
      assertNoLeaks(result, secretsOf(FAKE_PG_PASSWORD));
    });
  }
});

describe('doctor\'s store line', () => {
  it('hides the value of a query parameter that names a password (sslpassword), and nothing else', () => {
    assert.equal(shownStore('postgres://kw@db/kw?sslmode=verify-full&sslpassword=FAKE-TEST-ONLY-keypass'), 'postgres://kw@db/kw?sslmode=verify-full&sslpassword=…');
    assert.equal(shownStore('postgres://kw@db/kw?sslmode=verify-full'), 'postgres://kw@db/kw?sslmode=verify-full');
    assert.equal(shownStore('sqlite:./data/keywarden.db'), 'sqlite:./data/keywarden.db');
  });
});

describe('a password inside the store URL', () => {
  const cases: Array<[string, (port: number) => string]> = [
    ['in the user-info part', (port) => `postgres://${USER}:${FAKE_PG_PASSWORD}@127.0.0.1:${port}/kw`],
    ['percent-encoded in the user-info part', (port) => `postgresql://${USER}:${encodeURIComponent(`${FAKE_PG_PASSWORD}@/`)}@127.0.0.1:${port}/kw`],
    ['as a query parameter', (port) => `postgres://${USER}@127.0.0.1:${port}/kw?sslmode=disable&password=${FAKE_PG_PASSWORD}`],
    ['as a query parameter with an encoded name', (port) => `postgres://${USER}@127.0.0.1:${port}/kw?pass%77ord=${FAKE_PG_PASSWORD}`],
    // found in review: a user name holding `@` (Azure's user@server form) hid the password from a regex
    ['after a user name that holds @', (port) => `postgres://${USER}@myserver:${FAKE_PG_PASSWORD}@127.0.0.1:${port}/kw`],
  ];
  for (const [name, url] of cases) {
    it(`is refused at validation (exit 2) ${name}, without echoing it or connecting`, async () => {
      const server = await fake('cleartext');
      const config = writeConfig(url(server.port), `file:${passwordFile}`);
      for (const command of ['doctor', 'serve']) {
        const result = await keywarden([command, '--config', config]);
        assert.equal(result.code, 2, `${command} exit status\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
        assert.match(result.stderr, /store: must not carry a password; set store_password to a secret reference/);
        assertNoLeaks(result, secretsOf(FAKE_PG_PASSWORD));
      }
      assert.equal(server.attempts.length, 0, 'a connection was opened with a refused configuration');
    });
  }
});
