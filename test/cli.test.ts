import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { CONTRACT_MODELS, CONTRACT_POLICY } from './helpers/harness.js';
import { contractConfigYaml } from './helpers/config-contract.js';
import { cliEnv, freePort, jsonLines, runCli, startCli, type CliProcess } from './helpers/cli-process.js';

// Plainly fake secrets: they unlock nothing, anywhere.
const FAKE_PROVIDER_KEY = 'sk-fake-TEST-ONLY-cli-provider-key-000000000000'; // fake, TEST ONLY
const FAKE_WRONG_PROVIDER_KEY = 'sk-fake-TEST-ONLY-cli-WRONG-key-9999999999999'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-cli-00000000000'; // fake, TEST ONLY
const FAKE_HMAC_KEY = 'fake-prompt-hmac-TEST-ONLY-cli-0000000000'; // fake, TEST ONLY
const FAKE_LITERAL_KEY = 'sk-fake-TEST-ONLY-pasted-literal-abcdef123456'; // fake, TEST ONLY

const KEY_PATTERN = /^kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/;
const ANY_FULL_KEY = /kw_[a-z0-9]{16}_[A-Za-z0-9_-]{8,}/;
const secretOf = (key: string) => key.slice(key.indexOf('_', 3) + 1);

let dir: string;
let dataDir: string;
let mock: MockProvider;
let gatewayConfig: string;
let dbPath: string;
let serveConfig: string;
let serveDbPath: string;
let env: NodeJS.ProcessEnv;

function secretFile(name: string, value: string): string {
  const path = join(dir, 'secrets', name);
  writeFileSync(path, `${value}\n`);
  chmodSync(path, 0o600);
  return `file:${path}`;
}

/** A gateway configuration (JSON is YAML) with both providers pointed at the mock. */
function writeGatewayConfig(name: string, providerKeyRef: string, ports: { public: number; admin: number }, store = dbPath): string {
  const doc = {
    listen: { public: `127.0.0.1:${ports.public}`, admin: `127.0.0.1:${ports.admin}` },
    store: `sqlite:${store}`,
    admin: { token: 'env:KW_CLI_ADMIN_TOKEN' },
    audit: { prompt_hmac_key: secretFile('prompt-hmac-key', FAKE_HMAC_KEY) },
    log: { level: 'info' },
    providers: {
      openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: providerKeyRef, timeout: '5s' },
      anthropic: { type: 'anthropic', base_url: mock.url, api_key: providerKeyRef, timeout: '5s' },
    },
    models: CONTRACT_MODELS,
    tenants: { defaults: { policy: CONTRACT_POLICY } },
    shutdown: { drain_timeout: '10s' },
  };
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

const cli = (...args: string[]) => runCli(args, { cwd: dir, env });
const cliWith = (extra: Record<string, string>, ...args: string[]) => runCli(args, { cwd: dir, env: cliEnv({ KEYWARDEN_DATA_DIR: dataDir, ...extra }) });

async function chat(url: string, key: string, content = 'hello') {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  return { status: res.status, requestId: res.headers.get('x-request-id'), json: (await res.json()) as any };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keywarden-cli-'));
  dataDir = join(dir, 'data');
  mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
  dbPath = join(dir, 'gateway', 'keywarden.db');
  mock = await createMockProvider({ port: 0, apiKey: FAKE_PROVIDER_KEY });
  env = cliEnv({ KEYWARDEN_DATA_DIR: dataDir, KW_CLI_ADMIN_TOKEN: FAKE_ADMIN_TOKEN });
  serveDbPath = join(dir, 'served', 'keywarden.db');
  const providerKey = secretFile('provider-key', FAKE_PROVIDER_KEY);
  // store commands (never served), and a gateway served while the CLI works on its store
  gatewayConfig = writeGatewayConfig('gateway.yaml', providerKey, { public: 0, admin: 0 });
  serveConfig = writeGatewayConfig('serve.yaml', providerKey, { public: await freePort(), admin: await freePort() }, serveDbPath);
  // create both stores up front: several CLI processes below open them at the same moment, and
  // two processes migrating one fresh SQLite file at once can collide (reported separately)
  for (const path of [dbPath, serveDbPath, join(dataDir, 'keywarden.db')]) await openSqliteStore(`sqlite:${path}`).close();
});

