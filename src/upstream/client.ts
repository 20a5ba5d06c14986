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

/** A whole answer, read into memory by the client (no stream object in between). */
export interface BufferedUpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body; empty when an error answer (status ≥ 300) was longer than `errorLimit` (only a hint is read from those). */
  body: Buffer;
}

export interface UpstreamClient {
  /**
   * Sends a request and reads the whole answer: at most `limit` bytes of a 2xx body (larger is an
   * `upstream_invalid_response`), at most `errorLimit` bytes of any other (larger: empty body).
   */
  sendBuffered(request: UpstreamRequest, signal: AbortSignalLike | undefined, limit: number, errorLimit: number): Promise<BufferedUpstreamResponse>;
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
    // undici's dispatch with a handler of our own: the body arrives in these callbacks as the
    // parser reads it, with no stream object, AsyncResource or promise chain per answer in between
    // (about a tenth of a whole request's CPU)
    sendBuffered(request, signal, limit, errorLimit) {
      return new Promise<BufferedUpstreamResponse>((resolve, reject) => {
        let controller: Dispatcher.DispatchController | undefined;
        let statusCode = 0;
        let headers: Record<string, string | string[] | undefined> = {};
        let cap = limit;
        const chunks: Buffer[] = [];
        let size = 0;
        let settled = false;
        const onAbort = () => {
          const reason = signal?.reason ?? new Error('aborted');
          if (controller) return controller.abort(reason);
          // still queued for a connection: answer now rather than when one frees up (a slow
          // provider holds every connection); onRequestStart aborts it before a byte is written
          settle(toGatewayError(reason));
        };
        const settle = (err: unknown, value?: BufferedUpstreamResponse) => {
          if (settled) return;
          settled = true;
          signal?.removeListener('abort', onAbort);
          if (err !== undefined) reject(err);
          else resolve(value as BufferedUpstreamResponse);
        };
        if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
        signal?.once('abort', onAbort);
        pool.dispatch({ method: request.method as Dispatcher.HttpMethod, path: basePath + request.path, headers: request.headers, body: request.body ?? null }, {
          onRequestStart(c) {
            controller = c;
            if (signal?.aborted) c.abort(signal.reason ?? new Error('aborted'));
          },
          onResponseStart(_c, status, responseHeaders) {
            statusCode = status;
            headers = responseHeaders as Record<string, string | string[] | undefined>;
            if (status >= 300) cap = errorLimit;
          },
          onResponseData(c, chunk) {
            if (settled) return;
            size += chunk.length;
            if (size > cap) {
              // never read on: a provider could keep sending forever
              if (statusCode < 300) settle(new GatewayError('upstream_invalid_response', 'the provider answer is larger than the gateway accepts'));
              else settle(undefined, { statusCode, headers, body: Buffer.alloc(0) });
              c.abort(new Error('answer too large'));
              return;
            }
            chunks.push(chunk);
          },
          onResponseEnd() {
            settle(undefined, { statusCode, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
          },
          onResponseError(_c, err) {
            settle(toGatewayError(err));
          },
        });
      });
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
