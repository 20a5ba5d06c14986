import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import OpenAI from 'openai';
import { startHarness, type Harness } from './helpers/harness.js';
import { createTestCa, httpsSend as send, type IssuedCertificate, type TestCa } from './helpers/certs.js';
import { configFromDocument } from '../src/config/load.js';
import { loadPublicTls } from '../src/main.js';
import { createSecretResolver } from '../src/secrets/resolver.js';

/*
 * Mutual TLS on the public listener: certificates made with `openssl` at test time (TEST-ONLY
 * keys in a temp dir), real TLS handshakes over loopback, every refusal a coded 401.
 */

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello over mtls' }] };
const BILLING_ID = 'spiffe://example.test/ns/prod/sa/billing';
const FROZEN_ID = 'spiffe://example.test/ns/prod/sa/frozen';
const GHOST_ID = 'spiffe://example.test/ns/prod/sa/ghost';


interface Pki {
  dir: string;
  ca: TestCa;
  other: TestCa;
  server: IssuedCertificate;
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'keywarden-mtls-'));
  const ca = createTestCa(dir, 'ca');
  const other = createTestCa(dir, 'other-ca');
  const server = ca.issue('server', { usage: 'server', commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  // the server key is read through the secret resolver, which wants owner-only files
  chmodSync(server.keyPath, 0o600);
  return { dir, ca, other, server };
}

function tlsConfig(pki: Pki, clientAuth: 'require' | 'optional', mapBy: string, tenants: Record<string, string>): Record<string, unknown> {
  return {
    listen: {
      public: '127.0.0.1:0', admin: '127.0.0.1:0',
      public_tls: { cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, client_ca: pki.ca.certPath, client_auth: clientAuth },
    },
    auth: { client_certificates: { map_by: mapBy, tenants } },
  };
}


async function lastRequestAudit(h: Harness) {
  await h.gateway.writer.flush();
  const rows = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((r) => r.action === 'request');
  return rows.at(-1);
}

describe('mutual TLS, certificates mapped by SAN URI (require)', () => {
  let pki: Pki;
  let h: Harness;
  let billing: IssuedCertificate;

  before(async () => {
    pki = makePki();
    billing = pki.ca.issue('billing', { commonName: 'billing-client', sanUris: [BILLING_ID] });
    h = await startHarness({ config: tlsConfig(pki, 'require', 'san_uri', { [BILLING_ID]: 'billing', [FROZEN_ID]: 'frozen', [GHOST_ID]: 'ghost' }) });
    await h.gateway.tenants.createTenant('billing', 'test');
    await h.gateway.tenants.createTenant('frozen', 'test');
    await h.gateway.tenants.setTenantStatus('frozen', 'disabled', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  async function refused(client: IssuedCertificate | undefined, code: string, headers: Record<string, string> = {}) {
    const before = h.mock.received.length;
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, body: CHAT, headers, ...(client ? { client } : {}) });
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.error?.code, code);
    assert.equal(h.mock.received.length, before, 'the provider must not be called');
  }

  it('serves the public listener over https', () => {
    assert.match(h.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('a certificate whose SPIFFE ID is mapped reaches the provider as its tenant, the mapping in the audit row', async () => {
    const before = h.mock.received.length;
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: billing, body: CHAT });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json?.object, 'chat.completion');
    assert.equal(h.mock.received.length, before + 1);
    const row = await lastRequestAudit(h);
    assert.ok(row);
    const details = row.details as Record<string, unknown>;
    const billingId = await h.gateway.tenants.tenantIdOf('billing');
    assert.equal(details['tenant'], billingId);
    assert.equal(details['auth'], 'mtls');
    assert.equal(details['auth_rule'], 'san_uri');
    assert.equal(details['subject'], BILLING_ID);
    assert.equal(row.actor, `tenant-key:cert:${billing.fingerprint.slice(0, 16)}`);
    // the certificate itself is never recorded
    const everything = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 10_000 })) + h.logs.text();
    assert.equal(everything.includes(billing.cert.split('\n')[1] as string), false);
  });

  it('health and readiness answer over TLS without a client certificate', async () => {
    assert.equal((await send(h.url, '/healthz', { ca: pki.ca.cert })).status, 200);
    const ready = await send(h.url, '/readyz', { ca: pki.ca.cert });
    assert.equal(ready.status, 200, ready.text);
    assert.equal(ready.json?.status, 'ready');
  });

  it('refuses a request without a client certificate: auth_cert_required, even with a valid tenant key', async () => {
    await refused(undefined, 'auth_cert_required');
    // in require mode the certificate is the credential: a key in the header does not stand in for it
    await refused(undefined, 'auth_cert_required', { authorization: `Bearer ${h.key}` });
  });

  it('the certificate decides the identity: another tenant\'s key in the header is ignored', async () => {
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: billing, body: CHAT, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(res.status, 200, res.text);
    const row = await lastRequestAudit(h);
    assert.equal((row?.details as Record<string, unknown>)['tenant'], await h.gateway.tenants.tenantIdOf('billing'));
    assert.notEqual(row?.actor, `tenant-key:${h.keyId}`);
  });

  it('the Anthropic route authenticates by certificate too', async () => {
    const res = await send(h.url, '/v1/messages', {
      ca: pki.ca.cert, client: billing, headers: { 'anthropic-version': '2023-06-01' },
      body: { model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json?.type, 'message');
  });

  it('refuses a certificate signed by another CA (same SPIFFE ID): auth_cert_untrusted', async () => {
    const foreign = pki.other.issue('foreign', { commonName: 'billing-client', sanUris: [BILLING_ID] });
    await refused(foreign, 'auth_cert_untrusted');
    // a valid key alongside a bad certificate changes nothing
    await refused(foreign, 'auth_cert_untrusted', { authorization: `Bearer ${h.key}` });
  });

  it('refuses a self-signed certificate: auth_cert_untrusted', async () => {
    const selfSigned = createTestCa(join(pki.dir, 'self'), 'self');
    await refused(selfSigned, 'auth_cert_untrusted');
  });

  it('refuses an expired certificate from the trusted CA: auth_cert_expired', async () => {
    const expired = pki.ca.issue('expired', { commonName: 'billing-client', sanUris: [BILLING_ID], expired: true });
    await refused(expired, 'auth_cert_expired');
  });

  it('refuses a valid certificate that maps to no tenant: auth_cert_unknown', async () => {
    await refused(pki.ca.issue('stranger', { sanUris: ['spiffe://example.test/ns/prod/sa/stranger'] }), 'auth_cert_unknown');
    await refused(pki.ca.issue('no-san', { commonName: 'billing' }), 'auth_cert_unknown');
    // mapped in config, but the tenant does not exist
    await refused(pki.ca.issue('ghost', { sanUris: [GHOST_ID] }), 'auth_cert_unknown');
  });

  it('refuses a certificate whose SAN URIs map to two different tenants: auth_cert_unknown', async () => {
    await refused(pki.ca.issue('ambiguous', { sanUris: [BILLING_ID, FROZEN_ID] }), 'auth_cert_unknown');
  });

  it('refuses the certificate of a disabled tenant, and accepts it again once enabled', async () => {
    const frozen = pki.ca.issue('frozen', { sanUris: [FROZEN_ID] });
    await refused(frozen, 'auth_tenant_disabled');
    await h.gateway.tenants.setTenantStatus('frozen', 'active', 'test');
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: frozen, body: CHAT });
    assert.equal(res.status, 200, res.text);
    await h.gateway.tenants.setTenantStatus('frozen', 'disabled', 'test');
    await refused(frozen, 'auth_tenant_disabled');
  });

  it('refuses TLS renegotiation, so a verified connection cannot swap in another certificate', async () => {
    // TLS 1.2 (1.3 has no renegotiation); a raw TLS socket speaking HTTP/1.1 by hand
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(h.url).port), ca: pki.ca.cert, cert: billing.cert, key: billing.key, maxVersion: 'TLSv1.2', servername: 'localhost' });
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', () => resolve()); socket.once('error', reject); });
    const firstAnswer = new Promise<string>((resolve) => {
      let text = '';
      const onData = (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (/\r\n\r\n[\s\S]*"object"/.test(text)) {
          socket.off('data', onData);
          resolve(text);
        }
      };
      socket.on('data', onData);
    });
    const body = JSON.stringify(CHAT);
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    assert.match(await firstAnswer, /^HTTP\/1\.1 200/, 'the verified certificate is served');
    // the server must refuse to renegotiate: the callback errs or the connection goes away, never a new handshake
    const outcome = await new Promise<string>((resolve) => {
      socket.once('close', () => resolve('closed'));
      socket.once('error', () => resolve('error'));
      const started = socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? 'refused' : 'renegotiated'));
      if (!started) resolve('refused');
      setTimeout(() => resolve('timeout'), 3_000).unref();
    });
    socket.destroy();
    assert.notEqual(outcome, 'renegotiated');
    assert.notEqual(outcome, 'timeout');
  });

  it('the official OpenAI SDK works over mutual TLS through an undici Agent', async () => {
    const dispatcher = new Agent({ connect: { ca: pki.ca.cert, cert: billing.cert, key: billing.key } });
    try {
      const client = new OpenAI({
        baseURL: `${h.url}/v1`, apiKey: 'unused-with-mtls-TEST-ONLY', maxRetries: 0,
        fetch: ((input: string | URL | Request, init?: RequestInit) => undiciFetch(input as string, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch,
      });
      const completion = await client.chat.completions.create(CHAT as never);
      assert.equal(completion.object, 'chat.completion');
      const models = await client.models.list();
      assert.ok(models.data.some((m) => m.id === 'gpt-4o-mini'));
    } finally {
      await dispatcher.close();
    }
  });
});

