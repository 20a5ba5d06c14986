import { GatewayError } from '../errors/index.js';
import type { Endpoint } from './types.js';

/*
 * Provider-neutral helpers shared by the adapters: guarded reads of untrusted JSON, and the
 * mapping of provider error statuses onto gateway codes. No I/O.
 */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A token count: a non-negative safe integer, else undefined. */
export function tokenCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** An optional token count: null when absent (`undefined`/`null`), undefined when malformed. */
export function optionalTokenCount(value: unknown): number | null | undefined {
  return value === undefined || value === null ? null : tokenCount(value);
}

/** JSON.parse that returns undefined instead of throwing. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Error bodies larger than this are not parsed (the code is only a hint). */
const MAX_ERROR_BODY_PARSE = 64 * 1024;

export function parseErrorBody(bodyText: string): unknown {
  return bodyText.length > MAX_ERROR_BODY_PARSE ? undefined : parseJson(bodyText);
}

const SAFE_CODE = /^[a-z0-9_.-]{1,64}$/;

/**
 * A provider error `code`/`type` that is safe to put in our message: lowercase token characters
 * only, and not shaped like a key (`sk-…`), so it cannot carry request content or secrets.
 */
export function safeProviderCode(value: unknown): string | undefined {
  if (typeof value !== 'string' || !SAFE_CODE.test(value)) return undefined;
  if (/^(?:sk|pk|rk)[-_]/.test(value)) return undefined;
  return value;
}

const DEFAULT_RETRY_AFTER = 1;
const MAX_RETRY_AFTER = 3600;

/**
 * Seconds from a `Retry-After` header: delay-seconds (fractions rounded up) or an HTTP date.
 * Missing or unreadable → 1; the result is clamped to 1..3600.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number = Date.now()): number {
  if (value === undefined) return DEFAULT_RETRY_AFTER;
  const text = value.trim();
  let seconds: number;
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    seconds = Math.ceil(Number(text));
  } else if (text.length <= 64 && /^[A-Za-z]{3}/.test(text)) {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return DEFAULT_RETRY_AFTER;
    seconds = Math.ceil((at - nowMs) / 1000);
  } else {
    return DEFAULT_RETRY_AFTER;
  }
  if (Number.isNaN(seconds)) return DEFAULT_RETRY_AFTER;
  return Math.min(MAX_RETRY_AFTER, Math.max(1, seconds));
}

const REJECTED_STATUSES: ReadonlySet<number> = new Set([400, 404, 409, 413, 415, 422]);

/**
 * Maps a provider error status onto our codes. The message is built from our own words, the
 * status number and, at most, a provider code already checked by {@link safeProviderCode}:
 * the provider's message is never copied (it may name part of a key or echo request content).
 */
export function mapUpstreamError(
  status: number,
  providerCode: string | undefined,
  retryAfter: string | undefined,
  nowMs: number = Date.now(),
): GatewayError {
  const suffix = providerCode === undefined ? '' : ` (${providerCode})`;
  if (status === 401 || status === 403) {
    return new GatewayError('upstream_auth_failed', "the provider rejected the gateway's credentials");
  }
  if (status === 429) {
    return new GatewayError('upstream_rate_limited', `the provider rate limited the request${suffix}`, {
      retryAfterSeconds: parseRetryAfter(retryAfter, nowMs),
    });
  }
  if (REJECTED_STATUSES.has(status)) {
    return new GatewayError('upstream_rejected_request', `the provider rejected the request${suffix}`);
  }
  if (status === 408 || status === 504) {
    return new GatewayError('upstream_timeout', 'the provider timed out');
  }
  if (status === 503 || status === 529) {
    return new GatewayError(
      'upstream_overloaded',
      `the provider is overloaded${suffix}`,
      retryAfter === undefined ? {} : { retryAfterSeconds: parseRetryAfter(retryAfter, nowMs) },
    );
  }
  const shown = Number.isInteger(status) && status >= 100 && status <= 999 ? `HTTP ${status}` : 'an unexpected status';
  return new GatewayError('upstream_error', `the provider answered with an error (${shown})${suffix}`);
}

/** Explicit refusal of an endpoint the provider does not serve. */
export function unsupportedEndpoint(endpoint: Endpoint): GatewayError {
  return new GatewayError('request_invalid', `the model's provider does not serve the ${endpoint} endpoint`, {
    param: 'model',
  });
}

/**
 * A server-held key must be a plain visible-ASCII token: anything else (a trailing newline from a
 * key file, a CR/LF injection) would corrupt or split the auth header. The message never shows it.
 */
export function checkKey(apiKey: string): void {
  if (!/^[\x21-\x7e]{1,4096}$/.test(apiKey)) {
    throw new GatewayError('provider_key_unavailable', 'the provider key is not usable (empty or invalid characters)');
  }
}
