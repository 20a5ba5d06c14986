/**
 * OpenAI wire shapes for the mock provider: chat completions, Responses, embeddings, models
 * and errors. Pure builders (no I/O); the server applies transport faults.
 */
import {
  inputTokens,
  isRecord,
  newScan,
  planReply,
  replyPiece,
  replyText,
  scanMessages,
  scanString,
  scanSystem,
  type ReplyPlan,
  type TextScan,
} from './text.js';
import { jsonAnswer, sseData, sseEvent, type AnswerInput, type EndpointSpec, type MockAnswer } from './types.js';

// ---------------------------------------------------------------- errors

export function openaiError(
  status: number,
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
  headers?: Record<string, string>,
): MockAnswer {
  return jsonAnswer(status, { error: { message, type, param, code } }, headers);
}

/** OpenAI's own masking of a rejected key: first 7 characters, `****`, last 4. */
export function maskKey(key: string): string {
  return key.slice(0, 7) + '****' + key.slice(-4);
}

const NO_KEY_MESSAGE =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.";

/** The 401 OpenAI sends for a missing or wrong key (the wrong key is named, masked). */
export function openaiAuthError(sentKey: string | undefined): MockAnswer {
  if (sentKey === undefined || sentKey === '') {
    return openaiError(401, NO_KEY_MESSAGE, 'invalid_request_error', null);
  }
  return openaiError(
    401,
    `Incorrect API key provided: ${maskKey(sentKey)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    'invalid_request_error',
    'invalid_api_key',
  );
}

/** The error OpenAI sends for `status` (the `status=CODE` fault). */
export function openaiStatusError(status: number, sentKey: string | undefined): MockAnswer {
  switch (status) {
    case 401:
      return openaiAuthError(sentKey);
    case 403:
      return openaiError(403, 'Country, region, or territory not supported', 'request_forbidden', 'unsupported_country_region_territory');
    case 404:
      return openaiError(404, 'The model does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found');
    case 429:
      return openaiError(
        429,
        'Rate limit reached for requests per min (RPM). Please try again in 7s.',
        'requests',
        'rate_limit_exceeded',
        null,
        { 'retry-after': '7' },
      );
    case 500:
      return openaiError(500, 'The server had an error while processing your request. Sorry about that!', 'server_error', null);
    case 503:
      return openaiError(503, 'The engine is currently overloaded, please try again later.', 'server_error', null);
    default:
      return status >= 500
        ? openaiError(status, 'The server had an error while processing your request.', 'server_error', null)
        : openaiError(status, 'Invalid request (mock fault).', 'invalid_request_error', null);
  }
}

export function openaiBadJson(): MockAnswer {
  return openaiError(
    400,
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    'invalid_request_error',
    null,
  );
}

export function openaiNotFound(method: string, path: string): MockAnswer {
  // only the method and a path we routed on are named; never request content
  return openaiError(404, `Invalid URL (${method} ${path.length > 200 ? path.slice(0, 200) : path})`, 'invalid_request_error', null);
}

function missingParam(param: string): MockAnswer {
  return openaiError(400, `Missing required parameter: '${param}'.`, 'invalid_request_error', 'missing_required_parameter', param);
}

function missingModel(): MockAnswer {
  return openaiError(400, 'you must provide a model parameter', 'invalid_request_error', null);
}

// ---------------------------------------------------------------- chat completions

function chatScan(body: Record<string, unknown>): TextScan {
  const scan = newScan();
  scanMessages(scan, body['messages']);
  return scan;
}

function chatAnswer({ body, scan, faults, seq, now }: AnswerInput): MockAnswer {
  const model = body['model'];
  if (typeof model !== 'string' || model === '') return missingModel();
  if (!Array.isArray(body['messages']) || body['messages'].length === 0) return missingParam('messages');
  const plan = planReply(faults.tokens, body['max_completion_tokens'] ?? body['max_tokens']);
  const promptTokens = inputTokens(scan);
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: plan.words,
    total_tokens: promptTokens + plan.words,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
  const id = 'chatcmpl-mock' + seq;
  const finishReason = plan.capped ? 'length' : 'stop';

  if (body['stream'] !== true) {
    return jsonAnswer(200, {
      id,
      object: 'chat.completion',
      created: now,
      model,
      choices: [
        { index: 0, message: { role: 'assistant', content: replyText(plan.words), refusal: null }, logprobs: null, finish_reason: finishReason },
      ],
      usage,
      system_fingerprint: null,
    });
  }

  const streamOptions = body['stream_options'];
  const includeUsage = isRecord(streamOptions) && streamOptions['include_usage'] === true;
  const usageField = includeUsage ? { usage: null } : undefined;
  const head = { id, object: 'chat.completion.chunk', created: now, model, system_fingerprint: null };
  const frames: string[] = [];
  frames.push(sseData({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...usageField }));
  // word chunks are the hot path: build the JSON around each piece by hand
  const prefix = JSON.stringify(head).slice(0, -1) + ',"choices":[{"index":0,"delta":{"content":';
  const suffix = '},"logprobs":null,"finish_reason":null}]' + (includeUsage ? ',"usage":null}' : '}');
  for (let i = 0; i < plan.words; i++) frames.push('data: ' + prefix + JSON.stringify(replyPiece(i)) + suffix + '\n\n');
  frames.push(sseData({ ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }], ...usageField }));
  if (includeUsage) frames.push(sseData({ ...head, choices: [], usage }));
  frames.push('data: [DONE]\n\n');
  return { kind: 'stream', frames };
}

export const chatEndpoint: EndpointSpec = { provider: 'openai', scan: chatScan, answer: chatAnswer };

// ---------------------------------------------------------------- responses

function responsesScan(body: Record<string, unknown>): TextScan {
  const scan = newScan();
  scanSystem(scan, body['instructions']);
  scanMessages(scan, body['input']);
  return scan;
}

interface ResponseParts {
  id: string;
  now: number;
  model: string;
  maxOutputTokens: number | null;
  /** As the real API echoes it: false only when the request said `store: false`. */
  store: boolean;
}

/**
 * The function the request forces (`tool_choice` "required", or one named function tool), if
 * any: then the answer is a call to it, as the real model's would be. With "auto" the mock
 * always answers in text, so requests that merely offer tools keep their text reply.
 */
function forcedFunction(body: Record<string, unknown>): string | undefined {
  const tools = body['tools'];
  if (!Array.isArray(tools)) return undefined;
  const names = tools.filter((t) => isRecord(t) && t['type'] === 'function' && typeof t['name'] === 'string').map((t) => (t as { name: string }).name);
  const choice = body['tool_choice'];
  if (choice === 'required') return names[0];
  if (isRecord(choice) && choice['type'] === 'function' && typeof choice['name'] === 'string' && names.includes(choice['name'])) return choice['name'];
  return undefined;
}

/** Whether the request asks a reasoning model to reason (`reasoning.effort` set): then the answer starts with a reasoning item. */
function wantsReasoning(body: Record<string, unknown>): boolean {
  const reasoning = body['reasoning'];
  return isRecord(reasoning) && typeof reasoning['effort'] === 'string' && reasoning['effort'] !== 'none';
}

/**
 * The container a `code_interpreter` tool of the request runs in, if it has one: the id it names,
 * or, for `{type: 'auto'}`, a new one (as the real API creates one and names it in the call item).
 */
function codeInterpreterContainer(body: Record<string, unknown>, seq: string): string | undefined {
  const tools = body['tools'];
  if (!Array.isArray(tools)) return undefined;
  const tool: unknown = tools.find((t) => isRecord(t) && t['type'] === 'code_interpreter');
  if (!isRecord(tool)) return undefined;
  const container = tool['container'];
  return typeof container === 'string' ? container : 'cntr_mock' + seq;
}

function responseObject(p: ResponseParts, status: string, output: unknown[], usage: unknown, plan: ReplyPlan | null): Record<string, unknown> {
  return {
    id: p.id,
    object: 'response',
    created_at: p.now,
    status,
    background: false,
    error: null,
    incomplete_details: plan?.capped === true ? { reason: 'max_output_tokens' } : null,
    // the real API echoes `instructions` and `metadata`; the mock never echoes request text
    instructions: null,
    max_output_tokens: p.maxOutputTokens,
    max_tool_calls: null,
    model: p.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: p.store,
    temperature: 1,
    text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto',
    tools: [],
    top_logprobs: 0,
    top_p: 1,
    truncation: 'disabled',
    usage,
    user: null,
    metadata: {},
  };
}

function responsesAnswer({ body, scan, faults, seq, now }: AnswerInput): MockAnswer {
  const model = body['model'];
  if (typeof model !== 'string' || model === '') return missingModel();
  const cap = body['max_output_tokens'];
  const plan = planReply(faults.tokens, cap);
  const inTokens = inputTokens(scan);
  const usage = {
    input_tokens: inTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: plan.words,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inTokens + plan.words,
  };
  const parts: ResponseParts = { id: 'resp_mock' + seq, now, model, maxOutputTokens: typeof cap === 'number' ? cap : null, store: body['store'] !== false };
  // as the real API: a reply cut by max_output_tokens is `incomplete`, and its stream ends with
  // `response.incomplete` instead of `response.completed`
  const finalStatus = plan.capped ? 'incomplete' : 'completed';
  // output items carry ids in the real shapes: `rs_…` reasoning, then `fc_…` a forced function
  // call or `msg_…` the text reply (ids a later request may replay in its `input`)
  const reasoningItem = wantsReasoning(body) ? { id: 'rs_mock' + seq, type: 'reasoning', summary: [] } : undefined;
  const fn = forcedFunction(body);
  const callArguments = '{}';
  const callStarted = fn === undefined ? undefined : { id: 'fc_mock' + seq, type: 'function_call', status: 'in_progress', arguments: '', call_id: 'call_mock' + seq, name: fn };
  const callDone = callStarted === undefined ? undefined : { ...callStarted, status: 'completed', arguments: callArguments };
  // with a code_interpreter tool the model runs code first, as the real one would for a task that
  // needs it: a `ci_…` call item naming its container (`cntr_…`), and the reply cites the file the
  // code wrote (a `container_file_citation` naming the container and a `cfile_…` id)
  const containerId = codeInterpreterContainer(body, seq);
  const code = "print('mock')";
  const interpreterStarted = containerId === undefined ? undefined : { id: 'ci_mock' + seq, type: 'code_interpreter_call', status: 'in_progress', code: '', outputs: null, container_id: containerId };
  const interpreterDone = interpreterStarted === undefined ? undefined : { ...interpreterStarted, status: 'completed', code };
  const itemId = 'msg_mock' + seq;
  const text = replyText(plan.words);
  const citation = containerId === undefined
    ? undefined
    : { type: 'container_file_citation', container_id: containerId, file_id: 'cfile_mock' + seq, filename: 'mock.txt', start_index: 0, end_index: Math.min(text.length, 4) };
  const donePart = { type: 'output_text', annotations: citation === undefined ? [] : [citation], logprobs: [], text };
  const doneItem = callDone ?? { id: itemId, type: 'message', status: finalStatus, content: [donePart], role: 'assistant' };
  const output = [reasoningItem, interpreterDone, doneItem].filter((item) => item !== undefined);

  if (body['stream'] !== true) {
    return jsonAnswer(200, responseObject(parts, finalStatus, output, usage, plan));
  }

  const frames: string[] = [];
  let sequence = 0;
  const emit = (type: string, data: Record<string, unknown>): void => {
    frames.push(sseEvent(type, { type, sequence_number: sequence++, ...data }));
  };
  const started = responseObject(parts, 'in_progress', [], null, null);
  emit('response.created', { response: started });
  emit('response.in_progress', { response: started });
  let index = 0;
  if (reasoningItem !== undefined) {
    emit('response.output_item.added', { output_index: index, item: reasoningItem });
    emit('response.output_item.done', { output_index: index, item: reasoningItem });
    index += 1;
  }
  if (interpreterStarted !== undefined && interpreterDone !== undefined) {
    const at = { item_id: interpreterStarted.id, output_index: index };
    emit('response.output_item.added', { output_index: index, item: interpreterStarted });
    emit('response.code_interpreter_call.in_progress', at);
    emit('response.code_interpreter_call_code.delta', { ...at, delta: code });
    emit('response.code_interpreter_call_code.done', { ...at, code });
    emit('response.code_interpreter_call.interpreting', at);
    emit('response.code_interpreter_call.completed', at);
    emit('response.output_item.done', { output_index: index, item: interpreterDone });
    index += 1;
  }
  if (callStarted !== undefined) {
    emit('response.output_item.added', { output_index: index, item: callStarted });
    emit('response.function_call_arguments.delta', { item_id: callStarted.id, output_index: index, delta: callArguments });
    emit('response.function_call_arguments.done', { item_id: callStarted.id, output_index: index, arguments: callArguments });
  } else {
    emit('response.output_item.added', { output_index: index, item: { id: itemId, type: 'message', status: 'in_progress', content: [], role: 'assistant' } });
    const at = { item_id: itemId, output_index: index, content_index: 0 };
    emit('response.content_part.added', { ...at, part: { type: 'output_text', annotations: [], logprobs: [], text: '' } });
    for (let i = 0; i < plan.words; i++) emit('response.output_text.delta', { ...at, delta: replyPiece(i), logprobs: [] });
    if (citation !== undefined) emit('response.output_text.annotation.added', { ...at, annotation_index: 0, annotation: citation });
    emit('response.output_text.done', { ...at, text, logprobs: [] });
    emit('response.content_part.done', { ...at, part: donePart });
  }
  emit('response.output_item.done', { output_index: index, item: doneItem });
  emit(plan.capped ? 'response.incomplete' : 'response.completed', { response: responseObject(parts, finalStatus, output, usage, plan) });
  return { kind: 'stream', frames };
}

export const responsesEndpoint: EndpointSpec = { provider: 'openai', scan: responsesScan, answer: responsesAnswer };

// ---------------------------------------------------------------- embeddings

function embeddingInputs(input: unknown): unknown[] | undefined {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  // a flat array of numbers is one tokenised input
  return typeof input[0] === 'number' ? [input] : input;
}

function embeddingsScan(body: Record<string, unknown>): TextScan {
  // embeddings have no per-message overhead: tokens = sum of ceil(chars / 4) per input
  const scan = newScan();
  const inputs = embeddingInputs(body['input']);
  if (inputs === undefined) return scan;
  let tokens = 0;
  for (const item of inputs) {
    if (typeof item === 'string') {
      const before = scan.chars;
      scanString(scan, item);
      tokens += Math.ceil((scan.chars - before) / 4);
    } else if (Array.isArray(item)) tokens += item.length;
  }
  // store the summed per-input count so that inputTokens(scan) = ceil(chars/4) gives it exactly
  scan.chars = tokens * 4;
  return scan;
}

/** A small deterministic PRNG (mulberry32): the vector depends on the input index only. */
function vectorFor(index: number, dimensions: number): Float32Array {
  let state = (Math.imul(index + 1, 0x9e3779b1) ^ dimensions) >>> 0;
  const v = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const x = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 1;
  for (let i = 0; i < dimensions; i++) v[i] = (v[i] as number) * scale;
  return v;
}

interface CachedVector {
  floats: number[];
  base64: string;
}
const vectorCache = new Map<number, CachedVector>();

function cachedVector(index: number, dimensions: number): CachedVector {
  const key = dimensions * 65536 + index;
  let hit = vectorCache.get(key);
  if (hit === undefined) {
    const v = vectorFor(index, dimensions);
    const bytes = Buffer.alloc(dimensions * 4);
    for (let i = 0; i < dimensions; i++) bytes.writeFloatLE(v[i] as number, i * 4);
    hit = { floats: Array.from(v), base64: bytes.toString('base64') };
    if (index < 256 && dimensions <= 512 && vectorCache.size < 4096) vectorCache.set(key, hit);
  }
  return hit;
}

function embeddingsAnswer({ body, scan }: AnswerInput): MockAnswer {
  const model = body['model'];
  if (typeof model !== 'string' || model === '') return missingModel();
  const inputs = embeddingInputs(body['input']);
  if (inputs === undefined) return missingParam('input');
  const dims = body['dimensions'];
  if (dims !== undefined && (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1 || dims > 4096)) {
    return openaiError(400, 'dimensions must be an integer between 1 and 4096.', 'invalid_request_error', null, 'dimensions');
  }
  const dimensions = typeof dims === 'number' ? dims : 8;
  const format = body['encoding_format'] ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    return openaiError(400, "encoding_format must be 'float' or 'base64'.", 'invalid_request_error', null, 'encoding_format');
  }
  const data = inputs.map((_, index) => {
    const v = cachedVector(index, dimensions);
    return { object: 'embedding', index, embedding: format === 'base64' ? v.base64 : v.floats };
  });
  const tokens = inputTokens(scan);
  return jsonAnswer(200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
}

export const embeddingsEndpoint: EndpointSpec = { provider: 'openai', scan: embeddingsScan, answer: embeddingsAnswer };

// ---------------------------------------------------------------- models

const MODEL_IDS = ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'o4-mini'] as const;
const MODELS_BODY = JSON.stringify({
  object: 'list',
  data: MODEL_IDS.map((id) => ({ id, object: 'model', created: 1715367049, owned_by: 'keywarden-mock' })),
});

export const openaiModelsEndpoint: EndpointSpec = {
  provider: 'openai',
  answer: () => ({ kind: 'json', status: 200, body: MODELS_BODY }),
};