describe('mutual TLS, certificates mapped by subject CN (require)', () => {
  let pki: Pki;
  let h: Harness;

  before(async () => {
    pki = makePki();
    h = await startHarness({ config: tlsConfig(pki, 'require', 'subject_cn', { 'reports.example.test': 'reports' }) });
    await h.gateway.tenants.createTenant('reports', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('a certificate whose subject CN is mapped reaches the provider, the CN recorded as subject', async () => {
    const client = pki.ca.issue('reports', { commonName: 'reports.example.test' });
    const before = h.mock.received.length;
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client, body: CHAT });
    assert.equal(res.status, 200, res.text);
    assert.equal(h.mock.received.length, before + 1);
    const details = (await lastRequestAudit(h))?.details as Record<string, unknown>;
    assert.equal(details['auth_rule'], 'subject_cn');
    assert.equal(details['subject'], 'reports.example.test');
  });

  it('a CN that differs only in case is not the mapped one: auth_cert_unknown', async () => {
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: pki.ca.issue('upper', { commonName: 'REPORTS.example.test' }), body: CHAT });
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'auth_cert_unknown');
  });
});

describe('mutual TLS, certificates pinned by fingerprint (optional)', () => {
  let pki: Pki;
  let h: Harness;
  let pinned: IssuedCertificate;

  before(async () => {
    pki = makePki();
    pinned = pki.ca.issue('pinned', { commonName: 'pinned-client' });
    // colon-separated upper-case hex, as `openssl x509 -fingerprint -sha256` prints it
    const colonHex = (pinned.fingerprint.toUpperCase().match(/../g) as string[]).join(':');
    h = await startHarness({ config: tlsConfig(pki, 'optional', 'fingerprint', { [colonHex]: 'pinned' }) });
    await h.gateway.tenants.createTenant('pinned', 'test');
  });
  after(async () => {
    await h?.close();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('the pinned certificate reaches the provider, its fingerprint recorded as subject', async () => {
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: pinned, body: CHAT });
    assert.equal(res.status, 200, res.text);
    const row = await lastRequestAudit(h);
    const details = row?.details as Record<string, unknown>;
    assert.equal(details['auth'], 'mtls');
    assert.equal(details['auth_rule'], 'fingerprint');
    assert.equal(details['subject'], `sha256:${pinned.fingerprint}`);
    assert.equal(details['tenant'], await h.gateway.tenants.tenantIdOf('pinned'));
  });

  it('another certificate from the same CA and same subject is not the pinned one: auth_cert_unknown', async () => {
    const twin = pki.ca.issue('twin', { commonName: 'pinned-client' });
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: twin, body: CHAT });
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'auth_cert_unknown');
  });

  it('without a certificate, a tenant key still authenticates (optional mode)', async () => {
    const res = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, body: CHAT, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(res.status, 200, res.text);
    const details = (await lastRequestAudit(h))?.details as Record<string, unknown>;
    assert.equal(details['tenant'], await h.gateway.tenants.tenantIdOf('acme'));
    assert.equal(details['auth'], undefined);
    const none = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, body: CHAT });
    assert.equal(none.status, 401);
    assert.equal(none.json?.error?.code, 'auth_missing_credentials');
  });

  it('a bad certificate is refused even with a valid tenant key: no fallback to the header', async () => {
    const before = h.mock.received.length;
    const foreign = pki.other.issue('foreign', { commonName: 'pinned-client' });
    const untrusted = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: foreign, body: CHAT, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(untrusted.status, 401);
    assert.equal(untrusted.json?.error?.code, 'auth_cert_untrusted');
    const expired = pki.ca.issue('expired', { commonName: 'pinned-client', expired: true });
    const late = await send(h.url, '/v1/chat/completions', { ca: pki.ca.cert, client: expired, body: CHAT, headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(late.status, 401);
    assert.equal(late.json?.error?.code, 'auth_cert_expired');
    assert.equal(h.mock.received.length, before, 'the provider must not be called');
  });
});

