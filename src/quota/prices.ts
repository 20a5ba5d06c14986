/**
 * Prices per model, and the cost of a request in integer nano-USD (1e-9 USD).
 *
 * Money budgets (`usd_per_day`, `usd_per_month`) are counted in nano-USD so counters stay
 * integers: 1 USD per million tokens is exactly 1,000 nano-USD per token. A model with no price
 * here (or in the operator's overrides) cannot be costed, and admission refuses it for a tenant
 * with a money budget rather than guessing.
 */

/** USD per one million tokens. */
export interface Price {
  input: number;
  output: number;
  /** Input tokens read from the provider's prompt cache; the input price when absent. */
  cachedInput?: number;
}

/**
 * Published list prices, standard tier (no batch, flex or priority discounts), in USD per
 * million tokens, as published on these pages in November 2025:
 *
 * - OpenAI: https://platform.openai.com/docs/pricing (and each model's page under
 *   https://platform.openai.com/docs/models)
 * - Anthropic: https://docs.anthropic.com/en/docs/about-claude/pricing (now
 *   https://platform.claude.com/docs/en/about-claude/pricing); `cachedInput` is the
 *   "cache hits and refreshes" price.
 *
 * Prices change and new models appear: operators should check these against the providers'
 * pages and override them in config (`prices:`), which always wins over this table.
 *
 * Known gaps in this flat model (an override cannot express them either):
 * - Anthropic prompt-cache writes cost 1.25x (5-minute) or 2x (1-hour) the input price; usage
 *   reports them as ordinary input tokens, so they are costed at the input price.
 * - Long-context surcharges (Claude Sonnet 4/4.5 above 200K input tokens: $6 / $22.50) are not
 *   applied.
 * - Audio, image-generation and other non-text token prices are not in this table.
 */
export const DEFAULT_PRICES: Readonly<Record<string, Price>> = deepFreeze({
  // OpenAI: GPT-5 family
  'gpt-5': { input: 1.25, cachedInput: 0.125, output: 10 },
  'gpt-5-mini': { input: 0.25, cachedInput: 0.025, output: 2 },
  'gpt-5-nano': { input: 0.05, cachedInput: 0.005, output: 0.4 },
  'gpt-5-chat-latest': { input: 1.25, cachedInput: 0.125, output: 10 },
  'gpt-5.1': { input: 1.25, cachedInput: 0.125, output: 10 },
  // OpenAI: GPT-4.1 family
  'gpt-4.1': { input: 2, cachedInput: 0.5, output: 8 },
  'gpt-4.1-mini': { input: 0.4, cachedInput: 0.1, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, cachedInput: 0.025, output: 0.4 },
  // OpenAI: GPT-4o family. The first gpt-4o snapshot kept its launch price, so it is listed
  // on its own (it would otherwise inherit the base name's price through the date suffix).
  'gpt-4o': { input: 2.5, cachedInput: 1.25, output: 10 },
  'gpt-4o-2024-05-13': { input: 5, output: 15 },
  'gpt-4o-mini': { input: 0.15, cachedInput: 0.075, output: 0.6 },
  // OpenAI: reasoning models
  o1: { input: 15, cachedInput: 7.5, output: 60 },
  'o1-mini': { input: 1.1, cachedInput: 0.55, output: 4.4 },
  o3: { input: 2, cachedInput: 0.5, output: 8 },
  'o3-mini': { input: 1.1, cachedInput: 0.55, output: 4.4 },
  'o4-mini': { input: 1.1, cachedInput: 0.275, output: 4.4 },
  // OpenAI: older chat models
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-4': { input: 30, output: 60 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'gpt-3.5-turbo-0125': { input: 0.5, output: 1.5 },
  // OpenAI: embeddings (no output tokens)
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
  // Anthropic. `-0` names are Anthropic's documented aliases for the first Claude 4 models.
  'claude-opus-4-5': { input: 5, cachedInput: 0.5, output: 25 },
  'claude-opus-4-1': { input: 15, cachedInput: 1.5, output: 75 },
  'claude-opus-4': { input: 15, cachedInput: 1.5, output: 75 },
  'claude-opus-4-0': { input: 15, cachedInput: 1.5, output: 75 },
  'claude-sonnet-4-5': { input: 3, cachedInput: 0.3, output: 15 },
  'claude-sonnet-4': { input: 3, cachedInput: 0.3, output: 15 },
  'claude-sonnet-4-0': { input: 3, cachedInput: 0.3, output: 15 },
  'claude-3-7-sonnet': { input: 3, cachedInput: 0.3, output: 15 },
  'claude-3-5-sonnet': { input: 3, cachedInput: 0.3, output: 15 },
  'claude-haiku-4-5': { input: 1, cachedInput: 0.1, output: 5 },
  'claude-3-5-haiku': { input: 0.8, cachedInput: 0.08, output: 4 },
  'claude-3-haiku': { input: 0.25, cachedInput: 0.03, output: 1.25 },
} satisfies Record<string, Price>);

function deepFreeze(prices: Record<string, Price>): Readonly<Record<string, Price>> {
  for (const price of Object.values(prices)) Object.freeze(price);
  return Object.freeze(prices);
}

export interface PriceTable {
  /** The price for a provider model name, or undefined when the model has none. */
  priceFor(upstreamModel: string): Price | undefined;
}

