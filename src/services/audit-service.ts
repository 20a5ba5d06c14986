import { setImmediate as nextTurn } from 'node:timers/promises';
import { verifyAuditChain, type VerifyResult } from '../audit/trail.js';
import type { AuditRow, AuditTrailRepository } from '../store/types.js';

/*
 * The audit chain's read side as one service for `keywarden audit verify|export` and for
 * `GET /admin/audit/verify|export`, so the CLI on the host and the admin API give the same
 * answer and the same bytes. Nothing here reads or prints content: rows hold ids, counts and
 * HMACs, and verification reports sequence numbers and reasons only.
 */

export type AuditExportFormat = 'jsonl' | 'csv';

/** Rows read from the store per page, by verification and export alike. */
export const AUDIT_PAGE_ROWS = 500;

export interface AuditCheckpointView {
  id: number;
  up_to_seq: number;
  removed: number;
  created_at: string;
}

/** The result of a chain verification as `audit verify --json` prints it and the admin API sends it. */
export type AuditVerifyView =
  | { ok: true; rows: number; first_seq: number | null; last_seq: number | null; head_hash: string; checkpoint: AuditCheckpointView | null }
  | { ok: false; seq: number; problem: string; message: string; rows_checked: number; checkpoint: AuditCheckpointView | null };

/** `verifyAuditChain`'s result in the wire shape (snake_case, ISO times). */
export function verifyView(result: VerifyResult): AuditVerifyView {
  const checkpoint = result.checkpoint
    ? { id: result.checkpoint.id, up_to_seq: result.checkpoint.upToSeq, removed: result.checkpoint.removedCount, created_at: new Date(result.checkpoint.createdAt).toISOString() }
    : null;
  return result.ok
    ? { ok: true, rows: result.rows, first_seq: result.firstSeq, last_seq: result.lastSeq, head_hash: result.headHash, checkpoint }
    : { ok: false, seq: result.seq, problem: result.problem, message: result.message, rows_checked: result.rowsChecked, checkpoint };
}

/** One CSV cell: quoted when needed, and a leading = + - @ neutralised so a spreadsheet never runs it as a formula. */
function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export const AUDIT_CSV_COLUMNS = ['seq', 'time', 'actor', 'action', 'target', 'outcome', 'request_id', 'details', 'prev_hash', 'hash'] as const;

/** One exported row, newline-terminated: a JSON object (jsonl) or a CSV record. */
export function exportLine(row: AuditRow, format: AuditExportFormat): string {
  const time = new Date(row.ts).toISOString();
  if (format === 'jsonl') {
    return `${JSON.stringify({
      seq: row.seq, time, ts: row.ts, actor: row.actor, action: row.action, target: row.target, outcome: row.outcome,
      request_id: row.requestId, details: row.details, prev_hash: row.prevHash, hash: row.hash,
    })}\n`;
  }
  return `${[row.seq, time, row.actor, row.action, row.target, row.outcome, row.requestId, JSON.stringify(row.details), row.prevHash, row.hash].map(csvCell).join(',')}\n`;
}

export interface AuditExportQuery {
  /** Rows with since ≤ ts < until. */
  since: number;
  until: number;
  format: AuditExportFormat;
}

export interface AuditService {
  /**
   * Walks the chain from the newest signed checkpoint, page by page, yielding to the event loop
   * between pages; once `signal` aborts (the caller went away) it rejects before the next page.
   */
  verify(signal?: AbortSignal): Promise<AuditVerifyView>;
  /**
   * The export as text chunks (the CSV header, then one chunk per page of rows), read from the
   * store a page at a time so memory stays bounded; stops at the next page once `signal` aborts.
   */
  export(query: AuditExportQuery, signal?: AbortSignal): AsyncGenerator<string, void, undefined>;
}

/**
 * The audit chain's verification and export over a trail. The store may answer synchronously
 * (SQLite), so each page is read after a turn of the event loop: a long walk over a large trail
 * never holds the admin listener (or the gateway sharing its process) for more than one page.
 *
 * @example createAuditService({ trail: store.auditTrail, checkpointKey }).verify() // { ok: true, rows: 1200, … }
 */
export function createAuditService(options: { trail: AuditTrailRepository; checkpointKey: Buffer | (() => Promise<Buffer>); pageRows?: number }): AuditService {
  const { trail } = options;
  const pageRows = options.pageRows ?? AUDIT_PAGE_ROWS;
  const key = async () => (typeof options.checkpointKey === 'function' ? options.checkpointKey() : options.checkpointKey);
  return {
    async verify(signal) {
      const paced = {
        latestCheckpoint: () => trail.latestCheckpoint(),
        scan: async (afterSeq: number, limit: number) => {
          await nextTurn();
          signal?.throwIfAborted();
          return trail.scan(afterSeq, limit);
        },
      };
      return verifyView(await verifyAuditChain(paced, await key(), pageRows));
    },
    export: (query, signal) => exportAuditTrail(trail, query, { pageRows, ...(signal ? { signal } : {}) }),
  };
}

/**
 * The export of rows `since ≤ ts < until` as text chunks: the CSV header, then one chunk per
 * page of rows (each row newline-terminated), read a page at a time after a turn of the event
 * loop. Stops before the next page once `signal` aborts (the client went away).
 *
 * @example for await (const text of exportAuditTrail(store.auditTrail, { since: 0, until: Date.now(), format: 'jsonl' })) out.write(text);
 */
export async function* exportAuditTrail(
  trail: Pick<AuditTrailRepository, 'range'>, query: AuditExportQuery, options: { pageRows?: number; signal?: AbortSignal } = {},
): AsyncGenerator<string, void, undefined> {
  const pageRows = options.pageRows ?? AUDIT_PAGE_ROWS;
  if (query.format === 'csv') yield `${AUDIT_CSV_COLUMNS.join(',')}\n`;
  let after = 0;
  for (;;) {
    await nextTurn();
    if (options.signal?.aborted) return;
    const page = await trail.range({ since: query.since, until: query.until, afterSeq: after, limit: pageRows });
    if (page.length === 0) return;
    yield page.map((row) => exportLine(row, query.format)).join('');
    after = (page[page.length - 1] as AuditRow).seq;
  }
}
