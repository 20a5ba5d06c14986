import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import OpenAI from 'openai';
import { FAKE_ADMIN_TOKEN, LogCapture, startHarness, type Harness } from './helpers/harness.js';
import { createServerPki, createTestCa, httpsSend, type IssuedCertificate, type TestCa } from './helpers/certs.js';
import { configFromDocument } from '../src/config/load.js';
import { createGateway, loadPublicTls } from '../src/main.js';
import { createSecretResolver } from '../src/secrets/resolver.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import { writeCliConfig } from './helpers/provider-keys-setup.js';

/*
 * Certificate revocation lists for mutual TLS (`listen.public_tls.crl`): a throwaway CA made with
 * `openssl` at test time (TEST-ONLY keys in a temp dir) revokes one client certificate with
 * `openssl ca -revoke`/`-gencrl`; real TLS handshakes over loopback; every refusal a coded 401.
 */

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello over mtls with a crl' }] };
const GOOD_ID = 'spiffe://example.test/ns/prod/sa/billing';
const REVOKED_ID = 'spiffe://example.test/ns/prod/sa/billing-old';
const PARTNER_ID = 'spiffe://partner.test/sa/billing';
const PARTNER_REVOKED_ID = 'spiffe://partner.test/sa/billing-old';


interface Pki {
  dir: string;
  ca: TestCa;
  server: IssuedCertificate;
  good: IssuedCertificate;
  revoked: IssuedCertificate;
  /** The CA's CRL listing `revoked`. */
  crlPath: string;
}

function makePki(prefix: string): Pki {
  const { dir, ca, server } = createServerPki(prefix);
  const good = ca.issue('good', { commonName: 'billing-client', sanUris: [GOOD_ID] });
  const revoked = ca.issue('revoked', { commonName: 'billing-client-old', sanUris: [REVOKED_ID] });
  ca.revoke(revoked);
  return { dir, ca, server, good, revoked, crlPath: ca.crl('ca.crl') };
}

function crlConfig(pki: Pki, clientAuth: 'require' | 'optional', crl: string | string[], tenants: Record<string, string>, clientCa = pki.ca.certPath): Record<string, unknown> {
  return {
    listen: {
      public: '127.0.0.1:0', admin: '127.0.0.1:0',
      public_tls: { cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, client_ca: clientCa, client_auth: clientAuth, crl },
    },
    auth: { client_certificates: { map_by: 'san_uri', tenants } },
  };
}

/** The chat request over a fresh TLS connection, optionally with a client certificate. */
function send(url: string, options: { client?: IssuedCertificate; ca: string; headers?: Record<string, string> }) {
  return httpsSend(url, '/v1/chat/completions', { ...options, body: CHAT });
}

