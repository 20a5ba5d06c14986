import type { GatewayConfig } from '../config/types.js';
import type { AuditExportFormat, AuditVerifyView } from '../services/audit-service.js';
import { AdminApiError, adminConnectionFrom, createAdminClient, type AdminClient, type AdminConnection, printable } from './admin-client.js';
import { configFor } from './config-arg.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './output.js';

/** What `keywarden audit` works on: the store, or a running gateway's admin API (verify and export only). */
export type AuditTarget =
  | { kind: 'store'; config: GatewayConfig }
  | { kind: 'api'; client: AdminClient; connection: AdminConnection };

/** The audit subcommands the admin API serves; the others need the store (and the checkpoint key) itself. */
const REMOTE_AUDIT_ACTIONS: ReadonlySet<string> = new Set(['verify', 'export']);

/**
 * The target of `keywarden audit ACTION`, chosen as for every other remote command
 * (`commandTarget`): `--admin-url`, or `KEYWARDEN_ADMIN_URL` without `--config`, picks the API.
 * `prune` and `hash` are refused there with a usage error before any token is read or sent.
 */
export function auditTarget(action: string | undefined, flags: { config?: string; adminUrl?: string; adminTokenFile?: string }, env: NodeJS.ProcessEnv = process.env): AuditTarget {
  const envUrl = env['KEYWARDEN_ADMIN_URL'];
  const wantsApi = flags.adminUrl !== undefined || flags.adminTokenFile !== undefined || (flags.config === undefined && envUrl !== undefined && envUrl !== '');
  if (wantsApi && action !== undefined && !REMOTE_AUDIT_ACTIONS.has(action)) {
    throw new CliError(`"audit ${action.slice(0, 40)}" works on the store only (run it on a host with --config, without --admin-url or KEYWARDEN_ADMIN_URL); through the admin API: audit verify, audit export`, EXIT_USAGE);
  }
  const connection = adminConnectionFrom({
    ...(flags.adminUrl !== undefined ? { adminUrl: flags.adminUrl } : {}),
    ...(flags.adminTokenFile !== undefined ? { adminTokenFile: flags.adminTokenFile } : {}),
    configFlag: flags.config !== undefined,
  }, env);
  if (connection) return { kind: 'api', client: createAdminClient(connection), connection };
  return { kind: 'store', config: configFor(flags.config, env).config };
}

/** `GET /admin/audit/verify`: the gateway walks its chain (an unscoped admin token is needed). */
export function fetchRemoteVerify(client: AdminClient): Promise<AuditVerifyView> {
  return client.json<AuditVerifyView>('GET', '/admin/audit/verify');
}

/** Larger error answers are not read: the admin API's errors are a few hundred bytes. */
const MAX_ERROR_BYTES = 64 * 1024;

/**
 * `GET /admin/audit/export`, streamed: each chunk goes to `write` as it arrives (with its
 * back-pressure), so an export of any size needs no more memory than a chunk. The time limit is
 * per wait (connecting, then between chunks), not for the whole export. Like every admin call it
 * never follows a redirect and never repeats the token. An answer cut off before its end is an
 * error (exit 1), so a partial export is never taken for a whole one.
 */
export async function streamRemoteExport(
  connection: AdminConnection,
  query: { since: number; until?: number; format: AuditExportFormat },
  write: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const { baseUrl, token, timeoutMs } = connection;
  const scrub = (text: string) => (token.length >= 8 ? text.split(token).join('[redacted]') : text);
  const params = new URLSearchParams({ since: new Date(query.since).toISOString(), format: query.format });
  if (query.until !== undefined) params.set('until', new Date(query.until).toISOString());
  const abort = new AbortController();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeoutMs);
  };
  const failed = (what: string, err: unknown) => {
    if (timedOut) return new CliError(`the admin API at ${baseUrl} sent nothing for ${Math.round(timeoutMs / 1000)} s ${what}`, EXIT_FAILURE);
    const code = (err as { cause?: { code?: string } } | undefined)?.cause?.code;
    if (code === 'ECONNREFUSED') return new CliError(`cannot reach the admin API at ${baseUrl}: connection refused (is the gateway running, and is this its admin listener?)`, EXIT_FAILURE);
    return new CliError(scrub(`the admin API at ${baseUrl} failed ${what}${typeof code === 'string' ? ` (${code})` : ''}`), EXIT_FAILURE);
  };
  arm();
  try {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}/admin/audit/export?${params.toString()}`, {
        headers: { authorization: `Bearer ${token}`, accept: query.format === 'csv' ? 'text/csv' : 'application/x-ndjson' },
        redirect: 'manual', signal: abort.signal,
      });
    } catch (err) {
      throw failed('before the export started', err);
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new CliError(`the admin API at ${baseUrl} answered with a redirect (${res.status}); not following it with the admin token`, EXIT_FAILURE);
    }
    if (res.status >= 400) throw await apiFailure(res, baseUrl, scrub);
    const type = res.headers.get('content-type') ?? '';
    if (!type.startsWith(query.format === 'csv' ? 'text/csv' : 'application/x-ndjson') || !res.body) {
      await res.body?.cancel();
      throw new CliError(`the admin API at ${baseUrl} did not send an audit export (is --admin-url the admin listener?)`, EXIT_FAILURE);
    }
    try {
      for await (const chunk of res.body) {
        // a slow reader of our output is not a silent gateway: the clock runs only while waiting for it
        clearTimeout(timer);
        await write(chunk);
        arm();
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw failed('during the export: the output is incomplete', err);
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The admin API's error (`{"error":{message, code}}`) as an `AdminApiError`; the body read is bounded. */
async function apiFailure(res: Response, baseUrl: string, scrub: (text: string) => string): Promise<AdminApiError> {
  let message = `the admin API at ${baseUrl} answered ${res.status}`;
  let code: string | null = null;
  let text = '';
  if (res.body) {
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      text += decoder.decode(chunk, { stream: true });
      if (text.length > MAX_ERROR_BYTES) break;
    }
  }
  try {
    const error = (JSON.parse(text) as { error?: { message?: unknown; code?: unknown } }).error;
    if (error && typeof error.message === 'string') {
      code = typeof error.code === 'string' ? error.code : null;
      message = printable(`${error.message.slice(0, 500)}${code ? ` (${code})` : ''}`);
    }
  } catch {
    // not the admin API's error shape: keep the status line only
  }
  return new AdminApiError(scrub(message), res.status, code);
}
