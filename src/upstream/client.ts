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
  headers: UpstreamHeaders;
  /** The body; empty when an error answer (status ≥ 300) was longer than `errorLimit` (only a hint is read from those). */
  body: Buffer;
}

/** Response headers as undici parses them (lower-case names; repeated headers as arrays). */
export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** The body of a streamed answer as the client reads it: delivered to one consumer, with flow control. */
export interface UpstreamBodyFeed {
  /** Starts delivery to `onData` (chunks read before this come first); `onEnd` once, with the error that ended it if any. */
  consume(onData: (chunk: Buffer) => void, onEnd: (err?: GatewayError) => void): void;
  /** Stops reading from the provider until `resume()` (the client is slower). */
  pause(): void;
  resume(): void;
  /** Stops reading for good and closes the provider connection; `onEnd` is not called after it. */
  abort(): void;
}

/** A streamed request's answer: a 2xx as a body feed, anything else read whole (capped) for its error. */
export type StreamedUpstreamResponse =
  | { statusCode: number; headers: UpstreamHeaders; body: UpstreamBodyFeed; errorBody: null }
  | { statusCode: number; headers: UpstreamHeaders; body: null; errorBody: Buffer };

export interface UpstreamClient {
  /**
   * Sends a request and reads the whole answer: at most `limit` bytes of a 2xx body (larger is an
   * `upstream_invalid_response`), at most `errorLimit` bytes of any other (larger: empty body).
   */
  sendBuffered(request: UpstreamRequest, signal: AbortSignalLike | undefined, limit: number, errorLimit: number): Promise<BufferedUpstreamResponse>;
  /**
   * Sends a request whose 2xx answer is relayed as it arrives (resolves at its headers, with a
   * body feed); any other answer is read whole up to `errorLimit` bytes (larger: empty body).
   */
  sendStreamed(request: UpstreamRequest, signal: AbortSignalLike | undefined, errorLimit: number): Promise<StreamedUpstreamResponse>;
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
    sendBuffered(request, signal, limit, errorLimit) {
      return new Promise<BufferedUpstreamResponse>((resolve, reject) => {
        let statusCode = 0;
        let headers: UpstreamHeaders = {};
        let cap = limit;
        const chunks: Buffer[] = [];
        let size = 0;
        let settled = false;
        const settle = (err: GatewayError | undefined, value?: BufferedUpstreamResponse) => {
          if (settled) return;
          settled = true;
          if (err !== undefined) reject(err);
          else resolve(value as BufferedUpstreamResponse);
        };
        dispatch(request, signal, {
          start(status, responseHeaders) {
            statusCode = status;
            headers = responseHeaders;
            if (status >= 300) cap = errorLimit;
          },
          data(chunk, controller) {
            if (settled) return;
            size += chunk.length;
            if (size > cap) {
              // never read on: a provider could keep sending forever
              if (statusCode < 300) settle(new GatewayError('upstream_invalid_response', 'the provider answer is larger than the gateway accepts'));
              else settle(undefined, { statusCode, headers, body: Buffer.alloc(0) });
              controller.abort(new Error('answer too large'));
              return;
            }
            chunks.push(chunk);
          },
          end() {
            settle(undefined, { statusCode, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
          },
          // an error answer cut off mid-body is still mapped by its status (its body is only a hint)
          fail: (err) => (statusCode >= 300 ? settle(undefined, { statusCode, headers, body: Buffer.alloc(0) }) : settle(err)),
        });
      });
    },
    sendStreamed(request, signal, errorLimit) {
      return new Promise<StreamedUpstreamResponse>((resolve, reject) => {
        let feed: ReturnType<typeof createBodyFeed> | undefined;
        let refusal: { statusCode: number; headers: UpstreamHeaders; chunks: Buffer[]; size: number } | undefined;
        let settled = false;
        const answerRefusal = (errorBody: Buffer) => {
          settled = true;
          const r = refusal as NonNullable<typeof refusal>;
          resolve({ statusCode: r.statusCode, headers: r.headers, body: null, errorBody });
        };
        dispatch(request, signal, {
          start(status, headers, controller) {
            if (status >= 300) {
              refusal = { statusCode: status, headers, chunks: [], size: 0 };
              return;
            }
            // resolved at the headers: chunks read before the relay consumes are queued in the feed
            feed = createBodyFeed(controller);
            settled = true;
            resolve({ statusCode: status, headers, body: feed, errorBody: null });
          },
          data(chunk, controller) {
            if (feed) return feed.push(chunk);
            if (settled || !refusal) return;
            refusal.size += chunk.length;
            if (refusal.size > errorLimit) {
              // only a hint is read from an error answer, never all of it
              answerRefusal(Buffer.alloc(0));
              controller.abort(new Error('error answer too large'));
              return;
            }
            refusal.chunks.push(chunk);
          },
          end() {
            if (feed) return feed.end();
            if (!settled && refusal) answerRefusal(Buffer.concat(refusal.chunks, refusal.size));
          },
          fail(err) {
            if (feed) return feed.end(err);
            if (settled) return;
            // an error answer cut off mid-body is still mapped by its status (its body is only a hint)
            if (refusal) return answerRefusal(Buffer.alloc(0));
            settled = true;
            reject(err);
          },
        });
      });
    },
    close: () => pool.close(),
  };

  /**
   * Sends through undici's dispatch with a handler of our own: the answer arrives in these
   * callbacks as the parser reads it, with no stream object, AsyncResource or promise chain per
   * answer in between (about a tenth of a request's CPU). `fail` or `end` is called once.
   */
  function dispatch(request: UpstreamRequest, signal: AbortSignalLike | undefined, sink: {
    start(status: number, headers: UpstreamHeaders, controller: Dispatcher.DispatchController): void;
    data(chunk: Buffer, controller: Dispatcher.DispatchController): void;
    end(): void;
    fail(err: GatewayError): void;
  }): void {
    let controller: Dispatcher.DispatchController | undefined;
    let done = false;
    const finish = (err?: GatewayError) => {
      if (done) return;
      done = true;
      signal?.removeListener('abort', onAbort);
      if (err === undefined) sink.end();
      else sink.fail(err);
    };
    const onAbort = () => {
      const reason = signal?.reason ?? new Error('aborted');
      if (controller) return controller.abort(reason);
      // still queued for a connection: answer now rather than when one frees up (a slow
      // provider holds every connection); onRequestStart aborts it before a byte is written
      finish(toGatewayError(reason));
    };
    if (signal?.aborted) return sink.fail(toGatewayError(signal.reason ?? new Error('aborted')));
    signal?.once('abort', onAbort);
    pool.dispatch({ method: request.method as Dispatcher.HttpMethod, path: basePath + request.path, headers: request.headers, body: request.body ?? null }, {
      onRequestStart(c) {
        controller = c;
        if (signal?.aborted) c.abort(signal.reason ?? new Error('aborted'));
      },
      onResponseStart(c, status, headers) {
        if (!done) sink.start(status, headers as UpstreamHeaders, c);
      },
      onResponseData(c, chunk) {
        if (!done) sink.data(chunk, c);
      },
      onResponseEnd: () => finish(),
      onResponseError: (_c, err) => finish(toGatewayError(err)),
    });
  }
}

/** The feed of one streamed answer (see UpstreamBodyFeed); `push` and `end` are the client's side. */
function createBodyFeed(controller: Dispatcher.DispatchController) {
  let queue: Buffer[] | null = [];
  let onData: ((chunk: Buffer) => void) | undefined;
  let onEnd: ((err?: GatewayError) => void) | undefined;
  let ended = false;
  let endError: GatewayError | undefined;
  let stopped = false;
  return {
    push(chunk: Buffer): void {
      if (stopped) return;
      if (onData) onData(chunk);
      else queue?.push(chunk);
    },
    end(err?: GatewayError): void {
      if (ended) return;
      ended = true;
      endError = err;
      if (onEnd && !stopped) onEnd(err);
    },
    consume(data: (chunk: Buffer) => void, end: (err?: GatewayError) => void): void {
      onData = data;
      onEnd = end;
      const queued = queue ?? [];
      queue = null;
      for (const chunk of queued) {
        if (stopped) return;
        data(chunk);
      }
      if (ended && !stopped) end(endError);
    },
    // after the end the connection may already carry another request: never pause or resume it
    pause: () => {
      if (!ended) controller.pause();
    },
    resume: () => {
      if (!ended) controller.resume();
    },
    abort(): void {
      if (stopped) return;
      stopped = true;
      controller.abort(new Error('the relay stopped reading'));
    },
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
