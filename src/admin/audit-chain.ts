import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { AuditExportFormat, AuditService } from '../services/audit-service.js';
import type { AdminRole } from '../store/types.js';

export interface AuditChainRoutesOptions {
  service: AuditService;
  /** The access rule of both routes (the admin app passes `global(admin)`). */
  access: { role: AdminRole; global?: boolean };
  /** The admin API's query time parser (ISO date-time, or a duration back from now). */
  timeOf(value: string, param: string): number;
  logger: Logger;
}

/**
 * `GET /admin/audit/verify` and `GET /admin/audit/export`: the audit chain's verification and
 * its SIEM export through the admin API, answering exactly as `keywarden audit verify --json`
 * and `keywarden audit export` do on the store. Verification reports sequence numbers and reasons,
 * never row contents; the export holds ids, counts and HMACs (what the rows hold), streamed a
 * page at a time so memory stays bounded, and stops reading the store when the client goes away.
 */
export function registerAuditChainRoutes(app: FastifyInstance, options: AuditChainRoutesOptions): void {
  const { service, access, timeOf, logger } = options;

  // answered 200 either way: the walk ran, and `ok` says what it found (the CLI exits 1 on false)
  app.get('/admin/audit/verify', { config: { access } }, async (_request, reply) => {
    // a caller that goes away stops the walk at the next page
    const gone = new AbortController();
    reply.raw.once('close', () => gone.abort());
    let result;
    try {
      result = await service.verify(gone.signal);
    } catch (err) {
      // nobody is left to answer: not a failure of the gateway, and not logged as one (onRequestAbort records the call)
      if (gone.signal.aborted) return reply.code(499).send();
      throw err;
    }
    return reply.header('cache-control', 'no-store').send(result);
  });

  app.get<{ Querystring: { since?: string; until?: string; format?: string } }>('/admin/audit/export', { config: { access } }, async (request, reply) => {
    const q = request.query;
    const format = q.format ?? 'jsonl';
    if (!isExportFormat(format)) throw new GatewayError('admin_invalid_request', '"format" must be jsonl or csv', { param: 'format' });
    const query = { since: 0, until: Number.MAX_SAFE_INTEGER, format };
    // the same range as the CLI's: since ≤ time < until, the whole trail when neither is given
    if (q.since !== undefined) query.since = timeOf(q.since, 'since');
    if (q.until !== undefined) query.until = timeOf(q.until, 'until');
    const gone = new AbortController();
    reply.raw.once('close', () => gone.abort());
    const requestId = request.id;
    async function* chunks(): AsyncGenerator<string> {
      try {
        yield* service.export(query, gone.signal);
      } catch (err) {
        // after the first chunk the status is sent: the connection is cut so the client sees an incomplete export
        if (!gone.signal.aborted) logger.error({ event: 'admin_audit_export_failed', err, requestId }, 'the audit export failed part-way');
        throw err;
      }
    }
    return reply
      .header('content-type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
      .header('cache-control', 'no-store')
      .send(Readable.from(chunks(), { objectMode: false }));
  });
}

function isExportFormat(value: string): value is AuditExportFormat {
  return value === 'jsonl' || value === 'csv';
}
