/**
 * Content samples and client-chosen request ids (audit finding F2). A well-formed client
 * `x-request-id` is kept for the response and the records, so it cannot be what a sample is
 * keyed by: another tenant (or the same one) may send the same id. Every sample gets a
 * gateway-made sample id, and `GET /admin/samples/:request_id` returns all of them, each with
 * its tenant, each read audited.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { startHarness, postJson, FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY, type Harness } from './helpers/harness.js';
import { createContentSampler, SAMPLES_PER_READ } from '../src/audit/sampling.js';
import { verifyAuditChain } from '../src/audit/trail.js';
import { renderInvestigation, renderReport, type BlastRadius } from '../src/services/incident-service.js';

const SAMPLE_KEY = randomBytes(32); // generated per run; unlocks nothing
const chat = (text: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });

interface SampleView {
  sample_id: string; request_id: string; tenant_id: string; tenant: string | null; created_at: string; expires_at: string;
  request?: { messages: Array<{ content: string }> }; answer?: unknown; error?: string;
}
interface SamplesBody { request_id: string; samples: SampleView[]; next: string | null }

describe('content samples under a client-chosen request id', () => {
  let h: Harness;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-sampling-rid-'));
    const secret = (name: string, value: string) => {
      const path = join(dir, name);
      writeFileSync(path, value, { mode: 0o600 });
      return `file:${path}`;
    };
    h = await startHarness({
      config: { audit: { prompt_hmac_key: secret('prompt-key', FAKE_PROMPT_HMAC_KEY), sampling: { rate: 1, key: secret('sample-key', SAMPLE_KEY.toString('base64')) } } },
    });
  });
  after(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const admin = (path: string) => fetch(`${h.adminUrl}${path}`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` } });
  const rid = (label: string) => `${label}-${randomBytes(6).toString('hex')}`;

  /** Samples are stored after the answer is sent: waits until `count` are there under the id. */
  async function waitForSamples(requestId: string, count: number): Promise<void> {
    await h.gateway.writer.flush();
    const end = Date.now() + 5_000;
    for (;;) {
      const n = (await h.gateway.store.auditTrail.getSamples({ requestId, now: Date.now(), limit: 100 })).length;
      if (n >= count) return;
      assert.ok(Date.now() < end, `only ${n} of ${count} samples stored under ${requestId}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function send(key: string, requestId: string, text: string): Promise<void> {
    const res = await postJson(`${h.url}/v1/chat/completions`, key, chat(text), { 'x-request-id': requestId });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), requestId, 'the client\'s well-formed request id is kept on the response');
  }

  it('keeps another tenant\'s sample when one tenant sent the same request id first (the audit repro)', async () => {
    const beta = await h.tenantKey('beta');
    const requestId = rid('shared-trace-id');
    const decoy = `ACME decoy ${randomBytes(6).toString('hex')}`;
    const real = `BETA real content ${randomBytes(6).toString('hex')}`;
    await send(h.key, requestId, decoy);
    await send(beta.key, requestId, real);
    await waitForSamples(requestId, 2).catch(() => undefined); // before the fix only one was ever stored

    const res = await admin(`/admin/samples/${requestId}`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.includes(real), 'beta\'s real request was displaced by the sample acme planted under the same id');
    assert.ok(text.includes(decoy));

    const body = JSON.parse(text) as SamplesBody;
    assert.equal(body.request_id, requestId);
    assert.equal(body.next, null);
    assert.deepEqual(body.samples.map((s) => [s.tenant, s.request?.messages[0]?.content]), [['acme', decoy], ['beta', real]], 'each sample with its own tenant, oldest first');
    const tenantIds = new Map((await h.gateway.store.tenants.list()).map((t) => [t.name, t.id]));
    assert.deepEqual(body.samples.map((s) => s.tenant_id), [tenantIds.get('acme'), tenantIds.get('beta')]);
    assert.equal(new Set(body.samples.map((s) => s.sample_id)).size, 2);
    for (const s of body.samples) assert.equal(s.request_id, requestId);

    // each sample's time is its request's: the ledger row of the same tenant and request id
    const ledger = (await h.gateway.store.records.listUsage({ limit: 1000 })).filter((r) => r.requestId === requestId);
    assert.deepEqual(ledger.map((r) => r.tenantId).sort(), [tenantIds.get('acme'), tenantIds.get('beta')].sort());
    for (const s of body.samples) {
      assert.ok(ledger.some((r) => r.tenantId === s.tenant_id && new Date(r.ts).toISOString() === s.created_at), `no ledger row of ${s.tenant} at ${s.created_at}`);
    }

    // one audited read per sample disclosed, naming its tenant and sample
    const reads = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.action === 'sample.read' && a.target === requestId);
    assert.deepEqual(reads.map((a) => [a.outcome, a.details['tenant'], a.details['sample']]), body.samples.map((s) => ['success', s.tenant_id, s.sample_id]));
    for (const a of reads) assert.equal(a.requestId, res.headers.get('x-request-id'));
    assert.equal((await verifyAuditChain(h.gateway.store.auditTrail, randomBytes(32))).ok, true);
  });

  it('keeps every sample when one tenant reuses a request id, so reuse cannot evade sampling', async () => {
    const requestId = rid('reused');
    const texts = [1, 2, 3].map((i) => `reuse ${i} ${randomBytes(4).toString('hex')}`);
    for (const t of texts) await send(h.key, requestId, t);
    await waitForSamples(requestId, 3);
    const body = await (await admin(`/admin/samples/${requestId}`)).json() as SamplesBody;
    assert.deepEqual(body.samples.map((s) => s.request?.messages[0]?.content).sort(), [...texts].sort());
    assert.ok(body.samples.every((s) => s.tenant === 'acme'));
  });

  it('filters by tenant, and refuses an unknown tenant or a malformed cursor', async () => {
    const beta = await h.tenantKey('beta');
    const requestId = rid('filtered');
    await send(h.key, requestId, 'acme filtered');
    await send(beta.key, requestId, 'beta filtered');
    await waitForSamples(requestId, 2);

    const onlyBeta = await admin(`/admin/samples/${requestId}?tenant=beta`);
    assert.equal(onlyBeta.status, 200);
    const body = await onlyBeta.json() as SamplesBody;
    assert.deepEqual(body.samples.map((s) => [s.tenant, s.request?.messages[0]?.content]), [['beta', 'beta filtered']]);

    const unknown = await admin(`/admin/samples/${requestId}?tenant=no-such-tenant`);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'admin_not_found');

    const badCursor = await admin(`/admin/samples/${requestId}?after=smp_1`);
    assert.equal(badCursor.status, 400);
    assert.equal(((await badCursor.json()) as { error: { code: string; param?: string } }).error.param, 'after');

    // a tenant with no sample under this id: 404, audited with the tenant asked for
    await h.tenantKey('gamma');
    const none = await admin(`/admin/samples/${requestId}?tenant=gamma`);
    assert.equal(none.status, 404);
    const gammaId = (await h.gateway.store.tenants.getByName('gamma'))?.id;
    const rows = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.action === 'sample.read' && a.target === requestId);
    const last = rows[rows.length - 1];
    assert.equal(last?.outcome, 'failure');
    assert.equal(last?.details['reason'], 'not_found');
    assert.equal(last?.details['tenant'], gammaId);
  });

  it('pages through many samples under one id, none skipped', async () => {
    const requestId = rid('paged');
    const sampler = createContentSampler({ key: SAMPLE_KEY, rate: 1, retentionMs: 3_600_000, trail: h.gateway.store.auditTrail });
    const acmeId = (await h.gateway.store.tenants.getByName('acme'))?.id as string;
    const total = SAMPLES_PER_READ + 3;
    const base = Date.now();
    for (let i = 0; i < total; i++) {
      await sampler.keep({ requestId, tenantId: acmeId, request: { n: i }, answer: Buffer.from(`{"i":${i}}`) }, base + (i % 4));
    }
    const seen: unknown[] = [];
    let path = `/admin/samples/${requestId}`;
    for (let page = 0; page < 5; page++) {
      const res = await admin(path);
      assert.equal(res.status, 200);
      const body = await res.json() as { samples: Array<{ request: { n: number } }>; next: string | null };
      assert.ok(body.samples.length <= SAMPLES_PER_READ);
      seen.push(...body.samples.map((s) => s.request.n));
      if (body.next === null) break;
      path = `/admin/samples/${requestId}?after=${encodeURIComponent(body.next)}`;
    }
    assert.deepEqual([...seen].sort((a, b) => (a as number) - (b as number)), Array.from({ length: total }, (_, i) => i));
  });

  it('returns no content for a sample moved to another tenant\'s row, and audits the failure', async () => {
    const beta = await h.tenantKey('beta');
    const requestId = rid('moved');
    const secretText = `moved canary ${randomBytes(6).toString('hex')}`;
    await send(beta.key, requestId, secretText);
    await waitForSamples(requestId, 1);
    const acmeId = (await h.gateway.store.tenants.getByName('acme'))?.id as string;
    // someone with write access to the database relabels beta's sample as acme's
    const db = new Database(join(h.dir, 'keywarden.db'));
    try {
      assert.equal(db.prepare('UPDATE content_samples SET tenant_id = ? WHERE request_id = ?').run(acmeId, requestId).changes, 1);
    } finally {
      db.close();
    }
    const res = await admin(`/admin/samples/${requestId}`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(!text.includes(secretText), 'a sample moved to another row was opened');
    const body = JSON.parse(text) as SamplesBody;
    assert.equal(body.samples.length, 1);
    assert.equal(body.samples[0]?.error, 'undecryptable');
    assert.equal(body.samples[0]?.request, undefined);
    const reads = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((a) => a.action === 'sample.read' && a.target === requestId);
    assert.deepEqual(reads.map((a) => [a.outcome, a.details['reason'], a.details['sample']]), [['failure', 'undecryptable', body.samples[0]?.sample_id]]);
  });
});

describe('incident reports name the tenant beside a request id', () => {
  // two anomalies under one client-chosen request id, raised for two tenants
  const radius: BlastRadius = {
    incident: {
      id: 'inc_0123456789abcdef', kind: 'tenant', target: 'acme', target_ids: ['t_acme'], tenant_id: 't_acme', provider: null,
      since: '2025-01-01T00:00:00.000Z', contained_at: '2025-01-02T00:00:00.000Z', actor: 'cli', details: {},
    },
    window: { since: '2025-01-01T00:00:00.000Z', until: '2025-01-02T00:00:00.000Z' },
    requests: { total: 0, by_outcome: {}, by_status: {} },
    tenants: [], keys: [], clients: [], models: [],
    tokens: { input: 0, output: 0, cached_input: 0, total: 0 }, cost: { nano_usd: 0, usd: '0.000000000' },
    first_use: null, last_use: null, truncated: false,
    anomalies: [
      { seq: 1, ts: '2025-01-01T01:00:00.000Z', kind: 'volume', target: 'k_acme', tenant: 't_acme', key: 'k_acme', request_id: 'shared-trace-id-0001' },
      { seq: 2, ts: '2025-01-01T02:00:00.000Z', kind: 'volume', target: 'k_beta', tenant: 't_beta', key: 'k_beta', request_id: 'shared-trace-id-0001' },
    ],
  };

  it('in the text investigation', () => {
    const text = renderInvestigation(radius);
    assert.match(text, /request shared-trace-id-0001 \(tenant t_acme\)/);
    assert.match(text, /request shared-trace-id-0001 \(tenant t_beta\)/);
  });

  it('in the postmortem draft: the anomalies table and the timeline', () => {
    const md = renderReport(radius);
    assert.match(md, /\| tenant id \| request \|/);
    assert.match(md, /\| `t_acme` \| `shared-trace-id-0001` \|/);
    assert.match(md, /\| `t_beta` \| `shared-trace-id-0001` \|/);
    assert.match(md, /request `shared-trace-id-0001` of tenant `t_beta`/);
  });
});