after(async () => {
  await mock.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('CLI usage errors', { concurrency: true }, () => {
  it('exits 2 on an unknown command', async () => {
    const res = await cli('frobnicate');
    assert.equal(res.code, 2);
    assert.match(res.stderr, /unknown command "frobnicate"/);
  });

  it('exits 2 on an unknown option', async () => {
    const res = await cli('tenants', 'list', '--frobnicate');
    assert.equal(res.code, 2);
    assert.match(res.stderr, /Unknown option '--frobnicate'/);
  });

  it('exits 2 without a command, and 0 for --help', async () => {
    const [none, help] = await Promise.all([cli(), cli('--help')]);
    assert.equal(none.code, 2);
    assert.match(none.stdout, /^usage: keywarden/);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: keywarden/);
  });

  it('exits 2 on a missing argument or a bad --expires', async () => {
    const [noTenant, badExpiry, doctorWithoutConfig] = await Promise.all([
      cli('keys', 'issue', '--config', gatewayConfig),
      cli('keys', 'issue', '--tenant', 'acme', '--expires', 'whenever', '--config', gatewayConfig),
      cli('doctor'),
    ]);
    assert.equal(noTenant.code, 2);
    assert.match(noTenant.stderr, /keys issue --tenant NAME/);
    assert.equal(badExpiry.code, 2);
    assert.match(badExpiry.stderr, /--expires must be a duration/);
    assert.doesNotMatch(badExpiry.stdout, /kw_/);
    assert.equal(doctorWithoutConfig.code, 2);
  });

  it('`serve --config BAD` exits 2 listing every problem on stderr, without echoing a literal key', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, [
      'listen:',
      '  public: 127.0.0.1:99999',
      'admin:',
      `  token: ${FAKE_LITERAL_KEY}`,
      'audit:',
      '  prompt_hmac_key: env:KW_CLI_HMAC',
      'providers:',
      '  openai:',
      '    type: openai',
      '    base_url: http://api.openai.com/v1',
      '    api_key: env:KW_CLI_OPENAI',
      '    timeout: a while',
      '    colour: blue',
      '',
    ].join('\n'));
    const res = await cli('serve', '--config', bad);
    assert.equal(res.code, 2);
    for (const problem of ['listen.public:', 'admin.token: must be a secret reference', 'providers.openai.base_url: must be an https URL',
      'providers.openai.timeout: must be a duration', 'providers.openai.colour: unknown field']) {
      assert.ok(res.stderr.includes(problem), `stderr lacks "${problem}":\n${res.stderr}`);
    }
    assert.ok(!res.stderr.includes(FAKE_LITERAL_KEY) && !res.stdout.includes(FAKE_LITERAL_KEY));
    assert.ok(!res.stderr.includes('sk-fake'));
    assert.doesNotMatch(res.stdout, /listening/);
    assert.doesNotMatch(res.stderr, /\n\s+at /, 'a stack trace was printed');
  });

  it('`serve` refuses to start when a secret cannot be loaded, naming the reference (exit 1)', async () => {
    const res = await runCli(['serve', '--config', gatewayConfig], { cwd: dir, env: cliEnv({ KEYWARDEN_DATA_DIR: dataDir }) });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /env:KW_CLI_ADMIN_TOKEN: environment variable is not set or empty/);
    assert.doesNotMatch(res.stdout, /keywarden listening/);
  });
});

