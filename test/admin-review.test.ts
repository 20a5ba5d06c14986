import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import type { AuditRow } from '../src/store/types.js';

/*
 * Security review of the admin listener's additions (dashboard, audit filters, audit
 * verify/export, the audit row of an abandoned call): the `public` marker reaches the dashboard's
 * static files and nothing else, whatever the path's spelling or method; every answer under
 * /dashboard (errors included) carries the dashboard's headers; and an admin change whose client
 * hangs up before the answer is still audited, once.
 */

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const PUBLIC_FILES = ['/dashboard', '/dashboard/dashboard.js', '/dashboard/dashboard.css', '/dashboard/favicon.svg'];

let h: Harness;
let port = 0;

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request with the path sent exactly as written (no URL normalisation by the client). */
function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: { connection: 'close', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function auditRows(): Promise<AuditRow[]> {
  await h.gateway.writer.flush();
  return h.gateway.store.records.listAudit({ limit: 100_000 });
}

before(async () => {
  h = await startHarness();
  port = Number(new URL(h.adminUrl).port);
});

after(async () => {
  await h?.close();
});

describe('the public marker reaches the dashboard files only', () => {
  it('refuses every other spelling, method and neighbour of the dashboard paths without a token', async () => {
    const paths = [
      '/dashboard/../admin/tenants', '/dashboard/%2e%2e/admin/tenants', '/dashboard%2f..%2fadmin%2ftenants', '/dashboard%2F',
      '/dashboard/x', '/Dashboard', '/DASHBOARD/dashboard.js', '/dashboard//', '//dashboard/', '/dashboard/dashboard.js/',
      '/dashboard;/admin/tenants', '/dashboard/.', '/./dashboard', '/admin/../dashboard', '/dashboard\\..\\admin\\tenants',
      '/dashboard/dashboard.js%00', '/dashboardx',
    ];
    for (const path of paths) {
      const res = await raw('GET', path);
      assert.ok(res.status === 401 || res.status === 400, `${path} answered ${res.status}`);
      assert.ok(!/"data"|t_[0-9a-f]{16}|acme/.test(res.body), `${path} answered data`);
    }
    for (const method of ['HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const path of [...PUBLIC_FILES, '/dashboard/']) {
        const res = await raw(method, path, method === 'GET' || method === 'HEAD' ? {} : { 'content-length': '0' });
        assert.equal(res.status, 401, `${method} ${path}`);
      }
    }
  });

  it('redirects /dashboard/ to a relative location whatever the Host header or query says', async () => {
    for (const [path, host] of [['/dashboard/', 'evil.example'], ['/dashboard/?next=//evil.example', `127.0.0.1:${port}`], ['/dashboard/', '']] as const) {
      const res = await raw('GET', path, { host });
      assert.equal(res.status, 308);
      assert.equal(res.headers['location'], '../dashboard');
      assert.equal(res.headers['content-security-policy'], CSP);
    }
  });
});

describe('headers of every answer under /dashboard', () => {
  it('sends the dashboard headers on refusals, not-found and unreadable URLs under /dashboard too', async () => {
    const cases: Array<[string, string, Record<string, string>, number]> = [
      ['GET', '/dashboard/x', {}, 401],
      ['GET', '/dashboard/x', { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` }, 404],
      ['GET', '/dashboard%2f..%2fadmin%2ftenants', {}, 401],
      ['POST', '/dashboard', { 'content-length': '0' }, 401],
      ['GET', '/dashboard/%zz', {}, 400],
    ];
    for (const [method, path, headers, status] of cases) {
      const res = await raw(method, path, headers);
      assert.equal(res.status, status, `${method} ${path}`);
      assert.equal(res.headers['content-security-policy'], CSP, `${method} ${path}: CSP`);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', `${method} ${path}: nosniff`);
      assert.equal(res.headers['x-frame-options'], 'DENY', `${method} ${path}: x-frame-options`);
      assert.equal(res.headers['cache-control'], 'no-store', `${method} ${path}: cache-control`);
    }
  });
});

describe('the audit row of an admin call whose client hangs up', () => {
  it('records a change whose body was read in full but whose answer nobody waited for, once, as 499 by its owner', async () => {
    // the change takes a while (a remote store, a provider call): the client is gone before it is answered
    const tenants = h.gateway.tenants;
    const original = tenants.createTenant;
    let settled!: () => void;
    const done = new Promise<void>((resolve) => { settled = resolve; });
    tenants.createTenant = async (...args: Parameters<typeof original>) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      try {
        return await original.apply(tenants, args);
      } finally {
        settled();
      }
    };
    try {
      const body = JSON.stringify({ name: 'abandoned-change' });
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`POST /admin/tenants HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${FAKE_ADMIN_TOKEN}\r\nx-request-id: review-abandoned-post\r\n`
          + `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        setTimeout(() => socket.destroy(), 50);
      });
      socket.on('error', () => undefined);
      await done;
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      tenants.createTenant = original;
    }
    const rows = await auditRows();
    // the change happened (its own row names the owner) …
    assert.equal(rows.filter((r) => r.action === 'tenant.create' && r.details['name'] === 'abandoned-change').length, 1);
    // … and so did the admin call, exactly once
    const calls = rows.filter((r) => r.action === 'admin.call' && r.requestId === 'review-abandoned-post');
    assert.equal(calls.length, 1, 'one admin.call row for the abandoned change');
    const call = calls[0] as AuditRow;
    assert.equal(call.actor, 'admin:admin.token');
    assert.equal(call.target, '/admin/tenants');
    assert.equal(call.outcome, 'failure');
    assert.equal(call.details['status'], 499);
    assert.equal(call.details['method'], 'POST');
    assert.ok(!JSON.stringify(call).includes(FAKE_ADMIN_TOKEN), 'the token is not in the row');
  });

  it('writes one row, never two, for a call answered in full and for one cut off mid-answer', async () => {
    const whole = await raw('GET', '/admin/whoami', { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'x-request-id': 'review-whole' });
    assert.equal(whole.status, 200);
    // an export cut off after its first bytes
    for (let i = 0; i < 3_000; i++) {
      h.gateway.writer.audit({ ts: Date.now(), actor: 'system', action: 'review.bulk', target: null, outcome: 'success', requestId: null, details: { i } });
    }
    await h.gateway.writer.flush();
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`GET /admin/audit/export HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${FAKE_ADMIN_TOKEN}\r\nx-request-id: review-cut\r\n\r\n`);
      });
      socket.once('data', () => socket.destroy());
      socket.on('close', () => resolve());
      socket.on('error', () => undefined);
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const rows = await auditRows();
    const whoami = rows.filter((r) => r.requestId === 'review-whole');
    assert.deepEqual(whoami.map((r) => r.details['status']), [200]);
    const cut = rows.filter((r) => r.requestId === 'review-cut');
    assert.deepEqual(cut.map((r) => [r.actor, r.details['status']]), [['admin:admin.token', 499]]);
  });
});
