import type { RequestContext } from '../server/proxy.js';
import type { RecordWriter } from './record-writer.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';

/**
 * The record stage: metrics, one structured log line, one usage-ledger row and one audit row per
 * request, with metadata only (ids, model, tokens, timings, an HMAC of the prompt). Requests
 * refused before a tenant is known (bad credentials) get the metrics and the log line only.
 * This is the only place on the request path that updates metrics.
 */
export function createRequestRecorder(deps: { writer: RecordWriter; logger: Logger; metrics?: Pick<Metrics, 'observeRequest'> }) {
  const { writer, logger, metrics } = deps;
  return function record(ctx: RequestContext): void {
    const totalMs = performance.now() - ctx.startedAt;
    const gatewayMs = Math.max(0, totalMs - ctx.upstreamMs);
    metrics?.observeRequest(ctx, totalMs);
    const principal = ctx.principal;
    const line = {
      requestId: ctx.requestId,
      tenant: principal?.tenantName ?? null,
      keyId: principal?.keyId ?? null,
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
    writer.record(
      {
        ts, requestId: ctx.requestId, tenantId: principal.tenantId, keyId: principal.keyId, provider: ctx.provider, model: ctx.model,
        endpoint: ctx.endpoint, status: ctx.status, outcome: ctx.outcome, errorCode: ctx.errorCode,
        inputTokens: ctx.usage.inputTokens, outputTokens: ctx.usage.outputTokens, cachedInputTokens: ctx.usage.cachedInputTokens ?? 0,
        stream: ctx.stream, gatewayMs: round(gatewayMs), upstreamMs: round(ctx.upstreamMs), promptFingerprint: ctx.promptFingerprint,
        costNanoUsd: ctx.costNanoUsd,
      },
      {
        ts, actor: `tenant-key:${principal.keyId}`, action: 'request', target: ctx.model, requestId: ctx.requestId,
        outcome: ctx.outcome === 'success' ? 'success' : 'failure',
        details: {
          tenant: principal.tenantId, endpoint: ctx.endpoint, provider: ctx.provider, status: ctx.status, code: ctx.errorCode,
          input_tokens: ctx.usage.inputTokens, output_tokens: ctx.usage.outputTokens, cost_nano_usd: ctx.costNanoUsd, prompt_hmac: ctx.promptFingerprint,
        },
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
