import { postWebhook } from '../services/webhook.js';
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
  const attempts = options.attempts ?? 5;
  const retryBaseMs = options.retryBaseMs ?? 500;
  const timeoutMs = options.timeoutMs ?? 5000;
  const inFlight = new Set<Promise<void>>();

  async function deliver(body: string): Promise<void> {
    const delivered = await postWebhook({
      url: options.webhookUrl as URL, secret: options.webhookSecret, body, userAgent: 'keywarden-alerts', attempts, retryBaseMs, timeoutMs,
      onAttemptFailed: ({ attempt, status, err }) => {
        if (status !== undefined) logger.warn({ event: 'alert_webhook_failed', status, attempt }, 'alert webhook answered with an error');
        else logger.warn({ event: 'alert_webhook_failed', err, attempt }, 'alert webhook could not be reached');
      },
    });
    if (!delivered) logger.error({ event: 'alert_webhook_gave_up', attempts }, 'alert webhook delivery failed after retries');
  }

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
      if (!options.webhookUrl) return;
      const delivery = deliver(JSON.stringify(payload)).finally(() => inFlight.delete(delivery));
      inFlight.add(delivery);
    },
    /** Waits for deliveries in progress (shutdown, tests). */
    async drain(): Promise<void> {
      await Promise.all([...inFlight]);
    },
  };
}

export type AlertSink = ReturnType<typeof createAlertSink>;
