/**
 * The one contract every `Store` keeps (src/store/types.ts), run against each implementation:
 * SQLite (a temporary file) always, PostgreSQL when DATABASE_URL is set (each case in its own
 * schema, dropped afterwards). "Two instances" are two stores opened on the same database, as
 * two gateway replicas (or the gateway and the CLI) would be.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCipheriv, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { createPostgresStore } from '../src/store/postgres/index.js';
import { StoreConflictError } from '../src/store/types.js';
import type { AuditEvent, ContentSample, ProviderKeyRecord, Store, TenantKeyRecord, UsageRecord } from '../src/store/types.js';
import { pruneAuditTrail, verifyAuditChain } from '../src/audit/trail.js';
import { newSampleId, openSample, sealSample } from '../src/audit/sampling.js';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite/migrations.js';
import { POSTGRES_MIGRATIONS } from '../src/store/postgres/migrations.js';

const DATABASE_URL = process.env.DATABASE_URL;
const SKIP_POSTGRES = DATABASE_URL
  ? undefined
  : 'DATABASE_URL is not set (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test); PostgreSQL store not tested';
if (SKIP_POSTGRES) process.stdout.write(`# note: ${SKIP_POSTGRES}\n`);

const CHECKPOINT_KEY = Buffer.from('checkpoint-key-TEST-ONLY-0000000000000000', 'utf8');

/** A fresh, empty database, on which any number of stores can be opened. */
interface StoreFixture {
  open(): Promise<Store>;
  /** Runs SQL on the same database outside the store (to try what the store must refuse). */
  exec(sql: string): Promise<void>;
  /** Closes every store it opened and removes the database. */
  dispose(): Promise<void>;
  /** Applies the first `level` migrations only, as an older release left the database (then `open` applies the rest). */
  migrateTo(level: number): Promise<void>;
  /** The schema level before content samples had sample ids (their rows then held AAD version 1). */
  legacySampleLevel: number;
  /** A byte string as an SQL literal of this database. */
  blob(bytes: Buffer): string;
}

/** Seals a sample as releases before sample ids did: the request id alone as additional data. */
function sealV1(key: Buffer, requestId: string, plaintext: string): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(`keywarden-sample:1\n${requestId}`, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), ciphertext };
}

function event(action: string, fields: Partial<AuditEvent> = {}): AuditEvent {
  return { ts: Date.now(), actor: 'cli', action, target: null, outcome: 'success', requestId: null, details: {}, ...fields };
}

function usage(fields: Partial<UsageRecord> & Pick<UsageRecord, 'tenantId' | 'keyId'>): UsageRecord {
  return {
    ts: Date.now(), requestId: `req_${randomBytes(4).toString('hex')}`, provider: 'openai', model: 'gpt-4o-mini', endpoint: '/v1/chat/completions',
    status: 200, outcome: 'success', errorCode: null, inputTokens: 10, outputTokens: 5, cachedInputTokens: 0, stream: false, gatewayMs: 1.5,
    upstreamMs: 12.25, promptFingerprint: null, costNanoUsd: 1_000, clientHmac: null, ...fields,
  };
}

function tenantKey(id: string, tenantId: string, fields: Partial<TenantKeyRecord> = {}): TenantKeyRecord {
  return { id, tenantId, secretHash: 'a'.repeat(64), label: null, createdAt: Date.now(), expiresAt: null, revokedAt: null, limits: null, ...fields };
}

function providerKey(id: string, provider: string, fields: Partial<ProviderKeyRecord> = {}): ProviderKeyRecord {
  return {
    id, provider, reference: `file:/run/secrets/${id}`, fingerprint: '0123456789abcdef', version: null, state: 'current', owner: null, purpose: null,
    createdAt: Date.now(), rotatedAt: null, rotateEveryDays: 60, previousUntil: null, revokedAt: null, ...fields,
  };
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}

async function assertChainVerifies(store: Store, rows?: number): Promise<void> {
  const result = await verifyAuditChain(store.auditTrail, CHECKPOINT_KEY);
  assert.equal(result.ok, true, result.ok ? '' : result.message);
  if (rows !== undefined && result.ok) assert.equal(result.rows, rows);
}

