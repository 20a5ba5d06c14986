import type { ServerResponse } from 'node:http';
import type { AbortSignalLike, RequestAbort } from './request-abort.js';
import { StringDecoder } from 'node:string_decoder';
import { GatewayError, errorBody, type ErrorDialect } from '../errors/index.js';
import type { Principal } from '../auth/types.js';
import type { ModelRoute } from '../config/types.js';
import type { Endpoint, NormalisedRequest, ProviderAdapter, Usage } from '../providers/types.js';
import { createSseParser } from '../providers/sse.js';
import { validateRequest } from '../policy/validate.js';
import type { UpstreamClient } from '../upstream/client.js';
import { toGatewayError } from '../upstream/client.js';
import type { ProviderKeyPool } from '../secrets/provider-keys.js';
import type { Logger } from '../log/logger.js';
import type { Admission } from '../quota/admission.js';

/** Per-request facts gathered along the stages, read by the record stage. Never holds content. */
export interface RequestContext {
  requestId: string;
  /** performance.now() when the request arrived. */
  startedAt: number;
  endpoint: Endpoint | null;
  dialect: ErrorDialect;
  principal: Principal | undefined;
  model: string | null;
  provider: string | null;
  stream: boolean;
  usage: Usage;
  upstreamMs: number;
  status: number;
  outcome: 'success' | 'refused' | 'upstream_error' | 'client_aborted' | 'stream_broken' | 'ended_at_shutdown';
  errorCode: string | null;
  promptFingerprint: string | null;
  /** The register id of the provider key the request was sent with; null until one is. */
  providerKeyId: string | null;
  /** What the fingerprint is computed from, until it is (while the provider works, or when recorded). */
  fingerprintInput: { endpoint: Endpoint; body: Record<string, unknown> } | null;
  /** Settled cost in nano-USD (set by the settle stage). */
  costNanoUsd: number;
  /** True once the provider answered 2xx: from then on the input is billed even if the answer breaks. */
  upstreamAccepted: boolean;
  /** The provider's model name, once validated. */
  upstreamModel: string | null;
  /**
   * The client's address (the TCP peer; proxies' `X-Forwarded-For` is not trusted). Records
   * keep only its HMAC; it never reaches a log line or metric label in clear.
   */
  clientAddress: string;
  /** The quota reservation, when the tenant or key has limits; settled once by the settle stage. */
  admission: Admission | undefined;
  /**
   * The one exception to "no content": set only for a request picked by content sampling
   * (`audit.sampling`, whole answers only), it carries the body and, once relayed, the answer
   * to the record stage, which seals them and drops this field. Never logged or recorded in clear.
   */
  sample: { request: Record<string, unknown>; answer: Buffer | null } | undefined;
  /** The id of the object the provider stored for this answer (OpenAI Responses), bound to the tenant when recorded; null when none. */
  responseId: string | null;
  /** The ids of the answer's output items (OpenAI Responses), bound to the tenant with the response id; empty when none. */
  outputItemIds: readonly string[];
}

export function newRequestContext(requestId: string, dialect: ErrorDialect, startedAt: number, clientAddress = ''): RequestContext {
  return {
    requestId, startedAt, clientAddress, endpoint: null, dialect, principal: undefined, model: null, provider: null, stream: false,
    usage: { inputTokens: 0, outputTokens: 0 }, upstreamMs: 0, status: 0, outcome: 'success', errorCode: null, promptFingerprint: null, fingerprintInput: null, providerKeyId: null,
    costNanoUsd: 0, upstreamAccepted: false, upstreamModel: null, admission: undefined, sample: undefined, responseId: null, outputItemIds: [],
  };
}

export interface ProviderTarget {
  id: string;
  adapter: ProviderAdapter;
  client: UpstreamClient;
}

export interface ProxyDeps {
  models: Readonly<Record<string, ModelRoute>>;
  routedModels: ReadonlySet<string>;
  providers: ReadonlyMap<string, ProviderTarget>;
  keys: ProviderKeyPool;
  fingerprint(endpoint: Endpoint, body: Record<string, unknown>): string;
  logger: Logger;
  maxUpstreamResponseBytes: number;
  /**
   * `server.stream_stall_timeout` (ms): the longest a stream waits, with the provider paused, for
   * its client to take the output already buffered for it (see `stream`).
   */
  streamStallMs: number;
  /** Content sampling's coin toss (absent when sampling is off). Streamed answers are never sampled. */
  pickSample?: () => boolean;
}

/** Bytes of a provider's error answer read for the error mapping (its code only); the rest is never read. */
const ERROR_BODY_LIMIT = 64 * 1024;

