import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTRACT_MODELS, CONTRACT_POLICY, FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { cliEnv, freePort, runCli } from './helpers/cli-process.js';
import { writeCliConfig } from './helpers/provider-keys-setup.js';

// Plainly fake: unlocks nothing, anywhere. TEST-ONLY.
const FAKE_WRONG_ADMIN_TOKEN = 'fake-WRONG-admin-token-TEST-ONLY-1111111111'; // fake, TEST ONLY
const ADMIN_TOKEN_PATTERN = /^kwa_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/;
const TENANT_KEY_PATTERN = /^kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/;

let h: Harness;
let dir: string;
let localConfig: string;
let tokenFile: string;
let openTokenFile: string;

/** The CLI with only the given environment (plus a scratch data dir, so no demo store is touched). */
const cli = (extra: Record<string, string>, ...args: string[]) =>
  runCli(args, { cwd: dir, env: cliEnv({ KEYWARDEN_DATA_DIR: join(dir, 'data'), ...extra }) });
/** The CLI against the harness's admin API with the bootstrap admin token from the environment. */
const remote = (...args: string[]) => cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', h.adminUrl, ...args);
/** The CLI on the harness's store directly (another process sharing the SQLite file). */
const local = (...args: string[]) => cli({}, '--config', localConfig, ...args);
const lastLine = (text: string) => text.trimEnd().split('\n').at(-1) ?? '';

async function chat(key: string, content = 'hello') {
  const res = await fetch(`${h.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code ?? null };
}

async function adminGet(path: string, token: string) {
  const res = await fetch(`${h.adminUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

before(async () => {
  h = await startHarness();
  dir = mkdtempSync(join(tmpdir(), 'keywarden-cli-remote-'));
  tokenFile = join(dir, 'admin-token');
  writeFileSync(tokenFile, `${FAKE_ADMIN_TOKEN}\n`);
  chmodSync(tokenFile, 0o600);
  openTokenFile = join(dir, 'admin-token-readable');
  writeFileSync(openTokenFile, `${FAKE_ADMIN_TOKEN}\n`);
  chmodSync(openTokenFile, 0o644);
  // the harness gateway's store, for local commands from another process (as an operator on the host)
  localConfig = writeCliConfig(h, {
    models: CONTRACT_MODELS,
    tenants: { defaults: { policy: CONTRACT_POLICY } },
  });
});

after(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tenant management through the admin API', () => {
  it('creates a tenant and issues a key remotely; the running gateway serves it at once', async () => {
    const created = await remote('tenants', 'create', 'remote-co');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created tenant remote-co/);

    const listed = await remote('tenants', 'list', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as Array<{ name: string }>).some((t) => t.name === 'remote-co'));

    const issued = await remote('keys', 'issue', '--tenant', 'remote-co', '--expires', '30d', '--label', 'ci');
    assert.equal(issued.code, 0, issued.stderr);
    const key = lastLine(issued.stdout);
    assert.match(key, TENANT_KEY_PATTERN);
    assert.match(issued.stderr, /expires 20\d\d-/);
    assert.equal((await chat(key)).status, 200);

    const keys = await remote('keys', 'list', '--tenant', 'remote-co', '--json');
    const rows = JSON.parse(keys.stdout) as Array<{ label: string; tenant: string }>;
    assert.deepEqual(rows.map((r) => [r.tenant, r.label]), [['remote-co', 'ci']]);
    assert.doesNotMatch(keys.stdout, /kw_[a-z0-9]{16}_/, 'a key list never shows a secret');
  });

  it('a tenant disabled remotely is refused by the gateway on the very next request', async () => {
    const { key } = await h.tenantKey('soon-disabled');
    assert.equal((await chat(key)).status, 200);
    const disabled = await remote('tenants', 'disable', 'soon-disabled');
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /now disabled/);
    assert.deepEqual(await chat(key), { status: 401, code: 'auth_tenant_disabled' });

    const enabled = await remote('tenants', 'enable', 'soon-disabled');
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal((await chat(key)).status, 200);
  });

  it('sets tenant and key limits and revokes a key remotely', async () => {
    const { key, id } = await h.tenantKey('limited-co');
    const limits = await remote('tenants', 'set-limits', 'limited-co', '--rpm', '100', '--json');
    assert.equal(limits.code, 0, limits.stderr);
    assert.deepEqual((JSON.parse(limits.stdout) as { policy: { limits: unknown } }).policy.limits, { requests_per_minute: 100 });
    const keyLimits = await remote('keys', 'set-limits', id, '--tpm', '5000', '--json');
    assert.equal(keyLimits.code, 0, keyLimits.stderr);
    assert.deepEqual((JSON.parse(keyLimits.stdout) as { limits: unknown }).limits, { tokens_per_minute: 5000 });
    const revoked = await remote('keys', 'revoke', id);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.deepEqual(await chat(key), { status: 401, code: 'auth_key_revoked' });
  });

  it('reports a service error with the API message and code, exit 1', async () => {
    const res = await remote('tenants', 'disable', 'no-such-tenant');
    assert.equal(res.code, 1);
    assert.match(res.stderr, /no tenant named "no-such-tenant".*\(admin_not_found\)/);
    const dup = await remote('tenants', 'create', 'acme');
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /admin_conflict/);
  });
});

