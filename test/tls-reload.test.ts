import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTRACT_POLICY, startHarness, type Harness } from './helpers/harness.js';
import { createServerPki, httpsSend, type IssuedCertificate, type TestCa } from './helpers/certs.js';
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
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => {
        let json: Record<string, any> | undefined;
        try { json = JSON.parse(text) as Record<string, any>; } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, json, socket });
      });
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

  it('logs tls_crl_warning when the reloaded CRL has expired, as at start-up', async () => {
    const good = readFileSync(pki.crlPath, 'utf8');
    try {
      copyFileSync(pki.ca.crl('expired.crl', { expired: true }), pki.crlPath);
      assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
      const warnings = events(h, 'tls_crl_warning');
      assert.equal(warnings.length, 1);
      assert.match(String(warnings[0]?.['msg']), /listen\.public_tls\.crl: .*ca\.crl expired at 2020-01-02T00:00:00\.000Z/);
      // fail closed, as with an expired CRL at start-up
      assert.equal((await send('expired-crl')).json?.error?.code, 'auth_cert_untrusted');
    } finally {
      writeFileSync(pki.crlPath, good);
    }
    assert.equal((await h.gateway.reloadTls())[0]?.result, 'reloaded');
    assert.equal((await send('expired-crl')).status, 200);
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
