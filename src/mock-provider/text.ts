/**
 * Deterministic reply text and token accounting for the mock provider.
 *
 * Token rules (the tests of the gateway's quota settlement depend on them):
 * - input tokens = ceil(total characters of all text in the request / 4) + 3 per message.
 *   "Text" is every string content, and every `text` field of a content part, in chat
 *   `messages`, Responses `input` and `instructions`, and Anthropic `messages` and `system`.
 *   "Messages" are the entries of `messages` / `input` (a string `input` is one message), and a
 *   present `system` or `instructions` counts as one more.
 * - embeddings: ceil(characters / 4) per string input (a token-array input counts its length),
 *   summed, with no per-message overhead.
 * - output tokens = number of reply words (one word = one token).
 */
import { collectDirectives, DIRECTIVE_MARKER } from './faults.js';

/** The reply vocabulary; replies never contain request text. */
const WORDS = [
  'This', 'is', 'a', 'deterministic', 'mock', 'reply', 'from', 'keywarden', 'made', 'of',
  'fixed', 'words', 'so', 'that', 'tests', 'can', 'count', 'every', 'token', 'exactly',
] as const;
const SPACED = WORDS.map((w) => ' ' + w);

/** Default number of output words when no `tokens=` directive is given. */
export const DEFAULT_OUTPUT_TOKENS = 12;

/** The i-th streamed piece of the reply (0-based); pieces concatenate to `replyText(n)`. */
export function replyPiece(i: number): string {
  return i === 0 ? WORDS[0] : (SPACED[i % SPACED.length] as string);
}

const textCache = new Map<number, string>();

/** The whole reply of `n` words. */
export function replyText(n: number): string {
  let text = textCache.get(n);
  if (text === undefined) {
    text = '';
    for (let i = 0; i < n; i++) text += replyPiece(i);
    if (n <= 4096) textCache.set(n, text);
  }
  return text;
}

/** What one pass over the request text found. */
export interface TextScan {
  chars: number;
  messages: number;
  /** `[[mock:...]]` specs found, or undefined when none (the common case). */
  directives: string[] | undefined;
}

export function newScan(): TextScan {
  return { chars: 0, messages: 0, directives: undefined };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Adds one string: counts it and, only when the cheap marker test hits, reads directives. */
export function scanString(scan: TextScan, text: string): void {
  scan.chars += text.length;
  if (text.includes(DIRECTIVE_MARKER)) collectDirectives(text, (scan.directives ??= []));
}

/**
 * Adds a message content: a string, or an array of parts (strings, `{text}` parts, or parts
 * with nested `content`, such as Anthropic tool results). Depth is bounded.
 */
export function scanContent(scan: TextScan, content: unknown, depth = 0): void {
  if (typeof content === 'string') {
    scanString(scan, content);
    return;
  }
  if (!Array.isArray(content) || depth > 3) return;
  for (const part of content) {
    if (typeof part === 'string') scanString(scan, part);
    else if (isRecord(part)) {
      if (typeof part['text'] === 'string') scanString(scan, part['text']);
      else if (part['content'] !== undefined) scanContent(scan, part['content'], depth + 1);
      else if (typeof part['output'] === 'string') scanString(scan, part['output']);
    }
  }
}

/** Adds a list of messages (`messages`, or an `input` array): 3 tokens each plus their text. */
export function scanMessages(scan: TextScan, messages: unknown): void {
  if (typeof messages === 'string') {
    scan.messages++;
    scanString(scan, messages);
    return;
  }
  if (!Array.isArray(messages)) return;
  for (const message of messages) {
    scan.messages++;
    if (typeof message === 'string') scanString(scan, message);
    else if (isRecord(message)) {
      if (message['content'] !== undefined) scanContent(scan, message['content']);
      else if (typeof message['text'] === 'string') scanString(scan, message['text']);
      else if (typeof message['output'] === 'string') scanString(scan, message['output']);
    }
  }
}

/** Adds a `system` / `instructions` field (string or parts), counted as one message when present. */
export function scanSystem(scan: TextScan, system: unknown): void {
  if (system === undefined || system === null) return;
  scan.messages++;
  scanContent(scan, system);
}

/** ceil(chars / 4) + 3 per message. */
export function inputTokens(scan: TextScan): number {
  return Math.ceil(scan.chars / 4) + 3 * scan.messages;
}

/** The reply length: the directive's word count (default 12), capped by the request's limit. */
export interface ReplyPlan {
  words: number;
  /** True when the request's output cap cut the reply short. */
  capped: boolean;
}

export function planReply(tokens: number | undefined, cap: unknown): ReplyPlan {
  const wanted = tokens ?? DEFAULT_OUTPUT_TOKENS;
  if (typeof cap === 'number' && Number.isInteger(cap) && cap >= 0 && cap < wanted) {
    return { words: cap, capped: true };
  }
  return { words: wanted, capped: false };
}
