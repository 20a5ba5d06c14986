import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import { ERROR_CODES, GatewayError, errorBody, type ErrorDialect } from '../errors/index.js';
import type { Authenticator } from '../auth/authenticate.js';
import { credentialHeaders, extractCredential } from '../auth/credentials.js';
import { tenantKeyIdOf, type AuthFailureLimiter } from '../auth/failure-limiter.js';
import type { Principal } from '../auth/types.js';
import type { ModelRoute } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import { readJsonBody } from './body-reader.js';
import { requestIdFrom } from './request-id.js';
import { PROVIDER_ROUTES, dialectForPath, type ProviderRoute } from './routes.js';
import { newRequestContext, type Proxy, type RequestContext } from './proxy.js';
import { RequestAbort } from './request-abort.js';
import { createHttpServer, isRefusedConnection, refuseConnection, type HttpServerTls } from './http-server.js';
import { presentedCertificate, type ClientCertAuthenticator } from '../auth/client-cert.js';
import type { AdmissionStage } from '../quota/admission.js';
import type { DlpStage } from '../dlp/stage.js';
import type { ResponseOwners } from '../services/response-owners.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<string | null> | string | null;
  /** A failure of this check leaves the gateway serving part of its traffic: `degraded` (200), not `not_ready` (503). */
  degrades?: boolean;
}

export interface PublicAppOptions {
  authenticate: Authenticator;
  proxy: Proxy;
  /** The admit stage; undefined when quotas are not wired (tests of the bare path). */
  admission?: AdmissionStage;
  /** The dlp stage (prompt DLP, between validate and admit); undefined when not wired (every request passes as sent). */
  dlp?: DlpStage;
  /** The response-ownership stage (previous_response_id must name the tenant's own response); undefined when not wired. */
  responseOwners?: Pick<ResponseOwners, 'check'>;
  /** Slows credential guessing (auth.failure_limits); undefined when turned off. */
  authFailures?: AuthFailureLimiter;
  record(ctx: RequestContext): void;
  models: Readonly<Record<string, ModelRoute>>;
  readiness: readonly ReadinessCheck[];
  logger: Logger;
  maxHeaderBytes: number;
  maxHeaders: number;
  /** TLS on this listener (PEM text); unset, plain HTTP. */
  tls?: HttpServerTls;
  /** Client certificate authentication (with `tls.clientCa`): `require` or `optional`, and the mapping to tenants. */
  clientCertificates?: { mode: 'require' | 'optional'; authenticate: ClientCertAuthenticator };
}

/** The public listener: its Node server, and start and stop. */
export interface PublicApp {
  readonly server: Server;
  /** Listens and returns the URL it bound (`http://127.0.0.1:8080`). */
  listen(address: { host: string; port: number }): Promise<string>;
  /** Stops taking connections, answers new requests on open ones 503, and resolves once every connection has ended. */
  close(): Promise<void>;
  /**
   * Closes every connection, requests in flight included (the shutdown drain ran out): such a
   * request is recorded `ended_at_shutdown` / `shutdown_drain_timeout`, not as the client's abort.
   */
  endInFlight(): void;
}

/** Requests whose body the JSON reader took over (it drains a refused one itself). */
const bodiesTaken = new WeakSet<IncomingMessage>();

/** Methods that name a provider route's path without being POST: 405, without authenticating. */
const OTHER_METHODS: ReadonlySet<string> = new Set(['GET', 'PUT', 'DELETE', 'PATCH']);

/**
 * The public listener: the OpenAI- and Anthropic-compatible routes, health and readiness.
 *
 * Plain node:http with a table of exact paths, not a framework router: this is the hot path, and
 * a request is authorised on the very string it is dispatched on (the path before `?`, byte for
 * byte: no decoding, no case folding, no slash merging), so there is no second interpretation a
 * crafted path could slip between. Unknown routes are 404 before anything else happens; a path
 * that is not valid percent-encoding is 400. (The admin listener, off the hot path, uses Fastify.)
 */
