import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base';
import { ChatBody } from '../src/policy/schemas/chat.js';
import { EmbeddingsBody } from '../src/policy/schemas/embeddings.js';
import { MessagesBody } from '../src/policy/schemas/messages.js';
import { ResponsesBody } from '../src/policy/schemas/responses.js';
import type { Endpoint, ProviderType } from '../src/providers/types.js';
import {
  ANTHROPIC_IMAGE_TOKENS,
  ANTHROPIC_TOKENS_PER_MESSAGE,
  ANTHROPIC_TOOLS_OVERHEAD,
  AUDIO_BYTES_PER_TOKEN,
  AUDIO_REFERENCE_TOKENS,
  DOCUMENT_PAGE_TEXT_TOKENS,
  FILE_REFERENCE_TOKENS,
  MAX_ATTACHMENT_TOKENS,
  OPENAI_IMAGE_TOKENS_DEFAULT,
  OPENAI_IMAGE_TOKENS_GPT_4O_MINI,
  OPENAI_IMAGE_TOKENS_UNKNOWN_MODEL,
  OPENAI_REPLY_PRIMING,
  OPENAI_TOKENS_PER_MESSAGE,
  OPENAI_TOKENS_PER_NAME,
  OPENAI_TOOLS_OVERHEAD,
  ORIGINAL_DETAIL_FACTOR,
  PREVIOUS_RESPONSE_TOKENS,
  createTokenEstimator,
  type TokenEstimator,
} from '../src/quota/estimate.js';
import { DEFAULT_PRICES, costNanoUsd, createPriceTable, type Price } from '../src/quota/prices.js';

const PLAIN = { disallowedSpecial: new Set<string>() };
const o200kCount = (text: string): number => o200k(text, PLAIN);
const cl100kCount = (text: string): number => cl100k(text, PLAIN);

const SCHEMAS = {
  chat: TypeCompiler.Compile(ChatBody),
  responses: TypeCompiler.Compile(ResponsesBody),
  embeddings: TypeCompiler.Compile(EmbeddingsBody),
  messages: TypeCompiler.Compile(MessagesBody),
} as const;

/** Fails the test when a fixture body is not one the gateway would accept. */
function schemaValid(endpoint: Endpoint, body: Record<string, unknown>): Record<string, unknown> {
  const check = SCHEMAS[endpoint];
  assert.ok(check.Check(body), `fixture is not a valid ${endpoint} body: ${JSON.stringify([...check.Errors(body)][0]?.path)}`);
  return body;
}

/** Base64 of `bytes` bytes (length divisible by 3, so no padding). */
function base64OfBytes(bytes: number): string {
  return Buffer.alloc(bytes, 7).toString('base64');
}

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REQUIRED_MODELS = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1',
  'gpt-4.1-mini',
  'gpt-4.1-nano',
  'o1',
  'o3',
  'o3-mini',
  'o4-mini',
  'gpt-5',
  'gpt-5-mini',
  'gpt-5-nano',
  'gpt-3.5-turbo',
  'text-embedding-3-small',
  'text-embedding-3-large',
  'text-embedding-ada-002',
  'claude-3-haiku',
  'claude-3-5-haiku',
  'claude-3-5-sonnet',
  'claude-3-7-sonnet',
  'claude-sonnet-4',
  'claude-sonnet-4-5',
  'claude-opus-4',
  'claude-opus-4-1',
  'claude-haiku-4-5',
];

