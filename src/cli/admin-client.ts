import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './output.js';

/** How long one admin API call may take before the CLI gives up (connect, send and read). */
export const ADMIN_REQUEST_TIMEOUT_MS = 30_000;
/** Larger answers are refused: nothing the admin API sends the CLI is near this size. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

/** A failure the admin API reported (`{"error":{…}}`), with its code for callers and tests. */
export class AdminApiError extends CliError {
  readonly status: number;
  readonly code: string | null;
  constructor(message: string, status: number, code: string | null) {
    super(message, EXIT_FAILURE);
    this.name = 'AdminApiError';
    this.status = status;
    this.code = code;
  }
}

/** Where the admin API is and the token to present there. */
export interface AdminConnection {
  /** The base URL without a trailing slash (`https://gw.example:8081`). */
  baseUrl: string;
  token: string;
  timeoutMs: number;
}

export interface AdminRequest {
  body?: unknown;
  query?: Record<string, string | undefined>;
}

/** A small client over the admin API: JSON in, JSON (or text) out, errors as `CliError`. */
export interface AdminClient {
  /** The base URL, for messages (never holds the token). */
  readonly url: string;
  json<T>(method: 'GET' | 'POST' | 'PUT', path: string, request?: AdminRequest): Promise<T>;
  text(method: 'GET', path: string, request?: AdminRequest): Promise<string>;
}

/** The CLI flags and environment variables that choose the admin API instead of the store. */
export interface AdminFlags {
  adminUrl?: string;
  adminTokenFile?: string;
  /** `--config` was given on the command line (it wins over `KEYWARDEN_ADMIN_URL`). */
  configFlag?: boolean;
}

/**
 * The admin connection the flags and environment ask for, or undefined for the local store.
 * `--admin-url` (or `KEYWARDEN_ADMIN_URL` when no `--config` is given) picks the API; the token
 * comes from `--admin-token-file PATH` or `KEYWARDEN_ADMIN_TOKEN`. Bad combinations are usage
 * errors (exit 2), raised before anything is sent.
 *
 * @example adminConnectionFrom({ adminUrl: 'http://127.0.0.1:8081' }, { KEYWARDEN_ADMIN_TOKEN: '…' })
 */
export function adminConnectionFrom(flags: AdminFlags, env: NodeJS.ProcessEnv = process.env): AdminConnection | undefined {
  if (flags.adminUrl !== undefined && flags.configFlag) {
    throw new CliError('give either --config (work on the store) or --admin-url (work through a running gateway), not both', EXIT_USAGE);
  }
  const envUrl = env['KEYWARDEN_ADMIN_URL'];
  const rawUrl = flags.adminUrl ?? (flags.configFlag || envUrl === undefined || envUrl === '' ? undefined : envUrl);
  if (rawUrl === undefined) {
    if (flags.adminTokenFile !== undefined) throw new CliError('--admin-token-file needs --admin-url (or KEYWARDEN_ADMIN_URL)', EXIT_USAGE);
    return undefined;
  }
  const baseUrl = checkAdminUrl(rawUrl);
  const token = flags.adminTokenFile !== undefined ? readTokenFile(flags.adminTokenFile) : env['KEYWARDEN_ADMIN_TOKEN']?.trim();
  if (token === undefined || token === '') {
    throw new CliError(`an admin token is needed for ${baseUrl}: set KEYWARDEN_ADMIN_TOKEN or give --admin-token-file PATH`, EXIT_USAGE);
  }
  // a token with whitespace or control characters cannot be a bearer token (and could split a header)
  if (!/^[\x21-\x7e]{1,4096}$/.test(token)) throw new CliError('the admin token is not a single printable word', EXIT_USAGE);
  return { baseUrl, token, timeoutMs: ADMIN_REQUEST_TIMEOUT_MS };
}

/** True for `localhost`, 127.0.0.0/8 and ::1 (literal addresses): the only hosts a token may be sent to over plain http. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  // exactly `localhost`: a `*.localhost` name may go to DNS here, and then off the machine
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

function checkAdminUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`--admin-url must be a URL such as https://gateway.example:8081 (got "${raw.slice(0, 80)}")`, EXIT_USAGE);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliError('--admin-url must be an http(s) URL', EXIT_USAGE);
  // security: the token travels in the Authorization header; in clear only over loopback
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new CliError(`refusing to send the admin token in clear to ${url.host}: use https:// (plain http is allowed only for a loopback address)`, EXIT_USAGE);
  }
  if (url.username !== '' || url.password !== '') throw new CliError('--admin-url must not carry credentials; the token comes from KEYWARDEN_ADMIN_TOKEN or --admin-token-file', EXIT_USAGE);
  if (url.search !== '' || url.hash !== '') throw new CliError('--admin-url must not carry a query or fragment', EXIT_USAGE);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Reads the token file, refusing one other users can read or write (as `file:` secrets are). */
function readTokenFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CliError(`cannot read the admin token file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT_USAGE);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new CliError(`the admin token file ${path} is not a regular file`, EXIT_USAGE);
    // security: a token others can read is already exposed; one others can write could be swapped
    if ((stat.mode & 0o044) !== 0) throw new CliError(`the admin token file ${path} is readable by other users (chmod 600 it)`, EXIT_USAGE);
    if ((stat.mode & 0o022) !== 0) throw new CliError(`the admin token file ${path} is writable by other users (chmod 600 it)`, EXIT_USAGE);
    if (stat.size > MAX_TOKEN_FILE_BYTES) throw new CliError(`the admin token file ${path} is too large to hold a token`, EXIT_USAGE);
    const token = readFileSync(fd, 'utf8').trim();
    if (token === '') throw new CliError(`the admin token file ${path} is empty`, EXIT_USAGE);
    return token;
  } finally {
    closeSync(fd);
  }
}

/**
 * A client for the admin API at `connection.baseUrl`. Every call has a bounded time, never
 * follows a redirect (the token must not travel elsewhere) and never prints the token: API
 * errors become an `AdminApiError` with the API's message and code, exit status 1.
 */
export function createAdminClient(connection: AdminConnection): AdminClient {
  const { baseUrl, token, timeoutMs } = connection;
  // defence in depth: whatever a server or a network error says, the token is not repeated
  const scrub = (text: string) => (token.length >= 8 ? text.split(token).join('[redacted]') : text);

  async function send(method: string, path: string, request: AdminRequest, accept: string): Promise<{ status: number; contentType: string; text: string }> {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(request.query ?? {})) if (value !== undefined) query.set(name, value);
    const search = query.toString();
    const url = `${baseUrl}${path}${search === '' ? '' : `?${search}`}`;
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept };
    if (request.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(url, {
        method, headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs),
        ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
      });
    } catch (err) {
      throw new CliError(scrub(unreachable(baseUrl, err, timeoutMs)), EXIT_FAILURE);
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new CliError(`the admin API at ${baseUrl} answered with a redirect (${res.status}); not following it with the admin token`, EXIT_FAILURE);
    }
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > MAX_RESPONSE_BYTES) {
      await res.body?.cancel();
      throw new CliError(`the admin API at ${baseUrl} sent an answer too large to read`, EXIT_FAILURE);
    }
    let text: string;
    try {
      text = await readCapped(res, MAX_RESPONSE_BYTES, baseUrl);
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(scrub(unreachable(baseUrl, err, timeoutMs)), EXIT_FAILURE);
    }
    if (res.status >= 400) throw apiError(res.status, text, baseUrl, scrub);
    return { status: res.status, contentType: res.headers.get('content-type') ?? '', text };
  }

  return {
    url: baseUrl,
    async json<T>(method: 'GET' | 'POST' | 'PUT', path: string, request: AdminRequest = {}): Promise<T> {
      const { text } = await send(method, path, request, 'application/json');
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new CliError(`the admin API at ${baseUrl} sent an answer that is not JSON (is --admin-url the admin listener?)`, EXIT_FAILURE);
      }
    },
    async text(method: 'GET', path: string, request: AdminRequest = {}): Promise<string> {
      return (await send(method, path, request, 'text/markdown, text/plain;q=0.9, */*;q=0.1')).text;
    },
  };
}

/**
 * The answer's text, refusing one longer than `limit` bytes however it is framed: a declared
 * length was checked before, a chunked answer is counted as it arrives.
 */
async function readCapped(res: Response, limit: number, baseUrl: string): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new CliError(`the admin API at ${baseUrl} sent an answer too large to read`, EXIT_FAILURE);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** Text from the server made safe for a terminal: control characters (escape sequences) become spaces. */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ');
}

/** `/admin/tenants/a%2Fb`: each dynamic segment encoded so a name cannot reach another route. */
export function adminPath(strings: TemplateStringsArray, ...segments: string[]): string {
  return strings.reduce((path, part, i) => `${path}${part}${i < segments.length ? encodeURIComponent(segments[i] as string) : ''}`, '');
}

function apiError(status: number, text: string, baseUrl: string, scrub: (s: string) => string): AdminApiError {
  let message = `the admin API at ${baseUrl} answered ${status}`;
  let code: string | null = null;
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown; code?: unknown; param?: unknown } };
    const error = body.error;
    if (error && typeof error.message === 'string') {
      code = typeof error.code === 'string' ? error.code : null;
      const param = typeof error.param === 'string' ? ` [${error.param}]` : '';
      message = printable(`${error.message.slice(0, 500)}${param}${code ? ` (${code})` : ''}`);
    }
  } catch {
    // not the admin API's error shape: keep the status line only
  }
  return new AdminApiError(scrub(message), status, code);
}

function unreachable(baseUrl: string, err: unknown, timeoutMs: number): string {
  const name = (err as Error | undefined)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return `the admin API at ${baseUrl} did not answer within ${Math.round(timeoutMs / 1000)} s`;
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const code = cause?.code;
  if (code === 'ECONNREFUSED') return `cannot reach the admin API at ${baseUrl}: connection refused (is the gateway running, and is this its admin listener?)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot reach the admin API at ${baseUrl}: the host name does not resolve`;
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return `the admin API at ${baseUrl} closed the connection (is it an https listener? check the URL's scheme)`;
  if (typeof code === 'string' && /CERT|SSL|TLS|SELF_SIGNED/i.test(code)) return `cannot reach the admin API at ${baseUrl}: TLS failed (${code})`;
  return `cannot reach the admin API at ${baseUrl}${code ? ` (${code})` : cause?.message ? `: ${cause.message.slice(0, 200)}` : ''}`;
}