export function createPublicApp(options: PublicAppOptions): PublicApp {
  const { authenticate, proxy, logger, admission, dlp } = options;
  const providerRoutes = new Map<string, ProviderRoute>(PROVIDER_ROUTES.map((route) => [route.path, route]));
  let closing = false;
  let endingInFlight = false;

  /** Settle (reservation → real usage and cost), then record: the last two stages, once per request. */
  function record(ctx: RequestContext): void {
    // settle first: whatever happens after, the reservation (and a concurrency slot) is released
    if (ctx.admission) {
      const billed = ctx.admission.settle(ctx.usage, ctx.upstreamAccepted);
      // the ledger holds what the counters were charged, so a restart rebuilds the same totals
      ctx.usage = billed.usage;
      ctx.costNanoUsd = billed.costNanoUsd;
    }
    else if (admission && ctx.upstreamModel !== null) ctx.costNanoUsd = admission.costOf(ctx.upstreamModel, ctx.usage);
    proxy.fingerprint(ctx);
    options.record(ctx);
  }

  const server = createHttpServer({ maxHeaderBytes: options.maxHeaderBytes }, (req, res) => {
    // handle answers every error itself; should that ever fail, the request ends here, not the process
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'request handling failed');
      res.destroy();
    });
  }, options.tls);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // a request behind a refused one on the same connection: parsed from untrusted framing, never acted on
    if (isRefusedConnection(req.socket)) return;
    const path = routePath(req.url ?? '/');
    const ctx = newRequestContext(requestIdFrom(req.headers['x-request-id']), dialectForPath(path ?? req.url ?? '/'), performance.now(), req.socket.remoteAddress ?? '');
    // errors on a route that exists are recorded; probes of unknown paths are not
    let routed = false;
    try {
      if (closing) {
        res.setHeader('connection', 'close');
        throw new GatewayError('service_unavailable', 'the gateway is shutting down');
      }
      const route = path === null ? undefined : providerRoutes.get(path);
      const refusal = checkRequestHeaders(req, options.maxHeaders);
      if (refusal) {
        // the framing cannot be trusted: answer, then close, and parse nothing more from this connection
        refuseConnection(req.socket);
        res.setHeader('connection', 'close');
        // an attempt on a real route is logged (and counted) like any refusal there; a probe of an unknown path is not
        routed = isRouted(route, req.method, path);
        throw refusal;
      }
      if (path === null) throw new GatewayError('request_invalid', 'the request URL could not be read');
      if (route !== undefined && req.method === 'POST') {
        routed = true;
        ctx.dialect = route.dialect;
        ctx.endpoint = route.endpoint;
        await providerRequest(req, res, ctx, route);
        return;
      }
      if (route !== undefined && OTHER_METHODS.has(req.method ?? '')) {
        // the right path with the wrong method: say so, without authenticating
        routed = true;
        throw new GatewayError('method_not_allowed', `use POST ${route.path}`);
      }
      if (req.method === 'GET') {
        if (path === '/v1/models') {
          routed = true;
          await listModels(req, res, ctx);
          return;
        }
        if (path === '/healthz') {
          routed = true;
          // nobody reads a body sent here: drained up to a bound, never for as long as the client sends
          discardBody(req);
          sendJson(res, ctx, 200, { status: 'ok' });
          return;
        }
        if (path === '/readyz') {
          routed = true;
          discardBody(req);
          await readiness(res, ctx);
          return;
        }
      }
      throw new GatewayError('route_not_found', 'no such route', { param: undefined });
    } catch (err) {
      await answerError(req, res, ctx, err, routed);
    }
  }

  /**
   * Client certificates (mutual TLS) come first: in `require` mode the certificate is the only
   * credential (a header is ignored for identity); in `optional` mode a presented certificate
   * must verify (never a fallback to a header after a bad one) and without one the key or JWT decides.
   */
  async function authenticateRequest(req: IncomingMessage, credential: string | undefined): Promise<Principal> {
    const certs = options.clientCertificates;
    if (certs) {
      const certificate = presentedCertificate(req.socket);
      if (certificate || certs.mode === 'require') return certs.authenticate(certificate);
    }
    return authenticate(credential);
  }

  async function authenticateCaller(req: IncomingMessage, ctx: RequestContext): Promise<Principal> {
    const sent = credentialHeaders(req.rawHeaders);
    const credential = extractCredential(sent.authorization, sent.apiKey);
    const limiter = options.authFailures;
    if (!limiter) return (ctx.principal = await authenticateRequest(req, credential));
    // limited before verifying: a guesser gets no HMAC or store work and learns nothing of its guess
    const address = req.socket.remoteAddress ?? '';
    const keyId = tenantKeyIdOf(credential);
    limiter.check(address);
    const keyBlockedMs = limiter.keyBlockedMs(keyId);
    try {
      return (ctx.principal = await authenticateRequest(req, credential));
    } catch (err) {
      // every refused credential counts, none sent included (cheap probing); a store outage does not
      if (err instanceof GatewayError && err.status === 401) {
        limiter.fail(address, keyId);
        // a limited key id: wrong secrets get the 429, the right one still got in above
        if (keyBlockedMs > 0) throw limiter.refusal(keyBlockedMs);
      }
      throw err;
    }
  }

  /**
   * The body, read by us with the authenticated tenant's size limit, for any content type: JSON
   * only (415 otherwise); a request without a body is refused by the handler as not a JSON object.
   */
  async function readBody(req: IncomingMessage, principal: Principal): Promise<unknown> {
    const te = req.headers['transfer-encoding'];
    const cl = req.headers['content-length'];
    const type = req.headers['content-type'];
    if (te === undefined && (cl === undefined || (cl === '0' && type === undefined))) return undefined;
    if (!/^application\/json\s*(;|$)/i.test(type ?? '')) throw new GatewayError('request_unsupported_media_type', 'send the request body as application/json');
    // from here the reader owns the body: on a refusal it drains it itself
    bodiesTaken.add(req);
    return readJsonBody(req, principal.policy.maxBodyBytes);
  }

  /** authenticate → read → validate → ownership → dlp → admit → forward → relay, then settle and record. */
  async function providerRequest(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: ProviderRoute): Promise<void> {
    const principal = await authenticateCaller(req, ctx);
    const body = await readBody(req, principal);
    if (body === undefined) throw new GatewayError('request_invalid_json', 'the request body must be a JSON object');
    const validated = proxy.validate(ctx, route.endpoint, body, req.headers);
    // a Responses request chaining on an earlier answer must name one relayed to this tenant
    // (no promise at all when nothing is chained: the hot path takes no extra turn)
    const ownership = options.responseOwners?.check(principal.tenantId, validated);
    if (ownership) await ownership;
    // dlp: mask or block secrets and personal data before admission, so the token estimate,
    // a content sample and the provider all see the masked body (streamed requests too)
    const prepared = dlp ? dlp.run(ctx, validated) : validated;
    if (admission && !admission.unlimited(principal)) {
      ctx.admission = await admission.admit(principal, {
        endpoint: route.endpoint, providerType: prepared.target.adapter.type, upstreamModel: prepared.request.upstreamModel,
        body: prepared.request.body, maxOutputTokens: prepared.request.maxOutputTokens,
      });
    }
    const abort = new RequestAbort();
    // set when the connection was closed by the gateway at the end of the shutdown drain
    let endedAtShutdown = false;
    // a client that goes away cancels the upstream call
    res.once('close', () => {
      if (res.writableFinished) return;
      endedAtShutdown = endingInFlight;
      abort.abort();
    });
    // one that left while it was being admitted (a store round trip) is already gone: no provider call for it
    if (res.destroyed || req.socket.destroyed) {
      endedAtShutdown = endingInFlight;
      abort.abort();
    }
    if (prepared.request.stream) {
      let started = false;
      try {
        await proxy.stream(ctx, prepared, res, abort, () => {
          started = true;
        });
      } catch (err) {
        if (!started && !abort.signal.aborted) throw err;
        if (abort.signal.aborted) {
          // the client left before the provider answered: recorded, not blamed on the provider
          ctx.status = 499;
          ctx.outcome = 'client_aborted';
          ctx.errorCode = null;
        } else {
          logger.error({ err, requestId: ctx.requestId }, 'stream relay failed');
        }
        res.destroy();
      }
      if (endedAtShutdown) markEndedAtShutdown(ctx, res);
      record(ctx);
      return;
    }
    let answer;
    try {
      answer = await proxy.whole(ctx, prepared, abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) throw err;
      // the client left: nothing to answer, but the attempt is still recorded
      ctx.status = 499;
      ctx.outcome = 'client_aborted';
      if (endedAtShutdown) markEndedAtShutdown(ctx, res);
      record(ctx);
      return;
    }
    ctx.status = answer.status;
    const headers: OutgoingHttpHeaders = {
      'x-request-id': ctx.requestId,
      'content-type': 'application/json',
      'content-length': answer.body.length,
      'x-keywarden-input-tokens': String(answer.usage.inputTokens),
      'x-keywarden-output-tokens': String(answer.usage.outputTokens),
    };
    if (ctx.admission) Object.assign(headers, ctx.admission.headers);
    // answer first: settling, logging and queueing the records need not delay the client
    res.writeHead(answer.status, headers);
    res.end(answer.body);
    record(ctx);
  }

  async function listModels(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const principal = await authenticateCaller(req, ctx);
    discardBody(req);
    const allowed = principal.policy.models.filter((name) => Object.hasOwn(options.models, name));
    ctx.status = 200;
    options.record(ctx);
    if (typeof req.headers['anthropic-version'] === 'string') {
      const data = allowed.map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' }));
      sendJson(res, ctx, 200, { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null });
      return;
    }
    sendJson(res, ctx, 200, {
      object: 'list',
      data: allowed.map((id) => ({ id, object: 'model', created: 0, owned_by: (options.models[id] as ModelRoute).provider })),
    });
  }

  async function readiness(res: ServerResponse, ctx: RequestContext): Promise<void> {
    const checks: Record<string, string> = {};
    let ready = true;
    let degraded = false;
    for (const check of options.readiness) {
      let problem: string | null;
      try {
        problem = await check.check();
      } catch {
        problem = 'check failed';
      }
      checks[check.name] = problem ?? 'ok';
      if (problem !== null) {
        if (check.degrades) degraded = true;
        else ready = false;
      }
    }
    sendJson(res, ctx, ready ? 200 : 503, { status: ready ? (degraded ? 'degraded' : 'ready') : 'not_ready', checks });
  }

  /** The one error answer: a coded error in the endpoint's shape, rate-limit headers, and the record. */
  async function answerError(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, err: unknown, routed: boolean): Promise<void> {
    // a body nobody read is drained (bounded), so the connection stays usable for the next request
    if (!req.readableEnded && !bodiesTaken.has(req)) discardBody(req);
    // a body the reader gave up on (too large, cut short) is not drained to its end: the answer closes the connection
    else if (!req.complete && bodiesTaken.has(req) && !res.headersSent) res.setHeader('connection', 'close');
    const gatewayError = toClientError(err);
    if (gatewayError.code === 'internal_error') logger.error({ err, requestId: ctx.requestId }, 'unexpected error');
    ctx.status = gatewayError.status;
    ctx.errorCode = gatewayError.code;
    ctx.outcome = gatewayError.code.startsWith('upstream_') ? 'upstream_error' : 'refused';
    const headers: OutgoingHttpHeaders = {};
    if (gatewayError.retryAfterSeconds !== undefined) headers['retry-after'] = String(gatewayError.retryAfterSeconds);
    // rate-limit headers: from the admission, or from the refusal itself
    let rate = ctx.admission?.headers ?? (err as { headers?: Record<string, string> }).headers;
    try {
      // refused before admission (policy, validation): a limited tenant still learns where it stands
      if (!rate && ctx.principal && admission && !admission.unlimited(ctx.principal)) rate = await admission.currentHeaders(ctx.principal);
    } catch {
      // the counters are unreachable: the refusal stands without them
    }
    if (rate) Object.assign(headers, rate);
    if (res.writableEnded) {
      // the answer is out (a failure while recording it): nothing to tell the client
      logger.error({ err, requestId: ctx.requestId }, 'failed after answering');
      return;
    }
    if (routed || ctx.principal) record(ctx);
    if (res.headersSent) {
      // a stream already under way cannot change its status: end it
      res.destroy();
      return;
    }
    sendJson(res, ctx, gatewayError.status, errorBody(gatewayError, ctx.dialect as ErrorDialect, ctx.requestId), headers);
  }

  return {
    server,
    listen({ host, port }) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.removeListener('error', onError);
          const address = server.address();
          if (address === null || typeof address === 'string') return resolve(`http://${host}:${port}`);
          const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve(`http://${shown}:${address.port}`);
        });
      });
    },
    endInFlight() {
      endingInFlight = true;
      server.closeAllConnections();
    },
    close() {
      closing = true;
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        // idle keep-alive connections would hold the close open until their timeout
        server.closeIdleConnections();
      });
    },
  };
}

