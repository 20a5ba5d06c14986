import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, constants as fsConstants, copyFileSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTRACT_POLICY, startHarness, type Harness } from './helpers/harness.js';
import { createServerPki, httpsSend, readAnswer, type IssuedCertificate, type TestCa } from './helpers/certs.js';
import { cliEnv, jsonLines, startCli, type CliProcess } from './helpers/cli-process.js';
import { writeCliConfig } from './helpers/provider-keys-setup.js';
import { configFromDocument } from '../src/config/load.js';

/*
 * TLS material reloaded without a restart (`listen.*_tls`, SIGHUP and `reload_interval`): a
 * throwaway CA made with `openssl` at test time (TEST-ONLY keys in a temp dir) revokes client
 * certificates in a new CRL written over the old one; real TLS handshakes over loopback.
 */

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello over a reloaded tls listener' }] };

interface Pki {
  dir: string;
  ca: TestCa;
  server: IssuedCertificate;
  /** The CA's CRL (at first listing nothing), rewritten in place by `ca.crl('ca.crl')`. */
  crlPath: string;
}

function makePki(prefix: string): Pki {
  const { dir, ca, server } = createServerPki(prefix);
  return { dir, ca, server, crlPath: ca.crl('ca.crl') };
}

/** A client certificate named by a SPIFFE id that `mapping` sends to tenant billing. */
function client(pki: Pki, name: string): IssuedCertificate {
  return pki.ca.issue(name, { sanUris: [spiffe(name)] });
}
const spiffe = (name: string) => `spiffe://example.test/sa/${name}`;

function tlsConfig(pki: Pki, names: readonly string[], reloadInterval?: string, adminTls = false): Record<string, unknown> {
  const tls = { cert: pki.server.certPath, key: `file:${pki.server.keyPath}` };
  return {
    listen: {
      public: '127.0.0.1:0', admin: '127.0.0.1:0',
      public_tls: { ...tls, client_ca: pki.ca.certPath, client_auth: 'optional', crl: pki.crlPath, ...(reloadInterval !== undefined ? { reload_interval: reloadInterval } : {}) },
      ...(adminTls ? { admin_tls: { ...tls, reload_interval: '0' } } : {}),
    },
    auth: { client_certificates: { map_by: 'san_uri', tenants: Object.fromEntries(names.map((n) => [spiffe(n), 'billing'])) } },
  };
}

interface Answer { status: number; json: Record<string, any> | undefined; socket: TLSSocket }

