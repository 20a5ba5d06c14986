/**
 * A fast, deterministic stand-in for the OpenAI and Anthropic APIs, for tests, the demo and the
 * benchmark. Plain `node:http` with keep-alive; the official SDKs work against it unchanged.
 * Faults are chosen per request (see `faults.ts`) with an `x-mock-fault` header or a
 * `[[mock:SPEC]]` directive in the request text.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  anthropicAuthError,
  anthropicBadJson,
  anthropicError,
  anthropicMissingVersion,
  anthropicModelsEndpoint,
  anthropicStatusError,
  messagesEndpoint,
} from './anthropic.js';
import { adminAnswer, adminProviderOf, isRevoked, newAdminKeyState } from './admin-keys.js';
import { noFaults, NO_FAULTS, parseFaultSpec, type Faults } from './faults.js';
import {
  chatEndpoint,
  embeddingsEndpoint,
  openaiAuthError,
  openaiBadJson,
  openaiError,
  openaiModelsEndpoint,
  openaiNotFound,
  openaiStatusError,
  responsesEndpoint,
} from './openai.js';
import { isRecord, newScan, type TextScan } from './text.js';
import { isGone, sendJson, sendStream } from './transport.js';
import type { EndpointSpec, MockAnswer, MockProviderKind } from './types.js';

export interface MockProviderOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /**
   * When set, every request must carry exactly this key (Bearer for OpenAI, x-api-key for Anthropic),
   * or one of these keys (a provider accepting old and new keys during a rotation).
   */
  apiKey?: string | readonly string[];
  /**
   * The admin key of the providers' key admin APIs (OpenAI `/v1/organization/projects/{p}/api_keys`,
   * Anthropic `/v1/organizations/api_keys`), which list the accepted `apiKey` values (redacted) and
   * delete / deactivate them: the mock then refuses that key for that provider. Unset: every admin
   * request is refused with 401.
   */
  adminKey?: string;
}

export interface ReceivedRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body, or undefined when there was none or it was not JSON. */
  body: unknown;
}

export interface MockProvider {
  /** `http://127.0.0.1:PORT`, without a trailing slash. */
  url: string;
  port: number;
  /** The last 1000 requests, oldest first (including rejected ones). */
  received: ReceivedRequest[];
  /** Clears `received`. */
  reset(): void;
  /** Replaces the accepted keys (each request must carry one of them); an empty list accepts none. */
  setApiKeys(keys: readonly string[]): void;
  /** Closes the server and every open socket, and cancels pending fault timers. */
  close(): Promise<void>;
}

const MAX_RECEIVED = 1000;
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Where the `redirect` fault points: off the provider, and nothing listens there. */
const REDIRECT_LOCATION = 'http://127.0.0.1:1/stolen';

const POST_ROUTES = new Map<string, EndpointSpec>([
  ['/v1/chat/completions', chatEndpoint],
  ['/v1/responses', responsesEndpoint],
  ['/v1/embeddings', embeddingsEndpoint],
  ['/v1/messages', messagesEndpoint],
]);

