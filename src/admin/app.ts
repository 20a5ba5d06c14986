import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { GatewayError, errorBody } from '../errors/index.js';
import type { TenantService } from '../services/tenant-service.js';
import { ServiceError } from '../services/tenant-service.js';
import type { Logger } from '../log/logger.js';
import { parseDuration } from '../config/duration.js';
import { requestIdFrom } from '../server/request-id.js';
import { createHttpServer, type HttpServerTls } from '../server/http-server.js';
import type { Metrics } from '../metrics/registry.js';
import { parseSampleCursor, type SampleReader } from '../audit/sampling.js';
import type { IncidentService } from '../services/incident-service.js';
import { roleAtLeast, type AdminIdentity, type AdminTokenService } from '../services/admin-token-service.js';
import type { ActivityService } from '../services/activity-service.js';
import type { AdminRole, AuditEvent } from '../store/types.js';
import { parseAdminToken } from '../auth/admin-token.js';
import type { AuthFailureLimiter } from '../auth/failure-limiter.js';
import type { AdminProviderKeys } from './provider-keys.js';
import { DASHBOARD_HEADERS, registerDashboard } from '../dashboard/serve.js';
import { registerAuditChainRoutes, type AuditChainRoutesOptions } from './audit-chain.js';
import { echoName } from '../policy/schema-errors.js';

export interface AdminAppOptions {
  /** Verifies admin tokens (issued ones and the configured bootstrap token). */
  adminTokens: AdminTokenService;
  tenants: TenantService;
  /** Usage and audit reports for viewers. */
  activity: ActivityService;
  /** Where the audit row of every admin call goes (batched with the request records). */
  audit(event: AuditEvent): void;
  logger: Logger;
  /** Served at `GET /metrics` (viewer, unscoped tokens); refused admin tokens are counted. */
  metrics?: Pick<Metrics, 'render' | 'contentType' | 'adminAuthFailed'>;
  /** `GET /admin/samples/:request_id[?tenant=&after=]` (only when content sampling is configured): every sample under that request id; each read is audited. */
  readSample?: SampleReader;
  /** Incident response: contain, investigate, report (the same service as `keywarden incident`). */
  incidents?: IncidentService;
  /** The provider key register (list, due, rotate, revoke, set-owner): unscoped admin tokens only. */
  providerKeys?: AdminProviderKeys;
  /** `GET /admin/audit/verify` and `/admin/audit/export` (unscoped admin tokens): the same service as `keywarden audit verify|export`. */
  auditChain?: AuditChainRoutesOptions['service'];
  /** TLS on the admin listener (PEM text, no client certificates); unset, plain HTTP. */
  tls?: HttpServerTls;
  /** Slows admin-token guessing: checked before verifying, fed every refused token. */
  authFailures?: AuthFailureGate;
}

/** The part of the failed-authentication limiter the admin listener uses. */
export type AuthFailureGate = Pick<AuthFailureLimiter, 'check' | 'keyBlockedMs' | 'fail' | 'refusal'>;

/**
 * What a route needs: the least role, and whether a tenant-scoped token may call it at all
 * (`global` routes read or change things that span tenants: metrics, incidents, admin tokens).
 */
interface Access {
  role: AdminRole;
  global?: boolean;
}

/**
 * A route that serves no data and reads no token: the dashboard's static page, script, style
 * sheet and icon (src/dashboard/serve.ts). Declared explicitly, so a route without any access
 * rule is still refused.
 */
export interface PublicAccess {
  public: true;
}

function isPublic(access: Access | PublicAccess | undefined): access is PublicAccess {
  return access !== undefined && 'public' in access && access.public === true;
}

/** The access rule a route declared in its `config`, if any. */
function accessOf(request: FastifyRequest): Access | PublicAccess | undefined {
  return (request.routeOptions.config as { access?: Access | PublicAccess } | undefined)?.access;
}

declare module 'fastify' {
  interface FastifyRequest {
    admin: AdminIdentity | null;
  }
}

/** The audit `actor` of an admin identity: `admin:<owner>`. */
export function adminActor(identity: AdminIdentity): string {
  return `admin:${identity.owner}`;
}

