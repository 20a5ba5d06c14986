import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { APIError } from 'openai';
import { startHarness, type Harness } from './helpers/harness.js';
import { newRequestId, usageRow } from './helpers/upstream-ledger.js';

/**
 * The official `openai` SDK (v6) as a client of the gateway: only its base URL and API key
 * change. Whole and streamed chat, the Responses API, embeddings, model listing and errors.
 */

const PROMPT = 'Say hello to the gateway'; // 24 characters
/** The mock's count: ceil(chars / 4) + 3 per message. */
const PROMPT_TOKENS = Math.ceil(PROMPT.length / 4) + 3;
/** The mock's default reply length in words (= tokens). */
const REPLY_TOKENS = 12;
const REPLY = 'This is a deterministic mock reply from keywarden made of fixed words';

let h: Harness;
let client: OpenAI;

function lastUpstream() {
  const last = h.mock.received[h.mock.received.length - 1];
  assert.ok(last, 'the upstream received a request');
  return last;
}

function upstreamBody(): Record<string, unknown> {
  return lastUpstream().body as Record<string, unknown>;
}

describe('openai SDK against the gateway', () => {
  before(async () => {
    h = await startHarness();
    client = new OpenAI({ apiKey: h.key, baseURL: h.url + '/v1', maxRetries: 0 });
  });
  after(async () => {
    await h.close();
  });

  describe('chat completions', () => {
    it('answers a whole chat completion with the reply and its usage', async () => {
      const requestId = newRequestId('sdk');
      const { data, response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-request-id': requestId } })
        .withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.choices[0]?.message.content, REPLY);
      assert.equal(data.choices[0]?.finish_reason, 'stop');
      assert.equal(data.usage?.prompt_tokens, PROMPT_TOKENS);
      assert.equal(data.usage?.completion_tokens, REPLY_TOKENS);
      assert.equal(response.headers.get('x-request-id'), requestId, 'a well-formed incoming request id is kept');
      assert.equal(response.headers.get('x-keywarden-output-tokens'), String(REPLY_TOKENS));

      const row = await usageRow(h, requestId);
      assert.equal(row.outcome, 'success');
      assert.equal(row.status, 200);
      assert.equal(row.endpoint, 'chat');
      assert.equal(row.stream, false);
      assert.equal(row.inputTokens, PROMPT_TOKENS);
      assert.equal(row.outputTokens, REPLY_TOKENS);
    });

    it('replaces a malformed incoming x-request-id instead of echoing it', async () => {
      const malformed = 'bad id; drop table'; // spaces and ';' are outside the accepted set
      const { response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-request-id': malformed } })
        .withResponse();
      const id = response.headers.get('x-request-id');
      assert.ok(id, 'the answer carries a request id');
      assert.notEqual(id, malformed);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.ok(!h.logs.text().includes(malformed), 'the malformed id never reaches the logs');
    });

    it('sends the provider model behind the `fast` alias upstream and records the public name', async () => {
      const requestId = newRequestId('sdk');
      const data = await client.chat.completions.create(
        { model: 'fast', messages: [{ role: 'user', content: PROMPT }] },
        { headers: { 'x-request-id': requestId } },
      );
      assert.equal(upstreamBody()['model'], 'gpt-4o-mini');
      assert.equal(lastUpstream().path, '/v1/chat/completions');
      assert.equal(data.choices[0]?.message.content, REPLY);
      const row = await usageRow(h, requestId);
      assert.equal(row.model, 'fast');
      assert.equal(row.provider, 'openai');
    });

    it('clamps a max_tokens above the tenant cap to the cap upstream', async () => {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: 100_000 });
      const body = upstreamBody();
      assert.equal(body['max_tokens'], 4096);
      assert.equal(body['max_completion_tokens'], undefined);
    });

    it('keeps a max_tokens below the tenant cap as the client sent it', async () => {
      const data = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: 5 });
      assert.equal(upstreamBody()['max_tokens'], 5);
      assert.equal(data.usage?.completion_tokens, 5);
      assert.equal(data.choices[0]?.finish_reason, 'length');
    });

    it('sets the cap upstream when the client sends none', async () => {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] });
      const body = upstreamBody();
      assert.equal(body['max_completion_tokens'], 4096);
      assert.equal(body['max_tokens'], undefined);
    });

    it('enforces a tenant’s lower output cap on the real answer', async () => {
      const small = await h.tenantKey('sdk-small-cap', { max_output_tokens: 3 });
      const smallClient = new OpenAI({ apiKey: small.key, baseURL: h.url + '/v1', maxRetries: 0 });
      const data = await smallClient.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_completion_tokens: 50 });
      assert.equal(upstreamBody()['max_completion_tokens'], 3);
      assert.equal(data.usage?.completion_tokens, 3);
    });

    it('streams a chat completion without a usage chunk when the client did not ask, yet meters it', async () => {
      const requestId = newRequestId('sdk');
      const stream = await client.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true },
        { headers: { 'x-request-id': requestId } },
      );
      let text = '';
      let usageChunks = 0;
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        if (chunk.usage) usageChunks++;
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(text, REPLY);
      assert.equal(finish, 'stop');
      assert.equal(usageChunks, 0, 'no usage chunk reaches a client that did not ask for one');
      // the gateway asked for it anyway, to meter the stream
      assert.deepEqual(upstreamBody()['stream_options'], { include_usage: true });

      const row = await usageRow(h, requestId);
      assert.equal(row.outcome, 'success');
      assert.equal(row.stream, true);
      assert.equal(row.inputTokens, PROMPT_TOKENS);
      assert.equal(row.outputTokens, REPLY_TOKENS);
    });

    it('streams the usage chunk to a client that asked for it', async () => {
      const requestId = newRequestId('sdk');
      const stream = await client.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true, stream_options: { include_usage: true } },
        { headers: { 'x-request-id': requestId } },
      );
      const usages: OpenAI.CompletionUsage[] = [];
      let text = '';
      for await (const chunk of stream) {
        if (chunk.usage) usages.push(chunk.usage);
        text += chunk.choices[0]?.delta.content ?? '';
      }
      assert.equal(text, REPLY);
      assert.equal(usages.length, 1);
      assert.equal(usages[0]?.prompt_tokens, PROMPT_TOKENS);
      assert.equal(usages[0]?.completion_tokens, REPLY_TOKENS);
      const row = await usageRow(h, requestId);
      assert.equal(row.outputTokens, REPLY_TOKENS);
    });

    it('carries x-request-id on a streamed answer', async () => {
      const requestId = newRequestId('sdk');
      const { data, response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true }, { headers: { 'x-request-id': requestId } })
        .withResponse();
      for await (const _chunk of data) {
        // drain
      }
      assert.equal(response.headers.get('x-request-id'), requestId);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    });
  });

  describe('responses', () => {
    it('answers a whole response with output text and usage, the cap sent upstream', async () => {
      const requestId = newRequestId('sdk');
      const data = await client.responses.create(
        { model: 'gpt-4o-mini', input: PROMPT, max_output_tokens: 10_000 },
        { headers: { 'x-request-id': requestId } },
      );
      assert.equal(data.status, 'completed');
      assert.equal(data.output_text, REPLY);
      assert.equal(data.usage?.input_tokens, Math.ceil(PROMPT.length / 4) + 3);
      assert.equal(data.usage?.output_tokens, REPLY_TOKENS);
      assert.equal(lastUpstream().path, '/v1/responses');
      assert.equal(upstreamBody()['max_output_tokens'], 4096);
      const row = await usageRow(h, requestId);
      assert.equal(row.endpoint, 'responses');
      assert.equal(row.outputTokens, REPLY_TOKENS);
    });

    it('streams a response to its completed event and meters it', async () => {
      const requestId = newRequestId('sdk');
      const stream = await client.responses.create(
        { model: 'gpt-4o-mini', input: PROMPT, stream: true },
        { headers: { 'x-request-id': requestId } },
      );
      let text = '';
      let completed: OpenAI.Responses.Response | undefined;
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') text += event.delta;
        if (event.type === 'response.completed') completed = event.response;
      }
      assert.equal(text, REPLY);
      assert.ok(completed, 'the completed event arrived');
      assert.equal(completed.usage?.output_tokens, REPLY_TOKENS);
      assert.equal(upstreamBody()['max_output_tokens'], 4096, 'the cap is set when the client gave none');
      const row = await usageRow(h, requestId);
      assert.equal(row.outcome, 'success');
      assert.equal(row.stream, true);
      assert.equal(row.outputTokens, REPLY_TOKENS);
    });
  });

  describe('output caps on the Responses API', () => {
    it('clamps max_output_tokens to a tenant’s lower cap upstream, whole and streamed, and the answer stops there', async () => {
      const small = await h.tenantKey('sdk-responses-small-cap', { max_output_tokens: 3 });
      const smallClient = new OpenAI({ apiKey: small.key, baseURL: h.url + '/v1', maxRetries: 0 });

      const whole = await smallClient.responses.create({ model: 'gpt-4o-mini', input: PROMPT, max_output_tokens: 50 });
      assert.equal(upstreamBody()['max_output_tokens'], 3);
      assert.equal(whole.status, 'incomplete', 'the reply was cut by the clamped cap');
      assert.equal(whole.usage?.output_tokens, 3);

      const stream = await smallClient.responses.create({ model: 'gpt-4o-mini', input: PROMPT, max_output_tokens: 50, stream: true });
      let final: OpenAI.Responses.Response | undefined;
      for await (const event of stream) {
        if (event.type === 'response.incomplete' || event.type === 'response.completed') final = event.response;
      }
      assert.equal(upstreamBody()['max_output_tokens'], 3);
      assert.equal(upstreamBody()['stream'], true);
      assert.equal(final?.status, 'incomplete');
      assert.equal(final?.usage?.output_tokens, 3);
    });

    it('keeps a max_output_tokens below the tenant cap, and sends the cap for an explicit null', async () => {
      await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT, max_output_tokens: 20 });
      assert.equal(upstreamBody()['max_output_tokens'], 20);
      await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT, max_output_tokens: null, stream: true }).then(async (s) => {
        for await (const _ of s) void _;
      });
      assert.equal(upstreamBody()['max_output_tokens'], 4096);
    });
  });

  describe('an explicit null output cap', () => {
    it('is treated as absent on chat: exactly one cap field, clamped, reaches the provider', async () => {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: null, max_completion_tokens: 99_999 });
      let body = upstreamBody();
      assert.equal(body['max_completion_tokens'], 4096);
      assert.equal(Object.hasOwn(body, 'max_tokens'), false, 'the null max_tokens is not sent as a second cap');

      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: 7, max_completion_tokens: null });
      body = upstreamBody();
      assert.equal(body['max_tokens'], 7);
      assert.equal(Object.hasOwn(body, 'max_completion_tokens'), false);

      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], max_tokens: null, stream: true }).then(async (s) => {
        for await (const _ of s) void _;
      });
      body = upstreamBody();
      assert.equal(body['max_completion_tokens'], 4096);
      assert.equal(Object.hasOwn(body, 'max_tokens'), false);
    });
  });

  describe('embeddings', () => {
    it('decodes the SDK’s default base64 embeddings to the same vector as float ones', async () => {
      const requestId = newRequestId('sdk');
      const b64 = await client.embeddings.create(
        { model: 'text-embedding-3-small', input: 'embed this text' },
        { headers: { 'x-request-id': requestId } },
      );
      assert.equal(upstreamBody()['encoding_format'], 'base64', 'the SDK asks for base64 by default');
      const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'embed this text', encoding_format: 'float' });
      assert.equal(upstreamBody()['encoding_format'], 'float');

      const a = b64.data[0]?.embedding;
      const b = floats.data[0]?.embedding;
      assert.ok(Array.isArray(a) && Array.isArray(b));
      assert.equal(a.length, 8);
      assert.ok(a.every((x) => typeof x === 'number' && Number.isFinite(x)));
      assert.deepEqual(a, b);
      assert.equal(b64.usage.prompt_tokens, Math.ceil('embed this text'.length / 4));

      const row = await usageRow(h, requestId);
      assert.equal(row.endpoint, 'embeddings');
      assert.equal(row.inputTokens, Math.ceil('embed this text'.length / 4));
      assert.equal(row.outputTokens, 0);
    });

    it('embeds several inputs in order', async () => {
      const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two', 'three'], dimensions: 4 });
      assert.deepEqual(res.data.map((d) => d.index), [0, 1, 2]);
      assert.ok(res.data.every((d) => d.embedding.length === 4));
    });
  });

  describe('models', () => {
    it('lists exactly the models the tenant may use, without calling the upstream', async () => {
      const before = h.mock.received.length;
      const ids: string[] = [];
      for await (const model of client.models.list()) ids.push(model.id);
      assert.deepEqual(ids.sort(), ['claude-3-5-haiku-latest', 'fast', 'gpt-4o-mini', 'text-embedding-3-small']);
      assert.equal(h.mock.received.length, before);
    });

    it('lists only a narrower tenant’s models, leaving out granted names that are not routed', async () => {
      const narrow = await h.tenantKey('sdk-narrow', { models: ['fast', 'gpt-4o'] });
      const narrowClient = new OpenAI({ apiKey: narrow.key, baseURL: h.url + '/v1', maxRetries: 0 });
      const ids: string[] = [];
      for await (const model of narrowClient.models.list()) ids.push(model.id);
      assert.deepEqual(ids, ['fast']);
    });
  });

  describe('errors', () => {
    it('raises a refused model as an APIError 403 with code policy_model_not_allowed, without calling the upstream', async () => {
      const before = h.mock.received.length;
      const requestId = newRequestId('sdk');
      const err = await client.chat.completions
        .create({ model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-request-id': requestId } })
        .then(() => assert.fail('expected an error'), (e: unknown) => e);
      assert.ok(err instanceof APIError, 'an APIError');
      assert.ok(err instanceof OpenAI.PermissionDeniedError);
      assert.equal(err.status, 403);
      assert.equal(err.code, 'policy_model_not_allowed');
      assert.equal(err.param, 'model');
      assert.equal(err.type, 'permission_error');
      assert.equal(err.headers?.get('x-request-id'), requestId);
      assert.equal(h.mock.received.length, before);
    });

    it('raises a policy refusal on a stream request before any chunk', async () => {
      const before = h.mock.received.length;
      const err = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true, logprobs: true })
        .then(() => assert.fail('expected an error'), (e: unknown) => e);
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.code, 'policy_param_not_allowed');
      assert.equal(err.param, 'logprobs');
      assert.equal(h.mock.received.length, before);
    });

    it('raises a wrong tenant key as AuthenticationError 401 auth_invalid_credentials', async () => {
      // plainly fake, TEST-ONLY: shaped like a tenant key, unlocks nothing
      const bad = new OpenAI({ apiKey: 'kw_fakeTESTONLY_0000000000000000000000000000', baseURL: h.url + '/v1', maxRetries: 0 });
      const before = h.mock.received.length;
      const err = await bad.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] })
        .then(() => assert.fail('expected an error'), (e: unknown) => e);
      assert.ok(err instanceof OpenAI.AuthenticationError);
      assert.equal(err.status, 401);
      assert.equal(err.code, 'auth_invalid_credentials');
      assert.equal(h.mock.received.length, before);
    });
  });
});
