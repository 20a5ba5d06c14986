import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingMessage, Server } from 'node:http';
import { GatewayError, errorBody, type ErrorDialect } from '../errors/index.js';
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
import { createHttpServer, refuseConnection, type HttpServerTls } from './http-server.js';
import { presentedCertificate, type ClientCertAuthenticator } from '../auth/client-cert.js';
import type { AdmissionStage } from '../quota/admission.js';
import type { DlpStage } from '../dlp/stage.js';

declare module 'fastify' {
  interface FastifyRequest {
    kw: RequestContext;
  }
}

export interface ReadinessCheck {
  name: string;
  check(): Promise<string | null> | string | null;
}

export interface PublicAppOptions {
  authenticate: Authenticator;
  proxy: Proxy;
  /** The admit stage; undefined when quotas are not wired (tests of the bare path). */
  admission?: AdmissionStage;
  /** The dlp stage (prompt DLP, between validate and admit); undefined when not wired (every request passes as sent). */
  dlp?: DlpStage;
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

/**
 * The public listener: the OpenAI- and Anthropic-compatible routes, health and readiness.
 *
 * Authentication runs as a hook of each matched route, so it is decided on the same path the
 * router dispatched; there is no global prefix check a crafted path could slip past. Unknown
 * routes are 404 before anything else happens.
 */
export function createPublicApp(options: PublicAppOptions): FastifyInstance {
  const { authenticate, proxy, logger, admission, dlp } = options;

  /** Settle (reservation → real usage and cost), then record: the last two stages, once per request. */
  function settleAndRecord(ctx: RequestContext): void {
    proxy.fingerprint(ctx);
    if (ctx.admission) {
      const billed = ctx.admission.settle(ctx.usage, ctx.upstreamAccepted);
      // the ledger holds what the counters were charged, so a restart rebuilds the same totals
      ctx.usage = billed.usage;
      ctx.costNanoUsd = billed.costNanoUsd;
    }
    else if (admission && ctx.upstreamModel !== null) ctx.costNanoUsd = admission.costOf(ctx.upstreamModel, ctx.usage);
    options.record(ctx);
  }
  const record = settleAndRecord;
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => createHttpServer({ maxHeaderBytes: options.maxHeaderBytes }, handler, options.tls),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    requestIdHeader: false,
    exposeHeadRoutes: false,
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, maxParamLength: 128 },
    // a URL the router cannot decode is answered before any hook: in the endpoint's shape, never echoing the path
    frameworkErrors: (_err, request, reply) => {
      const error = new GatewayError('request_invalid', 'the request URL could not be read');
      void (reply as FastifyReply).code(error.status).header('x-request-id', request.id).header('content-type', 'application/json')
        .send(JSON.stringify(errorBody(error, dialectForPath(request.url) as ErrorDialect, request.id)));
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    bodyLimit: 64 * 1_048_576,
  });
  app.decorateRequest('kw', null as unknown as RequestContext);

  // every answer, errors included, carries the request id; header count is bounded
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    request.kw = newRequestContext(request.id, dialectForPath(request.url), performance.now(), request.raw.socket.remoteAddress ?? '');
    const refusal = checkRequestHeaders(request.raw, options.maxHeaders);
    if (refusal) {
      // the framing cannot be trusted: answer, then close, and parse nothing more from this connection
      refuseConnection(request.raw.socket);
      reply.header('connection', 'close');
    }
    done(refusal);
  });

  // the body is read by us, with the authenticated tenant's size limit, for any content type
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (request: FastifyRequest, payload, done) => {
    const type = request.headers['content-type'] ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      payload.resume();
      done(new GatewayError('request_unsupported_media_type', 'send the request body as application/json'), undefined);
      return;
    }
    if (!request.kw.principal) {
      // no authenticated route took this request (404, 405): its body is never parsed
      discardBody(request.raw);
      done(null, undefined);
      return;
    }
    const limit = request.kw.principal.policy.maxBodyBytes;
    readJsonBody(request.raw, limit).then((body) => done(null, body), (err: Error) => done(err, undefined));
  });

  /**
   * Client certificates (mutual TLS) come first: in `require` mode the certificate is the only
   * credential (a header is ignored for identity); in `optional` mode a presented certificate
   * must verify (never a fallback to a header after a bad one) and without one the key or JWT decides.
   */
  async function authenticateRequest(request: FastifyRequest, credential: string | undefined): Promise<Principal> {
    const certs = options.clientCertificates;
    if (certs) {
      const certificate = presentedCertificate(request.raw.socket);
      if (certificate || certs.mode === 'require') return certs.authenticate(certificate);
    }
    return authenticate(credential);
  }

  async function authHook(request: FastifyRequest): Promise<void> {
    const sent = credentialHeaders(request.raw.rawHeaders);
    const credential = extractCredential(sent.authorization, sent.apiKey);
    const limiter = options.authFailures;
    if (!limiter) {
      request.kw.principal = await authenticateRequest(request, credential);
      return;
    }
    // limited before verifying: a guesser gets no HMAC or store work and learns nothing of its guess
    const address = request.raw.socket.remoteAddress ?? '';
    const keyId = tenantKeyIdOf(credential);
    limiter.check(address);
    const keyBlockedMs = limiter.keyBlockedMs(keyId);
    try {
      request.kw.principal = await authenticateRequest(request, credential);
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

  for (const route of PROVIDER_ROUTES) registerProviderRoute(app, route);

  function registerProviderRoute(instance: FastifyInstance, route: ProviderRoute): void {
    instance.route({
      method: 'POST',
      url: route.path,
      config: { dialect: route.dialect },
      onRequest: [
        async (request) => {
          request.kw.dialect = route.dialect;
          request.kw.endpoint = route.endpoint;
        },
        authHook,
      ],
      handler: async (request, reply) => {
        const ctx = request.kw;
        if (request.body === undefined) throw new GatewayError('request_invalid_json', 'the request body must be a JSON object');
        const validated = proxy.validate(ctx, route.endpoint, request.body, request.headers);
        // dlp: mask or block secrets and personal data before admission, so the token estimate,
        // a content sample and the provider all see the masked body (streamed requests too)
        const prepared = dlp ? dlp.run(ctx, validated) : validated;
        const principal = ctx.principal as Principal;
        if (admission && !admission.unlimited(principal)) {
          ctx.admission = await admission.admit(principal, {
            endpoint: route.endpoint, providerType: prepared.target.adapter.type, upstreamModel: prepared.request.upstreamModel,
            body: prepared.request.body, maxOutputTokens: prepared.request.maxOutputTokens,
          });
          void reply.headers(ctx.admission.headers);
        }
        const abort = new RequestAbort();
        // a client that goes away cancels the upstream call
        const onClose = () => {
          if (!reply.raw.writableFinished) abort.abort();
        };
        reply.raw.once('close', onClose);
        if (prepared.request.stream) {
          let started = false;
          try {
            await proxy.stream(ctx, prepared, reply.raw, abort, () => {
              started = true;
              reply.hijack();
            });
          } catch (err) {
            if (!started && !abort.signal.aborted) throw err;
            if (abort.signal.aborted) {
              // the client left before the provider answered: recorded, not blamed on the provider
              ctx.status = 499;
              ctx.outcome = 'client_aborted';
              ctx.errorCode = null;
              if (!started) reply.hijack();
            } else {
              logger.error({ err, requestId: ctx.requestId }, 'stream relay failed');
            }
            reply.raw.destroy();
          }
          record(ctx);
          return reply;
        }
        let answer;
        try {
          answer = await proxy.whole(ctx, prepared, abort.signal);
        } catch (err) {
          if (!abort.signal.aborted) throw err;
          // the client left: nothing to answer, but the attempt is still recorded
          ctx.status = 499;
          ctx.outcome = 'client_aborted';
          record(ctx);
          return reply.hijack();
        }
        ctx.status = answer.status;
        reply
          .code(answer.status)
          .header('content-type', 'application/json')
          .header('x-keywarden-input-tokens', String(answer.usage.inputTokens))
          .header('x-keywarden-output-tokens', String(answer.usage.outputTokens));
        // answer first: settling, logging and queueing the records need not delay the client
        reply.send(answer.body);
        record(ctx);
        return reply;
      },
    });
    // the right path with the wrong method: say so, without authenticating
    instance.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url: route.path,
      handler: async () => {
        throw new GatewayError('method_not_allowed', `use POST ${route.path}`);
      },
    });
  }

  app.get('/v1/models', { onRequest: authHook }, async (request, reply) => {
    const principal = request.kw.principal as Principal;
    const allowed = principal.policy.models.filter((name) => Object.hasOwn(options.models, name));
    request.kw.status = 200;
    options.record(request.kw);
    if (typeof request.headers['anthropic-version'] === 'string') {
      const data = allowed.map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' }));
      return reply.send({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null });
    }
    return reply.send({
      object: 'list',
      data: allowed.map((id) => ({ id, object: 'model', created: 0, owned_by: (options.models[id] as ModelRoute).provider })),
    });
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const checks: Record<string, string> = {};
    let ready = true;
    for (const check of options.readiness) {
      let problem: string | null;
      try {
        problem = await check.check();
      } catch {
        problem = 'check failed';
      }
      checks[check.name] = problem ?? 'ok';
      if (problem !== null) ready = false;
    }
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
  });

  app.setNotFoundHandler(async (request) => {
    throw new GatewayError('route_not_found', 'no such route', { param: undefined });
  });

  app.setErrorHandler(async (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const ctx = request.kw ?? newRequestContext(request.id, dialectForPath(request.url), performance.now());
    const gatewayError = toClientError(err);
    if (gatewayError.code === 'internal_error') logger.error({ err, requestId: ctx.requestId }, 'unexpected error');
    ctx.status = gatewayError.status;
    ctx.errorCode = gatewayError.code;
    ctx.outcome = gatewayError.code.startsWith('upstream_') ? 'upstream_error' : 'refused';
    if (gatewayError.retryAfterSeconds !== undefined) reply.header('retry-after', String(gatewayError.retryAfterSeconds));
    // rate-limit headers: from the admission, or from the refusal itself
    let rate = ctx.admission?.headers ?? (err as { headers?: Record<string, string> }).headers;
    // refused before admission (policy, validation): a limited tenant still learns where it stands
    if (!rate && ctx.principal && admission && !admission.unlimited(ctx.principal)) rate = await admission.currentHeaders(ctx.principal);
    if (rate) void reply.headers(rate);
    if (request.routeOptions.url !== undefined || ctx.principal) record(ctx);
    return reply.code(gatewayError.status).header('content-type', 'application/json').send(JSON.stringify(errorBody(gatewayError, ctx.dialect as ErrorDialect, ctx.requestId)));
  });

  return app;
}

