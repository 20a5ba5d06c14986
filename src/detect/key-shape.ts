/**
 * The cheapest "could this be a credential?" check: key shapes by pattern, then the detector rules.
 *
 * The pattern covers the shapes the detectors leave alone on purpose (low-entropy test keys such
 * as `sk-fake-…`, any `kw_…_…` tenant key or admin token, AWS access key ids, bearer values); the
 * detector rules cover every other vendor format they know (`ghp_…`, `xoxb-…`, …). The log
 * redactor masks the same pattern (src/log/redact.ts), so what a log line would hide is never
 * echoed to a client either.
 */
import { hasSecret } from './detector.js';

/**
 * Source of the key-shape pattern: tenant keys and admin tokens, OpenAI/Anthropic-style keys,
 * AWS access key ids, bearer credentials. Compile it with the flags the caller needs.
 */
export const KEY_SHAPE_SOURCE =
  String.raw`kwa?_[A-Za-z0-9]{4,32}_[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{12,}|AKIA[0-9A-Z]{16}|(?<=Bearer\s+)[^\s"',]{8,}`;

const KEY_SHAPE = new RegExp(KEY_SHAPE_SOURCE);

/**
 * True when the text holds something shaped like a key or token. Meant for short client-supplied
 * names (field names, tenant names) before they are echoed in an error: a clean name costs one
 * pattern test and the detectors' literal-anchor scan.
 *
 * @example looksLikeKey('temperature') // false
 * @example looksLikeKey('sk-FAKE-TEST-ONLY-0123456789') // true
 */
export function looksLikeKey(text: string): boolean {
  return looksLikeKnownKey(text) || hasRandomRun(text);
}

/**
 * The narrower check: a known key or token format only (prefixes, vendor rules), without the
 * random-run heuristic. For values that are often random by design, such as request and trace
 * ids (32 hex characters is a common trace id), where a placeholder would break correlation.
 */
export function looksLikeKnownKey(text: string): boolean {
  return KEY_SHAPE.test(text) || hasSecret(text);
}

const ALNUM_RUN = /[A-Za-z0-9]{20,}/g;

/**
 * A run of 20 or more letters and digits holding both: what random key material looks like
 * when no vendor prefix gives it away (32 hex characters of an Azure key, a Mistral-style key,
 * the body of `hf_…` or `glpat-…`). Field and model names are words and short numbers between
 * separators (`claude-3-5-haiku-20241022`), so they do not match.
 */
function hasRandomRun(text: string): boolean {
  for (const run of text.match(ALNUM_RUN) ?? []) {
    if (/\d/.test(run) && /[A-Za-z]/.test(run)) return true;
  }
  return false;
}