/**
 * A request cut by the gateway itself (the shutdown drain ran out), recorded as such rather than
 * as the client's abort. Its status is what the client got: 200 for a stream already under way
 * (as a broken stream is), 503 otherwise. Only an abort that took effect is relabelled (a request
 * that had finished as the connections closed keeps its outcome).
 */
function markEndedAtShutdown(ctx: RequestContext, res: ServerResponse): void {
  if (ctx.outcome !== 'client_aborted') return;
  ctx.outcome = 'ended_at_shutdown';
  ctx.errorCode = 'shutdown_drain_timeout';
  ctx.status = res.headersSent ? 200 : ERROR_CODES.shutdown_drain_timeout.status;
}

/** Whether a method and path name one of the listener's routes (what the route table would dispatch). */
function isRouted(route: ProviderRoute | undefined, method: string | undefined, path: string | null): boolean {
  if (route !== undefined) return method === 'POST' || OTHER_METHODS.has(method ?? '');
  return method === 'GET' && (path === '/v1/models' || path === '/healthz' || path === '/readyz');
}

/** Sends a JSON answer with the request id (every answer carries it). */
function sendJson(res: ServerResponse, ctx: RequestContext, status: number, value: unknown, extra?: OutgoingHttpHeaders): void {
  const text = JSON.stringify(value);
  const headers: OutgoingHttpHeaders = { ...extra, 'x-request-id': ctx.requestId, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) };
  res.writeHead(status, headers);
  res.end(text);
}

