import { createHmac, createSecretKey } from 'node:crypto';
import type { Endpoint } from '../providers/types.js';

/** JSON with object keys sorted at every depth, so equal content gives equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return out + ']';
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  out = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonicalJson(v);
    first = false;
  }
  return out + '}';
}

/** The fields of each endpoint's body that make up "the prompt". */
const PROMPT_FIELDS: Record<Endpoint, readonly string[]> = {
  chat: ['messages'],
  responses: ['instructions', 'input'],
  embeddings: ['input'],
  messages: ['system', 'messages'],
};

/**
 * HMAC-SHA256 of a canonical form of the request's input under the audit key: repeated
 * prompts correlate across the ledger without the ledger revealing them.
 *
 * @example createPromptFingerprinter(key)('chat', { messages: [...] }) // 'hmac-sha256:…'
 */
export function createPromptFingerprinter(key: Buffer | string): (endpoint: Endpoint, body: Record<string, unknown>) => string {
  const keyObject = createSecretKey(typeof key === 'string' ? Buffer.from(key, 'utf8') : key);
  return (endpoint, body) => {
    const hmac = createHmac('sha256', keyObject);
    for (const field of PROMPT_FIELDS[endpoint]) {
      hmac.update(field).update('\0').update(canonicalJson(body[field] ?? null)).update('\0');
    }
    return `hmac-sha256:${hmac.digest('hex')}`;
  };
}
