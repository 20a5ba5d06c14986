import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { GatewayError, errorBody } from '../errors/index.js';
import type { TenantService } from '../services/tenant-service.js';
import { ServiceError } from '../services/tenant-service.js';
import type { Logger } from '../log/logger.js';
import { parseDuration } from '../config/duration.js';
import { requestIdFrom } from '../server/request-id.js';
import { createHttpServer } from '../server/http-server.js';
import type { Metrics } from '../metrics/registry.js';
import type { SampleReader } from '../audit/sampling.js';
import type { IncidentService } from '../services/incident-service.js';

export interface AdminAppOptions {
  /** The admin token's value, loaded from its secret reference. */
  token: string;
  tenants: TenantService;
  logger: Logger;
  /** Served at `GET /metrics` (behind the admin token like every route); refused admin tokens are counted. */
  metrics?: Pick<Metrics, 'render' | 'contentType' | 'adminAuthFailed'>;
  /** `GET /admin/samples/:request_id` (only when content sampling is configured); each read is audited. */
  readSample?: SampleReader;
  /** Incident response: contain, investigate, report (the same service as `keywarden incident`). */
  incidents?: IncidentService;
}

const ACTOR = 'admin-api';

/**
 * The admin listener (loopback by default): tenant and tenant-key management under `/admin/…`
 * and Prometheus metrics at `/metrics`, guarded by the admin token. Deny by default: every
 * route checks the token before anything else, and unknown routes are 404 after that check.
 * It calls services, never a store.
 */