describe('mutual TLS configuration', () => {
  const base = {
    admin: { token: 'file:/tmp/x' }, audit: { prompt_hmac_key: 'file:/tmp/y' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:OPENAI_KEY' } },
  };
  function problemsOf(doc: Record<string, unknown>): string {
    try {
      configFromDocument({ ...base, ...doc }, 'test', {});
      return '';
    } catch (err) {
      return String((err as Error).message);
    }
  }

  it('accepts public_tls with client certificates and normalises fingerprints', () => {
    const hex = 'ab'.repeat(32);
    const config = configFromDocument({
      ...base,
      listen: { public: '127.0.0.1:8443', public_tls: { cert: '/etc/kw/server.crt', key: 'file:/etc/kw/server.key', client_ca: '/etc/kw/ca.pem' } },
      auth: { client_certificates: { map_by: 'fingerprint', tenants: { [`sha256:${hex.toUpperCase()}`]: 'billing' } } },
    }, 'test', {});
    assert.equal(config.listen.publicTls?.clientAuth, 'require');
    assert.deepEqual({ ...config.auth.clientCertificates?.tenants }, { [hex]: 'billing' });
  });

  it('lists every problem by its path', () => {
    const text = problemsOf({
      listen: { public_tls: { cert: '/c.pem', key: 'literal-key-material', client_auth: 'sometimes', extra: 1 } },
      auth: { client_certificates: { map_by: 'serial', tenants: {} } },
    });
    assert.match(text, /listen\.public_tls\.key: must be a secret reference/);
    assert.match(text, /listen\.public_tls\.client_auth: must be require or optional/);
    assert.match(text, /listen\.public_tls\.extra: unknown field/);
    assert.match(text, /auth\.client_certificates\.map_by: must be one of subject_cn, san_uri, fingerprint/);
    assert.equal(text.includes('literal-key-material'), false, 'a pasted key is never echoed');
  });

  it('refuses a client CA without a mapping, a mapping without a CA, and malformed mapped values', () => {
    assert.match(problemsOf({ listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', client_ca: '/ca.pem' } } }), /listen\.public_tls\.client_ca: needs auth\.client_certificates/);
    assert.match(problemsOf({ auth: { client_certificates: { map_by: 'subject_cn', tenants: { a: 'b' } } } }), /auth\.client_certificates: needs listen\.public_tls with client_ca/);
    const text = problemsOf({
      listen: { public_tls: { cert: '/c.pem', key: 'file:/k.pem', client_ca: '/ca.pem' } },
      auth: { client_certificates: { map_by: 'fingerprint', tenants: { 'sha256:1234': 'billing', ['cd'.repeat(32)]: 'Not A Tenant' } } },
    });
    assert.match(text, /must be a SHA-256 fingerprint/);
    assert.match(text, /must name a tenant/);
  });

  it('a TLS key that does not match the certificate, or a missing file, stops the start with the path named', async () => {
    const pki = makePki();
    try {
      const stranger = pki.ca.issue('stranger');
      chmodSync(stranger.keyPath, 0o600);
      const resolver = createSecretResolver();
      await assert.rejects(
        loadPublicTls({ cert: pki.server.certPath, key: `file:${stranger.keyPath}`, clientAuth: 'require' }, resolver),
        /listen\.public_tls: the certificate, key or client CA bundle could not be used/,
      );
      await assert.rejects(
        loadPublicTls({ cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, clientCa: join(pki.dir, 'missing.pem'), clientAuth: 'require' }, resolver),
        /listen\.public_tls\.client_ca: cannot read .*missing\.pem \(ENOENT\)/,
      );
      const loaded = await loadPublicTls({ cert: pki.server.certPath, key: `file:${pki.server.keyPath}`, clientCa: pki.ca.certPath, clientAuth: 'optional' }, resolver);
      assert.equal(loaded.clientCa, pki.ca.cert);
    } finally {
      rmSync(pki.dir, { recursive: true, force: true });
    }
  });
});
