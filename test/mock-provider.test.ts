import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';

const KEY = 'sk-fake-0123456789-abcd';
const MASKED = 'sk-fake****abcd';
const REPLY_12 = 'This is a deterministic mock reply from keywarden made of fixed words';
/** A prompt string that must never come back in any answer. */
const CANARY = 'zebra-canary-7f3a91 purple elephant';

let mock: MockProvider;
let openai: OpenAI;
let anthropic: Anthropic;

interface Sse {
  event: string | undefined;
  data: string;
}

function parseSse(text: string): Sse[] {
  const events: Sse[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    events.push({ event, data: data.join('\n') });
  }
  return events;
}

function openaiHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...extra };
}

function anthropicHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...extra };
}

async function post(
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(mock.url + path, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    redirect: 'manual',
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const chatBody = (content: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

const messagesBody = (content: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'claude-haiku-4-5',
  max_tokens: 100,
  messages: [{ role: 'user', content }],
  ...extra,
});

before(async () => {
  mock = await createMockProvider({ apiKey: KEY });
  openai = new OpenAI({ apiKey: KEY, baseURL: mock.url + '/v1', maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: KEY, baseURL: mock.url, maxRetries: 0 });
});

after(async () => {
  await mock.close();
});

beforeEach(() => {
  mock.reset();
});

describe('OpenAI chat completions', () => {
  it('answers with the fixed reply and counts tokens by the documented rule', async () => {
    const completion = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are terse.' }, // 14 chars
        { role: 'user', content: 'Say hello.' }, // 10 chars
      ],
    });
    assert.match(completion.id, /^chatcmpl-mock/);
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'gpt-4o-mini');
    assert.equal(completion.choices[0]?.message.content, REPLY_12);
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    // ceil(24 / 4) + 3 * 2 = 12
    assert.deepEqual(completion.usage, {
      prompt_tokens: 12,
      completion_tokens: 12,
      total_tokens: 24,
      prompt_tokens_details: { cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 },
    });
  });

  it('counts text in content-part arrays', async () => {
    const completion = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'abcdefghi' }] }], // 9 chars
    });
    assert.equal(completion.usage?.prompt_tokens, 3 + 3);
  });

  it('caps the reply at max_completion_tokens and reports finish_reason length', async () => {
    const completion = await openai.chat.completions.create({ ...chatBody('hi'), max_completion_tokens: 5 } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(completion.choices[0]?.message.content, 'This is a deterministic mock');
    assert.equal(completion.choices[0]?.finish_reason, 'length');
    assert.equal(completion.usage?.completion_tokens, 5);
  });

  it('streams one chunk per word without usage when include_usage is not set', async () => {
    const stream = await openai.chat.completions.create({ ...chatBody('hi'), stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.length, 1 + 12 + 1);
    assert.deepEqual(chunks[0]?.choices[0]?.delta, { role: 'assistant', content: '' });
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), REPLY_12);
    assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, 'stop');
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal('usage' in chunk, false);
    }
  });

  it('streams a final usage chunk, and usage null elsewhere, when include_usage is true', async () => {
    const stream = await openai.chat.completions.create({
      ...chatBody('hello'),
      stream: true,
      stream_options: { include_usage: true },
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.deepEqual(last?.choices, []);
    assert.equal(last?.usage?.prompt_tokens, 2 + 3);
    assert.equal(last?.usage?.completion_tokens, 12);
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.usage, null);
  });

  it('ends the raw stream with data: [DONE]', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi', { stream: true }), openaiHeaders());
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(res.text.endsWith('data: [DONE]\n\n'));
  });
});

