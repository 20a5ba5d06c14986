import type { GatewayError } from '../../errors/index.js';
import {
  checkKey,
  isRecord,
  mapUpstreamError,
  optionalTokenCount,
  parseErrorBody,
  parseJson,
  safeProviderCode,
  tokenCount,
  unsupportedEndpoint,
} from '../common.js';
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
 * Anthropic Messages API. The configured base URL is the bare host (`https://api.anthropic.com`),
 * so paths carry `/v1`.
 *
 * Usage: Anthropic's `input_tokens` excludes the tokens read from and written to the prompt
 * cache. We report inputTokens = input_tokens + cache_creation_input_tokens +
 * cache_read_input_tokens (every input token the request consumed), and
 * cachedInputTokens = cache_read_input_tokens, the same meaning OpenAI's numbers have.
 */

export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
const VERSION_FORMAT = /^\d{4}-\d{2}-\d{2}$/;
/** Fallback when an event has no `event:` name: Anthropic puts `type` first in its data. */
const LEADING_TYPE = /^\s*\{\s*"type"\s*:\s*"([a-z_]{1,64})"/;

export function createAnthropicAdapter(): ProviderAdapter {
  return {
    type: 'anthropic',

    supports(endpoint: Endpoint): boolean {
      return endpoint === 'messages';
    },

    buildRequest(request: NormalisedRequest, apiKey: string, forwardedHeaders: Record<string, string>): UpstreamRequest {
      if (request.endpoint !== 'messages') throw unsupportedEndpoint(request.endpoint);
      checkKey(apiKey);
      const body: Record<string, unknown> = { ...request.body, model: request.upstreamModel };
      if (request.maxOutputTokens !== undefined) body['max_tokens'] = request.maxOutputTokens;
      return {
        method: 'POST',
        path: '/v1/messages',
        headers: {
          'x-api-key': apiKey,
          'anthropic-version': anthropicVersion(forwardedHeaders),
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
        path: '/v1/models',
        headers: { 'x-api-key': apiKey, 'anthropic-version': DEFAULT_ANTHROPIC_VERSION, accept: 'application/json' },
      };
    },

    readUsage(endpoint: Endpoint, answer: unknown): Usage | undefined {
      if (endpoint !== 'messages' || !isRecord(answer)) return undefined;
      return messagesUsage(answer['usage']);
    },

    createStreamReader(request: NormalisedRequest): StreamUsageReader {
      if (request.endpoint !== 'messages') throw unsupportedEndpoint(request.endpoint);
      return createMessagesStreamReader();
    },

    mapError(status: number, bodyText: string, retryAfter: string | undefined): GatewayError {
      // Anthropic: {"type":"error","error":{"type":"overloaded_error","message":"…"}}. 529 = overloaded.
      const parsed = parseErrorBody(bodyText);
      const error = isRecord(parsed) ? parsed['error'] : undefined;
      const code = isRecord(error) ? safeProviderCode(error['type']) : undefined;
      return mapUpstreamError(status, code, retryAfter);
    },
  };
}

/** The client's `anthropic-version` when it is a well-formed date, else the default. */
function anthropicVersion(forwarded: Record<string, string>): string {
  for (const [name, value] of Object.entries(forwarded)) {
    if (name.toLowerCase() === 'anthropic-version') {
      const version = value.trim();
      return VERSION_FORMAT.test(version) ? version : DEFAULT_ANTHROPIC_VERSION;
    }
  }
  return DEFAULT_ANTHROPIC_VERSION;
}

function messagesUsage(value: unknown): Usage | undefined {
  if (!isRecord(value)) return undefined;
  const input = tokenCount(value['input_tokens']);
  const output = tokenCount(value['output_tokens']);
  const creation = optionalTokenCount(value['cache_creation_input_tokens']);
  const read = optionalTokenCount(value['cache_read_input_tokens']);
  if (input === undefined || output === undefined || creation === undefined || read === undefined) return undefined;
  const usage: Usage = { inputTokens: input + (creation ?? 0) + (read ?? 0), outputTokens: output };
  if (read !== null) usage.cachedInputTokens = read;
  return usage;
}

/**
 * Messages stream. `message_start` carries the input side (and a first output count) in
 * `message.usage`; `message_delta` carries cumulative counts in `usage` (its `output_tokens` is
 * the running total, and newer API versions may repeat the input side there too); `message_stop`
 * ends the stream. An `error` event does not: the stream is broken, not finished.
 * Shortcut for the hot path: only `message_start` and `message_delta` data is JSON-parsed.
 * Every event is relayed.
 */
function createMessagesStreamReader(): StreamUsageReader {
  let input = 0;
  let cacheCreation = 0;
  let cacheRead: number | undefined;
  let output = 0;
  let done = false;

  function take(usage: unknown): void {
    if (!isRecord(usage)) return;
    input = tokenCount(usage['input_tokens']) ?? input;
    cacheCreation = tokenCount(usage['cache_creation_input_tokens']) ?? cacheCreation;
    cacheRead = tokenCount(usage['cache_read_input_tokens']) ?? cacheRead;
    output = tokenCount(usage['output_tokens']) ?? output;
  }

  return {
    accept(event: SseEvent): boolean {
      const type = event.event ?? LEADING_TYPE.exec(event.data)?.[1];
      if (type === 'message_stop') {
        done = true;
      } else if (type === 'message_start') {
        const parsed = parseJson(event.data);
        const message = isRecord(parsed) ? parsed['message'] : undefined;
        if (isRecord(message)) take(message['usage']);
      } else if (type === 'message_delta') {
        const parsed = parseJson(event.data);
        if (isRecord(parsed)) take(parsed['usage']);
      }
      return true;
    },
    usage(): Usage {
      const usage: Usage = { inputTokens: input + cacheCreation + (cacheRead ?? 0), outputTokens: output };
      if (cacheRead !== undefined) usage.cachedInputTokens = cacheRead;
      return usage;
    },
    finished: () => done,
  };
}