describe('admin token handling on the command line', () => {
  it('reads the token from a 0600 file', async () => {
    const res = await cli({}, '--admin-url', h.adminUrl, '--admin-token-file', tokenFile, 'tenants', 'list');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^NAME\s+ID/);
    assert.match(res.stdout, /\bacme\b/);
  });

  it('takes the URL from KEYWARDEN_ADMIN_URL', async () => {
    const res = await cli({ KEYWARDEN_ADMIN_URL: h.adminUrl, KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, 'tenants', 'list', '--json');
    assert.equal(res.code, 0, res.stderr);
    assert.ok((JSON.parse(res.stdout) as Array<{ name: string }>).some((t) => t.name === 'acme'));
  });

  it('refuses a token file other users can read, before sending anything', async () => {
    const res = await cli({}, '--admin-url', h.adminUrl, '--admin-token-file', openTokenFile, 'tenants', 'list');
    assert.equal(res.code, 2);
    assert.match(res.stderr, /readable by other users \(chmod 600 it\)/);
    assert.ok(!res.stderr.includes(FAKE_ADMIN_TOKEN) && !res.stdout.includes(FAKE_ADMIN_TOKEN));
  });

  it('a wrong token exits 1 with the API code and never echoes the token', async () => {
    const res = await cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_WRONG_ADMIN_TOKEN }, '--admin-url', h.adminUrl, 'tenants', 'list');
    assert.equal(res.code, 1);
    assert.match(res.stderr, /admin_unauthorized/);
    assert.ok(!res.stderr.includes(FAKE_WRONG_ADMIN_TOKEN) && !res.stdout.includes(FAKE_WRONG_ADMIN_TOKEN));
  });

  it('refuses to send a token over plain http to a host that is not loopback', async () => {
    const res = await cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', 'http://gateway.example:8081', 'tenants', 'list');
    assert.equal(res.code, 2);
    assert.match(res.stderr, /refusing to send the admin token in clear to gateway\.example:8081: use https:\/\//);
    assert.ok(!res.stderr.includes(FAKE_ADMIN_TOKEN));
  });

  it('without a token, or with --config as well, is a usage error', async () => {
    const [noToken, both, localOnly, twoTenants] = await Promise.all([
      cli({}, '--admin-url', h.adminUrl, 'tenants', 'list'),
      cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', h.adminUrl, '--config', localConfig, 'tenants', 'list'),
      cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', h.adminUrl, 'offboard', '--owner', 'someone', '--dry-run'),
      remote('keys', 'list', '--tenant', 'acme', '--tenant', 'remote-co'),
    ]);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /KEYWARDEN_ADMIN_TOKEN or give --admin-token-file/);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /either --config .* or --admin-url/);
    assert.equal(localOnly.code, 2);
    assert.match(localOnly.stderr, /"offboard" works on the store only/);
    assert.equal(twoTenants.code, 2);
    assert.match(twoTenants.stderr, /takes one --tenant/);
  });

  it('names the URL when nothing listens there', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const res = await cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', url, 'tenants', 'list');
    assert.equal(res.code, 1);
    assert.ok(res.stderr.includes(`cannot reach the admin API at ${url}: connection refused`), res.stderr);
  });
});