describe('price table', () => {
  it('ships a valid price for every common OpenAI and Anthropic model', () => {
    const table = createPriceTable();
    for (const model of REQUIRED_MODELS) {
      const price = table.priceFor(model);
      assert.ok(price, `${model} has no price`);
      for (const value of [price.input, price.output, price.cachedInput ?? 0]) {
        assert.ok(Number.isFinite(value) && value >= 0, `${model}: ${value}`);
      }
    }
    // The shipped table itself passes the same validation as operator overrides.
    assert.doesNotThrow(() => createPriceTable(DEFAULT_PRICES));
  });

  it('prices the well-known models at their published list prices', () => {
    const table = createPriceTable();
    assert.deepEqual(table.priceFor('gpt-4o-mini'), { input: 0.15, cachedInput: 0.075, output: 0.6 });
    assert.deepEqual(table.priceFor('gpt-4o'), { input: 2.5, cachedInput: 1.25, output: 10 });
    assert.deepEqual(table.priceFor('gpt-5'), { input: 1.25, cachedInput: 0.125, output: 10 });
    assert.deepEqual(table.priceFor('text-embedding-3-small'), { input: 0.02, output: 0 });
    assert.deepEqual(table.priceFor('claude-sonnet-4-5'), { input: 3, cachedInput: 0.3, output: 15 });
    assert.deepEqual(table.priceFor('claude-3-5-haiku'), { input: 0.8, cachedInput: 0.08, output: 4 });
  });

  it('gives Anthropic models the cache-read price as the cached-input price', () => {
    for (const [model, price] of Object.entries(DEFAULT_PRICES)) {
      if (!model.startsWith('claude-')) continue;
      assert.ok(price.cachedInput !== undefined, model);
      // Cache hits cost a tenth of the input price; Claude 3 Haiku's published rate is $0.03.
      const expected = model === 'claude-3-haiku' ? 0.03 : price.input / 10;
      assert.ok(Math.abs(price.cachedInput - expected) < 1e-12, `${model}: ${price.cachedInput} vs ${price.input}`);
    }
  });

  it('prices dated snapshots and -latest aliases as their base model', () => {
    const table = createPriceTable();
    assert.deepEqual(table.priceFor('claude-3-5-haiku-20241022'), table.priceFor('claude-3-5-haiku'));
    assert.deepEqual(table.priceFor('claude-3-5-haiku-latest'), table.priceFor('claude-3-5-haiku'));
    assert.deepEqual(table.priceFor('claude-sonnet-4-5-20250929'), table.priceFor('claude-sonnet-4-5'));
    assert.deepEqual(table.priceFor('gpt-4o-mini-2024-07-18'), table.priceFor('gpt-4o-mini'));
    assert.deepEqual(table.priceFor('gpt-4o-2024-08-06'), table.priceFor('gpt-4o'));
    assert.deepEqual(table.priceFor('o3-mini-2025-01-31'), table.priceFor('o3-mini'));
  });

  it('prefers an exact snapshot entry over its base model', () => {
    const table = createPriceTable();
    // The first gpt-4o snapshot kept its launch price.
    assert.deepEqual(table.priceFor('gpt-4o-2024-05-13'), { input: 5, output: 15 });
    assert.notDeepEqual(table.priceFor('gpt-4o-2024-05-13'), table.priceFor('gpt-4o'));
  });

  it('never prices a model by a loose prefix of another model name', () => {
    const table = createPriceTable();
    assert.notDeepEqual(table.priceFor('gpt-4o-mini'), table.priceFor('gpt-4o'));
    for (const model of [
      'gpt-4o-mini-audio-preview',
      'gpt-4o-realtime-preview-2024-12-17',
      'gpt-4o-turbo',
      'gpt-5-pro',
      'claude-3-5-haiku-extra',
      'claude-sonnet-4-5-20250929-experimental',
      'gpt-4o-2024-08-06-2024-08-06',
      'GPT-4O',
      'gpt-4o ',
    ]) {
      assert.equal(table.priceFor(model), undefined, model);
    }
  });

  it('returns undefined for a model without a price', () => {
    const table = createPriceTable();
    assert.equal(table.priceFor('my-local-llama'), undefined);
    assert.equal(table.priceFor(''), undefined);
    assert.equal(table.priceFor('-latest'), undefined);
  });

  it('lets overrides replace a shipped price and add new models, without touching the defaults', () => {
    const before = structuredClone(DEFAULT_PRICES);
    const overridden = createPriceTable({
      'gpt-4o': { input: 1, output: 2 },
      'my-finetune': { input: 0.3, cachedInput: 0.1, output: 1.2 },
    });
    assert.deepEqual(overridden.priceFor('gpt-4o'), { input: 1, output: 2 });
    // A dated name falls back to the overridden base price.
    assert.deepEqual(overridden.priceFor('gpt-4o-2024-11-20'), { input: 1, output: 2 });
    assert.deepEqual(overridden.priceFor('my-finetune'), { input: 0.3, cachedInput: 0.1, output: 1.2 });
    // Other models and other tables keep the shipped prices.
    assert.deepEqual(overridden.priceFor('gpt-4o-mini'), DEFAULT_PRICES['gpt-4o-mini']);
    assert.deepEqual(createPriceTable().priceFor('gpt-4o'), { input: 2.5, cachedInput: 1.25, output: 10 });
    assert.deepEqual(DEFAULT_PRICES, before);
    // The shipped prices cannot be changed at run time.
    assert.ok(Object.isFrozen(DEFAULT_PRICES) && Object.isFrozen(DEFAULT_PRICES['gpt-4o']));
  });

  it('lets an override of a dated snapshot win over its base model', () => {
    const table = createPriceTable({ 'gpt-4o-2024-08-06': { input: 9, output: 9 } });
    assert.deepEqual(table.priceFor('gpt-4o-2024-08-06'), { input: 9, output: 9 });
    assert.deepEqual(table.priceFor('gpt-4o-2024-11-20'), DEFAULT_PRICES['gpt-4o']);
  });

  it('refuses invalid override prices at creation, naming every bad entry', () => {
    const bad = {
      'neg-model': { input: -1, output: 1 },
      'nan-model': { input: Number.NaN, output: 1 },
      'inf-model': { input: 1, output: Number.POSITIVE_INFINITY },
      'cached-model': { input: 1, output: 1, cachedInput: -0.5 },
      'string-model': { input: '1', output: 1 },
      'missing-model': { input: 1 },
      'extra-model': { input: 1, output: 1, batch: 0.5 },
      'null-model': null,
    } as unknown as Record<string, Price>;
    assert.throws(
      () => createPriceTable(bad),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        for (const name of Object.keys(bad)) assert.match(error.message, new RegExp(name), `${name} not named`);
        assert.match(error.message, /neg-model\.input: must be a finite number >= 0/);
        assert.match(error.message, /inf-model\.output/);
        assert.match(error.message, /cached-model\.cachedInput/);
        assert.match(error.message, /missing-model\.output/);
        assert.match(error.message, /extra-model\.batch: unknown field/);
        return true;
      },
    );
    assert.throws(() => createPriceTable({ 'only-one': { input: 1, output: -0.01 } }), /only-one\.output/);
    assert.throws(() => createPriceTable({ '': { input: 1, output: 1 } }), /empty/);
    assert.throws(() => createPriceTable([] as unknown as Record<string, Price>), /invalid price overrides/);
  });

  it('accepts a zero price (a free or self-hosted model)', () => {
    const table = createPriceTable({ 'free-model': { input: 0, output: 0, cachedInput: 0 } });
    assert.deepEqual(table.priceFor('free-model'), { input: 0, output: 0, cachedInput: 0 });
  });
});

