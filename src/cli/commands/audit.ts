import { printable } from '../admin-client.js';
import { createWriteStream } from 'node:fs';
import { isIP } from 'node:net';
import type { Writable } from 'node:stream';
import type { GatewayConfig } from '../../config/types.js';
import { parseDuration } from '../../config/duration.js';
import { openStore } from '../../main.js';
import type { Store } from '../../store/types.js';
import {
  AUDIT_SALT_SECRET, createIdentifierHasher, loadCheckpointKey, normaliseAddress, pruneAuditTrail,
} from '../../audit/trail.js';
import { createAuditService, exportAuditTrail, type AuditVerifyView } from '../../services/audit-service.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../output.js';
import { fetchRemoteVerify, streamRemoteExport, type AuditTarget } from '../remote-audit.js';

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

async function write(stream: Writable, text: string | Uint8Array): Promise<void> {
  if (!stream.write(text)) await new Promise<void>((resolve, reject) => {
    stream.once('drain', resolve);
    stream.once('error', reject);
  });
}

/** Prints a verification (the same lines from the store or the admin API); exit 1 when the chain is broken. */
function printVerify(result: AuditVerifyView, json: boolean): number {
  if (json) out(JSON.stringify(result));
  if (result.ok) {
    if (!json) {
      out(`audit chain intact: ${result.rows} rows${result.first_seq === null ? '' : ` (seq ${result.first_seq}…${result.last_seq})`}, head ${result.head_hash}`);
      if (result.checkpoint) out(`verified from the signed checkpoint of rows 1…${result.checkpoint.up_to_seq} (pruned ${result.checkpoint.created_at})`);
    }
    return EXIT_OK;
  }
  // the text may come from a remote gateway: printed without control characters
  if (!json) process.stderr.write(printable(`keywarden: audit chain broken at seq ${result.seq}: ${result.problem}: ${result.message}`) + '\n');
  return EXIT_FAILURE;
}

/** Records (lines outside CSV quotes) in exported text, counted as it streams by. */
function createRowCounter(format: 'jsonl' | 'csv'): { add(chunk: Uint8Array | string): void; rows(): number } {
  let newlines = 0;
  let quoted = false;
  const see = (c: number) => {
    if (c === 0x22 && format === 'csv') quoted = !quoted;
    else if (c === 0x0a && !quoted) newlines += 1;
  };
  return {
    add(chunk) {
      if (typeof chunk === 'string') for (let i = 0; i < chunk.length; i += 1) see(chunk.charCodeAt(i));
      else for (const byte of chunk) see(byte);
    },
    // the CSV header line is not a row
    rows: () => (format === 'csv' ? Math.max(0, newlines - 1) : newlines),
  };
}

/**
 * `keywarden audit verify|hash|prune|export`: the audit chain's checks and maintenance. Never
 * prints content. `verify` and `export` also work through a running gateway's admin API (an
 * unscoped admin token); `hash` and `prune` need the store and are refused there (see `auditTarget`).
 */
export async function auditCommand(target: AuditTarget, action: string | undefined, args: readonly string[], flags: AuditFlags): Promise<number> {
  if (target.kind === 'api' && action !== 'verify' && action !== 'export') throw new CliError(USAGE, EXIT_USAGE);
  switch (action) {
    case 'verify':
      if (target.kind === 'api') return printVerify(await fetchRemoteVerify(target.client), flags.json);
      return withStore(target.config, async (store) => {
        const service = createAuditService({ trail: store.auditTrail, checkpointKey: await checkpointKey(target.config, store) });
        return printVerify(await service.verify(), flags.json);
      });
    case 'hash': {
      const value = args[0];
      if (value === undefined || value === '' || args.length > 1) throw new CliError('usage: keywarden audit hash VALUE', EXIT_USAGE);
      if (target.kind === 'api') throw new CliError(USAGE, EXIT_USAGE);
      const { config } = target;
      return withStore(config, async (store) => {
        const hash = createIdentifierHasher(await store.instanceSecret(AUDIT_SALT_SECRET));
        // addresses are stored in canonical form (IPv4-mapped IPv6 as IPv4), so the same value is found either way
        out(hash(isIP(value) !== 0 ? normaliseAddress(value) : value));
        return EXIT_OK;
      });
    }
    case 'prune': {
      if (target.kind === 'api') throw new CliError(USAGE, EXIT_USAGE);
      const { config } = target;
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
      const until = flags.until === undefined ? undefined : parseWhen(flags.until, '--until', now);
      const counter = createRowCounter(format);
      // the output file is made once the source is open: a store that cannot be opened leaves no file
      const exportTo = async (copy: (write: (chunk: string | Uint8Array) => Promise<void>) => Promise<void>): Promise<number> => {
        const stream: Writable = flags.out === undefined ? process.stdout : createWriteStream(flags.out, { mode: 0o600 });
        try {
          await copy(async (chunk) => {
            counter.add(chunk);
            await write(stream, chunk);
          });
          if (flags.out !== undefined) process.stderr.write(`exported ${counter.rows()} audit rows to ${flags.out}\n`);
        } finally {
          if (stream !== process.stdout) await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
        }
        return EXIT_OK;
      };
      // through the API the gateway reads its store a page at a time and streams; each chunk is written as it arrives
      if (target.kind === 'api') {
        return exportTo((put) => streamRemoteExport(target.connection, { since, ...(until !== undefined ? { until } : {}), format }, put));
      }
      return withStore(target.config, (store) => exportTo(async (put) => {
        for await (const text of exportAuditTrail(store.auditTrail, { since, until: until ?? Number.MAX_SAFE_INTEGER, format })) await put(text);
      }));
    }
    default:
      throw new CliError(USAGE, EXIT_USAGE);
  }
}
