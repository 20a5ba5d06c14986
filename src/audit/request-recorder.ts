import type { RequestContext } from '../server/proxy.js';
import type { RecordWriter } from './record-writer.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { AnomalyDetector } from '../anomaly/detector.js';
import type { ContentSampler } from './sampling.js';
import { normaliseAddress } from './trail.js';

export interface RequestRecorderDeps {
  writer: RecordWriter;
  logger: Logger;
  metrics?: Pick<Metrics, 'observeRequest'>;
  /** HMAC of identifiers under the audit store's salt (`createIdentifierHasher`); without it no client address is recorded. */
  hashIdentifier?: (value: string) => string;
  /** The identifier HMAC of a client address (normalised); defaults to hashIdentifier over the normalised address. */
  hashAddress?: (address: string) => string;
  /** `audit.hash_key_ids`: audit rows name the tenant key by its HMAC instead of its id. */
  hashKeyIds?: boolean;
  /** Content sampling (`audit.sampling`), off when absent. */
  sampler?: ContentSampler;
  /** Unusual-traffic detection, told of each finished request. */
  anomaly?: Pick<AnomalyDetector, 'observe'>;
}

/**
 * The record stage: metrics, one structured log line, one usage-ledger row and one audit row per
 * request, with metadata only (ids, model, tokens, timings, an HMAC of the prompt). Requests
 * refused before a tenant is known (bad credentials) get the metrics and the log line only.
 * This is the only place on the request path that updates metrics.
 *
 * The client's address is kept only as `hmac-sha256:…` under the store's audit salt, in the
 * ledger (`client_hmac`) and the audit row (`details.client`); it never reaches the log line.
 * A request picked by content sampling is sealed and stored here, and its content dropped.
 */
export function createRequestRecorder(deps: RequestRecorderDeps) {
  const { writer, logger, metrics, hashIdentifier, sampler, anomaly } = deps;
  const hashKeyIds = deps.hashKeyIds === true && hashIdentifier !== undefined;
  const hashAddress = deps.hashAddress ?? (hashIdentifier ? (address: string) => hashIdentifier(normaliseAddress(address)) : undefined);
  return function record(ctx: RequestContext): void {
    // take the content off the context first, so nothing after this point can carry it on
    const sample = ctx.sample;
    ctx.sample = undefined;
    const totalMs = performance.now() - ctx.startedAt;
    const gatewayMs = Math.max(0, totalMs - ctx.upstreamMs);
    metrics?.observeRequest(ctx, totalMs);
    anomaly?.observe(ctx);
    const principal = ctx.principal;
    const line = {
      requestId: ctx.requestId,
      tenant: principal?.tenantName ?? null,
      keyId: principal?.keyId ?? null,
      ...(principal?.subject !== undefined ? { subject: principal.subject } : {}),
      ...(principal?.authMethod !== undefined ? { auth: principal.authMethod } : {}),
      endpoint: ctx.endpoint,
      provider: ctx.provider,
      model: ctx.model,
      stream: ctx.stream,
      status: ctx.status,
      outcome: ctx.outcome,
      code: ctx.errorCode,
      inputTokens: ctx.usage.inputTokens,
      outputTokens: ctx.usage.outputTokens,
      gatewayMs: round(gatewayMs),
      upstreamMs: round(ctx.upstreamMs),
    };
    if (ctx.status >= 500) logger.warn(line, 'request');
    else logger.info(line, 'request');
    if (!principal || ctx.endpoint === null) return;
    const ts = Date.now();
    const clientHmac = hashAddress && ctx.clientAddress !== '' ? hashAddress(ctx.clientAddress) : null;
    let sampled = false;
    if (sampler && sample?.answer && ctx.outcome === 'success' && ctx.status === 200) {
      sampled = true;
      const requestId = ctx.requestId;
      sampler.keep({ requestId, tenantId: principal.tenantId, request: sample.request, answer: sample.answer }, ts).catch((err: unknown) => {
        // the error names the failure, never the content (the content is not part of any error here)
        logger.warn({ event: 'content_sample_failed', requestId, reason: (err as Error)?.name ?? 'error' }, 'a content sample could not be stored');
      });
    }
    const actorKey = hashKeyIds ? (hashIdentifier as (v: string) => string)(principal.keyId) : principal.keyId;
    writer.record(
      {
        ts, requestId: ctx.requestId, tenantId: principal.tenantId, keyId: principal.keyId, provider: ctx.provider, model: ctx.model,
        endpoint: ctx.endpoint, status: ctx.status, outcome: ctx.outcome, errorCode: ctx.errorCode,
        inputTokens: ctx.usage.inputTokens, outputTokens: ctx.usage.outputTokens, cachedInputTokens: ctx.usage.cachedInputTokens ?? 0,
        stream: ctx.stream, gatewayMs: round(gatewayMs), upstreamMs: round(ctx.upstreamMs), promptFingerprint: ctx.promptFingerprint,
        costNanoUsd: ctx.costNanoUsd, clientHmac, providerKeyId: ctx.providerKeyId,
      },
      {
        ts, actor: `tenant-key:${actorKey}`, action: 'request', target: ctx.model, requestId: ctx.requestId,
        outcome: ctx.outcome === 'success' ? 'success' : 'failure',
        details: {
          tenant: principal.tenantId, endpoint: ctx.endpoint, provider: ctx.provider, status: ctx.status, code: ctx.errorCode,
          input_tokens: ctx.usage.inputTokens, output_tokens: ctx.usage.outputTokens, cost_nano_usd: ctx.costNanoUsd, prompt_hmac: ctx.promptFingerprint,
          client: clientHmac, ...(ctx.providerKeyId !== null ? { provider_key: ctx.providerKeyId } : {}), ...(principal.subject !== undefined ? { subject: principal.subject } : {}), ...(sampled ? { sampled: true } : {}),
          // how a certificate caller was mapped to its tenant (never the certificate itself)
          ...(principal.authMethod !== undefined ? { auth: principal.authMethod, auth_rule: principal.authRule ?? null } : {}),
        },
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
