import type { AuditEvent, RecordRepository, UsageRecord } from '../store/types.js';
import type { Logger } from '../log/logger.js';

export interface RecordWriterOptions {
  records: RecordRepository;
  logger: Logger;
  /** Flush at least this often. */
  flushIntervalMs?: number;
  /** Flush as soon as this many rows wait. */
  maxBatch?: number;
}

export interface RecordWriter {
  /** Queues one request's usage row and audit event; never blocks the request. */
  record(usage: UsageRecord, audit: AuditEvent): void;
  /** Queues an audit event without a usage row. */
  audit(event: AuditEvent): void;
  /** Writes everything queued so far. */
  flush(): Promise<void>;
  /** Flushes and stops the timer; later records are still written by an explicit flush. */
  close(): Promise<void>;
  pending(): number;
}

/**
 * Batches usage and audit rows off the request's critical path: rows are queued in memory and
 * written in one transaction every `flushIntervalMs` or every `maxBatch` rows. A clean shutdown
 * calls `close()`, which writes what is left. A failed write keeps the rows and retries.
 */
export function createRecordWriter(options: RecordWriterOptions): RecordWriter {
  const { records, logger } = options;
  const flushIntervalMs = options.flushIntervalMs ?? 200;
  const maxBatch = options.maxBatch ?? 512;
  let usage: UsageRecord[] = [];
  let audits: AuditEvent[] = [];
  let writing: Promise<void> | undefined;
  let failures = 0;

  async function writeOnce(): Promise<void> {
    if (usage.length === 0 && audits.length === 0) return;
    const u = usage;
    const a = audits;
    usage = [];
    audits = [];
    try {
      await records.append(u, a);
      failures = 0;
    } catch (err) {
      // keep the rows (ahead of newer ones) and try again on the next tick
      usage = u.concat(usage);
      audits = a.concat(audits);
      failures += 1;
      if (failures === 1 || failures % 50 === 0) logger.error({ err, pending: usage.length + audits.length }, 'record write failed; will retry');
      throw err;
    }
  }

  function flush(): Promise<void> {
    // one write at a time keeps the audit chain in order
    const next = (writing ?? Promise.resolve()).then(writeOnce, writeOnce);
    writing = next.catch(() => undefined);
    return next;
  }

  const timer = setInterval(() => {
    flush().catch(() => undefined);
  }, flushIntervalMs);
  timer.unref();

  function maybeFlush(): void {
    if (usage.length + audits.length >= maxBatch) flush().catch(() => undefined);
  }

  return {
    record(row, event) {
      usage.push(row);
      audits.push(event);
      maybeFlush();
    },
    audit(event) {
      audits.push(event);
      maybeFlush();
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
    pending: () => usage.length + audits.length,
  };
}
