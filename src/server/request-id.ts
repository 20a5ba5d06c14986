import { randomUUID } from 'node:crypto';
import { looksLikeKnownKey } from '../detect/key-shape.js';

const WELL_FORMED = /^[A-Za-z0-9._:-]{8,128}$/;

/**
 * Keeps a client's `x-request-id` when it is well formed (so traces join up), otherwise makes
 * one. A malformed id is replaced, never echoed, since it could carry injection text into logs;
 * so is one in a known key or token format (a client that sends its own key as the id would
 * otherwise have it stored in the ledger and the hash-chained audit rows, which cannot be
 * scrubbed). Random-looking ids (trace ids) are kept: they are what request ids look like.
 */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && WELL_FORMED.test(header) && !looksLikeKnownKey(header) ? header : randomUUID();
}
