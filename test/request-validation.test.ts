import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { KindGuard, type TSchema } from '@sinclair/typebox';
import { GatewayError, type ErrorCode } from '../src/errors/index.js';
import type { Endpoint } from '../src/providers/types.js';
import { FREE_FORM } from '../src/policy/schemas/common.js';
import { ChatBody } from '../src/policy/schemas/chat.js';
import { EmbeddingsBody } from '../src/policy/schemas/embeddings.js';
import { MessagesBody } from '../src/policy/schemas/messages.js';
import { ResponsesBody } from '../src/policy/schemas/responses.js';
import type { TenantPolicy, ValidatedRequest } from '../src/policy/types.js';
import { MAX_DEPTH, validateRequest } from '../src/policy/validate.js';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ROUTED: ReadonlySet<string> = new Set(['fast', 'smart', 'embed', 'routed-but-not-granted']);

/** Deny by default: required fields only, no tools, no files. */
const STRICT: TenantPolicy = Object.freeze({
  models: ['fast', 'smart', 'embed', 'granted-but-not-routed'],
  params: [],
  tools: false,
  files: false,
  maxBodyBytes: 1_000_000,
  maxOutputTokens: 1024,
  maxMessages: 8,
  maxAttachments: 2,
  maxAttachmentBytes: 1000,
  limits: {},
  keyLimits: {},
});

const EVERY_PARAM = [
  'temperature', 'top_p', 'n', 'stream', 'stream_options', 'stop', 'max_tokens', 'max_completion_tokens',
  'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'user', 'seed',
  'response_format', 'reasoning_effort', 'metadata', 'store', 'service_tier', 'modalities', 'prediction', 'audio',
  'verbosity', 'safety_identifier', 'prompt_cache_key', 'prompt_cache_retention', 'instructions',
  'max_output_tokens', 'text', 'reasoning', 'previous_response_id', 'truncation', 'include', 'encoding_format',
  'dimensions', 'system', 'top_k', 'stop_sequences', 'thinking', 'output_config',
];

/** Everything allowed, generous limits. */
const OPEN: TenantPolicy = Object.freeze({
  ...STRICT,
  params: EVERY_PARAM,
  tools: true,
  files: true,
  maxMessages: 50,
  maxAttachments: 20,
  maxAttachmentBytes: 100_000,
  limits: {},
  keyLimits: {},
});

function policy(overrides: Partial<TenantPolicy>): TenantPolicy {
  return { ...OPEN, ...overrides };
}

const USER_HI = { role: 'user', content: 'hi' };
const MINIMAL: Record<Endpoint, Record<string, unknown>> = {
  chat: { model: 'fast', messages: [USER_HI] },
  responses: { model: 'fast', input: 'hi' },
  embeddings: { model: 'embed', input: 'hi' },
  messages: { model: 'smart', max_tokens: 100, messages: [USER_HI] },
};

function chat(extra: Record<string, unknown>): Record<string, unknown> {
  return { ...MINIMAL.chat, ...extra };
}

function validate(endpoint: Endpoint, body: unknown, tenant: TenantPolicy = OPEN): ValidatedRequest {
  return validateRequest(endpoint, body, tenant, ROUTED);
}

