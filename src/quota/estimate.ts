import type { Endpoint, ProviderType } from '../providers/types.js';

/**
 * Input-token estimates for admission. Before forwarding, the gateway reserves a request's worst
 * case (estimated input plus the output cap); settlement then replaces the reservation with the
 * provider's reported usage. So the estimate should not fall short of the real count (a short
 * estimate lets a tenant overshoot a budget), and it should not be wildly high (that refuses
 * requests a tenant could afford). It runs on the request path, so it is bounded in time.
 *
 * OpenAI-type providers: a real tokenizer (`gpt-tokenizer`), o200k_base or cl100k_base by model,
 * over the text of everything that reaches the model, plus OpenAI's documented per-message
 * framing (the "How to count tokens with tiktoken" cookbook: 3 tokens per message, 1 per `name`,
 * 3 to prime the reply).
 *
 * Other providers (Anthropic): no public tokenizer, so ceil(UTF-8 bytes / 3) over the same text,
 * plus fixed counts. Claude's tokenizers average roughly 3.5 to 4.5 characters per token on
 * English prose and about 3 on code, so one token per 3 bytes over-counts them; CJK text is
 * 3 bytes per character and about one token per character, so it is counted at about par. It is
 * an estimate, not a bound: text of rare characters or emoji can tokenize denser than that.
 *
 * Attachments are not decoded: each gets a fixed documented count, or a count from its encoded
 * size (see the constants below). Anything of an unexpected shape counts as its JSON length / 3.
 * `estimate()` never throws.
 */

export interface TokenEstimator {
  /** Conservative input-token estimate for a validated body. */
  estimate(endpoint: Endpoint, providerType: ProviderType, upstreamModel: string, body: Record<string, unknown>): number;
}

export interface TokenEstimatorOptions {
  /**
   * Time the tokenizer may spend on one request, in milliseconds (default
   * {@link DEFAULT_TOKENIZE_BUDGET_MS}). Text left when it runs out counts one token per UTF-8
   * byte, which byte-level BPE can never exceed.
   */
  tokenizeBudgetMs?: number;
}

/** Default tokenizer time per request: about 300 KB of English prose on one core. */
export const DEFAULT_TOKENIZE_BUDGET_MS = 25;

// ---------------------------------------------------------------------------------------------
// Documented constants

/** OpenAI chat framing per message (cookbook, gpt-3.5-turbo-0613 and later, gpt-4*, gpt-4o*). */
export const OPENAI_TOKENS_PER_MESSAGE = 3;
/** OpenAI: extra token when a message carries `name`. */
export const OPENAI_TOKENS_PER_NAME = 1;
/** OpenAI: every reply is primed with `<|start|>assistant<|message|>`. */
export const OPENAI_REPLY_PRIMING = 3;
/**
 * OpenAI: wrapper around function definitions. OpenAI renders tools as a TypeScript-like
 * namespace we count as their JSON (which is longer than that rendering); this covers the fixed
 * header and footer (the cookbook's func_init 7 + func_end 12, rounded up).
 */
export const OPENAI_TOOLS_OVERHEAD = 20;
/** OpenAI: framing per earlier tool call in an assistant message (counted like a message). */
export const OPENAI_TOKENS_PER_TOOL_CALL = 3;

/**
 * OpenAI image tokens, worst case per image at `high`/`auto` detail, by model family (OpenAI
 * vision guide): tile models cost 85 + 170 per 512px tile and an image is at most 8 tiles
 * (1,445; o1/o3 75 + 150 per tile); patch models cost at most 1,536 32px patches times a
 * multiplier (gpt-4.1 1, gpt-4.1-mini and gpt-5-mini 1.62, o4-mini 1.72, gpt-4.1-nano and
 * gpt-5-nano 2.46); gpt-4o-mini bills 2,833 + 5,667 per tile (48,169 at 8 tiles). Detail `low`
 * is not trusted to be cheaper (it is not for every family).
 */
