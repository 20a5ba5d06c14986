import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { FAKE_PROVIDER_KEY, startHarness, type Harness } from './helpers/harness.js';
import { newRequestId, usageRow, usageRows } from './helpers/upstream-ledger.js';

/**
 * The official `@anthropic-ai/sdk` as a client of the gateway (it authenticates with
 * `x-api-key`): messages whole and streamed, the ledger, Anthropic-shaped errors, and the
 * tenant's credential staying at the gateway.
 */

const MODEL = 'claude-3-5-haiku-latest';
const PROMPT = 'Say hello to the gateway'; // 24 characters
const SYSTEM = 'Be brief.'; // 9 characters
/** The mock's count: ceil(chars / 4) + 3 per message, `system` counting as one more. */
const INPUT_TOKENS = Math.ceil((PROMPT.length + SYSTEM.length) / 4) + 3 * 2;
const REPLY_TOKENS = 12;
const REPLY = 'This is a deterministic mock reply from keywarden made of fixed words';

let h: Harness;
let client: Anthropic;

function lastUpstream() {
  const last = h.mock.received[h.mock.received.length - 1];
  assert.ok(last, 'the upstream received a request');
  return last;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => assert.fail('expected an error'), (e: unknown) => e);
}

describe('anthropic SDK against the gateway', () => {
  before(async () => {
    h = await startHarness();
    client = new Anthropic({ apiKey: h.key, baseURL: h.url, maxRetries: 0 });
  });
  after(async () => {
    await h.close();
  });

  it('answers a whole message with its text and usage, and records one ledger row', async () => {
    const requestId = newRequestId('sdk');
    const { data, response } = await client.messages
      .create(
        { model: MODEL, max_tokens: 256, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] },
        { headers: { 'x-request-id': requestId } },
      )
      .withResponse();
    assert.equal(data.type, 'message');
    assert.equal(data.role, 'assistant');
    const block = data.content[0];
    assert.ok(block?.type === 'text');
    assert.equal(block.text, REPLY);
    assert.equal(data.stop_reason, 'end_turn');
    assert.equal(data.usage.input_tokens, INPUT_TOKENS);
    assert.equal(data.usage.output_tokens, REPLY_TOKENS);
    assert.equal(response.headers.get('x-request-id'), requestId);

    const rows = await usageRows(h, requestId);
    assert.equal(rows.length, 1);
    const row = rows[0];
    assert.ok(row);
    assert.equal(row.endpoint, 'messages');
    assert.equal(row.provider, 'anthropic');
    assert.equal(row.model, MODEL);
    assert.equal(row.outcome, 'success');
    assert.equal(row.stream, false);
    assert.equal(row.inputTokens, INPUT_TOKENS);
    assert.equal(row.outputTokens, REPLY_TOKENS);
  });

  it('streams a message whose final usage matches the ledger', async () => {
    const requestId = newRequestId('sdk');
    const stream = client.messages.stream(
      { model: MODEL, max_tokens: 256, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] },
      { headers: { 'x-request-id': requestId } },
    );
    let text = '';
    stream.on('text', (delta) => {
      text += delta;
    });
    const final = await stream.finalMessage();
    assert.equal(text, REPLY);
    assert.equal(final.usage.input_tokens, INPUT_TOKENS);
    assert.equal(final.usage.output_tokens, REPLY_TOKENS);
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal((lastUpstream().body as Record<string, unknown>)['stream'], true);

    const row = await usageRow(h, requestId);
    assert.equal(row.outcome, 'success');
    assert.equal(row.stream, true);
    assert.equal(row.status, 200);
    assert.equal(row.inputTokens, INPUT_TOKENS);
    assert.equal(row.outputTokens, REPLY_TOKENS);
  });

  it('clamps max_tokens to the tenant cap upstream', async () => {
    await client.messages.create({ model: MODEL, max_tokens: 20_000, messages: [{ role: 'user', content: PROMPT }] });
    assert.equal((lastUpstream().body as Record<string, unknown>)['max_tokens'], 4096);
    const data = await client.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: PROMPT }] });
    assert.equal((lastUpstream().body as Record<string, unknown>)['max_tokens'], 4);
    assert.equal(data.usage.output_tokens, 4);
    assert.equal(data.stop_reason, 'max_tokens');
  });

  it('sends the server-held key upstream, never the client’s x-api-key', async () => {
    await client.messages.create({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] });
    const received = lastUpstream();
    assert.equal(received.path, '/v1/messages');
    assert.equal(received.headers['x-api-key'], FAKE_PROVIDER_KEY);
    assert.equal(received.headers['authorization'], undefined);
    assert.equal(received.headers['anthropic-version'], '2023-06-01');
    const secretPart = h.key.slice('kw_'.length + 16 + 1);
    for (const [name, value] of Object.entries(received.headers)) {
      const text = Array.isArray(value) ? value.join(',') : String(value);
      assert.ok(!text.includes(h.key), `upstream header ${name} must not carry the tenant key`);
      assert.ok(!text.includes(secretPart), `upstream header ${name} must not carry the tenant key's secret`);
    }
    assert.ok(!JSON.stringify(received.body).includes(secretPart));
    // nor do the SDK's own headers travel on
    assert.ok(!Object.keys(received.headers).some((name) => name.startsWith('x-stainless')), 'SDK headers stay at the gateway');
  });

  it('lists the tenant’s models in Anthropic’s shape', async () => {
    const before = h.mock.received.length;
    const ids: string[] = [];
    for await (const model of client.models.list()) {
      assert.equal(model.type, 'model');
      ids.push(model.id);
    }
    assert.deepEqual(ids.sort(), ['claude-3-5-haiku-latest', 'fast', 'gpt-4o-mini', 'text-embedding-3-small']);
    assert.equal(h.mock.received.length, before);
  });

  it('raises a refused model as an Anthropic-shaped 403 with code policy_model_not_allowed', async () => {
    const before = h.mock.received.length;
    const requestId = newRequestId('sdk');
    const err = await rejection(
      client.messages.create(
        { model: 'claude-opus-4-1', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] },
        { headers: { 'x-request-id': requestId } },
      ),
    );
    assert.ok(err instanceof Anthropic.PermissionDeniedError);
    assert.equal(err.status, 403);
    assert.equal(err.type, 'permission_error');
    assert.deepEqual(err.error, {
      type: 'error',
      error: { type: 'permission_error', message: 'model is not allowed for this tenant', code: 'policy_model_not_allowed' },
      request_id: requestId,
    });
    assert.equal(err.headers.get('x-request-id'), requestId);
    assert.equal(h.mock.received.length, before, 'the upstream was not called');
    const row = await usageRow(h, requestId);
    assert.equal(row.outcome, 'refused');
    assert.equal(row.errorCode, 'policy_model_not_allowed');
  });

  it('raises a refused stream before any event, in the same shape', async () => {
    const before = h.mock.received.length;
    const stream = client.messages.stream({ model: 'claude-opus-4-1', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] });
    const err = await rejection(stream.finalMessage());
    assert.ok(err instanceof Anthropic.PermissionDeniedError);
    const body = err.error as { type: string; error: { type: string; code: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.code, 'policy_model_not_allowed');
    assert.equal(h.mock.received.length, before);
  });

  it('raises a wrong x-api-key as an Anthropic-shaped 401 that says nothing more', async () => {
    // plainly fake, TEST-ONLY: shaped like a tenant key, unlocks nothing
    const fake = 'kw_fakeTESTONLY_0000000000000000000000000000';
    const bad = new Anthropic({ apiKey: fake, baseURL: h.url, maxRetries: 0 });
    const before = h.mock.received.length;
    const err = await rejection(bad.messages.create({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] }));
    assert.ok(err instanceof Anthropic.AuthenticationError);
    assert.equal(err.status, 401);
    const body = err.error as { type: string; error: { type: string; message: string; code: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'authentication_error');
    assert.equal(body.error.code, 'auth_invalid_credentials');
    assert.equal(body.error.message, 'invalid credentials');
    assert.ok(!JSON.stringify(body).includes(fake), 'the presented key is not echoed');
    assert.ok(!h.logs.text().includes(fake), 'the presented key is not logged');
    assert.equal(h.mock.received.length, before);
  });
});
