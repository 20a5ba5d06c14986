import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { startHarness, postJson, type Harness } from './helpers/harness.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { AuditEvent } from '../src/store/types.js';
import { checkpointSignature } from '../src/store/audit-chain.js';

const DAY = 86_400_000;

/** A config file for the CLI over `storePath` (its secrets are references; the CLI's audit commands load none but the checkpoint key). */
function writeConfig(dir: string, name: string, storePath: string, audit: Record<string, string> = {}): string {
  const path = join(dir, `${name}.yaml`);
  const auditLines = Object.entries({ prompt_hmac_key: 'env:KW_TEST_PROMPT_KEY', ...audit }).map(([k, v]) => `  ${k}: ${v}`).join('\n');
  writeFileSync(path, [
    `store: sqlite:${storePath}`,
    'admin:',
    '  token: env:KW_TEST_ADMIN',
    'audit:',
    auditLines,
    'providers:',
    '  openai:',
    '    type: openai',
    '    base_url: http://127.0.0.1:9/v1',
    '    api_key: env:KW_TEST_PROVIDER',
    '',
  ].join('\n'));
  return path;
}

describe('keywarden audit (CLI)', () => {
  let h: Harness;
  let dir: string;
  let liveConfig: string;
  const marker = `cli-canary-${randomBytes(6).toString('hex')}`;
  const requestIds: string[] = [];
  const env = () => cliEnv({});
  const cli = (args: string[]) => runCli(args, { cwd: dir, env: env() });

  before(async () => {
    h = await startHarness();
    dir = mkdtempSync(join(tmpdir(), 'keywarden-audit-cli-'));
    liveConfig = writeConfig(dir, 'live', join(h.dir, 'keywarden.db'));
    for (const text of [`first ${marker}`, `second, with "quotes", ${marker}`]) {
      const res = await postJson(`${h.url}/v1/chat/completions`, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });
      assert.equal(res.status, 200);
      requestIds.push(res.headers.get('x-request-id') as string);
    }
    await h.gateway.writer.flush();
  });
  after(async () => {
    await h?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('verify exits 0 with the row count on an intact chain', async () => {
    const rows = await h.gateway.store.records.listAudit({ limit: 10_000 });
    const text = await cli(['audit', 'verify', '--config', liveConfig]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`audit chain intact: ${rows.length} rows`));
    const json = await cli(['audit', 'verify', '--json', '--config', liveConfig]);
    assert.equal(json.code, 0, json.stderr);
    const result = JSON.parse(json.stdout) as { ok: boolean; rows: number; head_hash: string };
    assert.equal(result.ok, true);
    assert.equal(result.rows, rows.length);
    assert.equal(result.head_hash, rows[rows.length - 1]!.hash);
  });

  it('audit hash 127.0.0.1 gives the value the client address is stored as', async () => {
    const res = await cli(['audit', 'hash', '127.0.0.1', '--config', liveConfig]);
    assert.equal(res.code, 0, res.stderr);
    const value = res.stdout.trim();
    assert.match(value, /^hmac-sha256:[0-9a-f]{64}$/);
    const usage = (await h.gateway.store.records.listUsage({ limit: 100 })).filter((u) => requestIds.includes(u.requestId));
    assert.equal(usage.length, 2);
    for (const u of usage) assert.equal(u.clientHmac, value);
    const audit = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.requestId !== null && requestIds.includes(a.requestId));
    for (const a of audit) assert.equal(a.details['client'], value);
    // the IPv4-mapped form of the same address is found too
    const mapped = await cli(['audit', 'hash', '::ffff:127.0.0.1', '--config', liveConfig]);
    assert.equal(mapped.stdout.trim(), value);
    assert.equal((await cli(['audit', 'hash', '--config', liveConfig])).code, 2);
  });

  it('exports JSON lines and CSV for a SIEM, with ids and HMACs but no content', async () => {
    const rows = await h.gateway.store.records.listAudit({ limit: 10_000 });
    const jsonl = await cli(['audit', 'export', '--since', '1d', '--format', 'jsonl', '--config', liveConfig]);
    assert.equal(jsonl.code, 0, jsonl.stderr);
    const lines = jsonl.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.equal(lines.length, rows.length);
    assert.deepEqual(lines.map((l) => l['seq']), rows.map((r) => r.seq));
    const req = lines.find((l) => l['request_id'] === requestIds[0]);
    assert.equal(req?.['action'], 'request');
    assert.match(req?.['details']?.client, /^hmac-sha256:/);
    assert.match(req?.['time'], /^\d{4}-\d{2}-\d{2}T/);
    assert.ok(!jsonl.stdout.includes(marker));

    const csv = await cli(['audit', 'export', '--since', new Date(Date.now() - DAY).toISOString().slice(0, 10), '--format', 'csv', '--config', liveConfig]);
    assert.equal(csv.code, 0, csv.stderr);
    const csvLines = csv.stdout.trim().split('\n');
    assert.equal(csvLines[0], 'seq,time,actor,action,target,outcome,request_id,details,prev_hash,hash');
    assert.equal(csvLines.length, rows.length + 1);
    const reqLine = csvLines.find((l) => l.includes(requestIds[0]!)) ?? '';
    assert.match(reqLine, /,"\{""[^"]+"":/, 'details are a quoted JSON cell');
    assert.ok(!csv.stdout.includes(marker));

    // a window in the future holds nothing; --out writes an owner-only file
    const none = await cli(['audit', 'export', '--since', '2999-01-01', '--format', 'jsonl', '--config', liveConfig]);
    assert.equal(none.stdout, '');
    const outFile = join(dir, 'export.jsonl');
    const toFile = await cli(['audit', 'export', '--since', '1d', '--until', '2999-01-01', '--format', 'jsonl', '--out', outFile, '--config', liveConfig]);
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.equal(readFileSync(outFile, 'utf8').trim().split('\n').length, rows.length);
    assert.equal(statSync(outFile).mode & 0o077, 0);
  });

  it('refuses bad usage with exit 2', async () => {
    assert.equal((await cli(['audit', 'export', '--format', 'jsonl', '--config', liveConfig])).code, 2);
    assert.equal((await cli(['audit', 'export', '--since', '1d', '--format', 'xml', '--config', liveConfig])).code, 2);
    assert.equal((await cli(['audit', 'export', '--since', 'yesterday', '--config', liveConfig])).code, 2);
    const prune = await cli(['audit', 'prune', '--config', liveConfig]);
    assert.equal(prune.code, 2);
    assert.match(prune.stderr, /--before|audit\.retention/);
    assert.equal((await cli(['audit', 'frobnicate', '--config', liveConfig])).code, 2);
  });

  it('prunes past retention with a checkpoint signed by audit.checkpoint_key; verify passes, then catches tampering', async () => {
    const storePath = join(dir, 'prune.db');
    const keyFile = join(dir, 'checkpoint-key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 }); // random per run, unlocks nothing
    const config = writeConfig(dir, 'prune', storePath, { retention: '400d', checkpoint_key: `file:${keyFile}` });
    const store = openSqliteStore(`sqlite:${storePath}`);
    const now = Date.now();
    const events: AuditEvent[] = Array.from({ length: 8 }, (_, i) => ({
      ts: i < 3 ? now - 500 * DAY + i : now - 1000 + i, actor: 'cli', action: 'tenant.create', target: `t_${i}`, outcome: 'success', requestId: null, details: { i },
    }));
    await store.records.append([], events);
    await store.close();

    const pruned = await cli(['audit', 'prune', '--json', '--config', config]);
    assert.equal(pruned.code, 0, pruned.stderr);
    const summary = JSON.parse(pruned.stdout) as { removed: number; up_to_seq: number };
    assert.equal(summary.removed, 3);
    assert.equal(summary.up_to_seq, 3);
    const verified = await cli(['audit', 'verify', '--json', '--config', config]);
    assert.equal(verified.code, 0, verified.stderr);
    const ok = JSON.parse(verified.stdout) as { rows: number; checkpoint: { up_to_seq: number } };
    assert.equal(ok.rows, 6); // rows 4…8 and the audit.prune row
    assert.equal(ok.checkpoint.up_to_seq, 3);

    // without the configured checkpoint key the store's own key does not verify that checkpoint
    const plain = writeConfig(dir, 'plain', storePath);
    const wrongKey = await cli(['audit', 'verify', '--json', '--config', plain]);
    assert.equal(wrongKey.code, 1);
    assert.equal((JSON.parse(wrongKey.stdout) as { problem: string }).problem, 'checkpoint_invalid');

    // someone with the file deletes a row behind the trigger: verify names it
    const db = new Database(storePath);
    db.exec('DROP TRIGGER audit_log_no_delete');
    db.prepare('DELETE FROM audit_log WHERE seq = 5').run();
    db.close();
    const broken = await cli(['audit', 'verify', '--config', config]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /audit chain broken at seq 5: removed/);

    // a forged checkpoint over the hole is refused
    const db2 = new Database(storePath);
    const row = db2.prepare('SELECT hash FROM audit_log WHERE seq = 4').get() as { hash: string };
    const fields = { upToSeq: 5, upToHash: row.hash, removedCount: 2, createdAt: Date.now() };
    db2.prepare('INSERT INTO audit_checkpoints (up_to_seq, up_to_hash, removed_count, created_at, signature) VALUES (?, ?, ?, ?, ?)')
      .run(fields.upToSeq, fields.upToHash, fields.removedCount, fields.createdAt, checkpointSignature(randomBytes(32), fields));
    db2.close();
    const forged = await cli(['audit', 'verify', '--json', '--config', config]);
    assert.equal(forged.code, 1);
    const bad = JSON.parse(forged.stdout) as { ok: boolean; problem: string; seq: number };
    assert.equal(bad.ok, false);
    assert.equal(bad.problem, 'checkpoint_invalid');
    assert.equal(bad.seq, 5);
  });
});