export const OPENAI_IMAGE_TOKENS_DEFAULT = 1_600;
export const OPENAI_IMAGE_TOKENS_GPT_4O_MINI = 48_200;
/** Models not listed: the largest patch-model worst case (gpt-4.1-nano, 1,536 × 2.46 = 3,779). */
export const OPENAI_IMAGE_TOKENS_UNKNOWN_MODEL = 3_800;
const OPENAI_IMAGE_TOKENS: ReadonlyMap<string, number> = new Map([
  ['gpt-4o', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['chatgpt-4o', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-4-turbo', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-4.1', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-4.5-preview', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-5', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-5-chat', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-5.1', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['o1', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['o3', OPENAI_IMAGE_TOKENS_DEFAULT],
  ['gpt-4.1-mini', 2_500],
  ['gpt-5-mini', 2_500],
  ['o4-mini', 2_700],
  ['gpt-4.1-nano', 3_800],
  ['gpt-5-nano', 3_800],
  ['gpt-4o-mini', OPENAI_IMAGE_TOKENS_GPT_4O_MINI],
]);
/**
 * Images sent with detail `original` keep more of their resolution and have no published cap we
 * know of: they count this many times the model's `high` worst case (a guess, not a bound).
 */
export const ORIGINAL_DETAIL_FACTOR = 4;

/**
 * Anthropic: an image costs about width × height / 750 tokens and larger images are scaled down
 * to about 1.15 megapixels, i.e. at most about 1,600 tokens (Anthropic vision guide).
 */
export const ANTHROPIC_IMAGE_TOKENS = 1_600;
/** Anthropic: framing per message (role markers and turn separators), generous. */
export const ANTHROPIC_TOKENS_PER_MESSAGE = 8;
/**
 * Anthropic: the tool-use system prompt added when `tools` are present. Anthropic documents 159
 * to 530 tokens depending on model and `tool_choice` (346 for Claude 4 with auto/none).
 */
export const ANTHROPIC_TOOLS_OVERHEAD = 600;

/**
 * Audio input (OpenAI `input_audio`): audio models bill about 10 tokens per second (600 per
 * minute). The lowest common bitrate, 8 kbit/s mp3, carries 1,000 bytes per second, i.e. 100
 * bytes per token; we assume 32 decoded bytes per token, over three times that.
 */
export const AUDIO_BYTES_PER_TOKEN = 32;
/** An earlier audio answer referenced by id (chat `assistant.audio`): length unknown. */
export const AUDIO_REFERENCE_TOKENS = 10_000;
/**
 * Inline documents (PDF and other files as base64): providers send the model the extracted text
 * and an image of each page. We count one token per 3 decoded bytes, but never less than one
 * page: 3,000 tokens of text (the top of Anthropic's "1,500 to 3,000 per page") plus one image.
 */
export const DOCUMENT_BYTES_PER_TOKEN = 3;
export const DOCUMENT_PAGE_TEXT_TOKENS = 3_000;
/**
 * A file or document passed by reference (`file_id`, a URL): its size is unknown here. A guess
 * (about 30 dense pages), not a bound; settlement corrects it.
 */
export const FILE_REFERENCE_TOKENS = 100_000;
/**
 * `previous_response_id` (Responses): the stored conversation is input again, and its length is
 * unknown here. A guess, not a bound; settlement corrects it.
 */
export const PREVIOUS_RESPONSE_TOKENS = 32_000;
/**
 * Encrypted reasoning replayed from an earlier answer (`encrypted_content`, Anthropic
 * `redacted_thinking`): re-read as input. Counted as one token per 2 decoded bytes (reasoning
 * text runs about 4 bytes per token before encryption).
 */
export const ENCRYPTED_BYTES_PER_TOKEN = 2;
/**
 * No attachment counts more than this: no model we price accepts much more than a million input
 * tokens, so a larger number can only refuse a request that would have failed upstream anyway.
 */
export const MAX_ATTACHMENT_TOKENS = 2_000_000;
/** Unknown shapes: JSON characters per token. */
const OPAQUE_CHARS_PER_TOKEN = 3;
/** Deepest nesting walked for unknown shapes (bodies are depth-capped well below this). */
const MAX_WALK_DEPTH = 64;

/**
 * Tokenizer segments. gpt-tokenizer's BPE is quadratic in the length of one pre-tokenizer piece
 * (100 KB of spaces, or 20,000 CJK characters in a row, take seconds), so text is fed to it in
 * segments:
 * - a run of RUN_MAX or more space, or non-space, characters (long CJK text, base64, padding) is
 *   cut every RUN_MAX characters, which can change the count by about one token per cut;
 * - other text is cut into segments of at most SEGMENT_MAX characters just before a single space
 *   that sits between two non-space characters (past SEGMENT_SOFT_MIN). No pre-tokenizer piece
 *   spans such a point (a space only ever starts a piece), so ordinary text is counted exactly.
 */
const SEGMENT_MAX = 4_096;
const SEGMENT_SOFT_MIN = 2_048;
const RUN_MAX = 128;

// ---------------------------------------------------------------------------------------------

type CountTokens = (text: string) => number;

interface Encodings {
  o200k: CountTokens;
  cl100k: CountTokens;
}

/**
 * Loads the o200k_base and cl100k_base encodings once (dynamic import: a few MB of ranks) and
 * returns an estimator whose `estimate()` is synchronous.
 *
 * @example
 * const estimator = await createTokenEstimator();
 * estimator.estimate('chat', 'openai', 'gpt-4o-mini', { model: 'x', messages: [{ role: 'user', content: 'Hi' }] }); // 8
 */
export async function createTokenEstimator(options: TokenEstimatorOptions = {}): Promise<TokenEstimator> {
  const budgetMs = options.tokenizeBudgetMs ?? DEFAULT_TOKENIZE_BUDGET_MS;
  if (typeof budgetMs !== 'number' || !Number.isFinite(budgetMs) || budgetMs < 0) {
    throw new Error('tokenizeBudgetMs must be a finite number >= 0');
  }
  const [o200k, cl100k] = await Promise.all([
    import('gpt-tokenizer/encoding/o200k_base'),
    import('gpt-tokenizer/encoding/cl100k_base'),
  ]);
  // Special-token text (`<|endoftext|>`) in client content is plain text to the provider; the
  // library's default would throw on it.
  const plain = { disallowedSpecial: new Set<string>() };
  const encodings: Encodings = {
    o200k: (text) => o200k.countTokens(text, plain),
    cl100k: (text) => cl100k.countTokens(text, plain),
  };
  // warm both encoders once at start, so the first requests are not measured against a cold
  // tokenizer's time budget (and over-reserved by the byte fallback)
  const warmup = 'The quick brown fox jumps over the lazy dog. Hello, world! 1234567890 ';
  encodings.o200k(warmup.repeat(8));
  encodings.cl100k(warmup.repeat(8));

  return {
    estimate(endpoint, providerType, upstreamModel, body) {
      let counter: Counter | undefined;
      try {
        counter =
          providerType === 'openai'
            ? new TokenizerCounter(encodingFor(upstreamModel, encodings), openAiProfile(upstreamModel), budgetMs)
            : new ByteCounter(ANTHROPIC_PROFILE);
        walkBody(endpoint, body, counter);
        return counter.total();
      } catch {
        // Never fail a request over an estimate: fall back to the body's size.
        return fallbackEstimate(body);
      }
    },
  };
}

/** cl100k_base for GPT-4 (not 4o/4.1/4.5), GPT-3.5 and the embedding models; o200k_base otherwise. */
function encodingFor(upstreamModel: string, encodings: Encodings): CountTokens {
  const name = baseModelName(upstreamModel);
  return /^(?:gpt-4(?![o.])|gpt-3\.5|text-embedding-|davinci-002|babbage-002)/.test(name) ? encodings.cl100k : encodings.o200k;
}

/** `ft:gpt-4o-mini-2024-07-18:org::id` → `gpt-4o-mini`; `claude-3-5-haiku-latest` → `claude-3-5-haiku`. */
function baseModelName(upstreamModel: string): string {
  let name = upstreamModel.toLowerCase();
  if (name.startsWith('ft:')) name = name.slice(3).split(':')[0] ?? name;
  return name.replace(/-(?:latest|\d{4}-\d{2}-\d{2}|\d{8})$/, '');
}

// ---------------------------------------------------------------------------------------------
// Profiles: the fixed counts of one provider family

interface Profile {
  tokensPerMessage: number;
  tokensPerName: number;
  replyPriming: number;
  toolsOverhead: number;
  tokensPerToolCall: number;
  /** Whether the role name is counted as text (OpenAI's cookbook does; Anthropic's framing covers it). */
  countRole: boolean;
  imageTokens: number;
}

function openAiProfile(upstreamModel: string): Profile {
  return {
    tokensPerMessage: OPENAI_TOKENS_PER_MESSAGE,
    tokensPerName: OPENAI_TOKENS_PER_NAME,
    replyPriming: OPENAI_REPLY_PRIMING,
    toolsOverhead: OPENAI_TOOLS_OVERHEAD,
    tokensPerToolCall: OPENAI_TOKENS_PER_TOOL_CALL,
    countRole: true,
    imageTokens: OPENAI_IMAGE_TOKENS.get(baseModelName(upstreamModel)) ?? OPENAI_IMAGE_TOKENS_UNKNOWN_MODEL,
  };
}

const ANTHROPIC_PROFILE: Profile = {
  tokensPerMessage: ANTHROPIC_TOKENS_PER_MESSAGE,
  tokensPerName: 0,
  replyPriming: 0,
  toolsOverhead: ANTHROPIC_TOOLS_OVERHEAD,
  tokensPerToolCall: 0,
  countRole: false,
  imageTokens: ANTHROPIC_IMAGE_TOKENS,
};

// ---------------------------------------------------------------------------------------------
// Counters: where the walkers put what they find

abstract class Counter {
  protected fixed = 0;

  constructor(readonly profile: Profile) {}

  /** Text the model reads. */
  abstract text(value: unknown): void;
  /** A JSON value the model reads as JSON (tool schemas, tool-call inputs). */
  abstract json(value: unknown): void;
  protected abstract variableTotal(): number;

  tokens(count: number): void {
    if (Number.isFinite(count) && count > 0) this.fixed += Math.ceil(count);
  }

  /** Something of a shape we do not know: its JSON length / 3. */
  opaque(value: unknown): void {
    this.tokens(Math.ceil(jsonLength(value, 0) / OPAQUE_CHARS_PER_TOKEN));
  }

  message(): void {
    this.tokens(this.profile.tokensPerMessage);
  }

  role(value: unknown): void {
    if (this.profile.countRole) this.text(value);
  }

  name(value: unknown): void {
    if (typeof value !== 'string') return;
    this.text(value);
    this.tokens(this.profile.tokensPerName);
  }

  image(detail: unknown): void {
    const tokens = this.profile.imageTokens;
    this.tokens(detail === 'original' ? tokens * ORIGINAL_DETAIL_FACTOR : tokens);
  }

  /** An inline document; `data` is base64 or a base64 data URL. */
  document(data: string): void {
    const bytes = decodedLength(data);
    const pageFloor = DOCUMENT_PAGE_TEXT_TOKENS + this.profile.imageTokens;
    this.tokens(Math.min(MAX_ATTACHMENT_TOKENS, Math.max(pageFloor, Math.ceil(bytes / DOCUMENT_BYTES_PER_TOKEN))));
  }

  fileReference(): void {
    this.tokens(FILE_REFERENCE_TOKENS);
  }

  audio(data: unknown): void {
    if (typeof data !== 'string') return this.tokens(AUDIO_REFERENCE_TOKENS);
    this.tokens(Math.min(MAX_ATTACHMENT_TOKENS, Math.ceil(decodedLength(data) / AUDIO_BYTES_PER_TOKEN)));
  }

  encrypted(data: unknown): void {
    if (typeof data !== 'string') return;
    this.tokens(Math.min(MAX_ATTACHMENT_TOKENS, Math.ceil(decodedLength(data) / ENCRYPTED_BYTES_PER_TOKEN)));
  }

  tools(value: unknown): void {
    if (!Array.isArray(value) || value.length === 0) return;
    this.json(value);
    this.tokens(this.profile.toolsOverhead);
  }

  total(): number {
    const total = this.fixed + this.variableTotal();
    return Number.isFinite(total) && total > 0 ? Math.min(Math.ceil(total), Number.MAX_SAFE_INTEGER) : 0;
  }
}

/** OpenAI: the model's BPE encoding, within a time budget. */
class TokenizerCounter extends Counter {
  private counted = 0;
  private readonly deadline: number;

  constructor(
    private readonly count: CountTokens,
    profile: Profile,
    budgetMs: number,
  ) {
    super(profile);
    this.deadline = performance.now() + budgetMs;
  }

  text(value: unknown): void {
    if (typeof value !== 'string' || value.length === 0) return;
    const length = value.length;
    let start = 0;
    while (start < length) {
      if (performance.now() >= this.deadline) {
        // Out of time: byte-level BPE never yields more tokens than UTF-8 bytes.
        this.counted += Buffer.byteLength(start === 0 ? value : value.slice(start), 'utf8');
        return;
      }
      const end = segmentEnd(value, start);
      this.counted += this.count(start === 0 && end === length ? value : value.slice(start, end));
      start = end;
    }
  }

  json(value: unknown): void {
    let serialised: string | undefined;
    try {
      serialised = JSON.stringify(value);
    } catch {
      serialised = undefined;
    }
    if (serialised === undefined) this.opaque(value);
    else this.text(serialised);
  }

  protected variableTotal(): number {
    return this.counted;
  }
}

/** Anthropic and others: UTF-8 bytes / 3. */
class ByteCounter extends Counter {
  private bytes = 0;

  text(value: unknown): void {
    if (typeof value === 'string') this.bytes += Buffer.byteLength(value, 'utf8');
  }

  json(value: unknown): void {
    this.bytes += jsonLength(value, 0);
  }

  protected variableTotal(): number {
    return Math.ceil(this.bytes / 3);
  }
}

/** Where the segment starting at `start` ends (see SEGMENT_MAX and RUN_MAX). */
function segmentEnd(text: string, start: number): number {
  const length = text.length;
  const limit = Math.min(length, start + SEGMENT_MAX);
  let runStart = start;
  let runIsSpace = isSpace(text.charCodeAt(start));
  for (let i = start + 1; i < limit; i++) {
    const space = isSpace(text.charCodeAt(i));
    if (space !== runIsSpace) {
      runStart = i;
      runIsSpace = space;
    } else if (i - runStart + 1 >= RUN_MAX) {
      // A long run: end this segment where it begins, or cut the run itself.
      return runStart > start ? runStart : hardCut(text, start + RUN_MAX);
    }
  }
  if (limit === length) return length;
  for (let i = limit; i > start + SEGMENT_SOFT_MIN; i--) {
    if (text.charCodeAt(i) === 0x20 && !isSpace(text.charCodeAt(i - 1)) && !isSpace(text.charCodeAt(i + 1))) return i;
  }
  return hardCut(text, limit);
}

/** Never split a surrogate pair. */
function hardCut(text: string, end: number): number {
  const code = text.charCodeAt(end - 1);
  return code >= 0xd800 && code <= 0xdbff ? end - 1 : end;
}

/** Unicode White_Space (what `\s` matches in the pre-tokenizer patterns); NaN (past the end) counts as space. */
function isSpace(code: number): boolean {
  if (Number.isNaN(code)) return true;
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0x85) return false;
  return (
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/** Bytes a base64 payload (or a base64 data URL) decodes to; other data URLs count their length. */
function decodedLength(data: string): number {
  let payload = data.length;
  if (data.startsWith('data:')) {
    const comma = data.indexOf(',');
    if (comma !== -1) {
      const header = data.slice(0, comma);
      payload = data.length - comma - 1;
      if (!header.endsWith(';base64')) return payload;
    }
  }
  return Math.ceil((payload * 3) / 4);
}

/** Approximate JSON length of a value, by walking it (no serialisation of large values). */
function jsonLength(value: unknown, depth: number): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8') + 2;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value).length;
  if (value === null || value === undefined) return 4;
  if (typeof value !== 'object') return 0;
  if (depth >= MAX_WALK_DEPTH) return 0;
  let length = 2;
  if (Array.isArray(value)) {
    for (const item of value) length += jsonLength(item, depth + 1) + 1;
    return length;
  }
  for (const [key, item] of Object.entries(value)) length += Buffer.byteLength(key, 'utf8') + 4 + jsonLength(item, depth + 1);
  return length;
}

function fallbackEstimate(body: unknown): number {
  try {
    return Math.ceil(jsonLength(body, 0) / OPAQUE_CHARS_PER_TOKEN);
  } catch {
    return MAX_ATTACHMENT_TOKENS;
  }
}

// ---------------------------------------------------------------------------------------------
// Walkers: one per endpoint body shape (src/policy/schemas/*.ts)

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function walkBody(endpoint: Endpoint, body: unknown, c: Counter): void {
  if (!isRecord(body)) return c.opaque(body);
  switch (endpoint) {
    case 'chat':
      return walkChat(body, c);
    case 'responses':
      return walkResponses(body, c);
    case 'messages':
      return walkMessages(body, c);
    case 'embeddings':
      return walkEmbeddings(body, c);
    default:
      return c.opaque(body);
  }
}

// OpenAI Chat Completions -----------------------------------------------------------------------

function walkChat(body: Json, c: Counter): void {
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const message of messages) {
      if (!isRecord(message)) {
        c.opaque(message);
        continue;
      }
      c.message();
      c.role(message['role']);
      c.name(message['name']);
      chatContent(message['content'], c);
      c.text(message['refusal']);
      c.text(message['tool_call_id']);
      const toolCalls = message['tool_calls'];
      if (Array.isArray(toolCalls)) {
        for (const call of toolCalls) {
          if (!isRecord(call) || !isRecord(call['function'])) {
            c.opaque(call);
            continue;
          }
          c.tokens(c.profile.tokensPerToolCall);
          c.text(call['id']);
          c.text(call['function']['name']);
          c.text(call['function']['arguments']);
        }
      }
      // An earlier audio answer, replayed by id: the model hears it again.
      if (isRecord(message['audio'])) c.audio(undefined);
    }
  } else if (messages !== undefined) {
    c.opaque(messages);
  }
  c.tokens(c.profile.replyPriming);
  c.tools(body['tools']);
  const format = body['response_format'];
  if (isRecord(format) && format['type'] === 'json_schema') c.json(format['json_schema']);
  // Predicted output: rejected prediction tokens are billed, so count the prediction once.
  const prediction = body['prediction'];
  if (isRecord(prediction)) chatContent(prediction['content'], c);
}

function chatContent(content: unknown, c: Counter): void {
  if (content === undefined || content === null) return;
  if (typeof content === 'string') return c.text(content);
  if (!Array.isArray(content)) return c.opaque(content);
  for (const part of content) {
    if (!isRecord(part)) {
      c.opaque(part);
      continue;
    }
    switch (part['type']) {
      case 'text':
        c.text(part['text']);
        break;
      case 'refusal':
        c.text(part['refusal']);
        break;
      case 'image_url': {
        const image = part['image_url'];
        c.image(isRecord(image) ? image['detail'] : undefined);
        break;
      }
      case 'input_audio': {
        const audio = part['input_audio'];
        c.audio(isRecord(audio) ? audio['data'] : undefined);
        break;
      }
      case 'file': {
        const file = part['file'];
        if (!isRecord(file)) {
          c.opaque(file);
          break;
        }
        c.text(file['filename']);
        if (typeof file['file_data'] === 'string') c.document(file['file_data']);
        else c.fileReference();
        break;
      }
      default:
        c.opaque(part);
    }
  }
}

// OpenAI Responses ------------------------------------------------------------------------------

function walkResponses(body: Json, c: Counter): void {
  const instructions = body['instructions'];
  if (typeof instructions === 'string') {
    c.message();
    c.role('developer');
    c.text(instructions);
  }
  const input = body['input'];
  if (typeof input === 'string') {
    c.message();
    c.role('user');
    c.text(input);
  } else if (Array.isArray(input)) {
    for (const item of input) responsesItem(item, c);
  } else if (input !== undefined) {
    c.opaque(input);
  }
  if (typeof body['previous_response_id'] === 'string') c.tokens(PREVIOUS_RESPONSE_TOKENS);
  c.tokens(c.profile.replyPriming);
  c.tools(body['tools']);
  const text = body['text'];
  if (isRecord(text) && isRecord(text['format']) && text['format']['type'] === 'json_schema') c.json(text['format']);
}

function responsesItem(item: unknown, c: Counter): void {
  if (!isRecord(item)) return c.opaque(item);
  if (typeof item['role'] === 'string') {
    c.message();
    c.role(item['role']);
    return responsesContent(item['content'], c);
  }
  switch (item['type']) {
    case 'function_call':
      c.message();
      c.text(item['call_id']);
      c.text(item['name']);
      c.text(item['arguments']);
      return;
    case 'function_call_output':
      c.message();
      c.text(item['call_id']);
      return responsesContent(item['output'], c);
    case 'reasoning': {
      c.message();
      for (const field of ['summary', 'content'] as const) {
        const parts = item[field];
        if (!Array.isArray(parts)) continue;
        for (const part of parts) {
          if (isRecord(part)) c.text(part['text']);
          else c.opaque(part);
        }
      }
      c.encrypted(item['encrypted_content']);
      return;
    }
    default:
      return c.opaque(item);
  }
}

function responsesContent(content: unknown, c: Counter): void {
  if (content === undefined || content === null) return;
  if (typeof content === 'string') return c.text(content);
  if (!Array.isArray(content)) return c.opaque(content);
  for (const part of content) {
    if (!isRecord(part)) {
      c.opaque(part);
      continue;
    }
    switch (part['type']) {
      case 'input_text':
      case 'output_text':
        c.text(part['text']);
        break;
      case 'refusal':
        c.text(part['refusal']);
        break;
      case 'input_image':
        c.image(part['detail']);
        break;
      case 'input_file':
        c.text(part['filename']);
        if (typeof part['file_data'] === 'string') c.document(part['file_data']);
        else c.fileReference();
        break;
      default:
        c.opaque(part);
    }
  }
}

// Anthropic Messages ----------------------------------------------------------------------------

function walkMessages(body: Json, c: Counter): void {
  const system = body['system'];
  if (system !== undefined) {
    c.message();
    if (typeof system === 'string') c.text(system);
    else anthropicBlocks(system, c);
  }
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const message of messages) {
      if (!isRecord(message)) {
        c.opaque(message);
        continue;
      }
      c.message();
      c.role(message['role']);
      const content = message['content'];
      if (typeof content === 'string') c.text(content);
      else anthropicBlocks(content, c);
    }
  } else if (messages !== undefined) {
    c.opaque(messages);
  }
  c.tokens(c.profile.replyPriming);
  c.tools(body['tools']);
  const output = body['output_config'];
  if (isRecord(output) && isRecord(output['format'])) c.json(output['format']['schema']);
}