describe('OpenAI Responses', () => {
  it('returns a completed Response whose output_text the SDK computes', async () => {
    const response = await openai.responses.create({ model: 'gpt-4o-mini', instructions: 'Be brief.', input: 'Hello!' });
    assert.equal(response.object, 'response');
    assert.equal(response.status, 'completed');
    assert.equal(response.output_text, REPLY_12);
    // instructions (9 chars) + input (6 chars): ceil(15 / 4) + 3 * 2 = 10
    assert.deepEqual(response.usage, {
      input_tokens: 10,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 12,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 22,
    });
  });

  it('accepts an input array of messages', async () => {
    const response = await openai.responses.create({
      model: 'gpt-4o-mini',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'abcd' }] }],
    });
    assert.equal(response.usage?.input_tokens, 1 + 3);
  });

  it('marks a reply cut by max_output_tokens incomplete, as the real API does', async () => {
    const response = await openai.responses.create({ model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 4 });
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(response.output_text, 'This is a deterministic');
    assert.equal(response.usage?.output_tokens, 4);
  });

  it('streams the named events in the real order with increasing sequence numbers', async () => {
    const stream = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Hello!', stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    assert.deepEqual(types, [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(12).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    events.forEach((e, i) => assert.equal(e.sequence_number, i));
    const completed = events.at(-1);
    assert.ok(completed?.type === 'response.completed');
    assert.equal(completed.response.usage?.output_tokens, 12);
    assert.equal(completed.response.usage?.input_tokens, 2 + 3);
  });

  it('works with the SDK stream helper and its final response', async () => {
    const stream = openai.responses.stream({ model: 'gpt-4o-mini', input: 'Hello!' });
    let deltas = '';
    stream.on('response.output_text.delta', (e) => {
      deltas += e.delta;
    });
    const final = await stream.finalResponse();
    assert.equal(deltas, REPLY_12);
    // the helper's final response is the response.completed snapshot (no SDK-computed output_text)
    const item = final.output[0];
    assert.ok(item?.type === 'message');
    assert.deepEqual(
      item.content.map((c) => (c.type === 'output_text' ? c.text : '')),
      [REPLY_12],
    );
    assert.equal(final.status, 'completed');
    assert.equal(final.usage?.total_tokens, 5 + 12);
  });

  it('sends the event name as the type field of each event', async () => {
    const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'x', stream: true }, openaiHeaders());
    const events = parseSse(res.text);
    assert.ok(events.length > 5);
    for (const e of events) assert.equal((JSON.parse(e.data) as { type: string }).type, e.event);
  });
});

describe('OpenAI embeddings and models', () => {
  it('decodes the SDK default base64 encoding into float arrays of the default length', async () => {
    const result = await openai.embeddings.create({ model: 'text-embedding-3-small', input: ['abcdefgh', 'abc'] });
    assert.equal(result.data.length, 2);
    for (const item of result.data) {
      assert.equal(item.embedding.length, 8);
      for (const x of item.embedding) assert.equal(typeof x, 'number');
    }
    assert.notDeepEqual(result.data[0]?.embedding, result.data[1]?.embedding);
    // ceil(8/4) + ceil(3/4)
    assert.deepEqual(result.usage, { prompt_tokens: 3, total_tokens: 3 });
  });

  it('honours dimensions, and float and base64 carry the same index-derived vectors', async () => {
    const asFloat = await openai.embeddings.create({ model: 'm', input: ['one', 'two'], dimensions: 16, encoding_format: 'float' });
    const asBase64 = await openai.embeddings.create({ model: 'm', input: ['other text', 'more'], dimensions: 16 });
    assert.equal(asFloat.data[0]?.embedding.length, 16);
    assert.deepEqual(
      asBase64.data.map((d) => d.embedding),
      asFloat.data.map((d) => d.embedding),
    );
    const norm = Math.hypot(...(asFloat.data[0]?.embedding ?? []));
    assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
  });

  it('lists models in the OpenAI shape', async () => {
    const page = await openai.models.list();
    const ids = page.data.map((m) => m.id);
    assert.deepEqual(ids.sort(), ['gpt-4o', 'gpt-4o-mini', 'o4-mini', 'text-embedding-3-small']);
    assert.equal(page.data[0]?.owned_by, 'keywarden-mock');
    assert.equal(page.data[0]?.object, 'model');
  });
});

