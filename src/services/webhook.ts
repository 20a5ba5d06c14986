import { createHmac } from 'node:crypto';
import { request } from 'undici';

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
