import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, postJson, startHarness, type Harness } from './helpers/harness.js';
import { AUDIT_GENESIS, chainHash } from '../src/store/audit-chain.js';

let h: Harness;

before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

interface AdminResponse {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** Calls the admin API; `token: null` sends no Authorization header at all. */
async function admin(method: string, path: string, body?: unknown, token: string | null = FAKE_ADMIN_TOKEN, rawAuthorization?: string): Promise<AdminResponse> {
  const headers: Record<string, string> = {};
  if (rawAuthorization !== undefined) headers['authorization'] = rawAuthorization;
  else if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${h.adminUrl}${path}`, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const chat = (content = 'hello') => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

/** Every route the admin API serves, plus some it does not. */
const ROUTES: Array<[string, string, unknown?]> = [
  ['GET', '/admin/tenants'],
  ['POST', '/admin/tenants', { name: 'sneaky' }],
  ['GET', '/admin/tenants/acme'],
  ['POST', '/admin/tenants/acme/disable'],
  ['POST', '/admin/tenants/acme/enable'],
  ['PUT', '/admin/tenants/acme/policy', { policy: { tools: true } }],
  ['POST', '/admin/tenants/acme/keys', {}],
  ['GET', '/admin/keys'],
  ['POST', '/admin/keys/0000000000000000/revoke'],
  // routes that do not exist: still 401 first
  ['GET', '/admin/nothing-here'],
  ['DELETE', '/admin/tenants/acme'],
  ['GET', '/'],
  ['GET', '/metrics'],
  ['GET', '/admin/../admin/tenants'],
  ['GET', '/admin//tenants'],
  ['GET', '/ADMIN/TENANTS'],
];

describe('admin API authentication (deny by default)', () => {
  it('answers 401 admin_unauthorized without a token on every route, known or not, and changes nothing', async () => {
    const tenantsBefore = (await h.gateway.tenants.listTenants()).map((t) => `${t.name}:${t.status}`);
    const auditBefore = (await h.gateway.store.records.listAudit({ limit: 10_000 })).length;
    for (const [method, path, body] of ROUTES) {
      const res = await admin(method, path, body, null);
      assert.equal(res.status, 401, `${method} ${path} → ${res.status}`);
      assert.equal(res.json?.error?.code, 'admin_unauthorized', `${method} ${path}`);
      assert.ok(res.headers.get('x-request-id'), 'every answer carries a request id');
    }
    assert.deepEqual((await h.gateway.tenants.listTenants()).map((t) => `${t.name}:${t.status}`), tenantsBefore);
    assert.equal(await h.gateway.store.tenants.getByName('sneaky'), undefined);
    // nothing changed: the only new audit rows are the refused calls themselves
    await h.gateway.writer.flush();
    const added = (await h.gateway.store.records.listAudit({ limit: 10_000 })).slice(auditBefore);
    assert.equal(added.length, ROUTES.length);
    assert.ok(added.every((r) => r.action === 'admin.call' && r.outcome === 'failure' && r.actor === 'admin:unauthenticated'));
  });

  it('answers 401 for a wrong token, a token with extra characters, a prefix of it, or another scheme', async () => {
    const wrong = [
      { token: 'fake-admin-token-TEST-ONLY-wrong-0000000' }, // fake, TEST ONLY
      { token: `${FAKE_ADMIN_TOKEN}x` },
      { token: FAKE_ADMIN_TOKEN.slice(0, -1) },
      { raw: `Basic ${Buffer.from(`admin:${FAKE_ADMIN_TOKEN}`).toString('base64')}` },
      { raw: FAKE_ADMIN_TOKEN },
      { raw: `Bearer ${FAKE_ADMIN_TOKEN} extra` },
      { raw: 'Bearer' },
      { raw: "Bearer ' OR 1=1 --" },
    ];
    for (const attempt of wrong) {
      for (const [method, path, body] of [ROUTES[0], ROUTES[1], ROUTES[9]] as Array<[string, string, unknown?]>) {
        const res = 'raw' in attempt ? await admin(method, path, body, null, attempt.raw) : await admin(method, path, body, attempt.token);
        assert.equal(res.status, 401, `${JSON.stringify(attempt)} on ${method} ${path}`);
        assert.equal(res.json?.error?.code, 'admin_unauthorized');
        assert.ok(!res.text.includes(FAKE_ADMIN_TOKEN.slice(0, 20)), 'the answer echoes the token');
      }
    }
    assert.equal(await h.gateway.store.tenants.getByName('sneaky'), undefined);
  });

  it('answers 404 admin_not_found for an unknown route once the token is valid', async () => {
    for (const [method, path] of [['GET', '/admin/nothing-here'], ['DELETE', '/admin/tenants/acme'], ['GET', '/']]) {
      const res = await admin(method as string, path as string);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.json?.error?.code, 'admin_not_found');
    }
  });

  it('a tenant key is not an admin token', async () => {
    const res = await admin('GET', '/admin/tenants', undefined, h.key);
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'admin_unauthorized');
  });

  it('the admin token is not a tenant key on the public listener', async () => {
    h.mock.reset();
    const res = await postJson(`${h.url}/v1/chat/completions`, FAKE_ADMIN_TOKEN, chat());
    assert.equal(res.status, 401);
    assert.equal(res.json?.error?.code, 'auth_invalid_credentials');
    assert.equal(h.mock.received.length, 0);
  });
});

describe('admin API tenants and keys', () => {
  const issuedKeys: string[] = [];

  it('creates a tenant (201) and lists it', async () => {
    const res = await admin('POST', '/admin/tenants', { name: 'globex' });
    assert.equal(res.status, 201);
    assert.equal(res.json.name, 'globex');
    assert.equal(res.json.status, 'active');
    assert.match(res.json.id, /^t_[0-9a-f]{16}$/);
    const list = await admin('GET', '/admin/tenants');
    assert.equal(list.status, 200);
    const names = (list.json.data as Array<{ name: string }>).map((t) => t.name);
    assert.ok(names.includes('globex') && names.includes('acme'));
    const one = await admin('GET', '/admin/tenants/globex');
    assert.equal(one.status, 200);
    assert.equal(one.json.id, res.json.id);
  });

  it('refuses a duplicate tenant with 409 admin_conflict', async () => {
    const res = await admin('POST', '/admin/tenants', { name: 'globex' });
    assert.equal(res.status, 409);
    assert.equal(res.json.error.code, 'admin_conflict');
  });

  it('refuses invalid tenant names and bodies with 400 admin_invalid_request', async () => {
    for (const body of [{ name: 'Globex' }, { name: 'has space' }, { name: '' }, { name: '-leading' }, { name: 'x'.repeat(64) },
      { name: '../etc' }, { name: 42 }, {}, [], 'null']) {
      const res = await admin('POST', '/admin/tenants', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status}`);
      assert.equal(res.json?.error?.code, 'admin_invalid_request', JSON.stringify(body));
    }
    const bad = await admin('POST', '/admin/tenants', '{not json');
    assert.equal(bad.status, 400);
    assert.equal(bad.json?.error?.code, 'admin_invalid_request');
  });

  it('refuses a tenant created with an invalid policy, listing the problem', async () => {
    const res = await admin('POST', '/admin/tenants', { name: 'initech', policy: { max_body_bytes: 'huge' } });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.code, 'admin_invalid_request');
    assert.match(res.json.error.message, /policy\.max_body_bytes/);
    assert.equal(await h.gateway.store.tenants.getByName('initech'), undefined);
  });

  it('answers 404 admin_not_found for an unknown tenant', async () => {
    const res = await admin('POST', '/admin/tenants/nobody/keys', {});
    assert.equal(res.status, 404);
    assert.equal(res.json.error.code, 'admin_not_found');
  });

  let issuedId = '';
  it('issues a key with expires_in and label: 201, no-store, the key exactly once', async () => {
    const before = Date.now();
    const res = await admin('POST', '/admin/tenants/globex/keys', { expires_in: '7d', label: 'ci runner' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const key = res.json.key as string;
    assert.match(key, /^kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    issuedKeys.push(key);
    issuedId = res.json.id;
    assert.equal(key.split('_')[1], issuedId);
    assert.equal(res.text.split(key).length - 1, 1, 'the key appears more than once');
    const secret = key.slice(key.indexOf('_', 3) + 1);
    assert.equal(res.text.split(secret).length - 1, 1, 'the secret appears outside the key');
    assert.equal(res.json.tenant, 'globex');
    assert.equal(res.json.label, 'ci runner');
    assert.equal(res.json.status, 'active');
    const expires = Date.parse(res.json.expires_at);
    const sevenDays = 7 * 86_400_000;
    assert.ok(expires >= before + sevenDays && expires <= Date.now() + sevenDays, `expires_at ${res.json.expires_at}`);
    // and the key works
    const call = await postJson(`${h.url}/v1/chat/completions`, key, chat());
    assert.equal(call.status, 200);
  });

  it('issues a key without a body', async () => {
    const res = await fetch(`${h.adminUrl}/admin/tenants/globex/keys`, { method: 'POST', headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` } });
    assert.equal(res.status, 201);
    const body = (await res.json()) as { key: string; expires_at: unknown; label: unknown };
    assert.equal(body.expires_at, null);
    assert.equal(body.label, null);
    issuedKeys.push(body.key);
  });

  it('refuses a bad expires_in or label with 400', async () => {
    for (const body of [{ expires_in: 'soon' }, { expires_in: 30 }, { expires_in: '0d' }, { label: 7 }, { label: 'x'.repeat(65) }, { label: 'no/slashes' }]) {
      const res = await admin('POST', '/admin/tenants/globex/keys', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.json.error.code, 'admin_invalid_request');
    }
  });

  it('lists keys without secrets or hashes', async () => {
    const res = await admin('GET', '/admin/keys?tenant=globex');
    assert.equal(res.status, 200);
    const keys = res.json.data as Array<Record<string, unknown>>;
    assert.equal(keys.length, 2);
    for (const k of keys) {
      for (const field of ['id', 'tenant', 'status', 'label', 'created_at', 'expires_at', 'revoked_at']) assert.ok(field in k, `no ${field}`);
      const forbidden = Object.keys(k).filter((name) => /^(key|secret)$|secret|hash/i.test(name));
      assert.deepEqual(forbidden, [], 'a key listing carries a secret-bearing field');
    }
    const all = await admin('GET', '/admin/keys');
    for (const text of [res.text, all.text]) {
      for (const key of [...issuedKeys, h.key]) {
        assert.ok(!text.includes(key));
        assert.ok(!text.includes(key.slice(key.indexOf('_', 3) + 1)), 'a key secret is listed');
      }
      for (const record of await h.gateway.store.keys.list()) assert.ok(!text.includes(record.secretHash), 'a key hash is listed');
      assert.doesNotMatch(text, /[0-9a-f]{64}/);
      assert.doesNotMatch(text, /secret|hash/i);
    }
    assert.ok((all.json.data as Array<{ id: string }>).some((k) => k.id === h.keyId));
  });

  it('revokes a key, which is refused by the public listener at once', async () => {
    const res = await admin('POST', `/admin/keys/${issuedId}/revoke`);
    assert.equal(res.status, 200);
    assert.equal(res.json.id, issuedId);
    assert.equal(res.json.status, 'revoked');
    assert.ok(res.json.revoked_at);
    h.mock.reset();
    const call = await postJson(`${h.url}/v1/chat/completions`, issuedKeys[0], chat());
    assert.equal(call.status, 401);
    assert.equal(call.json.error.code, 'auth_key_revoked');
    assert.equal(h.mock.received.length, 0);
    // revoking twice is harmless
    const again = await admin('POST', `/admin/keys/${issuedId}/revoke`);
    assert.equal(again.status, 200);
    assert.equal(again.json.revoked_at, res.json.revoked_at);
    const missing = await admin('POST', '/admin/keys/zzzzzzzzzzzzzzzz/revoke');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'admin_not_found');
  });

  it('disables and enables a tenant', async () => {
    const disabled = await admin('POST', '/admin/tenants/globex/disable');
    assert.equal(disabled.status, 200);
    assert.equal(disabled.json.status, 'disabled');
    h.mock.reset();
    const refused = await postJson(`${h.url}/v1/chat/completions`, issuedKeys[1], chat());
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error.code, 'auth_tenant_disabled');
    assert.equal(h.mock.received.length, 0);
    const enabled = await admin('POST', '/admin/tenants/globex/enable');
    assert.equal(enabled.status, 200);
    assert.equal(enabled.json.status, 'active');
    const ok = await postJson(`${h.url}/v1/chat/completions`, issuedKeys[1], chat());
    assert.equal(ok.status, 200);
  });

  it('sets a policy that takes effect, and refuses an invalid one listing each problem', async () => {
    const bad = await admin('PUT', '/admin/tenants/globex/policy', { policy: { models: 'fast', max_output_tokens: 0, allow_everything: true } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'admin_invalid_request');
    for (const path of ['policy.models', 'policy.max_output_tokens', 'policy.allow_everything']) {
      assert.match(bad.json.error.message, new RegExp(path.replace('.', '\\.')), `message lacks ${path}`);
    }
    assert.equal((await h.gateway.store.tenants.getByName('globex'))?.policy, null, 'an invalid policy was stored');

    const good = await admin('PUT', '/admin/tenants/globex/policy', { policy: { models: ['fast'] } });
    assert.equal(good.status, 200);
    assert.deepEqual(good.json.policy, { models: ['fast'] });
    h.mock.reset();
    const refused = await postJson(`${h.url}/v1/chat/completions`, issuedKeys[1], chat());
    assert.equal(refused.status, 403);
    assert.equal(refused.json.error.code, 'policy_model_not_allowed');
    assert.equal(h.mock.received.length, 0);
    const allowed = await postJson(`${h.url}/v1/chat/completions`, issuedKeys[1], { ...chat(), model: 'fast' });
    assert.equal(allowed.status, 200);

    const cleared = await admin('PUT', '/admin/tenants/globex/policy', { policy: null });
    assert.equal(cleared.status, 200);
    assert.equal(cleared.json.policy, null);
  });

  it('records each action in the audit chain as admin:<owner>, with ids and never a key', async () => {
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listAudit({ limit: 10_000 });
    const globex = await h.gateway.store.tenants.getByName('globex');
    assert.ok(globex);
    // the changes themselves (each admin call has its own `admin.call` row besides)
    const mine = rows.filter((r) => r.actor === 'admin:admin.token' && r.action !== 'admin.call');
    const actions = mine.map((r) => r.action);
    for (const action of ['tenant.create', 'key.issue', 'key.revoke', 'tenant.disable', 'tenant.enable', 'tenant.policy']) {
      assert.ok(actions.includes(action), `no admin audit row for ${action}`);
    }
    // refused attempts changed nothing, so they left no success rows
    assert.equal(mine.filter((r) => r.action === 'tenant.create').length, 1);
    assert.equal(mine.filter((r) => r.action === 'key.revoke').length, 1, 'a second revoke of the same key was audited as a change');
    assert.equal(mine.filter((r) => r.action === 'tenant.policy').length, 2);

    const create = mine.find((r) => r.action === 'tenant.create');
    assert.equal(create?.target, globex.id);
    const issue = mine.find((r) => r.action === 'key.issue' && r.target === issuedId);
    assert.ok(issue, 'the key.issue row names the key id');
    assert.equal(issue.details['tenant'], globex.id);
    const revoke = mine.find((r) => r.action === 'key.revoke');
    assert.equal(revoke?.target, issuedId);
    for (const r of mine) assert.equal(r.outcome, 'success');

    const text = JSON.stringify(rows);
    const records = await h.gateway.store.keys.list();
    for (const key of [...issuedKeys, h.key]) {
      assert.ok(!text.includes(key), 'an audit row holds a key');
      assert.ok(!text.includes(key.slice(key.indexOf('_', 3) + 1)), 'an audit row holds a key secret');
    }
    for (const record of records) assert.ok(!text.includes(record.secretHash), 'an audit row holds a key hash');
    assert.ok(!text.includes(FAKE_ADMIN_TOKEN));
  });

  it('links the audit chain: each row hashes its predecessor', async () => {
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listAudit({ limit: 10_000 });
    assert.ok(rows.length > 5);
    assert.equal(rows[0]?.seq, 1);
    assert.equal(rows[0]?.prevHash, AUDIT_GENESIS);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const { seq, prevHash, hash, ...event } = row;
      assert.match(hash, /^[0-9a-f]{64}$/);
      assert.equal(chainHash(prevHash, seq, event), hash, `row ${seq} does not hash to its stored hash`);
      const next = rows[i + 1];
      if (next) {
        assert.equal(next.seq, seq + 1);
        assert.equal(next.prevHash, hash, `row ${next.seq} does not link to row ${seq}`);
      }
    }
  });
});
