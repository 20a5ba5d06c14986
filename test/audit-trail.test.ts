import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { startHarness, postJson, FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY, type Harness } from './helpers/harness.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { AuditEvent, Store } from '../src/store/types.js';
import { chainHash, checkpointSignature } from '../src/store/audit-chain.js';
import {
  AUDIT_SALT_SECRET, createIdentifierHasher, normaliseAddress, pruneAuditTrail, runAuditMaintenance, verifyAuditChain,
} from '../src/audit/trail.js';
import { openSample, sealSample } from '../src/audit/sampling.js';
import { validateConfig } from '../src/config/validate.js';

const DAY = 86_400_000;
const chat = (text: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });

function event(i: number, ts: number): AuditEvent {
  return { ts, actor: 'cli', action: 'tenant.create', target: `t_${i}`, outcome: 'success', requestId: null, details: { n: i, name: `tenant-${i}` } };
}

/** A fresh store file with `count` chained audit rows (the first `old` of them 500 days old). */
async function storeWithRows(dir: string, name: string, count: number, old = 0): Promise<{ store: Store; path: string }> {
  const path = join(dir, `${name}.db`);
  const store = openSqliteStore(`sqlite:${path}`);
  const now = Date.now();
  const events = Array.from({ length: count }, (_, i) => event(i + 1, i < old ? now - 500 * DAY + i : now - 1000 + i));
  await store.records.append([], events);
  return { store, path };
}

/** A raw connection for tampering, as someone holding the database file could. */
function raw(path: string): Database.Database {
  return new Database(path);
}