function route(method: string, path: string, req: IncomingMessage): EndpointSpec | undefined {
  if (method === 'POST') return POST_ROUTES.get(path);
  if (method === 'GET' && path === '/v1/models') {
    // both providers serve GET /v1/models; Anthropic clients are the ones sending x-api-key
    return req.headers['x-api-key'] !== undefined ? anthropicModelsEndpoint : openaiModelsEndpoint;
  }
  return undefined;
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The key the client sent, in the provider's own header. */
function sentKeyOf(provider: MockProviderKind, req: IncomingMessage): string | undefined {
  if (provider === 'anthropic') return headerString(req.headers['x-api-key']);
  const auth = req.headers.authorization;
  if (auth === undefined || auth.length < 7 || auth.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  return auth.slice(7).trim();
}

function statusError(provider: MockProviderKind, status: number, sentKey: string | undefined): MockAnswer {
  return provider === 'openai' ? openaiStatusError(status, sentKey) : anthropicStatusError(status);
}

function validateOptions(options: MockProviderOptions): void {
  const problems: string[] = [];
  const { port, host, apiKey, adminKey } = options;
  if (adminKey !== undefined && (typeof adminKey !== 'string' || adminKey === '')) problems.push('adminKey must be a non-empty string');
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) problems.push('port must be an integer 0-65535');
  if (host !== undefined && (typeof host !== 'string' || host === '')) problems.push('host must be a non-empty string');
  if (apiKey !== undefined) {
    const list: readonly unknown[] = Array.isArray(apiKey) ? apiKey : [apiKey];
    if ((typeof apiKey !== 'string' && !Array.isArray(apiKey)) || list.some((k) => typeof k !== 'string' || k === '')) {
      problems.push('apiKey must be a non-empty string or a list of them');
    }
  }
  if (problems.length > 0) throw new TypeError('createMockProvider: ' + problems.join('; '));
}

/**
 * Starts a mock OpenAI + Anthropic provider on loopback.
 *
 * @example
 * const mock = await createMockProvider({ apiKey: 'sk-test-1234567890' });
 * const openai = new OpenAI({ apiKey: 'sk-test-1234567890', baseURL: mock.url + '/v1' });
 * // …
 * await mock.close();
 */
export async function createMockProvider(options: MockProviderOptions = {}): Promise<MockProvider> {
  validateOptions(options);
  const host = options.host ?? '127.0.0.1';
  let expectedValues: string[] | undefined = options.apiKey === undefined
    ? undefined
    : typeof options.apiKey === 'string' ? [options.apiKey] : [...options.apiKey];
  let expectedKeys: Buffer[] | undefined = expectedValues?.map((k) => Buffer.from(k));
  const adminState = newAdminKeyState(options.adminKey);
  const received: ReceivedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let counter = 0;

  const wait = (ms: number, res: ServerResponse): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        timers.delete(timer);
        res.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timers.add(timer);
      res.once('close', done);
    });

  function keyMatches(provider: MockProviderKind, sent: string | undefined): boolean {
    // a key deleted / deactivated through the provider's admin API is refused from then on
    if (sent !== undefined && isRevoked(adminState, provider, sent)) return false;
    if (expectedKeys === undefined) return true;
    if (sent === undefined) return false;
    const got = Buffer.from(sent);
    let ok = false;
    for (const expected of expectedKeys) if (got.length === expected.length && timingSafeEqual(got, expected)) ok = true;
    return ok;
  }

  async function respond(req: IncomingMessage, res: ServerResponse, chunks: Buffer[] | null): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);

    let body: unknown;
    let badJson = false;
    if (chunks !== null && chunks.length > 0) {
      const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        badJson = true;
      }
    }
    received.push({ method, path, headers: req.headers, body });
    if (received.length > MAX_RECEIVED) received.shift();

    const seq = (++counter).toString(36);
    const adminProvider = adminProviderOf(path);
    if (adminProvider !== undefined) {
      const answer = adminAnswer(adminState, {
        provider: adminProvider, method, path, query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)),
        sentKey: sentKeyOf(adminProvider, req), anthropicVersion: headerString(req.headers['anthropic-version']),
        body, badJson, acceptedKeys: expectedValues,
      }, Math.floor(Date.now() / 1000));
      if (answer.kind === 'json') {
        sendJson(res, answer.status, answer.body, NO_FAULTS, {
          ...(adminProvider === 'openai' ? { 'x-request-id': 'req_mock' + seq } : { 'request-id': 'req_mock' + seq }), ...answer.headers,
        });
      }
      return;
    }
    const endpoint = route(method, path, req);
    if (endpoint === undefined) {
      const answer = openaiNotFound(method, path);
      if (answer.kind === 'json') sendJson(res, answer.status, answer.body, NO_FAULTS, { 'x-request-id': 'req_mock' + seq });
      return;
    }
    const provider = endpoint.provider;
    const headers: Record<string, string | number> =
      provider === 'openai' ? { 'x-request-id': 'req_mock' + seq } : { 'request-id': 'req_mock' + seq };
    const send = (answer: MockAnswer, faults: Readonly<Faults>): Promise<void> => {
      if (answer.kind === 'json') {
        if (answer.headers !== undefined) Object.assign(headers, answer.headers);
        sendJson(res, answer.status, answer.body, faults, headers);
        return Promise.resolve();
      }
      return sendStream(res, answer.frames, faults, headers, wait);
    };

    // faults from the header are known before the body is looked at
    let faults: Faults | undefined;
    const faultHeader = headerString(req.headers['x-mock-fault']);
    if (faultHeader !== undefined) faults = parseFaultSpec(faultHeader, noFaults());

    const sentKey = sentKeyOf(provider, req);
    if (!keyMatches(provider, sentKey)) return send(provider === 'openai' ? openaiAuthError(sentKey) : anthropicAuthError(), NO_FAULTS);
    if (provider === 'anthropic' && req.headers['anthropic-version'] === undefined) return send(anthropicMissingVersion(), NO_FAULTS);
    if (chunks === null) {
      return send(
        provider === 'openai'
          ? openaiError(413, 'Request body too large.', 'invalid_request_error', null)
          : anthropicError(413, 'request_too_large', 'Request exceeds the maximum allowed number of bytes.'),
        NO_FAULTS,
      );
    }
    if (badJson) return send(provider === 'openai' ? openaiBadJson() : anthropicBadJson(), NO_FAULTS);

    let scan: TextScan;
    let requestBody: Record<string, unknown>;
    if (endpoint.scan === undefined) {
      scan = newScan();
      requestBody = {};
    } else {
      if (!isRecord(body)) {
        return send(
          provider === 'openai'
            ? openaiError(400, 'The request body must be a JSON object.', 'invalid_request_error', null)
            : anthropicError(400, 'invalid_request_error', 'The request body must be a JSON object.'),
          NO_FAULTS,
        );
      }
      requestBody = body;
      scan = endpoint.scan(body);
      if (scan.directives !== undefined) {
        faults ??= noFaults();
        for (const spec of scan.directives) parseFaultSpec(spec, faults);
      }
    }

    const f: Readonly<Faults> = faults ?? NO_FAULTS;
    if (f.delay !== undefined && f.delay > 0) {
      await wait(f.delay, res);
      if (isGone(res)) return;
    }
    if (f.reset) {
      // no response at all: an RST, as a crashed or cut-off upstream gives
      res.socket?.resetAndDestroy();
      return;
    }
    if (f.redirect) {
      headers['location'] = REDIRECT_LOCATION;
      headers['content-length'] = 0;
      res.writeHead(307, headers);
      res.end();
      return;
    }
    if (f.status !== undefined) return send(statusError(provider, f.status, sentKey), NO_FAULTS);

    return send(endpoint.answer({ body: requestBody, scan, faults: f, seq, now: Math.floor(Date.now() / 1000) }), f);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooBig = true;
      else chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      respond(req, res, tooBig ? null : chunks).catch(() => {
        // a bug in the mock: answer 500 if still possible, else drop the connection
        if (!res.headersSent && !isGone(res)) {
          sendJson(res, 500, '{"error":{"message":"mock provider failure","type":"server_error","param":null,"code":null}}', NO_FAULTS, {});
        } else res.destroy();
      });
    });
  });
  // keep pooled client connections open well past a benchmark's pauses
  server.keepAliveTimeout = 60_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('createMockProvider: no TCP address');
  const port = address.port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    received,
    reset(): void {
      received.length = 0;
    },
    setApiKeys(keys: readonly string[]): void {
      if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string' || k === '')) throw new TypeError('setApiKeys: keys must be non-empty strings');
      expectedValues = [...keys];
      expectedKeys = keys.map((k) => Buffer.from(k));
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
