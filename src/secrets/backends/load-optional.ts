import { isIP } from 'node:net';
import { SecretError } from '../types.js';

// an npm package name, so the install hint we print is always a plain, safe command
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/;

const loaded = new Map<string, unknown>();

/**
 * Imports an optional package (a cloud SDK that only some installs carry) on first use.
 * A package that is not installed becomes a `SecretError` with reason `missing_package` whose
 * message names the reference being loaded and the command that fixes it, instead of a bare
 * ERR_MODULE_NOT_FOUND at start-up for every install. Successful imports are remembered.
 *
 * @example
 * const sdk = await loadOptional<typeof import('@aws-sdk/client-secrets-manager')>(
 *   '@aws-sdk/client-secrets-manager', 'aws-sm:prod/openai');
 */
export async function loadOptional<T>(pkg: string, reference: string): Promise<T> {
  if (!PACKAGE_NAME.test(pkg)) throw new TypeError(`loadOptional: "${pkg}" is not a package name`);
  const cached = loaded.get(pkg);
  if (cached !== undefined) return cached as T;
  let module: unknown;
  try {
    module = await import(pkg);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      // the package itself or one of its own dependencies is absent: both are fixed by installing it
      throw new SecretError(reference, `needs the package ${pkg}, which is not installed; install it with: npm install ${pkg}`, 'missing_package');
    }
    // never echo the loader's message: it is not ours and may be long; the name is enough to act on
    throw new SecretError(reference, `could not load the package ${pkg} (${errorName(err)}); reinstall it with: npm install ${pkg}`, 'missing_package');
  }
  loaded.set(pkg, module);
  return module as T;
}

/**
 * Validates a backend's endpoint override: an absolute https URL, or http only for a loopback
 * address (127.0.0.0/8 or [::1]; a local test server or a sidecar proxy). Credentials, a query
 * or a fragment in the URL are refused. Returns the URL without a trailing slash.
 * Throws a TypeError naming the option, at start-up, so a bad endpoint never gets a request.
 */
export function checkServiceEndpoint(option: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`${option} is not an absolute URL`);
  }
  // security: secrets (and the tokens that fetch them) travel in clear only over loopback
  if (url.protocol === 'http:') {
    if (!isLoopbackHost(url.hostname)) {
      throw new TypeError(`${option} must use https (http is allowed only for a loopback address such as 127.0.0.1 or [::1])`);
    }
  } else if (url.protocol !== 'https:') {
    throw new TypeError(`${option} must be an https URL`);
  }
  if (url.username !== '' || url.password !== '') throw new TypeError(`${option} must not carry credentials`);
  if (url.search !== '' || url.hash !== '') throw new TypeError(`${option} must not have a query or fragment`);
  return url.href.replace(/\/+$/, '');
}

/** Whether a URL hostname is a literal loopback address (names such as `localhost` are not trusted). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  const family = isIP(host);
  if (family === 4) return host.startsWith('127.');
  if (family === 6) return host === '::1';
  return false;
}

/** Validates a per-load time limit in milliseconds (default 5 s). */
export function checkTimeout(option: string, value: number | undefined, fallback = 5_000): number {
  const ms = value ?? fallback;
  if (!Number.isInteger(ms) || ms <= 0 || ms > 120_000) throw new TypeError(`${option} must be an integer between 1 and 120000`);
  return ms;
}

/** A short, safe label of an error for a message: its class name or its system code, never its text. */
export function errorName(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code)) return code;
  const name = (err as { name?: unknown } | null)?.name;
  if (typeof name === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(name)) return name;
  return 'error';
}

// socket-level failures: the service could not be reached or dropped the connection
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED', 'UND_ERR_ABORTED', 'ABORT_ERR', 'REQUEST_SEND_ERROR',
]);

/** Whether an error is a timeout, an abort or a network failure (reason `unavailable`). */
export function isTransportError(err: unknown, depth = 0): boolean {
  const e = err as { code?: unknown; name?: unknown; cause?: unknown } | null;
  if (e === null || typeof e !== 'object' || depth > 4) return false;
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return true;
  return e.cause !== undefined && isTransportError(e.cause, depth + 1);
}
