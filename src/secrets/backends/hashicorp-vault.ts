import { Agent, request, errors as undiciErrors } from 'undici';
import type { Dispatcher } from 'undici';
import type { SecretFailure, SecretSource, SecretValue } from '../types.js';
import { SecretError } from '../types.js';
import { registerSecret } from '../../log/redact.js';

/** How keywarden authenticates to Vault: a token, or an AppRole login that yields one. */
export type VaultAuth =
  | { method: 'token'; token: string }
  | { method: 'approle'; roleId: string; secretId: string; /** default `approle` */ mount?: string };

export interface VaultSourceOptions {
  /** `https://vault.example:8200` (a path prefix is kept); `http:` only on loopback. */
  address: string;
  /** Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`. */
  namespace?: string;
  auth: VaultAuth;
  /** Per HTTP call: connect, headers and whole answer (default 5000 ms). */
  timeoutMs?: number;
  /** No injection point: the source always speaks HTTP itself, through its own undici agent. */
  fetchImpl?: never;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const MAX_ANSWER_BYTES = 1024 * 1024;
/** A token is replaced once this share of its lease has passed, so a read never races its expiry. */
const RENEW_AFTER_LEASE_FRACTION = 0.75;
const SEGMENT = /^[A-Za-z0-9_.-]+$/;
const FIELD = /^[A-Za-z0-9_.-]+$/;
const NAMESPACE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/?$/;
// a token or id travels in a header or a JSON body: printable ASCII without spaces only
const CREDENTIAL = /^[\x21-\x7e]{1,4096}$/;

interface Token {
  value: string;
  /** ms since epoch after which a new login is due; Infinity when the token has no lease. */
  renewAt: number;
}

/**
 * `vault:MOUNT/PATH#field`: one field of a HashiCorp Vault KV v2 secret, read over Vault's
 * HTTP API (`GET /v1/MOUNT/data/PATH`). The first path segment is the mount. The version is
 * the KV version (`v3`). Authenticates with a token, or with AppRole (`POST
 * /v1/auth/MOUNT/login`), logging in again when the token nears the end of its lease or is
 * refused. Redirects are never followed (a standby's redirect would carry the token elsewhere).
 *
 * ```ts
 * const vault = createVaultSource({ address: 'https://vault.internal:8200',
 *   auth: { method: 'approle', roleId, secretId } });
 * const resolver = createSecretResolver([createEnvSource(), createFileSource(), vault]);
 * await resolver.resolve('vault:secret/providers/openai#api_key');
 * ```
 */
export function createVaultSource(options: VaultSourceOptions): SecretSource {
  const base = parseAddress(options.address);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) invalidOption('timeoutMs must be a whole number of milliseconds between 1 and 600000');
  if (options.namespace !== undefined && !NAMESPACE.test(options.namespace)) invalidOption('namespace must be a Vault namespace path (letters, digits, _ . - and /)');
  const auth = checkAuth(options.auth);
  const namespaceHeader: Record<string, string> = options.namespace !== undefined ? { 'x-vault-namespace': options.namespace } : {};

