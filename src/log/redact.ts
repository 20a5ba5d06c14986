/**
 * The one place where secrets are scrubbed from anything the gateway writes out.
 *
 * Three nets, in this order, over every log line (the logger's `streamWrite` hook):
 *   1. every secret value the gateway loads is registered here (provider keys, admin token, HMAC
 *      keys) and replaced by `[REDACTED]` wherever it appears;
 *   2. the detector library (src/detect, the rules `keywarden scan` and prompt DLP use) masks any
 *      credential it recognises as `[REDACTED:<rule>]`, so a key that was never registered — one
 *      pasted into a prompt that an error echoed, one in an upstream error body — is caught too;
 *   3. key shapes the detectors leave alone on purpose (low-entropy test keys, bearer values of
 *      any form) are masked by pattern as `[REDACTED]`.
 * The detectors start with one pass of literal anchors (`sk-`, `AKIA`, `eyJ`, …) and keywords, so
 * a clean line costs a couple of native regular-expression scans.
 */
import { findSecrets } from '../detect/detector.js';
import { KEY_SHAPE_SOURCE } from '../detect/key-shape.js';

const REDACTED = '[REDACTED]';
const MIN_REGISTERED_LENGTH = 8;
const registered = new Set<string>();

// key shapes: tenant keys and admin tokens, OpenAI/Anthropic-style keys, AWS access key ids, bearer
// credentials (shared with the echo check of client-supplied names, src/detect/key-shape.ts)
const KEY_PATTERN = new RegExp(KEY_SHAPE_SOURCE, 'g');

/** Adds a secret value to the set scrubbed from every log line. Short values are ignored (too common to mask). */
export function registerSecret(value: string): void {
  if (value.length >= MIN_REGISTERED_LENGTH) registered.add(value);
}

/**
 * The line as the detectors should read it: JSON escapes turned into what they stand for, with the
 * same length (`\n` → space + newline, `\"` → space + quote, `\\` → two spaces), so offsets still
 * point into the line. Without this, a key right after an escaped newline (`…\nghp_…`) would sit
 * next to the letter `n` and miss the detectors' token boundary.
 */
function asText(line: string): string {
  if (!line.includes('\\')) return line;
  return line.replace(/\\([\s\S])/g, (pair, c: string) => {
    switch (c) {
      case 'n': return ' \n';
      case 'r': return ' \r';
      case 't': return ' \t';
      case '"': return ' "';
      case '/': return ' /';
      case '\\': case 'b': case 'f': return '  ';
      default: return pair;
    }
  });
}

/** True when `text[at]` is the character of an escape pair (an odd run of backslashes precedes it). */
function escaped(text: string, at: number, floor: number): boolean {
  let slashes = 0;
  while (at - slashes - 1 >= floor && text.charCodeAt(at - slashes - 1) === 0x5c /* \ */) slashes++;
  return slashes % 2 === 1;
}

/**
 * Masks what the detector library finds. Lines are JSON: a replaced span never starts or ends in
 * the middle of an escape pair, so the placeholder never forms an invalid escape such as `\[` and
 * never strands a backslash before the string's closing quote.
 */
function maskDetected(text: string): string {
  const findings = findSecrets(asText(text));
  if (findings.length === 0) return text;
  let out = '';
  let pos = 0;
  for (const f of findings) {
    if (f.start < pos) continue;
    const start = escaped(text, f.start, pos) ? f.start - 1 : f.start;
    const end = f.end < text.length && escaped(text, f.end, start) ? f.end + 1 : f.end;
    out += `${text.slice(pos, start)}[REDACTED:${f.ruleId}]`;
    pos = end;
  }
  return out + text.slice(pos);
}

/**
 * Returns the text with registered secrets, detected credentials and key-shaped strings replaced
 * by `[REDACTED]` or `[REDACTED:<rule>]`.
 *
 * @example scrubSecrets('{"msg":"upstream said sk-proj-…"}') // '{"msg":"upstream said [REDACTED:openai-project-key]"}'
 */
export function scrubSecrets(text: string): string {
  let out = text;
  for (const secret of registered) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  out = maskDetected(out);
  KEY_PATTERN.lastIndex = 0;
  return KEY_PATTERN.test(out) ? out.replace(KEY_PATTERN, REDACTED) : out;
}