/** Asserts the call throws a GatewayError with this code (and param, when given); returns it. */
function refused(fn: () => unknown, code: ErrorCode, param?: string): GatewayError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof GatewayError, `expected a GatewayError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `code (message: ${caught.message})`);
  if (param !== undefined) assert.equal(caught.param, param, 'param');
  return caught;
}

/** Builds `{ a: { a: … { a: 1 } } }` with `levels` objects. */
function nestedObject(levels: number): Record<string, unknown> {
  let node: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) node = { a: node };
  return node;
}

/** Runs an official SDK call against a fake fetch and returns the JSON body it would have sent. */
async function sentBy(send: (fetch: typeof globalThis.fetch) => Promise<unknown>): Promise<unknown> {
  let captured: unknown;
  const fakeFetch = async (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    captured = JSON.parse(String(init?.body));
    throw new Error('captured');
  };
  await send(fakeFetch as typeof globalThis.fetch).catch(() => undefined);
  assert.ok(captured !== undefined, 'the SDK sent no body');
  return captured;
}

const SDK_OPTIONS = { apiKey: 'sk-test', baseURL: 'http://127.0.0.1:9/v1', maxRetries: 0 } as const;
const PNG = 'data:image/png;base64,iVBORw0KGgo=';
const SCHEMA = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };

// ---------------------------------------------------------------------------------------------
// Valid bodies
// ---------------------------------------------------------------------------------------------

describe('valid requests', () => {
  for (const endpoint of ['chat', 'responses', 'embeddings', 'messages'] as const) {
    it(`accepts a minimal ${endpoint} body under a deny-by-default policy`, () => {
      const result = validate(endpoint, MINIMAL[endpoint], STRICT);
      assert.equal(result.endpoint, endpoint);
      assert.equal(result.model, MINIMAL[endpoint]['model']);
      assert.equal(result.stream, false);
      assert.equal(result.clientWantsStreamUsage, false);
    });
  }

  it('accepts a rich chat body as the official openai SDK sends it', async () => {
    const body = await sentBy((fetch) =>
      new OpenAI({ ...SDK_OPTIONS, fetch }).chat.completions.create({
        model: 'fast',
        messages: [
          { role: 'system', content: 'be brief', name: 'sys' },
          { role: 'developer', content: [{ type: 'text', text: 'dev rules' }] },
          {
            role: 'user',
            name: 'ann',
            content: [
              { type: 'text', text: 'look' },
              { type: 'image_url', image_url: { url: PNG, detail: 'low' } },
              { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
              { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' } },
              { type: 'file', file: { file_id: 'file-abc' } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            refusal: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: 'sunny' }] },
          { role: 'function', name: 'weather', content: 'sunny' },
          { role: 'assistant', content: [{ type: 'text', text: 'ok' }, { type: 'refusal', refusal: 'no' }], audio: { id: 'aud_1' } },
        ],
        temperature: 0.2,
        top_p: 0.9,
        n: 1,
        stream: true,
        stream_options: { include_usage: true, include_obfuscation: false },
        stop: ['END'],
        max_completion_tokens: 300,
        presence_penalty: 0,
        frequency_penalty: 0,
        logit_bias: { '50256': -100 },
        logprobs: true,
        top_logprobs: 2,
        user: 'u1',
        seed: 7,
        tools: [{ type: 'function', function: { name: 'weather', description: 'w', parameters: SCHEMA, strict: true } }],
        tool_choice: { type: 'function', function: { name: 'weather' } },
        parallel_tool_calls: false,
        response_format: { type: 'json_schema', json_schema: { name: 'out', schema: SCHEMA, strict: true } },
        reasoning_effort: 'low',
        metadata: { team: 'a' },
        store: false,
        service_tier: 'auto',
        modalities: ['text'],
        prediction: { type: 'content', content: 'draft' },
        verbosity: 'low',
        safety_identifier: 'sid',
        prompt_cache_key: 'pck',
      }),
    );
    const result = validate('chat', body);
    assert.equal(result.stream, true);
    assert.equal(result.clientWantsStreamUsage, true);
    assert.equal(result.maxTokensField, 'max_completion_tokens');
    assert.equal(result.maxOutputTokens, 300);
  });

  it('accepts chat tool choice strings, allowed tools, audio output and the other response formats', () => {
    for (const extra of [
      { tool_choice: 'required', response_format: { type: 'json_object' } },
      {
        tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'w' } }] } },
        response_format: { type: 'text' },
      },
      { modalities: ['text', 'audio'], audio: { format: 'wav', voice: 'alloy' }, stop: 'END', temperature: null },
    ]) {
      validate('chat', chat(extra));
    }
  });

  it('accepts a rich responses body as the official openai SDK sends it', async () => {
    const body = await sentBy((fetch) =>
      new OpenAI({ ...SDK_OPTIONS, fetch }).responses.create({
        model: 'fast',
        instructions: 'be brief',
        input: [
          { role: 'system', content: 'sys' },
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'look' },
              { type: 'input_image', image_url: PNG, detail: 'auto' },
              { type: 'input_image', file_id: 'file-1', detail: 'high' },
              { type: 'input_file', file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' },
              { type: 'input_file', file_url: 'https://example.com/a.pdf' },
            ],
          },
          {
            type: 'message',
            id: 'msg_1',
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text: 'hello', annotations: [] }],
          },
          { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'thought' }], encrypted_content: 'enc' },
          { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{}' },
          { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
          { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'rain' }] },
        ],
        max_output_tokens: 5000,
        temperature: 1,
        top_p: 1,
        stream: true,
        stream_options: { include_obfuscation: false },
        tools: [{ type: 'function', name: 'weather', parameters: SCHEMA, strict: true, description: 'w' }],
        tool_choice: 'auto',
        parallel_tool_calls: true,
        text: { format: { type: 'json_schema', name: 'out', schema: SCHEMA, strict: true }, verbosity: 'low' },
        reasoning: { effort: 'low', summary: 'auto' },
        metadata: { team: 'a' },
        store: false,
        previous_response_id: 'resp_0',
        truncation: 'auto',
        user: 'u1',
        include: ['reasoning.encrypted_content'],
        service_tier: 'auto',
        safety_identifier: 'sid',
        prompt_cache_key: 'pck',
      }),
    );
    const result = validate('responses', body);
    assert.equal(result.stream, true);
    assert.equal(result.clientWantsStreamUsage, false);
    assert.equal(result.maxTokensField, 'max_output_tokens');
    assert.equal(result.maxOutputTokens, 1024, 'clamped to the policy cap');
  });

  it('accepts embeddings as the official openai SDK sends them (base64 by default)', async () => {
    const body = await sentBy((fetch) =>
      new OpenAI({ ...SDK_OPTIONS, fetch }).embeddings.create({ model: 'embed', input: ['a', 'b'], dimensions: 256, user: 'u' }),
    );
    assert.equal((body as Record<string, unknown>)['encoding_format'], 'base64');
    const result = validate('embeddings', body);
    assert.equal(result.maxTokensField, undefined);
    assert.equal(result.maxOutputTokens, undefined);
    for (const input of ['x', ['x', 'y'], [1, 2, 3], [[1, 2], [3]]]) validate('embeddings', { model: 'embed', input });
  });

  it('accepts a rich messages body as the official anthropic SDK sends it', async () => {
    const body = await sentBy((fetch) =>
      new Anthropic({ ...SDK_OPTIONS, fetch }).messages.create({
        model: 'smart',
        max_tokens: 2048,
        system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'look', cache_control: { type: 'ephemeral', ttl: '5m' } },
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
              { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
              {
                type: 'document',
                source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' },
                title: 'a',
                context: 'ctx',
                citations: { enabled: true },
              },
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'plain' } },
              {
                type: 'document',
                source: { type: 'content', content: [{ type: 'text', text: 'chunk' }] },
              },
            ],
          },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'hmm', signature: 'sig' },
              { type: 'redacted_thinking', data: 'xx' },
              {
                type: 'text',
                text: 'calling',
                citations: [
                  {
                    type: 'char_location',
                    cited_text: 'p',
                    document_index: 0,
                    document_title: null,
                    start_char_index: 0,
                    end_char_index: 1,
                  },
                ],
              },
              { type: 'tool_use', id: 'tu_1', name: 'weather', input: { city: 'Oslo' } },
            ],
          },
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: 'tu_1',
                is_error: false,
                content: [
                  { type: 'text', text: 'sunny' },
                  { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
                ],
              },
            ],
          },
        ],
        temperature: 0.5,
        top_k: 5,
        stop_sequences: ['END'],
        stream: true,
        metadata: { user_id: 'u1' },
        tools: [{ name: 'weather', description: 'w', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
        tool_choice: { type: 'auto', disable_parallel_tool_use: true },
        // below the clamped max_tokens (1024), as Anthropic requires
        thinking: { type: 'enabled', budget_tokens: 512 },
        service_tier: 'auto',
      }),
    );
    const result = validate('messages', body);
    assert.equal(result.stream, true);
    assert.equal(result.maxTokensField, 'max_tokens');
    assert.equal(result.maxOutputTokens, 1024, 'clamped to the policy cap');
  });

  it('does not mutate the body', () => {
    const body = chat({ max_tokens: 99_999, temperature: 1, messages: [USER_HI, { role: 'assistant', content: 'x' }] });
    const before = structuredClone(body);
    validate('chat', body);
    assert.deepEqual(body, before);
  });
});

// ---------------------------------------------------------------------------------------------
// Unknown fields and upstream smuggling
// ---------------------------------------------------------------------------------------------

describe('unknown fields', () => {
  it('refuses an unknown top-level field and names it', () => {
    const err = refused(() => validate('chat', chat({ logprobz: true })), 'request_unknown_field', 'logprobz');
    assert.equal(err.message, 'unknown field "logprobz"');
    assert.equal(err.status, 400);
  });

  it('refuses an unknown field two levels down', () => {
    refused(
      () => validate('chat', chat({ stream_options: { include_usage: true, extra: 1 } })),
      'request_unknown_field',
      'stream_options.extra',
    );
    refused(() => validate('chat', chat({ messages: [{ role: 'user', content: 'x', foo: 1 }] })), 'request_unknown_field', 'messages[0].foo');
  });

  it('refuses an unknown field deep inside a content part, with its full path', () => {
    const messages = [
      USER_HI,
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: PNG, foo: 1 } }] },
    ];
    const err = refused(() => validate('chat', chat({ messages })), 'request_unknown_field', 'messages[2].content[1].image_url.foo');
    assert.equal(err.message, 'unknown field "messages[2].content[1].image_url.foo"');
    refused(
      () => validate('chat', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a', foo: 1 }] }] })),
      'request_unknown_field',
      'messages[0].content[0].foo',
    );
  });

  it('refuses unknown fields inside free-form neighbours: tool definitions and response formats stay closed', () => {
    refused(
      () => validate('chat', chat({ tools: [{ type: 'function', function: { name: 'f', parameters: {}, url: 'x' } }] })),
      'request_unknown_field',
      'tools[0].function.url',
    );
    refused(
      () => validate('responses', { ...MINIMAL.responses, text: { format: { type: 'json_schema', name: 'n', schema: {}, endpoint: 'x' } } }),
      'request_unknown_field',
      'text.format.endpoint',
    );
  });

  it('refuses a parsed "__proto__" key as an unknown field, at the top and in a message', () => {
    const top: unknown = JSON.parse('{"model":"fast","messages":[{"role":"user","content":"x"}],"__proto__":{"base_url":"x"}}');
    refused(() => validate('chat', top), 'request_unknown_field', '__proto__');
    const nested: unknown = JSON.parse('{"model":"fast","messages":[{"role":"user","content":"x","__proto__":{"role":"tool"}}]}');
    refused(() => validate('chat', nested), 'request_unknown_field', 'messages[0].__proto__');
  });

  it('refuses a message object that carries only unknown fields', () => {
    refused(() => validate('responses', { model: 'fast', input: [{ url: 'http://x' }] }), 'request_unknown_field', 'input[0].url');
  });

  it('refuses responses features left out of the schema (background, conversation, prompt, hosted tools)', () => {
    refused(() => validate('responses', { ...MINIMAL.responses, background: true }), 'request_unknown_field', 'background');
    refused(() => validate('responses', { ...MINIMAL.responses, conversation: 'c' }), 'request_unknown_field', 'conversation');
    refused(() => validate('responses', { ...MINIMAL.responses, prompt: { id: 'p' } }), 'request_unknown_field', 'prompt');
    refused(
      () => validate('responses', { ...MINIMAL.responses, tools: [{ type: 'mcp', server_label: 's', server_url: 'http://169.254.169.254/' }] }),
      'request_invalid',
      'tools[0].type',
    );
  });
});

describe('upstream selection by the client (SSRF)', () => {
  const attempts: Array<[Endpoint, Record<string, unknown>, string]> = [
    ['chat', chat({ base_url: 'http://169.254.169.254/' }), 'base_url'],
    ['chat', chat({ api_base: 'http://evil.example' }), 'api_base'],
    ['chat', chat({ extra_headers: { host: 'evil.example' } }), 'extra_headers'],
    ['chat', chat({ messages: [{ role: 'user', content: 'hi', provider: { url: 'http://evil.example' } }] }), 'messages[0].provider'],
    [
      'chat',
      chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a', provider: { url: 'http://evil.example' } }] }] }),
      'messages[0].content[0].provider',
    ],
    ['responses', { ...MINIMAL.responses, base_url: 'http://evil.example' }, 'base_url'],
    ['embeddings', { ...MINIMAL.embeddings, api_base: 'http://evil.example' }, 'api_base'],
    ['messages', { ...MINIMAL.messages, extra_headers: { 'anthropic-beta': 'x' } }, 'extra_headers'],
    [
      'messages',
      {
        ...MINIMAL.messages,
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://a/b.png', provider: { url: 'x' } } }] }],
      },
      'messages[0].content[0].source.provider',
    ],
  ];
  for (const [endpoint, body, path] of attempts) {
    it(`refuses "${path}" on ${endpoint}`, () => {
      refused(() => validate(endpoint, body), 'request_unknown_field', path);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Type errors
// ---------------------------------------------------------------------------------------------

describe('type errors', () => {
  it('refuses a body that is not a JSON object', () => {
    for (const body of [null, [], 'x', 3, true]) refused(() => validate('chat', body), 'request_invalid');
  });

  it('says which field has the wrong type', () => {
    const err = refused(() => validate('chat', chat({ temperature: 'hot' })), 'request_invalid', 'temperature');
    assert.equal(err.message, '"temperature" must be a number or null');
    refused(() => validate('chat', chat({ messages: 'hi' })), 'request_invalid', 'messages');
    refused(() => validate('chat', chat({ messages: [{ role: 'user', content: 5 }] })), 'request_invalid', 'messages[0].content');
    refused(() => validate('chat', chat({ n: 1.5 })), 'request_invalid', 'n');
    refused(() => validate('chat', chat({ max_tokens: 0 })), 'request_invalid', 'max_tokens');
    refused(() => validate('embeddings', { model: 'embed', input: [[1, 2], [3, 'x']] }), 'request_invalid', 'input[1][1]');
  });

  it('refuses a missing required field', () => {
    refused(() => validate('chat', { model: 'fast' }), 'request_invalid', 'messages');
    refused(() => validate('chat', { messages: [USER_HI] }), 'request_invalid', 'model');
    refused(() => validate('responses', { model: 'fast' }), 'request_invalid', 'input');
    refused(() => validate('messages', { model: 'smart', messages: [USER_HI] }), 'request_invalid', 'max_tokens');
    refused(() => validate('chat', chat({ messages: [{ content: 'hi' }] })), 'request_invalid', 'messages[0].role');
    refused(() => validate('chat', chat({ messages: [] })), 'request_invalid', 'messages');
  });

  it('names the discriminator when no message or part shape matches', () => {
    const err = refused(() => validate('chat', chat({ messages: [{ role: 'root', content: 'x' }] })), 'request_invalid', 'messages[0].role');
    assert.match(err.message, /must be one of "system", "developer", "user", "assistant", "tool", "function"/);
    refused(
      () => validate('chat', chat({ messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }] })),
      'request_invalid',
      'messages[0].content[0].type',
    );
    refused(() => validate('messages', { ...MINIMAL.messages, messages: [{ role: 'system', content: 'x' }] }), 'request_invalid', 'messages[0].role');
    refused(() => validate('responses', { model: 'fast', input: [{ type: 'web_search_call', id: 'x' }] }), 'request_invalid', 'input[0].type');
  });

  it('refuses both chat output caps at once, so neither escapes the clamp', () => {
    refused(() => validate('chat', chat({ max_tokens: 10, max_completion_tokens: 10 })), 'request_invalid', 'max_tokens');
  });
});

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

describe('policy: models', () => {
  it('refuses a model that is routed but not granted, and one granted but not routed, alike', () => {
    const a = refused(() => validate('chat', { ...MINIMAL.chat, model: 'routed-but-not-granted' }), 'policy_model_not_allowed', 'model');
    const b = refused(() => validate('chat', { ...MINIMAL.chat, model: 'granted-but-not-routed' }), 'policy_model_not_allowed', 'model');
    const c = refused(() => validate('chat', { ...MINIMAL.chat, model: 'no-such-model' }), 'policy_model_not_allowed', 'model');
    assert.equal(a.status, 403);
    assert.equal(a.message, b.message);
    assert.equal(b.message, c.message);
  });
});

describe('policy: parameters', () => {
  it('refuses an optional parameter the tenant is not allowed', () => {
    const err = refused(() => validate('chat', chat({ logprobs: true }), policy({ params: ['temperature'] })), 'policy_param_not_allowed', 'logprobs');
    assert.equal(err.message, 'parameter "logprobs" is not allowed for this tenant');
  });

  it('treats an explicit null as present', () => {
    refused(() => validate('chat', chat({ temperature: null }), STRICT), 'policy_param_not_allowed', 'temperature');
  });

  it('requires stream to be allowed', () => {
    refused(() => validate('messages', { ...MINIMAL.messages, stream: true }, STRICT), 'policy_param_not_allowed', 'stream');
  });

  it('requires chat max_tokens to be allowed but always allows the Anthropic max_tokens', () => {
    refused(() => validate('chat', chat({ max_tokens: 10 }), STRICT), 'policy_param_not_allowed', 'max_tokens');
    validate('messages', MINIMAL.messages, STRICT);
  });

  it('allows a listed parameter', () => {
    validate('chat', chat({ temperature: 0 }), policy({ params: ['temperature'], tools: false, files: false }));
  });

  it('leaves tool fields to the tools switch, not the parameter list', () => {
    validate('chat', chat({ tools: [], tool_choice: 'none', parallel_tool_calls: false }), policy({ params: [], tools: true }));
  });
});

describe('policy: tools', () => {
  const noTools = policy({ tools: false });
  const cases: Array<[string, Endpoint, Record<string, unknown>, string]> = [
    ['a tool definition', 'chat', chat({ tools: [{ type: 'function', function: { name: 'f' } }] }), 'tools'],
    ['a tool choice', 'chat', chat({ tool_choice: 'auto' }), 'tool_choice'],
    ['parallel_tool_calls', 'chat', chat({ parallel_tool_calls: true }), 'parallel_tool_calls'],
    ['a tool message', 'chat', chat({ messages: [USER_HI, { role: 'tool', tool_call_id: 'c', content: 'r' }] }), 'messages[1]'],
    ['a function message', 'chat', chat({ messages: [{ role: 'function', name: 'f', content: 'r' }] }), 'messages[0]'],
    [
      'assistant tool calls',
      'chat',
      chat({ messages: [{ role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }] }),
      'messages[0].tool_calls',
    ],
    ['a responses function tool', 'responses', { ...MINIMAL.responses, tools: [{ type: 'function', name: 'f' }] }, 'tools'],
    ['a function_call item', 'responses', { model: 'fast', input: [{ type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' }] }, 'input[0]'],
    ['a function_call_output item', 'responses', { model: 'fast', input: [USER_HI, { type: 'function_call_output', call_id: 'c', output: 'r' }] }, 'input[1]'],
    ['an Anthropic tool', 'messages', { ...MINIMAL.messages, tools: [{ name: 'f', input_schema: { type: 'object' } }] }, 'tools'],
    ['an Anthropic tool choice', 'messages', { ...MINIMAL.messages, tool_choice: { type: 'any' } }, 'tool_choice'],
    [
      'a tool_use block',
      'messages',
      { ...MINIMAL.messages, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'f', input: {} }] }] },
      'messages[0].content[0]',
    ],
    [
      'a tool_result block',
      'messages',
      { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'tool_result', tool_use_id: 't', content: 'r' }] }] },
      'messages[0].content[1]',
    ],
  ];
  for (const [what, endpoint, body, param] of cases) {
    it(`refuses ${what} when the tenant has no tools`, () => {
      refused(() => validate(endpoint, body, noTools), 'policy_tools_not_allowed', param);
    });
  }

  it('reports tools before files, whichever comes first in the body', () => {
    const body = chat({
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: PNG } }] },
        { role: 'tool', tool_call_id: 'c', content: 'r' },
      ],
    });
    refused(() => validate('chat', body, policy({ tools: false, files: false })), 'policy_tools_not_allowed', 'messages[1]');
  });
});

describe('policy: files', () => {
  const noFiles = policy({ files: false });
  const cases: Array<[string, Endpoint, Record<string, unknown>, string]> = [
    ['an image_url part', 'chat', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: PNG } }] }] }), 'messages[0].content[0]'],
    [
      'an input_audio part',
      'chat',
      chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'input_audio', input_audio: { data: 'AA==', format: 'mp3' } }] }] }),
      'messages[0].content[1]',
    ],
    ['a file part', 'chat', chat({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'f' } }] }] }), 'messages[0].content[0]'],
    ['an input_image part', 'responses', { model: 'fast', input: [{ role: 'user', content: [{ type: 'input_image', image_url: PNG, detail: 'auto' }] }] }, 'input[0].content[0]'],
    ['an input_file part', 'responses', { model: 'fast', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, 'input[0].content[0]'],
    [
      'an image in a function_call_output',
      'responses',
      { model: 'fast', input: [{ type: 'function_call_output', call_id: 'c', output: [{ type: 'input_image', image_url: PNG }] }] },
      'input[0].output[0]',
    ],
    [
      'an image block',
      'messages',
      { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://a/b.png' } }] }] },
      'messages[0].content[0]',
    ],
    [
      'a document block',
      'messages',
      { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }] }] },
      'messages[0].content[0]',
    ],
    [
      'an image inside a tool_result',
      'messages',
      {
        ...MINIMAL.messages,
        messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'image', source: { type: 'file', file_id: 'f' } }] }] }],
      },
      'messages[0].content[0].content[0]',
    ],
  ];
  for (const [what, endpoint, body, param] of cases) {
    it(`refuses ${what} when the tenant has no files`, () => {
      refused(() => validate(endpoint, body, noFiles), 'policy_files_not_allowed', param);
    });
  }
});

describe('policy: limits', () => {
  const tight = policy({ maxMessages: 2, maxAttachments: 1, maxAttachmentBytes: 40 });

  it('refuses more messages than the tenant allows', () => {
    refused(() => validate('chat', chat({ messages: [USER_HI, USER_HI, USER_HI] }), tight), 'request_too_many_messages', 'messages');
    refused(() => validate('messages', { ...MINIMAL.messages, messages: [USER_HI, USER_HI, USER_HI] }, tight), 'request_too_many_messages', 'messages');
    refused(() => validate('responses', { model: 'fast', input: [USER_HI, USER_HI, USER_HI] }, tight), 'request_too_many_messages', 'input');
    validate('responses', { model: 'fast', input: 'one string is one item' }, policy({ maxMessages: 1 }));
  });

  it('counts embeddings input items (strings or token arrays) against the message cap', () => {
    const embed = (input: unknown) => ({ model: 'embed', input });
    refused(() => validate('embeddings', embed(['a', 'b', 'c']), tight), 'request_too_many_messages', 'input');
    refused(() => validate('embeddings', embed([[1], [2], [3]]), tight), 'request_too_many_messages', 'input');
    refused(() => validate('embeddings', embed(Array.from({ length: 5000 }, () => 'x')), tight), 'request_too_many_messages', 'input');
    validate('embeddings', embed(['a', 'b']), tight);
    validate('embeddings', embed([[1, 2, 3], [4]]), tight);
    // a string, or one flat token array, is one input
    validate('embeddings', embed('one string'), policy({ maxMessages: 1 }));
    validate('embeddings', embed([1, 2, 3, 4, 5]), policy({ maxMessages: 1 }));
  });

  it('refuses more attachments than the tenant allows', () => {
    const image = { type: 'image_url', image_url: { url: 'https://a/b.png' } };
    refused(
      () => validate('chat', chat({ messages: [{ role: 'user', content: [image, { type: 'text', text: 'x' }, image] }] }), tight),
      'request_too_many_attachments',
    );
  });

  it('refuses an attachment whose inline data or URL is over the size cap', () => {
    const big = `data:image/png;base64,${'A'.repeat(100)}`;
    refused(
      () => validate('chat', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url: big } }] }] }), tight),
      'request_attachment_too_large',
      'messages[0].content[1]',
    );
    refused(
      () =>
        validate(
          'messages',
          { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: big } }] }] },
          tight,
        ),
      'request_attachment_too_large',
      'messages[0].content[0]',
    );
    refused(
      () => validate('responses', { model: 'fast', input: [{ role: 'user', content: [{ type: 'input_file', file_url: `https://a/${'b'.repeat(60)}` }] }] }, tight),
      'request_attachment_too_large',
      'input[0].content[0]',
    );
  });

  it('checks files before limits', () => {
    const image = { type: 'image_url', image_url: { url: PNG } };
    refused(
      () => validate('chat', chat({ messages: [USER_HI, USER_HI, { role: 'user', content: [image] }] }), policy({ files: false, maxMessages: 1 })),
      'policy_files_not_allowed',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Output caps
// ---------------------------------------------------------------------------------------------

describe('output caps', () => {
  it('clamps a larger client cap to the policy cap and keeps a smaller one', () => {
    assert.equal(validate('chat', chat({ max_completion_tokens: 99_999 })).maxOutputTokens, 1024);
    assert.equal(validate('chat', chat({ max_completion_tokens: 10 })).maxOutputTokens, 10);
    assert.equal(validate('responses', { ...MINIMAL.responses, max_output_tokens: 99_999 }).maxOutputTokens, 1024);
    assert.equal(validate('messages', { ...MINIMAL.messages, max_tokens: 99_999 }).maxOutputTokens, 1024);
    assert.equal(validate('messages', { ...MINIMAL.messages, max_tokens: 7 }).maxOutputTokens, 7);
  });

  it('sets the policy cap when the client gives none', () => {
    const chatResult = validate('chat', MINIMAL.chat, STRICT);
    assert.equal(chatResult.maxTokensField, 'max_completion_tokens');
    assert.equal(chatResult.maxOutputTokens, 1024);
    const responsesResult = validate('responses', MINIMAL.responses, STRICT);
    assert.equal(responsesResult.maxTokensField, 'max_output_tokens');
    assert.equal(responsesResult.maxOutputTokens, 1024);
    assert.equal(validate('chat', chat({ max_completion_tokens: null })).maxOutputTokens, 1024);
  });

  it('keeps the chat field the client used', () => {
    const result = validate('chat', chat({ max_tokens: 5000 }));
    assert.equal(result.maxTokensField, 'max_tokens');
    assert.equal(result.maxOutputTokens, 1024);
  });

  it('refuses an Anthropic thinking budget that is not below the clamped max_tokens, naming it', () => {
    const thinking = (budget: number, maxTokens: number) => ({
      ...MINIMAL.messages, max_tokens: maxTokens, thinking: { type: 'enabled', budget_tokens: budget },
    });
    // the tenant cap (1024) lowers max_tokens, so a budget that fit the client's number no longer does
    const err = refused(() => validate('messages', thinking(50_000, 99_999)), 'request_invalid', 'thinking.budget_tokens');
    assert.match(err.message, /thinking\.budget_tokens/);
    assert.match(err.message, /1024/, 'the message names the tenant cap that lowered max_tokens');
    refused(() => validate('messages', thinking(1024, 99_999)), 'request_invalid', 'thinking.budget_tokens');
    // below the client's own max_tokens too, as Anthropic requires
    refused(() => validate('messages', thinking(100, 100)), 'request_invalid', 'thinking.budget_tokens');
    // the client's budget is kept, never rewritten
    assert.equal(validate('messages', thinking(1023, 99_999)).maxOutputTokens, 1024);
    assert.equal(validate('messages', thinking(99, 100)).maxOutputTokens, 100);
    validate('messages', { ...MINIMAL.messages, max_tokens: 99_999, thinking: { type: 'adaptive' } });
    validate('messages', { ...MINIMAL.messages, max_tokens: 99_999, thinking: { type: 'disabled' } });
  });

  it('reports no cap for embeddings', () => {
    const result = validate('embeddings', MINIMAL.embeddings);
    assert.equal(result.maxTokensField, undefined);
    assert.equal(result.maxOutputTokens, undefined);
  });

  it('reports stream usage only when a chat client asked for it', () => {
    assert.equal(validate('chat', chat({ stream: true })).clientWantsStreamUsage, false);
    assert.equal(validate('chat', chat({ stream: true, stream_options: { include_usage: true } })).clientWantsStreamUsage, true);
    assert.equal(validate('chat', chat({ stream: false })).stream, false);
  });
});

// ---------------------------------------------------------------------------------------------
// Nesting depth
// ---------------------------------------------------------------------------------------------

describe('nesting depth', () => {
  // body(1) → tools(2) → tool(3) → function(4) → parameters(5 …)
  const withParameters = (levels: number): Record<string, unknown> =>
    chat({ tools: [{ type: 'function', function: { name: 'f', parameters: nestedObject(levels) } }] });

  it(`accepts nesting of exactly ${MAX_DEPTH} levels inside free-form JSON`, () => {
    validate('chat', withParameters(MAX_DEPTH - 4));
  });

  it(`refuses nesting of ${MAX_DEPTH + 1} levels`, () => {
    refused(() => validate('chat', withParameters(MAX_DEPTH - 3)), 'request_too_deep');
  });

  it('refuses a depth bomb quickly, before any schema work', () => {
    const depth = 100_000;
    const body: unknown = JSON.parse(`{"model":"fast","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`);
    const started = process.hrtime.bigint();
    refused(() => validate('chat', body), 'request_too_deep');
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(elapsedMs < 50, `took ${elapsedMs} ms`);
  });

  it('refuses a deep chain hidden in a wide body', () => {
    const wide = Array.from({ length: 1000 }, () => ({ role: 'user', content: 'x' }));
    refused(() => validate('chat', chat({ messages: wide, metadata: nestedObject(200) })), 'request_too_deep');
  });
});

// ---------------------------------------------------------------------------------------------
// No request content in errors
// ---------------------------------------------------------------------------------------------

describe('request content never reaches an error message', () => {
  const CANARY = `CANARY-${Math.random().toString(36).slice(2)}`;
  const ODD_NAME = `${CANARY} http://evil/`;
  const cases: Array<[string, Endpoint, Record<string, unknown>]> = [
    ['a wrong-type value', 'chat', chat({ temperature: CANARY })],
    ['a wrong-type nested value', 'chat', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 7, name: CANARY }] }] })],
    ['an unknown field value', 'chat', chat({ base_url: CANARY })],
    ['an unknown nested field value', 'chat', chat({ messages: [{ role: 'user', content: 'x', provider: { url: CANARY } }] })],
    ['an unknown field name with odd characters', 'chat', chat({ [ODD_NAME]: 1 })],
    ['an over-long field name', 'chat', chat({ [`${CANARY}${'x'.repeat(80)}`]: 1 })],
    ['a field name with a slash', 'chat', chat({ [`a/${CANARY}`]: 1 })],
    ['an odd metadata key with a wrong value', 'chat', chat({ metadata: { [ODD_NAME]: 5 } })],
    ['an unsupported role', 'chat', chat({ messages: [{ role: CANARY, content: 'x' }] })],
    ['an unsupported part type', 'chat', chat({ messages: [{ role: 'user', content: [{ type: CANARY }] }] })],
    ['an unsupported enum value', 'chat', chat({ tool_choice: CANARY })],
    ['an unsupported detail', 'chat', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: CANARY, detail: CANARY } }] }] })],
    ['a model name', 'chat', { ...MINIMAL.chat, model: CANARY }],
    ['a model of the wrong type', 'chat', { ...MINIMAL.chat, model: { [CANARY]: CANARY } }],
    ['an unsupported item type', 'responses', { model: 'fast', input: [{ type: CANARY, [ODD_NAME]: CANARY }] }],
    ['an embeddings input', 'embeddings', { model: 'embed', input: [CANARY, 5] }],
    ['an Anthropic media type', 'messages', { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: CANARY, data: CANARY } }] }] }],
    ['an oversized attachment', 'chat', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: CANARY.repeat(100) } }] }] })],
  ];
  for (const [what, endpoint, body] of cases) {
    it(`keeps ${what} out of the error`, () => {
      let caught: unknown;
      try {
        validate(endpoint, body, policy({ maxAttachmentBytes: 100 }));
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof GatewayError, 'expected a refusal');
      assert.ok(!caught.message.includes('CANARY'), `message leaked: ${caught.message}`);
      assert.ok(!(caught.param ?? '').includes('CANARY'), `param leaked: ${caught.param ?? ''}`);
      assert.ok(!caught.message.includes('evil'), `message leaked: ${caught.message}`);
    });
  }

  it('shows an unsafe field name as (field)', () => {
    refused(() => validate('chat', chat({ [ODD_NAME]: 1 })), 'request_unknown_field', '(field)');
    refused(() => validate('chat', chat({ metadata: { [ODD_NAME]: 5 } })), 'request_invalid', 'metadata.(field)');
  });

  // FAKE, TEST-ONLY key shapes that pass SAFE_NAME (identifier characters, at most 64); each is
  // put together at run time so that `keywarden scan .` (run by CI over this repository) does not report it
  const KEY_NAMES: Array<[string, string]> = [
    ['a tenant key', ['kw', 'faketestonly0000_FAKE_TEST_ONLY_aB3dE5gH7jK9mN1pQ3sT5vX7zAbC'].join('_')],
    ['an sk- key', ['sk', 'FAKEtestONLY0123456789abcdefghijklmnopqrstuvwx'].join('-')],
    ['a key only the detectors know (GitHub token)', ['ghp', 'FAKEKcI5cVpQ5JLjf9ZI860aVjDCCP06aP71'].join('_')],
    ['an AWS access key id', ['AKIA', 'FAKEV3XH2RSMH53Q'].join('')],
  ];
  for (const [what, name] of KEY_NAMES) {
    it(`shows ${what} used as a field name as (field), wherever it is`, () => {
      const where: Array<[Endpoint, Record<string, unknown>, ErrorCode, string]> = [
        ['chat', chat({ [name]: 1 }), 'request_unknown_field', '(field)'],
        ['chat', chat({ metadata: { [name]: 1 } }), 'request_invalid', 'metadata.(field)'],
        ['chat', chat({ messages: [{ role: 'user', content: 'hi', [name]: 'x' }] }), 'request_unknown_field', 'messages[0].(field)'],
        ['responses', { ...MINIMAL.responses, [name]: 1 }, 'request_unknown_field', '(field)'],
        ['messages', { ...MINIMAL.messages, [name]: 1 }, 'request_unknown_field', '(field)'],
        ['messages', { ...MINIMAL.messages, messages: [{ role: 'user', content: [{ type: 'text', text: 'x', [name]: 1 }] }] }, 'request_unknown_field', 'messages[0].content[0].(field)'],
        ['embeddings', { ...MINIMAL.embeddings, [name]: 1 }, 'request_unknown_field', '(field)'],
      ];
      for (const [endpoint, body, code, param] of where) {
        const err = refused(() => validate(endpoint, body), code, param);
        assert.ok(!err.message.includes(name), `message echoes the key: ${err.message}`);
      }
    });
  }

  it('still names an ordinary unknown field, even one that starts like a key prefix', () => {
    refused(() => validate('chat', chat({ base_url: 1 })), 'request_unknown_field', 'base_url');
    refused(() => validate('chat', chat({ 'sk-short': 1 })), 'request_unknown_field', 'sk-short');
    refused(() => validate('chat', chat({ metadata: { customer_tier: 1 } })), 'request_invalid', 'metadata.customer_tier');
  });
});

