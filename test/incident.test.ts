import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHarness, postJson, FAKE_ADMIN_TOKEN, type Harness } from './helpers/harness.js';
import { runCli, cliEnv } from './helpers/cli-process.js';
import { AUDIT_SALT_SECRET, createIdentifierHasher, normaliseAddress } from '../src/audit/trail.js';
import type { BlastRadius } from '../src/services/incident-service.js';

const chat = (model: string, text = 'hello') => ({ model, messages: [{ role: 'user', content: text }], max_tokens: 16 });

async function admin(h: Harness, method: string, path: string, body?: unknown) {
  const res = await fetch(`${h.adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json, headers: res.headers };
}

describe('incident contain against a running gateway', () => {
  let h: Harness;
  before(async () => { h = await startHarness(); });
  after(async () => { await h.close(); });

  it('a contained tenant key is refused on the very next request, and the tenant\'s other keys still work', async () => {
    const leaked = await h.tenantKey('contain-key');
    const sibling = await h.tenantKey('contain-key');
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, leaked.key, chat('gpt-4o-mini'))).status, 200);

    const res = await admin(h, 'POST', '/admin/incidents/contain', { tenant_key: leaked.id });
    assert.equal(res.status, 201);
    assert.match(res.json.id, /^inc_[0-9a-f]{16}$/);
    assert.equal(res.json.kind, 'tenant_key');

    const upstreamBefore = h.mock.received.length;
    const started = Date.now();
    const refused = await postJson(`${h.url}/v1/chat/completions`, leaked.key, chat('gpt-4o-mini'));
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error.code, 'auth_key_revoked');
    assert.ok(Date.now() - started < 1000, 'refused within a second of containment');
    assert.equal(h.mock.received.length, upstreamBefore, 'the provider was not called for the refused request');
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, sibling.key, chat('gpt-4o-mini'))).status, 200);

    await h.gateway.writer.flush();
    const audit = await h.gateway.store.records.listAudit({ limit: 10_000 });
    const revoke = audit.find((a) => a.action === 'key.revoke' && a.target === leaked.id);
    assert.equal(revoke?.details['incident'], res.json.id);
    assert.ok(audit.some((a) => a.action === 'incident.contain' && a.target === res.json.id && a.details['kind'] === 'tenant_key'));
    assert.ok(!audit.some((a) => JSON.stringify(a).includes(leaked.key)), 'no audit row holds the key itself');
  });

  it('a contained tenant refuses every one of its keys at once and leaves other tenants alone', async () => {
    const a = await h.tenantKey('contain-tenant');
    const b = await h.tenantKey('contain-tenant');
    const res = await admin(h, 'POST', '/admin/incidents/contain', { tenant: 'contain-tenant' });
    assert.equal(res.status, 201);
    assert.equal(res.json.kind, 'tenant');
    for (const key of [a.key, b.key]) {
      const refused = await postJson(`${h.url}/v1/chat/completions`, key, chat('gpt-4o-mini'));
      assert.equal(refused.status, 401);
      assert.equal(refused.json.error.code, 'auth_tenant_disabled');
    }
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'))).status, 200);
  });

  it('refuses a contain request that names no target or two targets, and an unknown target', async () => {
    const none = await admin(h, 'POST', '/admin/incidents/contain', {});
    assert.equal(none.status, 400);
    assert.equal(none.json.error.code, 'admin_invalid_request');
    const two = await admin(h, 'POST', '/admin/incidents/contain', { tenant: 'acme', tenant_key: h.keyId });
    assert.equal(two.status, 400);
    const unknown = await admin(h, 'POST', '/admin/incidents/contain', { provider_key: '0123456789abcdef' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'admin_not_found');
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'))).status, 200, 'nothing was contained');
    const missing = await admin(h, 'GET', '/admin/incidents/inc_0000000000000000/investigate');
    assert.equal(missing.status, 404);
  });

  it('without the admin token, contain is refused and nothing is revoked', async () => {
    const res = await fetch(`${h.adminUrl}/admin/incidents/contain`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'acme' }),
    });
    assert.equal(res.status, 401);
    assert.equal((await h.gateway.store.tenants.getByName('acme'))?.status, 'active');
  });
});

describe('incident contain of a provider key', () => {
  let h: Harness;
  before(async () => { h = await startHarness(); });
  after(async () => { await h.close(); });

  it('answers 503 provider_key_contained when the provider has no other current key, without calling the provider', async () => {
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'))).status, 200);
    const row = (await h.gateway.store.providerKeys.list()).find((r) => r.provider === 'openai' && r.state === 'current');
    assert.ok(row);
    const res = await admin(h, 'POST', '/admin/incidents/contain', { provider_key: row.fingerprint });
    assert.equal(res.status, 201);
    assert.equal(res.json.kind, 'provider_key');
    assert.equal(res.json.details['switched_to.openai'], null);

    const upstreamBefore = h.mock.received.length;
    const started = Date.now();
    const refused = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'));
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, 'provider_key_contained');
    assert.ok(Date.now() - started < 1000);
    assert.equal(h.mock.received.length, upstreamBefore, 'the contained key was never sent upstream again');
    assert.ok(!refused.text.includes(h.config.providers['openai']?.apiKey ?? '\u0000'), 'the answer names no key reference');

    const after = await h.gateway.store.providerKeys.get(row.id);
    assert.equal(after?.state, 'revoked');
  });
});

describe('a provider-key incident counts only the requests that key served', () => {
  let h: Harness;
  before(async () => { h = await startHarness(); });
  after(async () => { await h.close(); });

  it('the ledger names the provider key of each forwarded request, and investigate counts only the contained key', async () => {
    const row = (await h.gateway.store.providerKeys.list()).find((r) => r.provider === 'openai' && r.state === 'current');
    assert.ok(row);
    const served: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'));
      assert.equal(res.status, 200);
      served.push(res.headers.get('x-request-id') as string);
    }
    // refused before reaching the provider: no provider key, and not part of the blast radius
    const refused = await postJson(`${h.url}/v1/chat/completions`, h.key, { ...chat('gpt-4o-mini'), logprobs: true });
    assert.equal(refused.status, 400);
    await h.gateway.writer.flush();
    const ledger = await h.gateway.store.records.listUsage({ limit: 100 });
    for (const id of served) assert.equal(ledger.find((u) => u.requestId === id)?.providerKeyId, row.id, 'a served request names its provider key');
    assert.equal(ledger.find((u) => u.requestId === refused.headers.get('x-request-id'))?.providerKeyId ?? null, null);
    const audit = (await h.gateway.store.records.listAudit({ limit: 1000 })).filter((r) => r.action === 'request' && r.requestId === served[0]);
    assert.equal(audit[0]?.details['provider_key'], row.id);

    // a request of the same provider served by another key (as after a rotation) is not in this key's blast radius
    const first = ledger.find((u) => u.requestId === served[0]);
    assert.ok(first);
    await h.gateway.store.records.append([{ ...first, requestId: 'req-other-key-TEST', providerKeyId: 'pk_other_key_TEST' }], []);

    const res = await admin(h, 'POST', '/admin/incidents/contain', { provider_key: row.fingerprint });
    assert.equal(res.status, 201);
    const b = (await admin(h, 'GET', `/admin/incidents/${res.json.id}/investigate`)).json as BlastRadius;
    assert.equal(b.requests.total, served.length, JSON.stringify(b.requests));
  });
});

describe('incident investigate and report', () => {
  let h: Harness;
  let incidentId: string;
  const requestIds: string[] = [];
  const expected = { input: 0, output: 0, models: new Map<string, number>() };
  let startedAt = 0;
  let endedAt = 0;
  let keyId = '';

  before(async () => {
    h = await startHarness();
    const leaked = await h.tenantKey('investigated');
    const bystander = await h.tenantKey('investigated');
    keyId = leaked.id;
    startedAt = Date.now();
    const sends: Array<[string, unknown]> = [
      ['/v1/chat/completions', chat('gpt-4o-mini', 'one')],
      ['/v1/chat/completions', chat('gpt-4o-mini', 'two [[mock:tokens=40]]')],
      ['/v1/chat/completions', chat('fast', 'three')],
      ['/v1/messages', { model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'four' }] }],
      ['/v1/chat/completions', chat('gpt-4o-mini', 'five [[mock:status=500]]')],
    ];
    for (const [path, body] of sends) {
      const res = await postJson(`${h.url}${path}`, leaked.key, body);
      requestIds.push(res.headers.get('x-request-id') as string);
      const model = (body as { model: string }).model;
      expected.models.set(model, (expected.models.get(model) ?? 0) + 1);
      const usage = res.json?.usage as Record<string, number> | undefined;
      expected.input += usage?.['prompt_tokens'] ?? usage?.['input_tokens'] ?? 0;
      expected.output += usage?.['completion_tokens'] ?? usage?.['output_tokens'] ?? 0;
    }
    endedAt = Date.now();
    // traffic of another key of the same tenant is not part of this key's blast radius
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, bystander.key, chat('gpt-4o-mini'))).status, 200);
    const res = await admin(h, 'POST', '/admin/incidents/contain', { tenant_key: leaked.id });
    incidentId = res.json.id;
    // refused after containment: never in the ledger, never in the blast radius
    assert.equal((await postJson(`${h.url}/v1/chat/completions`, leaked.key, chat('gpt-4o-mini'))).status, 401);
    await h.gateway.writer.flush();
  });
  after(async () => { await h.close(); });

  it('the blast radius matches exactly the requests made with the key', async () => {
    const res = await admin(h, 'GET', `/admin/incidents/${incidentId}/investigate`);
    assert.equal(res.status, 200);
    const b = res.json as BlastRadius;
    assert.equal(b.requests.total, requestIds.length);
    assert.deepEqual(b.requests.by_status, { 200: 4, 502: 1 });
    assert.deepEqual(b.keys.map((k) => [k.id, k.requests]), [[keyId, requestIds.length]]);
    assert.deepEqual(b.tenants.map((t) => [t.name, t.requests]), [['investigated', requestIds.length]]);
    assert.deepEqual(new Map(b.models.map((m) => [m.model, m.requests])), expected.models);
    assert.equal(b.tokens.input, expected.input);
    assert.equal(b.tokens.output, expected.output);
    assert.equal(b.tokens.total, expected.input + expected.output);
    assert.ok(expected.output >= 40, 'the token counts were really exercised');

    // cost and timestamps: exactly those of this test's requests in the ledger, found by request id
    const ledger = (await h.gateway.store.records.listUsage({ limit: 10_000 })).filter((u) => requestIds.includes(u.requestId));
    assert.equal(ledger.length, requestIds.length);
    const cost = ledger.reduce((n, u) => n + u.costNanoUsd, 0);
    assert.ok(cost > 0);
    assert.equal(b.cost.nano_usd, cost);
    assert.equal(b.first_use, new Date(Math.min(...ledger.map((u) => u.ts))).toISOString());
    assert.equal(b.last_use, new Date(Math.max(...ledger.map((u) => u.ts))).toISOString());
    assert.ok(Date.parse(b.first_use as string) >= startedAt && Date.parse(b.last_use as string) <= endedAt + 50);

    const hmac = createIdentifierHasher(await h.gateway.store.instanceSecret(AUDIT_SALT_SECRET))(normaliseAddress('127.0.0.1'));
    assert.deepEqual(b.clients, [{ hmac, requests: requestIds.length }]);
    assert.ok(!res.text.includes('127.0.0.1'), 'client addresses appear only as HMACs');
  });

  it('--since narrows the window to nothing when it starts after the last use', async () => {
    const since = new Date(endedAt + 60_000).toISOString();
    const res = await admin(h, 'GET', `/admin/incidents/${incidentId}/investigate?since=${encodeURIComponent(since)}`);
    assert.equal(res.status, 200);
    assert.equal(res.json.requests.total, 0);
    assert.equal(res.json.first_use, null);
  });

  it('the postmortem draft holds the timeline, the figures and sections for remediation and lessons', async () => {
    const res = await admin(h, 'GET', `/admin/incidents/${incidentId}/report`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/markdown/);
    const md = res.text;
    const b = (await admin(h, 'GET', `/admin/incidents/${incidentId}/investigate`)).json as BlastRadius;
    assert.match(md, new RegExp(`^# Postmortem draft: incident ${incidentId}`));
    for (const section of ['## Timeline (UTC)', '## Blast radius', '## Remediation', '## Lessons']) assert.ok(md.includes(section), section);
    assert.ok(md.includes(`- Requests: ${requestIds.length} `));
    assert.ok(md.includes(`${b.tokens.input} input, ${b.tokens.output} output`));
    assert.ok(md.includes(`$${b.cost.usd}`));
    assert.ok(md.includes(b.first_use as string) && md.includes(b.last_use as string));
    for (const model of expected.models.keys()) assert.ok(md.includes(`| ${model} |`), model);
    assert.ok(md.includes((b.clients[0] as { hmac: string }).hmac));
    assert.ok(md.includes(`\`${keyId}\``));
  });
});

