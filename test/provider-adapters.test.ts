import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors/index.js';
import { createAnthropicAdapter } from '../src/providers/anthropic/adapter.js';
import { createOpenAiAdapter } from '../src/providers/openai/adapter.js';
import { parseRetryAfter } from '../src/providers/common.js';
import { createProviderAdapter } from '../src/providers/registry.js';
import { createSseParser } from '../src/providers/sse.js';
import type { NormalisedRequest, SseEvent, StreamUsageReader, UpstreamRequest } from '../src/providers/types.js';

const KEY = 'sk-test-KEY-0123456789abcdef';
const openai = createOpenAiAdapter();
const anthropic = createAnthropicAdapter();

function request(overrides: Partial<NormalisedRequest>): NormalisedRequest {
  return {
    endpoint: 'chat',
    publicModel: 'fast',
    upstreamModel: 'gpt-4o-mini-2024-07-18',
    body: { model: 'fast', messages: [{ role: 'user', content: 'hi' }] },
    stream: false,
    maxOutputTokens: 256,
    maxTokensField: 'max_completion_tokens',
    clientWantsStreamUsage: false,
    ...overrides,
  };
}

function jsonBody(upstream: UpstreamRequest): Record<string, unknown> {
  assert.equal(typeof upstream.body, 'string');
  const parsed: unknown = JSON.parse(upstream.body ?? '');
  assert.ok(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed));
  return parsed as Record<string, unknown>;
}

/** The key may only appear in the auth header, never in the path or the body. */
function assertKeyOnlyIn(upstream: UpstreamRequest, header: string): void {
  assert.ok(!upstream.path.includes(KEY), 'key in path');
  assert.ok(!(upstream.body ?? '').includes(KEY), 'key in body');
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (name !== header) assert.ok(!value.includes(KEY), `key in header ${name}`);
  }
}

/** Feeds an SSE text through the parser and the reader; returns the text the client would see. */
function relay(reader: StreamUsageReader, text: string): string {
  let relayed = '';
  const parser = createSseParser((e: SseEvent) => {
    if (reader.accept(e)) relayed += e.raw;
  });
  parser.push(text);
  relayed += parser.end();
  return relayed;
}

