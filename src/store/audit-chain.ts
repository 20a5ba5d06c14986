import { createHash } from 'node:crypto';
import type { AuditEvent } from './types.js';

/** The hash of the (empty) chain before the first row. */
export const AUDIT_GENESIS = '0'.repeat(64);

/**
 * Hash of one audit row: SHA-256 over the previous row's hash and a canonical JSON of the event.
 * Altering, removing or reordering a row breaks every hash after it.
 */
export function chainHash(prevHash: string, seq: number, event: AuditEvent): string {
  const canonical = JSON.stringify([
    seq, event.ts, event.actor, event.action, event.target, event.outcome, event.requestId,
    Object.keys(event.details).sort().map((k) => [k, event.details[k]]),
  ]);
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}