describe('cost in nano-USD', () => {
  const table = createPriceTable();
  const price = (model: string): Price => {
    const found = table.priceFor(model);
    assert.ok(found, model);
    return found;
  };

  it('costs a million gpt-4o-mini input tokens at exactly 0.15 USD', () => {
    assert.equal(costNanoUsd(price('gpt-4o-mini'), { inputTokens: 1_000_000, outputTokens: 0 }), 150_000_000);
    assert.equal(costNanoUsd(price('gpt-4o-mini'), { inputTokens: 0, outputTokens: 1_000_000 }), 600_000_000);
  });

  it('costs single tokens without floating-point error', () => {
    assert.equal(costNanoUsd(price('gpt-4o-mini'), { inputTokens: 1, outputTokens: 0 }), 150);
    // 1.1 * 1000 is 1100.0000000000002 in floating point: must still be 1,100, not 1,101.
    assert.equal(costNanoUsd(price('o3-mini'), { inputTokens: 1, outputTokens: 0 }), 1_100);
    assert.equal(costNanoUsd(price('o3-mini'), { inputTokens: 3, outputTokens: 7 }), 3 * 1_100 + 7 * 4_400);
    assert.equal(costNanoUsd(price('gpt-4.1-mini'), { inputTokens: 3, outputTokens: 3 }), 3 * 400 + 3 * 1_600);
    assert.equal(costNanoUsd({ input: 0.1, output: 0.2 }, { inputTokens: 3, outputTokens: 3 }), 900);
  });

  it('bills cached input at the cached price and the rest at the input price', () => {
    // 600 uncached × 150 + 400 cached × 75 + 200 output × 600
    assert.equal(
      costNanoUsd(price('gpt-4o-mini'), { inputTokens: 1_000, cachedInputTokens: 400, outputTokens: 200 }),
      600 * 150 + 400 * 75 + 200 * 600,
    );
    // Anthropic: cache reads at a tenth of the input price.
    assert.equal(
      costNanoUsd(price('claude-sonnet-4-5'), { inputTokens: 10_000, cachedInputTokens: 8_000, outputTokens: 500 }),
      2_000 * 3_000 + 8_000 * 300 + 500 * 15_000,
    );
  });

  it('bills cached input at the input price when the model has no cached price', () => {
    assert.equal(
      costNanoUsd(price('gpt-3.5-turbo'), { inputTokens: 1_000, cachedInputTokens: 1_000, outputTokens: 0 }),
      costNanoUsd(price('gpt-3.5-turbo'), { inputTokens: 1_000, outputTokens: 0 }),
    );
  });

  it('rounds sub-nano costs up, once per request', () => {
    // gpt-5-nano cached input: 0.005 USD/MTok = 5 nano-USD per token, exactly.
    const nano = price('gpt-5-nano');
    assert.equal(costNanoUsd(nano, { inputTokens: 1, cachedInputTokens: 1, outputTokens: 0 }), 5);
    assert.equal(costNanoUsd(nano, { inputTokens: 1_000, cachedInputTokens: 1_000, outputTokens: 0 }), 5_000);
    // 0.0001 USD/MTok = 0.1 nano-USD per token: summed first, rounded up once.
    const tiny = { input: 0.0001, output: 0 };
    assert.equal(costNanoUsd(tiny, { inputTokens: 1, outputTokens: 0 }), 1);
    assert.equal(costNanoUsd(tiny, { inputTokens: 10, outputTokens: 0 }), 1);
    assert.equal(costNanoUsd(tiny, { inputTokens: 11, outputTokens: 0 }), 2);
    // A price finer than a pico-USD per token still costs something.
    assert.equal(costNanoUsd({ input: 1e-7, output: 0 }, { inputTokens: 1, outputTokens: 0 }), 1);
    assert.equal(costNanoUsd({ input: 0, output: 0 }, { inputTokens: 1_000_000, outputTokens: 1_000_000 }), 0);
  });

  it('stays exact for large counts', () => {
    // A billion output tokens of Claude Opus 4.1 at 75 USD/MTok = 75,000 USD.
    assert.equal(costNanoUsd(price('claude-opus-4-1'), { inputTokens: 0, outputTokens: 1_000_000_000 }), 75_000 * 1e9);
    assert.ok(Number.isSafeInteger(costNanoUsd({ input: 1e9, output: 1e9 }, { inputTokens: 1e12, outputTokens: 1e12 })));
  });

  it('clamps cached tokens to input and treats bad counts as zero', () => {
    const mini = price('gpt-4o-mini');
    assert.equal(costNanoUsd(mini, { inputTokens: 10, cachedInputTokens: 50, outputTokens: 0 }), 10 * 75);
    assert.equal(costNanoUsd(mini, { inputTokens: -5, outputTokens: Number.NaN }), 0);
    assert.equal(costNanoUsd(mini, { inputTokens: Number.POSITIVE_INFINITY, outputTokens: 0 }), 0);
  });

  it('costs embeddings by input only', () => {
    assert.equal(costNanoUsd(price('text-embedding-3-small'), { inputTokens: 1_000, outputTokens: 0 }), 20_000);
    assert.equal(costNanoUsd(price('text-embedding-3-small'), { inputTokens: 1_000, outputTokens: 500 }), 20_000);
  });
});

