import { Pool, errors as undiciErrors } from 'undici';
import type { Dispatcher } from 'undici';
import { GatewayError } from '../errors/index.js';
import type { ProviderConfig } from '../config/types.js';
import type { UpstreamRequest } from '../providers/types.js';
import type { AbortSignalLike } from '../server/request-abort.js';

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

export interface UpstreamClient {
  /** Sends a request to the provider's configured base URL; throws GatewayError on transport failure. */
  /** `signal`: an AbortSignal, or an EventEmitter with `aborted` that emits `abort` (see server/request-abort.ts). */
  send(request: UpstreamRequest, signal?: AbortSignal | AbortSignalLike): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/**
 * A pooled keep-alive HTTP client bound to one provider's configured origin. The URL is fixed
 * here from config: callers pass only a path chosen by the adapter, so no client value can pick
 * the host. Redirects are never followed (undici's request does not follow them; a 3xx becomes
 * an upstream error in the adapter). Timeouts: connect, headers, and idle time between body chunks.
 */
export function createUpstreamClient(provider: ProviderConfig, options: { connections?: number } = {}): UpstreamClient {
  const basePath = provider.baseUrl.pathname === '/' ? '' : provider.baseUrl.pathname;
  const pool = new Pool(provider.baseUrl.origin, {
    connections: options.connections ?? 128,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: provider.timeoutMs,
    bodyTimeout: provider.timeoutMs,
    connect: { timeout: provider.connectTimeoutMs },
  });

  return {
    async send(request, signal) {
      try {
        const response = await pool.request({
          method: request.method,
          path: basePath + request.path,
          headers: request.headers,
          body: request.body ?? null,
          signal: signal ?? null,
        });
        return { statusCode: response.statusCode, headers: response.headers, body: response.body };
      } catch (err) {
        throw toGatewayError(err);
      }
    },
    close: () => pool.close(),
  };
}

/** Maps a transport failure to a gateway error: timeouts → 504, everything else → 502. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError
  ) {
    return new GatewayError('upstream_timeout', 'the provider did not answer in time', { cause: err });
  }
  return new GatewayError('upstream_unreachable', 'the provider could not be reached', { cause: err });
}
