import { createWebhookDelivery } from '../services/webhook.js';
import type { Logger } from '../log/logger.js';
import type { RecordWriter } from '../audit/record-writer.js';
import type { ThresholdEvent } from './admission.js';
import type { Metrics } from '../metrics/registry.js';

export interface AlertSinkOptions {
  logger: Logger;
  writer: RecordWriter;
  /** From config only; never from a request. */
  webhookUrl: URL | undefined;
  /** When set, each POST carries `x-keywarden-signature: sha256=<hex HMAC of the body>`. */
  webhookSecret: string | undefined;
  /** Delivery attempts per alert (default 5), with exponential backoff from `retryBaseMs`. */
  attempts?: number;
  retryBaseMs?: number;
  timeoutMs?: number;
  /** Counts each alert fired (`keywarden_alerts_fired_total`). */
  metrics?: Pick<Metrics, 'alertFired'>;
}

/**
 * Delivers budget threshold alerts three ways: a structured log line, an audit row, and a POST
 * to the configured webhook, retried with backoff on failure. The payload holds ids, limits
 * and amounts, never content or secrets. Redirects are not followed.
 */
export function createAlertSink(options: AlertSinkOptions) {
  const { logger, writer } = options;
  const webhook = createWebhookDelivery({ ...options, type: 'budget_threshold' });

  return {
    alert(event: ThresholdEvent): void {
      const isUsd = event.limit.startsWith('usd_');
      const payload = {
        type: 'budget_threshold',
        tenant: event.tenantName,
        tenant_id: event.tenantId,
        key_id: event.keyId,
        scope: event.scope,
        limit: event.limit,
        threshold_percent: event.percent,
        used: isUsd ? event.used / 1e9 : event.used,
        max: isUsd ? event.max / 1e9 : event.max,
        unit: isUsd ? 'usd' : 'tokens',
        window_end: new Date(event.windowEnd).toISOString(),
        at: new Date().toISOString(),
      };
      options.metrics?.alertFired('budget_threshold', event.limit);
      logger.warn({ event: 'budget_threshold', ...payload }, `budget ${event.limit} of ${event.scope} reached ${event.percent}%`);
      writer.audit({
        ts: Date.now(), actor: 'system', action: 'quota.threshold', target: event.keyId ?? event.tenantId, outcome: 'success', requestId: null,
        details: { tenant: event.tenantId, key: event.keyId, limit: event.limit, percent: event.percent, used: payload.used, max: payload.max },
      });
      webhook.send(JSON.stringify(payload));
    },
    /** Waits for deliveries in progress (shutdown, tests). */
    drain: () => webhook.drain(),
  };
}

export type AlertSink = ReturnType<typeof createAlertSink>;