/** A config file for the CLI over the harness's store (secret references are never loaded by incident commands). */
function writeConfig(dir: string, storePath: string): string {
  const path = join(dir, 'incident.yaml');
  writeFileSync(path, [
    `store: sqlite:${storePath}`, 'admin:', '  token: env:KW_TEST_ADMIN', 'audit:', '  prompt_hmac_key: env:KW_TEST_PROMPT_KEY',
    'providers:', '  openai:', '    type: openai', '    base_url: http://127.0.0.1:9/v1', '    api_key: env:KW_TEST_PROVIDER', '',
  ].join('\n'));
  return path;
}

describe('keywarden incident (CLI, another process than the gateway)', () => {
  let h: Harness;
  let dir: string;
  let config: string;
  const cli = (args: string[]) => runCli([...args, '--config', config], { cwd: dir, env: cliEnv({}) });
  before(async () => {
    h = await startHarness();
    dir = mkdtempSync(join(tmpdir(), 'keywarden-incident-cli-'));
    config = writeConfig(dir, join(h.dir, 'keywarden.db'));
  });
  after(async () => {
    await h?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('contain --tenant-key revokes the key for the running gateway, and investigate/report read the incident back', async () => {
    const leaked = await h.tenantKey('cli-contain');
    for (const model of ['gpt-4o-mini', 'fast']) assert.equal((await postJson(`${h.url}/v1/chat/completions`, leaked.key, chat(model))).status, 200);
    await h.gateway.writer.flush();

    const contained = await cli(['incident', 'contain', '--tenant-key', leaked.id, '--json']);
    assert.equal(contained.code, 0, contained.stderr);
    const incident = JSON.parse(contained.stdout) as { id: string; actor: string };
    assert.equal(incident.actor, 'cli');
    const refused = await postJson(`${h.url}/v1/chat/completions`, leaked.key, chat('gpt-4o-mini'));
    assert.equal(refused.json.error.code, 'auth_key_revoked');

    const json = await cli(['incident', 'investigate', incident.id, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const b = JSON.parse(json.stdout) as BlastRadius;
    assert.equal(b.requests.total, 2);
    assert.deepEqual(b.models.map((m) => m.model).sort(), ['fast', 'gpt-4o-mini']);
    const text = await cli(['incident', 'investigate', incident.id]);
    assert.match(text.stdout, /^requests: 2 \(success 2\)$/m);
    assert.match(text.stdout, /^client addresses \(1, as HMACs\):\n  hmac-sha256:[0-9a-f]{64}: 2$/m);
    const report = await cli(['incident', 'report', incident.id]);
    assert.equal(report.code, 0);
    assert.match(report.stdout, /## Remediation/);
  });

  it('contain --provider-key takes effect on the running gateway within its register poll (under a second)', async () => {
    const row = (await h.gateway.store.providerKeys.list()).find((r) => r.provider === 'openai' && r.state === 'current');
    assert.ok(row);
    const started = Date.now();
    const contained = await cli(['incident', 'contain', '--provider-key', row.fingerprint]);
    assert.equal(contained.code, 0, contained.stderr);
    assert.match(contained.stdout, /provider openai has no other current key/);
    const commandDone = Date.now();
    let code: string | undefined;
    while (Date.now() - commandDone < 1000) {
      const res = await postJson(`${h.url}/v1/chat/completions`, h.key, chat('gpt-4o-mini'));
      code = res.json?.error?.code;
      if (code === 'provider_key_contained') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(code, 'provider_key_contained', `still served ${Date.now() - commandDone} ms after the command (started ${started})`);
  });

  it('contain with no target is a usage error and changes nothing', async () => {
    const res = await cli(['incident', 'contain']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /exactly one target/);
  });
});

describe('keywarden drill', () => {
  it('rehearses an incident end to end and prints each step with containment under a second', async () => {
    const result = await runCli(['drill'], { cwd: process.cwd(), env: cliEnv({}), timeoutMs: 60_000 });
    assert.equal(result.code, 0, result.stderr + result.stdout);
    for (const step of ['start gateway', 'plant leaked key', 'run traffic', 'contain tenant key', 'contain provider key', 'investigate', 'report']) {
      assert.match(result.stdout, new RegExp(`^${step} +[0-9.]+ ms`, 'm'), step);
    }
    const m = /^containment: tenant key (\d+) ms, provider key (\d+) ms/m.exec(result.stdout);
    assert.ok(m, result.stdout);
    assert.ok(Number(m[1]) < 1000 && Number(m[2]) < 1000, result.stdout);
    assert.match(result.stdout, /blast radius matches the drill's traffic/);
  });
});
