import { createHmac } from 'node:crypto';
import type { Endpoint } from '../providers/types.js';

/** JSON with object keys sorted at every depth, so equal content gives equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
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
  return (endpoint, body) => {
    const hmac = createHmac('sha256', key);
    for (const field of PROMPT_FIELDS[endpoint]) {
      hmac.update(field).update('\0').update(canonicalJson(body[field] ?? null)).update('\0');
    }
    return `hmac-sha256:${hmac.digest('hex')}`;
  };
}
