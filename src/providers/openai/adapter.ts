import { GatewayError } from '../../errors/index.js';
import type {
  Endpoint,
  NormalisedRequest,
  ProviderAdapter,
  SseEvent,
  StreamUsageReader,
  UpstreamRequest,
  Usage,
} from '../types.js';

/*
 * OpenAI wire protocol (also spoken by OpenAI-compatible servers): chat completions, responses
 * and embeddings. The configured base URL already ends in `/v1`.
 *
 * The small helpers exported below the adapter (`isRecord`, `tokenCount`, `mapUpstreamError`, …)
 * are shared with the Anthropic adapter; they are provider-neutral and have no I/O.
 */

const PATHS: Partial<Record<Endpoint, string>> = {
  chat: '/chat/completions',
  responses: '/responses',
  embeddings: '/embeddings',
};

/** Output-cap fields that may appear in an OpenAI body. */
const CAP_FIELDS = ['max_tokens', 'max_completion_tokens', 'max_output_tokens'] as const;

/** Chat: a `usage` key holding an object (not `"usage":null`). Cannot match inside a JSON string, whose quotes are escaped. */
const CHAT_USAGE_OBJECT = /"usage"\s*:\s*\{/;
const RESPONSES_TERMINAL: ReadonlySet<string> = new Set(['response.completed', 'response.failed', 'response.incomplete']);
const RESPONSES_TERMINAL_TYPE = /"type"\s*:\s*"response\.(?:completed|failed|incomplete)"/;

export function createOpenAiAdapter(): ProviderAdapter {
  return {
    type: 'openai',

    supports(endpoint: Endpoint): boolean {
      return PATHS[endpoint] !== undefined;
    },

    buildRequest(request: NormalisedRequest, apiKey: string, forwardedHeaders: Record<string, string>): UpstreamRequest {
      const path = PATHS[request.endpoint];
      if (path === undefined) throw unsupportedEndpoint(request.endpoint);
      checkKey(apiKey);

      const body: Record<string, unknown> = { ...request.body, model: request.upstreamModel };
      const field = request.maxTokensField;
      const cap = request.maxOutputTokens;
      if (field !== undefined && cap !== undefined) {
        body[field] = cap;
        // Defence in depth: another cap field the client also sent must not exceed the cap either.
        for (const other of CAP_FIELDS) {
          if (other === field || !Object.hasOwn(body, other)) continue;
          const value = body[other];
          body[other] = typeof value === 'number' && value < cap ? value : cap;
        }
      }
      if (request.endpoint === 'chat' && request.stream) {
        // Always ask for the usage chunk so the gateway can meter the stream; the stream reader
        // hides that chunk from clients that did not ask for it.
        const options = body['stream_options'];
        body['stream_options'] = isRecord(options) ? { ...options, include_usage: true } : { include_usage: true };
      }

      return {
        method: 'POST',
        path,
        headers: {
          ...passThroughHeaders(forwardedHeaders),
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/json',
          accept: request.stream ? 'text/event-stream' : 'application/json',
        },
        body: JSON.stringify(body),
      };
    },

    buildKeyCheckRequest(apiKey: string): UpstreamRequest {
      checkKey(apiKey);
      return {
        method: 'GET',
        path: '/models',
        headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json' },
      };
    },

    readUsage(endpoint: Endpoint, answer: unknown): Usage | undefined {
      if (!isRecord(answer)) return undefined;
      switch (endpoint) {
        case 'chat':
          return chatUsage(answer['usage'], false);
        case 'embeddings':
          return chatUsage(answer['usage'], true);
        case 'responses':
          return responsesUsage(answer['usage']);
        case 'messages':
          return undefined;
      }
    },

    createStreamReader(request: NormalisedRequest): StreamUsageReader {
      switch (request.endpoint) {
        case 'chat':
          return createChatStreamReader(request.clientWantsStreamUsage);
        case 'responses':
          return createResponsesStreamReader();
        case 'embeddings':
        case 'messages':
          throw new GatewayError('request_invalid', `streaming is not available on the ${request.endpoint} endpoint`, {
            param: 'stream',
          });
      }
    },

    mapError(status: number, bodyText: string, retryAfter: string | undefined): GatewayError {
      const parsed = parseErrorBody(bodyText);
      let code: string | undefined;
      if (isRecord(parsed) && isRecord(parsed['error'])) {
        const error = parsed['error'];
        code = safeProviderCode(error['code']) ?? safeProviderCode(error['type']);
      }
      return mapUpstreamError(status, code, retryAfter);
    },
  };
}

/** Chat completions and embeddings usage. Embeddings carry no `completion_tokens` (→ 0). */
function chatUsage(value: unknown, completionOptional: boolean): Usage | undefined {
  if (!isRecord(value)) return undefined;
  const inputTokens = tokenCount(value['prompt_tokens']);
  const completion = value['completion_tokens'];
  const outputTokens = completionOptional && completion === undefined ? 0 : tokenCount(completion);
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  const details = value['prompt_tokens_details'];
  const cached = isRecord(details) ? optionalTokenCount(details['cached_tokens']) : null;
  if (cached === undefined) return undefined;
  return cached === null ? { inputTokens, outputTokens } : { inputTokens, outputTokens, cachedInputTokens: cached };
}

/** Responses API usage: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`. */
function responsesUsage(value: unknown): Usage | undefined {
  if (!isRecord(value)) return undefined;
  const inputTokens = tokenCount(value['input_tokens']);
  const outputTokens = tokenCount(value['output_tokens']);
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  const details = value['input_tokens_details'];
  const cached = isRecord(details) ? optionalTokenCount(details['cached_tokens']) : null;
  if (cached === undefined) return undefined;
  return cached === null ? { inputTokens, outputTokens } : { inputTokens, outputTokens, cachedInputTokens: cached };
}

/**
 * Chat stream. Shortcut for the hot path: an event's data is JSON-parsed only when it may carry a
 * usage object (`"usage":{`, whitespace allowed); every other chunk, including the
 * `"usage":null` ones that `include_usage` adds, is relayed without parsing. The usage chunk
 * (a non-null `usage` object) is hidden from a client that did not ask for it, unless it also
 * carries choices.
 */
function createChatStreamReader(clientWantsUsage: boolean): StreamUsageReader {
  let usage: Usage = { inputTokens: 0, outputTokens: 0 };
  let done = false;
  return {
    accept(event: SseEvent): boolean {
      const data = event.data;
      if (data.length < 16 && data.trim() === '[DONE]') {
        done = true;
        return true;
      }
      if (!CHAT_USAGE_OBJECT.test(data)) return true;
      const parsed = parseJson(data);
      if (!isRecord(parsed) || !isRecord(parsed['usage'])) return true;
      const read = chatUsage(parsed['usage'], false);
      if (read !== undefined) usage = read;
      if (clientWantsUsage) return true;
      const choices = parsed['choices'];
      return Array.isArray(choices) && choices.length > 0;
    },
    usage: () => ({ ...usage }),
    finished: () => done,
  };
}

/**
 * Responses stream. Shortcut for the hot path: only the terminal events (`response.completed`,
 * `response.failed`, `response.incomplete`, recognised by their `event:` name, or by their data's
 * `type` when the event has no `response.*` name) are JSON-parsed; they carry the usage in
 * `response.usage` and end the stream. Every event is relayed.
 */
function createResponsesStreamReader(): StreamUsageReader {
  let usage: Usage = { inputTokens: 0, outputTokens: 0 };
  let done = false;
  return {
    accept(event: SseEvent): boolean {
      const name = event.event;
      const candidate =
        name !== undefined && name.startsWith('response.')
          ? RESPONSES_TERMINAL.has(name)
          : RESPONSES_TERMINAL_TYPE.test(event.data);
      if (!candidate) return true;
      const parsed = parseJson(event.data);
      if (!isRecord(parsed)) return true;
      const type = parsed['type'];
      if (typeof type !== 'string' || !RESPONSES_TERMINAL.has(type)) return true;
      done = true;
      const response = parsed['response'];
      if (isRecord(response)) {
        const read = responsesUsage(response['usage']);
        if (read !== undefined) usage = read;
      }
      return true;
    },
    usage: () => ({ ...usage }),
    finished: () => done,
  };
}

// ---------------------------------------------------------------------------------------------
// Provider-neutral helpers, shared with the Anthropic adapter.

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

/** Headers the adapter sets itself, or that must never be forwarded whatever the caller passed. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'content-type',
  'content-length',
  'transfer-encoding',
  'accept',
  'host',
  'connection',
  'cookie',
]);

/** Forwarded headers (already filtered by the caller), lower-cased, minus the reserved ones. */
function passThroughHeaders(forwarded: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(forwarded)) {
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower === '__proto__') continue;
    out[lower] = value;
  }
  return out;
}