function anthropicBlocks(blocks: unknown, c: Counter): void {
  if (blocks === undefined || blocks === null) return;
  if (!Array.isArray(blocks)) return c.opaque(blocks);
  for (const block of blocks) {
    if (!isRecord(block)) {
      c.opaque(block);
      continue;
    }
    switch (block['type']) {
      case 'text':
        c.text(block['text']);
        if (Array.isArray(block['citations'])) {
          for (const citation of block['citations']) if (isRecord(citation)) c.text(citation['cited_text']);
        }
        break;
      case 'image':
        c.image(undefined);
        break;
      case 'document':
        anthropicDocument(block, c);
        break;
      case 'tool_use':
        c.text(block['id']);
        c.text(block['name']);
        c.json(block['input']);
        break;
      case 'tool_result': {
        c.text(block['tool_use_id']);
        const content = block['content'];
        if (typeof content === 'string') c.text(content);
        else anthropicBlocks(content, c);
        break;
      }
      case 'thinking':
        c.text(block['thinking']);
        break;
      case 'redacted_thinking':
        c.encrypted(block['data']);
        break;
      default:
        c.opaque(block);
    }
  }
}

function anthropicDocument(block: Json, c: Counter): void {
  c.text(block['title']);
  c.text(block['context']);
  const source = block['source'];
  if (!isRecord(source)) return c.opaque(source);
  switch (source['type']) {
    case 'base64':
      if (typeof source['data'] === 'string') c.document(source['data']);
      return;
    case 'text':
      return c.text(source['data']);
    case 'content': {
      const content = source['content'];
      if (typeof content === 'string') return c.text(content);
      return anthropicBlocks(content, c);
    }
    case 'url':
    case 'file':
      return c.fileReference();
    default:
      return c.opaque(source);
  }
}

// OpenAI Embeddings -----------------------------------------------------------------------------

function walkEmbeddings(body: Json, c: Counter): void {
  const input = body['input'];
  if (typeof input === 'string') return c.text(input);
  if (!Array.isArray(input)) return c.opaque(input);
  for (const item of input) {
    if (typeof item === 'string') c.text(item);
    // A token id, or an array of token ids: already tokens.
    else if (typeof item === 'number') c.tokens(1);
    else if (Array.isArray(item)) c.tokens(item.length);
    else c.opaque(item);
  }
}