function storeContract(name: string, fixture: () => Promise<StoreFixture>, opts: { skip?: string } = {}): void {
  describe(`Store contract: ${name}`, opts.skip ? { skip: opts.skip } : {}, () => {
    async function withFixture(fn: (f: StoreFixture, store: Store) => Promise<void>): Promise<void> {
      const f = await fixture();
      try {
        await fn(f, await f.open());
      } finally {
        await f.dispose();
      }
    }
    /** A fixture whose database no store has opened yet (for migrations from an older level). */
    async function withBareFixture(fn: (f: StoreFixture) => Promise<void>): Promise<void> {
      const f = await fixture();
      try {
        await fn(f);
      } finally {
        await f.dispose();
      }
    }

    it('creates tenants and keys and finds a key with its tenant in one lookup', () =>
      withFixture(async (_f, store) => {
        const beta = await store.tenants.create('beta', null, event('tenant.create'));
        const acme = await store.tenants.create('acme', { models: ['gpt-4o-mini'] }, event('tenant.create'));
        await assert.rejects(store.tenants.create('acme', null, event('tenant.create')), StoreConflictError);
        assert.deepEqual((await store.tenants.list()).map((t) => t.name), ['acme', 'beta']);
        assert.deepEqual(await store.tenants.getByName('acme'), acme);
        assert.equal(await store.tenants.getByName('nobody'), undefined);

        const created = Date.now();
        await store.keys.create(tenantKey('kw_k1', acme.id, { label: 'demo', createdAt: created, expiresAt: created + 60_000 }), event('key.issue'));
        await store.keys.create(tenantKey('kw_k2', acme.id, { label: 'demo', createdAt: created + 1 }), event('key.issue'));
        await store.keys.create(tenantKey('kw_k3', beta.id, { createdAt: created + 2, limits: { requests_per_minute: 5 } }), event('key.issue'));

        const found = await store.keys.findWithTenant('kw_k1');
        assert.deepEqual(found?.tenant, acme);
        assert.equal(found?.key.expiresAt, created + 60_000);
        assert.equal(found?.key.createdAt, created);
        assert.equal(typeof found?.key.createdAt, 'number');
        assert.equal(await store.keys.findWithTenant('kw_none'), undefined);
        assert.deepEqual((await store.keys.get('kw_k3'))?.limits, { requests_per_minute: 5 });
        assert.deepEqual((await store.keys.list(acme.id)).map((k) => k.id), ['kw_k1', 'kw_k2']);
        assert.deepEqual((await store.keys.list()).map((k) => k.id), ['kw_k1', 'kw_k2', 'kw_k3']);

        await store.keys.setLimits('kw_k1', { tokens_per_day: 100 }, event('key.limits'));
        assert.deepEqual((await store.keys.get('kw_k1'))?.limits, { tokens_per_day: 100 });
        await store.keys.revoke('kw_k3', created + 10, event('key.revoke'));
        await store.keys.revoke('kw_k3', created + 20, event('key.revoke'));
        assert.equal((await store.keys.get('kw_k3'))?.revokedAt, created + 10, 'a second revocation keeps the first time');
        assert.equal(await store.keys.revokeByLabel(acme.id, 'demo', created + 30), 2);
        assert.equal(await store.keys.revokeByLabel(acme.id, 'demo', created + 40), 0);

        await store.tenants.setStatus(acme.id, 'disabled', event('tenant.disable'));
        await store.tenants.setPolicy(acme.id, null, event('tenant.policy'));
        const after = await store.keys.findWithTenant('kw_k1');
        assert.equal(after?.tenant.status, 'disabled');
        assert.equal(after?.tenant.policy, null);
        assert.equal(after?.key.revokedAt, created + 30);
        // every audited write is on the chain, the refused duplicate is not
        await assertChainVerifies(store, 2 + 3 + 1 + 2 + 2);
      }));

    it('keeps one verifiable chain over many appends, batched and single', () =>
      withFixture(async (_f, store) => {
        const t = await store.tenants.create('acme', null, event('tenant.create'));
        for (let i = 0; i < 20; i += 1) {
          const batch = Array.from({ length: 10 }, (_, j) => event('request', { target: 'gpt-4o-mini', requestId: `r${i}-${j}`, details: { tenant: t.id, n: j, ok: true, z: null } }));
          await store.records.append([usage({ tenantId: t.id, keyId: 'kw_k1' })], batch);
        }
        await store.records.append([usage({ tenantId: t.id, keyId: 'kw_k1' })], []);
        await assertChainVerifies(store, 1 + 200);
        const rows = await store.records.listAudit({ limit: 1000 });
        assert.deepEqual(rows.map((r) => r.seq), Array.from({ length: 201 }, (_, i) => i + 1));
        assert.deepEqual(rows[5]?.details, { tenant: t.id, n: 4, ok: true, z: null });
        assert.equal((await store.records.listUsage({ limit: 100 })).length, 21);
      }));

    it('records values a client chose with a NUL character without losing the batch', () =>
      withFixture(async (_f, store) => {
        const odd = 'gpt\u0000-4o';
        await store.records.append([usage({ tenantId: 't_1', keyId: 'kw_1', model: odd, errorCode: 'policy_model_not_allowed' })],
          [event('request', { target: odd, details: { model: odd } }), event('request')]);
        await assertChainVerifies(store, 2);
        const [row] = await store.records.listAudit({ limit: 1 });
        assert.equal(row?.details['model'], odd, 'details keep the value as it was given');
        assert.equal((await store.records.listUsage({ limit: 1 })).length, 1);
      }));

    it('keeps one chain when two instances append at the same time', () =>
      withFixture(async (f, a) => {
        const b = await f.open();
        const burst = (store: Store, who: string) => Promise.all(Array.from({ length: 25 }, (_, i) =>
          store.records.append([usage({ tenantId: 't_x', keyId: `kw_${who}` })], [event('request', { actor: `tenant-key:${who}`, requestId: `${who}${i}` }), event('request', { actor: `tenant-key:${who}` })])));
        await Promise.all([burst(a, 'a'), burst(b, 'b'), a.tenants.create('acme', null, event('tenant.create')), b.tenants.create('beta', null, event('tenant.create'))]);
        await assertChainVerifies(a, 2 * 25 * 2 + 2);
        await assertChainVerifies(b, 2 * 25 * 2 + 2);
        const actors = new Set((await a.records.listAudit({ limit: 1000 })).map((r) => r.actor));
        assert.ok(actors.has('tenant-key:a') && actors.has('tenant-key:b'));
      }));

    it('refuses to update or delete audit rows and checkpoints outside a prune', () =>
      withFixture(async (f, store) => {
        await store.records.append([], [event('request'), event('request'), event('request')]);
        await assert.rejects(f.exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`), /append-only/);
        await assert.rejects(f.exec('DELETE FROM audit_log WHERE seq = 3'), /append-only/);
        await assert.rejects(f.exec('DELETE FROM audit_log'), /append-only/);
        await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: CHECKPOINT_KEY, before: Date.now() + 60_000, actor: 'system' });
        await assert.rejects(f.exec(`UPDATE audit_checkpoints SET removed_count = 0`), /append-only/);
        await assert.rejects(f.exec('DELETE FROM audit_checkpoints'), /append-only/);
        await assertChainVerifies(store, 1);
      }));

    it('prunes a prefix under a signed checkpoint, and the chain continues from it', () =>
      withFixture(async (_f, store) => {
        const now = Date.now();
        const old = now - 10 * 86_400_000;
        await store.records.append([], Array.from({ length: 5 }, (_, i) => event('request', { ts: old + i })));
        await store.records.append([], Array.from({ length: 3 }, (_, i) => event('request', { ts: now - 1000 + i })));
        assert.equal(await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: CHECKPOINT_KEY, before: old - 1, now, actor: 'system' }), undefined,
          'nothing is old enough: nothing written');
        const checkpoint = await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: CHECKPOINT_KEY, before: now - 86_400_000, now, actor: 'system' });
        assert.equal(checkpoint?.upToSeq, 5);
        assert.equal(checkpoint?.removedCount, 5);
        assert.deepEqual(await store.auditTrail.latestCheckpoint(), checkpoint);
        const rows = await store.records.listAudit({ limit: 100 });
        assert.deepEqual(rows.map((r) => r.seq), [6, 7, 8, 9]);
        assert.equal(rows[3]?.action, 'audit.prune');
        await assertChainVerifies(store, 4);

        // everything pruned: the next append links to the newest checkpoint
        const second = await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: CHECKPOINT_KEY, before: now + 60_000, now: now + 1, actor: 'system' });
        assert.equal(second?.upToSeq, 9);
        assert.equal(second?.removedCount, 4);
        await store.records.append([], [event('request')]);
        assert.deepEqual((await store.records.listAudit({ limit: 100 })).map((r) => r.seq), [10, 11]);
        await assertChainVerifies(store, 2);
        const wrongKey = await verifyAuditChain(store.auditTrail, Buffer.from('another-key-TEST-ONLY'));
        assert.equal(wrongKey.ok, false);
        assert.equal(wrongKey.ok ? '' : wrongKey.problem, 'checkpoint_invalid');
      }));

    it('filters audit rows and usage by tenant, and sums usage', () =>
      withFixture(async (_f, store) => {
        const acme = await store.tenants.create('acme', null, event('tenant.create'));
        const beta = await store.tenants.create('beta', null, event('tenant.create'));
        const t0 = Date.now();
        await store.records.append([
          usage({ ts: t0, tenantId: acme.id, keyId: 'kw_a', model: 'gpt-4o-mini', inputTokens: 10, outputTokens: 5, costNanoUsd: 3_000_000_000 }),
          usage({ ts: t0 + 1, tenantId: acme.id, keyId: 'kw_a', model: 'gpt-4o-mini', inputTokens: 1, outputTokens: 2, costNanoUsd: 4_000_000_000 }),
          usage({ ts: t0 + 2, tenantId: acme.id, keyId: 'kw_a2', model: null, outcome: 'refused', status: 429, inputTokens: 0, outputTokens: 0, costNanoUsd: 0 }),
          usage({ ts: t0 + 3, tenantId: beta.id, keyId: 'kw_b', model: 'claude', inputTokens: 7, outputTokens: 7, costNanoUsd: 9 }),
        ], [
          event('request', { ts: t0, details: { tenant: acme.id } }),
          event('request', { ts: t0 + 1, details: { tenant: beta.id } }),
          event('key.issue', { ts: t0 + 2, target: 'kw_a', details: { tenant: acme.id } }),
          event('provider_key.revoke', { ts: t0 + 3, target: 'pk_1', details: {} }),
        ]);
        const range = { since: 0, until: t0 + 1_000, afterSeq: 0, limit: 100 };
        const ofAcme = await store.records.queryAudit({ ...range, tenantIds: [acme.id] });
        assert.deepEqual(ofAcme.map((r) => r.action), ['tenant.create', 'request', 'key.issue']);
        assert.ok(ofAcme.every((r) => r.target === acme.id || r.details['tenant'] === acme.id));
        assert.equal((await store.records.queryAudit({ ...range, tenantIds: [] })).length, 0);
        assert.equal((await store.records.queryAudit(range)).length, 6);
        assert.deepEqual((await store.records.queryAudit({ ...range, afterSeq: 4, limit: 1 })).map((r) => r.seq), [5]);
        assert.deepEqual((await store.records.queryAudit({ ...range, since: t0 + 1, until: t0 + 3 })).map((r) => r.action), ['request', 'key.issue']);

        const summary = await store.records.summarizeUsage({ since: t0, until: t0 + 10 });
        assert.deepEqual(summary, [
          ...[
            { tenantId: acme.id, model: null, requests: 1, errors: 1, inputTokens: 0, outputTokens: 0, costNanoUsd: 0 },
            { tenantId: acme.id, model: 'gpt-4o-mini', requests: 2, errors: 0, inputTokens: 11, outputTokens: 7, costNanoUsd: 7_000_000_000 },
            { tenantId: beta.id, model: 'claude', requests: 1, errors: 0, inputTokens: 7, outputTokens: 7, costNanoUsd: 9 },
          ].sort((x, y) => (x.tenantId < y.tenantId ? -1 : x.tenantId > y.tenantId ? 1 : 0)),
        ]);
        assert.deepEqual((await store.records.summarizeUsage({ since: t0, until: t0 + 10, tenantIds: [beta.id] })).map((r) => r.model), ['claude']);

        const sum = (scope: 'tenant' | 'key', id: string, metric: 'req' | 'tok' | 'usd') => store.records.sumUsage({ scope, id, metric, since: t0, until: t0 + 10 });
        assert.equal(await sum('tenant', acme.id, 'req'), 2, 'refused requests do not count');
        assert.equal(await sum('tenant', acme.id, 'tok'), 18);
        assert.equal(await sum('tenant', acme.id, 'usd'), 7_000_000_000);
        assert.equal(await sum('key', 'kw_a', 'tok'), 18);
        assert.equal(await sum('key', 'kw_none', 'usd'), 0);
        assert.equal(await store.records.sumUsage({ scope: 'tenant', id: acme.id, metric: 'req', since: t0 + 1, until: t0 + 2 }), 1);

        const listed = await store.records.listUsage({ tenantId: acme.id, limit: 2 });
        assert.deepEqual(listed.map((u) => u.ts), [t0 + 2, t0 + 1], 'newest first');
        assert.equal(listed[1]?.gatewayMs, 1.5);
        assert.equal(listed[1]?.stream, false);
        const window = await store.incidents.usageWindow({ keyId: 'kw_a', since: t0, until: t0 + 10, limit: 10 });
        assert.deepEqual(window.map((u) => u.ts), [t0, t0 + 1]);
        assert.equal((await store.incidents.usageWindow({ provider: 'openai', since: t0, until: t0 + 10, limit: 2 })).length, 2);
        assert.equal((await store.incidents.usageWindow({ tenantId: beta.id, since: t0, until: t0 + 10, limit: 10 }))[0]?.model, 'claude');
      }));

    it('counts errors per tenant and model: every outcome but success', () =>
      withFixture(async (_f, store) => {
        const acme = await store.tenants.create('acme', null, event('tenant.create'));
        const t0 = Date.now();
        const outcomes = ['success', 'success', 'upstream_error', 'refused', 'client_aborted', 'stream_broken'];
        await store.records.append(outcomes.map((outcome, i) => usage({ ts: t0 + i, tenantId: acme.id, keyId: 'kw_a', outcome, status: outcome === 'success' ? 200 : 502 })), []);
        const [row] = await store.records.summarizeUsage({ since: t0, until: t0 + 10 });
        assert.equal(row?.requests, 6);
        assert.equal(row?.errors, 4);
        assert.equal(typeof row?.errors, 'number');
        assert.equal((await store.records.summarizeUsage({ since: t0, until: t0 + 2 }))[0]?.errors, 0, 'successes only: no errors');
      }));

    it('filters audit rows by an action prefix compared as plain text, oldest or newest first', () =>
      withFixture(async (_f, store) => {
        const acme = await store.tenants.create('acme', null, event('tenant.create'));
        const beta = await store.tenants.create('beta', null, event('tenant.create'));
        const t0 = Date.now();
        await store.records.append([], [
          event('anomaly.request_rate', { ts: t0, details: { tenant: acme.id } }),
          event('anomaly.error_rate', { ts: t0 + 1, details: { tenant: beta.id } }),
          event('anomalyx', { ts: t0 + 2, details: { tenant: acme.id } }),
          event('anomaly%', { ts: t0 + 3, details: { tenant: acme.id } }),
          event('admin.call', { ts: t0 + 4, target: '/admin/usage' }),
          event('anomaly.token_rate', { ts: t0 + 5, details: { tenant: acme.id } }),
        ]);
        const range = { since: 0, until: t0 + 1_000, afterSeq: 0, limit: 100 };
        const actions = async (filter: Partial<Parameters<Store['records']['queryAudit']>[0]>) => (await store.records.queryAudit({ ...range, ...filter })).map((r) => r.action);
        assert.deepEqual(await actions({ action: 'anomaly.' }), ['anomaly.request_rate', 'anomaly.error_rate', 'anomaly.token_rate']);
        assert.deepEqual(await actions({ action: 'anomaly.', newestFirst: true }), ['anomaly.token_rate', 'anomaly.error_rate', 'anomaly.request_rate']);
        assert.deepEqual(await actions({ action: 'anomaly.', newestFirst: true, limit: 1 }), ['anomaly.token_rate']);
        assert.deepEqual(await actions({ action: 'anomaly.', tenantIds: [beta.id] }), ['anomaly.error_rate']);
        assert.deepEqual(await actions({ action: 'anomaly.', tenantIds: [] }), []);
        // LIKE wildcards are plain characters here
        assert.deepEqual(await actions({ action: 'anomaly_' }), []);
        assert.deepEqual(await actions({ action: 'anomaly%' }), ['anomaly%']);
        assert.deepEqual(await actions({ action: 'admin.call' }), ['admin.call']);
        assert.deepEqual(await actions({ action: 'anomaly.', afterSeq: 4 }), ['anomaly.token_rate'], 'seq 1 and 2 are the tenant rows');
        assert.equal((await actions({})).length, 8, 'without a prefix, every row (two tenant.create rows too)');
      }));

    it('moves provider keys through the register and holds one rotation lock', () =>
      withFixture(async (f, store) => {
        const other = await f.open();
        const t = Date.now();
        assert.equal(await store.providerKeys.bootstrap(providerKey('pk_1', 'openai', { createdAt: t }), event('provider_key.bootstrap')), true);
        assert.equal(await other.providerKeys.bootstrap(providerKey('pk_x', 'openai', { createdAt: t }), event('provider_key.bootstrap')), false);

        const locks = await Promise.all([
          store.providerKeys.lockRotation('openai', 'rot_a', 'host-a:1', t),
          other.providerKeys.lockRotation('openai', 'rot_b', 'host-b:2', t),
        ]);
        assert.equal(locks.filter((l) => l.created).length, 1, 'exactly one caller takes the lock');
        const winner = locks.find((l) => l.created)?.rotation;
        assert.ok(winner);
        assert.deepEqual(locks.map((l) => l.rotation.rotationId), [winner.rotationId, winner.rotationId]);
        assert.equal(winner.step, 0);
        const rotationId = winner.rotationId;

        assert.equal(await store.providerKeys.takeOverRotation('openai', rotationId, 'someone:9', 'host-c:3', t + 1), false);
        assert.equal(await store.providerKeys.takeOverRotation('openai', rotationId, winner.lockedBy, 'host-c:3', t + 1), true);
        await store.providerKeys.heartbeat('openai', 'host-c:3', t + 5);
        assert.equal((await other.providerKeys.getRotation('openai'))?.heartbeatAt, t + 5);

        await store.providerKeys.addPending(providerKey('pk_2', 'openai', { state: 'pending', createdAt: t + 2 }), rotationId, event('provider_key.add'));
        let rotation = await store.providerKeys.getRotation('openai');
        assert.deepEqual([rotation?.step, rotation?.oldKeyId, rotation?.newKeyId], [1, 'pk_1', 'pk_2']);
        await store.providerKeys.setRotationStep('openai', rotationId, 2, null);
        await store.providerKeys.setRotationStep('openai', rotationId, 1, event('provider_key.verify'));
        assert.equal((await store.providerKeys.getRotation('openai'))?.step, 2, 'a step never goes back');

        await store.providerKeys.promote('openai', rotationId, 'pk_2', t + 1_000, t + 10, event('provider_key.promote'));
        await store.providerKeys.promote('openai', rotationId, 'pk_2', t + 1_000, t + 10, event('provider_key.promote'));
        await assert.rejects(store.providerKeys.promote('openai', rotationId, 'pk_nope', t + 1_000, t + 10, event('provider_key.promote')));
        const states = Object.fromEntries((await store.providerKeys.list()).map((k) => [k.id, [k.state, k.previousUntil, k.rotatedAt]]));
        assert.deepEqual(states, { pk_1: ['previous', t + 1_000, null], pk_2: ['current', null, t + 10] });
        rotation = await store.providerKeys.getRotation('openai');
        assert.equal(rotation?.step, 3);
        await store.providerKeys.finishRotation('openai', rotationId, event('provider_key.rotated'));
        assert.equal(await other.providerKeys.getRotation('openai'), undefined);

        assert.deepEqual(await store.providerKeys.expirePrevious(t + 999, 'system'), []);
        const expired = await store.providerKeys.expirePrevious(t + 1_000, 'system');
        assert.deepEqual(expired.map((k) => [k.id, k.state, k.revokedAt]), [['pk_1', 'revoked', t + 1_000]]);
        assert.deepEqual((await store.providerKeys.active()).map((k) => k.id), ['pk_2']);

        await store.providerKeys.setOwner('pk_2', { owner: 'platform-team', rotateEveryDays: 30 }, event('provider_key.owner'));
        const pk2 = await other.providerKeys.get('pk_2');
        assert.deepEqual([pk2?.owner, pk2?.purpose, pk2?.rotateEveryDays], ['platform-team', null, 30]);
        assert.equal(await store.providerKeys.revoke('pk_2', t + 2_000, event('provider_key.revoke')), true);
        assert.equal(await store.providerKeys.revoke('pk_2', t + 3_000, event('provider_key.revoke')), false);
        assert.equal(await store.providerKeys.get('pk_none'), undefined);

        // an abandoned rotation drops its pending key and frees the lock
        await store.providerKeys.lockRotation('anthropic', 'rot_c', 'host-a:1', t);
        await store.providerKeys.addPending(providerKey('pk_3', 'anthropic', { state: 'pending' }), 'rot_c', event('provider_key.add'));
        await store.providerKeys.abandonRotation('anthropic', 'rot_c', 'pk_3', event('provider_key.abandon'));
        assert.equal(await store.providerKeys.get('pk_3'), undefined);
        assert.equal((await store.providerKeys.lockRotation('anthropic', 'rot_d', 'host-a:1', t)).created, true);
        await assertChainVerifies(store);
      }));

    it('stores incidents and names the providers with a contained key', () =>
      withFixture(async (_f, store) => {
        await store.providerKeys.bootstrap(providerKey('pk_1', 'openai'), event('provider_key.bootstrap'));
        await store.providerKeys.bootstrap(providerKey('pk_2', 'anthropic'), event('provider_key.bootstrap'));
        const incident = {
          id: 'inc_0123456789abcdef', kind: 'provider_key' as const, target: '0123456789abcdef', targetIds: ['pk_1'], tenantId: null, provider: 'openai',
          since: 1_000, containedAt: 2_000, actor: 'cli', details: { revoked: 1, note: null },
        };
        await store.incidents.create(incident, event('incident.contain'));
        await store.incidents.create({ ...incident, id: 'inc_1111111111111111', kind: 'tenant', target: 'acme', targetIds: ['t_1'], tenantId: 't_1', provider: null, containedAt: 3_000 },
          event('incident.contain'));
        assert.deepEqual(await store.incidents.get(incident.id), incident);
        assert.equal(await store.incidents.get('inc_none'), undefined);
        assert.deepEqual((await store.incidents.list()).map((i) => i.id), [incident.id, 'inc_1111111111111111']);
        assert.deepEqual(await store.incidents.containedProviders(), ['openai']);
        await assertChainVerifies(store, 4);
      }));

    it('issues, lists and revokes admin tokens', () =>
      withFixture(async (_f, store) => {
        const token = { id: 'adm_1', owner: 'alice', role: 'operator' as const, tenantIds: ['t_1', 't_2'], secretHash: 'b'.repeat(64), createdAt: 5, expiresAt: 50, revokedAt: null };
        await store.adminTokens.create(token, event('admin_token.issue'));
        await store.adminTokens.create({ ...token, id: 'adm_2', role: 'viewer', tenantIds: null, createdAt: 6, expiresAt: null }, event('admin_token.issue'));
        assert.deepEqual(await store.adminTokens.get('adm_1'), token);
        assert.deepEqual((await store.adminTokens.list()).map((t) => [t.id, t.tenantIds]), [['adm_1', ['t_1', 't_2']], ['adm_2', null]]);
        await store.adminTokens.revoke('adm_1', 9, event('admin_token.revoke'));
        await store.adminTokens.revoke('adm_1', 10, event('admin_token.revoke'));
        assert.equal((await store.adminTokens.get('adm_1'))?.revokedAt, 9);
        assert.equal(await store.adminTokens.get('adm_none'), undefined);
      }));

    it('keeps every content sample of a request id, across tenants and within one, until they expire', () =>
      withFixture(async (_f, store) => {
        const sample = (requestId: string, tenantId: string, createdAt: number, sampleId = newSampleId()): ContentSample => ({
          sampleId, requestId, tenantId, createdAt, expiresAt: createdAt + 100, aadVersion: 2, iv: randomBytes(12), tag: randomBytes(16), ciphertext: randomBytes(40),
        });
        // the same client-chosen request id: tenant 1, then tenant 2, then tenant 1 again; two at one instant (ordered by sample id)
        const s1 = sample('req_1', 't_1', 100);
        const s2 = sample('req_1', 't_2', 110, `smp_${'b'.repeat(32)}`);
        const s3 = sample('req_1', 't_1', 110, `smp_${'a'.repeat(32)}`);
        const s4 = sample('req_1', 't_2', 120);
        const other = sample('req_2', 't_1', 100);
        for (const s of [s4, s1, other, s2, s3]) await store.auditTrail.putSample(s);
        const get = (fields: Partial<Parameters<Store['auditTrail']['getSamples']>[0]> = {}) => store.auditTrail.getSamples({ requestId: 'req_1', now: 150, limit: 10, ...fields });
        assert.deepEqual(await get(), [s1, s3, s2, s4], 'no sample displaces or hides another: all of them, oldest first');
        assert.deepEqual(await get({ tenantId: 't_1' }), [s1, s3]);
        assert.deepEqual(await get({ tenantId: 't_2' }), [s2, s4]);
        assert.deepEqual(await get({ tenantId: 't_none' }), []);
        assert.deepEqual(await get({ limit: 2 }), [s1, s3]);
        assert.deepEqual(await get({ after: { createdAt: s3.createdAt, sampleId: s3.sampleId }, limit: 2 }), [s2, s4], 'the next page starts after the cursor');
        assert.deepEqual(await get({ after: { createdAt: s4.createdAt, sampleId: s4.sampleId } }), []);
        assert.deepEqual(await get({ tenantId: 't_2', after: { createdAt: s1.createdAt, sampleId: s1.sampleId } }), [s2, s4]);
        assert.deepEqual(await get({ requestId: 'req_2' }), [other]);

        // a second write of one sample id is refused, never ignored or applied over the first
        await assert.rejects(store.auditTrail.putSample({ ...s1, tenantId: 't_2', ciphertext: randomBytes(8) }));
        assert.deepEqual((await get({ tenantId: 't_1' }))[0], s1);

        // expiry: s1 expires at 200, s3 and s2 at 210, s4 at 220
        assert.deepEqual(await get({ now: 200 }), [s3, s2, s4]);
        assert.deepEqual(await get({ now: 220 }), []);
        assert.equal(await store.auditTrail.deleteExpiredSamples(199), 0);
        assert.equal(await store.auditTrail.deleteExpiredSamples(200), 2, 's1 and the other request id\'s sample');
        assert.deepEqual(await get(), [s3, s2, s4]);
        assert.equal(await store.auditTrail.deleteExpiredSamples(220), 3);
      }));

    it('seals each sample to its own row: a sample copied to another row does not open', () =>
      withFixture(async (_f, store) => {
        const key = Buffer.from('sample-key-TEST-ONLY-00000000000', 'utf8');
        const binding = { sampleId: newSampleId(), requestId: 'shared-trace-id-0001', tenantId: 't_1', createdAt: 1_000, expiresAt: 2_000 };
        await store.auditTrail.putSample({ ...binding, ...sealSample(key, binding, Buffer.from('{"n":1}')) });
        const [read] = await store.auditTrail.getSamples({ requestId: binding.requestId, now: 1_500, limit: 10 });
        assert.ok(read);
        assert.equal(openSample(key, read).toString(), '{"n":1}', 'the row read back opens');
        // the same sealed bytes under another tenant (same request id) are stored, but do not open
        await store.auditTrail.putSample({ ...read, sampleId: newSampleId(), tenantId: 't_2' });
        const copied = (await store.auditTrail.getSamples({ requestId: binding.requestId, now: 1_500, tenantId: 't_2', limit: 10 }))[0];
        assert.ok(copied);
        assert.throws(() => openSample(key, copied));
      }));

    it('keeps samples stored before sample ids readable after the migration (AAD version 1)', () =>
      withBareFixture(async (f) => {
        await f.migrateTo(f.legacySampleLevel);
        const key = Buffer.from('sample-key-TEST-ONLY-00000000000', 'utf8');
        const sealed = sealV1(key, 'legacy-req-0001', '{"old":true}');
        await f.exec(`INSERT INTO content_samples (request_id, tenant_id, created_at, expires_at, iv, tag, ciphertext)
          VALUES ('legacy-req-0001', 't_old', 100, 9000000000000, ${f.blob(sealed.iv)}, ${f.blob(sealed.tag)}, ${f.blob(sealed.ciphertext)})`);
        const store = await f.open();
        const [legacy, ...rest] = await store.auditTrail.getSamples({ requestId: 'legacy-req-0001', now: 200, limit: 10 });
        assert.equal(rest.length, 0);
        assert.ok(legacy);
        assert.equal(legacy.aadVersion, 1);
        assert.equal(legacy.tenantId, 't_old');
        assert.match(legacy.sampleId, /^smp_[0-9a-f]{32}$/);
        assert.equal(openSample(key, legacy).toString(), '{"old":true}');
        assert.throws(() => openSample(key, { ...legacy, aadVersion: 2 }), 'a version-1 row read as version 2 does not open');
        // a new sample under the same request id sits beside it
        const binding = { sampleId: newSampleId(), requestId: 'legacy-req-0001', tenantId: 't_new', createdAt: 150, expiresAt: 9_000 };
        await store.auditTrail.putSample({ ...binding, ...sealSample(key, binding, Buffer.from('{"new":true}')) });
        const both = await store.auditTrail.getSamples({ requestId: 'legacy-req-0001', now: 200, limit: 10 });
        assert.deepEqual(both.map((s) => [s.tenantId, s.aadVersion, openSample(key, s).toString()]), [['t_old', 1, '{"old":true}'], ['t_new', 2, '{"new":true}']]);
      }));

    it('gives every instance the same instance secret', () =>
      withFixture(async (f, a) => {
        const b = await f.open();
        const [x, y] = await Promise.all([a.instanceSecret('tenant-key-hash'), b.instanceSecret('tenant-key-hash')]);
        assert.equal(x.length, 32);
        assert.ok(x.equals(y));
        assert.ok((await a.instanceSecret('tenant-key-hash')).equals(x));
        assert.ok(!(await b.instanceSecret('other')).equals(x));
      }));

    it('lets only the first of two instances claim a one-off event until it expires', () =>
      withFixture(async (f, a) => {
        const b = await f.open();
        const results = await Promise.all([a.claimOnce('alert:t1:90', Date.now() + 60_000), b.claimOnce('alert:t1:90', Date.now() + 60_000)]);
        assert.deepEqual(results.sort(), [false, true]);
        assert.equal(await a.claimOnce('alert:t1:90', Date.now() + 60_000), false);
        assert.equal(await a.claimOnce('alert:short', Date.now() - 1), true);
        assert.equal(await b.claimOnce('alert:short', Date.now() + 60_000), true, 'an expired claim can be taken again');
      }));

    it('moves the change stamp after a write by this instance and by another one', () =>
      withFixture(async (f, a) => {
        const b = await f.open();
        await a.ping();
        await b.ping();
        // settled: two reads with nothing written in between agree (a store may take a moment to start listening)
        assert.ok(await waitFor(() => a.changeStamp() === a.changeStamp(), 2_000), 'the stamp settles once the store is open');
        const before = a.changeStamp();
        const t = await a.tenants.create('acme', null, event('tenant.create'));
        assert.notEqual(a.changeStamp(), before, 'a local write moves the stamp at once');

        assert.ok(await waitFor(() => b.changeStamp() === b.changeStamp(), 2_000));
        const seen = b.changeStamp();
        await a.keys.create(tenantKey('kw_k1', t.id), event('key.issue'));
        assert.ok(await waitFor(() => b.changeStamp() !== seen, 2_000), 'another instance sees the key issued within 2 s');

        assert.ok(await waitFor(() => b.changeStamp() === b.changeStamp(), 2_000));
        const seen2 = b.changeStamp();
        await a.keys.revoke('kw_k1', Date.now(), event('key.revoke'));
        assert.ok(await waitFor(() => b.changeStamp() !== seen2, 2_000), 'another instance sees the revocation within 2 s');
      }));

    it('answers ping and closes', () =>
      withFixture(async (f) => {
        const s = await f.open();
        await s.ping();
        await s.close();
        await assert.rejects(s.ping());
      }));
  });
}

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keywarden-store-'));
  const url = `sqlite:${join(dir, 'keywarden.db')}`;
  const opened: Store[] = [];
  return {
    async open() {
      const s = openSqliteStore(url);
      opened.push(s);
      return s;
    },
    async exec(sql) {
      const db = new Database(url.slice('sqlite:'.length));
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    async dispose() {
      await Promise.allSettled(opened.map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    },
    async migrateTo(level) {
      const db = new Database(url.slice('sqlite:'.length));
      try {
        for (const sql of SQLITE_MIGRATIONS.slice(0, level)) db.exec(sql);
        db.pragma(`user_version = ${level}`);
      } finally {
        db.close();
      }
    },
    legacySampleLevel: 7,
    blob: (bytes) => `X'${bytes.toString('hex')}'`,
  };
});

// every schema this run creates starts with this, and each is dropped when its case ends
const RUN_SCHEMA = `kw_test_${randomBytes(5).toString('hex')}`;
let schemaCount = 0;
const adminPool = DATABASE_URL ? new pg.Pool({ connectionString: DATABASE_URL, max: 2 }) : undefined;
after(async () => {
  await adminPool?.end();
});

storeContract('postgres', async () => {
  const url = DATABASE_URL as string;
  const schema = `${RUN_SCHEMA}_${++schemaCount}`;
  const opened: Store[] = [];
  return {
    async open() {
      const s = await createPostgresStore(url, { schema, poolSize: 4 });
      opened.push(s);
      return s;
    },
    async exec(sql) {
      const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    },
    async dispose() {
      await Promise.allSettled(opened.map((s) => s.close()));
      await adminPool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
    async migrateTo(level) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE SCHEMA ${schema}`);
        await client.query(`SET search_path = ${schema}`);
        await client.query('CREATE TABLE keywarden_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
        for (const [i, sql] of POSTGRES_MIGRATIONS.slice(0, level).entries()) {
          await client.query(sql);
          await client.query('INSERT INTO keywarden_schema (version, applied_at) VALUES ($1, $2)', [i + 1, Date.now()]);
        }
      } finally {
        await client.end();
      }
    },
    legacySampleLevel: 2,
    blob: (bytes) => `'\\x${bytes.toString('hex')}'::bytea`,
  };
}, SKIP_POSTGRES ? { skip: SKIP_POSTGRES } : {});

describe('PostgreSQL store: the credential notification channel', SKIP_POSTGRES ? { skip: SKIP_POSTGRES } : {}, () => {
  it('fails safe while its listening connection is down, and reconnects', async () => {
    const url = DATABASE_URL as string;
    const schema = `${RUN_SCHEMA}_feed`;
    const listeners = async () => new Set((await adminPool?.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN keywarden_credentials' AND datname = current_database()`))?.rows.map((r) => r.pid));
    const writer = await createPostgresStore(url, { schema, poolSize: 2 });
    try {
      assert.ok(await waitFor(() => writer.changeStamp() === writer.changeStamp(), 2_000));
      const before = await listeners();
      const reader = await createPostgresStore(url, { schema, poolSize: 2 });
      try {
        assert.ok(await waitFor(() => reader.changeStamp() === reader.changeStamp(), 2_000), 'settles once listening');
        const mine = [...(await listeners())].filter((pid) => !before.has(pid));
        // another test process opening a store at the same moment may add its own listener: it reconnects too
        assert.ok(mine.length >= 1, 'the store listens on a dedicated connection');
        await adminPool?.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [mine]);
        // a change committed now would not be notified: until the feed is back, nothing may be cached
        assert.ok(await waitFor(() => reader.changeStamp() !== reader.changeStamp(), 2_000), 'the stamp moves on every read while down');
        assert.ok(await waitFor(() => reader.changeStamp() === reader.changeStamp(), 3_000), 'listening again after a reconnect');
        const seen = reader.changeStamp();
        await writer.tenants.create('acme', null, event('tenant.create'));
        assert.ok(await waitFor(() => reader.changeStamp() !== seen, 2_000), 'notifications arrive again');
      } finally {
        await reader.close();
      }
    } finally {
      await writer.close();
      await adminPool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  });
});