async function requestAudits(h: Harness) {
  await h.gateway.writer.flush();
  return (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((r) => r.action === 'request');
}

/** The request log lines (pino JSON) whose `code` is the one given. */
function requestLogs(h: Harness, code: string): Array<Record<string, unknown>> {
  return h.logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((l) => l['code'] === code);
}

/** The second line of a PEM certificate: a piece of its body that must never be recorded. */
function pemBody(cert: IssuedCertificate): string {
  return cert.cert.split('\n')[1] as string;
}

describe('CRL on the public listener (require, one CA, crl as a path)', () => {
  let pki: Pki;
  let h: Harness;

  before(async () => {
    pki = makePki('mtls-crl');
    h = await startHarness({ config: crlConfig(pki, 'require', pki.crlPath, { [GOOD_ID]: 'billing', [REVOKED_ID]: 'billing' }) });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('refuses a revoked certificate with auth_cert_revoked, before the provider and without recording the certificate', async () => {
    const providerCalls = h.mock.received.length;
    const auditsBefore = (await requestAudits(h)).length;
    const res = await send(h.url, { ca: pki.ca.cert, client: pki.revoked });
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    assert.equal(h.mock.received.length, providerCalls, 'the provider must not be called');
    // the refusal is logged by its code, with no identity (the certificate mapped to nobody)
    const lines = requestLogs(h, 'auth_cert_revoked');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.['status'], 401);
    assert.equal(lines[0]?.['tenant'], null);
    assert.equal(lines[0]?.['keyId'], null);
    // no request audit row without a principal, and neither logs nor audit hold the certificate
    assert.equal((await requestAudits(h)).length, auditsBefore);
    const everything = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 10_000 })) + h.logs.text();
    assert.equal(everything.includes(pemBody(pki.revoked)), false);
    assert.equal(everything.includes(pki.revoked.fingerprint), false);
    assert.equal(everything.includes(pki.revoked.fingerprint.slice(0, 16)), false);
    assert.equal(everything.includes(REVOKED_ID), false);
  });

  it('a valid tenant key next to a revoked certificate changes nothing', async () => {
    const res = await send(h.url, { ca: pki.ca.cert, client: pki.revoked, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'auth_cert_revoked');
  });

  it('a certificate of the same CA that is not revoked still reaches the provider', async () => {
    const before = h.mock.received.length;
    const res = await send(h.url, { ca: pki.ca.cert, client: pki.good });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json?.object, 'chat.completion');
    assert.equal(h.mock.received.length, before + 1);
    const row = (await requestAudits(h)).at(-1);
    assert.equal((row?.details as Record<string, unknown>)['subject'], GOOD_ID);
    assert.equal(row?.actor, `tenant-key:cert:${pki.good.fingerprint.slice(0, 16)}`);
  });

  it('the official OpenAI SDK works with the not-revoked certificate and is refused with the revoked one', async () => {
    for (const [client, ok] of [[pki.good, true], [pki.revoked, false]] as const) {
      const dispatcher = new Agent({ connect: { ca: pki.ca.cert, cert: client.cert, key: client.key } });
      try {
        const sdk = new OpenAI({
          baseURL: `${h.url}/v1`, apiKey: 'unused-with-mtls-TEST-ONLY', maxRetries: 0,
          fetch: ((input: string | URL | Request, init?: RequestInit) => undiciFetch(input as string, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch,
        });
        if (ok) {
          const completion = await sdk.chat.completions.create(CHAT as never);
          assert.equal(completion.object, 'chat.completion');
        } else {
          await assert.rejects(sdk.chat.completions.create(CHAT as never), (err: unknown) => {
            assert.ok(err instanceof OpenAI.APIError);
            assert.equal(err.status, 401);
            assert.equal((err.error as Record<string, unknown> | undefined)?.['code'], 'auth_cert_revoked');
            return true;
          });
        }
      } finally {
        await dispatcher.close();
      }
    }
  });

  it('a CRL that covers the client CA and is current logs no warning at start-up', () => {
    assert.equal(h.logs.text().includes('tls_crl_warning'), false);
  });
});

describe('CRL on the public listener (two CAs, both CRLs in one file, crl as a list)', () => {
  let pki: Pki;
  let partner: TestCa;
  let partnerGood: IssuedCertificate;
  let partnerRevoked: IssuedCertificate;
  let h: Harness;

  before(async () => {
    pki = makePki('mtls-crl-two');
    partner = createTestCa(join(pki.dir, 'partner'), 'partner-ca');
    partnerGood = partner.issue('partner-good', { sanUris: [PARTNER_ID] });
    partnerRevoked = partner.issue('partner-revoked', { sanUris: [PARTNER_REVOKED_ID] });
    partner.revoke(partnerRevoked);
    // Node reads only the first CRL of a PEM string: the partner's CRL second in the file proves each one is loaded
    const combined = join(pki.dir, 'combined.crl');
    writeFileSync(combined, readFileSync(pki.crlPath, 'utf8') + readFileSync(partner.crl('partner.crl'), 'utf8'));
    const bundle = join(pki.dir, 'clients-ca.pem');
    writeFileSync(bundle, pki.ca.cert + partner.cert);
    h = await startHarness({
      config: crlConfig(pki, 'optional', [combined], { [GOOD_ID]: 'billing', [REVOKED_ID]: 'billing', [PARTNER_ID]: 'partner', [PARTNER_REVOKED_ID]: 'partner' }, bundle),
    });
    await h.gateway.tenants.createTenant('billing', 'test');
    await h.gateway.tenants.createTenant('partner', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('refuses the revoked certificate of each CA with auth_cert_revoked', async () => {
    for (const client of [pki.revoked, partnerRevoked]) {
      const res = await send(h.url, { ca: pki.ca.cert, client, headers: { authorization: `Bearer ${h.key}` } });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json?.error?.code, 'auth_cert_revoked');
    }
  });

  it('serves the not-revoked certificate of each CA, and a key without a certificate (optional mode)', async () => {
    for (const client of [pki.good, partnerGood]) {
      const res = await send(h.url, { ca: pki.ca.cert, client });
      assert.equal(res.status, 200, res.text);
    }
    const keyed = await send(h.url, { ca: pki.ca.cert, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(keyed.status, 200, keyed.text);
  });
});

describe('an expired CRL (nextUpdate in the past) fails closed', () => {
  let pki: Pki;
  let h: Harness;
  let expiredCrl: string;

  before(async () => {
    pki = makePki('mtls-crl-expired');
    expiredCrl = pki.ca.crl('expired.crl', { expired: true });
    h = await startHarness({ config: crlConfig(pki, 'optional', expiredCrl, { [GOOD_ID]: 'billing', [REVOKED_ID]: 'billing' }) });
    await h.gateway.tenants.createTenant('billing', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('the gateway starts and warns that the CRL expired, naming the file', () => {
    const warnings = h.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['event'] === 'tls_crl_warning');
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]?.['msg']), /listen\.public_tls\.crl: .*expired\.crl expired at 2020-01-02T00:00:00\.000Z/);
  });

  it('refuses every certificate of the CA, revoked or not, with auth_cert_untrusted', async () => {
    const before = h.mock.received.length;
    for (const client of [pki.good, pki.revoked]) {
      const res = await send(h.url, { ca: pki.ca.cert, client });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json?.error?.code, 'auth_cert_untrusted');
    }
    assert.equal(h.mock.received.length, before, 'the provider must not be called');
  });

  it('a client without a certificate still authenticates with its key (optional mode)', async () => {
    const res = await send(h.url, { ca: pki.ca.cert, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(res.status, 200, res.text);
  });

  it('keywarden doctor shows the warning without failing', async () => {
    const configPath = writeCliConfig(h, crlConfig(pki, 'optional', expiredCrl, { [GOOD_ID]: 'billing' }));
    const res = await runCli(['doctor', '--config', configPath], { cwd: h.dir, env: cliEnv({}) });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /^ok {4}listen\.public_tls \(certificate and key, client CA bundle, CRLs\)$/m);
    assert.match(res.stdout, /^WARN {2}listen\.public_tls\.crl: .*expired\.crl expired at 2020-01-02T00:00:00\.000Z/m);
  });
});

describe('CRL files at start-up', () => {
  let pki: Pki;
  const resolver = createSecretResolver();

  before(() => {
    pki = makePki('mtls-crl-start');
  });
  after(() => {
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  const tlsOf = (crl: string[], clientCa = pki.ca.certPath) => ({ cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, clientCa, clientAuth: 'require' as const, crl });

  it('lists every bad CRL file at once: missing, not PEM, a certificate, a corrupt CRL', async () => {
    const notPem = join(pki.dir, 'not-pem.crl');
    writeFileSync(notPem, 'this is not a CRL\n');
    const corrupt = join(pki.dir, 'corrupt.crl');
    writeFileSync(corrupt, '-----BEGIN X509 CRL-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n-----END X509 CRL-----\n');
    const missing = join(pki.dir, 'missing.crl');
    const err = await loadPublicTls(tlsOf([pki.crlPath, missing, notPem, pki.ca.certPath, corrupt]), resolver).then(() => undefined, (e: unknown) => e as Error);
    assert.ok(err, 'the start must fail');
    const lines = err.message.split('\n');
    assert.equal(lines.length, 4, err.message);
    assert.match(err.message, /listen\.public_tls\.crl: cannot read .*missing\.crl \(ENOENT\)/);
    assert.match(err.message, /listen\.public_tls\.crl: .*not-pem\.crl holds no PEM CRL/);
    assert.match(err.message, /listen\.public_tls\.crl: .*ca\.crt holds no PEM CRL/);
    assert.match(err.message, /listen\.public_tls\.crl: .*corrupt\.crl is not a valid CRL/);
    // the good file is not among the problems
    assert.equal(err.message.includes(pki.crlPath), false);
  });

  it('a good CRL loads as one PEM per CRL', async () => {
    const loaded = await loadPublicTls(tlsOf([pki.crlPath]), resolver);
    assert.equal(loaded.crl?.length, 1);
    assert.match(loaded.crl?.[0] ?? '', /^-----BEGIN X509 CRL-----/);
  });

  it('warns when a client CA in the bundle has no CRL (OpenSSL would refuse its certificates)', async () => {
    const stranger = createTestCa(join(pki.dir, 'stranger'), 'stranger-ca');
    const bundle = join(pki.dir, 'bundle.pem');
    writeFileSync(bundle, pki.ca.cert + stranger.cert);
    const warnings: string[] = [];
    await loadPublicTls(tlsOf([pki.crlPath], bundle), resolver, 'listen.public_tls', (m) => warnings.push(m));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0] as string, /no CRL for client CA "CN=keywarden stranger-ca TEST-ONLY"/);
  });

  it('the gateway refuses to start with an unreadable CRL, naming the path', async () => {
    const secret = (name: string, value: string) => {
      const path = join(pki.dir, name);
      writeFileSync(path, value, { mode: 0o600 });
      return `file:${path}`;
    };
    const config = configFromDocument({
      ...crlConfig(pki, 'require', join(pki.dir, 'nowhere.crl'), { [GOOD_ID]: 'billing' }),
      store: 'sqlite::memory:',
      admin: { token: secret('admin-token', FAKE_ADMIN_TOKEN) },
      audit: { prompt_hmac_key: secret('prompt-key', 'prompt-hmac-key-TEST-ONLY-0123456789abcdef') },
      providers: { openai: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: secret('openai-key', 'sk-fake-provider-key-TEST-ONLY') } },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
    }, 'test', {});
    await assert.rejects(createGateway(config, { logDestination: new LogCapture() }), /listen\.public_tls\.crl: cannot read .*nowhere\.crl \(ENOENT\)/);
  });
});

describe('listen.*_tls.crl configuration', () => {
  const base = {
    admin: { token: 'file:/tmp/x' }, audit: { prompt_hmac_key: 'file:/tmp/y' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:OPENAI_KEY' } },
  };
  const mapping = { client_certificates: { map_by: 'subject_cn', tenants: { a: 'billing' } } };
  function problemsOf(doc: Record<string, unknown>): string {
    try {
      configFromDocument({ ...base, ...doc }, 'test', {});
      return '';
    } catch (err) {
      return String((err as Error).message);
    }
  }

  it('accepts a path or a list of paths', () => {
    for (const crl of ['/etc/kw/clients.crl', ['/etc/kw/a.crl', '/etc/kw/b.crl']]) {
      const config = configFromDocument({
        ...base, auth: mapping,
        listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', client_ca: '/ca.pem', crl } },
      }, 'test', {});
      assert.deepEqual(config.listen.publicTls?.crl, typeof crl === 'string' ? [crl] : crl);
    }
  });

  it('lists every problem: not a path, an empty list, pasted PEM, no client_ca', () => {
    const text = problemsOf({
      auth: mapping,
      listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', client_ca: '/ca.pem', crl: ['/ok.crl', 7, '-----BEGIN X509 CRL-----\nAAAA'] } },
    });
    assert.match(text, /listen\.public_tls\.crl\[1\]: must be the path of a PEM CRL file/);
    assert.match(text, /listen\.public_tls\.crl\[2\]: must be the path of a PEM CRL file/);
    assert.match(problemsOf({ auth: mapping, listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', client_ca: '/ca.pem', crl: [] } } }), /listen\.public_tls\.crl: must be the path of a PEM CRL file or a non-empty list/);
    assert.match(problemsOf({ listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', crl: '/x.crl' } } }), /listen\.public_tls\.crl: needs client_ca/);
  });

  it('the admin listener takes no client certificates, so no crl either', () => {
    const text = problemsOf({ listen: { admin_tls: { cert: '/c.pem', key: 'file:/k.pem', crl: '/x.crl' } } });
    assert.match(text, /listen\.admin_tls\.crl: unknown field/);
  });
});
