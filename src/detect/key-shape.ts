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
  return KEY_SHAPE.test(text) || hasSecret(text);
}