describe('keywarden doctor', { concurrency: true }, () => {
  let contractPath: string;
  const contractEnv = {
    KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN,
    KEYWARDEN_PROMPT_HMAC_KEY: FAKE_HMAC_KEY,
    OPENAI_API_KEY: FAKE_PROVIDER_KEY,
  };
  before(() => {
    const anthropic = secretFile('anthropic', FAKE_WRONG_PROVIDER_KEY);
    contractPath = join(dir, 'contract.yaml');
    writeFileSync(contractPath, contractConfigYaml(anthropic.slice('file:'.length)));
  });

  function assertNoSecrets(output: string): void {
    for (const value of [FAKE_ADMIN_TOKEN, FAKE_HMAC_KEY, FAKE_PROVIDER_KEY, FAKE_WRONG_PROVIDER_KEY]) {
      assert.ok(!output.includes(value), 'doctor printed a secret value');
    }
    assert.doesNotMatch(output, /sk-/);
  }

  it('passes on the contract configuration, listing each secret as ok (exit 0)', async () => {
    const res = await cliWith(contractEnv, 'doctor', '--config', contractPath);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    for (const path of ['admin.token', 'audit.prompt_hmac_key', 'providers.openai.api_key', 'providers.anthropic.api_key']) {
      assert.match(res.stdout, new RegExp(`^ok +${path.replaceAll('.', '\\.')} \\((env|file), version `, 'm'), `no ok line for ${path}`);
    }
    assert.match(res.stdout, /^ok +store sqlite:\.\/data\/keywarden\.db$/m);
    assert.match(res.stdout, /all checks passed/);
    assertNoSecrets(res.stdout + res.stderr);
  });

  it('fails naming a missing env secret (exit 1)', async () => {
    const { OPENAI_API_KEY: _omitted, ...partial } = contractEnv;
    const res = await cliWith(partial, 'doctor', '--config', contractPath);
    assert.equal(res.code, 1);
    assert.match(res.stdout, /^FAIL +providers\.openai\.api_key: env:OPENAI_API_KEY: environment variable is not set or empty \[not_found\]$/m);
    assert.match(res.stdout, /^ok +admin\.token/m, 'the other checks still ran');
    assert.match(res.stdout, /1 check\(s\) failed/);
    assertNoSecrets(res.stdout + res.stderr);
  });

  it('--online passes when the provider accepts the key', async () => {
    const res = await cli('doctor', '--online', '--config', gatewayConfig);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /^ok +providers\.openai: key accepted by http:\/\/127\.0\.0\.1:\d+$/m);
    assert.match(res.stdout, /^ok +providers\.anthropic: key accepted by/m);
    assertNoSecrets(res.stdout + res.stderr);
  });

  it('--online fails when the provider rejects the key, without printing it', async () => {
    const wrongConfig = writeGatewayConfig('gateway-wrong-key.yaml', secretFile('wrong-provider-key', FAKE_WRONG_PROVIDER_KEY), { public: 0, admin: 0 });
    const res = await cli('doctor', '--online', '--config', wrongConfig);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stdout, /^FAIL +providers\.openai: .*\(HTTP 401\)$/m);
    assert.match(res.stdout, /^FAIL +providers\.anthropic: .*\(HTTP 401\)$/m);
    assert.match(res.stdout, /^ok +providers\.openai\.api_key/m, 'the reference itself loaded');
    assertNoSecrets(res.stdout + res.stderr);
  });
});