function sse(events: ReadonlyArray<readonly [string | undefined, unknown]>): string {
  return events
    .map(([name, data]) => `${name === undefined ? '' : `event: ${name}\n`}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)
    .join('');
}

describe('provider registry', () => {
  it('returns the adapter for each provider type', () => {
    assert.equal(createProviderAdapter('openai').type, 'openai');
    assert.equal(createProviderAdapter('anthropic').type, 'anthropic');
  });

  it('declares which endpoints each provider serves', () => {
    assert.deepEqual(
      (['chat', 'responses', 'embeddings', 'messages'] as const).map((e) => openai.supports(e)),
      [true, true, true, false],
    );
    assert.deepEqual(
      (['chat', 'responses', 'embeddings', 'messages'] as const).map((e) => anthropic.supports(e)),
      [false, false, false, true],
    );
  });
});

describe('OpenAI adapter: requests', () => {
  it('builds a chat request with the key only in the authorization header and the upstream model', () => {
    const upstream = openai.buildRequest(request({}), KEY, { 'openai-organization': 'org-1' });
    assert.equal(upstream.method, 'POST');
    assert.equal(upstream.path, '/chat/completions');
    assert.deepEqual(upstream.headers, {
      'openai-organization': 'org-1',
      authorization: `Bearer ${KEY}`,
      'content-type': 'application/json',
      accept: 'application/json',
    });
    assertKeyOnlyIn(upstream, 'authorization');
    const body = jsonBody(upstream);
    assert.equal(body['model'], 'gpt-4o-mini-2024-07-18');
    assert.equal(body['max_completion_tokens'], 256);
    assert.deepEqual(body['messages'], [{ role: 'user', content: 'hi' }]);
    assert.equal('stream_options' in body, false);
  });

  it('uses max_tokens when that is the field the client used, and keeps other fields', () => {
    const upstream = openai.buildRequest(
      request({ body: { model: 'fast', messages: [], max_tokens: 100_000, temperature: 0.2 }, maxTokensField: 'max_tokens' }),
      KEY,
      {},
    );
    const body = jsonBody(upstream);
    assert.equal(body['max_tokens'], 256);
    assert.equal(body['temperature'], 0.2);
    assert.equal('max_completion_tokens' in body, false);
  });

  it('clamps a second cap field the client also sent', () => {
    const body = jsonBody(
      openai.buildRequest(
        request({ body: { model: 'fast', messages: [], max_tokens: 10, max_completion_tokens: 99_999 } }),
        KEY,
        {},
      ),
    );
    assert.equal(body['max_completion_tokens'], 256);
    assert.equal(body['max_tokens'], 10);
  });

  it('treats an explicit null cap field as absent: exactly one cap field goes upstream', () => {
    // chat: the client used max_completion_tokens and sent max_tokens: null
    const chat = jsonBody(
      openai.buildRequest(request({ body: { model: 'fast', messages: [], max_tokens: null, max_completion_tokens: 99_999 } }), KEY, {}),
    );
    assert.equal(chat['max_completion_tokens'], 256);
    assert.equal('max_tokens' in chat, false, 'the null max_tokens is not turned into a second cap');
    // and the other way round
    const other = jsonBody(
      openai.buildRequest(
        request({ body: { model: 'fast', messages: [], max_tokens: 50, max_completion_tokens: null }, maxTokensField: 'max_tokens', maxOutputTokens: 50 }),
        KEY,
        {},
      ),
    );
    assert.equal(other['max_tokens'], 50);
    assert.equal('max_completion_tokens' in other, false);
    // responses: a null max_output_tokens is replaced by the cap
    const responses = jsonBody(
      openai.buildRequest(
        request({ endpoint: 'responses', body: { model: 'fast', input: 'hi', max_output_tokens: null }, maxTokensField: 'max_output_tokens' }),
        KEY,
        {},
      ),
    );
    assert.equal(responses['max_output_tokens'], 256);
    assert.equal('max_tokens' in responses || 'max_completion_tokens' in responses, false);
  });

  it('forces stream_options.include_usage on chat streams and keeps other stream options', () => {
    const upstream = openai.buildRequest(
      request({
        stream: true,
        body: { model: 'fast', messages: [], stream: true, stream_options: { include_obfuscation: false } },
      }),
      KEY,
      {},
    );
    assert.equal(upstream.headers['accept'], 'text/event-stream');
    assert.deepEqual(jsonBody(upstream)['stream_options'], { include_obfuscation: false, include_usage: true });

    const plain = openai.buildRequest(request({ stream: true, body: { model: 'fast', messages: [], stream: true } }), KEY, {});
    assert.deepEqual(jsonBody(plain)['stream_options'], { include_usage: true });
  });

  it('builds responses and embeddings requests on their paths', () => {
    const responses = openai.buildRequest(
      request({ endpoint: 'responses', body: { model: 'fast', input: 'hi' }, maxTokensField: 'max_output_tokens', maxOutputTokens: 64 }),
      KEY,
      {},
    );
    assert.equal(responses.path, '/responses');
    assert.equal(jsonBody(responses)['max_output_tokens'], 64);
    assert.equal('stream_options' in jsonBody(responses), false);

    const embeddings = openai.buildRequest(
      request({ endpoint: 'embeddings', body: { model: 'fast', input: ['a'] }, maxTokensField: undefined, maxOutputTokens: undefined }),
      KEY,
      {},
    );
    assert.equal(embeddings.path, '/embeddings');
    assert.deepEqual(jsonBody(embeddings), { model: 'gpt-4o-mini-2024-07-18', input: ['a'] });
  });

  it('never lets a forwarded header replace the credential or content headers', () => {
    const upstream = openai.buildRequest(request({}), KEY, {
      Authorization: 'Bearer client-key',
      'X-Api-Key': 'client-key',
      'Content-Type': 'text/plain',
      'X-Custom': 'v',
    });
    assert.equal(upstream.headers['authorization'], `Bearer ${KEY}`);
    assert.equal(upstream.headers['content-type'], 'application/json');
    assert.equal(upstream.headers['x-custom'], 'v');
    assert.ok(!JSON.stringify(upstream.headers).includes('client-key'));
  });

  it('refuses endpoints it does not serve, and unusable keys, without showing the key', () => {
    assert.throws(
      () => openai.buildRequest(request({ endpoint: 'messages' }), KEY, {}),
      (err: unknown) => err instanceof GatewayError && err.code === 'request_invalid',
    );
    assert.throws(
      () => openai.buildRequest(request({}), `${KEY}\r\nx-evil: 1`, {}),
      (err: unknown) => err instanceof GatewayError && err.code === 'provider_key_unavailable' && !err.message.includes(KEY),
    );
  });

  it('builds a key check request as GET /models with the auth header', () => {
    const check = openai.buildKeyCheckRequest(KEY);
    assert.equal(check.method, 'GET');
    assert.equal(check.path, '/models');
    assert.equal(check.headers['authorization'], `Bearer ${KEY}`);
    assert.equal(check.body, undefined);
  });
});

describe('OpenAI adapter: usage', () => {
  it('reads chat usage with cached tokens', () => {
    const answer = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: 1200,
        completion_tokens: 30,
        total_tokens: 1230,
        prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0 },
      },
    };
    assert.deepEqual(openai.readUsage('chat', answer), { inputTokens: 1200, outputTokens: 30, cachedInputTokens: 1024 });
  });

  it('reads embeddings usage with zero output', () => {
    const answer = { object: 'list', data: [], model: 'text-embedding-3-small', usage: { prompt_tokens: 8, total_tokens: 8 } };
    assert.deepEqual(openai.readUsage('embeddings', answer), { inputTokens: 8, outputTokens: 0 });
  });

  it('reads responses usage', () => {
    const answer = {
      id: 'resp_1',
      object: 'response',
      status: 'completed',
      usage: { input_tokens: 36, input_tokens_details: { cached_tokens: 0 }, output_tokens: 87, total_tokens: 123 },
    };
    assert.deepEqual(openai.readUsage('responses', answer), { inputTokens: 36, outputTokens: 87, cachedInputTokens: 0 });
  });

  it('returns undefined for missing or malformed usage', () => {
    assert.equal(openai.readUsage('chat', null), undefined);
    assert.equal(openai.readUsage('chat', 'text'), undefined);
    assert.equal(openai.readUsage('chat', { usage: null }), undefined);
    assert.equal(openai.readUsage('chat', { usage: { prompt_tokens: '10', completion_tokens: 1 } }), undefined);
    assert.equal(openai.readUsage('chat', { usage: { prompt_tokens: 10 } }), undefined);
    assert.equal(openai.readUsage('chat', { usage: { prompt_tokens: -1, completion_tokens: 1 } }), undefined);
    assert.equal(openai.readUsage('chat', { usage: { prompt_tokens: 1.5, completion_tokens: 1 } }), undefined);
    assert.equal(
      openai.readUsage('chat', { usage: { prompt_tokens: 1, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 'x' } } }),
      undefined,
    );
    assert.equal(openai.readUsage('responses', { usage: { prompt_tokens: 1, completion_tokens: 1 } }), undefined);
    assert.equal(openai.readUsage('embeddings', { usage: [1, 2] }), undefined);
  });
});

const CHAT_CHUNKS = [
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' } }], usage: null },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hello "usage":{ x' } }], usage: null },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: null },
  {
    id: 'c1',
    object: 'chat.completion.chunk',
    choices: [],
    usage: { prompt_tokens: 19, completion_tokens: 10, total_tokens: 29, prompt_tokens_details: { cached_tokens: 0 } },
  },
];
const CHAT_STREAM = sse([...CHAT_CHUNKS.map((c) => [undefined, c] as const), [undefined, '[DONE]']]);

describe('OpenAI adapter: stream readers', () => {
  it('chat: reads usage and hides the usage chunk from a client that did not ask for it', () => {
    const reader = openai.createStreamReader(request({ stream: true, clientWantsStreamUsage: false }));
    assert.deepEqual(reader.usage(), { inputTokens: 0, outputTokens: 0 });
    const relayed = relay(reader, CHAT_STREAM);
    assert.deepEqual(reader.usage(), { inputTokens: 19, outputTokens: 10, cachedInputTokens: 0 });
    assert.equal(reader.finished(), true);
    assert.ok(!relayed.includes('"prompt_tokens"'), 'usage chunk relayed');
    assert.ok(relayed.includes('Hello'));
    assert.ok(relayed.includes('"usage":null'), 'usage:null chunks are relayed unchanged');
    assert.ok(relayed.endsWith('data: [DONE]\n\n'));
  });

  it('chat: relays the usage chunk to a client that asked for it', () => {
    const reader = openai.createStreamReader(request({ stream: true, clientWantsStreamUsage: true }));
    const relayed = relay(reader, CHAT_STREAM);
    assert.equal(relayed, CHAT_STREAM);
    assert.equal(reader.usage().outputTokens, 10);
  });

  it('chat: relays a chunk that carries both choices and usage', () => {
    const reader = openai.createStreamReader(request({ stream: true }));
    const chunk = { choices: [{ index: 0, delta: { content: 'x' } }], usage: { prompt_tokens: 5, completion_tokens: 2 } };
    const event = { event: undefined, data: JSON.stringify(chunk), raw: '' };
    assert.equal(reader.accept(event), true);
    assert.deepEqual(reader.usage(), { inputTokens: 5, outputTokens: 2 });
  });

  it('chat: is not finished without [DONE] and ignores malformed JSON', () => {
    const reader = openai.createStreamReader(request({ stream: true }));
    assert.equal(reader.accept({ event: undefined, data: '{"usage":{"prompt_tokens":', raw: '' }), true);
    assert.equal(reader.accept({ event: undefined, data: '', raw: ': ping\n\n' }), true);
    assert.equal(reader.finished(), false);
    assert.deepEqual(reader.usage(), { inputTokens: 0, outputTokens: 0 });
  });

  it('responses: takes usage from response.completed and finishes', () => {
    const stream = sse([
      ['response.created', { type: 'response.created', sequence_number: 0, response: { id: 'resp_1', status: 'in_progress', usage: null } }],
      ['response.output_text.delta', { type: 'response.output_text.delta', sequence_number: 1, delta: 'Hi' }],
      [
        'response.completed',
        {
          type: 'response.completed',
          sequence_number: 2,
          response: { id: 'resp_1', status: 'completed', usage: { input_tokens: 11, input_tokens_details: { cached_tokens: 4 }, output_tokens: 3 } },
        },
      ],
    ]);
    const reader = openai.createStreamReader(request({ endpoint: 'responses', stream: true }));
    assert.equal(relay(reader, stream), stream);
    assert.equal(reader.finished(), true);
    assert.deepEqual(reader.usage(), { inputTokens: 11, outputTokens: 3, cachedInputTokens: 4 });
  });

  it('responses: treats response.incomplete and response.failed as terminal, also without event names', () => {
    const incomplete = openai.createStreamReader(request({ endpoint: 'responses', stream: true }));
    relay(
      incomplete,
      sse([[undefined, { type: 'response.incomplete', response: { status: 'incomplete', usage: { input_tokens: 5, output_tokens: 256 } } }]]),
    );
    assert.equal(incomplete.finished(), true);
    assert.deepEqual(incomplete.usage(), { inputTokens: 5, outputTokens: 256 });

    const failed = openai.createStreamReader(request({ endpoint: 'responses', stream: true }));
    relay(failed, sse([['response.failed', { type: 'response.failed', response: { status: 'failed', usage: null } }]]));
    assert.equal(failed.finished(), true);
    assert.deepEqual(failed.usage(), { inputTokens: 0, outputTokens: 0 });

    const broken = openai.createStreamReader(request({ endpoint: 'responses', stream: true }));
    relay(broken, 'event: response.completed\ndata: {"type":"response.compl\n\n');
    assert.equal(broken.finished(), false);
  });
});

describe('OpenAI adapter: errors', () => {
  it('never copies the provider message of a 401 into the error', () => {
    const body = JSON.stringify({
      error: {
        message: 'Incorrect API key provided: sk-fake-CANARY-7f3a9c. You can find your API key at https://platform.openai.com/account/api-keys.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    const err = openai.mapError(401, body, undefined);
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, 'upstream_auth_failed');
    assert.equal(err.message, "the provider rejected the gateway's credentials");
    assert.ok(!JSON.stringify({ m: err.message, s: err.stack, c: String(err.cause) }).includes('CANARY'));
    assert.equal(openai.mapError(403, body, undefined).code, 'upstream_auth_failed');
  });

  it('keeps a safe provider code and drops an unsafe one', () => {
    const ok = openai.mapError(
      400,
      JSON.stringify({ error: { message: "This model's maximum context length is 128000 tokens", type: 'invalid_request_error', code: 'context_length_exceeded' } }),
      undefined,
    );
    assert.equal(ok.code, 'upstream_rejected_request');
    assert.equal(ok.message, 'the provider rejected the request (context_length_exceeded)');

    const unsafe = openai.mapError(400, JSON.stringify({ error: { code: 'Prompt: tell me SECRET', type: 'sk-fake-canary' } }), undefined);
    assert.equal(unsafe.message, 'the provider rejected the request');

    const notJson = openai.mapError(400, '<html>sk-fake-CANARY</html>', undefined);
    assert.equal(notJson.code, 'upstream_rejected_request');
    assert.ok(!notJson.message.includes('CANARY'));
  });

  it('maps statuses onto gateway codes', () => {
    const cases: Array<[number, string]> = [
      [400, 'upstream_rejected_request'],
      [404, 'upstream_rejected_request'],
      [409, 'upstream_rejected_request'],
      [413, 'upstream_rejected_request'],
      [415, 'upstream_rejected_request'],
      [422, 'upstream_rejected_request'],
      [408, 'upstream_timeout'],
      [504, 'upstream_timeout'],
      [503, 'upstream_overloaded'],
      [529, 'upstream_overloaded'],
      [500, 'upstream_error'],
      [502, 'upstream_error'],
      [418, 'upstream_error'],
      [302, 'upstream_error'],
    ];
    for (const [status, code] of cases) assert.equal(openai.mapError(status, '', undefined).code, code, `status ${status}`);
  });

  it('parses Retry-After on 429: seconds, HTTP date, default and clamping', () => {
    const body = JSON.stringify({ error: { message: 'Rate limit reached for org-xyz', type: 'requests', code: 'rate_limit_exceeded' } });
    const err = openai.mapError(429, body, '20');
    assert.equal(err.code, 'upstream_rate_limited');
    assert.equal(err.retryAfterSeconds, 20);
    assert.equal(err.message, 'the provider rate limited the request (rate_limit_exceeded)');
    assert.equal(openai.mapError(429, '', undefined).retryAfterSeconds, 1);
    assert.equal(openai.mapError(429, '', 'soon').retryAfterSeconds, 1);
    assert.equal(openai.mapError(429, '', '0').retryAfterSeconds, 1);
    assert.equal(openai.mapError(429, '', '999999').retryAfterSeconds, 3600);

    const now = Date.parse('2025-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now), 30);
    assert.equal(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now), 1);
    assert.equal(parseRetryAfter('Thu, 02 Jan 2025 00:00:00 GMT', now), 3600);
    assert.equal(parseRetryAfter('1.2', now), 2);
  });
});

describe('Anthropic adapter: requests', () => {
  const messages = request({
    endpoint: 'messages',
    upstreamModel: 'claude-sonnet-4-5-20250929',
    body: { model: 'smart', max_tokens: 50_000, messages: [{ role: 'user', content: 'hi' }], system: 's' },
    maxOutputTokens: 1024,
    maxTokensField: 'max_tokens',
  });

  it('builds /v1/messages with x-api-key, the upstream model and the clamped max_tokens', () => {
    const upstream = anthropic.buildRequest(messages, KEY, {});
    assert.equal(upstream.method, 'POST');
    assert.equal(upstream.path, '/v1/messages');
    assert.deepEqual(upstream.headers, {
      'x-api-key': KEY,
      'anthropic-version': '2023-06-01',
      'content-type': 'application/json',
      accept: 'application/json',
    });
    assertKeyOnlyIn(upstream, 'x-api-key');
    const body = jsonBody(upstream);
    assert.equal(body['model'], 'claude-sonnet-4-5-20250929');
    assert.equal(body['max_tokens'], 1024);
    assert.equal(body['system'], 's');
  });

  it('passes a well-formed anthropic-version and nothing else; rejects junk versions', () => {
    const upstream = anthropic.buildRequest({ ...messages, stream: true }, KEY, {
      'anthropic-version': '2024-10-22',
      'anthropic-beta': 'x',
      authorization: 'Bearer client',
    });
    assert.equal(upstream.headers['anthropic-version'], '2024-10-22');
    assert.equal(upstream.headers['accept'], 'text/event-stream');
    assert.equal(upstream.headers['anthropic-beta'], undefined);
    assert.equal(upstream.headers['authorization'], undefined);

    for (const junk of ['2023-06-01\r\nx-evil: 1', 'latest', '2023-6-1', '']) {
      assert.equal(anthropic.buildRequest(messages, KEY, { 'anthropic-version': junk }).headers['anthropic-version'], '2023-06-01');
    }
  });

  it('refuses other endpoints and builds the key check', () => {
    assert.throws(() => anthropic.buildRequest(request({ endpoint: 'chat' }), KEY, {}), GatewayError);
    const check = anthropic.buildKeyCheckRequest(KEY);
    assert.equal(check.method, 'GET');
    assert.equal(check.path, '/v1/models');
    assert.equal(check.headers['x-api-key'], KEY);
    assert.equal(check.headers['anthropic-version'], '2023-06-01');
    assertKeyOnlyIn(check, 'x-api-key');
  });
});

describe('Anthropic adapter: usage', () => {
  it('counts cache reads and writes as input and reports cache reads as cached', () => {
    const answer = {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      content: [{ type: 'text', text: 'Hello' }],
      stop_reason: 'end_turn',
      usage: { input_tokens: 20, cache_creation_input_tokens: 100, cache_read_input_tokens: 1000, output_tokens: 12 },
    };
    assert.deepEqual(anthropic.readUsage('messages', answer), { inputTokens: 1120, outputTokens: 12, cachedInputTokens: 1000 });
    assert.deepEqual(anthropic.readUsage('messages', { usage: { input_tokens: 5, output_tokens: 1, cache_creation_input_tokens: null } }), {
      inputTokens: 5,
      outputTokens: 1,
    });
  });

  it('returns undefined for missing or malformed usage', () => {
    assert.equal(anthropic.readUsage('messages', {}), undefined);
    assert.equal(anthropic.readUsage('messages', { usage: { input_tokens: 5 } }), undefined);
    assert.equal(anthropic.readUsage('messages', { usage: { input_tokens: '5', output_tokens: 1 } }), undefined);
    assert.equal(anthropic.readUsage('messages', { usage: { input_tokens: 5, output_tokens: 1, cache_read_input_tokens: 'x' } }), undefined);
    assert.equal(anthropic.readUsage('chat', { usage: { input_tokens: 5, output_tokens: 1 } }), undefined);
  });
});

const ANTHROPIC_STREAM = sse([
  [
    'message_start',
    {
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        content: [],
        model: 'claude-sonnet-4-5',
        usage: { input_tokens: 25, cache_creation_input_tokens: 0, cache_read_input_tokens: 300, output_tokens: 1 },
      },
    },
  ],
  ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
  ['ping', { type: 'ping' }],
  ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } }],
  ['content_block_stop', { type: 'content_block_stop', index: 0 }],
  ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } }],
  ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 42 } }],
  ['message_stop', { type: 'message_stop' }],
]);

describe('Anthropic adapter: stream reader', () => {
  const streaming = request({ endpoint: 'messages', stream: true, maxTokensField: 'max_tokens' });

  it('relays every event, takes cumulative output and finishes at message_stop', () => {
    const reader = anthropic.createStreamReader(streaming);
    assert.equal(relay(reader, ANTHROPIC_STREAM), ANTHROPIC_STREAM);
    assert.equal(reader.finished(), true);
    assert.deepEqual(reader.usage(), { inputTokens: 325, outputTokens: 42, cachedInputTokens: 300 });
  });

  it('is not finished after an error event', () => {
    const reader = anthropic.createStreamReader(streaming);
    const stream =
      ANTHROPIC_STREAM.slice(0, ANTHROPIC_STREAM.indexOf('event: content_block_start')) +
      sse([['error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }]]);
    assert.equal(relay(reader, stream), stream);
    assert.equal(reader.finished(), false);
    assert.deepEqual(reader.usage(), { inputTokens: 325, outputTokens: 1, cachedInputTokens: 300 });
  });

  it('recognises events without event names and ignores malformed JSON', () => {
    const reader = anthropic.createStreamReader(streaming);
    assert.equal(reader.accept({ event: 'message_delta', data: '{"usage":{"output_tokens":', raw: '' }), true);
    assert.equal(reader.accept({ event: undefined, data: '{"type":"message_delta","usage":{"output_tokens":7}}', raw: '' }), true);
    assert.deepEqual(reader.usage(), { inputTokens: 0, outputTokens: 7 });
    assert.equal(reader.accept({ event: undefined, data: '{"type":"message_stop"}', raw: '' }), true);
    assert.equal(reader.finished(), true);
  });
});

describe('Anthropic adapter: errors', () => {
  it('maps 529 overloaded and keeps the safe error type', () => {
    const err = anthropic.mapError(529, JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }), undefined);
    assert.equal(err.code, 'upstream_overloaded');
    assert.equal(err.message, 'the provider is overloaded (overloaded_error)');
  });

  it('never copies the provider message and maps statuses like OpenAI', () => {
    const body = JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key sk-fake-CANARY-123' } });
    const err = anthropic.mapError(401, body, undefined);
    assert.equal(err.code, 'upstream_auth_failed');
    assert.ok(!err.message.includes('CANARY'));
    const rate = anthropic.mapError(429, JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'x' } }), '7');
    assert.equal(rate.code, 'upstream_rate_limited');
    assert.equal(rate.retryAfterSeconds, 7);
    assert.equal(anthropic.mapError(413, '', undefined).code, 'upstream_rejected_request');
    assert.equal(anthropic.mapError(500, '', undefined).code, 'upstream_error');
    assert.equal(anthropic.mapError(504, '', undefined).code, 'upstream_timeout');
  });
});
