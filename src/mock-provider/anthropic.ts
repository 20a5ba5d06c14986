/**
 * Anthropic wire shapes for the mock provider: messages (whole and streamed), models and
 * errors. Pure builders (no I/O); the server applies transport faults.
 */
import { inputTokens, newScan, planReply, replyPiece, replyText, scanMessages, scanSystem, type TextScan } from './text.js';
import { jsonAnswer, sseEvent, type AnswerInput, type EndpointSpec, type MockAnswer } from './types.js';

// ---------------------------------------------------------------- errors

export function anthropicError(status: number, type: string, message: string, headers?: Record<string, string>): MockAnswer {
  return jsonAnswer(status, { type: 'error', error: { type, message } }, headers);
}

export function anthropicAuthError(): MockAnswer {
  return anthropicError(401, 'authentication_error', 'invalid x-api-key');
}

export function anthropicMissingVersion(): MockAnswer {
  return anthropicError(400, 'invalid_request_error', 'anthropic-version: header is required');
}

export function anthropicBadJson(): MockAnswer {
  return anthropicError(400, 'invalid_request_error', 'There was an error parsing the body of your request: invalid JSON.');
}

/** The error Anthropic sends for `status` (the `status=CODE` fault). */
export function anthropicStatusError(status: number): MockAnswer {
  switch (status) {
    case 400:
      return anthropicError(400, 'invalid_request_error', 'Invalid request (mock fault).');
    case 401:
      return anthropicAuthError();
    case 403:
      return anthropicError(403, 'permission_error', 'Your API key does not have permission to use the specified resource.');
    case 404:
      return anthropicError(404, 'not_found_error', 'The requested resource could not be found.');
    case 413:
      return anthropicError(413, 'request_too_large', 'Request exceeds the maximum allowed number of bytes.');
    case 429:
      return anthropicError(429, 'rate_limit_error', 'Number of requests has exceeded your per-minute rate limit.', { 'retry-after': '7' });
    case 500:
      return anthropicError(500, 'api_error', 'Internal server error');
    case 529:
      return anthropicError(529, 'overloaded_error', 'Overloaded');
    default:
      return status >= 500
        ? anthropicError(status, 'api_error', 'Internal server error')
        : anthropicError(status, 'invalid_request_error', 'Invalid request (mock fault).');
  }
}

// ---------------------------------------------------------------- messages

function messagesScan(body: Record<string, unknown>): TextScan {
  const scan = newScan();
  scanSystem(scan, body['system']);
  scanMessages(scan, body['messages']);
  return scan;
}

function messagesAnswer({ body, scan, faults, seq }: AnswerInput): MockAnswer {
  const model = body['model'];
  if (typeof model !== 'string' || model === '') return anthropicError(400, 'invalid_request_error', 'model: Field required');
  const maxTokens = body['max_tokens'];
  if (typeof maxTokens !== 'number') return anthropicError(400, 'invalid_request_error', 'max_tokens: Field required');
  if (!Array.isArray(body['messages'])) return anthropicError(400, 'invalid_request_error', 'messages: Field required');
  const plan = planReply(faults.tokens, maxTokens);
  const inTokens = inputTokens(scan);
  const id = 'msg_mock' + seq;
  const stopReason = plan.capped ? 'max_tokens' : 'end_turn';

  if (body['stream'] !== true) {
    return jsonAnswer(200, {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text: replyText(plan.words) }],
      stop_reason: stopReason,
      stop_sequence: null,
      usage: { input_tokens: inTokens, output_tokens: plan.words, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
  }

  const frames: string[] = [];
  frames.push(
    sseEvent('message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: inTokens, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      },
    }),
  );
  frames.push(sseEvent('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
  frames.push('event: ping\ndata: {"type":"ping"}\n\n');
  // word deltas are the hot path: build the JSON around each piece by hand
  const prefix = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":';
  for (let i = 0; i < plan.words; i++) frames.push(prefix + JSON.stringify(replyPiece(i)) + '}}\n\n');
  frames.push(sseEvent('content_block_stop', { type: 'content_block_stop', index: 0 }));
  frames.push(
    sseEvent('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: plan.words },
    }),
  );
  frames.push('event: message_stop\ndata: {"type":"message_stop"}\n\n');
  return { kind: 'stream', frames };
}

export const messagesEndpoint: EndpointSpec = { provider: 'anthropic', scan: messagesScan, answer: messagesAnswer };

// ---------------------------------------------------------------- models

const MODELS = [
  { id: 'claude-sonnet-4-5', display_name: 'Claude Sonnet 4.5', created_at: '2025-09-29T00:00:00Z' },
  { id: 'claude-haiku-4-5', display_name: 'Claude Haiku 4.5', created_at: '2025-10-15T00:00:00Z' },
  { id: 'claude-3-5-haiku-latest', display_name: 'Claude Haiku 3.5', created_at: '2024-10-22T00:00:00Z' },
] as const;
const MODELS_BODY = JSON.stringify({
  data: MODELS.map((m) => ({ type: 'model', ...m })),
  has_more: false,
  first_id: MODELS[0].id,
  last_id: MODELS[MODELS.length - 1]?.id ?? null,
});

export const anthropicModelsEndpoint: EndpointSpec = {
  provider: 'anthropic',
  answer: () => ({ kind: 'json', status: 200, body: MODELS_BODY }),
};