describe('incidents through the admin API', () => {
  it('contains a tenant key remotely, lists the incident and prints its report', async () => {
    const { key, id } = await h.tenantKey('leaky-co');
    assert.equal((await chat(key)).status, 200);
    const contained = await remote('incident', 'contain', '--tenant-key', id, '--json');
    assert.equal(contained.code, 0, contained.stderr);
    const incident = JSON.parse(contained.stdout) as { id: string; kind: string };
    assert.equal(incident.kind, 'tenant_key');
    assert.deepEqual(await chat(key), { status: 401, code: 'auth_key_revoked' });

    const list = await remote('incident', 'list');
    assert.match(list.stdout, new RegExp(`^${incident.id}\\s`, 'm'));
    await h.gateway.writer.flush();
    const investigated = await remote('incident', 'investigate', incident.id, '--since', '1h', '--json');
    assert.equal(investigated.code, 0, investigated.stderr);
    assert.equal((JSON.parse(investigated.stdout) as { requests: { total: number } }).requests.total, 1);
    const report = await remote('incident', 'report', incident.id);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, new RegExp(`^# Postmortem draft: incident ${incident.id}`));
  });

  it('keeps the drill local', async () => {
    const res = await remote('drill');
    assert.equal(res.code, 2);
    assert.match(res.stderr, /"drill" works on the store only/);
  });
});

describe('keywarden admin-tokens on the store', () => {
  it('issues (shown once), lists and revokes a token; the gateway verifies it', async () => {
    const issued = await local('admin-tokens', 'issue', '--owner', 'ci-bot', '--role', 'viewer', '--tenant', 'acme', '--expires', '90d');
    assert.equal(issued.code, 0, issued.stderr);
    const token = lastLine(issued.stdout);
    assert.match(token, ADMIN_TOKEN_PATTERN);
    assert.match(issued.stderr, /issued admin token [a-z0-9]{16} \(viewer\) for ci-bot, tenants acme, expires /);
    const id = token.split('_')[1] as string;

    const listed = await local('admin-tokens', 'list', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    const row = (JSON.parse(listed.stdout) as Array<Record<string, unknown>>).find((t) => t['id'] === id);
    assert.deepEqual({ ...row, created_at: undefined, expires_at: undefined }, {
      id, owner: 'ci-bot', role: 'viewer', tenants: ['acme'], status: 'active', revoked_at: null, created_at: undefined, expires_at: undefined,
    });
    assert.ok(!listed.stdout.includes(token.slice(21)), 'a list never shows a secret');

    // issued on the store, verified by the running gateway: a viewer scoped to acme sees acme only
    const asScoped = (...args: string[]) => cli({ KEYWARDEN_ADMIN_TOKEN: token }, '--admin-url', h.adminUrl, ...args);
    const seen = await asScoped('tenants', 'list', '--json');
    assert.equal(seen.code, 0, seen.stderr);
    assert.deepEqual((JSON.parse(seen.stdout) as Array<{ name: string }>).map((t) => t.name), ['acme']);

    const revoked = await local('admin-tokens', 'revoke', id);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`admin token ${id} \\(ci-bot\\) revoked`));
    const after = await local('admin-tokens', 'list');
    assert.match(after.stdout, new RegExp(`^${id}\\s+ci-bot\\s+viewer\\s+acme\\s+revoked`, 'm'));
    const refused = await asScoped('tenants', 'list');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /admin_unauthorized/);
  });

  it('refuses a bad role or a missing owner', async () => {
    const [badRole, noOwner] = await Promise.all([
      local('admin-tokens', 'issue', '--owner', 'x', '--role', 'root'),
      local('admin-tokens', 'issue', '--role', 'admin'),
    ]);
    assert.equal(badRole.code, 1);
    assert.match(badRole.stderr, /role must be one of viewer, operator, admin/);
    assert.equal(noOwner.code, 2);
    assert.match(noOwner.stderr, /admin-tokens issue --owner NAME/);
  });
});

