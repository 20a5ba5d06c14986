import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { postJson, startHarness, type Harness } from './helpers/harness.js';
import { auditRows, newRequestId, usageRow, usageRows } from './helpers/upstream-ledger.js';

/**
 * Tenant policy enforced over HTTP: each refusal answers with its code and `param`, the
 * provider is never called, and the refusal is still recorded (ledger row + audit row).
 */

const CHAT = '/v1/chat/completions';
const MESSAGES = '/v1/messages';
const RESPONSES = '/v1/responses';
const EMBEDDINGS = '/v1/embeddings';
const USER = { role: 'user', content: 'hello there' };

let h: Harness;
/** A tenant whose params list lacks `temperature`. */
let plain: { key: string };
/** A tenant whose bodies may be at most 2048 bytes. */
let small: { key: string };
/** A tenant with at most 2 messages per request. */
let few: { key: string };
/** A tenant allowed to use tools. */
let tooling: { key: string };
/** A tenant granted one routed model only. */
let narrow: { key: string };

interface Refusal {
  status: number;
  code: string;
  param?: string | null;
  requestId: string;
  json: Record<string, any>;
}

/**
 * Sends a request that must be refused; checks status, code, param and that the upstream was
 * not called. Returns the parsed answer for further checks.
 */
async function refused(
  path: string,
  key: string,
  body: unknown,
  expected: { status: number; code: string; param?: string | null },
  headers: Record<string, string> = {},
): Promise<Refusal> {
  const before = h.mock.received.length;
  const requestId = newRequestId('policy');
  const res = await postJson(h.url + path, key, body, { 'x-request-id': requestId, ...headers });
  assert.equal(res.status, expected.status, `status for ${expected.code}: ${res.text}`);
  assert.equal(res.headers.get('x-request-id'), requestId);
  assert.ok(res.json, 'a JSON error body');
  const error = res.json['error'] as Record<string, unknown>;
  assert.equal(error['code'], expected.code);
  if (expected.param !== undefined && path !== MESSAGES) assert.equal(error['param'], expected.param);
  assert.equal(h.mock.received.length, before, 'the upstream was not called');
  return { status: res.status, code: expected.code, param: error['param'] as string | null, requestId, json: res.json };
}