/** The chat request (or a GET of `path`) through `agent` (pooled connections, cached TLS sessions). */
function chatVia(agent: HttpsAgent, url: string, path?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = path === undefined ? JSON.stringify(CHAT) : undefined;
    const req = httpsRequest(new URL(path ?? '/v1/chat/completions', url), { method: path === undefined ? 'POST' : 'GET', agent, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      // taken now: a kept-alive socket is handed back to the agent when the response ends
      const socket = res.socket as TLSSocket;
      readAnswer(res, ({ status, json }) => resolve({ status, json, socket }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The SHA-256 fingerprint (lowercase hex) of the certificate a fresh handshake with the listener shows. */
async function servedFingerprint(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL('/healthz', url), { agent: false, ca }, (res) => {
      const socket = res.socket as TLSSocket;
      const fingerprint = socket.getPeerCertificate().fingerprint256.replace(/:/g, '').toLowerCase();
      res.resume();
      res.on('end', () => resolve(fingerprint));
    });
    req.on('error', reject);
    req.end();
  });
}

const events = (h: Harness, event: string) => h.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['event'] === event);

async function metricValue(h: Harness, listener: string, result: string): Promise<number> {
  const text = await h.gateway.metrics.render();
  const match = new RegExp(`^keywarden_tls_reloads_total\\{listener="${listener}",result="${result}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(match, `no keywarden_tls_reloads_total series for ${listener}/${result}`);
  return Number(match[1]);
}

/** Resolves once `socket` has closed; rejects after `ms`. */
function closed(socket: TLSSocket, ms = 3000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the connection was not closed')), ms);
    socket.once('close', () => { clearTimeout(timer); resolve(); });
  });
}

describe('reloading the CRL of the public listener (in process)', () => {
  let pki: Pki;
  let h: Harness;
  const names = ['revoked-later', 'kept-alive', 'resumed', 'steady', 'expired-crl'];
  const certs: Record<string, IssuedCertificate> = {};

  before(async () => {
    pki = makePki('tls-reload');
    for (const name of names) certs[name] = client(pki, name);
    // no periodic check here: each reload is the test's own call
    h = await startHarness({ config: tlsConfig(pki, names, 'off') });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const send = (name: string) => httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: certs[name], body: CHAT });

  it('refuses on a new connection a certificate revoked in a new CRL at the same path once reloaded (auth_cert_revoked)', async () => {
    assert.equal((await send('revoked-later')).status, 200);
    pki.ca.revoke(certs['revoked-later']!);
    assert.equal(pki.ca.crl('ca.crl'), pki.crlPath);
    // the files are read only at a reload: until then the old CRL is in use
    assert.equal((await send('revoked-later')).status, 200);

    const providerCalls = h.mock.received.length;
    const outcomes = await h.gateway.reloadTls();
    assert.deepEqual(outcomes, [{ listener: 'public', result: 'reloaded', changed: ['crl'], problems: [] }]);
    const res = await send('revoked-later');
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    assert.equal(h.mock.received.length, providerCalls, 'the provider must not be called');
    // the other certificates of the CA still pass
    assert.equal((await send('steady')).status, 200);

    const reloaded = events(h, 'tls_reloaded');
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0]?.['listener'], 'public');
    assert.equal(reloaded[0]?.['trigger'], 'call');
    assert.deepEqual(reloaded[0]?.['changed'], ['crl']);
    assert.equal(reloaded[0]?.['cert_fingerprint'], pki.server.fingerprint);
    assert.equal(await metricValue(h, 'public', 'reloaded'), 1);
  });

  it('does not resume a TLS session from before the new CRL: the revoked certificate gets a full handshake and 401', async () => {
    const agent = new HttpsAgent({ keepAlive: false, ca: pki.ca.cert, cert: certs['resumed']!.cert, key: certs['resumed']!.key });
    try {
      assert.equal((await chatVia(agent, h.url)).status, 200);
      const again = await chatVia(agent, h.url);
      assert.equal(again.status, 200);
      // the premise: without a reload, the agent's cached session is resumed (with its old verdict)
      assert.equal(again.socket.isSessionReused(), true, 'the client did not resume its session');

      pki.ca.revoke(certs['resumed']!);
      pki.ca.crl('ca.crl');
      assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
      const res = await chatVia(agent, h.url);
      assert.equal(res.socket.isSessionReused(), false, 'a session from before the reload was resumed');
      assert.equal(res.status, 401);
      assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    } finally {
      agent.destroy();
    }
  });

  it('closes a kept-alive connection verified under the old CRL; the client reconnects and is refused', async () => {
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.ca.cert, cert: certs['kept-alive']!.cert, key: certs['kept-alive']!.key });
    try {
      const first = await chatVia(agent, h.url);
      assert.equal(first.status, 200);
      const reused = await chatVia(agent, h.url);
      assert.equal(reused.socket, first.socket, 'the premise: the connection is kept alive and reused');

      pki.ca.revoke(certs['kept-alive']!);
      pki.ca.crl('ca.crl');
      await h.gateway.reloadTls();
      await closed(first.socket);
      const line = events(h, 'tls_reloaded').at(-1);
      assert.ok(Number(line?.['connections_retired']) >= 1, JSON.stringify(line));

      const res = await chatVia(agent, h.url);
      assert.notEqual(res.socket, first.socket);
      assert.equal(res.status, 401);
      assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    } finally {
      agent.destroy();
    }
  });

  it('reports nothing changed when the files are the same, without re-applying or logging', async () => {
    const before = { lines: h.logs.lines.length, unchanged: await metricValue(h, 'public', 'unchanged') };
    assert.deepEqual(await h.gateway.reloadTls(), [{ listener: 'public', result: 'unchanged', changed: [], problems: [] }]);
    assert.equal(h.logs.lines.length, before.lines, 'an unchanged reload called in process logs nothing');
    assert.equal(await metricValue(h, 'public', 'unchanged'), before.unchanged + 1);
  });

  it('keeps the current CRL when the new file is malformed, logs tls_reload_failed naming the path, and still serves', async () => {
    const good = readFileSync(pki.crlPath, 'utf8');
    const failedBefore = await metricValue(h, 'public', 'failed');
    try {
      writeFileSync(pki.crlPath, '-----BEGIN X509 CRL-----\nAAAAAAAAAAAAAAAAAAAAAAAA FAKE TEST-ONLY\n-----END X509 CRL-----\n');
      const [outcome] = await h.gateway.reloadTls();
      assert.equal(outcome?.result, 'failed');
      assert.match(outcome?.problems[0] ?? '', /^listen\.public_tls\.crl: .*ca\.crl is not a valid CRL$/);

      const failed = events(h, 'tls_reload_failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]?.['path'], 'listen.public_tls.crl');
      assert.equal(failed[0]?.['listener'], 'public');
      assert.equal(failed[0]?.['level'], 40, 'a warning');
      assert.equal(await metricValue(h, 'public', 'failed'), failedBefore + 1);

      // the CRL in use is still the last good one: revoked stays refused, the rest still pass
      const revoked = await send('revoked-later');
      assert.equal(revoked.json?.error?.code, 'auth_cert_revoked');
      assert.equal((await send('steady')).status, 200);
    } finally {
      writeFileSync(pki.crlPath, good);
    }
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'unchanged', 'the good file again is the material in use');
  });

  it('keeps the current material when the key does not match the certificate or cannot be read, never logging the key', async () => {
    const realKey = readFileSync(pki.server.keyPath, 'utf8');
    const stranger = pki.ca.issue('stranger-server', { usage: 'server', commonName: 'localhost' });
    try {
      writeFileSync(pki.server.keyPath, stranger.key);
      const [mismatch] = await h.gateway.reloadTls();
      assert.equal(mismatch?.result, 'failed');
      assert.match(mismatch?.problems[0] ?? '', /^listen\.public_tls: the certificate, key or client CA bundle could not be used/);

      chmodSync(pki.server.keyPath, 0o644);
      const [unreadable] = await h.gateway.reloadTls();
      assert.equal(unreadable?.result, 'failed');
      assert.match(unreadable?.problems[0] ?? '', /^listen\.public_tls\.key: .*readable by other users/);
      const failed = events(h, 'tls_reload_failed').slice(-2);
      assert.deepEqual(failed.map((l) => l['path']), ['listen.public_tls', 'listen.public_tls.key']);

      // the listener still serves with the certificate and key it had
      assert.equal(await servedFingerprint(h.url, pki.ca.cert), pki.server.fingerprint);
      assert.equal((await send('steady')).status, 200);
    } finally {
      writeFileSync(pki.server.keyPath, realKey);
      chmodSync(pki.server.keyPath, 0o600);
    }
    // no line holds any part of either private key
    const text = h.logs.text();
    for (const key of [realKey, stranger.key]) {
      for (const line of key.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))) assert.equal(text.includes(line), false, 'a private key reached the log');
    }
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'unchanged');
  });

  it('refuses an expired CRL from 2020 over the current one as a rollback: the CRL in use is kept', async () => {
    const good = readFileSync(pki.crlPath, 'utf8');
    try {
      copyFileSync(pki.ca.crl('expired.crl', { expired: true }), pki.crlPath);
      const [outcome] = await h.gateway.reloadTls();
      assert.equal(outcome?.result, 'failed');
      assert.match(outcome?.problems[0] ?? '', /^listen\.public_tls\.crl: .*\(thisUpdate 2020-01-01T00:00:00\.000Z\) is older than the CRL in use/);
      assert.equal((await send('expired-crl')).status, 200, 'the current CRL stays in use');
    } finally {
      writeFileSync(pki.crlPath, good);
    }
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'unchanged');
  });
});

describe('a CRL that has expired (listen.public_tls.crl)', () => {
  let pki: Pki;
  let h: Harness;
  const certs: Record<string, IssuedCertificate> = {};

  before(async () => {
    pki = makePki('tls-reload-expired');
    for (const name of ['expired-crl', 'revoked-meanwhile']) certs[name] = client(pki, name);
    // started with an expired CRL (a warning, not a refusal): a reload can then bring another one
    copyFileSync(pki.ca.crl('expired.crl', { expired: true }), pki.crlPath);
    h = await startHarness({ config: tlsConfig(pki, Object.keys(certs), 'off') });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const send = (name: string) => httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: certs[name], body: CHAT });

  it('logs tls_crl_warning when the reloaded CRL has expired, as at start-up', async () => {
    const atStart = events(h, 'tls_crl_warning').length;
    assert.equal(atStart, 1, 'the expired CRL is reported at start-up');
    // another CRL of the same dates (it revokes one more certificate) replaces it: not older, so applied
    pki.ca.revoke(certs['revoked-meanwhile']!);
    copyFileSync(pki.ca.crl('expired.crl', { expired: true }), pki.crlPath);
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
    const warnings = events(h, 'tls_crl_warning').slice(atStart);
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]?.['msg']), /listen\.public_tls\.crl: .*ca\.crl expired at 2020-01-02T00:00:00\.000Z/);
    // fail closed, as with an expired CRL at start-up
    assert.equal((await send('expired-crl')).json?.error?.code, 'auth_cert_untrusted');

    // a current CRL (newer) puts things right
    pki.ca.crl('ca.crl');
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
    assert.equal((await send('expired-crl')).status, 200);
    assert.equal((await send('revoked-meanwhile')).json?.error?.code, 'auth_cert_revoked');
  });
});

describe('the periodic check (listen.public_tls.reload_interval)', () => {
  let pki: Pki;
  let h: Harness;
  let later: IssuedCertificate;

  before(async () => {
    pki = makePki('tls-reload-interval');
    later = client(pki, 'later');
    h = await startHarness({ config: tlsConfig(pki, ['later'], '1s') });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('checks quietly while nothing changes, then picks up a new CRL without a signal', async () => {
    const send = () => httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: later, body: CHAT });
    assert.equal((await send()).status, 200);
    // a few periods with the same files: counted, never logged
    const deadline = Date.now() + 5000;
    while (await metricValue(h, 'public', 'unchanged') < 2 && Date.now() < deadline) await sleep(100);
    assert.ok(await metricValue(h, 'public', 'unchanged') >= 2, 'the periodic check did not run');
    assert.equal(h.logs.lines.some((l) => /"event":"tls_/.test(l)), false, h.logs.text());

    pki.ca.revoke(later);
    pki.ca.crl('ca.crl');
    let res = await send();
    const until = Date.now() + 5000;
    while (res.status === 200 && Date.now() < until) {
      await sleep(100);
      res = await send();
    }
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    const reloaded = events(h, 'tls_reloaded');
    assert.equal(reloaded.length, 1);
    assert.equal(reloaded[0]?.['trigger'], 'interval');
  });
});

describe('server certificate rotation', () => {
  let pki: Pki;
  let h: Harness;

  before(async () => {
    pki = makePki('tls-reload-rotate');
    client(pki, 'unused');
    // both listeners share the files: both pick the new certificate up
    h = await startHarness({ config: tlsConfig(pki, ['unused'], '0', true) });
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('new handshakes on both listeners see the new certificate; a connection from before keeps the old one', async () => {
    assert.equal(await servedFingerprint(h.url, pki.ca.cert), pki.server.fingerprint);
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.ca.cert });
    try {
      const before = await chatVia(agent, h.url, '/healthz');
      assert.equal(before.status, 200);

      const next = pki.ca.issue('server-next', { usage: 'server', commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
      assert.notEqual(next.fingerprint, pki.server.fingerprint);
      // the key first, then the certificate: a check in between would fail (mismatch) and keep the old pair
      writeFileSync(pki.server.keyPath, next.key);
      writeFileSync(pki.server.certPath, next.cert);
      const outcomes = await h.gateway.reloadTls();
      assert.deepEqual(outcomes.map((o) => [o.listener, o.result, o.changed]), [['public', 'reloaded', ['cert', 'key']], ['admin', 'reloaded', ['cert', 'key']]]);

      assert.equal(await servedFingerprint(h.url, pki.ca.cert), next.fingerprint);
      assert.equal(await servedFingerprint(h.adminUrl, pki.ca.cert), next.fingerprint);
      const line = events(h, 'tls_reloaded').find((l) => l['listener'] === 'public');
      assert.equal(line?.['cert_fingerprint'], next.fingerprint);
      assert.equal(line?.['connections_retired'], 0, 'a new server certificate alone closes no connection');

      // the kept-alive connection is reused, still over the certificate it was opened with
      const after = await chatVia(agent, h.url, '/healthz');
      assert.equal(after.socket, before.socket);
      assert.equal(after.socket.getPeerCertificate().fingerprint256.replace(/:/g, '').toLowerCase(), pki.server.fingerprint);
      assert.equal(after.status, 200);
    } finally {
      agent.destroy();
    }
  });
});

describe('keywarden serve reloads TLS material on SIGHUP', () => {
  let pki: Pki;
  let h: Harness;
  let serve: CliProcess | undefined;
  let publicUrl: string;
  const certs: Record<string, IssuedCertificate> = {};

  before(async () => {
    pki = makePki('tls-reload-sighup');
    for (const name of ['hup-revoked', 'hup-steady']) certs[name] = client(pki, name);
    // the in-process gateway only provides the store and the mock provider the child shares
    h = await startHarness();
    await h.gateway.tenants.createTenant('billing', 'test');
    const configPath = writeCliConfig(h, { ...tlsConfig(pki, Object.keys(certs), 'off'), log: { level: 'info' }, tenants: { defaults: { policy: { ...CONTRACT_POLICY, models: ['gpt-4o-mini'] } } } });
    serve = startCli(['serve', '--config', configPath], { cwd: h.dir, env: cliEnv({ NODE_ENV: 'test' }) });
    const [line] = await serve.waitForStdout(/^.*"keywarden listening".*$/m, 20_000);
    publicUrl = (JSON.parse(line) as { publicUrl: string }).publicUrl;
    assert.match(publicUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await serve?.stop('SIGKILL');
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const send = (name: string) => httpsSend(publicUrl, '/v1/chat/completions', { ca: pki.ca.cert, client: certs[name], body: CHAT });
  const logged = (event: string) => jsonLines(serve?.stdout() ?? '').filter((l) => l['event'] === event);

  it('applies a new CRL on SIGHUP: the revoked certificate gets 401 auth_cert_revoked on a new connection', async () => {
    assert.equal((await send('hup-revoked')).status, 200);
    pki.ca.revoke(certs['hup-revoked']!);
    pki.ca.crl('ca.crl');
    assert.ok(serve?.child.kill('SIGHUP'));
    await serve?.waitForStdout(/"event":"tls_reloaded"/, 10_000);
    const reloaded = logged('tls_reloaded');
    assert.equal(reloaded[0]?.['trigger'], 'signal');
    assert.deepEqual(reloaded[0]?.['changed'], ['crl']);

    const res = await send('hup-revoked');
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    assert.equal((await send('hup-steady')).status, 200);
  });

  it('survives a SIGHUP with a malformed CRL: logs tls_reload_failed, keeps the old CRL and serves on', async () => {
    const good = readFileSync(pki.crlPath, 'utf8');
    writeFileSync(pki.crlPath, 'not a CRL at all (FAKE, TEST-ONLY)\n');
    try {
      assert.ok(serve?.child.kill('SIGHUP'));
      await serve?.waitForStdout(/"event":"tls_reload_failed"/, 10_000);
      const [failed] = logged('tls_reload_failed');
      assert.equal(failed?.['path'], 'listen.public_tls.crl');
      assert.match(String((failed?.['problems'] as string[])[0]), /ca\.crl holds no PEM CRL/);
      assert.equal(serve?.child.exitCode, null, 'the gateway must still run');
      assert.equal((await send('hup-steady')).status, 200);
      assert.equal((await send('hup-revoked')).json?.error?.code, 'auth_cert_revoked');
    } finally {
      writeFileSync(pki.crlPath, good);
    }
  });

  it('stops on SIGTERM as before, after the SIGHUPs', async () => {
    const exit = await serve?.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    // no private key material in anything the process printed
    const output = (serve?.stdout() ?? '') + (serve?.stderr() ?? '');
    const keyLine = pki.server.key.split('\n')[1] as string;
    assert.equal(output.includes(keyLine), false);
  });
});

describe('listen.*_tls.reload_interval configuration', () => {
  const base = {
    admin: { token: 'file:/tmp/x' }, audit: { prompt_hmac_key: 'file:/tmp/y' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:OPENAI_KEY' } },
  };
  const withInterval = (value: unknown, listener = 'public_tls') => ({ ...base, listen: { [listener]: { cert: '/c.pem', key: 'file:/k.pem', ...(value === undefined ? {} : { reload_interval: value }) } } });
  const problemsOf = (doc: Record<string, unknown>): string => {
    try {
      configFromDocument(doc, 'test', {});
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('defaults to 5m, takes a duration, and 0, "0", off or false turn the periodic check off', () => {
    assert.equal(configFromDocument(withInterval(undefined), 'test', {}).listen.publicTls?.reloadIntervalMs, 300_000);
    assert.equal(configFromDocument(withInterval('30s'), 'test', {}).listen.publicTls?.reloadIntervalMs, 30_000);
    assert.equal(configFromDocument(withInterval('1h', 'admin_tls'), 'test', {}).listen.adminTls?.reloadIntervalMs, 3_600_000);
    for (const off of [0, '0', 'off', false]) assert.equal(configFromDocument(withInterval(off), 'test', {}).listen.publicTls?.reloadIntervalMs, 0, String(off));
  });

  it('refuses what is not a duration from 1s to 24h', () => {
    for (const bad of ['soon', '500ms', '2d', 5, -1, true, '']) {
      assert.match(problemsOf(withInterval(bad)), /listen\.public_tls\.reload_interval: must be a duration from 1s to 24h/, String(bad));
    }
    assert.match(problemsOf(withInterval('fast', 'admin_tls')), /listen\.admin_tls\.reload_interval: must be a duration/);
  });
});

/*
 * Connections that span a reload which changes client-certificate trust: none of them may carry a
 * request verified under the old client CA bundle or CRL once the new one is in use.
 */

/** A raw TLS client: every byte the server sends, and whether it closed. */
interface RawTls { socket: TLSSocket; text(): string; closed: Promise<void>; isClosed(): boolean }

function rawTls(socket: TLSSocket): RawTls {
  let text = '';
  let isClosed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => { text += chunk; });
  socket.on('error', () => undefined);
  const closedPromise = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; resolve(); }));
  return { socket, text: () => text, closed: closedPromise, isClosed: () => isClosed };
}

/** One HTTP/1.1 chat request as bytes (for pipelining behind another on one connection). */
function chatBytes(content: string, extra: Record<string, unknown> = {}): string {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

const statusLines = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

/** The requests the mock provider received whose body holds `marker`. */
const upstreamWith = (h: Harness, marker: string) => h.mock.received.filter((r) => JSON.stringify(r.body ?? null).includes(marker)).length;

/** Resolves within `ms` once `done` holds; false if it never did. */
async function eventually(done: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!done() && Date.now() < until) await sleep(20);
  return done();
}

describe('connections that span a reload of client-certificate trust', () => {
  let pki: Pki;
  let h: Harness;
  let port: number;
  const names = ['early-tcp', 'busy', 'streaming', 'bystander'];
  const certs: Record<string, IssuedCertificate> = {};

  before(async () => {
    pki = makePki('tls-reload-span');
    for (const name of names) certs[name] = client(pki, name);
    h = await startHarness({ config: tlsConfig(pki, names, 'off') });
    await h.gateway.tenants.createTenant('billing', 'test');
    port = Number(new URL(h.url).port);
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const revokeAndReload = async (name: string) => {
    pki.ca.revoke(certs[name]!);
    pki.ca.crl('ca.crl');
    const [outcome] = await h.gateway.reloadTls();
    assert.equal(outcome?.result, 'reloaded');
  };
  const tlsClient = (name: string, socket?: Socket): TLSSocket => tlsConnect({
    ...(socket ? { socket } : { host: '127.0.0.1', port }), cert: certs[name]!.cert, key: certs[name]!.key, ca: pki.ca.cert, servername: 'localhost',
  });

  it('closes a connection opened before the reload whose handshake was not done: it is never verified under the old CRL', async () => {
    // the TCP connection arrives under the old material (Node binds the context then) …
    const tcp = netConnect(port, '127.0.0.1');
    await new Promise((resolve) => tcp.once('connect', resolve));
    await sleep(50);
    await revokeAndReload('early-tcp');
    // … and the handshake comes after the reload
    const client = rawTls(tlsClient('early-tcp', tcp));
    const handshake = await new Promise<'done' | 'refused'>((resolve) => {
      client.socket.once('secureConnect', () => resolve('done'));
      client.socket.once('close', () => resolve('refused'));
    });
    if (handshake === 'done') {
      // had it been verified under the old CRL, this request would pass
      client.socket.write(chatBytes('early-tcp marker-early'));
      await Promise.race([client.closed, sleep(1500)]);
    }
    client.socket.destroy();
    assert.equal(handshake, 'refused', `the connection from before the reload was kept: ${client.text()}`);
    assert.ok(Number(events(h, 'tls_reloaded').at(-1)?.['connections_retired']) >= 1, 'the connection in its handshake counts as retired');
    assert.equal(upstreamWith(h, 'marker-early'), 0, 'the provider must not be called');
    // a new connection is verified under the new CRL
    const res = await httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: certs['early-tcp'], body: CHAT });
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
  });

  it('answers a request that starts on a retired busy connection with 421 connection_retired, never forwarding it', async () => {
    const client = rawTls(tlsClient('busy'));
    await new Promise((resolve) => client.socket.once('secureConnect', resolve));
    // a slow request under way when the new CRL comes in: it was verified before, so it finishes
    client.socket.write(chatBytes('busy marker-busy-1 [[mock:delay=1200]]'));
    assert.ok(await eventually(() => upstreamWith(h, 'marker-busy-1') === 1, 3000), 'the first request did not reach the provider');
    await revokeAndReload('busy');
    // a second request pipelined on the same connection after the reload
    client.socket.write(chatBytes('busy marker-busy-2'));
    await Promise.race([client.closed, sleep(5000)]);
    assert.equal(client.isClosed(), true, 'the retired connection must close');
    assert.equal(upstreamWith(h, 'marker-busy-2'), 0, 'a request that started after the reload reached the provider');
    // the first answer says the connection closes; the second request gets none (or 421), so the client sends it again
    const text = client.text();
    assert.deepEqual(statusLines(text).filter((s) => s !== 421), [200], text);
    assert.match(text.slice(0, text.indexOf('\r\n\r\n')), /\r\nconnection: close/i);
  });

  it('answers a request pipelined behind a stream on a retired connection with 421 connection_retired and closes', async () => {
    const client = rawTls(tlsClient('streaming'));
    await new Promise((resolve) => client.socket.once('secureConnect', resolve));
    client.socket.write(chatBytes('streaming marker-stream-1 [[mock:chunk-delay=200]] one two three four five', { stream: true }));
    // the stream's headers are out before the reload
    assert.ok(await eventually(() => statusLines(client.text()).length === 1, 3000), client.text());
    await revokeAndReload('streaming');
    client.socket.write(chatBytes('streaming marker-stream-2'));
    await Promise.race([client.closed, sleep(15_000)]);
    assert.equal(client.isClosed(), true, 'the retired connection must close');
    assert.equal(upstreamWith(h, 'marker-stream-2'), 0, 'a request that started after the reload reached the provider');
    const text = client.text();
    assert.deepEqual(statusLines(text), [200, 421], text);
    const second = text.slice(text.indexOf('HTTP/1.1 421'));
    assert.match(second, /\r\nconnection: close\r\n/i);
    const body = JSON.parse(second.slice(second.indexOf('\r\n\r\n') + 4)) as { error?: { code?: string; type?: string } };
    assert.equal(body.error?.code, 'connection_retired');
    // the bystander, on its own new connection, is served as before
    assert.equal((await httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: certs['bystander'], body: CHAT })).status, 200);
  });

  it('closes a TCP connection that never completes its TLS handshake within the handshake timeout (10 s)', async () => {
    const started = Date.now();
    const tcp = netConnect(port, '127.0.0.1');
    tcp.on('error', () => undefined);
    const closedAt = await new Promise<number>((resolve) => {
      tcp.once('close', () => resolve(Date.now()));
      setTimeout(() => { tcp.destroy(); resolve(0); }, 14_000);
    });
    assert.ok(closedAt > 0, 'the server held an unhandshaken connection open for 14 s');
    assert.ok(closedAt - started >= 9_000, `closed after ${closedAt - started} ms: the timeout is 10 s`);
  });
});

describe('a client CA bundle that is not whole (listen.public_tls.client_ca)', () => {
  let pki: Pki;
  let h: Harness;
  let member: IssuedCertificate;

  before(async () => {
    pki = makePki('tls-reload-ca');
    member = client(pki, 'member');
    h = await startHarness({ config: tlsConfig(pki, ['member'], 'off') });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const send = () => httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: member, body: CHAT });
  const bad = (good: string): Record<string, string> => ({
    empty: '',
    'half-written': good.slice(0, Math.floor(good.length / 2)),
    garbage: 'hello, not a certificate (FAKE, TEST-ONLY)\n',
    'a block that is no certificate': '-----BEGIN CERTIFICATE-----\nAAAAFAKETESTONLYAAAA\n-----END CERTIFICATE-----\n',
    'a whole certificate, then half of one': `${good}${good.slice(0, Math.floor(good.length / 2))}`,
  });

  it('refuses on reload an empty, half-written or garbage bundle: the material in use is kept and clients still pass', async () => {
    const good = readFileSync(pki.ca.certPath, 'utf8');
    assert.equal((await send()).status, 200);
    try {
      for (const [name, text] of Object.entries(bad(good))) {
        writeFileSync(pki.ca.certPath, text);
        const [outcome] = await h.gateway.reloadTls();
        assert.equal(outcome?.result, 'failed', name);
        assert.match(outcome?.problems[0] ?? '', /^listen\.public_tls\.client_ca: /, name);
        assert.equal(events(h, 'tls_reload_failed').at(-1)?.['path'], 'listen.public_tls.client_ca', name);
        assert.equal((await send()).status, 200, `${name}: the client CA bundle in use must be kept`);
      }
    } finally {
      writeFileSync(pki.ca.certPath, good);
    }
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'unchanged');
    assert.equal(events(h, 'tls_reloaded').length, 0, 'nothing was applied');
  });

  it('refuses the same bundles at start-up, naming listen.public_tls.client_ca', async () => {
    const { loadPublicTls } = await import('../src/main.js');
    const { createSecretResolver } = await import('../src/secrets/resolver.js');
    const good = readFileSync(pki.ca.certPath, 'utf8');
    const path = `${pki.dir}/startup-ca.crt`;
    const config = { cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, clientCa: path, crl: [pki.crlPath], clientAuth: 'optional', reloadIntervalMs: 0 } as const;
    writeFileSync(path, good);
    await loadPublicTls(config as never, createSecretResolver());
    for (const [name, text] of Object.entries(bad(good))) {
      writeFileSync(path, text);
      await assert.rejects(loadPublicTls(config as never, createSecretResolver()), /listen\.public_tls\.client_ca: .*startup-ca\.crt/, name);
    }
  });
});

describe('a CRL rolled back to an older one (listen.public_tls.crl)', () => {
  let pki: Pki;
  let h: Harness;
  let holder: IssuedCertificate;

  before(async () => {
    pki = makePki('tls-reload-rollback');
    holder = client(pki, 'holder');
    h = await startHarness({ config: tlsConfig(pki, ['holder'], 'off') });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const send = () => httpsSend(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: holder, body: CHAT });
  // the CA's revocation database (openssl ca): restoring it un-revokes for the next CRL
  const indexPath = () => `${pki.dir}/ca-index.txt`;

  it('refuses a CRL older than the one in use; accepts a newer one that un-revokes', async () => {
    const olderCrl = readFileSync(pki.crlPath, 'utf8');
    const index = readFileSync(indexPath(), 'utf8');
    assert.equal((await send()).status, 200);
    // thisUpdate has a resolution of one second: the revoking CRL is made a second later
    await sleep(1100);
    pki.ca.revoke(holder);
    pki.ca.crl('ca.crl');
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
    assert.equal((await send()).json?.error?.code, 'auth_cert_revoked');

    // the older CRL (where the certificate is not revoked) is put back: a rollback, refused
    const revoking = readFileSync(pki.crlPath, 'utf8');
    writeFileSync(pki.crlPath, olderCrl);
    const [outcome] = await h.gateway.reloadTls();
    assert.equal(outcome?.result, 'failed');
    assert.match(outcome?.problems[0] ?? '', /^listen\.public_tls\.crl: .*older than the CRL in use/);
    const failed = events(h, 'tls_reload_failed').at(-1);
    assert.equal(failed?.['path'], 'listen.public_tls.crl');
    assert.match(String((failed?.['problems'] as string[])[0]), /older than the CRL in use/);
    assert.equal((await send()).json?.error?.code, 'auth_cert_revoked', 'the CRL in use must be kept');

    // the CRL in use again: unchanged
    writeFileSync(pki.crlPath, revoking);
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'unchanged');

    // a newer CRL that no longer lists the certificate (the CA un-revoked it) is accepted
    writeFileSync(indexPath(), index);
    await sleep(1100);
    pki.ca.crl('ca.crl');
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
    assert.equal((await send()).status, 200);
  });
});

describe('keywarden serve: SIGHUP during start-up and during shutdown', () => {
  let pki: Pki;
  let h: Harness;
  let serve: CliProcess | undefined;
  let fifo: string;
  let slowCert: IssuedCertificate;

  before(async () => {
    pki = makePki('tls-reload-hup-early');
    slowCert = client(pki, 'hup-slow');
    h = await startHarness();
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await serve?.stop('SIGKILL');
    // a writer still waiting for the child to open the FIFO is released by a reader of our own
    if (fifo) {
      try {
        const fd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
        closeSync(fd);
      } catch {
        // no FIFO left
      }
    }
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('survives a SIGHUP before it listens (the configuration is still being read) and reloads once listening', async () => {
    const text = readFileSync(writeCliConfig(h, { ...tlsConfig(pki, ['hup-slow'], 'off'), log: { level: 'info' }, tenants: { defaults: { policy: { ...CONTRACT_POLICY, models: ['gpt-4o-mini'] } } } }), 'utf8');
    // the configuration comes through a FIFO: the child blocks reading it, so the signal surely comes before listen
    fifo = `${h.dir}/serve-config.fifo`;
    execFileSync('mkfifo', ['-m', '600', fifo]);
    serve = startCli(['serve', '--config', fifo], { cwd: h.dir, env: cliEnv({ NODE_ENV: 'test' }) });
    // opening for writing completes once the child opens the FIFO to read the configuration
    const writer = await Promise.race([open(fifo, 'w'), serve.exited.then((exit) => { throw new Error(`serve exited early: ${JSON.stringify(exit)}\n${serve?.stderr()}`); })]);
    try {
      assert.ok(serve.child.kill('SIGHUP'));
      await sleep(300);
      assert.deepEqual({ code: serve.child.exitCode, signal: serve.child.signalCode }, { code: null, signal: null }, 'a SIGHUP during start-up ended the process');
      await writer.writeFile(text);
    } finally {
      await writer.close();
    }
    await serve.waitForStdout(/"keywarden listening"/, 20_000);
    // the reload asked for during start-up runs once the gateway listens
    await serve.waitForStdout(/"event":"tls_reload_unchanged"/, 10_000);
    const lines = jsonLines(serve.stdout());
    assert.ok(lines.some((l) => String(l['msg']).includes('SIGHUP during start-up')), serve.stdout());
    assert.equal(lines.find((l) => l['event'] === 'tls_reload_unchanged')?.['trigger'], 'signal');
  });

  it('ignores SIGHUPs during the SIGTERM drain and after it: the process exits 0, never 129', async () => {
    assert.ok(serve, 'the previous test started the process');
    const publicUrl = (jsonLines(serve.stdout()).find((l) => l['msg'] === 'keywarden listening') as { publicUrl: string }).publicUrl;
    // a slow request keeps the drain going for a while
    const slow = httpsSend(publicUrl, '/v1/chat/completions', { ca: pki.ca.cert, client: slowCert, body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'marker-drain [[mock:delay=1500]]' }] } });
    assert.ok(await eventually(() => upstreamWith(h, 'marker-drain') === 1, 5000), 'the slow request did not reach the provider');
    assert.ok(serve.child.kill('SIGTERM'));
    // SIGHUPs through the drain and up to the exit
    const until = Date.now() + 15_000;
    while (serve.child.exitCode === null && serve.child.signalCode === null && Date.now() < until) {
      serve.child.kill('SIGHUP');
      await sleep(10);
    }
    assert.deepEqual(await serve.exited, { code: 0, signal: null });
    assert.equal((await slow).status, 200, 'the request in flight is drained');
    assert.ok(jsonLines(serve.stdout()).some((l) => String(l['msg']).includes('SIGHUP during shutdown')), serve.stdout());
  });
});
