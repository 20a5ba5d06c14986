import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { createTestCa, type TestCa } from './helpers/certs.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import { configFromDocument } from '../src/config/load.js';

/*
 * TLS on the admin listener (`listen.admin_tls`), so operators can point `--admin-url https://…`
 * at a gateway on another host. Certificates are made with `openssl` at test time (TEST-ONLY).
 */

let h: Harness;
let dir: string;
let ca: TestCa;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keywarden-admin-tls-'));
  ca = createTestCa(dir, 'ca');
  const server = ca.issue('admin-server', { usage: 'server', commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  chmodSync(server.keyPath, 0o600);
  h = await startHarness({
    config: { listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0', admin_tls: { cert: server.certPath, key: `file:${server.keyPath}` } } },
  });
});
after(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('admin listener over TLS', () => {
  it('serves https and answers a token holder', async () => {
    assert.match(h.adminUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const dispatcher = new Agent({ connect: { ca: ca.cert } });
    const res = await undiciFetch(`${h.adminUrl}/admin/whoami`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` }, dispatcher });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { role: string }).role, 'admin');
    await dispatcher.close();
  });

  it('refuses a client that does not trust the certificate', async () => {
    await assert.rejects(fetch(`${h.adminUrl}/admin/whoami`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` } }));
  });

  it('does not speak plain HTTP, so a token is never read in clear', async () => {
    const port = new URL(h.adminUrl).port;
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/admin/whoami', headers: { authorization: 'Bearer not-a-real-token-TEST-ONLY' } }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', (err) => resolve(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      req.setTimeout(3_000, () => req.destroy(new Error('timeout')));
      req.end();
    });
    // Node's TLS server drops a plain-HTTP hello (or answers 400 without reading it as a request)
    assert.ok(outcome.startsWith('error') || outcome === 'status 400', outcome);
  });

  it('the CLI works against it with --admin-url https://… trusting the CA', async () => {
    const created = await runCli(['tenants', 'create', 'tls-made', '--admin-url', h.adminUrl], {
      cwd: dir, env: cliEnv({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN, NODE_EXTRA_CA_CERTS: ca.certPath, KEYWARDEN_DATA_DIR: join(dir, 'data') }),
    });
    assert.equal(created.code, 0, created.stderr);
    assert.ok(await h.gateway.store.tenants.getByName('tls-made'), 'the running gateway has the tenant');
    // without trusting the CA the CLI refuses to talk (exit 1) and never prints the token
    const untrusted = await runCli(['tenants', 'list', '--admin-url', h.adminUrl], {
      cwd: dir, env: cliEnv({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN, KEYWARDEN_DATA_DIR: join(dir, 'data') }),
    });
    assert.equal(untrusted.code, 1);
    assert.ok(!(untrusted.stdout + untrusted.stderr).includes(FAKE_ADMIN_TOKEN));
  });
});

describe('listen.admin_tls configuration', () => {
  const base = (adminTls: unknown) => ({
    listen: { public: '127.0.0.1:8080', admin: '127.0.0.1:8081', admin_tls: adminTls },
    store: 'sqlite::memory:', admin: { token: 'env:T' }, audit: { prompt_hmac_key: 'env:P' }, providers: {}, models: {},
  });
  const problems = (doc: unknown): string => {
    try {
      configFromDocument(doc, 'test', {});
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('needs cert and key, and refuses client certificates (admins use admin tokens)', () => {
    assert.match(problems(base({ cert: '/x.crt' })), /listen\.admin_tls\.key/);
    assert.match(problems(base({ key: 'file:/x.key' })), /listen\.admin_tls\.cert/);
    assert.match(problems(base({ cert: '/x.crt', key: 'file:/x.key', client_ca: '/ca.pem' })), /listen\.admin_tls\.client_ca/);
    assert.match(problems(base({ cert: '/x.crt', key: '-----BEGIN PRIVATE KEY-----' })), /listen\.admin_tls\.key/);
  });
});
