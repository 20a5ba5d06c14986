import { createWriteStream } from 'node:fs';
import { isIP } from 'node:net';
import type { Writable } from 'node:stream';
import type { GatewayConfig } from '../../config/types.js';
import { parseDuration } from '../../config/duration.js';
import { openStore } from '../../main.js';
import type { AuditRow, Store } from '../../store/types.js';
import {
  AUDIT_SALT_SECRET, createIdentifierHasher, loadCheckpointKey, normaliseAddress, pruneAuditTrail, verifyAuditChain,
} from '../../audit/trail.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../output.js';

export interface AuditFlags {
  json: boolean;
  since?: string;
  until?: string;
  before?: string;
  format?: string;
  out?: string;
}

const USAGE = 'usage: keywarden audit verify [--json] | hash VALUE | prune [--before DATE] [--json] | export --since DATE [--until DATE] --format jsonl|csv [--out FILE]';
const out = (line: string) => process.stdout.write(`${line}\n`);

async function withStore<T>(config: GatewayConfig, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function checkpointKey(config: GatewayConfig, store: Store): Promise<Buffer> {
  const ref = config.audit.checkpointKey;
  if (ref === undefined) return loadCheckpointKey(store, undefined);
  const { createConfiguredResolver } = await import('../../secrets/from-config.js');
  const resolver = await createConfiguredResolver(config.secrets);
  return loadCheckpointKey(store, async () => (await resolver.resolve(ref)).value);
}

/**
 * A point in time: an ISO date (`2025-01-31`, UTC midnight) or date-time, or a duration back
 * from now (`7d`, `12h`).
 */
export function parseWhen(text: string, flag: string, now = Date.now()): number {
  const ago = parseDuration(text);
  if (ago !== undefined) return now - ago;
  if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    const ms = Date.parse(text.trim());
    if (Number.isFinite(ms)) return ms;
  }
  throw new CliError(`${flag} must be a date (2025-01-31, 2025-01-31T12:00:00Z) or a duration back from now (7d)`, EXIT_USAGE);
}

/** One CSV cell: quoted when needed, and a leading = + - @ neutralised so a spreadsheet never runs it as a formula. */
function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

const CSV_COLUMNS = ['seq', 'time', 'actor', 'action', 'target', 'outcome', 'request_id', 'details', 'prev_hash', 'hash'] as const;

function exportLine(row: AuditRow, format: 'jsonl' | 'csv'): string {
  const time = new Date(row.ts).toISOString();
  if (format === 'jsonl') {
    return `${JSON.stringify({
      seq: row.seq, time, ts: row.ts, actor: row.actor, action: row.action, target: row.target, outcome: row.outcome,
      request_id: row.requestId, details: row.details, prev_hash: row.prevHash, hash: row.hash,
    })}\n`;
  }
  return `${[row.seq, time, row.actor, row.action, row.target, row.outcome, row.requestId, JSON.stringify(row.details), row.prevHash, row.hash].map(csvCell).join(',')}\n`;
}

async function write(stream: Writable, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise<void>((resolve, reject) => {
    stream.once('drain', resolve);
    stream.once('error', reject);
  });
}