describe('audit chain: append-only rows and verification', () => {
  let dir: string;
  const key = randomBytes(32);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-audit-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies an intact chain and reports its length and head', async () => {
    const { store } = await storeWithRows(dir, 'intact', 12);
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, true);
      if (!result.ok) return;
      assert.equal(result.rows, 12);
      assert.equal(result.firstSeq, 1);
      assert.equal(result.lastSeq, 12);
      const rows = await store.records.listAudit({ limit: 100 });
      assert.equal(result.headHash, rows[rows.length - 1]!.hash);
    } finally {
      await store.close();
    }
  });

  it('refuses UPDATE and DELETE of audit rows and checkpoints through SQL', async () => {
    const { store, path } = await storeWithRows(dir, 'triggers', 5);
    await store.close();
    const db = raw(path);
    try {
      assert.throws(() => db.prepare(`UPDATE audit_log SET details = '{}' WHERE seq = 2`).run(), /append-only/);
      assert.throws(() => db.prepare('DELETE FROM audit_log WHERE seq = 2').run(), /append-only/);
      db.prepare(`INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES (1, 'x', 1, 1, 'y')`).run();
      assert.throws(() => db.prepare('UPDATE audit_checkpoints SET removed_count = 2').run(), /append-only/);
      assert.throws(() => db.prepare('DELETE FROM audit_checkpoints').run(), /append-only/);
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n, 5);
    } finally {
      db.close();
    }
  });

  it('names the altered row when a row\'s details are changed behind the triggers', async () => {
    const { store, path } = await storeWithRows(dir, 'altered', 10);
    const db = raw(path);
    db.exec('DROP TRIGGER audit_log_no_update');
    db.prepare(`UPDATE audit_log SET details = ? WHERE seq = 6`).run(JSON.stringify({ n: 6, name: 'someone-else' }));
    db.close();
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.seq, 6);
      assert.equal(result.problem, 'altered');
    } finally {
      await store.close();
    }
  });

  it('names the first missing row when a middle row is deleted', async () => {
    const { store, path } = await storeWithRows(dir, 'removed', 10);
    const db = raw(path);
    db.exec('DROP TRIGGER audit_log_no_delete');
    db.prepare('DELETE FROM audit_log WHERE seq = 4').run();
    db.close();
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.seq, 4);
      assert.equal(result.problem, 'removed');
    } finally {
      await store.close();
    }
  });

  it('names the first reordered row when two rows swap places', async () => {
    const { store, path } = await storeWithRows(dir, 'swapped', 10);
    const db = raw(path);
    db.exec('DROP TRIGGER audit_log_no_update');
    const cols = ['ts', 'actor', 'action', 'target', 'outcome', 'request_id', 'details', 'prev_hash', 'hash'];
    const get = (seq: number) => db.prepare(`SELECT ${cols.join(', ')} FROM audit_log WHERE seq = ?`).get(seq) as Record<string, unknown>;
    const a = get(3);
    const b = get(7);
    const set = db.prepare(`UPDATE audit_log SET ${cols.map((c) => `${c} = @${c}`).join(', ')} WHERE seq = @seq`);
    db.transaction(() => {
      set.run({ ...b, seq: 3 });
      set.run({ ...a, seq: 7 });
    })();
    db.close();
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.seq, 3);
      assert.equal(result.problem, 'reordered');
    } finally {
      await store.close();
    }
  });

  it('catches a row altered with its own hash recomputed, at the next row', async () => {
    const { store, path } = await storeWithRows(dir, 'rehashed', 10);
    const rows = await store.records.listAudit({ limit: 100 });
    const target = rows[4]!; // seq 5
    const forged = { ...target, details: { ...target.details, name: 'forged' } };
    const db = raw(path);
    db.exec('DROP TRIGGER audit_log_no_update');
    db.prepare('UPDATE audit_log SET details = ?, hash = ? WHERE seq = 5').run(JSON.stringify(forged.details), chainHash(target.prevHash, 5, forged));
    db.close();
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.seq, 6);
      assert.equal(result.problem, 'reordered');
    } finally {
      await store.close();
    }
  });

  it('prunes old rows with a signed checkpoint, keeps verifying, and keeps chaining after it', async () => {
    const { store, path } = await storeWithRows(dir, 'pruned', 10, 4);
    try {
      const cp = await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: key, before: Date.now() - 400 * DAY, actor: 'cli' });
      assert.ok(cp);
      assert.equal(cp.upToSeq, 4);
      assert.equal(cp.removedCount, 4);
      const left = await store.records.listAudit({ limit: 100 });
      assert.deepEqual(left.map((r) => r.seq), [5, 6, 7, 8, 9, 10, 11]);
      const prune = left[left.length - 1]!;
      assert.equal(prune.action, 'audit.prune');
      assert.equal(prune.details['up_to_seq'], 4);
      let result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, true, JSON.stringify(result));
      if (result.ok) {
        assert.equal(result.rows, 7);
        assert.equal(result.checkpoint?.upToSeq, 4);
      }
      // nothing old enough: no checkpoint, nothing removed
      assert.equal(await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: key, before: Date.now() - 400 * DAY, actor: 'cli' }), undefined);
      // prune everything: the chain continues from the checkpoint
      const all = await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: key, before: Date.now() + DAY, actor: 'cli' });
      assert.equal(all?.upToSeq, 11);
      await store.records.append([], [event(99, Date.now())]);
      result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, true, JSON.stringify(result));
      const after = await store.records.listAudit({ limit: 100 });
      assert.deepEqual(after.map((r) => r.seq), [12, 13]);
      assert.equal(after[0]!.prevHash, all?.upToHash);
    } finally {
      await store.close();
    }
    // a checkpoint signed with another key is not trusted
    const other = openSqliteStore(`sqlite:${path}`);
    try {
      const result = await verifyAuditChain(other.auditTrail, randomBytes(32));
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.problem, 'checkpoint_invalid');
    } finally {
      await other.close();
    }
  });

  it('refuses a forged checkpoint that would hide removed rows', async () => {
    const { store, path } = await storeWithRows(dir, 'forged', 10);
    const rows = await store.records.listAudit({ limit: 100 });
    const db = raw(path);
    db.exec('DROP TRIGGER audit_log_no_delete');
    db.prepare('DELETE FROM audit_log WHERE seq <= 6').run();
    // a checkpoint for the removed rows, signed with a key that is not the checkpoint key
    const fields = { upToSeq: 6, upToHash: rows[5]!.hash, removedCount: 6, createdAt: Date.now() };
    db.prepare('INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES (?, ?, ?, ?, ?)')
      .run(fields.upToSeq, fields.upToHash, fields.removedCount, fields.createdAt, checkpointSignature(randomBytes(32), fields));
    db.close();
    try {
      const result = await verifyAuditChain(store.auditTrail, key);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.problem, 'checkpoint_invalid');
      assert.equal(result.seq, 6);
      // what is checked is the signature: the same checkpoint signed with the checkpoint key would pass
      // (so the key must live outside the database: audit.checkpoint_key)
      const db2 = raw(path);
      db2.prepare('INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES (?, ?, ?, ?, ?)')
        .run(fields.upToSeq, fields.upToHash, fields.removedCount, fields.createdAt, checkpointSignature(key, fields));
      db2.close();
      assert.equal((await verifyAuditChain(store.auditTrail, key)).ok, true);
    } finally {
      await store.close();
    }
  });

  it('deletes rows outside the retention job only when the trigger is dropped', async () => {
    const { store, path } = await storeWithRows(dir, 'window', 3);
    await store.close();
    const db = raw(path);
    try {
      // the window row is only ever open inside the prune transaction; none is left behind
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM audit_prune_window').get() as { n: number }).n, 0);
      assert.throws(() => db.prepare('DELETE FROM audit_log').run(), /append-only/);
    } finally {
      db.close();
    }
  });
});