  // its own agent, so close() releases exactly this source's sockets
  const agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 30_000 });

  let token: Token | undefined = auth.method === 'token' ? { value: auth.token, renewAt: Infinity } : undefined;
  let login: Promise<Token> | undefined;

  async function call(ref: string, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; json: unknown }> {
    let answer: Dispatcher.ResponseData;
    try {
      answer = await request(`${base}${path}`, {
        dispatcher: agent,
        method,
        headers: { accept: 'application/json', 'x-vault-request': 'true', ...namespaceHeader, ...headers },
        body: body ?? null,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw transportError(ref, err, timeoutMs);
    }
    let text: string;
    try {
      text = await readCapped(answer.body);
    } catch (err) {
      throw transportError(ref, err, timeoutMs);
    }
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined; // statuses are mapped below; a 200 without JSON is refused there
    }
    return { status: answer.statusCode, json };
  }

  async function logIn(ref: string): Promise<Token> {
    if (auth.method !== 'approle') throw new Error('unreachable');
    const { status, json } = await call(ref, 'POST', `/v1/auth/${auth.mount}/login`, { 'content-type': 'application/json' },
      JSON.stringify({ role_id: auth.roleId, secret_id: auth.secretId }));
    if (status !== 200) {
      // Vault answers a wrong role or secret id with 400; never repeat its text (or the ids)
      if (status === 400 || status === 401 || status === 403) throw new SecretError(ref, `AppRole login at auth/${auth.mount} was refused (${status}): check the role id and secret id`, 'access_denied');
      throw statusError(ref, status, json, `AppRole login at auth/${auth.mount}`);
    }
    const authBlock = record(record(json)?.['auth']);
    const clientToken = authBlock?.['client_token'];
    const lease = authBlock?.['lease_duration'];
    if (typeof clientToken !== 'string' || !CREDENTIAL.test(clientToken)) throw new SecretError(ref, `AppRole login at auth/${auth.mount} gave no usable client token`, 'unavailable');
    registerSecret(clientToken);
    const leaseSeconds = typeof lease === 'number' && Number.isFinite(lease) && lease > 0 ? lease : 0;
    return { value: clientToken, renewAt: leaseSeconds === 0 ? Infinity : Date.now() + leaseSeconds * 1000 * RENEW_AFTER_LEASE_FRACTION };
  }

  /** The token to use now; one login at a time however many loads wait for it. */
  async function currentToken(ref: string, refused?: Token): Promise<Token> {
    if (token !== undefined && token !== refused && Date.now() < token.renewAt) return token;
    if (auth.method === 'token') {
      if (token === undefined) throw new SecretError(ref, 'the Vault source is closed', 'unavailable');
      return token; // a static token cannot be renewed by logging in
    }
    if (login === undefined) {
      login = logIn(ref).then((fresh) => {
        token = fresh;
        return fresh;
      }).finally(() => {
        login = undefined;
      });
    }
    return login.catch((err: unknown) => {
      // a login shared by several loads failed: report it under this load's reference
      if (err instanceof SecretError && err.reference !== ref) throw new SecretError(ref, err.message.slice(err.reference.length + 2), err.reason);
      throw err;
    });
  }

  return {
    scheme: 'vault',
    async load(locator: string): Promise<SecretValue> {
      const ref = `vault:${locator}`;
      const { mount, path, field } = parseLocator(ref, locator);
      const readPath = `/v1/${mount}/data/${path}`;
      let used = await currentToken(ref);
      let answer = await call(ref, 'GET', readPath, { 'x-vault-token': used.value });
      if (answer.status === 403 && auth.method === 'approle') {
        // the token may have expired or been revoked: log in again once, then trust the answer
        used = await currentToken(ref, used);
        answer = await call(ref, 'GET', readPath, { 'x-vault-token': used.value });
      }
      if (answer.status !== 200) throw statusError(ref, answer.status, answer.json, 'the secret');
      return readField(ref, answer.json, field);
    },
    async close(): Promise<void> {
      token = undefined;
      await agent.close();
    },
  };
}

