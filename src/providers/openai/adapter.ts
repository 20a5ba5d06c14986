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


/*
 * OpenAI wire protocol (also spoken by OpenAI-compatible servers): chat completions, responses
 * and embeddings. The configured base URL already ends in `/v1`.
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
/** Chat: a delta carrying some text (not `"content":""` or `"content":null`). */
const CHAT_CONTENT_DELTA = /"content":"[^"]/;
const RESPONSES_TERMINAL: ReadonlySet<string> = new Set(['response.completed', 'response.failed', 'response.incomplete']);
const RESPONSES_TERMINAL_TYPE = /"type"\s*:\s*"response\.(?:completed|failed|incomplete)"/;
const RESPONSES_CREATED_TYPE = /"type"\s*:\s*"response\.created"/;
/** A provider object id worth recording: printable ASCII without spaces, bounded (`resp_…` in practice). */
const RESPONSE_ID = /^[\x21-\x7e]{1,256}$/;
const RESPONSES_ITEM_ADDED = 'response.output_item.added';
const RESPONSES_ITEM_ADDED_TYPE = /"type"\s*:\s*"response\.output_item\.added"/;
const RESPONSES_ANNOTATION_ADDED = 'response.output_text.annotation.added';
const RESPONSES_ANNOTATION_ADDED_TYPE = /"type"\s*:\s*"response\.output_text\.annotation\.added"/;
/**
 * Most provider ids bound per answer: output item ids, code interpreter container ids and the
 * file ids of output text annotations, together. Real answers hold a handful (reasoning, a
 * message, some tool calls, a container, a few cited files); ids past this are not recorded, so
 * replaying them is refused (fail closed).
 */
export const MAX_OUTPUT_ITEM_IDS = 1024;

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
        for (const other of CAP_FIELDS) {
          if (other === field || !Object.hasOwn(body, other)) continue;
          const value = body[other];
          // An explicit null means "no cap" to the provider, as absence does: drop it, so exactly
          // one cap field (the clamped one) goes upstream instead of a second one set to the cap.
          if (value === null) delete body[other];
          // Defence in depth: another cap field the client also sent must not exceed the cap either.
          else body[other] = typeof value === 'number' && value < cap ? value : cap;
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

    readResponseId(endpoint: Endpoint, answer: unknown): string | undefined {
      // the answer is already parsed for its usage: the id is one more field of it, not a second parse
      return endpoint === 'responses' && isRecord(answer) ? storedResponseId(answer) : undefined;
    },

    // output item ids, with the container and annotation file ids the items carry (see addOutputItemIds)
    readOutputItemIds(endpoint: Endpoint, answer: unknown): readonly string[] {
      if (endpoint !== 'responses' || !isRecord(answer)) return [];
      const ids = new Set<string>();
      addOutputItemIds(ids, answer['output']);
      return [...ids];
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
  let usage: Usage | undefined;
  // until the usage chunk arrives (it comes last), each content delta counts as one output
  // token, so a stream that breaks or is abandoned is not metered as free
  let deltas = 0;
  let done = false;
  return {
    accept(event: SseEvent): boolean {
      const data = event.data;
      if (data.length < 16 && data.trim() === '[DONE]') {
        done = true;
        return true;
      }
      if (!CHAT_USAGE_OBJECT.test(data)) {
        if (CHAT_CONTENT_DELTA.test(data)) deltas += 1;
        return true;
      }
      const parsed = parseJson(data);
      if (!isRecord(parsed) || !isRecord(parsed['usage'])) return true;
      const read = chatUsage(parsed['usage'], false);
      if (read !== undefined) usage = read;
      if (clientWantsUsage) return true;
      const choices = parsed['choices'];
      return Array.isArray(choices) && choices.length > 0;
    },
    usage: () => (usage ? { ...usage } : { inputTokens: 0, outputTokens: deltas }),
    finished: () => done,
  };
}

/**
 * Responses stream. Shortcut for the hot path: only the terminal events (`response.completed`,
 * `response.failed`, `response.incomplete`, recognised by their `event:` name, or by their data's
 * `type` when the event has no `response.*` name) are JSON-parsed; they carry the usage in
 * `response.usage` and end the stream. Besides them only `response.created` and the small
 * `response.output_item.added` and `response.output_text.annotation.added` events are parsed,
 * for the ids the gateway binds to the tenant. Every event is relayed.
 */
function createResponsesStreamReader(): StreamUsageReader {
  let usage: Usage | undefined;
  // as for chat: text deltas stand in for output tokens until the terminal event's usage
  let deltas = 0;
  let done = false;
  // the stored response's id: from `response.created` (the first event, parsed once, so a stream
  // the client leaves early is still bound to its tenant), else from the terminal event
  let responseId: string | undefined;
  let createdSeen = false;
  // output item ids (and container ids), from each `response.output_item.added` (small: the item
  // before its content, and sent before any of it, so a stream left early still binds what it
  // announced), annotation file and container ids from each `response.output_text.annotation.added`,
  // and all of them again from the terminal event's `response.output`, which is parsed anyway;
  // `.done` events, which carry the item's whole content, are never parsed for this
  const itemIds = new Set<string>();
  return {
    accept(event: SseEvent): boolean {
      const name = event.event;
      if (name === 'response.output_text.delta') {
        deltas += 1;
        return true;
      }
      const named = name !== undefined && name.startsWith('response.');
      if (!createdSeen && (named ? name === 'response.created' : RESPONSES_CREATED_TYPE.test(event.data))) {
        const parsed = parseJson(event.data);
        if (isRecord(parsed) && parsed['type'] === 'response.created') {
          createdSeen = true;
          if (isRecord(parsed['response'])) responseId = storedResponseId(parsed['response']);
          return true;
        }
      }
      if (named ? name === RESPONSES_ITEM_ADDED : RESPONSES_ITEM_ADDED_TYPE.test(event.data)) {
        const parsed = parseJson(event.data);
        if (isRecord(parsed) && parsed['type'] === RESPONSES_ITEM_ADDED) {
          const item = parsed['item'];
          // the item's id and, for a code_interpreter_call, its container (announced here already)
          if (isRecord(item)) addItemHeadIds(itemIds, item);
          return true;
        }
      }
      if (named ? name === RESPONSES_ANNOTATION_ADDED : RESPONSES_ANNOTATION_ADDED_TYPE.test(event.data)) {
        // small (one annotation): a stream left before its terminal event still binds the
        // container and file ids it cited
        const parsed = parseJson(event.data);
        if (isRecord(parsed) && parsed['type'] === RESPONSES_ANNOTATION_ADDED) {
          addAnnotationIds(itemIds, parsed['annotation']);
          return true;
        }
      }
      const candidate = named ? RESPONSES_TERMINAL.has(name) : RESPONSES_TERMINAL_TYPE.test(event.data);
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
        if (!createdSeen) responseId = storedResponseId(response);
        addOutputItemIds(itemIds, response['output']);
      }
      return true;
    },
    usage: () => (usage ? { ...usage } : { inputTokens: 0, outputTokens: deltas }),
    finished: () => done,
    responseId: () => responseId,
    outputItemIds: () => [...itemIds],
  };
}