export function createAdminApp(options: AdminAppOptions): FastifyInstance {
  const { tenants, logger, metrics } = options;
  const tokenDigest = createHash('sha256').update(options.token).digest();
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => createHttpServer({ maxHeaderBytes: 16_384 }, handler),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    requestIdHeader: false,
    exposeHeadRoutes: false,
    bodyLimit: 65_536,
    forceCloseConnections: 'idle',
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    const header = request.headers.authorization;
    const presented = typeof header === 'string' ? /^Bearer +(\S+)$/i.exec(header)?.[1] : undefined;
    // compare digests so length does not leak and the comparison is constant-time
    const ok = presented !== undefined && timingSafeEqual(createHash('sha256').update(presented).digest(), tokenDigest);
    if (!ok) {
      metrics?.adminAuthFailed();
      throw new GatewayError('admin_unauthorized', 'a valid admin token is required');
    }
  });

  if (metrics) {
    // the scraper sends the admin token too: metrics name tenants and models, so they are not public
    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.render();
      return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(text);
    });
  }

  app.get('/admin/tenants', async () => ({ data: await tenants.listTenants() }));
  app.post('/admin/tenants', async (request, reply) => {
    const body = objectBody(request.body);
    const name = body['name'];
    if (typeof name !== 'string') throw new GatewayError('admin_invalid_request', '"name" is required', { param: 'name' });
    return reply.code(201).send(await tenants.createTenant(name, ACTOR, body['policy']));
  });
  app.get<{ Params: { name: string } }>('/admin/tenants/:name', async (request) => tenants.getTenant(request.params.name));
  app.post<{ Params: { name: string } }>('/admin/tenants/:name/disable', async (request) => tenants.setTenantStatus(request.params.name, 'disabled', ACTOR));
  app.post<{ Params: { name: string } }>('/admin/tenants/:name/enable', async (request) => tenants.setTenantStatus(request.params.name, 'active', ACTOR));
  app.put<{ Params: { name: string } }>('/admin/tenants/:name/policy', async (request) => tenants.setTenantPolicy(request.params.name, objectBody(request.body)['policy'] ?? null, ACTOR));

  app.put<{ Params: { name: string } }>('/admin/tenants/:name/limits', async (request) => {
    const body = objectBody(request.body);
    const changes: { limits?: Record<string, unknown>; key_limits?: Record<string, unknown> } = {};
    for (const field of ['limits', 'key_limits'] as const) {
      const value = body[field];
      if (value === undefined) continue;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new GatewayError('admin_invalid_request', `"${field}" must be an object`, { param: field });
      changes[field] = value as Record<string, unknown>;
    }
    if (!changes.limits && !changes.key_limits) throw new GatewayError('admin_invalid_request', 'give "limits" and/or "key_limits"');
    return tenants.setTenantLimits(request.params.name, changes, ACTOR);
  });
  app.put<{ Params: { id: string } }>('/admin/keys/:id/limits', async (request) => {
    const limits = objectBody(request.body)['limits'];
    if (limits !== null && (typeof limits !== 'object' || Array.isArray(limits))) throw new GatewayError('admin_invalid_request', '"limits" must be an object or null', { param: 'limits' });
    return tenants.setKeyLimits(request.params.id, limits as Record<string, unknown> | null, ACTOR);
  });
  app.post<{ Params: { name: string } }>('/admin/tenants/:name/keys', async (request, reply) => {
    const body = request.body === undefined ? {} : objectBody(request.body);
    const expires = body['expires_in'];
    let expiresInMs: number | undefined;
    if (expires !== undefined) {
      expiresInMs = typeof expires === 'string' ? parseDuration(expires) : undefined;
      if (expiresInMs === undefined) throw new GatewayError('admin_invalid_request', '"expires_in" must be a duration such as 30d', { param: 'expires_in' });
    }
    const label = body['label'];
    if (label !== undefined && typeof label !== 'string') throw new GatewayError('admin_invalid_request', '"label" must be a string', { param: 'label' });
    const issued = await tenants.issueKey(request.params.name, ACTOR, { expiresInMs, label });
    // the key is in this one response and nowhere else; keep it out of caches
    return reply.code(201).header('cache-control', 'no-store').send(issued);
  });
  app.get<{ Querystring: { tenant?: string } }>('/admin/keys', async (request) => ({ data: await tenants.listKeys(request.query.tenant) }));
  app.post<{ Params: { id: string } }>('/admin/keys/:id/revoke', async (request) => tenants.revokeKey(request.params.id, ACTOR));

  const { incidents } = options;
  if (incidents) {
    app.post('/admin/incidents/contain', async (request, reply) => {
      const body = objectBody(request.body);
      const target: { providerKey?: string; tenantKey?: string; tenant?: string } = {};
      for (const [field, name] of [['provider_key', 'providerKey'], ['tenant_key', 'tenantKey'], ['tenant', 'tenant']] as const) {
        const value = body[field];
        if (value === undefined) continue;
        if (typeof value !== 'string') throw new GatewayError('admin_invalid_request', `"${field}" must be a string`, { param: field });
        target[name] = value;
      }
      return reply.code(201).send(await incidents.contain(target, ACTOR));
    });
    app.get('/admin/incidents', async () => ({ data: await incidents.list() }));
    app.get<{ Params: { id: string }; Querystring: { since?: string } }>('/admin/incidents/:id/investigate', async (request) => {
      return incidents.investigate(request.params.id, sinceOf(request.query.since));
    });
    app.get<{ Params: { id: string }; Querystring: { since?: string } }>('/admin/incidents/:id/report', async (request, reply) => {
      const text = await incidents.report(request.params.id, sinceOf(request.query.since));
      return reply.header('content-type', 'text/markdown; charset=utf-8').header('cache-control', 'no-store').send(text);
    });
  }

  const { readSample } = options;
  if (readSample) {
    app.get<{ Params: { request_id: string } }>('/admin/samples/:request_id', async (request, reply) => {
      const id = request.params.request_id;
      if (!/^[A-Za-z0-9._:-]{1,128}$/.test(id)) throw new GatewayError('admin_invalid_request', 'not a request id', { param: 'request_id' });
      // the reader writes the `sample.read` audit row before it returns anything
      const sample = await readSample(id, ACTOR, request.id);
      if (!sample) throw new GatewayError('admin_not_found', 'no unexpired content sample for this request');
      return reply.header('cache-control', 'no-store').send(sample);
    });
  }

  app.setNotFoundHandler(async () => {
    throw new GatewayError('admin_not_found', 'no such admin route');
  });

  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const error = toAdminError(err);
    if (error.code === 'internal_error') logger.error({ err, requestId: request.id }, 'admin request failed');
    void reply.code(error.status).send(errorBody(error, 'openai', request.id));
  });
  return app;
}

/** `?since=` as an ISO date-time or a duration back from now (`24h`). */
function sinceOf(since: string | undefined): { since?: number } {
  if (since === undefined) return {};
  const ago = parseDuration(since);
  if (ago !== undefined) return { since: Date.now() - ago };
  const at = /^\d{4}-\d{2}-\d{2}/.test(since) ? Date.parse(since) : Number.NaN;
  if (!Number.isFinite(at)) throw new GatewayError('admin_invalid_request', '"since" must be a date or a duration such as 24h', { param: 'since' });
  return { since: at };
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('admin_invalid_request', 'the request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function toAdminError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof ServiceError) {
    const code = err.kind === 'not_found' ? 'admin_not_found' : err.kind === 'conflict' ? 'admin_conflict' : 'admin_invalid_request';
    return new GatewayError(code, err.message);
  }
  const status = (err as { statusCode?: number }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return new GatewayError('admin_invalid_request', 'the request could not be processed');
  return new GatewayError('internal_error', 'the admin request failed', { cause: err });
}