describe('Anthropic messages', () => {
  it('answers a message with usage and end_turn', async () => {
    const message = await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: 'Be kind.', // 8 chars, one message
      messages: [{ role: 'user', content: 'Hello!' }], // 6 chars
    });
    assert.match(message.id, /^msg_mock/);
    assert.equal(message.model, 'claude-haiku-4-5');
    assert.deepEqual(message.content, [{ type: 'text', text: REPLY_12 }]);
    assert.equal(message.stop_reason, 'end_turn');
    assert.deepEqual(message.usage, {
      input_tokens: Math.ceil(14 / 4) + 6,
      output_tokens: 12,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    });
  });

  it('stops at max_tokens', async () => {
    const message = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(message.stop_reason, 'max_tokens');
    assert.deepEqual(message.content, [{ type: 'text', text: 'This is a' }]);
    assert.equal(message.usage.output_tokens, 3);
  });

  it('streams text deltas and the SDK final message carries the usage', async () => {
    const stream = anthropic.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'Hello!' }],
    });
    let text = '';
    stream.on('text', (delta) => {
      text += delta;
    });
    const final = await stream.finalMessage();
    assert.equal(text, REPLY_12);
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.input_tokens, 2 + 3);
    assert.equal(final.usage.output_tokens, 12);
  });

  it('sends the real event sequence', async () => {
    const res = await post('/v1/messages', messagesBody('hi', { stream: true }), anthropicHeaders());
    const names = parseSse(res.text).map((e) => e.event);
    assert.deepEqual(names, [
      'message_start',
      'content_block_start',
      'ping',
      ...Array<string>(12).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
  });

  it('lists models in the Anthropic shape when the request carries x-api-key', async () => {
    const page = await anthropic.models.list();
    assert.ok(page.data.length >= 2);
    assert.equal(page.data[0]?.type, 'model');
    assert.equal(typeof page.data[0]?.display_name, 'string');
    const raw = await fetch(mock.url + '/v1/models', { headers: anthropicHeaders() });
    const body = (await raw.json()) as { has_more: boolean; first_id: string; last_id: string; data: { id: string }[] };
    assert.equal(body.has_more, false);
    assert.equal(body.first_id, body.data[0]?.id);
    assert.equal(body.last_id, body.data.at(-1)?.id);
  });
});