describe('keywarden tenants and keys', () => {
  const keys: string[] = [];
  let revokedId = '';

  it('creates a tenant', async () => {
    const res = await cli('tenants', 'create', 'acme', '--config', gatewayConfig);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^created tenant acme \(t_[0-9a-f]{16}\)$/m);
  });

  it('refuses a duplicate tenant (exit 1)', async () => {
    const dup = await cli('tenants', 'create', 'acme', '--config', gatewayConfig);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /already exists/);
  });

  it('lists tenants as a table and as JSON', async () => {
    const [table, json] = await Promise.all([
      cli('tenants', 'list', '--config', gatewayConfig),
      cli('tenants', 'list', '--json', '--config', gatewayConfig),
    ]);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^NAME +ID +STATUS +CREATED_AT$/m);
    assert.match(table.stdout, /^acme +t_[0-9a-f]{16} +active /m);
    assert.equal(json.code, 0);
    const list = JSON.parse(json.stdout) as Array<{ name: string; status: string; id: string }>;
    assert.deepEqual(list.map((t) => [t.name, t.status]), [['acme', 'active']]);
  });

  it('issues a key, printed as the last line of stdout', async () => {
    const res = await cli('keys', 'issue', '--tenant', 'acme', '--config', gatewayConfig);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trimEnd().split('\n');
    const key = lines[lines.length - 1] as string;
    assert.match(key, KEY_PATTERN);
    assert.match(res.stderr, /issued key [a-z0-9]{16} for tenant acme/);
    assert.ok(!res.stderr.includes(secretOf(key)), 'the key went to stderr too');
    keys.push(key);
  });

  it('issues a key as JSON with `key`, and --expires 30d sets expires_at about 30 days ahead', async () => {
    const before = Date.now();
    const res = await cli('keys', 'issue', '--tenant', 'acme', '--expires', '30d', '--label', 'nightly', '--json', '--config', gatewayConfig);
    const afterMs = Date.now();
    assert.equal(res.code, 0, res.stderr);
    const issued = JSON.parse(res.stdout) as { key: string; id: string; expires_at: string; label: string; tenant: string };
    assert.match(issued.key, KEY_PATTERN);
    assert.equal(issued.key.split('_')[1], issued.id);
    assert.equal(issued.label, 'nightly');
    assert.equal(issued.tenant, 'acme');
    const thirtyDays = 30 * 86_400_000;
    const expires = Date.parse(issued.expires_at);
    assert.ok(expires >= before + thirtyDays && expires <= afterMs + thirtyDays, `expires_at ${issued.expires_at}`);
    keys.push(issued.key);
    revokedId = issued.id;
  });

  it('lists keys without any secret, full key or hash', async () => {
    const [table, json] = await Promise.all([
      cli('keys', 'list', '--config', gatewayConfig),
      cli('keys', 'list', '--tenant', 'acme', '--json', '--config', gatewayConfig),
    ]);
    assert.equal(table.code, 0);
    assert.equal(json.code, 0);
    assert.match(table.stdout, /^ID +TENANT +STATUS +LABEL +CREATED_AT +EXPIRES_AT$/m);
    const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => !('key' in r) && !('secretHash' in r) && !('secret_hash' in r)));
    for (const output of [table.stdout + table.stderr, json.stdout + json.stderr]) {
      assert.doesNotMatch(output, ANY_FULL_KEY);
      assert.doesNotMatch(output, /[0-9a-f]{64}/, 'a hash was listed');
      for (const key of keys) assert.ok(!output.includes(secretOf(key)), 'a key secret was listed');
      assert.ok(output.includes(revokedId));
    }
  });

  it('revokes a key by id', async () => {
    const [res, unknown] = await Promise.all([
      cli('keys', 'revoke', revokedId, '--config', gatewayConfig),
      cli('keys', 'revoke', 'zzzzzzzzzzzzzzzz', '--config', gatewayConfig),
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.trim(), `key ${revokedId} revoked`);
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      const row = await store.keys.get(revokedId);
      assert.ok(row?.revokedAt, 'the key is not revoked in the store');
      const other = await store.keys.get((keys[0] as string).split('_')[1] as string);
      assert.equal(other?.revokedAt, null, 'another key was revoked too');
    } finally {
      await store.close();
    }
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no key with this id/);
  });

  it('disables a tenant', async () => {
    const res = await cli('tenants', 'disable', 'acme', '--config', gatewayConfig);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.trim(), 'tenant acme is now disabled');
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      assert.equal((await store.tenants.getByName('acme'))?.status, 'disabled');
    } finally {
      await store.close();
    }
  });

  it('audits each change as actor cli, with ids and never a key', async () => {
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      const rows = await store.records.listAudit({ limit: 1000 });
      const cliRows = rows.filter((r) => r.actor === 'cli');
      assert.deepEqual(cliRows.map((r) => r.action), ['tenant.create', 'key.issue', 'key.issue', 'key.revoke', 'tenant.disable']);
      assert.equal(cliRows[3]?.target, revokedId);
      const text = JSON.stringify(rows);
      for (const key of keys) assert.ok(!text.includes(secretOf(key)));
      assert.doesNotMatch(text, ANY_FULL_KEY);
    } finally {
      await store.close();
    }
  });
});

