/**
 * Scale-out: two gateway replicas on one PostgreSQL schema. A key issued or revoked through one
 * replica's admin API is served or refused by the other at once (within the notification
 * delay), and the request audit rows of both form one chain that verifies.
 * Needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test); skipped without it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startHarness, postJson, FAKE_ADMIN_TOKEN, LogCapture, type Harness } from './helpers/harness.js';
import { createGateway, type Gateway } from '../src/main.js';
import { createPostgresStore } from '../src/store/postgres/index.js';
import { verifyAuditChain } from '../src/audit/trail.js';

const DATABASE_URL = process.env.DATABASE_URL;
const SKIP = DATABASE_URL ? undefined : 'DATABASE_URL is not set (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test); two gateways on PostgreSQL not tested';
if (SKIP) process.stdout.write(`# note: ${SKIP}\n`);

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };
const schema = `kw_test_gw_${randomBytes(5).toString('hex')}`;

/** The store URL of this run's schema (the libpq way: `options=-c search_path=…`). */
function storeUrl(): string {
  const url = new URL(DATABASE_URL as string);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.toString();
}

async function admin(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

/** Sends chat requests until one answers `status`, for at most `ms`; returns the last status seen. */
async function untilStatus(url: string, key: string, status: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const res = await postJson(`${url}/v1/chat/completions`, key, CHAT);
    if (res.status === status || Date.now() >= end) return res.status;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('two gateways on one PostgreSQL store', SKIP ? { skip: SKIP } : {}, () => {
  let adminPool: pg.Pool;
  let a: Harness;
  let b: Gateway;
  let bUrl: string;
  let bAdminUrl: string;
  let bClosed = false;
  // served requests (each one leaves a request row); refusals are not counted
  let requestsSent = 0;

  before(async () => {
    adminPool = new pg.Pool({ connectionString: DATABASE_URL as string, max: 1 });
    await adminPool.query(`CREATE SCHEMA ${schema}`);
    a = await startHarness({ config: { store: storeUrl(), limits: { store: 'memory' } } });
    // the second replica: the same config (store, secrets, providers), its own listeners and process state
    b = await createGateway(a.config, { logDestination: new LogCapture(), flushIntervalMs: 20 });
    ({ publicUrl: bUrl, adminUrl: bAdminUrl } = await b.listen());
  });

  after(async () => {
    if (!bClosed) await b?.close();
    await a?.close();
    await adminPool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await adminPool?.end();
  });

  it('runs both replicas on the postgres store', () => {
    assert.equal(a.gateway.store.kind, 'postgres');
    assert.equal(b.store.kind, 'postgres');
  });

  it('serves on one replica a key issued through the other, and refuses it once revoked there', async () => {
    const issued = await admin(a.adminUrl, 'POST', '/admin/tenants/acme/keys', { label: 'replica-test' });
    assert.equal(issued.status, 201);
    const key = issued.json['key'] as string;
    assert.equal(await untilStatus(bUrl, key, 200, 1_000), 200, 'replica b serves the key issued on a');
    requestsSent += 1;
    // b now holds the key in its credential cache: the revocation on a must still apply there
    assert.equal((await postJson(`${bUrl}/v1/chat/completions`, key, CHAT)).status, 200);
    requestsSent += 1;

    const revoked = await admin(a.adminUrl, 'POST', `/admin/keys/${issued.json['id'] as string}/revoke`);
    assert.equal(revoked.status, 200);
    const refusedAt = Date.now();
    const res = await (async () => {
      for (;;) {
        const r = await postJson(`${bUrl}/v1/chat/completions`, key, CHAT);
        if (r.status === 200) requestsSent += 1;
        if (r.status !== 200 || Date.now() - refusedAt > 1_000) return r;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    assert.equal(res.status, 401, 'replica b refuses the key revoked on a within 1 s');
    assert.equal(res.json.error.code, 'auth_key_revoked');
  });

  it('refuses on one replica a key revoked through the other, in the reverse direction', async () => {
    const issued = await admin(bAdminUrl, 'POST', '/admin/tenants/acme/keys', {});
    assert.equal(issued.status, 201);
    const key = issued.json['key'] as string;
    assert.equal(await untilStatus(a.url, key, 200, 1_000), 200);
    assert.equal((await postJson(`${a.url}/v1/chat/completions`, key, CHAT)).status, 200);
    requestsSent += 2;
    assert.equal((await admin(bAdminUrl, 'POST', `/admin/keys/${issued.json['id'] as string}/revoke`)).status, 200);
    const status = await untilStatus(a.url, key, 401, 1_000);
    assert.equal(status, 401, 'replica a refuses the key revoked on b within 1 s');
  });

  it('writes the request rows of both replicas into one chain that verifies', async () => {
    // both replicas record at once, interleaving their appends
    const sends = Array.from({ length: 10 }, (_, i) => postJson(`${i % 2 === 0 ? a.url : bUrl}/v1/chat/completions`, a.key, CHAT));
    const results = await Promise.all(sends);
    assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
    // closing b flushes its record writer; a's writer flushes every 20 ms
    await b.close();
    bClosed = true;

    const reader = await createPostgresStore(DATABASE_URL as string, { schema });
    try {
      const expected = 10 + requestsSent;
      const deadline = Date.now() + 2_000;
      let rows = await reader.records.listAudit({ limit: 10_000 });
      while (rows.filter((r) => r.action === 'request').length < expected && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        rows = await reader.records.listAudit({ limit: 10_000 });
      }
      const result = await verifyAuditChain(reader.auditTrail, Buffer.from('unused-no-checkpoint'));
      assert.equal(result.ok, true, result.ok ? '' : result.message);
      const requests = rows.filter((r) => r.action === 'request');
      assert.ok(requests.length >= expected, `every request is on the chain (${requests.length} of ${expected})`);
      assert.deepEqual(rows.map((r) => r.seq), Array.from({ length: rows.length }, (_, i) => i + 1), 'one gap-free sequence');
      const usage = await reader.records.listUsage({ limit: 10_000 });
      assert.ok(usage.length >= expected);
    } finally {
      await reader.close();
    }
  });
});