describe('authentication and request errors', () => {
  it('rejects a wrong OpenAI key with the masked-key 401', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ authorization: 'Bearer sk-fake-wrong-key-abcd' }));
    assert.equal(res.status, 401);
    assert.deepEqual(JSON.parse(res.text), {
      error: {
        message: `Incorrect API key provided: ${MASKED}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
  });

  it('rejects a missing OpenAI key with a 401 naming no key', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), { 'content-type': 'application/json' });
    assert.equal(res.status, 401);
    const body = JSON.parse(res.text) as { error: { message: string; type: string } };
    assert.match(body.error.message, /didn't provide an API key/);
  });

  it('makes the OpenAI SDK throw an AuthenticationError for a wrong key', async () => {
    const wrong = new OpenAI({ apiKey: 'sk-wrong', baseURL: mock.url + '/v1', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (err: unknown) => err instanceof OpenAI.AuthenticationError && err.status === 401);
  });

  it('rejects a wrong Anthropic key with the Anthropic 401 shape', async () => {
    const res = await post('/v1/messages', messagesBody('hi'), anthropicHeaders({ 'x-api-key': 'sk-ant-wrong' }));
    assert.equal(res.status, 401);
    assert.deepEqual(JSON.parse(res.text), { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
  });

  it('requires anthropic-version', async () => {
    const res = await post('/v1/messages', messagesBody('hi'), { 'x-api-key': KEY, 'content-type': 'application/json' });
    assert.equal(res.status, 400);
    const body = JSON.parse(res.text) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /anthropic-version/);
  });

  it('answers an unknown path with a 404 in the OpenAI shape', async () => {
    const res = await post('/v1/nope', {}, openaiHeaders());
    assert.equal(res.status, 404);
    const body = JSON.parse(res.text) as { error: { message: string; type: string; param: null; code: null } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.param, null);
  });

  it('answers bad JSON with a 400 in each provider shape', async () => {
    const o = await post('/v1/chat/completions', '{"model":', openaiHeaders());
    assert.equal(o.status, 400);
    assert.equal((JSON.parse(o.text) as { error: { type: string } }).error.type, 'invalid_request_error');
    const a = await post('/v1/messages', '{"model":', anthropicHeaders());
    assert.equal(a.status, 400);
    assert.deepEqual(Object.keys(JSON.parse(a.text) as object), ['type', 'error']);
  });

  it('records requests with parsed bodies, oldest first, capped at 1000', async () => {
    await post('/v1/chat/completions', chatBody('first'), openaiHeaders());
    assert.equal(mock.received.length, 1);
    assert.equal(mock.received[0]?.path, '/v1/chat/completions');
    assert.deepEqual(mock.received[0]?.body, chatBody('first'));
    assert.equal(mock.received[0]?.headers['authorization'], `Bearer ${KEY}`);
    mock.reset();
    for (let i = 0; i < 1003; i += 1) {
      const res = await fetch(`${mock.url}/x?i=${i}`, { method: 'POST', body: JSON.stringify({ i }) });
      await res.arrayBuffer();
    }
    assert.equal(mock.received.length, 1000);
    assert.deepEqual(mock.received[0]?.body, { i: 3 });
    assert.deepEqual(mock.received.at(-1)?.body, { i: 1002 });
    assert.equal(mock.received[0]?.path, '/x');
  });
});

describe('fault injection', () => {
  it('status=500 answers in the OpenAI error shape', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'status=500' }));
    assert.equal(res.status, 500);
    const body = JSON.parse(res.text) as { error: { type: string; message: string; code: unknown; param: unknown } };
    assert.equal(body.error.type, 'server_error');
    assert.equal(body.error.param, null);
  });

  it('status=529 answers overloaded_error in the Anthropic shape', async () => {
    const res = await post('/v1/messages', messagesBody('hi'), anthropicHeaders({ 'x-mock-fault': 'status=529' }));
    assert.equal(res.status, 529);
    assert.deepEqual(JSON.parse(res.text), { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
  });

  it('status=401 names the masked key that was sent', async () => {
    const res = await post('/v1/embeddings', { model: 'm', input: 'x' }, openaiHeaders({ 'x-mock-fault': 'status=401' }));
    assert.equal(res.status, 401);
    assert.match(res.text, new RegExp(`Incorrect API key provided: ${MASKED.replace(/\*/g, '\\*')}\\.`));
  });

  it('status=429 sets retry-after: 7 for both providers', async () => {
    const o = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'status=429' }));
    assert.equal(o.status, 429);
    assert.equal(o.headers.get('retry-after'), '7');
    assert.equal((JSON.parse(o.text) as { error: { code: string } }).error.code, 'rate_limit_exceeded');
    const a = await post('/v1/messages', messagesBody('hi'), anthropicHeaders({ 'x-mock-fault': 'status=429' }));
    assert.equal(a.status, 429);
    assert.equal(a.headers.get('retry-after'), '7');
    assert.equal((JSON.parse(a.text) as { error: { type: string } }).error.type, 'rate_limit_error');
  });

  it('delay=MS waits before the headers', async () => {
    const started = performance.now();
    const res = await fetch(mock.url + '/v1/chat/completions', {
      method: 'POST',
      headers: openaiHeaders({ 'x-mock-fault': 'delay=250' }),
      body: JSON.stringify(chatBody('hi')),
    });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.ok(elapsed >= 240, `headers after ${elapsed} ms`);
  });

  it('reset destroys the connection without a response', async () => {
    await assert.rejects(
      fetch(mock.url + '/v1/chat/completions', {
        method: 'POST',
        headers: openaiHeaders({ 'x-mock-fault': 'reset' }),
        body: JSON.stringify(chatBody('hi')),
      }),
      TypeError,
    );
    assert.equal(mock.received.length, 1);
  });

  it('reset-mid-stream sends the first events, then cuts the connection', async () => {
    const res = await fetch(mock.url + '/v1/chat/completions', {
      method: 'POST',
      headers: openaiHeaders({ 'x-mock-fault': 'reset-mid-stream' }),
      body: JSON.stringify(chatBody('hi', { stream: true })),
    });
    assert.equal(res.status, 200);
    assert.ok(res.body);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let got = '';
    await assert.rejects(async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        got += decoder.decode(value, { stream: true });
      }
    });
    assert.match(got, /chat\.completion\.chunk/);
    assert.doesNotMatch(got, /\[DONE\]/);
    assert.doesNotMatch(got, /finish_reason":"stop"/);
  });

  it('malformed gives a 200 whose body is not JSON', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'malformed' }));
    assert.equal(res.status, 200);
    assert.throws(() => JSON.parse(res.text), SyntaxError);
  });

  it('malformed in a stream adds one event whose data is not JSON', async () => {
    const res = await post('/v1/messages', messagesBody('hi', { stream: true }), anthropicHeaders({ 'x-mock-fault': 'malformed' }));
    const events = parseSse(res.text);
    const bad = events.filter((e) => {
      try {
        JSON.parse(e.data);
        return false;
      } catch {
        return true;
      }
    });
    assert.equal(bad.length, 1);
    assert.equal(events.at(-1)?.event, 'message_stop');
  });

  it('truncate cuts a JSON body in half with a matching content-length', async () => {
    const whole = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders());
    const cut = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'truncate' }));
    assert.equal(cut.status, 200);
    assert.equal(Number(cut.headers.get('content-length')), Buffer.byteLength(cut.text));
    assert.ok(cut.text.length > 0 && cut.text.length < whole.text.length);
    assert.throws(() => JSON.parse(cut.text), SyntaxError);
  });

  it('truncate ends each stream cleanly before its terminal event', async () => {
    const chat = await post('/v1/chat/completions', chatBody('hi', { stream: true }), openaiHeaders({ 'x-mock-fault': 'truncate' }));
    assert.match(chat.text, /finish_reason":"stop"/);
    assert.doesNotMatch(chat.text, /\[DONE\]/);
    const msg = await post('/v1/messages', messagesBody('hi', { stream: true }), anthropicHeaders({ 'x-mock-fault': 'truncate' }));
    assert.equal(parseSse(msg.text).at(-1)?.event, 'message_delta');
    const resp = await post('/v1/responses', { model: 'm', input: 'hi', stream: true }, openaiHeaders({ 'x-mock-fault': 'truncate' }));
    const names = parseSse(resp.text).map((e) => e.event);
    assert.equal(names.at(-1), 'response.output_item.done');
    assert.ok(!names.includes('response.completed'));
  });

  it('redirect answers 307 to a location off the provider', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'redirect' }));
    assert.equal(res.status, 307);
    assert.equal(res.headers.get('location'), 'http://127.0.0.1:1/stolen');
  });

  it('tokens=N sets the number of output words', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'tokens=30' }));
    const body = JSON.parse(res.text) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    assert.equal(body.choices[0]?.message.content.split(' ').length, 30);
    assert.equal(body.usage.completion_tokens, 30);
  });

  it('stall=MS pauses mid-stream after the first events', async () => {
    const started = performance.now();
    const res = await fetch(mock.url + '/v1/chat/completions', {
      method: 'POST',
      headers: openaiHeaders({ 'x-mock-fault': 'stall=300' }),
      body: JSON.stringify(chatBody('hi', { stream: true })),
    });
    const headersAt = performance.now() - started;
    const text = await res.text();
    const total = performance.now() - started;
    assert.ok(headersAt < 200, `headers after ${headersAt} ms`);
    assert.ok(total >= 290, `stream took ${total} ms`);
    assert.ok(text.endsWith('data: [DONE]\n\n'));
  });

  it('chunk-delay=MS spaces the events', async () => {
    const started = performance.now();
    const res = await post('/v1/chat/completions', chatBody('hi', { stream: true }), openaiHeaders({ 'x-mock-fault': 'chunk-delay=20,tokens=4' }));
    const total = performance.now() - started;
    // role + 4 words + finish + [DONE] = 7 events, 6 gaps
    assert.ok(total >= 6 * 20 - 10, `stream took ${total} ms`);
    assert.equal(parseSse(res.text).length, 7);
  });

  it('ignores unknown fault names', async () => {
    const res = await post('/v1/chat/completions', chatBody('hi'), openaiHeaders({ 'x-mock-fault': 'explode,tokens=2,status=abc' }));
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.text) as { usage: { completion_tokens: number } }).usage.completion_tokens, 2);
  });
});

describe('the [[mock:...]] directive', () => {
  it('chooses faults from chat message content', async () => {
    const res = await post('/v1/chat/completions', chatBody('please [[mock:status=503]] now'), openaiHeaders());
    assert.equal(res.status, 503);
  });

  it('chooses faults from Anthropic system text and content blocks', async () => {
    const fromSystem = await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: [{ type: 'text', text: '[[mock:tokens=2]]' }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    });
    assert.equal(fromSystem.usage.output_tokens, 2);
    const res = await post('/v1/messages', messagesBody('x', { messages: [{ role: 'user', content: [{ type: 'text', text: '[[mock:status=529]]' }] }] }), anthropicHeaders());
    assert.equal(res.status, 529);
  });

  it('chooses faults from Responses instructions and input', async () => {
    const r = await openai.responses.create({ model: 'm', instructions: '[[mock:tokens=3]]', input: 'hi' });
    assert.equal(r.output_text, 'This is a');
    await assert.rejects(
      openai.responses.create({ model: 'm', input: 'go [[mock:status=429]]' }),
      (err: unknown) => err instanceof OpenAI.RateLimitError,
    );
  });

  it('combines several faults in one directive', async () => {
    const res = await post('/v1/chat/completions', chatBody('[[mock:tokens=1,truncate]]', { stream: true }), openaiHeaders());
    const events = parseSse(res.text);
    assert.equal(events.length, 3); // role, one word, finish: no [DONE]
  });
});

describe('never echoes the prompt', () => {
  it('keeps prompt text out of every answer body', async () => {
    const bodies: string[] = [];
    const o = openaiHeaders();
    const a = anthropicHeaders();
    bodies.push((await post('/v1/chat/completions', chatBody(CANARY), o)).text);
    bodies.push((await post('/v1/chat/completions', chatBody(CANARY, { stream: true, stream_options: { include_usage: true } }), o)).text);
    bodies.push((await post('/v1/responses', { model: 'm', instructions: CANARY, input: CANARY, metadata: { k: CANARY } }, o)).text);
    bodies.push((await post('/v1/responses', { model: 'm', instructions: CANARY, input: CANARY, stream: true }, o)).text);
    bodies.push((await post('/v1/embeddings', { model: 'm', input: CANARY, encoding_format: 'float' }, o)).text);
    bodies.push((await post('/v1/messages', messagesBody(CANARY, { system: CANARY }), a)).text);
    bodies.push((await post('/v1/messages', messagesBody(CANARY, { stream: true }), a)).text);
    bodies.push((await post('/v1/chat/completions', chatBody(CANARY + ' [[mock:status=400]]'), o)).text);
    bodies.push((await post('/v1/messages', messagesBody(CANARY + ' [[mock:status=500]]'), a)).text);
    bodies.push((await post('/v1/messages', { messages: [{ role: 'user', content: CANARY }] }, a)).text);
    assert.equal(bodies.length, 10);
    for (const body of bodies) {
      assert.ok(body.length > 0);
      assert.ok(!body.includes('zebra-canary'), `prompt echoed in ${body.slice(0, 200)}`);
      assert.ok(!body.includes('elephant'));
    }
  });
});

describe('lifecycle', () => {
  it('accepts any key when no apiKey is set, and rejects bad options', async () => {
    const open = await createMockProvider();
    try {
      const res = await fetch(open.url + '/v1/chat/completions', { method: 'POST', body: JSON.stringify(chatBody('hi')) });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    } finally {
      await open.close();
    }
    await assert.rejects(createMockProvider({ port: -1 }), TypeError);
  });

  it('close() ends open streams and pending delays at once', async () => {
    const m = await createMockProvider();
    const headers = { 'content-type': 'application/json' };
    const stalled = fetch(m.url + '/v1/chat/completions', {
      method: 'POST',
      headers: { ...headers, 'x-mock-fault': 'stall=60000' },
      body: JSON.stringify(chatBody('hi', { stream: true })),
    }).then((r) => r.text());
    const delayed = fetch(m.url + '/v1/chat/completions', {
      method: 'POST',
      headers: { ...headers, 'x-mock-fault': 'delay=60000' },
      body: JSON.stringify(chatBody('hi')),
    });
    // both caught so that neither rejection goes unhandled while we wait
    const outcomes = Promise.allSettled([stalled, delayed]);
    for (let i = 0; i < 100 && m.received.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    assert.equal(m.received.length, 2);
    await new Promise((r) => setTimeout(r, 50));
    const started = performance.now();
    await m.close();
    assert.ok(performance.now() - started < 1000);
    const [s, d] = await outcomes;
    assert.equal(s.status, 'rejected');
    assert.equal(d.status, 'rejected');
  });
});
