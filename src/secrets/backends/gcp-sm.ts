import { Agent, request } from 'undici';
import type * as GoogleAuthLibrary from 'google-auth-library';
import type { SecretSource, SecretValue } from '../types.js';
import { SecretError } from '../types.js';
import { isSecretReference } from '../reference.js';
import { checkServiceEndpoint, checkTimeout, errorName, isTransportError, loadOptional } from './load-optional.js';

const AUTH_PACKAGE = 'google-auth-library';
const DEFAULT_ENDPOINT = 'https://secretmanager.googleapis.com';
const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
// a secret payload is at most 64 KiB; base64 and the JSON around it stay well under this
const MAX_ANSWER_BYTES = 256 * 1024;

/** Options of the `gcp-sm:` backend. */
export interface GcpSecretManagerSourceOptions {
  /** The API endpoint (default `https://secretmanager.googleapis.com`; http only on loopback, for tests). */
  endpoint?: string;
  /** An OAuth access token for the call; default: google-auth-library's GoogleAuth (cloud-platform scope), imported on first use. */
  getAccessToken?: () => Promise<string>;
  /** Time limit of one load, including getting the token (default 5000 ms). */
  timeoutMs?: number;
}

/**
 * `gcp-sm:projects/P/secrets/S[/versions/V]`: a secret version from Google Secret Manager, read
 * with the REST call `GET /v1/{name}:access` (`versions/latest` when no version is given). The
 * value is the base64-decoded payload, checked against its CRC32C when the answer carries one;
 * the version is the number at the end of the returned name. Redirects are not followed and
 * there is one attempt per load: the resolver's cache retries.
 *
 * @example
 * const source = createGcpSecretManagerSource();
 * const { value, version } = await source.load('projects/acme/secrets/openai-key');
 */
export function createGcpSecretManagerSource(options: GcpSecretManagerSourceOptions = {}): SecretSource {
  const endpoint = checkServiceEndpoint('gcp-sm endpoint', options.endpoint ?? DEFAULT_ENDPOINT);
  const timeoutMs = checkTimeout('gcp-sm timeoutMs', options.timeoutMs);
  if (options.getAccessToken !== undefined && typeof options.getAccessToken !== 'function') {
    throw new TypeError('gcp-sm getAccessToken must be a function');
  }

  let auth: Promise<() => Promise<string>> | undefined;
  function tokenGetter(reference: string): Promise<() => Promise<string>> {
    if (options.getAccessToken !== undefined) return Promise.resolve(options.getAccessToken);
    auth ??= loadOptional<typeof GoogleAuthLibrary>(AUTH_PACKAGE, reference).then((library) => {
      const googleAuth = new library.GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] });
      return async () => (await googleAuth.getAccessToken()) ?? '';
    });
    auth.catch(() => { auth = undefined; });
    return auth;
  }

  let agent: Agent | undefined;

  return {
    scheme: 'gcp-sm',
    async load(locator: string): Promise<SecretValue> {
      // never echo a malformed locator: it may be a key pasted where a reference belongs
      if (!isSecretReference(`gcp-sm:${locator}`)) {
        throw new SecretError('(reference)', 'is not a valid gcp-sm reference (gcp-sm:projects/P/secrets/S[/versions/V])', 'invalid');
      }
      const reference = `gcp-sm:${locator}`;
      const name = locator.includes('/versions/') ? locator : `${locator}/versions/latest`;
      const getToken = await tokenGetter(reference);

      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      try {
        const token = await withAbort(getToken(), abort.signal).catch((err: unknown) => {
          if (abort.signal.aborted) throw timeoutError(reference, timeoutMs);
          throw new SecretError(reference, `no Google access token could be obtained (${errorName(err)})`,
            isTransportError(err) ? 'unavailable' : 'access_denied');
        });
        // a token is sent as a header: it must be one printable word (this also stops header injection)
        if (typeof token !== 'string' || !/^[\x21-\x7e]{1,4096}$/.test(token)) {
          throw new SecretError(reference, 'the Google credential gave no usable access token', 'access_denied');
        }
        agent ??= new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        let answer: Awaited<ReturnType<typeof request>>;
        try {
          // undici's request does not follow redirects: a 3xx is refused below
          answer = await request(`${endpoint}/v1/${name}:access`, {
            method: 'GET',
            headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
            dispatcher: agent,
            signal: abort.signal,
          });
        } catch (err) {
          if (abort.signal.aborted) throw timeoutError(reference, timeoutMs);
          throw new SecretError(reference, `Google Secret Manager could not be reached (${errorName(err)})`, 'unavailable');
        }
        let body: unknown;
        try {
          body = await readJson(answer.body);
        } catch (err) {
          if (abort.signal.aborted) throw timeoutError(reference, timeoutMs);
          throw new SecretError(reference, `Google Secret Manager answer could not be read (${errorName(err)})`, 'unavailable');
        }
        if (body === TOO_LARGE) throw new SecretError(reference, 'Google Secret Manager answer is too large', 'invalid');
        if (answer.statusCode !== 200) throw statusError(reference, answer.statusCode, body);
        return decodeAnswer(reference, body);
      } finally {
        clearTimeout(timer);
      }
    },
    async close(): Promise<void> {
      const pending = agent;
      agent = undefined;
      await pending?.close();
    },
  };
}