describe('a gateway run by `keywarden serve --config`', () => {
  let server: CliProcess;
  let publicUrl: string;
  const issued: Array<{ key: string; id: string }> = [];
const chatCalls = () => mock.received.filter((r) => r.path === '/v1/chat/completions');

  before(async () => {
    server = startCli(['serve', '--config', serveConfig], { cwd: dir, env });
    const [line] = await server.waitForStdout(/^.*"keywarden listening".*$/m, 20_000);
    const entry = JSON.parse(line) as { publicUrl: string; adminUrl: string };
    publicUrl = entry.publicUrl;
    assert.match(publicUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    const created = await cli('tenants', 'create', 'umbrella', '--config', serveConfig);
    assert.equal(created.code, 0, created.stderr);
    // issued by the CLI after the server started, so the server has never seen them
    issued.push(...(await Promise.all([issue(), issue(), issue()])));
  });

  after(async () => {
    await server.stop('SIGKILL');
  });

  async function issue(): Promise<{ key: string; id: string }> {
    const res = await cli('keys', 'issue', '--tenant', 'umbrella', '--json', '--config', serveConfig);
    assert.equal(res.code, 0, res.stderr);
    const { key, id } = JSON.parse(res.stdout) as { key: string; id: string };
    return { key, id };
  }

  it('accepts a key issued by the CLI while it runs', async () => {
    const { key } = issued[0]!;
    mock.reset();
    const res = await chat(publicUrl, key);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.object, 'chat.completion');
    assert.equal(chatCalls().length, 1);
    assert.equal(chatCalls()[0]?.headers['authorization'], `Bearer ${FAKE_PROVIDER_KEY}`);
  });

  it('refuses at once a key the CLI revoked while it runs (auth_key_revoked)', async () => {
    const { key, id } = issued[1]!;
    assert.equal((await chat(publicUrl, key)).status, 200);
    const revoked = await cli('keys', 'revoke', id, '--config', serveConfig);
    assert.equal(revoked.code, 0, revoked.stderr);
    mock.reset();
    const res = await chat(publicUrl, key);
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_key_revoked');
    assert.equal(chatCalls().length, 0);
  });

  it('refuses at once the keys of a tenant the CLI disabled while it runs (auth_tenant_disabled)', async () => {
    const { key } = issued[2]!;
    assert.equal((await chat(publicUrl, key)).status, 200);
    assert.equal((await cli('tenants', 'disable', 'umbrella', '--config', serveConfig)).code, 0);
    mock.reset();
    const res = await chat(publicUrl, key);
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_tenant_disabled');
    assert.equal(chatCalls().length, 0);
    assert.equal((await cli('tenants', 'enable', 'umbrella', '--config', serveConfig)).code, 0);
    assert.equal((await chat(publicUrl, key)).status, 200);
  });

  it('on SIGTERM finishes the requests in flight, records them and exits 0', async () => {
    const { key } = issued[0]!;
    mock.reset();
    const pending = chat(publicUrl, key, '[[mock:delay=500]] finish me before you go');
    // wait until the request is at the upstream, so it is truly in flight
    const deadline = Date.now() + 5000;
    while (!mock.received.some((r) => JSON.stringify(r.body).includes('finish me')) && Date.now() < deadline) await sleep(10);
    assert.equal(chatCalls().length, 1, 'the request did not reach the upstream');
    assert.ok(server.child.kill('SIGTERM'));
    const res = await pending;
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.object, 'chat.completion');
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(server.stdout(), /shutting down: draining in-flight requests/);
    // the drain ended when the request did, not at the drain timeout (idle keep-alive connections are closed)
    assert.doesNotMatch(server.stdout(), /drain timeout reached/);
    await assert.rejects(fetch(`${publicUrl}/healthz`), 'the listener is still open after exit');

    const store = openSqliteStore(`sqlite:${serveDbPath}`);
    try {
      const usage = await store.records.listUsage({ limit: 1000 });
      const row = usage.find((u) => u.requestId === res.requestId);
      assert.ok(row, 'the in-flight request has no ledger row');
      assert.equal(row.status, 200);
      assert.equal(row.outcome, 'success');
      const audit = await store.records.listAudit({ limit: 1000 });
      assert.ok(audit.some((a) => a.requestId === res.requestId && a.action === 'request'), 'the in-flight request has no audit row');
    } finally {
      await store.close();
    }
    // nothing the process wrote contains a tenant key, the provider key or the admin token
    const output = server.stdout() + server.stderr();
    assert.doesNotMatch(output, ANY_FULL_KEY);
    assert.ok(!output.includes(FAKE_PROVIDER_KEY) && !output.includes(FAKE_ADMIN_TOKEN) && !output.includes(FAKE_HMAC_KEY));
  });
});

