import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { AuditCheckpoint, AuditEvent, AuditTrailRepository, Store } from '../store/types.js';
import { AUDIT_GENESIS, chainHash, checkpointSignature } from '../store/audit-chain.js';

/*
 * The audit trail's maintenance side: identifier HMACs under the store's salt, chain
 * verification from the newest signed checkpoint, and the retention job. Nothing here reads
 * or writes content.
 */

/** The instance-secret names kept in the store (meta table). */
export const AUDIT_SALT_SECRET = 'audit-salt';
export const AUDIT_CHECKPOINT_SECRET = 'audit-checkpoint';

/** The canonical text of an address: IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as plain IPv4, IPv6 lower-case. */
export function normaliseAddress(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1] as string;
  return isIP(address) === 6 ? address.toLowerCase() : address;
}

/**
 * HMAC-SHA256 of sensitive identifiers (client addresses, key ids when configured) under the
 * audit store's random salt, as a managed vault's audit device does: rows can be searched for a
 * known value (`keywarden audit hash VALUE`) but do not reveal it. The key is prepared once.
 *
 * @example createIdentifierHasher(salt)('127.0.0.1') // 'hmac-sha256:…'
 */
export function createIdentifierHasher(salt: Buffer): (value: string) => string {
  const key: KeyObject = createSecretKey(salt);
  return (value) => `hmac-sha256:${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
}

/**
 * The identifier HMAC of a client address (normalised first), remembered for the most recent
 * `max` addresses: every request hashes its caller's address for the audit row and anomaly
 * detection, and most traffic comes from few addresses.
 */
export function createAddressHasher(hashIdentifier: (value: string) => string, max = 4_096): (address: string) => string {
  const seen = new Map<string, string>();
  return (address) => {
    let hashed = seen.get(address);
    if (hashed === undefined) {
      hashed = hashIdentifier(normaliseAddress(address));
      if (seen.size >= max) seen.delete(seen.keys().next().value as string);
      seen.set(address, hashed);
    }
    return hashed;
  };
}

/** The key that signs retention checkpoints: `audit.checkpoint_key` when configured, else the store's own secret. */
export async function loadCheckpointKey(store: Pick<Store, 'instanceSecret'>, resolveConfigured: (() => Promise<string>) | undefined): Promise<Buffer> {
  if (resolveConfigured) return Buffer.from(await resolveConfigured(), 'utf8');
  return store.instanceSecret(AUDIT_CHECKPOINT_SECRET);
}

export type ChainProblem = 'altered' | 'removed' | 'reordered' | 'checkpoint_invalid';

export type VerifyResult =
  | { ok: true; rows: number; firstSeq: number | null; lastSeq: number | null; headHash: string; checkpoint: AuditCheckpoint | null }
  | { ok: false; seq: number; problem: ChainProblem; message: string; rowsChecked: number; checkpoint: AuditCheckpoint | null };

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Walks the audit chain from the newest retention checkpoint (whose signature must verify
 * under `checkpointKey`) or from the genesis, and names the first row that is wrong:
 * `removed` (a gap in seq), `reordered` (a row whose prev_hash does not link to the row before
 * it: rows were swapped, or the row before was removed or rewritten with a new hash) or
 * `altered` (a row whose own hash does not match its content).
 *
 * Truncating the newest rows cannot be seen from the chain alone: compare the head hash with
 * one exported earlier (`audit verify --json` prints it).
 */
export async function verifyAuditChain(trail: Pick<AuditTrailRepository, 'scan' | 'latestCheckpoint'>, checkpointKey: Buffer, pageSize = 1000): Promise<VerifyResult> {
  const checkpoint = (await trail.latestCheckpoint()) ?? null;
  if (checkpoint) {
    const expected = checkpointSignature(checkpointKey, checkpoint);
    if (!sameText(expected, checkpoint.signature)) {
      return {
        ok: false, seq: checkpoint.upToSeq, problem: 'checkpoint_invalid', rowsChecked: 0, checkpoint,
        message: `the retention checkpoint up to seq ${checkpoint.upToSeq} has an invalid signature (forged, altered, or signed with another checkpoint key)`,
      };
    }
  }
  let prev = checkpoint ? checkpoint.upToHash : AUDIT_GENESIS;
  let expectedSeq = checkpoint ? checkpoint.upToSeq + 1 : 1;
  let rows = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  const fail = (seq: number, problem: ChainProblem, message: string): VerifyResult => ({ ok: false, seq, problem, message, rowsChecked: rows, checkpoint });
  let after = expectedSeq - 1;
  for (;;) {
    const page = await trail.scan(after, pageSize);
    if (page.length === 0) break;
    for (const row of page) {
      if (row.seq !== expectedSeq) {
        return fail(expectedSeq, 'removed', row.seq > expectedSeq
          ? `row ${expectedSeq}${row.seq - 1 > expectedSeq ? `…${row.seq - 1}` : ''} is missing (removed)`
          : `row ${row.seq} is out of sequence`);
      }
      let details: AuditEvent['details'];
      try {
        details = JSON.parse(row.details) as AuditEvent['details'];
        if (typeof details !== 'object' || details === null || Array.isArray(details)) throw new Error('not an object');
      } catch {
        return fail(row.seq, 'altered', `row ${row.seq} has details that are not the JSON object it was written with (altered)`);
      }
      const event: AuditEvent = {
        ts: row.ts, actor: row.actor, action: row.action, target: row.target, outcome: row.outcome as AuditEvent['outcome'],
        requestId: row.requestId, details,
      };
      if (row.prevHash !== prev) {
        return fail(row.seq, 'reordered', `row ${row.seq} does not link to the row before it (rows were reordered, or a row before it was removed or rewritten)`);
      }
      if (!sameText(chainHash(row.prevHash, row.seq, event), row.hash)) {
        return fail(row.seq, 'altered', `row ${row.seq} does not match its hash (altered)`);
      }
      prev = row.hash;
      firstSeq ??= row.seq;
      lastSeq = row.seq;
      expectedSeq += 1;
      rows += 1;
    }
    after = (page[page.length - 1] as { seq: number }).seq;
  }
  return { ok: true, rows, firstSeq, lastSeq, headHash: prev, checkpoint };
}

/**
 * The retention job's audit half: removes the chain's rows older than `before` (a prefix) and
 * writes a signed checkpoint of what was removed, with an `audit.prune` row, in one transaction.
 */
export async function pruneAuditTrail(options: { trail: AuditTrailRepository; checkpointKey: Buffer; before: number; now?: number; actor: string }): Promise<AuditCheckpoint | undefined> {
  const now = options.now ?? Date.now();
  return options.trail.prune(options.before, now, (c) => checkpointSignature(options.checkpointKey, c), (c) => ({
    ts: now, actor: options.actor, action: 'audit.prune', target: null, outcome: 'success', requestId: null,
    details: { up_to_seq: c.upToSeq, removed: c.removedCount, before: new Date(options.before).toISOString(), checkpoint_id: c.id },
  }));
}

export interface AuditMaintenanceOptions {
  trail: AuditTrailRepository;
  checkpointKey: Buffer;
  /** Audit rows older than this are pruned; undefined keeps them forever. */
  retentionMs: number | undefined;
  actor: string;
}

/** One run of the daily job: prune past retention (when configured) and delete expired content samples. */
export async function runAuditMaintenance(options: AuditMaintenanceOptions, now = Date.now()): Promise<{ checkpoint: AuditCheckpoint | undefined; samplesDeleted: number }> {
  const checkpoint = options.retentionMs === undefined
    ? undefined
    : await pruneAuditTrail({ trail: options.trail, checkpointKey: options.checkpointKey, before: now - options.retentionMs, now, actor: options.actor });
  const samplesDeleted = await options.trail.deleteExpiredSamples(now);
  return { checkpoint, samplesDeleted };
}

/**
 * Runs `runAuditMaintenance` shortly after start and then every `intervalMs` (a day) on an
 * unref'd timer, so it never keeps the process alive. Failures are reported, never thrown.
 */
export function startAuditMaintenance(options: AuditMaintenanceOptions & {
  intervalMs?: number;
  onRun?: (result: { checkpoint: AuditCheckpoint | undefined; samplesDeleted: number }) => void;
  onError?: (err: unknown) => void;
}): { stop(): Promise<void>; runNow(): Promise<void> } {
  const intervalMs = options.intervalMs ?? 86_400_000;
  let running: Promise<void> | undefined;
  const runNow = (): Promise<void> => {
    running ??= runAuditMaintenance(options).then((r) => options.onRun?.(r), (err: unknown) => options.onError?.(err)).finally(() => {
      running = undefined;
    });
    return running;
  };
  const first = setTimeout(() => void runNow(), 1000);
  first.unref();
  const timer = setInterval(() => void runNow(), intervalMs);
  timer.unref();
  return {
    /** Stops the timers and waits for a run in progress (so the store can close after it). */
    async stop() {
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
    runNow,
  };
}
