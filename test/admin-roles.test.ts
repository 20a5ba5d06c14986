import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, postJson, startHarness, type Harness } from './helpers/harness.js';
import type { AuditRow } from '../src/store/types.js';
import { findSecrets } from '../src/detect/detector.js';

/*
 * Role-based admin tokens: viewer < operator < admin, each issued to a named owner, optionally
 * scoped to tenants. Every route is tried with every role; a scoped token tries the other
 * tenant's ids on every route; every call, allowed or refused, leaves an audit row naming the
 * owner and never the token.
 */

let h: Harness;
const tokens: Record<string, { id: string; token: string }> = {};
let betaKeyId = '';
let acmeKeyId = '';

interface AdminResponse {
  status: number;
  text: string;
  json: any;
}

async function call(token: string | null, method: string, path: string, body?: unknown): Promise<AdminResponse> {
  const headers: Record<string, string> = {};
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${h.adminUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

async function issue(owner: string, role: string, tenants?: string[], extra: Record<string, unknown> = {}) {
  const res = await call(FAKE_ADMIN_TOKEN, 'POST', '/admin/tokens', { owner, role, ...(tenants ? { tenants } : {}), ...extra });
  assert.equal(res.status, 201, res.text);
  assert.match(res.json.token, /^kwa_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
  return { id: res.json.id as string, token: res.json.token as string };
}

async function auditRows(): Promise<AuditRow[]> {
  await h.gateway.writer.flush();
  return h.gateway.store.records.listAudit({ limit: 100_000 });
}

before(async () => {
  h = await startHarness({ config: { auth: { failure_limits: { enabled: false } } } });
  acmeKeyId = h.keyId;
  betaKeyId = (await h.tenantKey('beta')).id;
  tokens['viewer'] = await issue('vera viewer', 'viewer');
  tokens['operator'] = await issue('otto.operator@example.test', 'operator');
  tokens['admin'] = await issue('ada-admin', 'admin');
  tokens['scopedOperator'] = await issue('acme-ops-bot', 'operator', ['acme']);
  tokens['scopedViewer'] = await issue('acme-dashboard', 'viewer', ['acme']);
  tokens['scopedAdmin'] = await issue('acme-lead', 'admin', ['acme']);
});
after(async () => {
  await h.close();
});

describe('admin tokens', () => {
  it('are stored only as a keyed hash', async () => {
    const db = readFileSync(join(h.dir, 'keywarden.db')).toString('latin1') + readFileSync(join(h.dir, 'keywarden.db-wal')).toString('latin1');
    for (const { token, id } of Object.values(tokens)) {
      const secret = token.slice(21);
      assert.ok(!db.includes(secret), 'an admin token secret is in the database file');
      assert.ok(db.includes(id), 'the token id should be stored');
    }
  });

  it('whoami names the owner, role and scope', async () => {
    const res = await call(tokens['scopedOperator']!.token, 'GET', '/admin/whoami');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { token_id: tokens['scopedOperator']!.id, owner: 'acme-ops-bot', role: 'operator', tenants: ['acme'] });
    const boot = await call(FAKE_ADMIN_TOKEN, 'GET', '/admin/whoami');
    assert.deepEqual(boot.json, { token_id: 'config', owner: 'admin.token', role: 'admin', tenants: null });
  });

  it('list shows owners, roles and scopes but no secret', async () => {
    const res = await call(tokens['admin']!.token, 'GET', '/admin/tokens');
    assert.equal(res.status, 200);
    const scoped = res.json.data.find((t: any) => t.id === tokens['scopedViewer']!.id);
    assert.deepEqual({ owner: scoped.owner, role: scoped.role, tenants: scoped.tenants, status: scoped.status }, { owner: 'acme-dashboard', role: 'viewer', tenants: ['acme'], status: 'active' });
    for (const { token } of Object.values(tokens)) assert.ok(!res.text.includes(token.slice(21)));
  });

  it('refuses bad issue requests with a clear 400 or 404', async () => {
    const admin = tokens['admin']!.token;
    assert.equal((await call(admin, 'POST', '/admin/tokens', { owner: 'x', role: 'root' })).json.error.code, 'admin_invalid_request');
    assert.equal((await call(admin, 'POST', '/admin/tokens', { role: 'viewer' })).json.error.code, 'admin_invalid_request');
    assert.equal((await call(admin, 'POST', '/admin/tokens', { owner: 'x', role: 'viewer', tenants: [] })).json.error.code, 'admin_invalid_request');
    assert.equal((await call(admin, 'POST', '/admin/tokens', { owner: 'x', role: 'viewer', tenants: 'acme' })).json.error.code, 'admin_invalid_request');
    assert.equal((await call(admin, 'POST', '/admin/tokens', { owner: 'x', role: 'viewer', expires_in: 'soon' })).json.error.code, 'admin_invalid_request');
    const unknown = await call(admin, 'POST', '/admin/tokens', { owner: 'x', role: 'viewer', tenants: ['nobody'] });
    assert.equal(unknown.status, 404);
  });

  it('a revoked token is refused at once; an expired one too', async () => {
    const doomed = await issue('temp-person', 'viewer');
    assert.equal((await call(doomed.token, 'GET', '/admin/tenants')).status, 200);
    const revoked = await call(tokens['admin']!.token, 'POST', `/admin/tokens/${doomed.id}/revoke`);
    assert.equal(revoked.status, 200);
    assert.equal(revoked.json.status, 'revoked');
    const after = await call(doomed.token, 'GET', '/admin/tenants');
    assert.equal(after.status, 401);
    assert.equal(after.json.error.code, 'admin_unauthorized');

    const shortLived = await issue('short-lived', 'viewer', undefined, { expires_in: '1s' });
    assert.equal((await call(shortLived.token, 'GET', '/admin/tenants')).status, 200);
    await new Promise((r) => setTimeout(r, 1_100));
    assert.equal((await call(shortLived.token, 'GET', '/admin/tenants')).status, 401);
  });

  it('a token with a wrong secret for a real id is refused like any wrong token', async () => {
    const real = tokens['admin']!;
    const forged = `kwa_${real.id}_${'A'.repeat(43)}`;
    const res = await call(forged, 'GET', '/admin/tenants');
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'admin_unauthorized');
  });
});

/** One call per route: [method, path, body, least role, global (refused to scoped tokens)]. */
function routeTable(): Array<[string, string, unknown, 'viewer' | 'operator' | 'admin', boolean]> {
  return [
    ['GET', '/metrics', undefined, 'viewer', true],
    ['GET', '/admin/whoami', undefined, 'viewer', false],
    ['GET', '/admin/tenants', undefined, 'viewer', false],
    ['GET', '/admin/tenants/acme', undefined, 'viewer', false],
    ['GET', '/admin/keys', undefined, 'viewer', false],
    ['GET', '/admin/usage', undefined, 'viewer', false],
    ['GET', '/admin/audit?limit=5', undefined, 'viewer', false],
    ['POST', '/admin/tenants', { name: `t-${Math.random().toString(36).slice(2, 10)}` }, 'operator', true],
    ['POST', '/admin/tenants/acme/enable', undefined, 'operator', false],
    ['PUT', '/admin/tenants/acme/policy', { policy: null }, 'operator', false],
    ['PUT', '/admin/tenants/acme/limits', { limits: { requests_per_minute: 100_000 } }, 'operator', false],
    ['POST', '/admin/tenants/acme/keys', { label: 'matrix' }, 'operator', false],
    ['PUT', `/admin/keys/${acmeKeyId}/limits`, { limits: null }, 'operator', false],
    ['GET', '/admin/tokens', undefined, 'admin', true],
    ['GET', '/admin/incidents', undefined, 'admin', true],
  ];
}

describe('roles', () => {
  const roleRank = { viewer: 0, operator: 1, admin: 2 } as const;
  for (const holder of ['viewer', 'operator', 'admin', 'scopedViewer', 'scopedOperator', 'scopedAdmin'] as const) {
    it(`${holder}: allowed exactly the routes of its role and scope`, async () => {
      const role = (holder.startsWith('scoped') ? holder.slice(6).toLowerCase() : holder) as 'viewer' | 'operator' | 'admin';
      const scoped = holder.startsWith('scoped');
      for (const [method, path, body, least, global] of routeTable()) {
        const res = await call(tokens[holder]!.token, method, path, body);
        const allowed = roleRank[role] >= roleRank[least] && !(scoped && global);
        if (allowed) assert.ok(res.status < 400, `${holder} ${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
        else {
          assert.equal(res.status, 403, `${holder} ${method} ${path} should be refused: ${res.status}`);
          assert.equal(res.json.error.code, 'admin_forbidden');
        }
      }
    });
  }

  it('a viewer cannot revoke a key or contain an incident; the key keeps working', async () => {
    const revoke = await call(tokens['viewer']!.token, 'POST', `/admin/keys/${acmeKeyId}/revoke`);
    assert.equal(revoke.status, 403);
    const contain = await call(tokens['operator']!.token, 'POST', '/admin/incidents/contain', { tenant_key: acmeKeyId });
    assert.equal(contain.status, 403);
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'still fine' }] });
    assert.equal(res.status, 200);
  });

  it('only an unscoped admin issues admin tokens', async () => {
    for (const holder of ['operator', 'scopedAdmin'] as const) {
      const res = await call(tokens[holder]!.token, 'POST', '/admin/tokens', { owner: 'escalation', role: 'admin' });
      assert.equal(res.status, 403, holder);
    }
  });
});

describe('tenant scope', () => {
  /** Every route naming a tenant or key, aimed at tenant beta, by tokens scoped to acme. */
  function otherTenantRoutes(): Array<[string, string, unknown?]> {
    return [
      ['GET', '/admin/tenants/beta'],
      ['POST', '/admin/tenants/beta/disable'],
      ['POST', '/admin/tenants/beta/enable'],
      ['PUT', '/admin/tenants/beta/policy', { policy: { tools: true } }],
      ['PUT', '/admin/tenants/beta/limits', { limits: { requests_per_minute: 1 } }],
      ['POST', '/admin/tenants/beta/keys', {}],
      ['GET', '/admin/keys?tenant=beta'],
      ['PUT', `/admin/keys/${betaKeyId}/limits`, { limits: { requests_per_minute: 1 } }],
      ['POST', `/admin/keys/${betaKeyId}/revoke`],
      ['GET', '/admin/usage?tenant=beta'],
      ['GET', '/admin/audit?tenant=beta'],
      ['POST', '/admin/incidents/contain', { tenant: 'beta' }],
      ['POST', '/admin/incidents/contain', { tenant_key: betaKeyId }],
    ];
  }

  for (const holder of ['scopedViewer', 'scopedOperator', 'scopedAdmin'] as const) {
    it(`${holder} never reaches tenant beta, whatever ids it sends`, async () => {
      for (const [method, path, body] of otherTenantRoutes()) {
        const res = await call(tokens[holder]!.token, method, path, body);
        // a tenant outside the scope looks exactly like one that does not exist (or the role is short)
        assert.ok(res.status === 404 || res.status === 403, `${holder} ${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
        if (res.status === 404) assert.equal(res.json.error.code, 'admin_not_found');
        assert.ok(!res.text.includes(betaKeyId) || path.includes(betaKeyId) === false, 'the answer names beta\'s key');
      }
      // beta is untouched: its key still works, its tenant is active
      const beta = await h.gateway.store.tenants.getByName('beta');
      assert.equal(beta?.status, 'active');
      assert.equal((await h.gateway.store.keys.get(betaKeyId))?.revokedAt, null);
    });
  }

  it('lists and reports show only the scope', async () => {
    // usage for both tenants
    const beta = await h.tenantKey('beta');
    for (const key of [h.key, beta.key]) {
      assert.equal((await postJson(`${h.url}/v1/chat/completions`, key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count me' }] })).status, 200);
    }
    await h.gateway.writer.flush();
    const token = tokens['scopedViewer']!.token;
    const tenants = await call(token, 'GET', '/admin/tenants');
    assert.deepEqual(tenants.json.data.map((t: any) => t.name), ['acme']);
    const keys = await call(token, 'GET', '/admin/keys');
    assert.ok(keys.json.data.length > 0);
    assert.ok(keys.json.data.every((k: any) => k.tenant === 'acme'));
    const usage = await call(token, 'GET', '/admin/usage?since=1h');
    assert.equal(usage.status, 200);
    assert.ok(usage.json.data.length > 0);
    assert.ok(usage.json.data.every((u: any) => u.tenant === 'acme'), usage.text);
    const audit = await call(token, 'GET', '/admin/audit?limit=1000');
    assert.equal(audit.status, 200);
    const betaId = (await h.gateway.store.tenants.getByName('beta'))!.id;
    const acmeId = (await h.gateway.store.tenants.getByName('acme'))!.id;
    assert.ok(audit.json.data.length > 0);
    assert.ok(audit.text.includes(acmeId));
    assert.ok(!audit.text.includes(betaId), 'a scoped audit page shows a row of another tenant');
    // an unscoped viewer sees both
    const all = await call(tokens['viewer']!.token, 'GET', '/admin/usage?since=1h');
    assert.deepEqual([...new Set(all.json.data.map((u: any) => u.tenant))].sort(), ['acme', 'beta']);
    const allAudit = await call(tokens['viewer']!.token, 'GET', '/admin/audit?limit=1000');
    assert.ok(allAudit.text.includes(betaId));
  });

  it('a scoped operator manages its own tenant', async () => {
    const token = tokens['scopedOperator']!.token;
    const key = await call(token, 'POST', '/admin/tenants/acme/keys', { label: 'scoped' });
    assert.equal(key.status, 201);
    const revoked = await call(token, 'POST', `/admin/keys/${key.json.id}/revoke`);
    assert.equal(revoked.status, 200);
    assert.equal(revoked.json.status, 'revoked');
  });

  it('a scoped admin contains its own tenant key but not a provider key', async () => {
    const victim = await h.tenantKey('acme');
    const token = tokens['scopedAdmin']!.token;
    const contained = await call(token, 'POST', '/admin/incidents/contain', { tenant_key: victim.id });
    assert.equal(contained.status, 201, contained.text);
    const provider = await call(token, 'POST', '/admin/incidents/contain', { provider_key: 'sha256:0000' });
    assert.equal(provider.status, 403);
    assert.equal(provider.json.error.code, 'admin_forbidden');
  });
});

describe('admin audit', () => {
  it('every call, allowed or refused, is an audit row naming the owner, never the token', async () => {
    const marker = `audit-${Date.now()}`;
    await call(tokens['viewer']!.token, 'GET', `/admin/tenants`);
    await call(tokens['viewer']!.token, 'POST', '/admin/tenants', { name: marker });
    await call('kwa_0000000000000000_' + 'B'.repeat(43), 'GET', '/admin/tenants');
    await call(null, 'GET', '/admin/keys');
    const rows = (await auditRows()).filter((r) => r.action === 'admin.call');
    const byViewer = rows.filter((r) => r.actor === 'admin:vera viewer');
    const allowed = byViewer.find((r) => r.target === '/admin/tenants' && r.details['method'] === 'GET' && r.outcome === 'success');
    assert.ok(allowed, 'no audit row for the allowed call');
    assert.equal(allowed.details['token_id'], tokens['viewer']!.id);
    assert.equal(allowed.details['role'], 'viewer');
    const refused = byViewer.find((r) => r.target === '/admin/tenants' && r.details['method'] === 'POST');
    assert.ok(refused, 'no audit row for the refused call');
    assert.equal(refused.outcome, 'failure');
    assert.equal(refused.details['status'], 403);
    assert.equal(refused.details['code'], 'admin_forbidden');
    const unauthenticated = rows.filter((r) => r.actor === 'admin:unauthenticated');
    assert.ok(unauthenticated.some((r) => r.details['token_id'] === '0000000000000000' && r.details['code'] === 'admin_unauthorized'));
    assert.ok(unauthenticated.some((r) => r.target === '/admin/keys' && r.details['token_id'] === null));
    // changes made through the API name the owner too
    const issuedByAdmin = (await auditRows()).filter((r) => r.action === 'admin_token.issue' && r.actor === 'admin:admin.token');
    assert.ok(issuedByAdmin.length >= 6);
    const text = JSON.stringify(await auditRows()) + h.logs.text();
    for (const [holder, { token }] of Object.entries(tokens)) {
      const secret = token.slice(21);
      const at = text.indexOf(secret);
      assert.ok(at < 0, `the ${holder} token's secret reached the audit trail or logs: …${text.slice(Math.max(0, at - 120), at).replaceAll(secret, '<secret>')}`);
    }
    assert.ok(!text.includes(FAKE_ADMIN_TOKEN));
    // and the project's own detectors find no admin token there either (not only the exact strings)
    assert.deepEqual(findSecrets(text).filter((f) => f.ruleId.startsWith('keywarden-')).map((f) => f.ruleId), []);
  });

  it('the detectors recognise an issued admin token, so scans and the log scrubber catch one', () => {
    const token = tokens['viewer']!.token;
    assert.deepEqual(findSecrets(`export KEYWARDEN_ADMIN_TOKEN=${token}`).map((f) => f.ruleId), ['keywarden-issued-admin-token']);
    h.gateway.logger.info({ note: `pasted ${token}` }, 'a careless line');
    h.gateway.logger.flush();
    assert.ok(h.logs.text().includes('a careless line'), 'the line was not written');
    assert.ok(!h.logs.text().includes(token.slice(21)), 'the logger let an admin token through');
  });
});