describe('demo mode: `keywarden serve` without a configuration', () => {
  let demo: CliProcess;
  let demoData: string;
  let publicPort: number;
  let adminPort: number;
  let curlLine: string;

  before(async () => {
    demoData = join(dir, 'demo-data');
    const cwd = join(dir, 'demo-cwd');
    mkdirSync(cwd);
    publicPort = await freePort();
    adminPort = await freePort();
    demo = startCli(['serve'], {
      cwd,
      env: cliEnv({
        KEYWARDEN_DATA_DIR: demoData,
        KEYWARDEN_LISTEN_PUBLIC: `127.0.0.1:${publicPort}`,
        KEYWARDEN_LISTEN_ADMIN: `127.0.0.1:${adminPort}`,
      }),
    });
    [curlLine] = await demo.waitForStdout(/^ *curl .*$/m, 20_000);
  });

  after(async () => {
    await demo.stop('SIGKILL');
  });

  /** Splits the printed curl line the way a shell would (it uses single quotes only). */
  function parseCurl(line: string): { url: string; headers: Record<string, string>; body: string } {
    const words = [...line.trim().matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
    assert.equal(words[0], 'curl');
    let url = '';
    let body = '';
    const headers: Record<string, string> = {};
    for (let i = 1; i < words.length; i++) {
      const word = words[i] as string;
      if (word === '-H') {
        const header = words[++i] as string;
        const colon = header.indexOf(':');
        headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
      } else if (word === '-d') body = words[++i] as string;
      else if (word.startsWith('http')) url = word;
    }
    return { url, headers, body };
  }

  it('prints a curl line with a tenant key that returns a chat completion', async () => {
    const { url, headers, body } = parseCurl(curlLine);
    assert.equal(url, `http://127.0.0.1:${publicPort}/v1/chat/completions`);
    assert.match(headers['authorization'] ?? '', /^Bearer kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    const res = await fetch(url, { method: 'POST', headers, body });
    assert.equal(res.status, 200);
    const answer = (await res.json()) as { object: string; choices: Array<{ message: { role: string; content: string } }>; usage: unknown };
    assert.equal(answer.object, 'chat.completion');
    assert.equal(answer.choices[0]?.message.role, 'assistant');
    assert.equal(typeof answer.choices[0]?.message.content, 'string');
    assert.ok(answer.usage);
  });

  it('says in its log that the upstream is the MOCK provider', async () => {
    const [line] = await demo.waitForStdout(/^\{.*MOCK.*$/m);
    const entry = JSON.parse(line) as { level: number; msg: string; upstream: string };
    assert.ok(entry.level >= 40, 'the demo-mode notice is not a warning');
    assert.match(entry.msg, /DEMO MODE/);
    assert.match(entry.upstream, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(demo.stdout(), /DEMO MODE: the upstream is the built-in mock provider/);
  });

  it('names the dashboard, which the admin listener serves there', async () => {
    const match = /dashboard: +(http:\/\/\S+\/dashboard) /.exec(demo.stdout());
    assert.ok(match, demo.stdout());
    const res = await fetch(match[1] as string);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.match(await res.text(), /<title>[^<]*keywarden/i);
  });

  it('generates its secrets as owner-only files under the data directory', () => {
    const secretsDir = join(demoData, 'demo-secrets');
    assert.equal(statSync(secretsDir).mode & 0o777, 0o700);
    const files = readdirSync(secretsDir);
    assert.deepEqual(files.sort(), ['admin-token', 'mock-provider-key', 'prompt-hmac-key']);
    for (const file of files) assert.equal(statSync(join(secretsDir, file)).mode & 0o777, 0o600, `${file} is not 0600`);
    assert.ok(statSync(join(demoData, 'keywarden.db')).isFile(), 'the demo store is not under KEYWARDEN_DATA_DIR');
  });

  it('stops cleanly on SIGTERM, and its log lines never hold the demo key', async () => {
    const exit = await demo.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    const key = (parseCurl(curlLine).headers['authorization'] ?? '').replace(/^Bearer /, '');
    const logs = jsonLines(demo.stdout());
    assert.ok(logs.some((l) => l['msg'] === 'keywarden listening'));
    assert.ok(logs.some((l) => l['msg'] === 'request' && l['status'] === 200), 'the demo request was not logged');
    for (const entry of logs) assert.ok(!JSON.stringify(entry).includes(secretOf(key)), 'a log line holds the demo key');
    assert.equal(demo.stdout().split(key).length - 1, 1, 'the demo key was printed more than once');
  });
});