function invalidOption(message: string): never {
  throw new SecretError('vault', message, 'invalid');
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** The address without a trailing slash; the address is never echoed (it could carry credentials). */
function parseAddress(address: string): string {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    invalidOption('address is not a URL');
  }
  if (url.username !== '' || url.password !== '') invalidOption('address must not carry credentials');
  if (url.search !== '' || url.hash !== '') invalidOption('address must not have a query or fragment');
  if (url.protocol === 'http:') {
    // security: the token travels in clear over http, so only to this machine
    if (!isLoopback(url.hostname)) invalidOption('address must use https (http is allowed only on loopback)');
  } else if (url.protocol !== 'https:') {
    invalidOption('address must use https');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

type CheckedAuth = { method: 'token'; token: string } | { method: 'approle'; roleId: string; secretId: string; mount: string };

function checkAuth(auth: VaultAuth | undefined): CheckedAuth {
  if (auth === undefined || typeof auth !== 'object') invalidOption('auth is required (token or approle)');
  if (auth.method === 'token') {
    if (typeof auth.token !== 'string' || !CREDENTIAL.test(auth.token)) invalidOption('auth.token must be a non-empty token without spaces');
    registerSecret(auth.token);
    return { method: 'token', token: auth.token };
  }
  if (auth.method === 'approle') {
    if (typeof auth.roleId !== 'string' || !CREDENTIAL.test(auth.roleId)) invalidOption('auth.roleId must be a non-empty id without spaces');
    if (typeof auth.secretId !== 'string' || !CREDENTIAL.test(auth.secretId)) invalidOption('auth.secretId must be a non-empty id without spaces');
    const mount = auth.mount ?? 'approle';
    if (!mount.split('/').every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')) invalidOption('auth.mount must be a mount path such as "approle"');
    registerSecret(auth.secretId);
    return { method: 'approle', roleId: auth.roleId, secretId: auth.secretId, mount };
  }
  return invalidOption('auth.method must be "token" or "approle"');
}

/** `MOUNT/PATH#field` → URL-safe parts; `.`, `..` and empty segments are refused (no walking to other API paths). */
function parseLocator(ref: string, locator: string): { mount: string; path: string; field: string } {
  const hash = locator.indexOf('#');
  const field = hash < 0 ? '' : locator.slice(hash + 1);
  const segments = (hash < 0 ? locator : locator.slice(0, hash)).split('/');
  const mount = segments[0] ?? '';
  if (!FIELD.test(field) || segments.length < 2 || !segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')) {
    throw new SecretError(ref, 'is not a Vault reference of the form vault:MOUNT/PATH#field', 'invalid');
  }
  return { mount, path: segments.slice(1).join('/'), field };
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function readField(ref: string, json: unknown, field: string): SecretValue {
  const data = record(record(json)?.['data']);
  if (data === undefined) throw new SecretError(ref, 'Vault answered without a KV v2 secret', 'unavailable');
  const fields = record(data['data']);
  // a deleted or destroyed version has data: null
  if (fields === undefined) throw new SecretError(ref, 'the secret version has no data (deleted or destroyed)', 'not_found');
  if (!Object.hasOwn(fields, field)) throw new SecretError(ref, `the secret has no field "${field}"`, 'not_found');
  const value = fields[field];
  if (typeof value !== 'string') throw new SecretError(ref, `field "${field}" is not a string`, 'invalid');
  const trimmed = value.trim();
  if (trimmed === '') throw new SecretError(ref, `field "${field}" is empty`, 'not_found');
  const version = record(data['metadata'])?.['version'];
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new SecretError(ref, 'Vault answered without a KV v2 version (is the mount KV v2?)', 'invalid');
  return { value: trimmed, version: `v${version}` };
}

/** Maps a Vault status to a SecretError. Vault's own error text is never relayed. */
function statusError(ref: string, status: number, json: unknown, what: string): SecretError {
  const fail = (message: string, reason: SecretFailure) => new SecretError(ref, message, reason);
  if (status === 404) return fail(`${what} was not found in Vault`, 'not_found');
  if (status === 401 || status === 403) return fail(`access to ${what} was denied by Vault (${status}): check the token's policy`, 'access_denied');
  if (status === 429) return fail(`Vault is rate limiting requests (429)`, 'throttled');
  if (status === 503) {
    const errors = record(json)?.['errors'];
    const sealed = Array.isArray(errors) && errors.some((e) => typeof e === 'string' && /\bsealed\b/i.test(e));
    return fail(sealed ? 'Vault is sealed (503)' : 'Vault is unavailable (503: sealed, standby or in maintenance)', 'unavailable');
  }
  if (status >= 300 && status < 400) return fail(`Vault answered with a redirect (${status}), which is not followed: point the address at the active node or its load balancer`, 'unavailable');
  if (status === 412 || status === 472 || status === 473 || status >= 500) return fail(`Vault failed to answer (${status})`, 'unavailable');
  if (status === 200) return fail('Vault answered with a malformed body', 'unavailable');
  return fail(`Vault refused the request (${status})`, 'invalid');
}

function transportError(ref: string, err: unknown, timeoutMs: number): SecretError {
  const name = (err as { name?: unknown } | null)?.name;
  if (
    name === 'TimeoutError' || name === 'AbortError' ||
    err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError
  ) {
    return new SecretError(ref, `Vault did not answer within ${timeoutMs} ms`, 'unavailable');
  }
  if (err instanceof AnswerTooLargeError) return new SecretError(ref, 'Vault answered with more than 1 MiB', 'unavailable');
  const code = (err as { code?: unknown } | null)?.code;
  return new SecretError(ref, `cannot reach Vault${typeof code === 'string' && /^[A-Z_]{1,40}$/.test(code) ? ` (${code})` : ''}`, 'unavailable');
}

class AnswerTooLargeError extends Error {}

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw new AnswerTooLargeError();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
