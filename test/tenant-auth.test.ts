import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FAKE_PROVIDER_KEY, postJson, startHarness, type Harness } from './helpers/harness.js';

let h: Harness;

before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };
const MESSAGES = { model: 'claude-3-5-haiku-latest', max_tokens: 32, messages: [{ role: 'user', content: 'hello' }] };

/** Sends a chat completion with the given headers (no credential unless given). */
async function chat(headers: Record<string, string>, body: unknown = CHAT) {
  return postJson(`${h.url}/v1/chat/completions`, undefined, body, headers);
}

const secretOf = (key: string) => key.slice(key.indexOf('_', 3) + 1);
const idOf = (key: string) => key.split('_')[1] as string;

describe('tenant authentication on the public listener', () => {
  beforeEach(() => {
    h.mock.reset();
  });

  it('refuses a request without credentials with 401 auth_missing_credentials, before reading the body', async () => {
    const res = await chat({});
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_missing_credentials');
    assert.equal(res.json.error.type, 'authentication_error');
    // an invalid body changes nothing: authentication comes first
    const invalid = await chat({}, '{"model": ');
    assert.equal(invalid.status, 401);
    assert.equal(invalid.json.error.code, 'auth_missing_credentials');
    const empty = await chat({ authorization: '', 'x-api-key': '' });
    assert.equal(empty.json.error.code, 'auth_missing_credentials');
    assert.equal(h.mock.received.length, 0);
  });

  it('accepts the key as Authorization: Bearer', async () => {
    const res = await chat({ authorization: `Bearer ${h.key}` });
    assert.equal(res.status, 200);
    assert.equal(res.json.object, 'chat.completion');
    assert.equal(h.mock.received.length, 1);
  });

  it('accepts the key as x-api-key, on the OpenAI and the Anthropic routes', async () => {
    const openai = await chat({ 'x-api-key': h.key });
    assert.equal(openai.status, 200);
    const anthropic = await postJson(`${h.url}/v1/messages`, undefined, MESSAGES, { 'x-api-key': h.key, 'anthropic-version': '2023-06-01' });
    assert.equal(anthropic.status, 200, anthropic.text);
    assert.equal(anthropic.json.type, 'message');
    assert.equal(h.mock.received.length, 2);
  });

  it('never forwards the tenant key upstream; the provider key goes instead', async () => {
    await chat({ authorization: `Bearer ${h.key}` });
    const upstream = h.mock.received[0];
    assert.ok(upstream);
    assert.equal(upstream.headers['authorization'], `Bearer ${FAKE_PROVIDER_KEY}`);
    assert.ok(!JSON.stringify(upstream).includes(secretOf(h.key)));
  });

  it('answers wrong secret, unknown id and malformed credentials alike: 401 auth_invalid_credentials', async () => {
    const wrongSecret = `kw_${idOf(h.key)}_${'A'.repeat(43)}`;
    const unknownId = `kw_${'0'.repeat(16)}_${secretOf(h.key)}`;
    const attempts: Array<[string, Record<string, string>]> = [
      ['wrong secret', { authorization: `Bearer ${wrongSecret}` }],
      ['unknown id', { authorization: `Bearer ${unknownId}` }],
      ['malformed', { authorization: 'Bearer not-a-key' }],
      ['truncated key', { authorization: `Bearer ${h.key.slice(0, -1)}` }],
      ['overlong key', { authorization: `Bearer ${h.key}${'A'.repeat(300)}` }],
      ['sql injection', { authorization: "Bearer kw_' OR '1'='1" }],
      ['injection in x-api-key', { 'x-api-key': "' OR 1=1; DROP TABLE tenant_keys; --" }],
      ['another scheme', { authorization: `Basic ${Buffer.from(`u:${h.key}`).toString('base64')}` }],
      ['bare token without scheme', { authorization: h.key }],
      ['wrong secret in x-api-key', { 'x-api-key': wrongSecret }],
      ['bearer wrong, x-api-key right', { authorization: `Bearer ${wrongSecret}`, 'x-api-key': h.key }],
    ];
    const bodies = new Set<string>();
    const requestIds = new Set<string>();
    for (const [name, headers] of attempts) {
      const res = await chat(headers);
      assert.equal(res.status, 401, name);
      assert.equal(res.json?.error?.code, 'auth_invalid_credentials', name);
      bodies.add(res.text);
      requestIds.add(res.headers.get('x-request-id') ?? '');
    }
    assert.equal(bodies.size, 1, `bodies differ:\n${[...bodies].join('\n')}`);
    assert.equal(requestIds.size, attempts.length, 'each answer has its own request id');
    assert.equal(h.mock.received.length, 0, 'a refused request reached the upstream');
    // the store still works after the injection attempts
    assert.equal((await chat({ authorization: `Bearer ${h.key}` })).status, 200);
  });

  it('gives identical Anthropic-shaped bodies apart from the request id', async () => {
    const wrong = `kw_${idOf(h.key)}_${'B'.repeat(43)}`;
    const unknown = `kw_${'1'.repeat(16)}_${'C'.repeat(43)}`;
    const shapes = new Set<string>();
    for (const credential of [wrong, unknown, 'garbage']) {
      const res = await postJson(`${h.url}/v1/messages`, undefined, MESSAGES, { 'x-api-key': credential, 'anthropic-version': '2023-06-01' });
      assert.equal(res.status, 401);
      assert.equal(res.json.type, 'error');
      assert.equal(res.json.error.code, 'auth_invalid_credentials');
      assert.equal(res.json.request_id, res.headers.get('x-request-id'));
      const { request_id: _ignored, ...rest } = res.json;
      shapes.add(JSON.stringify(rest));
    }
    assert.equal(shapes.size, 1);
    assert.equal(h.mock.received.length, 0);
  });

  it('refuses an expired key with auth_key_expired', async () => {
    const expiring = await h.tenantKey('acme', undefined, { expiresInMs: 1000 });
    assert.equal((await chat({ authorization: `Bearer ${expiring.key}` })).status, 200);
    h.mock.reset();
    const expiresAt = (await h.gateway.store.keys.get(expiring.id))?.expiresAt;
    assert.ok(expiresAt);
    await sleep(Math.max(0, expiresAt - Date.now()) + 20);
    const res = await chat({ authorization: `Bearer ${expiring.key}` });
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_key_expired');
    assert.equal(h.mock.received.length, 0);
  });

  it('refuses a revoked key with auth_key_revoked, at once', async () => {
    const issued = await h.tenantKey('acme');
    assert.equal((await chat({ authorization: `Bearer ${issued.key}` })).status, 200);
    h.mock.reset();
    await h.gateway.tenants.revokeKey(issued.id, 'test');
    const res = await chat({ authorization: `Bearer ${issued.key}` });
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_key_revoked');
    assert.equal(h.mock.received.length, 0);
  });

  it('tells why a key is refused only to the holder of its secret', async () => {
    const issued = await h.tenantKey('acme');
    await h.gateway.tenants.revokeKey(issued.id, 'test');
    // right id, wrong secret: nothing about revocation leaks
    const res = await chat({ authorization: `Bearer kw_${issued.id}_${'D'.repeat(43)}` });
    assert.equal(res.status, 401);
    assert.equal(res.json.error.code, 'auth_invalid_credentials');
  });

  it('refuses every key of a disabled tenant with auth_tenant_disabled', async () => {
    const first = await h.tenantKey('hooli');
    const second = await h.tenantKey('hooli');
    assert.equal((await chat({ authorization: `Bearer ${first.key}` })).status, 200);
    h.mock.reset();
    await h.gateway.tenants.setTenantStatus('hooli', 'disabled', 'test');
    for (const key of [first.key, second.key]) {
      const res = await chat({ 'x-api-key': key });
      assert.equal(res.status, 401);
      assert.equal(res.json.error.code, 'auth_tenant_disabled');
    }
    assert.equal(h.mock.received.length, 0);
    // other tenants are unaffected
    assert.equal((await chat({ authorization: `Bearer ${h.key}` })).status, 200);
  });

  it('guards GET /v1/models too', async () => {
    const missing = await fetch(`${h.url}/v1/models`);
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as any).error.code, 'auth_missing_credentials');
    const wrong = await fetch(`${h.url}/v1/models`, { headers: { authorization: `Bearer kw_${'2'.repeat(16)}_${'E'.repeat(43)}` } });
    assert.equal(wrong.status, 401);
    assert.equal(((await wrong.json()) as any).error.code, 'auth_invalid_credentials');
    const ok = await fetch(`${h.url}/v1/models`, { headers: { authorization: `Bearer ${h.key}` } });
    assert.equal(ok.status, 200);
  });

  it('consumes no ledger rows for requests refused before a tenant is known', async () => {
    await h.gateway.writer.flush();
    const before = (await h.gateway.store.records.listUsage({ limit: 10_000 })).length;
    await chat({});
    await chat({ authorization: 'Bearer nope' });
    await h.gateway.writer.flush();
    const after = (await h.gateway.store.records.listUsage({ limit: 10_000 })).length;
    assert.equal(after, before);
  });

  it('never writes a presented credential to the logs', async () => {
    const wrong = `kw_${idOf(h.key)}_${'F'.repeat(43)}`;
    await chat({ authorization: `Bearer ${wrong}` });
    await chat({ authorization: `Bearer ${h.key}` });
    h.gateway.logger.flush();
    await sleep(20);
    const logs = h.logs.text();
    assert.ok(h.logs.lines.length > 0);
    assert.ok(!logs.includes(secretOf(h.key)));
    assert.ok(!logs.includes('F'.repeat(43)));
  });
});

describe('stored tenant keys', () => {
  it('hold only a 64-hex keyed hash, never the secret', async () => {
    const extra = await h.tenantKey('acme');
    const records = await h.gateway.store.keys.list();
    assert.ok(records.length >= 2);
    for (const record of records) {
      assert.match(record.secretHash, /^[0-9a-f]{64}$/);
      assert.match(record.id, /^[a-z0-9]{16}$/);
    }
    for (const key of [h.key, extra.key]) {
      const record = records.find((r) => r.id === idOf(key));
      assert.ok(record, 'no stored row for an issued key');
      const secret = secretOf(key);
      const text = JSON.stringify(record);
      assert.ok(!text.includes(secret), 'the stored row holds the secret');
      assert.ok(!text.includes(key));
      // keyed: not a plain digest anyone could compute from a leaked secret list
      assert.notEqual(record.secretHash, createHash('sha256').update(secret).digest('hex'));
      assert.notEqual(record.secretHash, createHash('sha256').update(key).digest('hex'));
    }
  });
});
