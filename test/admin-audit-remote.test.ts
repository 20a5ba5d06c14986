import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CONTRACT_MODELS, CONTRACT_POLICY, FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { cliEnv, runCli, type CliResult } from './helpers/cli-process.js';
import { writeCliConfig } from './helpers/provider-keys-setup.js';
import { loadCheckpointKey } from '../src/audit/trail.js';
import { createAuditService } from '../src/services/audit-service.js';
import type { AuditEvent } from '../src/store/types.js';

/*
 * `GET /admin/audit/verify` and `GET /admin/audit/export`, and `keywarden audit verify|export`
 * through them: the same answer and the same bytes as the CLI on the store, unscoped admin
 * tokens only, and an export the client walks away from costs the gateway nothing.
 */

const SEEDED_ROWS = 1_200;
const SECRET_DETAIL = 'canary-detail-TEST-ONLY-7f3a';

function seedEvents(count: number, ts: number): AuditEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    ts: ts + i, actor: 'test', action: 'tenant.create', target: `t_${i}`, outcome: 'success', requestId: null,
    // a value that must never come back from verification (it is row content)
    details: { n: i, note: i === 6 ? SECRET_DETAIL : 'seed', text: i % 97 === 0 ? '=cmd|"quoted", and\nnew line' : 'plain' },
  }));
}

interface Setup {
  h: Harness;
  dir: string;
  localConfig: string;
  cli(extra: Record<string, string>, ...args: string[]): Promise<CliResult>;
  remote(...args: string[]): Promise<CliResult>;
  local(...args: string[]): Promise<CliResult>;
  /** Until the gateway has written every admin.call row so far (the next local read sees them). */
  settle(): Promise<void>;
}

async function setup(seedAt: number): Promise<Setup> {
  const h = await startHarness();
  const dir = mkdtempSync(join(tmpdir(), 'keywarden-audit-remote-'));
  const localConfig = writeCliConfig(h, {
    models: CONTRACT_MODELS,
    tenants: { defaults: { policy: CONTRACT_POLICY } },
  });
  await h.gateway.store.records.append([], seedEvents(SEEDED_ROWS, seedAt));
  const cli = (extra: Record<string, string>, ...args: string[]) =>
    runCli(args, { cwd: dir, env: cliEnv({ KEYWARDEN_DATA_DIR: join(dir, 'data'), ...extra }) });
  return {
    h, dir, localConfig, cli,
    remote: (...args) => cli({ KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN }, '--admin-url', h.adminUrl, ...args),
    local: (...args) => cli({}, '--config', localConfig, ...args),
    settle: async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      await h.gateway.writer.flush();
    },
  };
}

async function adminGet(s: Setup, path: string, token = FAKE_ADMIN_TOKEN) {
  const res = await fetch(`${s.h.adminUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

async function issueToken(s: Setup, role: string, tenants?: string[]): Promise<string> {
  const res = await fetch(`${s.h.adminUrl}/admin/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ owner: `audit-remote-${role}${tenants ? '-scoped' : ''}`, role, ...(tenants ? { tenants } : {}) }),
  });
  assert.equal(res.status, 201);
  return ((await res.json()) as { token: string }).token;
}