/** Bytes a provider may send after a stream's terminal event (read only to keep the connection) before it is cut off. */
const TRAILING_LIMIT = 64 * 1024;

/** The longest delay a Node timer takes (a longer one fires at once): a larger provider timeout is clamped to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Headers a client may send that are passed on (each adapter filters again). Everything else stays here. */
const FORWARDED_HEADERS = ['anthropic-version'] as const;

/** A request that passed validation, with its provider chosen. */
export interface PreparedRequest {
  target: ProviderTarget;
  request: NormalisedRequest;
  forwarded: Record<string, string>;
}

/** The answer to send for a whole (non-streamed) request. */
export interface WholeAnswer {
  status: number;
  body: Buffer;
  usage: Usage;
}

/**
 * The stages between authentication and recording, in their fixed order:
 * validate (schema + policy) → dlp (src/dlp/stage.ts, run by the HTTP layer) → admit → forward → relay. Takes plain values; the HTTP layer
 * calls it and sends what it returns (or, for streams, lets it write to the raw response).
 */
export function createProxy(deps: ProxyDeps) {
  const { models, routedModels, providers, keys, logger } = deps;

  /** Validate: schema and tenant policy; fills the context's model, provider and fingerprint. */
  function validate(ctx: RequestContext, endpoint: Endpoint, body: unknown, headers: Record<string, string | string[] | undefined>): PreparedRequest {
    const principal = ctx.principal as Principal;
    const checked = validateRequest(endpoint, body, principal.policy, routedModels);
    const route = models[checked.model] as ModelRoute;
    ctx.model = checked.model;
    ctx.upstreamModel = route.model;
    ctx.stream = checked.stream;
    const target = providers.get(route.provider);
    if (!target) throw new GatewayError('service_unavailable', 'the provider for this model is not available');
    ctx.provider = target.id;
    if (!target.adapter.supports(endpoint)) {
      throw new GatewayError('request_invalid', `model "${checked.model}" is not served on this endpoint`, { param: 'model' });
    }
    const json = body as Record<string, unknown>;
    // the fingerprint (an HMAC over the whole prompt) is computed once the provider has the request, off the critical path
    ctx.fingerprintInput = { endpoint, body: json };
    // streamed answers are relayed as they come, never buffered: only whole answers can be sampled
    if (!checked.stream && deps.pickSample?.()) ctx.sample = { request: json, answer: null };
    const request: NormalisedRequest = {
      endpoint, publicModel: checked.model, upstreamModel: route.model, body: json, stream: checked.stream,
      maxOutputTokens: checked.maxOutputTokens, maxTokensField: checked.maxTokensField,
      clientWantsStreamUsage: checked.clientWantsStreamUsage,
    };
    const forwarded: Record<string, string> = {};
    for (const name of FORWARDED_HEADERS) {
      const value = headers[name];
      if (typeof value === 'string') forwarded[name] = value;
    }
    return { target, request, forwarded };
  }

  /** Forward, first half: the provider request with the server-held key. */
  function buildUpstream(ctx: RequestContext, target: ProviderTarget, request: NormalisedRequest, forwarded: Record<string, string>) {
    const apiKey = keys.current(target.id);
    if (apiKey === undefined) {
      if (keys.contained?.(target.id)) throw new GatewayError('provider_key_contained', 'this provider\'s key was contained after an incident and no other key is current');
      throw new GatewayError('provider_key_unavailable', 'no provider key is loaded for this model');
    }
    ctx.providerKeyId = keys.currentId?.(target.id) ?? null;
    return target.adapter.buildRequest(request, apiKey, forwarded);
  }

  /** A provider's refusal as the gateway's error (its body only read for a hint, never relayed). */
  function upstreamError(ctx: RequestContext, target: ProviderTarget, status: number, text: string, retryAfter: string | string[] | undefined): GatewayError {
    const err = target.adapter.mapError(status, text, typeof retryAfter === 'string' ? retryAfter : undefined);
    if (err.code === 'upstream_auth_failed') {
      // operators need to know at once; the client only gets the gateway's error
      logger.error({ event: 'upstream_auth_failed', provider: target.id, upstreamStatus: status, requestId: ctx.requestId },
        'the provider rejected the gateway key; check the provider key');
    }
    return err;
  }

  /** Forward for a stream: send, and turn an error answer (read capped) into a gateway error. */
  async function forward(ctx: RequestContext, target: ProviderTarget, request: NormalisedRequest, forwarded: Record<string, string>, signal: AbortSignalLike) {
    const upstream = buildUpstream(ctx, target, request, forwarded);
    const sentAt = performance.now();
    let response;
    try {
      const sending = target.client.sendStreamed(upstream, signal, ERROR_BODY_LIMIT);
      fingerprint(ctx);
      response = await sending;
    } catch (err) {
      // time spent waiting on a provider that never answered is upstream time, not gateway time
      ctx.upstreamMs = performance.now() - sentAt;
      throw err;
    }
    if (response.body === null) {
      ctx.upstreamMs = performance.now() - sentAt;
      throw upstreamError(ctx, target, response.statusCode, response.errorBody.toString('utf8'), response.headers['retry-after']);
    }
    ctx.upstreamAccepted = true;
    return { headers: response.headers, body: response.body, sentAt };
  }

  /** Fills `ctx.promptFingerprint` from the validated body, once (the original body, before DLP masking). */
  function fingerprint(ctx: RequestContext): void {
    const input = ctx.fingerprintInput;
    if (input === null) return;
    ctx.fingerprintInput = null;
    ctx.promptFingerprint = deps.fingerprint(input.endpoint, input.body);
  }

  return {
    validate,
    fingerprint,

    /** Runs forward and relay for a whole answer. */
    async whole(ctx: RequestContext, prepared: PreparedRequest, signal: AbortSignalLike): Promise<WholeAnswer> {
      const { target, request, forwarded } = prepared;
      const endpoint = request.endpoint;
      const upstream = buildUpstream(ctx, target, request, forwarded);
      const sentAt = performance.now();
      let response;
      try {
        const sending = target.client.sendBuffered(upstream, signal, deps.maxUpstreamResponseBytes, ERROR_BODY_LIMIT);
        fingerprint(ctx);
        response = await sending;
      } finally {
        ctx.upstreamMs = performance.now() - sentAt;
      }
      if (response.statusCode >= 300) throw upstreamError(ctx, target, response.statusCode, response.body.toString('utf8'), response.headers['retry-after']);
      ctx.upstreamAccepted = true;
      const buffer = response.body;
      let answer: unknown;
      try {
        answer = JSON.parse(buffer.toString('utf8'));
      } catch {
        throw new GatewayError('upstream_invalid_response', 'the provider sent an answer that is not valid JSON');
      }
      const usage = target.adapter.readUsage(endpoint, answer);
      if (usage) ctx.usage = usage;
      ctx.responseId = target.adapter.readResponseId?.(endpoint, answer) ?? null;
      ctx.outputItemIds = target.adapter.readOutputItemIds?.(endpoint, answer) ?? [];
      if (ctx.sample) ctx.sample.answer = buffer;
      return { status: 200, body: buffer, usage: ctx.usage };
    },

    /**
     * Runs forward and relay for a stream, writing to `res`. Errors before the first byte are
     * thrown (the caller answers them normally); after it, they end the stream with an error event.
     */
    async stream(ctx: RequestContext, prepared: PreparedRequest, res: ServerResponse, abort: RequestAbort, onHeaders: () => void): Promise<void> {
      const { target, request, forwarded } = prepared;
      const { headers, body, sentAt } = await forward(ctx, target, request, forwarded, abort.signal);
      const contentType = headers['content-type'];
      if (typeof contentType !== 'string' || !contentType.startsWith('text/event-stream')) {
        // never drain an answer we refuse: a provider could keep sending forever
        body.abort();
        throw new GatewayError('upstream_invalid_response', 'the provider did not answer with a stream');
      }
      onHeaders();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-request-id': ctx.requestId,
        'x-accel-buffering': 'no',
        ...ctx.admission?.headers,
      });
      // no flushHeaders(): the headers leave with the first events, one write instead of two

      const reader = target.adapter.createStreamReader(request);
      let pending = '';
      let malformed = false;
      const parser = createSseParser((event) => {
        if (malformed) return;
        // a cheap shape check instead of parsing every event: provider events carry one JSON
        // object (or [DONE]); anything else is a broken stream, never relayed
        if (!looksLikeJsonEvent(event.data)) {
          malformed = true;
          return;
        }
        if (reader.accept(event)) pending += event.raw;
      });
      const decoder = new StringDecoder('utf8');
      let failure: GatewayError | undefined;
      // set when the client let the relay's output sit undrained for longer than
      // server.stream_stall_timeout: upstream reading is paused meanwhile (so undici's body
      // timeout cannot fire), and without this bound a client that stops reading would hold the
      // provider connection, and outlive its concurrency slot's lease, for as long as it keeps the
      // socket open. Not the provider's timeout: 'drain' comes only once the kernel's send buffer
      // (megabytes on a fast link) has largely emptied, so a slow but steady reader can go tens of
      // seconds without one; the bound is minutes, below the reservation lease
      let stalled = false;
      let stallTimer: NodeJS.Timeout | undefined;
      const stallMs = Math.min(deps.streamStallMs, MAX_TIMER_MS);
      try {
        // the client's callbacks, not a stream object: no promise or event per chunk on the relay's hot path
        await new Promise<void>((resolve, reject) => {
          let settled = false;
          const settle = (err?: GatewayError) => {
            if (settled) return;
            settled = true;
            if (err === undefined) resolve();
            else reject(err);
          };
          // armed only while waiting for a drain, so it costs nothing while the client keeps up
          const onStall = () => {
            stallTimer = undefined;
            if (settled || res.destroyed) return;
            stalled = true;
            // hang up on the provider and on the client: the socket's buffered output is dropped
            body.abort();
            res.destroy();
            settle(new GatewayError('client_read_timeout', 'the client did not read the stream in time'));
          };
          let trailing = 0;
          let waiting = false;
          body.consume((chunk) => {
            if (settled) {
              // after the terminal event the rest is read only so the connection can be reused:
              // never held or relayed, and a provider that keeps sending is cut off
              trailing += chunk.length;
              if (trailing > TRAILING_LIMIT) body.abort();
              return;
            }
            parser.push(decoder.write(chunk));
            if (malformed) return settle();
            // the terminal event ends the client's answer (sent with res.end(): one write instead of two)
            if (reader.finished()) return settle();
            if (pending.length > 0) {
              const ok = res.write(pending);
              pending = '';
              // respect the client's pace: stop reading upstream until it drains (once: queued
              // chunks are delivered in one go and each may find the buffer full)
              if (!ok && !res.destroyed && !waiting) {
                waiting = true;
                body.pause();
                stallTimer = setTimeout(onStall, stallMs);
                void waitForDrain(res).then(() => {
                  clearTimeout(stallTimer);
                  stallTimer = undefined;
                  waiting = false;
                  if (!stalled) body.resume();
                });
              }
            }
          }, settle);
        });
        if (malformed) {
          // stop reading the provider; the client gets an error event below
          body.abort();
          failure = new GatewayError('upstream_invalid_response', 'the provider sent a malformed stream event');
        } else {
          parser.push(decoder.end());
          parser.end();
        }
        if (!failure && !reader.finished()) failure = new GatewayError('upstream_invalid_response', 'the provider stream ended before it was complete');
      } catch (err) {
        if (!abort.signal.aborted) failure = toGatewayError(err);
      } finally {
        // the relay is done with the provider: a drain still awaited no longer matters
        clearTimeout(stallTimer);
        ctx.upstreamMs = performance.now() - sentAt;
        ctx.usage = reader.usage();
        ctx.responseId = reader.responseId?.() ?? null;
        ctx.outputItemIds = reader.outputItemIds?.() ?? [];
      }
      if (stalled) {
        // ended by the gateway, not by the client or the provider (destroying the response also
        // fires the client abort, so this is checked first); the answer's status was already 200
        ctx.outcome = 'stream_broken';
        ctx.errorCode = 'client_read_timeout';
        ctx.status = 200;
        return;
      }
      if (abort.signal.aborted) {
        ctx.outcome = 'client_aborted';
        ctx.status = 499;
        ctx.errorCode = null;
        return;
      }
      if (failure) {
        ctx.outcome = 'stream_broken';
        ctx.errorCode = failure.code;
        pending += streamErrorEvent(failure, ctx.dialect, ctx.requestId);
      }
      ctx.status = 200;
      if (res.destroyed) return;
      if (pending.length > 0) res.end(pending);
      else res.end();
    },
  };
}

export type Proxy = ReturnType<typeof createProxy>;

/** An error event in the dialect's stream format, so SDKs raise it instead of ending quietly. */
function streamErrorEvent(err: GatewayError, dialect: ErrorDialect, requestId: string): string {
  return `event: error\ndata: ${JSON.stringify(errorBody(err, dialect, requestId))}\n\n`;
}

/** True for an empty event (comment, keep-alive), `[DONE]`, or data shaped like one JSON object. */
function looksLikeJsonEvent(data: string): boolean {
  if (data.length === 0 || data === '[DONE]') return true;
  const first = data.charCodeAt(0);
  const last = data.charCodeAt(data.length - 1);
  return first === 0x7b /* { */ && (last === 0x7d /* } */ || (last <= 0x20 && data.trimEnd().endsWith('}')));
}

function waitForDrain(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.removeListener('drain', done);
      res.removeListener('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
