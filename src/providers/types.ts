import type { GatewayError } from '../errors/index.js';

/** The public endpoints that reach a provider. */
export type Endpoint = 'chat' | 'responses' | 'embeddings' | 'messages';

/** Provider wire protocols keywarden speaks. */
export type ProviderType = 'openai' | 'anthropic';

/** Token usage read from a provider answer (whole or streamed). */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  /** Input tokens served from the provider's prompt cache, where it reports them. */
  cachedInputTokens?: number;
}

/**
 * A request that passed authentication, validation and policy, ready to be mapped onto a
 * provider's wire format. `body` is the client's JSON body in the endpoint's own shape,
 * already checked against the endpoint schema and the tenant policy.
 */
export interface NormalisedRequest {
  endpoint: Endpoint;
  /** The model name the client used (a public name from config). */
  publicModel: string;
  /** The provider's model name (config `models.<name>.model`, or the public name). */
  upstreamModel: string;
  body: Record<string, unknown>;
  stream: boolean;
  /**
   * The output-token cap to send upstream (the client's value clamped to the tenant's cap, or the
   * cap when the client gave none). Undefined for endpoints without output (embeddings).
   */
  maxOutputTokens: number | undefined;
  /**
   * The body field that carries the output cap upstream (`max_tokens`, `max_completion_tokens`,
   * `max_output_tokens`); undefined for embeddings.
   */
  maxTokensField: string | undefined;
  /** OpenAI chat streams: whether the client itself asked for the usage chunk (`stream_options.include_usage`). */
  clientWantsStreamUsage: boolean;
}

/** What the upstream layer sends: a path relative to the provider's configured base URL. */
export interface UpstreamRequest {
  method: 'GET' | 'POST' | 'DELETE';
  /** Appended to the base URL's path, e.g. `/chat/completions` or `/v1/messages`. Never client-controlled. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** One Server-Sent Event as read from the upstream stream. */
export interface SseEvent {
  /** The `event:` field, if any. */
  event: string | undefined;
  /** The joined `data:` lines. */
  data: string;
  /** The event's exact bytes as received (including its terminating blank line), for relaying unchanged. */
  raw: string;
}

/** Reads usage from a stream, event by event, and says which events the client sees. */
export interface StreamUsageReader {
  /** Feed one event in order; returns false when the event must not be relayed to the client. */
  accept(event: SseEvent): boolean;
  /** Usage seen so far (zeros before any usage event). */
  usage(): Usage;
  /** True once the provider's terminal event was seen (`[DONE]`, `message_stop`, `response.completed`). */
  finished(): boolean;
  /**
   * The id of the object the provider stored for this answer (OpenAI Responses), once an event
   * named it; undefined otherwise. The gateway binds it to the tenant (src/services/response-owners.ts).
   */
  responseId?(): string | undefined;
  /**
   * The ids of the output items the stream announced (OpenAI Responses `msg_…`, `rs_…`, `fc_…`, …),
   * which a later request may replay in its input, with the code interpreter container ids and
   * annotation file ids they carried; bound to the tenant like the response id.
   */
  outputItemIds?(): readonly string[];
}

/**
 * One provider's mapping between keywarden and its wire protocol. No I/O: the upstream layer
 * does the transport. Adding a provider means adding a folder with one of these.
 */
export interface ProviderAdapter {
  readonly type: ProviderType;
  /** Whether the provider serves this endpoint; the gateway refuses the others explicitly. */
  supports(endpoint: Endpoint): boolean;
  /** The wire request, with the server-held key in the provider's auth header (never in the URL). */
  buildRequest(request: NormalisedRequest, apiKey: string, forwardedHeaders: Record<string, string>): UpstreamRequest;
  /** The request for a cheap authenticated call that proves a key works (list models). */
  buildKeyCheckRequest(apiKey: string): UpstreamRequest;
  /** Usage from a whole (non-streamed) JSON answer; undefined when the answer carries none. */
  readUsage(endpoint: Endpoint, answer: unknown): Usage | undefined;
  /**
   * The id of the object the provider stored for a whole answer, which a later request can chain
   * on (OpenAI Responses `id`, unless `store` is false); undefined when there is none.
   */
  readResponseId?(endpoint: Endpoint, answer: unknown): string | undefined;
  /**
   * The ids of a whole answer's output items, which a later request may replay as input items
   * (OpenAI Responses `output[].id`), with the container and annotation file ids they carry (a
   * later request may name those too); empty when there are none.
   */
  readOutputItemIds?(endpoint: Endpoint, answer: unknown): readonly string[];
  /** A fresh reader for one streamed answer. */
  createStreamReader(request: NormalisedRequest): StreamUsageReader;
  /**
   * Translates a provider error answer into a GatewayError. The provider's body is never relayed:
   * it may name part of a key. `retryAfter` is the provider's `Retry-After` header, if any.
   */
  mapError(status: number, bodyText: string, retryAfter: string | undefined): GatewayError;
}
