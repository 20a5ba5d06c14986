import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startHarness, postJson, type Harness } from './helpers/harness.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { AUDIT_GENESIS, chainHash } from '../src/store/audit-chain.js';

const chat = (text: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });

describe('usage ledger, audit trail and request log', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('writes one usage row and one audit row per request, with tokens and no content', async () => {
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('records test prompt alpha'));
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id') as string;
    await h.gateway.writer.flush();
    const usage = (await h.gateway.store.records.listUsage({ limit: 100 })).filter((u) => u.requestId === requestId);
    assert.equal(usage.length, 1);
    const row = usage[0]!;
    assert.equal(row.keyId, h.keyId);
    assert.equal(row.provider, 'openai');
    assert.equal(row.model, 'gpt-4o-mini');
    assert.equal(row.status, 200);
    assert.equal(row.outcome, 'success');
    assert.equal(row.inputTokens, res.json.usage.prompt_tokens);
    assert.equal(row.outputTokens, res.json.usage.completion_tokens);
    assert.match(row.promptFingerprint ?? '', /^hmac-sha256:[0-9a-f]{64}$/);
    const audit = (await h.gateway.store.records.listAudit({ limit: 1000 })).filter((a) => a.requestId === requestId);
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.action, 'request');
    assert.equal(audit[0]!.actor, `tenant-key:${h.keyId}`);
    const stored = JSON.stringify([usage, audit]);
    assert.ok(!stored.includes('records test prompt alpha'));
  });

  it('gives repeated prompts the same fingerprint and different prompts different ones', async () => {
    const ids: string[] = [];
    for (const text of ['same prompt', 'same prompt', 'other prompt']) {
      const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat(text));
      assert.equal(res.status, 200);
      ids.push(res.headers.get('x-request-id') as string);
    }
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listUsage({ limit: 100 });
    const fp = ids.map((id) => rows.find((r) => r.requestId === id)?.promptFingerprint);
    assert.ok(fp[0]);
    assert.equal(fp[0], fp[1]);
    assert.notEqual(fp[0], fp[2]);
  });

  it('logs one line per request with gateway and upstream time split, tokens and ids', async () => {
    const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('log line check'));
    const requestId = res.headers.get('x-request-id') as string;
    h.gateway.logger.flush();
    await new Promise((r) => setTimeout(r, 50));
    const line = h.logs.lines.map((l) => JSON.parse(l)).find((l) => l.requestId === requestId && l.msg === 'request');
    assert.ok(line, 'no request log line');
    assert.equal(line.tenant, 'acme');
    assert.equal(line.keyId, h.keyId);
    assert.equal(line.status, 200);
    assert.equal(typeof line.gatewayMs, 'number');
    assert.ok(line.upstreamMs > 0);
    assert.equal(line.outputTokens, res.json.usage.completion_tokens);
  });

  it('chains audit rows so that altering one breaks the chain', async () => {
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listAudit({ limit: 10000 });
    assert.ok(rows.length > 3);
    let prev = AUDIT_GENESIS;
    for (const row of rows) {
      assert.equal(row.prevHash, prev);
      assert.equal(chainHash(prev, row.seq, row), row.hash);
      prev = row.hash;
    }
    const tampered = { ...rows[1]!, details: { ...rows[1]!.details, output_tokens: 999999 } };
    assert.notEqual(chainHash(tampered.prevHash, tampered.seq, tampered), rows[1]!.hash);
  });

  it('flushes queued records when the gateway closes', async () => {
    const local = await startHarness({ flushIntervalMs: 60_000 });
    const dbPath = join(local.dir, 'keywarden.db');
    // a long flush interval would otherwise hold these rows in memory
    for (let i = 0; i < 5; i++) assert.equal((await postJson(`${local.url}/v1/chat/completions`, local.key, chat(`flush ${i}`))).status, 200);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(local.gateway.writer.pending() >= 10, 'rows should still be queued before close');
    await local.gateway.close();
    const store = openSqliteStore(`sqlite:${dbPath}`);
    try {
      const rows = await store.records.listUsage({ limit: 100 });
      assert.equal(rows.filter((r) => r.outcome === 'success').length, 5);
    } finally {
      await store.close();
      await local.close();
    }
  });
});