/** `keywarden audit verify|hash|prune|export`: the audit chain's checks and maintenance. Never prints content. */
export async function auditCommand(config: GatewayConfig, action: string | undefined, args: readonly string[], flags: AuditFlags): Promise<number> {
  switch (action) {
    case 'verify':
      return withStore(config, async (store) => {
        const result = await verifyAuditChain(store.auditTrail, await checkpointKey(config, store));
        const checkpoint = result.checkpoint
          ? { id: result.checkpoint.id, up_to_seq: result.checkpoint.upToSeq, removed: result.checkpoint.removedCount, created_at: new Date(result.checkpoint.createdAt).toISOString() }
          : null;
        if (result.ok) {
          if (flags.json) out(JSON.stringify({ ok: true, rows: result.rows, first_seq: result.firstSeq, last_seq: result.lastSeq, head_hash: result.headHash, checkpoint }));
          else {
            out(`audit chain intact: ${result.rows} rows${result.firstSeq === null ? '' : ` (seq ${result.firstSeq}…${result.lastSeq})`}, head ${result.headHash}`);
            if (checkpoint) out(`verified from the signed checkpoint of rows 1…${checkpoint.up_to_seq} (pruned ${checkpoint.created_at})`);
          }
          return EXIT_OK;
        }
        if (flags.json) out(JSON.stringify({ ok: false, seq: result.seq, problem: result.problem, message: result.message, rows_checked: result.rowsChecked, checkpoint }));
        else process.stderr.write(`keywarden: audit chain broken at seq ${result.seq}: ${result.problem}: ${result.message}\n`);
        return EXIT_FAILURE;
      });
    case 'hash': {
      const value = args[0];
      if (value === undefined || value === '' || args.length > 1) throw new CliError('usage: keywarden audit hash VALUE', EXIT_USAGE);
      return withStore(config, async (store) => {
        const hash = createIdentifierHasher(await store.instanceSecret(AUDIT_SALT_SECRET));
        // addresses are stored in canonical form (IPv4-mapped IPv6 as IPv4), so the same value is found either way
        out(hash(isIP(value) !== 0 ? normaliseAddress(value) : value));
        return EXIT_OK;
      });
    }
    case 'prune': {
      const now = Date.now();
      let before: number;
      if (flags.before !== undefined) before = parseWhen(flags.before, '--before', now);
      else if (config.audit.retentionMs !== undefined) before = now - config.audit.retentionMs;
      else throw new CliError('audit prune needs --before DATE, or audit.retention in the configuration', EXIT_USAGE);
      return withStore(config, async (store) => {
        const checkpoint = await pruneAuditTrail({ trail: store.auditTrail, checkpointKey: await checkpointKey(config, store), before, now, actor: 'cli' });
        const samplesDeleted = await store.auditTrail.deleteExpiredSamples(now);
        if (flags.json) {
          out(JSON.stringify({
            before: new Date(before).toISOString(), removed: checkpoint?.removedCount ?? 0, up_to_seq: checkpoint?.upToSeq ?? null,
            checkpoint_id: checkpoint?.id ?? null, samples_deleted: samplesDeleted,
          }));
        } else if (checkpoint) {
          out(`pruned ${checkpoint.removedCount} audit rows up to seq ${checkpoint.upToSeq} (before ${new Date(before).toISOString()}); signed checkpoint ${checkpoint.id} written`);
        } else out(`no audit rows before ${new Date(before).toISOString()}`);
        if (!flags.json && samplesDeleted > 0) out(`deleted ${samplesDeleted} expired content samples`);
        return EXIT_OK;
      });
    }
    case 'export': {
      if (flags.since === undefined) throw new CliError('audit export needs --since DATE', EXIT_USAGE);
      const format = flags.format ?? 'jsonl';
      if (format !== 'jsonl' && format !== 'csv') throw new CliError('--format must be jsonl or csv', EXIT_USAGE);
      const now = Date.now();
      const since = parseWhen(flags.since, '--since', now);
      const until = flags.until === undefined ? Number.MAX_SAFE_INTEGER : parseWhen(flags.until, '--until', now);
      return withStore(config, async (store) => {
        const stream: Writable = flags.out === undefined ? process.stdout : createWriteStream(flags.out, { mode: 0o600 });
        try {
          if (format === 'csv') await write(stream, `${CSV_COLUMNS.join(',')}\n`);
          let after = 0;
          let count = 0;
          for (;;) {
            const page = await store.auditTrail.range({ since, until, afterSeq: after, limit: 1000 });
            if (page.length === 0) break;
            for (const row of page) await write(stream, exportLine(row, format));
            count += page.length;
            after = (page[page.length - 1] as AuditRow).seq;
          }
          if (flags.out !== undefined) process.stderr.write(`exported ${count} audit rows to ${flags.out}\n`);
        } finally {
          if (stream !== process.stdout) await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
        }
        return EXIT_OK;
      });
    }
    default:
      throw new CliError(USAGE, EXIT_USAGE);
  }
}
