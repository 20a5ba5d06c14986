import { createHmac, hash } from 'node:crypto';
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
  // one-shot: the same bytes (previous hash, newline, canonical JSON) as a Hash object's updates, at less cost per row
  return hash('sha256', `${prevHash}\n${canonical}`, 'hex');
}

/**
 * The signature of a retention checkpoint: HMAC-SHA256 over its fields under the checkpoint key
 * (`audit.checkpoint_key`, or the store's `audit-checkpoint` instance secret). A checkpoint
 * whose signature does not verify is not trusted as the start of the chain.
 *
 * @example checkpointSignature(key, { upToSeq: 120, upToHash, removedCount: 120, createdAt }) // 'hmac-sha256:…'
 */
export function checkpointSignature(key: Buffer, c: { upToSeq: number; upToHash: string; removedCount: number; createdAt: number }): string {
  const text = `keywarden-audit-checkpoint:1\n${c.upToSeq}\n${c.upToHash}\n${c.removedCount}\n${c.createdAt}`;
  return `hmac-sha256:${createHmac('sha256', key).update(text).digest('hex')}`;
}
