import { createWebhookDelivery } from '../services/webhook.js';
import type { Logger } from '../log/logger.js';
import type { RecordWriter } from '../audit/record-writer.js';
import type { Metrics } from '../metrics/registry.js';
import type { AnomalyAlert } from './types.js';

export interface AnomalyAlertSinkOptions {
  logger: Logger;
  writer: Pick<RecordWriter, 'audit'>;
  /** From config only (`alerts.webhook_url`); never from a request. */
  webhookUrl: URL | undefined;
  /** When set, each POST carries `x-keywarden-signature: sha256=<hex HMAC of the body>`. */
  webhookSecret: string | undefined;
  /** Delivery attempts per alert (default 5), with exponential backoff from `retryBaseMs`. */
  attempts?: number;
  retryBaseMs?: number;
  timeoutMs?: number;
  /** Counts each alert (`keywarden_alerts_fired_total{kind="anomaly",limit="<kind>"}`). */
  metrics?: Pick<Metrics, 'alertFired'>;
}

/** The webhook body of an anomaly: ids, counts and an address HMAC, never content, keys or addresses. */
export function anomalyPayload(alert: AnomalyAlert) {
  return {
    type: 'anomaly' as const,
    kind: alert.kind,
    scope: alert.scope,
    tenant: alert.tenant,
    tenant_id: alert.tenantId,
    key_id: alert.keyId,
    client: alert.client,
    request_id: alert.requestId,
    values: alert.values,
    at: new Date(alert.at).toISOString(),
  };
}

/**
 * Delivers anomaly alerts three ways: a structured log line (`anomaly`), an audit row
 * (`anomaly.<kind>`) and a POST to the alerts webhook, retried with backoff (the shared webhook
 * helper). `alert` only queues: the work runs on a later turn of the event loop, so the request
 * that tripped the detector never waits for it.
 */
export function createAnomalyAlertSink(options: AnomalyAlertSinkOptions) {
  const { logger, writer } = options;
  const webhook = createWebhookDelivery({ ...options, type: 'anomaly' });

  function emit(alert: AnomalyAlert): void {
    const payload = anomalyPayload(alert);
    options.metrics?.alertFired('anomaly', alert.kind);
    logger.warn({
      event: 'anomaly', kind: alert.kind, scope: alert.scope, tenant: alert.tenant, tenant_id: alert.tenantId, key_id: alert.keyId,
      client: alert.client, request_id: alert.requestId, values: alert.values,
    }, 'anomaly');
    writer.audit({
      ts: alert.at, actor: 'system', action: `anomaly.${alert.kind}`, target: alert.keyId ?? alert.tenantId ?? alert.client ?? 'global',
      outcome: 'success', requestId: alert.requestId,
      details: { tenant: alert.tenantId, key: alert.keyId, scope: alert.scope, client: alert.client, ...alert.values },
    });
    webhook.send(JSON.stringify(payload));
  }

  function track(work: Promise<void>): void {
    webhook.track(work.catch((err: unknown) => logger.error({ event: 'anomaly_alert_failed', err }, 'anomaly alert could not be delivered')));
  }

  return {
    /** Queues an alert; called from the request path, so it does nothing there but schedule. */
    alert(alert: AnomalyAlert): void {
      track(new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          try {
            emit(alert);
            resolve();
          } catch (err) {
            reject(err);
          }
        });
      }));
    },
    /** Waits for queued alerts and webhook deliveries in progress (shutdown, tests). */
    drain: () => webhook.drain(),
  };
}

export type AnomalyAlertSink = ReturnType<typeof createAnomalyAlertSink>;
