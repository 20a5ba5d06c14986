import { randomUUID } from 'node:crypto';

const WELL_FORMED = /^[A-Za-z0-9._:-]{8,128}$/;

/**
 * Keeps a client's `x-request-id` when it is well formed (so traces join up), otherwise makes
 * one. A malformed id is replaced, never echoed, since it could carry injection text into logs.
 */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && WELL_FORMED.test(header) ? header : randomUUID();
}