/** A snapshot or alias suffix: `-latest`, `-2024-08-06`, `-20241022`. */
const VERSION_SUFFIX = /-(?:latest|\d{4}-\d{2}-\d{2}|\d{8})$/;

/**
 * The price table: `overrides` (from config) over {@link DEFAULT_PRICES}. Throws at once, listing
 * every invalid entry, when an override is not a finite, non-negative price.
 *
 * Lookup is by exact name first; failing that, a snapshot or alias name is priced as its base
 * model by stripping one trailing `-latest`, `-YYYY-MM-DD` or `-YYYYMMDD` (so
 * `claude-3-5-haiku-20241022` and `gpt-4o-mini-2024-07-18` are priced, while `gpt-4o-mini` is
 * never priced as `gpt-4o`: there is no prefix matching).
 *
 * @example
 * const table = createPriceTable({ 'my-finetune': { input: 0.3, output: 1.2 } });
 * table.priceFor('gpt-4o-2024-08-06'); // { input: 2.5, cachedInput: 1.25, output: 10 }
 */
export function createPriceTable(overrides?: Readonly<Record<string, Price>>): PriceTable {
  const problems: string[] = [];
  const table = new Map<string, Price>();
  for (const [model, price] of Object.entries(DEFAULT_PRICES)) table.set(model, price);
  if (overrides !== undefined) {
    if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
      throw new Error('invalid price overrides: expected an object mapping model names to prices');
    }
    for (const [model, price] of Object.entries(overrides)) {
      const checked = checkPrice(model, price, problems);
      if (checked !== undefined) table.set(model, checked);
    }
  }
  if (problems.length > 0) throw new Error(`invalid price overrides:\n- ${problems.join('\n- ')}`);

  return {
    priceFor(upstreamModel: string): Price | undefined {
      const exact = table.get(upstreamModel);
      if (exact !== undefined) return exact;
      const base = upstreamModel.replace(VERSION_SUFFIX, '');
      return base === upstreamModel ? undefined : table.get(base);
    },
  };
}

function checkPrice(model: string, price: unknown, problems: string[]): Price | undefined {
  if (model.length === 0) {
    problems.push('a model name is empty');
    return undefined;
  }
  if (price === null || typeof price !== 'object' || Array.isArray(price)) {
    problems.push(`${model}: expected { input, output, cachedInput? } in USD per million tokens`);
    return undefined;
  }
  const record = price as Record<string, unknown>;
  const before = problems.length;
  for (const field of ['input', 'output', 'cachedInput'] as const) {
    const value = record[field];
    if (value === undefined && field === 'cachedInput') continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      problems.push(`${model}.${field}: must be a finite number >= 0 (USD per million tokens), got ${describe(value)}`);
    }
  }
  for (const field of Object.keys(record)) {
    if (field !== 'input' && field !== 'output' && field !== 'cachedInput') {
      problems.push(`${model}.${field}: unknown field (expected input, output, cachedInput)`);
    }
  }
  if (problems.length > before) return undefined;
  const checked: Price = { input: record['input'] as number, output: record['output'] as number };
  if (record['cachedInput'] !== undefined) checked.cachedInput = record['cachedInput'] as number;
  return Object.freeze(checked);
}

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  return typeof value;
}

/** 1 USD per million tokens = 1e6 pico-USD per token; costs are summed in pico-USD, then rounded up to nano-USD. */
const PICO_PER_USD_PER_MTOK = 1_000_000;

/**
 * Cost in integer nano-USD (1e-9 USD), rounded up:
 * (input - cached)·input + cached·(cachedInput ?? input) + output·output.
 *
 * Exact integer math: each price becomes an integer number of pico-USD per token (prices with
 * more than six decimals are rounded up), the products are summed as BigInt, and the total is
 * rounded up to whole nano-USD once. `cachedInputTokens` is part of `inputTokens` (as both
 * adapters report it) and is clamped to it; negative or non-finite counts count as zero.
 *
 * @example
 * costNanoUsd({ input: 0.15, output: 0.6 }, { inputTokens: 1, outputTokens: 0 }); // 150
 */
export function costNanoUsd(
  price: Price,
  usage: { inputTokens: number; outputTokens: number; cachedInputTokens?: number },
): number {
  const input = tokenCount(usage.inputTokens);
  const cached = Math.min(tokenCount(usage.cachedInputTokens), input);
  const output = tokenCount(usage.outputTokens);
  const inputPrice = picoPerToken(price.input);
  const cachedPrice = price.cachedInput === undefined ? inputPrice : picoPerToken(price.cachedInput);
  const outputPrice = picoPerToken(price.output);
  const pico =
    BigInt(input - cached) * inputPrice + BigInt(cached) * cachedPrice + BigInt(output) * outputPrice;
  const nano = (pico + 999n) / 1000n;
  return nano > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(nano);
}

function tokenCount(value: number | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.ceil(value) : 0;
}

function picoPerToken(usdPerMillion: number): bigint {
  if (!Number.isFinite(usdPerMillion) || usdPerMillion <= 0) return 0n;
  const scaled = usdPerMillion * PICO_PER_USD_PER_MTOK;
  const nearest = Math.round(scaled);
  // 1.1 * 1e6 is 1100000.0000000002 in binary floating point: treat values within float noise of
  // an integer as that integer, and round anything genuinely finer up.
  return BigInt(Math.abs(scaled - nearest) <= 1e-9 * Math.max(1, scaled) ? nearest : Math.ceil(scaled));
}