describe('policy enforcement over HTTP', () => {
  before(async () => {
    h = await startHarness();
    plain = await h.tenantKey('policy-plain', { params: ['stream', 'max_tokens'] });
    small = await h.tenantKey('policy-small', { max_body_bytes: 2048 });
    few = await h.tenantKey('policy-few', { max_messages: 2 });
    tooling = await h.tenantKey('policy-tools', { tools: true });
    narrow = await h.tenantKey('policy-narrow', { models: ['fast'] });
  });
  after(async () => {
    await h.close();
  });

  describe('models', () => {
    it('refuses a model that is not routed with 403 policy_model_not_allowed', async () => {
      await refused(CHAT, h.key, { model: 'gpt-4o', messages: [USER] }, { status: 403, code: 'policy_model_not_allowed', param: 'model' });
    });

    it('refuses a routed model the tenant was not granted with the same answer', async () => {
      const unrouted = await refused(CHAT, narrow.key, { model: 'gpt-4-secret', messages: [USER] }, { status: 403, code: 'policy_model_not_allowed', param: 'model' });
      const ungranted = await refused(CHAT, narrow.key, { model: 'gpt-4o-mini', messages: [USER] }, { status: 403, code: 'policy_model_not_allowed', param: 'model' });
      // one answer for "does not exist" and "not yours": nothing tells which models exist
      assert.deepEqual(unrouted.json, ungranted.json);
      assert.ok(!JSON.stringify(ungranted.json).includes('gpt-4o-mini'), 'the model name is not echoed');
    });

    it('refuses a model on the Anthropic route in Anthropic’s error shape', async () => {
      const r = await refused(MESSAGES, h.key, { model: 'claude-opus-4-1', max_tokens: 10, messages: [USER] }, { status: 403, code: 'policy_model_not_allowed' });
      assert.equal(r.json['type'], 'error');
      assert.equal(r.json['error'].type, 'permission_error');
      assert.equal(r.json['request_id'], r.requestId);
    });

    it('refuses an embeddings model the tenant may not use', async () => {
      await refused(EMBEDDINGS, narrow.key, { model: 'text-embedding-3-small', input: 'x' }, { status: 403, code: 'policy_model_not_allowed', param: 'model' });
    });
  });

  describe('parameters', () => {
    it('refuses logprobs, which the contract policy does not list, naming it', async () => {
      const r = await refused(CHAT, h.key, { model: 'gpt-4o-mini', messages: [USER], logprobs: true }, { status: 400, code: 'policy_param_not_allowed', param: 'logprobs' });
      assert.match(r.json['error'].message, /"logprobs"/);
    });

    it('refuses temperature for a tenant whose policy lacks it', async () => {
      await refused(CHAT, plain.key, { model: 'gpt-4o-mini', messages: [USER], temperature: 0.2 }, { status: 400, code: 'policy_param_not_allowed', param: 'temperature' });
    });

    it('lets temperature through for a tenant whose policy lists it', async () => {
      const before = h.mock.received.length;
      const res = await postJson(h.url + CHAT, h.key, { model: 'gpt-4o-mini', messages: [USER], temperature: 0.2 });
      assert.equal(res.status, 200);
      assert.equal(h.mock.received.length, before + 1);
      assert.equal((h.mock.received[before]?.body as Record<string, unknown>)['temperature'], 0.2);
    });

    it('refuses a parameter on the Responses and Anthropic routes too', async () => {
      await refused(RESPONSES, plain.key, { model: 'gpt-4o-mini', input: 'hi', instructions: 'be brief' }, { status: 400, code: 'policy_param_not_allowed', param: 'instructions' });
      const r = await refused(MESSAGES, plain.key, { model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [USER], system: 'be brief' }, { status: 400, code: 'policy_param_not_allowed' });
      assert.equal(r.json['type'], 'error');
      assert.equal(r.json['error'].type, 'invalid_request_error');
    });
  });

  describe('tools and files', () => {
    const TOOL = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };

    it('refuses tool definitions for a tenant without tools', async () => {
      await refused(CHAT, h.key, { model: 'gpt-4o-mini', messages: [USER], tools: [TOOL] }, { status: 400, code: 'policy_tools_not_allowed', param: 'tools' });
    });

    it('refuses a tool_choice and a tool-result message for a tenant without tools', async () => {
      await refused(CHAT, h.key, { model: 'gpt-4o-mini', messages: [USER], tool_choice: 'auto' }, { status: 400, code: 'policy_tools_not_allowed', param: 'tool_choice' });
      await refused(
        CHAT,
        h.key,
        { model: 'gpt-4o-mini', messages: [USER, { role: 'tool', tool_call_id: 'call_1', content: '12:00' }] },
        { status: 400, code: 'policy_tools_not_allowed', param: 'messages[1]' },
      );
    });

    it('refuses Anthropic tools for a tenant without tools', async () => {
      const r = await refused(
        MESSAGES,
        h.key,
        { model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [USER], tools: [{ name: 'get_time', input_schema: { type: 'object' } }] },
        { status: 400, code: 'policy_tools_not_allowed' },
      );
      assert.equal(r.json['error'].code, 'policy_tools_not_allowed');
    });

    it('lets a tool call through to the upstream for a tenant with tools: true', async () => {
      const before = h.mock.received.length;
      const body = {
        model: 'gpt-4o-mini',
        messages: [
          USER,
          { role: 'assistant', content: null, tool_calls: [{ type: 'function', id: 'call_1', function: { name: 'get_time', arguments: '{}' } }] },
          { role: 'tool', tool_call_id: 'call_1', content: '12:00' },
        ],
        tools: [TOOL],
        tool_choice: 'auto',
      };
      const res = await postJson(h.url + CHAT, tooling.key, body);
      assert.equal(res.status, 200, res.text);
      assert.equal(h.mock.received.length, before + 1);
      const upstream = h.mock.received[before]?.body as Record<string, unknown>;
      assert.deepEqual(upstream['tools'], [TOOL]);
      assert.equal(upstream['tool_choice'], 'auto');
      assert.equal((upstream['messages'] as unknown[]).length, 3);
    });

    it('refuses an image_url part for a tenant without files, naming the part', async () => {
      await refused(
        CHAT,
        h.key,
        {
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }],
        },
        { status: 400, code: 'policy_files_not_allowed', param: 'messages[0].content[1]' },
      );
    });

    it('refuses an input_image on the Responses route for a tenant without files', async () => {
      await refused(
        RESPONSES,
        h.key,
        { model: 'gpt-4o-mini', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/cat.png', detail: 'auto' }] }] },
        { status: 400, code: 'policy_files_not_allowed', param: 'input[0].content[0]' },
      );
    });
  });

  describe('unknown fields, at any depth', () => {
    it('refuses an unknown field inside a message', async () => {
      await refused(CHAT, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi', foo: 1 }] }, { status: 400, code: 'request_unknown_field', param: 'messages[0].foo' });
    });

    it('refuses a top-level base_url', async () => {
      await refused(CHAT, h.key, { model: 'gpt-4o-mini', messages: [USER], base_url: 'http://169.254.169.254/' }, { status: 400, code: 'request_unknown_field', param: 'base_url' });
    });

    it('refuses an api_base nested in stream_options', async () => {
      await refused(
        CHAT,
        h.key,
        { model: 'gpt-4o-mini', messages: [USER], stream: true, stream_options: { include_usage: true, api_base: 'http://127.0.0.1:1/' } },
        { status: 400, code: 'request_unknown_field', param: 'stream_options.api_base' },
      );
    });

    it('refuses extra_headers nested in a response_format schema block', async () => {
      await refused(
        CHAT,
        h.key,
        {
          model: 'gpt-4o-mini',
          messages: [USER],
          response_format: { type: 'json_schema', json_schema: { name: 'x', extra_headers: { authorization: 'Bearer x' } } },
        },
        { status: 400, code: 'request_unknown_field', param: 'response_format.json_schema.extra_headers' },
      );
    });

    it('refuses a base_url nested in Anthropic metadata', async () => {
      const r = await refused(
        MESSAGES,
        h.key,
        { model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [USER], metadata: { user_id: 'u1', base_url: 'http://127.0.0.1:1/' } },
        { status: 400, code: 'request_unknown_field' },
      );
      assert.match(r.json['error'].message, /metadata\.base_url/);
    });

    it('refuses extra_headers on embeddings', async () => {
      await refused(EMBEDDINGS, h.key, { model: 'text-embedding-3-small', input: 'x', extra_headers: { 'x-api-key': 'x' } }, { status: 400, code: 'request_unknown_field', param: 'extra_headers' });
    });
  });

  describe('size, count and format limits', () => {
    // about 3 KB: over the small tenant's 2048 bytes, far under the default 1 MiB
    const BIG = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(3000) }] };

    it('refuses a body over the tenant’s max_body_bytes with 413 request_body_too_large', async () => {
      await refused(CHAT, small.key, BIG, { status: 413, code: 'request_body_too_large' });
    });

    it('refuses an oversized body sent without a Content-Length as it streams in', async () => {
      const before = h.mock.received.length;
      const payload = Buffer.from(JSON.stringify(BIG));
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < payload.length; i += 512) controller.enqueue(payload.subarray(i, i + 512));
          controller.close();
        },
      });
      const res = await fetch(h.url + CHAT, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${small.key}` },
        body,
        duplex: 'half',
      } as RequestInit & { duplex: 'half' });
      const json = (await res.json()) as { error: { code: string } };
      assert.equal(res.status, 413);
      assert.equal(json.error.code, 'request_body_too_large');
      assert.equal(h.mock.received.length, before);
    });

    it('accepts the same body for a tenant with the default limit', async () => {
      const res = await postJson(h.url + CHAT, h.key, BIG);
      assert.equal(res.status, 200);
    });

    it('refuses more messages than the tenant allows', async () => {
      await refused(CHAT, few.key, { model: 'gpt-4o-mini', messages: [USER, { role: 'assistant', content: 'hi' }, USER] }, { status: 400, code: 'request_too_many_messages', param: 'messages' });
      const ok = await postJson(h.url + CHAT, few.key, { model: 'gpt-4o-mini', messages: [USER, { role: 'assistant', content: 'hi' }] });
      assert.equal(ok.status, 200);
    });

    it('counts embeddings input items against max_messages, strings and token arrays alike', async () => {
      const model = 'text-embedding-3-small';
      await refused(EMBEDDINGS, few.key, { model, input: ['a', 'b', 'c'] }, { status: 400, code: 'request_too_many_messages', param: 'input' });
      await refused(EMBEDDINGS, few.key, { model, input: [[1, 2], [3], [4]] }, { status: 400, code: 'request_too_many_messages', param: 'input' });
      // the default policy cap holds too: 5000 inputs are never forwarded
      await refused(EMBEDDINGS, h.key, { model, input: Array.from({ length: 5000 }, () => 'x') }, { status: 400, code: 'request_too_many_messages', param: 'input' });
      const ok = await postJson(h.url + EMBEDDINGS, few.key, { model, input: ['a', 'b'] });
      assert.equal(ok.status, 200);
    });

    it('refuses an Anthropic thinking budget that is not below the tenant-clamped max_tokens, in Anthropic’s shape', async () => {
      const thinker = await h.tenantKey('policy-thinking', { params: ['thinking'], max_output_tokens: 100 });
      const body = (budget: number) => ({
        model: 'claude-3-5-haiku-latest', max_tokens: 99_999, messages: [USER], thinking: { type: 'enabled', budget_tokens: budget },
      });
      const r = await refused(MESSAGES, thinker.key, body(50_000), { status: 400, code: 'request_invalid' });
      assert.equal(r.json['type'], 'error');
      assert.equal(r.json['error']['type'], 'invalid_request_error');
      assert.match(String(r.json['error']['message']), /"thinking\.budget_tokens"/);
      assert.match(String(r.json['error']['message']), /\b100\b/, 'the message names the tenant cap');
      // a budget below the clamped max_tokens goes through untouched
      const ok = await postJson(h.url + MESSAGES, thinker.key, body(99));
      assert.equal(ok.status, 200, ok.text);
      const sent = h.mock.received[h.mock.received.length - 1]?.body as Record<string, any>;
      assert.equal(sent['max_tokens'], 100);
      assert.deepEqual(sent['thinking'], { type: 'enabled', budget_tokens: 99 });
    });

    it('refuses a body that is not application/json with 415', async () => {
      await refused(CHAT, h.key, JSON.stringify({ model: 'gpt-4o-mini', messages: [USER] }), { status: 415, code: 'request_unsupported_media_type' }, { 'content-type': 'text/plain' });
    });

    it('refuses invalid JSON with 400 request_invalid_json, without quoting it', async () => {
      const canary = 'CANARY-TEST-ONLY-7f3a9c';
      const r = await refused(CHAT, h.key, `{"model":"gpt-4o-mini","messages":[${canary}`, { status: 400, code: 'request_invalid_json' });
      assert.ok(!JSON.stringify(r.json).includes(canary), 'the body is not echoed');
      assert.ok(!h.logs.text().includes(canary), 'the body is not logged');
    });
  });

  describe('records of refusals', () => {
    it('leaves a ledger row with outcome refused and its code, and a failed audit row', async () => {
      const r = await refused(CHAT, plain.key, { model: 'gpt-4o-mini', messages: [USER], temperature: 1 }, { status: 400, code: 'policy_param_not_allowed', param: 'temperature' });
      const row = await usageRow(h, r.requestId);
      assert.equal(row.outcome, 'refused');
      assert.equal(row.errorCode, 'policy_param_not_allowed');
      assert.equal(row.status, 400);
      assert.equal(row.endpoint, 'chat');
      assert.equal(row.inputTokens, 0);
      assert.equal(row.outputTokens, 0);
      assert.equal((await usageRows(h, r.requestId)).length, 1);

      const audits = await auditRows(h, r.requestId);
      assert.equal(audits.length, 1);
      const audit = audits[0];
      assert.ok(audit);
      assert.equal(audit.outcome, 'failure');
      assert.match(audit.actor, /^tenant-key:/);
      assert.equal(audit.details['code'], 'policy_param_not_allowed');
      assert.equal(audit.details['status'], 400);
    });

    it('records refusals made before the body is parsed (size, media type, JSON)', async () => {
      const cases = [
        await refused(CHAT, small.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(3000) }] }, { status: 413, code: 'request_body_too_large' }),
        await refused(CHAT, h.key, '{}', { status: 415, code: 'request_unsupported_media_type' }, { 'content-type': 'text/plain' }),
        await refused(CHAT, h.key, '{not json', { status: 400, code: 'request_invalid_json' }),
      ];
      for (const r of cases) {
        const row = await usageRow(h, r.requestId);
        assert.equal(row.outcome, 'refused');
        assert.equal(row.errorCode, r.code);
        assert.equal(row.status, r.status);
        assert.equal((await auditRows(h, r.requestId)).length, 1);
      }
    });

    it('records a refused model with the refusal code, and no audit detail names the model asked for', async () => {
      const r = await refused(CHAT, h.key, { model: 'secret-model-name-TEST', messages: [USER] }, { status: 403, code: 'policy_model_not_allowed', param: 'model' });
      const row = await usageRow(h, r.requestId);
      assert.equal(row.outcome, 'refused');
      assert.equal(row.errorCode, 'policy_model_not_allowed');
      const audits = await auditRows(h, r.requestId);
      assert.equal(audits.length, 1);
      assert.ok(!JSON.stringify(audits).includes('secret-model-name-TEST'));
    });
  });
});