describe('identifiers stored as HMACs under the store salt', () => {
  let h: Harness;
  let hashed: Harness;
  before(async () => {
    h = await startHarness();
    hashed = await startHarness({ config: await auditConfig({ hash_key_ids: true }) });
  });
  after(async () => {
    await h?.close();
    await hashed?.close();
    for (const d of extraDirs) rmSync(d, { recursive: true, force: true });
  });

  it('stores the client address only as hmac-sha256 in the ledger and the audit row', async () => {
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('client address check'));
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id') as string;
    await h.gateway.writer.flush();
    const salt = await h.gateway.store.instanceSecret(AUDIT_SALT_SECRET);
    const expected = createIdentifierHasher(salt)('127.0.0.1');
    assert.match(expected, /^hmac-sha256:[0-9a-f]{64}$/);
    const usage = (await h.gateway.store.records.listUsage({ limit: 100 })).find((u) => u.requestId === requestId);
    assert.equal(usage?.clientHmac, expected);
    const audit = (await h.gateway.store.records.listAudit({ limit: 10_000 })).find((a) => a.requestId === requestId);
    assert.equal(audit?.details['client'], expected);
    // the address itself is in no record and no log line
    const db = raw(join(h.dir, 'keywarden.db'));
    try {
      const rows = JSON.stringify([db.prepare('SELECT * FROM usage_ledger').all(), db.prepare('SELECT * FROM audit_log').all()]);
      assert.ok(!rows.includes('127.0.0.1'));
    } finally {
      db.close();
    }
    h.gateway.logger.flush();
    assert.ok(!h.logs.text().includes('127.0.0.1'), 'the client address reached a log line');
    // another store has another salt
    const otherSalt = await hashed.gateway.store.instanceSecret(AUDIT_SALT_SECRET);
    assert.notEqual(createIdentifierHasher(otherSalt)('127.0.0.1'), expected);
  });

  it('keeps key ids in clear in audit rows by default and as HMACs with audit.hash_key_ids', async () => {
    const res = await postJson(`${hashed.url}/v1/chat/completions`, hashed.key, chat('hashed key id'));
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id') as string;
    await hashed.gateway.writer.flush();
    const row = (await hashed.gateway.store.records.listAudit({ limit: 10_000 })).find((a) => a.requestId === requestId);
    const hash = createIdentifierHasher(await hashed.gateway.store.instanceSecret(AUDIT_SALT_SECRET));
    assert.equal(row?.actor, `tenant-key:${hash(hashed.keyId)}`);
    assert.ok(!JSON.stringify(row).includes(hashed.keyId));
    // the ledger keeps the id: quotas are counted by it
    const usage = (await hashed.gateway.store.records.listUsage({ limit: 100 })).find((u) => u.requestId === requestId);
    assert.equal(usage?.keyId, hashed.keyId);
    assert.equal((await verifyAuditChain(hashed.gateway.store.auditTrail, randomBytes(32))).ok, true);
  });

  it('stores IPv4-mapped IPv6 addresses in their IPv4 form', () => {
    assert.equal(normaliseAddress('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(normaliseAddress('2001:DB8::1'), '2001:db8::1');
    assert.equal(normaliseAddress('127.0.0.1'), '127.0.0.1');
  });
});

const extraDirs: string[] = [];
const SAMPLE_KEY = randomBytes(32).toString('base64'); // generated per run; unlocks nothing

/** An `audit` config section with its secrets in a temp dir (harness secrets are not reachable from here). */
async function auditConfig(extra: Record<string, unknown>): Promise<Record<string, unknown>> {
  const d = mkdtempSync(join(tmpdir(), 'keywarden-audit-secrets-'));
  extraDirs.push(d);
  const secret = (name: string, value: string) => {
    const path = join(d, name);
    writeFileSync(path, value, { mode: 0o600 });
    return `file:${path}`;
  };
  const resolved: Record<string, unknown> = { ...extra };
  if (extra['sampling'] !== undefined) resolved['sampling'] = { ...(extra['sampling'] as object), key: secret('sample-key', SAMPLE_KEY) };
  return { audit: { prompt_hmac_key: secret('prompt-key', FAKE_PROMPT_HMAC_KEY), ...resolved } };
}

describe('content sampling (encrypted, expiring, audited reads)', () => {
  let h: Harness;
  let off: Harness;
  before(async () => {
    h = await startHarness({ config: await auditConfig({ sampling: { rate: 1, retention: '7d' } }) });
    off = await startHarness();
  });
  after(async () => {
    await h?.close();
    await off?.close();
    for (const d of extraDirs) rmSync(d, { recursive: true, force: true });
  });

  const admin = (base: string, path: string, token = FAKE_ADMIN_TOKEN) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });

  it('keeps a sampled prompt and answer sealed, readable only through an audited admin call', async () => {
    const marker = `sample-canary-${randomBytes(8).toString('hex')}`;
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat(`please remember ${marker}`));
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id') as string;
    await h.gateway.writer.flush();

    const auditBefore = await h.gateway.store.records.listAudit({ limit: 10_000 });
    const requestRow = auditBefore.find((a) => a.requestId === requestId && a.action === 'request');
    assert.equal(requestRow?.details['sampled'], true);

    const refused = await admin(h.adminUrl, `/admin/samples/${requestId}`, 'not-the-admin-token');
    assert.equal(refused.status, 401);

    const read = await admin(h.adminUrl, `/admin/samples/${requestId}`);
    assert.equal(read.status, 200);
    assert.equal(read.headers.get('cache-control'), 'no-store');
    type View = { sample_id: string; request_id: string; tenant_id: string; tenant: string; request: { messages: Array<{ content: string }> }; answer: { choices: unknown[] } };
    const body = await read.json() as { request_id: string; samples: View[]; next: string | null };
    assert.equal(body.request_id, requestId);
    assert.equal(body.samples.length, 1);
    assert.equal(body.next, null);
    const [sample] = body.samples as [View];
    assert.equal(sample.request_id, requestId);
    assert.equal(sample.tenant, 'acme');
    assert.match(sample.sample_id, /^smp_[0-9a-f]{32}$/);
    assert.equal(sample.request.messages[0]!.content, `please remember ${marker}`);
    assert.ok(Array.isArray(sample.answer.choices));

    const reads = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.action === 'sample.read' && a.target === requestId);
    assert.equal(reads.length, 1);
    assert.equal(reads[0]!.actor, 'admin:admin.token');
    assert.equal(reads[0]!.outcome, 'success');
    assert.equal(reads[0]!.requestId, read.headers.get('x-request-id'));
    assert.equal(reads[0]!.details['sample'], sample.sample_id);
    assert.equal(reads[0]!.details['tenant'], sample.tenant_id);
    assert.equal((await verifyAuditChain(h.gateway.store.auditTrail, randomBytes(32))).ok, true);

    // the content is nowhere else: not in rows, not in logs, not in clear in the database files
    const rows = JSON.stringify([await h.gateway.store.records.listUsage({ limit: 1000 }), await h.gateway.store.records.listAudit({ limit: 10_000 })]);
    assert.ok(!rows.includes(marker));
    h.gateway.logger.flush();
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(!h.logs.text().includes(marker), 'the sampled prompt reached a log line');
    for (const file of readdirSync(h.dir).filter((f) => f.startsWith('keywarden.db'))) {
      assert.ok(!readFileSync(join(h.dir, file)).includes(marker), `the prompt is in clear in ${file}`);
    }
  });

  it('does not sample streamed answers, and audits the failed read', async () => {
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.key}` },
      body: JSON.stringify({ ...chat('streamed, not sampled'), stream: true }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const requestId = res.headers.get('x-request-id') as string;
    await h.gateway.writer.flush();
    const read = await admin(h.adminUrl, `/admin/samples/${requestId}`);
    assert.equal(read.status, 404);
    assert.equal(((await read.json()) as { error: { code: string } }).error.code, 'admin_not_found');
    const rows = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.action === 'sample.read' && a.target === requestId);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.outcome, 'failure');
    assert.equal(rows[0]!.details['reason'], 'not_found');
  });

  it('deletes samples at expiry and refuses to read an expired one before that', async () => {
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('expiring sample'));
    const requestId = res.headers.get('x-request-id') as string;
    await h.gateway.writer.flush();
    const samples = (now: number) => h.gateway.store.auditTrail.getSamples({ requestId, now, limit: 10 });
    assert.equal((await samples(Date.now())).length, 1);
    assert.equal((await samples(Date.now() + 8 * DAY)).length, 0);
    const result = await runAuditMaintenance({ trail: h.gateway.store.auditTrail, checkpointKey: randomBytes(32), retentionMs: undefined, actor: 'system' }, Date.now() + 8 * DAY);
    assert.ok(result.samplesDeleted >= 1);
    assert.equal(result.checkpoint, undefined);
    const db = raw(join(h.dir, 'keywarden.db'));
    try {
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM content_samples').get() as { n: number }).n, 0);
    } finally {
      db.close();
    }
    assert.equal((await admin(h.adminUrl, `/admin/samples/${requestId}`)).status, 404);
  });

  it('binds a sealed sample to its sample id, request id, tenant and times', () => {
    const k = randomBytes(32);
    const binding = { sampleId: `smp_${'a'.repeat(32)}`, requestId: 'req-aaaaaaaa', tenantId: 't_acme', createdAt: 1_000, expiresAt: 2_000 };
    const sealed = sealSample(k, binding, Buffer.from('{"x":1}'));
    assert.equal(sealed.aadVersion, 2);
    assert.equal(openSample(k, { ...binding, ...sealed }).toString(), '{"x":1}');
    const moved = [
      { sampleId: `smp_${'b'.repeat(32)}` }, { requestId: 'req-bbbbbbbb' }, { tenantId: 't_beta' }, { createdAt: 1_001 }, { expiresAt: 9_000 },
      { aadVersion: 1 as const },
    ];
    for (const change of moved) assert.throws(() => openSample(k, { ...binding, ...sealed, ...change }), JSON.stringify(change));
    assert.throws(() => openSample(randomBytes(32), { ...binding, ...sealed }));
  });

  it('is off by default: no sample, no admin route', async () => {
    const res = await postJson(`${off.url}/v1/chat/completions`, off.key, chat('not sampled'));
    const requestId = res.headers.get('x-request-id') as string;
    await off.gateway.writer.flush();
    assert.deepEqual(await off.gateway.store.auditTrail.getSamples({ requestId, now: Date.now(), limit: 10 }), []);
    const row = (await off.gateway.store.records.listAudit({ limit: 10_000 })).find((a) => a.requestId === requestId);
    assert.equal(row?.details['sampled'], undefined);
    const read = await admin(off.adminUrl, `/admin/samples/${requestId}`);
    assert.equal(read.status, 404);
  });
});

describe('audit configuration', () => {
  const base = {
    admin: { token: 'env:A' },
    providers: { openai: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'env:B' } },
  };
  it('accepts retention, checkpoint key, hashed key ids and sampling', () => {
    const { config, problems } = validateConfig({
      ...base,
      audit: { prompt_hmac_key: 'env:C', hash_key_ids: true, retention: '400d', checkpoint_key: 'env:D', sampling: { rate: 0.01, key: 'env:E', retention: '7d' } },
    });
    assert.deepEqual(problems, []);
    assert.equal(config?.audit.hashKeyIds, true);
    assert.equal(config?.audit.retentionMs, 400 * DAY);
    assert.equal(config?.audit.checkpointKey, 'env:D');
    assert.deepEqual(config?.audit.sampling, { rate: 0.01, key: 'env:E', retentionMs: 7 * DAY });
  });
  it('defaults to no retention, no sampling and key ids in clear', () => {
    const { config } = validateConfig({ ...base, audit: { prompt_hmac_key: 'env:C' } });
    assert.equal(config?.audit.hashKeyIds, false);
    assert.equal(config?.audit.retentionMs, undefined);
    assert.equal(config?.audit.sampling, undefined);
  });
  it('lists every bad audit field, never echoing a literal key', () => {
    const literal = 'c2stZmFrZS1URVNULU9OTFktc2FtcGxlLWtleQ=='; // fake, not a key to anything
    const { problems } = validateConfig({
      ...base,
      audit: { prompt_hmac_key: 'env:C', hash_key_ids: 'yes', retention: '5m', sampling: { rate: 2, key: literal, extra: 1 } },
    });
    for (const path of ['audit.hash_key_ids', 'audit.retention', 'audit.sampling.rate', 'audit.sampling.key', 'audit.sampling.extra']) {
      assert.ok(problems.some((p) => p.startsWith(path)), `no problem for ${path}: ${problems.join('; ')}`);
    }
    assert.ok(!problems.join('\n').includes(literal));
  });
});