describe('roles through the admin API (needs the role-based admin routes)', () => {
  it('issues a viewer token remotely: it can list tenants but not create one; revoked, it is refused', async () => {
    const issued = await remote('admin-tokens', 'issue', '--owner', 'dashboard', '--role', 'viewer', '--json');
    assert.equal(issued.code, 0, issued.stderr);
    const view = JSON.parse(issued.stdout) as { id: string; token: string; role: string; tenants: unknown };
    assert.match(view.token, ADMIN_TOKEN_PATTERN);
    assert.equal(view.role, 'viewer');
    assert.equal(view.tenants, null);

    const asViewer = (...args: string[]) => cli({ KEYWARDEN_ADMIN_TOKEN: view.token }, '--admin-url', h.adminUrl, ...args);
    const listed = await asViewer('tenants', 'list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /\bacme\b/);
    const refused = await asViewer('tenants', 'create', 'viewer-made');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /\(admin_forbidden\)/);
    assert.ok(!refused.stderr.includes(view.token));
    assert.equal((await adminGet('/admin/tenants/viewer-made', FAKE_ADMIN_TOKEN)).status, 404, 'the viewer created nothing');

    const tokens = await remote('admin-tokens', 'list', '--json');
    assert.ok((JSON.parse(tokens.stdout) as Array<{ id: string }>).some((t) => t.id === view.id));
    const revoked = await remote('admin-tokens', 'revoke', view.id);
    assert.equal(revoked.code, 0, revoked.stderr);
    const after = await asViewer('tenants', 'list');
    assert.equal(after.code, 1);
    assert.match(after.stderr, /admin_unauthorized/);
  });

  it('shows usage per tenant and model with the error count, remotely and from the store', async () => {
    const { key } = await h.tenantKey('metered-co');
    for (let i = 0; i < 2; i++) assert.equal((await chat(key)).status, 200);
    // a real failed request: the mock provider answers 500, the gateway 502, the ledger records an upstream error
    const failed = await chat(key, 'fail [[mock:status=500]]');
    assert.equal(failed.status, 502);
    await h.gateway.writer.flush();
    for (const run of [remote, local]) {
      const res = await run('usage', '--tenant', 'metered-co', '--since', '1h', '--json');
      assert.equal(res.code, 0, res.stderr);
      const report = JSON.parse(res.stdout) as { data: Array<{ tenant: string; model: string; requests: number; errors: number; input_tokens: number }> };
      assert.equal(report.data.length, 1);
      assert.equal(report.data[0]?.tenant, 'metered-co');
      assert.equal(report.data[0]?.requests, 3);
      assert.equal(report.data[0]?.errors, 1);
      assert.ok((report.data[0]?.input_tokens ?? 0) > 0);

      const table = await run('usage', '--tenant', 'metered-co', '--since', '1h');
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^TENANT\s+MODEL\s+REQUESTS\s+ERRORS\s+INPUT_TOKENS\s+OUTPUT_TOKENS\s+COST_USD$/m);
      // 3 requests, 1 of them an error, then the token counts
      assert.match(table.stdout, /^metered-co\s+gpt-4o-mini\s+3\s+1\s+\d+\s+\d+\s+\d+\.\d{6}$/m);
    }
  });
});

describe('the remote CLI against an admin API that misbehaves', () => {
  let server: Server;
  let url = '';
  let scratch = '';
  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'keywarden-cli-hostile-'));
    server = createServer((req, res) => {
      req.resume();
      if (req.url?.startsWith('/admin/tenants')) {
        // a chunked answer that never ends: no content-length to refuse it by
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(65_536, 0x20);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
        return;
      }
      // an error whose message would drive the terminal: escape sequences and a bell
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'denied \u001b[2J\u001b]0;pwned\u0007 here', code: 'admin_forbidden' } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(scratch, { recursive: true, force: true });
  });
  const hostile = (...args: string[]) =>
    runCli(['--admin-url', url, ...args], { cwd: scratch, env: cliEnv({ KEYWARDEN_DATA_DIR: join(scratch, 'data'), KEYWARDEN_ADMIN_TOKEN: FAKE_WRONG_ADMIN_TOKEN }) });

  it('stops reading a chunked answer past its size limit instead of filling memory', async () => {
    const res = await hostile('tenants', 'list');
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /too large to read/);
  });

  it('prints a server message without its control characters', async () => {
    const res = await hostile('usage');
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /denied/);
    assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(res.stderr.replace(/\n/g, '')), JSON.stringify(res.stderr));
    assert.ok(!res.stderr.includes(FAKE_WRONG_ADMIN_TOKEN));
  });
});