/**
 * Header checks before routing: Node's parser already refuses `Content-Length` with
 * `Transfer-Encoding` and duplicate lengths; here a missing `Host`, too many headers, a transfer
 * coding other than plain `chunked` (which Node would half-decode) and an encoded body
 * (never decompressed, so never parsed as if plain) are refused.
 */
function checkRequestHeaders(req: IncomingMessage, maxHeaders: number): GatewayError | undefined {
  if (req.rawHeaders.length / 2 > maxHeaders) return new GatewayError('request_header_invalid', 'too many request headers');
  if (req.headers.host === undefined) return new GatewayError('request_header_invalid', 'the Host header is required');
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return new GatewayError('request_header_invalid', 'only Transfer-Encoding: chunked is accepted');
  const ce = req.headers['content-encoding'];
  if (ce !== undefined && ce.trim().toLowerCase() !== 'identity') return new GatewayError('request_unsupported_media_type', 'compressed request bodies are not accepted');
  return undefined;
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
  const code = (err as { code?: string }).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new GatewayError('request_body_too_large', 'the request body is too large');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new GatewayError('request_unsupported_media_type', 'send the request body as application/json');
  if (typeof status === 'number' && status >= 400 && status < 500) return new GatewayError('request_invalid', 'the request could not be processed');
  return new GatewayError('internal_error', 'the gateway failed to process the request', { cause: err });
}

export type { Server };