const UNRESERVED_ESCAPE = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * The path a request is routed and authorised on: the target before `?` or `#`, with escapes of
 * unreserved characters decoded (`/%76%31/chat/completions` is `/v1/chat/completions` by RFC 3986).
 * Any other escape stays as sent, so `%2F`, `%2e%2e`-made dot segments or `%00` never match a
 * route. Null when the path is not valid percent-encoded UTF-8.
 */
function routePath(url: string): string | null {
  let end = url.length;
  const query = url.indexOf('?');
  if (query !== -1) end = query;
  const fragment = url.indexOf('#');
  if (fragment !== -1 && fragment < end) end = fragment;
  const path = end === url.length ? url : url.slice(0, end);
  if (!path.includes('%')) return path;
  try {
    decodeURIComponent(path);
  } catch {
    return null;
  }
  return path.replace(UNRESERVED_ESCAPE, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)));
}

/**
 * Header checks before routing: Node's parser already refuses `Content-Length` with
 * `Transfer-Encoding` and duplicate lengths; here a missing or repeated `Host`, too many headers, a transfer
 * coding other than plain `chunked` (which Node would half-decode) and an encoded body
 * (never decompressed, so never parsed as if plain) are refused.
 */
function checkRequestHeaders(req: IncomingMessage, maxHeaders: number): GatewayError | undefined {
  if (req.rawHeaders.length / 2 > maxHeaders) return new GatewayError('request_header_invalid', 'too many request headers');
  if (req.headers.host === undefined) return new GatewayError('request_header_invalid', 'the Host header is required');
  // Node keeps the first of several Host headers; a proxy in front may have used another (RFC 9112 §3.2: 400)
  if (hostHeaderCount(req.rawHeaders) > 1) return new GatewayError('request_header_invalid', 'send exactly one Host header');
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return new GatewayError('request_header_invalid', 'only Transfer-Encoding: chunked is accepted');
  const ce = req.headers['content-encoding'];
  if (ce !== undefined && ce.trim().toLowerCase() !== 'identity') return new GatewayError('request_unsupported_media_type', 'compressed request bodies are not accepted');
  return undefined;
}

function hostHeaderCount(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') count += 1;
  }
  return count;
}

const MAX_DISCARDED_BODY_BYTES = 65_536;

/** Drains the body of a request nobody will read, closing the connection if it is large. */
function discardBody(req: IncomingMessage): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > MAX_DISCARDED_BODY_BYTES) req.socket.destroy();
  });
  req.resume();
}

/** Turns anything thrown on the request path into a safe, coded error for the client. */
function toClientError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const status = (err as { statusCode?: number }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return new GatewayError('request_invalid', 'the request could not be processed');
  return new GatewayError('internal_error', 'the gateway failed to process the request', { cause: err });
}

