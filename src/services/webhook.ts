import { createHmac } from 'node:crypto';
import { request } from 'undici';
import type { Logger } from '../log/logger.js';

export interface WebhookPost {
  /** From config only; never from a request. */
  url: URL;
  /** When set, the POST carries `x-keywarden-signature: sha256=<hex HMAC of the body>`. */
  secret: string | undefined;
  /** The JSON body: ids, counts and fingerprints, never content or secrets. */
  body: string;
  userAgent: string;
  /** Attempts (default 5) with exponential backoff from `retryBaseMs` (default 500). */
  attempts?: number;
  retryBaseMs?: number;
  timeoutMs?: number;
  /** Told about each failed attempt (a status, or the transport error). */
  onAttemptFailed?: (failure: { attempt: number; status?: number; err?: unknown }) => void;
}

/**
 * POSTs a JSON body to a configured webhook, retried with backoff. Redirects are not followed.
 * Resolves true once delivered (2xx), false after the last failed attempt. Shared by budget
 * alerts and provider key rotation notices.
 */
export async function postWebhook(post: WebhookPost): Promise<boolean> {
  const attempts = post.attempts ?? 5;
  const retryBaseMs = post.retryBaseMs ?? 500;
  const timeoutMs = post.timeoutMs ?? 5000;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': post.userAgent };
      if (post.secret) headers['x-keywarden-signature'] = `sha256=${createHmac('sha256', post.secret).update(post.body).digest('hex')}`;
      const res = await request(post.url, { method: 'POST', headers, body: post.body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return true;
      post.onAttemptFailed?.({ attempt, status: res.statusCode });
    } catch (err) {
      post.onAttemptFailed?.({ attempt, err });
    }
    if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, retryBaseMs * 2 ** (attempt - 1)).unref());
  }
  return false;
}

export interface WebhookDeliveryOptions {
  logger: Pick<Logger, 'warn' | 'error'>;
  /** From config only (`alerts.webhook_url`); never from a request. Without it nothing is posted. */
  webhookUrl: URL | undefined;
  webhookSecret: string | undefined;
  /** The alert type, in the delivery failure log lines. */
  type: string;
  attempts?: number;
  retryBaseMs?: number;
  timeoutMs?: number;
}

/**
 * Background delivery of alert bodies to the configured webhook, shared by every alert sink:
 * retries with backoff, logs each failed attempt and a final give-up, and tracks deliveries in
 * flight so shutdown (and tests) can wait for them.
 */
export function createWebhookDelivery(options: WebhookDeliveryOptions) {
  const { logger, type } = options;
  const attempts = options.attempts ?? 5;
  const inFlight = new Set<Promise<unknown>>();

  async function deliver(body: string): Promise<void> {
    const delivered = await postWebhook({
      url: options.webhookUrl as URL, secret: options.webhookSecret, body, userAgent: 'keywarden-alerts', attempts,
      retryBaseMs: options.retryBaseMs ?? 500, timeoutMs: options.timeoutMs ?? 5000,
      onAttemptFailed: ({ attempt, status, err }) => {
        if (status !== undefined) logger.warn({ event: 'alert_webhook_failed', type, status, attempt }, 'alert webhook answered with an error');
        else logger.warn({ event: 'alert_webhook_failed', type, err, attempt }, 'alert webhook could not be reached');
      },
    });
    if (!delivered) logger.error({ event: 'alert_webhook_gave_up', type, attempts }, 'alert webhook delivery failed after retries');
  }

  return {
    /** Posts a JSON body in the background (no-op without a webhook URL). */
    send(body: string): void {
      if (!options.webhookUrl) return;
      this.track(deliver(body));
    },
    /** Tracks other background work of a sink, so `drain` waits for it too. */
    track(work: Promise<unknown>): void {
      const p: Promise<unknown> = work.finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    /** Waits until nothing is in flight. */
    async drain(): Promise<void> {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  };
}