/*
 * Output item ids are bound whatever `store` says, unlike the response id: with `store: false`
 * a client replays the items themselves (reasoning with `encrypted_content`, OpenAI's stateless
 * pattern), and the schema requires a reasoning item's `id`; leaving them unbound would refuse
 * that replay. The binding says only which tenant the id was relayed to, so it is as safe either way.
 */

/*
 * Besides item ids, two kinds of provider object ids reach the tenant in an answer and are bound
 * with them (the same fact: "relayed to this tenant"): the `container_id` of a
 * `code_interpreter_call` item (a container keeps the files its code wrote and can be named
 * again as `tools[].container`), and the `container_id` and `file_id` of output text annotations
 * (`container_file_citation`, and the `file_id` of `file_citation` and `file_path`), which an
 * assistant message replayed in `input` carries back.
 */

/** Adds the provider ids of each item of a Responses `output` array (up to the cap). */
function addOutputItemIds(ids: Set<string>, output: unknown): void {
  if (!Array.isArray(output)) return;
  for (const item of output) {
    if (ids.size >= MAX_OUTPUT_ITEM_IDS) return;
    if (!isRecord(item)) continue;
    addItemHeadIds(ids, item);
    if (item['type'] === 'message') addMessageAnnotationIds(ids, item['content']);
  }
}

/** An item's own id and, for a code interpreter call, its container's id. */
function addItemHeadIds(ids: Set<string>, item: Record<string, unknown>): void {
  addOutputItemId(ids, item['id']);
  if (item['type'] === 'code_interpreter_call') addOutputItemId(ids, item['container_id']);
}

/** The container and file ids of the annotations on a message's output text parts. */
function addMessageAnnotationIds(ids: Set<string>, content: unknown): void {
  if (!Array.isArray(content)) return;
  for (const part of content) {
    if (!isRecord(part)) continue;
    const annotations = part['annotations'];
    if (!Array.isArray(annotations)) continue;
    for (const annotation of annotations) {
      // the walk ends once the cap is reached, however many annotations remain
      if (ids.size >= MAX_OUTPUT_ITEM_IDS) return;
      addAnnotationIds(ids, annotation);
    }
  }
}

/** The ids one annotation names: `container_id` and `file_id`, whichever it has (url citations have neither). */
function addAnnotationIds(ids: Set<string>, annotation: unknown): void {
  if (!isRecord(annotation)) return;
  addOutputItemId(ids, annotation['container_id']);
  addOutputItemId(ids, annotation['file_id']);
}

function addOutputItemId(ids: Set<string>, id: unknown): void {
  if (ids.size < MAX_OUTPUT_ITEM_IDS && typeof id === 'string' && RESPONSE_ID.test(id)) ids.add(id);
}

/**
 * The id of a Responses object the provider keeps (`store` not false: with `store: false` there
 * is nothing to chain on), when it looks like an id; anything else is not recorded, so a request
 * chaining on it is refused.
 */
function storedResponseId(response: Record<string, unknown>): string | undefined {
  if (response['store'] === false) return undefined;
  const id = response['id'];
  return typeof id === 'string' && RESPONSE_ID.test(id) ? id : undefined;
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