describe('audit chain through the admin API (intact trail)', () => {
  let s: Setup;
  const seedAt = Date.now() - 3_600_000;
  before(async () => {
    s = await setup(seedAt);
  });
  after(async () => {
    await s.h.close();
    rmSync(s.dir, { recursive: true, force: true });
  });

  it('GET /admin/audit/verify walks the whole chain and answers ok with counts and the head, no row content', async () => {
    await s.settle();
    const res = await adminGet(s, '/admin/audit/verify');
    assert.equal(res.status, 200);
    assert.match(res.type, /^application\/json/);
    const body = JSON.parse(res.text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['checkpoint', 'first_seq', 'head_hash', 'last_seq', 'ok', 'rows']);
    assert.equal(body['ok'], true);
    assert.ok((body['rows'] as number) >= SEEDED_ROWS, `rows ${String(body['rows'])}`);
    assert.equal(body['first_seq'], 1);
    assert.equal(body['last_seq'], body['rows']);
    assert.match(body['head_hash'] as string, /^[0-9a-f]{64}$/);
    assert.equal(body['checkpoint'], null);
    assert.ok(!res.text.includes(SECRET_DETAIL));
  });

  it('refuses viewer, operator and tenant-scoped admin tokens with 403 on both routes', async () => {
    const [viewer, operator, scoped] = [await issueToken(s, 'viewer'), await issueToken(s, 'operator'), await issueToken(s, 'admin', ['acme'])];
    for (const token of [viewer, operator, scoped]) {
      for (const path of ['/admin/audit/verify', '/admin/audit/export?since=2000-01-01']) {
        const res = await adminGet(s, path, token);
        assert.equal(res.status, 403, `${path}: ${res.text}`);
        assert.equal((JSON.parse(res.text) as { error: { code: string } }).error.code, 'admin_forbidden');
        // nothing of the trail was sent
        assert.ok(!res.text.includes('tenant.create'));
      }
    }
    // and the CLI says so with exit 1, printing no token
    const res = await s.cli({ KEYWARDEN_ADMIN_TOKEN: scoped }, '--admin-url', s.h.adminUrl, 'audit', 'export', '--since', '1d');
    assert.equal(res.code, 1);
    assert.match(res.stderr, /tenant-scoped admin token cannot use this route \(admin_forbidden\)/);
    assert.equal(res.stdout, '');
    assert.ok(!res.stderr.includes(scoped));
  });

  it('refuses an unknown export format and a bad time with 400 admin_invalid_request', async () => {
    for (const [query, param] of [['format=xml', 'format'], ['since=yesterday', 'since'], ['until=soon', 'until']] as const) {
      const res = await adminGet(s, `/admin/audit/export?${query}`);
      assert.equal(res.status, 400, res.text);
      const error = (JSON.parse(res.text) as { error: { code: string; param: string } }).error;
      assert.equal(error.code, 'admin_invalid_request');
      assert.equal(error.param, param);
    }
  });

  it('GET /admin/audit/export streams the same bytes as `audit export` on the store, as x-ndjson and as CSV', async () => {
    // a range that ends before this test: rows appended by its own calls fall outside it
    const since = new Date(seedAt + 100).toISOString();
    const until = new Date(seedAt + 1_100).toISOString();
    await s.settle();
    const http = await adminGet(s, `/admin/audit/export?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`);
    assert.equal(http.status, 200);
    assert.equal(http.type, 'application/x-ndjson');
    const lines = http.text.trimEnd().split('\n');
    assert.equal(lines.length, 1_000);
    const first = JSON.parse(lines[0] as string) as Record<string, unknown>;
    assert.deepEqual(Object.keys(first), ['seq', 'time', 'ts', 'actor', 'action', 'target', 'outcome', 'request_id', 'details', 'prev_hash', 'hash']);
    // consecutive rows chain: the export can be verified offline
    for (let i = 1; i < lines.length; i += 1) {
      assert.equal((JSON.parse(lines[i] as string) as { prev_hash: string }).prev_hash, (JSON.parse(lines[i - 1] as string) as { hash: string }).hash);
    }
    const local = await s.local('audit', 'export', '--since', since, '--until', until, '--format', 'jsonl');
    assert.equal(local.code, 0, local.stderr);
    assert.equal(http.text, local.stdout);

    const csv = await adminGet(s, `/admin/audit/export?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}&format=csv`);
    assert.equal(csv.status, 200);
    assert.match(csv.type, /^text\/csv/);
    const localCsv = await s.local('audit', 'export', '--since', since, '--until', until, '--format', 'csv');
    assert.equal(csv.text, localCsv.stdout);
    assert.ok(csv.text.startsWith('seq,time,actor,action,target,outcome,request_id,details,prev_hash,hash\n'));
  });

  it('`keywarden audit verify` through the admin API prints what it prints on the store', async () => {
    for (const args of [['audit', 'verify'], ['audit', 'verify', '--json']]) {
      // local first: it writes no audit row, and the remote call's own row is written after its answer
      await s.settle();
      const local = await s.local(...args);
      const remote = await s.remote(...args);
      assert.equal(local.code, 0, local.stderr);
      assert.equal(remote.code, 0, remote.stderr);
      assert.equal(remote.stdout, local.stdout);
      assert.match(remote.stdout, /audit chain intact: \d+ rows \(seq 1…\d+\), head [0-9a-f]{64}|"ok":true/);
      assert.ok(!remote.stdout.includes(FAKE_ADMIN_TOKEN) && !remote.stderr.includes(FAKE_ADMIN_TOKEN));
    }
  });

  it('`keywarden audit export` through the admin API prints, and writes with --out, what it does on the store', async () => {
    const since = new Date(seedAt).toISOString();
    const until = new Date(seedAt + SEEDED_ROWS).toISOString();
    for (const format of ['jsonl', 'csv']) {
      const local = await s.local('audit', 'export', '--since', since, '--until', until, '--format', format);
      const remote = await s.remote('audit', 'export', '--since', since, '--until', until, '--format', format);
      assert.equal(local.code, 0, local.stderr);
      assert.equal(remote.code, 0, remote.stderr);
      assert.ok(remote.stdout.length > 100_000, 'spans several pages');
      assert.equal(remote.stdout, local.stdout);

      const localFile = join(s.dir, `local.${format}`);
      const remoteFile = join(s.dir, `remote.${format}`);
      const a = await s.local('audit', 'export', '--since', since, '--until', until, '--format', format, '--out', localFile);
      const b = await s.remote('audit', 'export', '--since', since, '--until', until, '--format', format, '--out', remoteFile);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.equal(readFileSync(remoteFile, 'utf8'), readFileSync(localFile, 'utf8'));
      assert.equal(b.stderr, a.stderr.replace(localFile, remoteFile));
      assert.equal(b.stderr, `exported ${SEEDED_ROWS} audit rows to ${remoteFile}\n`);
    }
  });

  it('refuses `audit prune` and `audit hash` with an admin URL (exit 2, store only), before sending anything', async () => {
    await s.settle();
    const before = await s.h.gateway.store.records.listAudit({ limit: 100_000 });
    const prune = await s.remote('audit', 'prune', '--before', '1d');
    const hash = await s.cli({ KEYWARDEN_ADMIN_URL: s.h.adminUrl }, 'audit', 'hash', '127.0.0.1');
    for (const res of [prune, hash]) {
      assert.equal(res.code, 2);
      assert.match(res.stderr, /"audit (prune|hash)" works on the store only .*through the admin API: audit verify, audit export/);
      assert.equal(res.stdout, '');
    }
    await s.settle();
    const afterRows = await s.h.gateway.store.records.listAudit({ limit: 100_000 });
    // no admin call was made (it would be an admin.call row), nothing pruned
    assert.equal(afterRows.length, before.length);
  });

  it('stops an export the client walks away from, and the gateway goes on serving', async () => {
    const ABANDONED = 'abandoned-export-1';
    // a large trail: more than the socket and stream buffers hold
    await s.h.gateway.store.records.append([], seedEvents(30_000, seedAt + 10_000));
    const received = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${s.h.adminUrl}/admin/audit/export?since=2000-01-01`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'x-request-id': ABANDONED } }, (res) => {
        assert.equal(res.statusCode, 200);
        let bytes = 0;
        res.once('data', (chunk: Buffer) => {
          bytes += chunk.length;
          // the client goes away after the first chunk
          req.destroy();
          resolve(bytes);
        });
      });
      req.on('error', (err) => {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
      });
      req.end();
    });
    assert.ok(received > 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const whoami = await adminGet(s, '/admin/whoami');
    assert.equal(whoami.status, 200);
    // a whole export still works afterwards
    const range = `since=${encodeURIComponent(new Date(seedAt + 10_000).toISOString())}&until=${encodeURIComponent(new Date(seedAt + 40_000).toISOString())}`;
    const whole = await adminGet(s, `/admin/audit/export?${range}`);
    assert.equal(whole.status, 200);
    assert.equal(whole.text.trimEnd().split('\n').length, 30_000);
    // the abandoned call is still an admin.call row, as a refused one would be
    await s.settle();
    const calls = (await s.h.gateway.store.records.queryAudit({ since: 0, until: Date.now() + 1, afterSeq: 0, limit: 1_000, action: 'admin.call', newestFirst: true }))
      .filter((r) => r.requestId === ABANDONED);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.target, '/admin/audit/export');
    assert.equal(calls[0]?.outcome, 'failure');
    assert.equal(calls[0]?.details['status'], 499);
    assert.equal(calls[0]?.actor, 'admin:admin.token');
  });

  it('stops a verification the client walks away from, logging no failure', async () => {
    // 31,000+ rows after the previous test: the walk takes far longer than the 20 ms below
    const ABANDONED = 'abandoned-verify-1';
    await assert.rejects(
      fetch(`${s.h.adminUrl}/admin/audit/verify`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'x-request-id': ABANDONED }, signal: AbortSignal.timeout(20) }),
      { name: 'TimeoutError' },
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await adminGet(s, '/admin/whoami')).status, 200);
    await s.settle();
    const calls = (await s.h.gateway.store.records.queryAudit({ since: 0, until: Date.now() + 1, afterSeq: 0, limit: 1_000, action: 'admin.call', newestFirst: true }))
      .filter((r) => r.requestId === ABANDONED);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.details['status'], 499);
    assert.ok(!s.h.logs.text().includes('admin request failed'), 'a walk-away is not logged as a failure');
  });

  it('reads no further page once the export is abandoned', async () => {
    const { store } = s.h.gateway;
    let pages = 0;
    const counted = { ...store.auditTrail, range: (q: Parameters<typeof store.auditTrail.range>[0]) => { pages += 1; return store.auditTrail.range(q); } };
    const service = createAuditService({ trail: counted, checkpointKey: Buffer.alloc(32), pageRows: 100 });
    const gone = new AbortController();
    let chunks = 0;
    for await (const text of service.export({ since: 0, until: Number.MAX_SAFE_INTEGER, format: 'jsonl' }, gone.signal)) {
      assert.ok(text.length > 0);
      chunks += 1;
      if (chunks === 3) gone.abort();
    }
    assert.equal(chunks, 3);
    assert.equal(pages, 3);
    // and a verification whose caller has gone reads no page at all
    let scans = 0;
    const walked = createAuditService({ trail: { ...store.auditTrail, scan: (a: number, l: number) => { scans += 1; return store.auditTrail.scan(a, l); } }, checkpointKey: Buffer.alloc(32) });
    await assert.rejects(walked.verify(AbortSignal.abort()), { name: 'AbortError' });
    assert.equal(scans, 0);
  });

  it('yields to the event loop between pages while verifying and exporting (a synchronous store does not hold it)', async () => {
    const { store } = s.h.gateway;
    const service = createAuditService({ trail: store.auditTrail, checkpointKey: await loadCheckpointKey(store, undefined), pageRows: 100 });
    const turnsDuring = async (work: () => Promise<unknown>): Promise<number> => {
      let turns = 0;
      let done = false;
      const spin = () => {
        if (done) return;
        turns += 1;
        setImmediate(spin);
      };
      setImmediate(spin);
      await work();
      done = true;
      return turns;
    };
    const verifyTurns = await turnsDuring(async () => assert.equal((await service.verify()).ok, true));
    assert.ok(verifyTurns >= 100, `event loop turns during verify: ${verifyTurns}`);
    const exportTurns = await turnsDuring(async () => {
      for await (const text of service.export({ since: 0, until: Number.MAX_SAFE_INTEGER, format: 'jsonl' })) assert.ok(text.length > 0);
    });
    assert.ok(exportTurns >= 100, `event loop turns during export: ${exportTurns}`);
  });
});

describe('audit chain through the admin API (tampered trail)', () => {
  let s: Setup;
  before(async () => {
    s = await setup(Date.now() - 3_600_000);
  });
  after(async () => {
    await s.h.close();
    rmSync(s.dir, { recursive: true, force: true });
  });

  it('names the altered row over HTTP and through the CLI, as the CLI on the store does, without its content', async () => {
    await s.settle();
    const seq = (await s.h.gateway.store.records.listAudit({ limit: 100_000 })).find((r) => r.details['note'] === SECRET_DETAIL)?.seq;
    assert.ok(seq !== undefined);
    // someone holding the database file rewrites a row behind the append-only triggers
    const db = new Database(join(s.h.dir, 'keywarden.db'));
    try {
      db.exec('DROP TRIGGER audit_log_no_update');
      db.prepare('UPDATE audit_log SET details = ? WHERE seq = ?').run(JSON.stringify({ n: 6, note: `${SECRET_DETAIL}-changed`, text: 'plain' }), seq);
    } finally {
      db.close();
    }
    const res = await adminGet(s, '/admin/audit/verify');
    assert.equal(res.status, 200);
    const body = JSON.parse(res.text) as Record<string, unknown>;
    assert.equal(body['ok'], false);
    assert.equal(body['seq'], seq);
    assert.equal(body['problem'], 'altered');
    assert.equal(body['rows_checked'], seq - 1);
    assert.equal(body['checkpoint'], null);
    assert.ok(!res.text.includes(SECRET_DETAIL), 'row content is never sent');

    for (const args of [['audit', 'verify'], ['audit', 'verify', '--json']]) {
      await s.settle();
      const local = await s.local(...args);
      const remote = await s.remote(...args);
      assert.equal(local.code, 1);
      assert.equal(remote.code, 1);
      assert.equal(remote.stdout, local.stdout);
      assert.equal(remote.stderr, local.stderr);
    }
    const text = await s.remote('audit', 'verify');
    assert.equal(text.stderr, `keywarden: audit chain broken at seq ${seq}: altered: row ${seq} does not match its hash (altered)\n`);
  });
});