/**
 * The admin listener (loopback by default): tenant and key management, admin tokens, usage and
 * audit reports, incidents and Prometheus metrics, each route guarded by a role, and the web
 * dashboard's static files. Deny by default: every request authenticates before anything else
 * (except those files, which declare `{ public: true }` and hold no data), a route without a declared role
 * is refused, unknown routes are 404 after authentication, and a tenant-scoped token sees
 * another tenant's objects exactly as if they did not exist. Every call, allowed or refused,
 * becomes an audit row naming the token's owner. It calls services, never a store.
 */
export function createAdminApp(options: AdminAppOptions): FastifyInstance {
  const { tenants, activity, adminTokens, logger, metrics, authFailures } = options;
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => createHttpServer({ maxHeaderBytes: 16_384 }, handler, options.tls),
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    requestIdHeader: false,
    exposeHeadRoutes: false,
    bodyLimit: 65_536,
    forceCloseConnections: 'idle',
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, maxParamLength: 128 },
    // a URL the router cannot read (bad %-encoding, an overlong id) is answered before any hook
    // runs: answer it in the API's shape and audit it like any other unauthenticated call
    frameworkErrors: (_err, request, reply) => {
      const error = new GatewayError('admin_invalid_request', 'the request URL could not be read');
      if (request.url.startsWith('/dashboard')) void (reply as FastifyReply).headers(DASHBOARD_HEADERS);
      options.audit({
        ts: Date.now(), actor: 'admin:unauthenticated', action: 'admin.call', target: null, outcome: 'failure', requestId: request.id,
        details: { method: request.method, status: error.status, code: error.code, token_id: null, role: null },
      });
      void (reply as FastifyReply).code(error.status).header('x-request-id', request.id).send(errorBody(error, 'openai', request.id));
    },
  });
  app.decorateRequest('admin', null);
  const errorCodes = new WeakMap<FastifyRequest, string>();

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // a client that goes away before the whole answer is sent (an abandoned export, or a change
    // whose answer it never waited for) gets no onResponse: its call is still recorded, as 499.
    // Watched on the answer: Fastify's onRequestAbort misses a request whose body was read in full
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      try {
        recordCall(request, 499);
      } catch (err) {
        logger.error({ err, requestId: request.id }, 'admin call audit failed');
      }
    });
    // every answer under /dashboard, refusals and not-found included, carries the page's headers
    if (request.url.startsWith('/dashboard')) reply.headers(DASHBOARD_HEADERS);
    const access = accessOf(request);
    // the dashboard's static files carry no data: no token is read, checked or counted for them
    if (isPublic(access)) return;
    const address = request.raw.socket.remoteAddress ?? '';
    const header = request.headers.authorization;
    const presented = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header)?.[1] : undefined;
    // the token id of an issued token is public: limit guessing per token id as well as per address
    const tokenId = presented === undefined ? undefined : parseAdminToken(presented)?.id;
    try {
      authFailures?.check(address);
    } catch (err) {
      // a limited caller is still a refused admin authentication: count it like one
      metrics?.adminAuthFailed();
      throw err;
    }
    const keyBlockedMs = authFailures?.keyBlockedMs(tokenId) ?? 0;
    const identity = await adminTokens.verify(presented);
    if (!identity) {
      authFailures?.fail(address, tokenId);
      metrics?.adminAuthFailed();
      // a limited token id: wrong secrets get the 429; the right one is never locked out by others' guesses
      if (keyBlockedMs > 0 && authFailures) throw authFailures.refusal(keyBlockedMs);
      throw new GatewayError('admin_unauthorized', 'a valid admin token is required');
    }
    request.admin = identity;
    // a repeated query parameter arrives as a list; every route reads single values
    for (const [name, value] of Object.entries(request.query as Record<string, unknown>)) {
      if (typeof value !== 'string') throw new GatewayError('admin_invalid_request', `give "${echoName(name, '(parameter)')}" once`, { param: echoName(name, '(parameter)') });
    }
    // unknown routes have no access rule and fall through to the 404 handler
    if (request.routeOptions.url === undefined) return;
    if (!access) throw new GatewayError('admin_forbidden', 'this route is not open to any admin token');
    if (!roleAtLeast(identity.role, access.role)) throw new GatewayError('admin_forbidden', `this route needs the ${access.role} role`);
    if (access.global && identity.tenantIds !== null) throw new GatewayError('admin_forbidden', 'a tenant-scoped admin token cannot use this route');
  });

  // one audit row per call, allowed or refused, naming whose token made it (never the token)
  const recorded = new WeakSet<FastifyRequest>();
  const recordCall = (request: FastifyRequest, status: number): void => {
    const identity = request.admin;
    // a static dashboard file served without a token is not an admin call (its API calls are);
    // a failure serving one is still recorded
    if (recorded.has(request) || (isPublic(accessOf(request)) && status < 400)) return;
    recorded.add(request);
    const presented = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    options.audit({
      ts: Date.now(), actor: identity ? adminActor(identity) : 'admin:unauthenticated', action: 'admin.call',
      target: request.routeOptions.url ?? null, outcome: status < 400 ? 'success' : 'failure', requestId: request.id,
      details: {
        method: request.method, status, code: errorCodes.get(request) ?? null,
        token_id: identity?.tokenId ?? (presented === undefined ? null : parseAdminToken(presented)?.id ?? null), role: identity?.role ?? null,
      },
    });
  };
  app.addHook('onResponse', async (request, reply) => recordCall(request, reply.statusCode));
  // (a call whose client went away before the answer was sent: the 'close' watch in onRequest)

  function identityOf(request: FastifyRequest): AdminIdentity {
    // the onRequest hook refuses every request without one; this only narrows the type
    if (!request.admin) throw new GatewayError('admin_unauthorized', 'a valid admin token is required');
    return request.admin;
  }
  const actorOf = (request: FastifyRequest) => adminActor(identityOf(request));

  /**
   * Refuses (as not found) a tenant that does not exist or is outside the token's scope. Checked
   * for unscoped tokens too, so a missing tenant is always answered here, with its name echoed
   * only as {@link echoName} allows (the services would echo it as given).
   */
  async function assertTenantInScope(request: FastifyRequest, name: string): Promise<void> {
    const scope = identityOf(request).tenantIds;
    const id = await tenants.tenantIdOf(name);
    if (id === undefined || (scope !== null && !scope.has(id))) throw tenantNotFound(name);
  }
  async function assertKeyInScope(request: FastifyRequest, keyId: string): Promise<void> {
    const scope = identityOf(request).tenantIds;
    if (scope === null) return;
    const id = await tenants.tenantIdOfKey(keyId);
    if (id === undefined || !scope.has(id)) throw new GatewayError('admin_not_found', 'no key with this id');
  }
  /** The tenant ids a report covers: the scope, narrowed to `?tenant=` when given. */
  async function reportTenants(request: FastifyRequest, name: string | undefined): Promise<string[] | undefined> {
    const scope = identityOf(request).tenantIds;
    if (name === undefined) return scope === null ? undefined : [...scope];
    const id = await tenants.tenantIdOf(name);
    if (id === undefined || (scope !== null && !scope.has(id))) throw tenantNotFound(name);
    return [id];
  }

  const viewer: Access = { role: 'viewer' };
  const operator: Access = { role: 'operator' };
  const admin: Access = { role: 'admin' };
  const global = (access: Access): Access => ({ ...access, global: true });

  if (metrics) {
    // the scraper sends an admin token too (a viewer token): metrics name tenants and models, so they are not public
    app.get('/metrics', { config: { access: global(viewer) } }, async (_request, reply) => {
      const text = await metrics.render();
      return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(text);
    });
  }

  app.get('/admin/whoami', { config: { access: viewer } }, async (request) => {
    const identity = identityOf(request);
    const names = identity.tenantIds === null ? null : (await tenants.listTenants()).filter((t) => identity.tenantIds?.has(t.id)).map((t) => t.name);
    return { token_id: identity.tokenId, owner: identity.owner, role: identity.role, tenants: names };
  });

  // ── tenants and their keys ─────────────────────────────────────────────────────────────
  app.get('/admin/tenants', { config: { access: viewer } }, async (request) => {
    const scope = identityOf(request).tenantIds;
    const all = await tenants.listTenants();
    return { data: scope === null ? all : all.filter((t) => scope.has(t.id)) };
  });
  app.post('/admin/tenants', { config: { access: global(operator) } }, async (request, reply) => {
    const body = objectBody(request.body);
    const name = body['name'];
    if (typeof name !== 'string') throw new GatewayError('admin_invalid_request', '"name" is required', { param: 'name' });
    return reply.code(201).send(await tenants.createTenant(name, actorOf(request), body['policy']));
  });
  app.get<{ Params: { name: string } }>('/admin/tenants/:name', { config: { access: viewer } }, async (request) => {
    await assertTenantInScope(request, request.params.name);
    return tenants.getTenant(request.params.name);
  });
  for (const [action, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    app.post<{ Params: { name: string } }>(`/admin/tenants/:name/${action}`, { config: { access: operator } }, async (request) => {
      await assertTenantInScope(request, request.params.name);
      return tenants.setTenantStatus(request.params.name, status, actorOf(request));
    });
  }
  app.put<{ Params: { name: string } }>('/admin/tenants/:name/policy', { config: { access: operator } }, async (request) => {
    await assertTenantInScope(request, request.params.name);
    return tenants.setTenantPolicy(request.params.name, objectBody(request.body)['policy'] ?? null, actorOf(request));
  });
  app.put<{ Params: { name: string } }>('/admin/tenants/:name/limits', { config: { access: operator } }, async (request) => {
    await assertTenantInScope(request, request.params.name);
    const body = objectBody(request.body);
    const changes: { limits?: Record<string, unknown>; key_limits?: Record<string, unknown> } = {};
    for (const field of ['limits', 'key_limits'] as const) {
      const value = body[field];
      if (value === undefined) continue;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new GatewayError('admin_invalid_request', `"${field}" must be an object`, { param: field });
      changes[field] = value as Record<string, unknown>;
    }
    if (!changes.limits && !changes.key_limits) throw new GatewayError('admin_invalid_request', 'give "limits" and/or "key_limits"');
    return tenants.setTenantLimits(request.params.name, changes, actorOf(request));
  });
  app.post<{ Params: { name: string } }>('/admin/tenants/:name/keys', { config: { access: operator } }, async (request, reply) => {
    await assertTenantInScope(request, request.params.name);
    const body = request.body === undefined ? {} : objectBody(request.body);
    const expiresInMs = durationField(body, 'expires_in');
    const label = body['label'];
    if (label !== undefined && typeof label !== 'string') throw new GatewayError('admin_invalid_request', '"label" must be a string', { param: 'label' });
    const issued = await tenants.issueKey(request.params.name, actorOf(request), { expiresInMs, label });
    // the key is in this one response and nowhere else; keep it out of caches
    return reply.code(201).header('cache-control', 'no-store').send(issued);
  });
  app.get<{ Querystring: { tenant?: string } }>('/admin/keys', { config: { access: viewer } }, async (request) => {
    const name = request.query.tenant;
    if (name !== undefined) await assertTenantInScope(request, name);
    const keys = await tenants.listKeys(name);
    const scope = identityOf(request).tenantIds;
    if (scope === null) return { data: keys };
    const names = new Set((await tenants.listTenants()).filter((t) => scope.has(t.id)).map((t) => t.name));
    return { data: keys.filter((k) => names.has(k.tenant)) };
  });
  app.put<{ Params: { id: string } }>('/admin/keys/:id/limits', { config: { access: operator } }, async (request) => {
    await assertKeyInScope(request, request.params.id);
    const limits = objectBody(request.body)['limits'];
    if (limits !== null && (typeof limits !== 'object' || Array.isArray(limits))) throw new GatewayError('admin_invalid_request', '"limits" must be an object or null', { param: 'limits' });
    return tenants.setKeyLimits(request.params.id, limits as Record<string, unknown> | null, actorOf(request));
  });
  app.post<{ Params: { id: string } }>('/admin/keys/:id/revoke', { config: { access: operator } }, async (request) => {
    await assertKeyInScope(request, request.params.id);
    return tenants.revokeKey(request.params.id, actorOf(request));
  });

  // ── reports ────────────────────────────────────────────────────────────────────────────
  app.get<{ Querystring: { tenant?: string; since?: string; until?: string } }>('/admin/usage', { config: { access: viewer } }, async (request) => {
    const tenantIds = await reportTenants(request, request.query.tenant);
    const until = request.query.until === undefined ? Date.now() : timeOf(request.query.until, 'until');
    const since = request.query.since === undefined ? until - 24 * 3_600_000 : timeOf(request.query.since, 'since');
    const data = await activity.usage({ ...(tenantIds ? { tenantIds } : {}), since, until });
    return { since: new Date(since).toISOString(), until: new Date(until).toISOString(), data };
  });
  app.get<{ Querystring: { tenant?: string; since?: string; until?: string; after?: string; limit?: string; action?: string; order?: string } }>('/admin/audit', { config: { access: viewer } }, async (request) => {
    const q = request.query;
    // checked before any lookup: a prefix of an action name (`anomaly.`, `admin.call`), nothing else
    if (q.action !== undefined && !/^[a-z][a-z0-9_.-]{0,63}$/.test(q.action)) {
      throw new GatewayError('admin_invalid_request', '"action" must be an action name or its prefix: a-z, 0-9, _ . - (at most 64)', { param: 'action' });
    }
    if (q.order !== undefined && q.order !== 'asc' && q.order !== 'desc') throw new GatewayError('admin_invalid_request', '"order" must be asc or desc', { param: 'order' });
    const tenantIds = await reportTenants(request, q.tenant);
    const until = q.until === undefined ? Date.now() + 1 : timeOf(q.until, 'until');
    const since = q.since === undefined ? 0 : timeOf(q.since, 'since');
    const afterSeq = integerParam(q.after, 'after', 0);
    const limit = integerParam(q.limit, 'limit', 100);
    return activity.audit({
      ...(tenantIds ? { tenantIds } : {}), since, until, afterSeq, limit, ...(q.action !== undefined ? { action: q.action } : {}), ...(q.order === 'desc' ? { newestFirst: true } : {}),
    });
  });

  // the audit chain's verification and export span every tenant: unscoped admin tokens only
  if (options.auditChain) registerAuditChainRoutes(app, { service: options.auditChain, access: global(admin), timeOf, logger });

  // ── admin tokens ───────────────────────────────────────────────────────────────────────
  app.post('/admin/tokens', { config: { access: global(admin) } }, async (request, reply) => {
    const body = objectBody(request.body);
    const owner = body['owner'];
    const role = body['role'];
    const scope = body['tenants'];
    if (typeof owner !== 'string') throw new GatewayError('admin_invalid_request', '"owner" is required: the person or automation the token is for', { param: 'owner' });
    if (typeof role !== 'string') throw new GatewayError('admin_invalid_request', '"role" is required: viewer, operator or admin', { param: 'role' });
    if (scope !== undefined && (!Array.isArray(scope) || !scope.every((t) => typeof t === 'string'))) {
      throw new GatewayError('admin_invalid_request', '"tenants" must be a list of tenant names', { param: 'tenants' });
    }
    const expiresInMs = durationField(body, 'expires_in');
    const issued = await adminTokens.issue({ owner, role, ...(scope ? { tenants: scope as string[] } : {}), ...(expiresInMs !== undefined ? { expiresInMs } : {}) }, actorOf(request));
    return reply.code(201).header('cache-control', 'no-store').send(issued);
  });
  app.get('/admin/tokens', { config: { access: global(admin) } }, async () => ({ data: await adminTokens.list() }));
  app.post<{ Params: { id: string } }>('/admin/tokens/:id/revoke', { config: { access: global(admin) } }, async (request) => adminTokens.revoke(request.params.id, actorOf(request)));

  // ── incidents ──────────────────────────────────────────────────────────────────────────
  const { incidents } = options;
  if (incidents) {
    app.post('/admin/incidents/contain', { config: { access: admin } }, async (request, reply) => {
      const body = objectBody(request.body);
      const target: { providerKey?: string; tenantKey?: string; tenant?: string } = {};
      for (const [field, name] of [['provider_key', 'providerKey'], ['tenant_key', 'tenantKey'], ['tenant', 'tenant']] as const) {
        const value = body[field];
        if (value === undefined) continue;
        if (typeof value !== 'string') throw new GatewayError('admin_invalid_request', `"${field}" must be a string`, { param: field });
        target[name] = value;
      }
      // a scoped admin contains its own tenants' keys; provider keys are shared by every tenant
      if (identityOf(request).tenantIds !== null) {
        if (target.providerKey !== undefined) throw new GatewayError('admin_forbidden', 'a tenant-scoped admin token cannot contain a provider key');
        if (target.tenant !== undefined) await assertTenantInScope(request, target.tenant);
        if (target.tenantKey !== undefined) await assertKeyInScope(request, target.tenantKey);
      }
      return reply.code(201).send(await incidents.contain(target, actorOf(request)));
    });
    app.get('/admin/incidents', { config: { access: global(admin) } }, async () => ({ data: await incidents.list() }));
    app.get<{ Params: { id: string }; Querystring: { since?: string } }>('/admin/incidents/:id/investigate', { config: { access: global(admin) } }, async (request) => {
      return incidents.investigate(request.params.id, sinceOf(request.query.since));
    });
    app.get<{ Params: { id: string }; Querystring: { since?: string } }>('/admin/incidents/:id/report', { config: { access: global(admin) } }, async (request, reply) => {
      const text = await incidents.report(request.params.id, sinceOf(request.query.since));
      return reply.header('content-type', 'text/markdown; charset=utf-8').header('cache-control', 'no-store').send(text);
    });
  }

  // ── provider keys (shared by every tenant: unscoped admin tokens only) ───────────────────
  const { providerKeys } = options;
  if (providerKeys) {
    app.get('/admin/provider-keys', { config: { access: global(admin) } }, async (request) => ({ data: await providerKeys.list(actorOf(request)) }));
    app.get<{ Querystring: { within?: string } }>('/admin/provider-keys/due', { config: { access: global(admin) } }, async (request) => {
      const within = request.query.within;
      const withinMs = within === undefined ? 7 * 86_400_000 : parseDuration(within);
      if (withinMs === undefined) throw new GatewayError('admin_invalid_request', '"within" must be a duration such as 7d', { param: 'within' });
      return { data: await providerKeys.due(actorOf(request), withinMs) };
    });
    app.post('/admin/provider-keys/rotate', { config: { access: global(admin) } }, async (request, reply) => {
      const body = objectBody(request.body);
      // security: never read files a client names (log scanning is for the CLI on the host)
      if (body['logs'] !== undefined) throw new GatewayError('admin_invalid_request', '"logs" is not accepted through the admin API: scan logs with the CLI on the host that holds them', { param: 'logs' });
      const provider = body['provider'];
      if (typeof provider !== 'string' || provider === '') throw new GatewayError('admin_invalid_request', '"provider" is required', { param: 'provider' });
      const from = optionalText(body, 'from', 4096);
      const owner = optionalText(body, 'owner', 256);
      const answer = await providerKeys.rotate(actorOf(request), provider, { ...(from !== undefined ? { from } : {}), ...(owner !== undefined ? { owner } : {}) });
      return reply.header('cache-control', 'no-store').send(answer);
    });
    app.post<{ Params: { id: string } }>('/admin/provider-keys/:id/revoke', { config: { access: global(admin) } }, async (request) => {
      const body = request.body === undefined ? {} : objectBody(request.body);
      const providerSide = body['provider_side'] ?? false;
      if (typeof providerSide !== 'boolean') throw new GatewayError('admin_invalid_request', '"provider_side" must be true or false', { param: 'provider_side' });
      const result = await providerKeys.revoke(actorOf(request), request.params.id, providerSide);
      if (!result) throw new GatewayError('admin_not_found', 'no provider key with this id');
      return result;
    });
    app.put<{ Params: { id: string } }>('/admin/provider-keys/:id/owner', { config: { access: global(admin) } }, async (request) => {
      const body = objectBody(request.body);
      const owner = optionalText(body, 'owner', 256);
      const purpose = optionalText(body, 'purpose', 1024);
      let rotateEveryDays: number | undefined;
      const every = durationField(body, 'rotate_every');
      if (every !== undefined) {
        if (every < 86_400_000 || every % 86_400_000 !== 0) throw new GatewayError('admin_invalid_request', '"rotate_every" must be a whole number of days such as 60d', { param: 'rotate_every' });
        rotateEveryDays = every / 86_400_000;
      }
      if (owner === undefined && purpose === undefined && rotateEveryDays === undefined) throw new GatewayError('admin_invalid_request', 'give "owner", "purpose" and/or "rotate_every"');
      const key = await providerKeys.setOwner(actorOf(request), request.params.id, {
        ...(owner !== undefined ? { owner } : {}), ...(purpose !== undefined ? { purpose } : {}), ...(rotateEveryDays !== undefined ? { rotateEveryDays } : {}),
      });
      if (!key) throw new GatewayError('admin_not_found', 'no provider key with this id');
      return key;
    });
  }

  const { readSample } = options;
  if (readSample) {
    // every sample stored under a request id, whichever tenant sent it: the id is the client's choice
    app.get<{ Params: { request_id: string }; Querystring: { tenant?: string; after?: string } }>('/admin/samples/:request_id', { config: { access: global(admin) } }, async (request, reply) => {
      const id = request.params.request_id;
      if (!/^[A-Za-z0-9._:-]{1,128}$/.test(id)) throw new GatewayError('admin_invalid_request', 'not a request id', { param: 'request_id' });
      const after = request.query.after === undefined ? undefined : parseSampleCursor(request.query.after);
      if (request.query.after !== undefined && !after) throw new GatewayError('admin_invalid_request', '"after" must be the "next" value of a previous page', { param: 'after' });
      const tenantId = request.query.tenant === undefined ? undefined : (await reportTenants(request, request.query.tenant))?.[0];
      // the reader writes the `sample.read` audit rows before it returns anything
      const page = await readSample({ requestId: id, ...(tenantId !== undefined ? { tenantId } : {}), ...(after ? { after } : {}) }, actorOf(request), request.id);
      if (page.samples.length === 0 && !after) throw new GatewayError('admin_not_found', 'no unexpired content sample for this request');
      const names = new Map((await tenants.listTenants()).map((t) => [t.id, t.name]));
      const samples = page.samples.map((s) => ({ ...s, tenant: names.get(s.tenant_id) ?? null }));
      return reply.header('cache-control', 'no-store').send({ request_id: id, samples, next: page.next });
    });
  }

  // the web page (src/dashboard/): static files only; its data comes from the routes above
  registerDashboard(app);

  app.setNotFoundHandler(async () => {
    throw new GatewayError('admin_not_found', 'no such admin route');
  });

  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const error = toAdminError(err);
    if (error.code === 'internal_error') logger.error({ err, requestId: request.id }, 'admin request failed');
    errorCodes.set(request, error.code);
    if (error.retryAfterSeconds !== undefined) void reply.header('retry-after', String(error.retryAfterSeconds));
    void reply.code(error.status).send(errorBody(error, 'openai', request.id));
  });
  return app;
}