// ---------------------------------------------------------------------------------------------
// The schemas themselves
// ---------------------------------------------------------------------------------------------

describe('endpoint schemas', () => {
  it('close every object (additionalProperties: false) except the marked free-form JSON slots', () => {
    const open: string[] = [];
    const walk = (schema: TSchema, path: string): void => {
      if (KindGuard.IsObject(schema)) {
        if (schema[FREE_FORM] === true) {
          open.push(path);
          return;
        }
        assert.equal(schema.additionalProperties, false, `${path} is open`);
        for (const [name, property] of Object.entries(schema.properties)) walk(property, `${path}.${name}`);
      } else if (KindGuard.IsUnion(schema)) {
        schema.anyOf.forEach((variant, i) => walk(variant, `${path}|${i}`));
      } else if (KindGuard.IsArray(schema)) {
        walk(schema.items, `${path}[]`);
      } else if (KindGuard.IsRecord(schema)) {
        for (const value of Object.values(schema.patternProperties)) walk(value, `${path}{}`);
      }
    };
    walk(ChatBody, 'chat');
    walk(ResponsesBody, 'responses');
    walk(EmbeddingsBody, 'embeddings');
    walk(MessagesBody, 'messages');
    const slots = new Set(open.map((p) => p.replace(/\|\d+/g, '').split('.').pop()));
    assert.deepEqual([...slots].sort(), ['input', 'input_schema', 'parameters', 'schema']);
  });
});