function timeoutError(reference: string, timeoutMs: number): SecretError {
  return new SecretError(reference, `Google Secret Manager did not answer within ${timeoutMs} ms`, 'unavailable');
}

/** Resolves with the promise, or rejects as soon as the signal aborts. */
function withAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const TOO_LARGE = Symbol('too large');

/** Reads a JSON body of at most MAX_ANSWER_BYTES; a non-JSON body gives `undefined`. */
async function readJson(body: AsyncIterable<Buffer> & { destroy(error?: Error): unknown }): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      return TOO_LARGE;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Maps an error status to a SecretError, keeping only the HTTP status and the API's status word. */
function statusError(reference: string, status: number, body: unknown): SecretError {
  const word = (body as { error?: { status?: unknown } } | undefined)?.error?.status;
  const detail = typeof word === 'string' && /^[A-Z_]{1,40}$/.test(word) ? `HTTP ${status} ${word}` : `HTTP ${status}`;
  if (status === 404) return new SecretError(reference, `secret version not found (${detail})`, 'not_found');
  if (status === 401 || status === 403) return new SecretError(reference, `access denied (${detail})`, 'access_denied');
  if (status === 429) return new SecretError(reference, `throttled by Google Secret Manager (${detail})`, 'throttled');
  if (status >= 500) return new SecretError(reference, `Google Secret Manager failed (${detail})`, 'unavailable');
  if (status >= 300 && status < 400) return new SecretError(reference, `was redirected, and redirects are not followed (${detail})`, 'invalid');
  return new SecretError(reference, `request refused (${detail})`, 'invalid');
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** The value and version of an AccessSecretVersionResponse. */
function decodeAnswer(reference: string, body: unknown): SecretValue {
  const answer = body as { name?: unknown; payload?: { data?: unknown; dataCrc32c?: unknown } } | undefined;
  const data = answer?.payload?.data;
  if (typeof data !== 'string' || !BASE64.test(data)) throw new SecretError(reference, 'answer carried no payload', 'invalid');
  const bytes = Buffer.from(data, 'base64');
  const expected = answer?.payload?.dataCrc32c;
  if (expected !== undefined) {
    // int64 fields are strings in the JSON mapping of the API
    const crc = typeof expected === 'string' && /^[0-9]{1,20}$/.test(expected) ? Number(expected) : expected;
    if (typeof crc !== 'number' || crc32c(bytes) !== crc) {
      throw new SecretError(reference, 'payload failed its CRC32C check (corrupted in transit)', 'unavailable');
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SecretError(reference, 'payload is not UTF-8 text', 'invalid');
  }
  const value = text.trim();
  if (value === '') throw new SecretError(reference, 'is empty', 'invalid');
  const version = typeof answer?.name === 'string' ? /\/versions\/([0-9]+)$/.exec(answer.name)?.[1] : undefined;
  if (version === undefined) throw new SecretError(reference, 'answer did not name a version number', 'invalid');
  return { value, version };
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    // Castagnoli polynomial, reflected
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli) of the bytes, as Google's APIs compute it for `dataCrc32c`. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