/** An optional duration field of a body (`"30d"`), in milliseconds. */
function durationField(body: Record<string, unknown>, field: string): number | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  const ms = typeof value === 'string' ? parseDuration(value) : undefined;
  if (ms === undefined) throw new GatewayError('admin_invalid_request', `"${field}" must be a duration such as 30d`, { param: field });
  return ms;
}

/** An optional one-line text field of a body, at most `max` characters. */
function optionalText(body: Record<string, unknown>, field: string, max: number): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  // control characters would let a value forge lines in the operator output and audit views
  if (typeof value !== 'string' || value === '' || value.length > max || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new GatewayError('admin_invalid_request', `"${field}" must be a non-empty one-line string of at most ${max} characters`, { param: field });
  }
  return value;
}

/** A query time: an ISO date-time, or a duration back from now (`24h`). */
function timeOf(value: string, param: string): number {
  const ago = parseDuration(value);
  if (ago !== undefined) return Date.now() - ago;
  const at = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(at)) throw new GatewayError('admin_invalid_request', `"${param}" must be a date or a duration such as 24h`, { param });
  return at;
}

function integerParam(value: string | undefined, param: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,15}$/.test(value)) throw new GatewayError('admin_invalid_request', `"${param}" must be a non-negative integer`, { param });
  return Number(value);
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

/** A tenant name from a URL or query is named back only when it is a plain name, never when it is shaped like a key. */
function tenantNotFound(name: string): GatewayError {
  return new GatewayError('admin_not_found', `no tenant named "${echoName(name, '(name)')}"`);
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