describe('input-token estimator', () => {
  let estimator: TokenEstimator;
  let bytesOnly: TokenEstimator;
  before(async () => {
    // A generous budget keeps these exact counts independent of machine load.
    estimator = await createTokenEstimator({ tokenizeBudgetMs: 60_000 });
    bytesOnly = await createTokenEstimator({ tokenizeBudgetMs: 0 });
  });
  const estimate = (endpoint: Endpoint, provider: ProviderType, model: string, body: Record<string, unknown>): number =>
    estimator.estimate(endpoint, provider, model, schemaValid(endpoint, body));

  const PROMPT = 'Summarise the causes of the French Revolution in three bullet points, please.';

  it('counts a plain chat prompt as the tokenizer does, plus the documented per-message framing', () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] };
    const expected = o200kCount(PROMPT) + o200kCount('user') + OPENAI_TOKENS_PER_MESSAGE + OPENAI_REPLY_PRIMING;
    assert.equal(estimate('chat', 'openai', 'gpt-4o-mini', body), expected);
  });

  it('counts every message, name and text part of a conversation', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', name: 'alice', content: [{ type: 'text', text: 'Hi' }, { type: 'text', text: PROMPT }] },
        { role: 'assistant', content: 'Sure.' },
      ],
    };
    const expected =
      3 * OPENAI_TOKENS_PER_MESSAGE +
      OPENAI_REPLY_PRIMING +
      o200kCount('system') + o200kCount('You are terse.') +
      o200kCount('user') + o200kCount('alice') + OPENAI_TOKENS_PER_NAME + o200kCount('Hi') + o200kCount(PROMPT) +
      o200kCount('assistant') + o200kCount('Sure.');
    assert.equal(estimate('chat', 'openai', 'gpt-4o', body), expected);
  });

  it('counts tool definitions as their JSON and earlier tool calls and results as text', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ];
    const plain = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Weather in Paris?' }] };
    const withTools = { ...plain, tools };
    assert.equal(
      estimate('chat', 'openai', 'gpt-4o', withTools) - estimate('chat', 'openai', 'gpt-4o', plain),
      o200kCount(JSON.stringify(tools)) + OPENAI_TOOLS_OVERHEAD,
    );
    const args = '{"city":"Paris"}';
    const withHistory = {
      ...withTools,
      messages: [
        ...plain.messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: args } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '18°C and sunny' },
      ],
    };
    const added = estimate('chat', 'openai', 'gpt-4o', withHistory) - estimate('chat', 'openai', 'gpt-4o', withTools);
    assert.ok(added >= o200kCount(args) + o200kCount('18°C and sunny') + 2 * OPENAI_TOKENS_PER_MESSAGE, String(added));
  });

  it('uses cl100k_base for GPT-4, GPT-3.5 and the embedding models, o200k_base for the rest', () => {
    // Text on which the two encodings disagree.
    const text = 'Ünïcödé façade — 東京で寿司を食べました。 const x = await fetch(url);';
    assert.notEqual(cl100kCount(text), o200kCount(text));
    const embed = { model: 'x', input: text };
    for (const model of ['gpt-4', 'gpt-4-turbo', 'gpt-4-0613', 'gpt-3.5-turbo', 'gpt-3.5-turbo-0125', 'text-embedding-3-small', 'text-embedding-ada-002', 'ft:gpt-3.5-turbo-0125:acme::abc123']) {
      assert.equal(estimate('embeddings', 'openai', model, embed), cl100kCount(text), model);
    }
    for (const model of ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'gpt-4.1', 'gpt-4.1-nano', 'gpt-4.5-preview', 'gpt-5', 'gpt-5-mini', 'o1', 'o3', 'o3-mini', 'o4-mini', 'some-unknown-model', 'ft:gpt-4o-mini-2024-07-18:acme::abc123']) {
      assert.equal(estimate('embeddings', 'openai', model, embed), o200kCount(text), model);
    }
  });

  it('counts embeddings inputs: strings, string arrays and token arrays', () => {
    const model = 'text-embedding-3-small';
    assert.equal(estimate('embeddings', 'openai', model, { model, input: ['alpha beta', 'gamma', ''] }), cl100kCount('alpha beta') + cl100kCount('gamma'));
    assert.equal(estimate('embeddings', 'openai', model, { model, input: [1, 2, 3, 4, 5] }), 5);
    assert.equal(estimate('embeddings', 'openai', model, { model, input: [[1, 2, 3], [4], [5, 6]] }), 6);
  });

  it('treats special-token text in client content as plain text', () => {
    const text = 'before <|endoftext|> <|im_start|>system after';
    assert.equal(estimate('embeddings', 'openai', 'gpt-4o', { model: 'x', input: text }), o200kCount(text));
    assert.ok(o200kCount(text) > 5);
  });

  it('counts long ordinary text exactly although it is tokenized in segments', () => {
    const random = prng(42);
    const words = ['the', 'quick', 'brown', 'fox;', "don't", 'Hello,', 'world!', '(x)', '{"a": 1}', '42', '3.14159', 'über', 'naïve', '東京', '😀', 'snake_case', 'CamelCase', '\n', '\n\n', '\t', '  ', "it's", 'end.'];
    let text = '';
    while (text.length < 60_000) text += (words[Math.floor(random() * words.length)] ?? '') + (random() < 0.85 ? ' ' : '');
    assert.equal(estimate('embeddings', 'openai', 'gpt-4o', { model: 'x', input: text }), o200kCount(text));
    assert.equal(estimate('embeddings', 'openai', 'gpt-4', { model: 'x', input: text }), cl100kCount(text));
  });

  it('counts long unbroken runs (CJK, padding, base64) close to the tokenizer and never far below it', () => {
    const cjk = Array.from({ length: 2_000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7_919) % 20_000))).join('');
    const spaces = ' '.repeat(3_000);
    const letters = 'abcdefghij'.repeat(300);
    const b64 = base64OfBytes(3_000).replace(/A/g, 'x');
    for (const text of [cjk, spaces, letters, b64, `${cjk} ${spaces}x${letters}`]) {
      const exact = o200kCount(text);
      const got = estimate('embeddings', 'openai', 'gpt-4o', { model: 'x', input: text });
      assert.ok(got >= exact * 0.98 && got <= exact * 1.1, `${got} vs ${exact} for ${text.slice(0, 20)}…`);
    }
  });

  it('falls back to UTF-8 bytes, an upper bound for byte-level BPE, once the tokenizer budget is spent', () => {
    const text = `${PROMPT} 東京 😀`;
    const body = schemaValid('embeddings', { model: 'x', input: text });
    assert.equal(bytesOnly.estimate('embeddings', 'openai', 'gpt-4o', body), Buffer.byteLength(text, 'utf8'));
    assert.ok(Buffer.byteLength(text, 'utf8') >= o200kCount(text));
  });

  it('counts the Responses instructions and input like chat messages', () => {
    const body = { model: 'gpt-5', instructions: 'Be brief.', input: PROMPT };
    const expected =
      2 * OPENAI_TOKENS_PER_MESSAGE +
      OPENAI_REPLY_PRIMING +
      o200kCount('developer') + o200kCount('Be brief.') +
      o200kCount('user') + o200kCount(PROMPT);
    assert.equal(estimate('responses', 'openai', 'gpt-5', body), expected);
    const chained = { ...body, previous_response_id: 'resp_123' };
    assert.equal(estimate('responses', 'openai', 'gpt-5', chained) - estimate('responses', 'openai', 'gpt-5', body), PREVIOUS_RESPONSE_TOKENS);
  });

  it('adds the documented worst case per image, by model family', () => {
    const textOnly = (model: string) => ({ model, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }] }] });
    const withImages = (model: string, count: number) => ({
      model,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            ...Array.from({ length: count }, () => ({ type: 'image_url', image_url: { url: 'https://example.test/cat.png', detail: 'low' } })),
          ],
        },
      ],
    });
    const added = (model: string, count: number) =>
      estimate('chat', 'openai', model, withImages(model, count)) - estimate('chat', 'openai', model, textOnly(model));
    assert.equal(added('gpt-4o', 1), OPENAI_IMAGE_TOKENS_DEFAULT);
    assert.equal(added('gpt-4o', 3), 3 * OPENAI_IMAGE_TOKENS_DEFAULT);
    assert.equal(added('gpt-4o-mini', 1), OPENAI_IMAGE_TOKENS_GPT_4O_MINI);
    assert.equal(added('gpt-4o-mini-2024-07-18', 1), OPENAI_IMAGE_TOKENS_GPT_4O_MINI);
    assert.equal(added('some-unknown-vision-model', 1), OPENAI_IMAGE_TOKENS_UNKNOWN_MODEL);
    assert.ok(added('gpt-4.1-nano', 1) >= Math.ceil(1_536 * 2.46));
    assert.ok(added('gpt-4.1-mini', 1) >= Math.ceil(1_536 * 1.62));
    assert.ok(added('o4-mini', 1) >= Math.ceil(1_536 * 1.72));

    // Responses: `original` detail counts several times the `high` worst case.
    const responsesImage = (detail: string) => ({
      model: 'gpt-5',
      input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail }] }],
    });
    assert.equal(
      estimate('responses', 'openai', 'gpt-5', responsesImage('original')) - estimate('responses', 'openai', 'gpt-5', responsesImage('high')),
      (ORIGINAL_DETAIL_FACTOR - 1) * OPENAI_IMAGE_TOKENS_DEFAULT,
    );
  });

  it('counts audio by its decoded size, inline files by size with a one-page floor, and file references at a fixed guess', () => {
    const model = 'gpt-4o';
    const base = { model, messages: [{ role: 'user', content: [{ type: 'text', text: 'Listen' }] }] };
    const withPart = (part: Record<string, unknown>) => ({ model, messages: [{ role: 'user', content: [{ type: 'text', text: 'Listen' }, part] }] });
    const added = (part: Record<string, unknown>) => estimate('chat', 'openai', model, withPart(part)) - estimate('chat', 'openai', model, base);

    assert.equal(added({ type: 'input_audio', input_audio: { data: base64OfBytes(96_000), format: 'mp3' } }), 96_000 / AUDIO_BYTES_PER_TOKEN);
    const pageFloor = DOCUMENT_PAGE_TEXT_TOKENS + OPENAI_IMAGE_TOKENS_DEFAULT;
    assert.equal(added({ type: 'file', file: { file_data: `data:application/pdf;base64,${base64OfBytes(300)}` } }), pageFloor);
    assert.equal(added({ type: 'file', file: { file_data: `data:application/pdf;base64,${base64OfBytes(300_000)}` } }), 100_000);
    assert.equal(added({ type: 'file', file: { file_id: 'file-abc' } }), FILE_REFERENCE_TOKENS);
    // An earlier audio answer replayed by id.
    const replay = {
      model,
      messages: [...base.messages, { role: 'assistant', audio: { id: 'audio_1' } }],
    };
    assert.ok(estimate('chat', 'openai', model, replay) - estimate('chat', 'openai', model, base) >= AUDIO_REFERENCE_TOKENS);
  });

  it('caps one attachment at the documented maximum', () => {
    const huge = 'QUFB'.repeat(2_100_000); // 8.4 MB of base64, 6.3 MB decoded
    const body = {
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: huge } }] }],
    };
    const got = estimate('messages', 'anthropic', 'claude-sonnet-4-5', body);
    assert.ok(got >= MAX_ATTACHMENT_TOKENS && got < MAX_ATTACHMENT_TOKENS + 100, String(got));
  });

  it('estimates Anthropic requests at no less than UTF-8 bytes / 3, plus framing per message', () => {
    const system = 'You answer in French.';
    const texts = [PROMPT, 'Très bien — 東京タワー 😀', 'ok'];
    const body = {
      model: 'claude-sonnet-4-5',
      max_tokens: 100,
      system,
      messages: [
        { role: 'user', content: texts[0] },
        { role: 'assistant', content: [{ type: 'text', text: texts[1] }] },
        { role: 'user', content: texts[2] },
      ],
    };
    const bytes = [system, ...texts].reduce((sum, text) => sum + Buffer.byteLength(text ?? '', 'utf8'), 0);
    const got = estimate('messages', 'anthropic', 'claude-sonnet-4-5', body);
    assert.ok(got >= Math.ceil(bytes / 3));
    assert.equal(got, Math.ceil(bytes / 3) + 4 * ANTHROPIC_TOKENS_PER_MESSAGE);
  });

  it('adds Anthropic images, tool definitions and the tool-use system prompt', () => {
    const plain = { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe' }] }] };
    const withImage = {
      ...plain,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: base64OfBytes(30_000) } },
            { type: 'image', source: { type: 'url', url: 'https://example.test/a.jpg' } },
          ],
        },
      ],
    };
    assert.equal(
      estimate('messages', 'anthropic', 'claude-haiku-4-5', withImage) - estimate('messages', 'anthropic', 'claude-haiku-4-5', plain),
      2 * ANTHROPIC_IMAGE_TOKENS,
    );
    const tools = [{ name: 'lookup', description: 'Look a word up', input_schema: { type: 'object', properties: { word: { type: 'string' } } } }];
    const added =
      estimate('messages', 'anthropic', 'claude-haiku-4-5', { ...plain, tools }) - estimate('messages', 'anthropic', 'claude-haiku-4-5', plain);
    assert.ok(added >= ANTHROPIC_TOOLS_OVERHEAD + Math.floor(JSON.stringify(tools).length / 3) - 1, String(added));
    assert.ok(added <= ANTHROPIC_TOOLS_OVERHEAD + Math.ceil(JSON.stringify(tools).length / 3) + 10, String(added));
  });

  it('never throws, and returns a whole non-negative count, for odd but schema-valid bodies', () => {
    const cases: Array<[Endpoint, Record<string, unknown>]> = [
      ['chat', { model: 'm', messages: [{ role: 'user', content: '' }] }],
      ['chat', { model: 'm', messages: [{ role: 'user', content: [] }] }],
      ['chat', { model: 'm', messages: [{ role: 'assistant', content: null, refusal: null }] }],
      ['chat', { model: 'm', messages: [{ role: 'assistant' }] }],
      ['chat', { model: 'm', messages: [{ role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }, { type: 'text', text: '' }] }] }],
      ['chat', { model: 'm', messages: [{ role: 'function', name: 'f', content: null }] }],
      ['chat', { model: 'm', messages: [{ role: 'tool', tool_call_id: '', content: [{ type: 'text', text: '' }] }] }],
      ['chat', { model: 'm', messages: [{ role: 'developer', content: [{ type: 'text', text: 'x' }] }], tools: [], response_format: { type: 'json_schema', json_schema: { name: 's' } } }],
      ['chat', { model: 'm', messages: [{ role: 'user', content: [{ type: 'file', file: {} }, { type: 'input_audio', input_audio: { data: '', format: 'wav' } }, { type: 'image_url', image_url: { url: '' } }] }] }],
      ['chat', { model: 'm', messages: [{ role: 'user', content: 'x' }], prediction: { type: 'content', content: [{ type: 'text', text: 'y' }] }, stop: null, n: 2 }],
      ['chat', { model: 'm', messages: [{ role: 'system', content: 'x'.repeat(100_000) }] }],
      ['responses', { model: 'm', input: '' }],
      ['responses', { model: 'm', input: 'x', instructions: null, tools: [{ type: 'function', name: 'f', parameters: null }], text: { format: { type: 'json_schema', name: 'n', schema: {} } } }],
      ['responses', { model: 'm', input: [{ role: 'user', content: [] }] }],
      ['responses', { model: 'm', input: [{ role: 'assistant', content: [{ type: 'output_text', text: '', annotations: [] }, { type: 'refusal', refusal: '' }] }] }],
      ['responses', { model: 'm', input: [{ type: 'function_call', call_id: 'c', name: 'f', arguments: '' }, { type: 'function_call_output', call_id: 'c', output: [{ type: 'input_text', text: 'r' }, { type: 'input_image', detail: null }, { type: 'input_file', file_url: 'https://example.test/f.pdf' }] }] }],
      ['responses', { model: 'm', input: [{ type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: base64OfBytes(3_000) }, { type: 'reasoning', id: 'rs_2', summary: [{ type: 'summary_text', text: 's' }], content: [{ type: 'reasoning_text', text: 't' }], encrypted_content: null }] }],
      ['embeddings', { model: 'm', input: '' }],
      ['embeddings', { model: 'm', input: [''] }],
      ['embeddings', { model: 'm', input: [0] }],
      ['embeddings', { model: 'm', input: [[0]] }],
      ['messages', { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: '' }] }],
      ['messages', { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: [] }], system: [] }],
      ['messages', { model: 'm', max_tokens: 1, system: [{ type: 'text', text: '', cache_control: null, citations: null }], messages: [{ role: 'user', content: 'x' }] }],
      ['messages', { model: 'm', max_tokens: 1, messages: [{ role: 'assistant', content: [{ type: 'thinking', thinking: '', signature: 's' }, { type: 'redacted_thinking', data: 'AAAA' }, { type: 'tool_use', id: 't', name: 'n', input: {} }] }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't' }, { type: 'tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'r' }, { type: 'document', source: { type: 'content', content: [{ type: 'text', text: 'd' }] } }] }] }] }],
      ['messages', { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: '' }, title: null, context: null }, { type: 'document', source: { type: 'url', url: 'https://example.test/x.pdf' } }, { type: 'document', source: { type: 'file', file_id: 'f' } }, { type: 'document', source: { type: 'content', content: '' } }, { type: 'image', source: { type: 'file', file_id: 'f' } }] }] }],
      ['messages', { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'text', text: 'x', citations: [{ type: 'char_location', cited_text: 'c', document_index: 0, document_title: null, start_char_index: 0, end_char_index: 1 }] }] }], tools: [{ name: 't', input_schema: {} }], output_config: { format: { type: 'json_schema', schema: {} } } }],
    ];
    for (const [endpoint, body] of cases) {
      schemaValid(endpoint, body);
      for (const provider of ['openai', 'anthropic'] as const) {
        for (const model of ['gpt-4o-mini', 'gpt-3.5-turbo', 'claude-3-5-haiku-latest', '']) {
          let got: number | undefined;
          assert.doesNotThrow(() => {
            got = estimator.estimate(endpoint, provider, model, body);
          }, `${endpoint} ${provider} ${model} ${JSON.stringify(body).slice(0, 120)}`);
          assert.ok(Number.isSafeInteger(got) && (got ?? -1) >= 0, `${endpoint} ${provider}: ${got}`);
        }
      }
    }
  });

  it('still returns a count for bodies of the wrong shape (defence in depth)', () => {
    const odd: Array<[Endpoint, unknown]> = [
      ['chat', {}],
      ['chat', { messages: 'not an array' }],
      ['chat', { messages: [null, 3, 'x', [], { role: 'user', content: { weird: true } }, { role: 'user', content: [null, 'x', { type: 'mystery', blob: 'y'.repeat(30) }] }] }],
      ['chat', { messages: [{ role: 'assistant', tool_calls: [null, { function: 'x' }] }], tools: 'nope' }],
      ['responses', { input: 42 }],
      ['responses', { input: [null, { type: 'mystery' }, { role: 'user', content: 7 }] }],
      ['messages', { system: 5, messages: [{ role: 'user', content: [{ type: 'document', source: null }, { type: 'mystery' }] }] }],
      ['embeddings', { input: [{}, null, true] }],
      ['embeddings', null],
      ['chat', []],
      ['unknown-endpoint' as Endpoint, { anything: ['goes'] }],
    ];
    const cyclic: Record<string, unknown> = { role: 'user' };
    cyclic['content'] = [{ type: 'mystery', self: cyclic }];
    odd.push(['chat', { messages: [cyclic], tools: [cyclic] }]);
    for (const [endpoint, body] of odd) {
      for (const provider of ['openai', 'anthropic'] as const) {
        const got = estimator.estimate(endpoint, provider, 'gpt-4o', body as Record<string, unknown>);
        assert.ok(Number.isSafeInteger(got) && got >= 0, `${endpoint} ${provider}: ${got}`);
      }
    }
    // An unknown part is not free: it counts its JSON length / 3.
    const mystery = { type: 'mystery', blob: 'y'.repeat(300) };
    const withMystery = estimator.estimate('chat', 'openai', 'gpt-4o', { messages: [{ role: 'user', content: [mystery] }] });
    const without = estimator.estimate('chat', 'openai', 'gpt-4o', { messages: [{ role: 'user', content: [] }] });
    assert.ok(withMystery - without >= 100, String(withMystery - without));
  });

  it('refuses an invalid tokenizer budget when created', async () => {
    await assert.rejects(createTokenEstimator({ tokenizeBudgetMs: -1 }), /tokenizeBudgetMs/);
    await assert.rejects(createTokenEstimator({ tokenizeBudgetMs: Number.NaN }), /tokenizeBudgetMs/);
  });
});
