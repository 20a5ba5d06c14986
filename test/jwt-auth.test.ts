import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { postJson, startHarness, type Harness } from './helpers/harness.js';
import { configFromDocument } from '../src/config/load.js';

const IDP = 'https://idp.test.example';
const STATIC_IDP = 'https://static.test.example';
const HMAC_IDP = 'https://hmac.test.example';
const ROTATING_IDP = 'https://rotating.test.example';
// plainly fake HMAC secret, TEST ONLY
const FAKE_HMAC_SECRET = 'fake-jwt-hmac-secret-TEST-ONLY-00000000000000';
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };

interface JwksServer { url: string; keys: JWK[]; fetches: number; server: Server }

async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = { url: '', keys, fetches: 0, server: undefined as unknown as Server };
  state.server = createServer((_req, res) => {
    state.fetches += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}/jwks`;
  return state;
}

async function publicJwk(key: CryptoKey, kid: string, alg: string): Promise<Jwk> {
  return { ...(await exportJWK(key)), kid, alg, use: 'sig' };
}
type Jwk = JWK;

interface TokenOptions {
  alg?: string; kid?: string; iss?: string; aud?: string; exp?: number | string; nbf?: number; claims?: Record<string, unknown>;
}

async function sign(key: CryptoKey | Uint8Array, o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ tenant: 'acme', sub: 'user-1@example.test', ...(o.claims ?? {}) })
    .setProtectedHeader({ alg: o.alg ?? 'RS256', ...(o.kid !== undefined ? { kid: o.kid } : {}) })
    .setIssuer(o.iss ?? IDP).setAudience(o.aud ?? 'keywarden').setIssuedAt(now).setExpirationTime(o.exp ?? now + 300);
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
  return jwt.sign(key);
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('JWT (OIDC) tenants', () => {
  let h: Harness;
  let jwks: JwksServer;
  let rotating: JwksServer;
  let rsa: { privateKey: CryptoKey; publicKey: CryptoKey };
  let ec: { privateKey: CryptoKey; publicKey: CryptoKey };
  let stray: { privateKey: CryptoKey; publicKey: CryptoKey };
  let rotA: { privateKey: CryptoKey; publicKey: CryptoKey };
  let rotB: { privateKey: CryptoKey; publicKey: CryptoKey };
  let dir: string;
  const tokensSent: string[] = [];
  const send = async (token: string) => {
    tokensSent.push(token);
    return postJson(`${h.url}/v1/chat/completions`, token, CHAT);
  };

  before(async () => {
    rsa = await generateKeyPair('RS256', { extractable: true });
    ec = await generateKeyPair('ES256', { extractable: true });
    stray = await generateKeyPair('RS256', { extractable: true });
    rotA = await generateKeyPair('ES256', { extractable: true });
    rotB = await generateKeyPair('ES256', { extractable: true });
    jwks = await startJwksServer([await publicJwk(rsa.publicKey, 'rsa-1', 'RS256')]);
    rotating = await startJwksServer([await publicJwk(rotA.publicKey, 'rot-a', 'ES256')]);
    dir = mkdtempSync(join(tmpdir(), 'keywarden-jwt-'));
    const hmacFile = join(dir, 'hmac');
    writeFileSync(hmacFile, FAKE_HMAC_SECRET, { mode: 0o600 });
    h = await startHarness({
      config: {
        auth: {
          jwt: {
            issuers: [
              { issuer: IDP, jwks_url: jwks.url, audience: 'keywarden', algorithms: ['RS256'], subject_claim: 'sub', clock_skew: '30s', jwks_cooldown: '30s' },
              { issuer: STATIC_IDP, public_keys: [await exportSPKI(ec.publicKey)], audience: 'kw-static', algorithms: ['ES256'], tenant_claim: 'org' },
              { issuer: HMAC_IDP, hmac_secret: `file:${hmacFile}`, audience: 'keywarden', algorithms: ['HS256'] },
              { issuer: ROTATING_IDP, jwks_url: rotating.url, audience: 'keywarden', algorithms: ['ES256'], jwks_cooldown: '50ms' },
            ],
          },
        },
      },
    });
    await h.tenantKey('globex');
    await h.gateway.tenants.setTenantStatus('globex', 'disabled', 'test');
  });

  after(async () => {
    await h?.close();
    await new Promise((resolve) => jwks?.server.close(resolve));
    await new Promise((resolve) => rotating?.server.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function refused(token: string, code: string): Promise<void> {
    const before = h.mock.received.length;
    const res = await send(token);
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.error?.code, code);
    assert.equal(h.mock.received.length, before, 'the provider must not be called');
  }

  it('a valid JWKS-signed token reaches the provider as its tenant, recording the subject', async () => {
    const res = await send(await sign(rsa.privateKey, { kid: 'rsa-1' }));
    assert.equal(res.status, 200, res.text);
    assert.equal(h.mock.received.length > 0, true);
    await h.gateway.writer.flush();
    const audit = (await h.gateway.store.records.listAudit({ limit: 1000 })).filter((r) => r.action === 'request');
    const row = audit.at(-1);
    assert.ok(row);
    // the subject's own key id: issuer 0, a hash of the subject (never the token)
    const tenantId = (await h.gateway.store.tenants.getByName('acme'))?.id as string;
    const subjectKeyId = `jwt:0:${createHash('sha256').update(`${tenantId}\nuser-1@example.test`).digest('hex').slice(0, 16)}`;
    assert.equal(row.actor, `tenant-key:${subjectKeyId}`);
    assert.equal((row.details as Record<string, unknown>)['subject'], 'user-1@example.test');
    const line = h.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'request').at(-1);
    assert.equal(line?.['subject'], 'user-1@example.test');
    assert.equal(line?.['keyId'], subjectKeyId);
    // another subject of the same issuer gets another key id (its own key-level limits)
    const other = await send(await sign(rsa.privateKey, { kid: 'rsa-1', claims: { sub: 'user-2@example.test' } }));
    assert.equal(other.status, 200);
    await h.gateway.writer.flush();
    const otherRow = (await h.gateway.store.records.listAudit({ limit: 1000 })).filter((r) => r.action === 'request').at(-1);
    assert.equal(otherRow?.actor, `tenant-key:jwt:0:${createHash('sha256').update(`${tenantId}\nuser-2@example.test`).digest('hex').slice(0, 16)}`);
    assert.equal(line?.['tenant'], 'acme');
  });

  it('gives the same subject of another tenant another key id, so key-level limits are never shared across tenants (found in review)', async () => {
    await h.tenantKey('initech');
    const res = await send(await sign(rsa.privateKey, { kid: 'rsa-1', claims: { tenant: 'initech' } }));
    assert.equal(res.status, 200, res.text);
    await h.gateway.writer.flush();
    const rows = (await h.gateway.store.records.listAudit({ limit: 1000 })).filter((r) => r.action === 'request' && String(r.actor).startsWith('tenant-key:jwt:0:'));
    const acmeId = (await h.gateway.store.tenants.getByName('acme'))?.id as string;
    const initechId = (await h.gateway.store.tenants.getByName('initech'))?.id as string;
    const keyOf = (tenantId: string) => `tenant-key:jwt:0:${createHash('sha256').update(`${tenantId}\nuser-1@example.test`).digest('hex').slice(0, 16)}`;
    assert.notEqual(keyOf(acmeId), keyOf(initechId));
    assert.ok(rows.some((r) => r.actor === keyOf(initechId)), 'initech\'s request is recorded under its own key id');
    assert.ok(rows.some((r) => r.actor === keyOf(acmeId)), 'acme\'s requests keep theirs');
  });

  it('a static public key issuer with a custom tenant claim is accepted', async () => {
    const res = await send(await sign(ec.privateKey, { alg: 'ES256', iss: STATIC_IDP, aud: 'kw-static', claims: { org: 'acme', tenant: undefined } }));
    assert.equal(res.status, 200, res.text);
  });

  it('HS256 is accepted only for the issuer configured with a secret', async () => {
    const secret = new TextEncoder().encode(FAKE_HMAC_SECRET);
    assert.equal((await send(await sign(secret, { alg: 'HS256', iss: HMAC_IDP }))).status, 200);
    // the same secret is no key at all for the JWKS issuer: HS256 is not among its algorithms
    await refused(await sign(secret, { alg: 'HS256' }), 'auth_jwt_algorithm');
  });

  it('a token within the clock skew is accepted; an expired one is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await send(await sign(rsa.privateKey, { kid: 'rsa-1', exp: now - 5 }))).status, 200);
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', exp: now - 600 }), 'auth_jwt_expired');
  });

  it('a token not yet valid is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', nbf: now + 600, exp: now + 1200 }), 'auth_jwt_not_yet_valid');
  });

  it('a token from an untrusted issuer or for another audience is refused', async () => {
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', iss: 'https://evil.test.example' }), 'auth_jwt_issuer');
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', aud: 'someone-else' }), 'auth_jwt_audience');
  });

  it('alg none, a disallowed algorithm and a bad signature are refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: IDP, aud: 'keywarden', tenant: 'acme', exp: now + 300 };
    await refused(`${b64({ alg: 'none' })}.${b64(payload)}.`, 'auth_jwt_algorithm');
    await refused(await sign(ec.privateKey, { alg: 'ES256', kid: 'rsa-1' }), 'auth_jwt_algorithm');
    const good = await sign(rsa.privateKey, { kid: 'rsa-1' });
    const [head, , sig] = good.split('.');
    await refused(`${head}.${b64({ ...payload, tenant: 'globex-admin' })}.${sig}`, 'auth_jwt_invalid');
    await refused(`${head}.bm90LWpzb24.${sig}`, 'auth_jwt_invalid');
    // a token signed by a key the issuer never published under a known kid
    await refused(await sign(stray.privateKey, { kid: 'rsa-1' }), 'auth_jwt_invalid');
  });

  it('a token without exp is refused', async () => {
    const token = await new SignJWT({ tenant: 'acme' }).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setIssuer(IDP).setAudience('keywarden').sign(rsa.privateKey);
    await refused(token, 'auth_jwt_invalid');
  });

  it('a token naming an unknown tenant, or none, is refused; a disabled tenant is refused', async () => {
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', claims: { tenant: 'no-such-tenant' } }), 'auth_jwt_tenant_unknown');
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', claims: { tenant: 42 } }), 'auth_jwt_tenant_unknown');
    await refused(await sign(rsa.privateKey, { kid: 'rsa-1', claims: { tenant: 'globex' } }), 'auth_tenant_disabled');
  });

  it('a verified token is reused from the cache, which a tenant change empties at once', async () => {
    await h.tenantKey('jwt-cached');
    const token = await sign(rsa.privateKey, { kid: 'rsa-1', claims: { tenant: 'jwt-cached' } });
    assert.equal((await send(token)).status, 200);
    assert.equal((await send(token)).status, 200);
    await h.gateway.tenants.setTenantStatus('jwt-cached', 'disabled', 'test');
    await refused(token, 'auth_tenant_disabled');
    await h.gateway.tenants.setTenantStatus('jwt-cached', 'active', 'test');
    assert.equal((await send(token)).status, 200);
  });

  it('the cache is keyed by the whole token: a cached token with its signature altered is refused', async () => {
    const token = await sign(rsa.privateKey, { kid: 'rsa-1' });
    assert.equal((await send(token)).status, 200);
    const [head, payload, sig] = token.split('.') as [string, string, string];
    const flipped = `${head}.${payload}.${sig.slice(0, -2)}${sig.endsWith('AA') ? 'BB' : 'AA'}`;
    await refused(flipped, 'auth_jwt_invalid');
  });

  it('a flood of unknown kids does not refetch the JWKS within the cooldown', async () => {
    const before = jwks.fetches;
    assert.ok(before >= 1);
    for (let i = 0; i < 15; i++) await refused(await sign(stray.privateKey, { kid: `unknown-${i}` }), 'auth_jwt_key_unknown');
    assert.equal(jwks.fetches, before, 'the 30s cooldown bounds refetches');
  });

  it('an unknown kid triggers one JWKS refetch, which picks up a rotated key', async () => {
    assert.equal((await send(await sign(rotA.privateKey, { alg: 'ES256', iss: ROTATING_IDP, kid: 'rot-a' }))).status, 200);
    assert.equal(rotating.fetches, 1);
    rotating.keys = [...rotating.keys, await publicJwk(rotB.publicKey, 'rot-b', 'ES256')];
    await sleep(120); // past the 50ms cooldown
    const res = await send(await sign(rotB.privateKey, { alg: 'ES256', iss: ROTATING_IDP, kid: 'rot-b' }));
    assert.equal(res.status, 200, res.text);
    assert.equal(rotating.fetches, 2);
  });

  it('tenant keys still authenticate alongside JWTs', async () => {
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, CHAT)).status, 200);
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, 'kw_aaaaaaaaaaaaaaaa_not.a.jwt', CHAT)).json?.error?.code, 'auth_invalid_credentials');
  });

  it('no token ever appears in logs or audit rows', async () => {
    await h.gateway.writer.flush();
    const logText = h.logs.text();
    const auditText = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 10_000 }));
    const usageText = JSON.stringify(await h.gateway.store.records.listUsage({ limit: 10_000 }));
    assert.ok(tokensSent.length > 10);
    for (const token of tokensSent) {
      const signature = token.split('.')[2] ?? '';
      for (const text of [logText, auditText, usageText]) {
        assert.equal(text.includes(token), false);
        if (signature.length > 10) assert.equal(text.includes(signature), false);
      }
    }
  });
});

describe('JWT issuer configuration', () => {
  const base = {
    admin: { token: 'env:KW_FAKE_ADMIN' }, audit: { prompt_hmac_key: 'env:KW_FAKE_PROMPT' }, store: 'sqlite::memory:',
  };
  const problemsOf = (issuer: Record<string, unknown>): string => {
    try {
      configFromDocument({ ...base, auth: { jwt: { issuers: [issuer] } } }, 'test', {});
      return '';
    } catch (err) {
      return String((err as Error).message);
    }
  };

  it('refuses alg none, HS256 without a secret, and a plain-http JWKS off loopback', () => {
    assert.match(problemsOf({ issuer: IDP, jwks_url: 'https://idp.test.example/jwks', audience: 'a', algorithms: ['none'] }), /none is never allowed/);
    assert.match(problemsOf({ issuer: IDP, jwks_url: 'https://idp.test.example/jwks', audience: 'a', algorithms: ['HS256'] }), /HS256 needs hmac_secret/);
    assert.match(problemsOf({ issuer: IDP, jwks_url: 'http://idp.test.example/jwks', audience: 'a', algorithms: ['RS256'] }), /jwks_url/);
    assert.match(problemsOf({ issuer: IDP, audience: 'a', algorithms: ['RS256'] }), /jwks_url or public_keys/);
    // a well-formed issuer adds no problem of its own (the stub document lacks providers)
    assert.doesNotMatch(problemsOf({ issuer: IDP, jwks_url: 'https://idp.test.example/jwks', audience: 'a', algorithms: ['RS256'] }), /auth\.jwt/);
  });
});
