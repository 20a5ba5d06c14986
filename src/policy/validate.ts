import type { TObject } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { GatewayError } from '../errors/index.js';
import type { Endpoint } from '../providers/types.js';
import { exceedsDepth } from './depth.js';
import { schemaError } from './schema-errors.js';
import { ChatBody } from './schemas/chat.js';
import { EmbeddingsBody } from './schemas/embeddings.js';
import { MessagesBody } from './schemas/messages.js';
import { ResponsesBody, type ResponsesInputContent } from './schemas/responses.js';
import {
  BUILT_IN_TOOL_CAPABILITY,
  TOOL_CAPABILITIES,
  capabilitiesFor,
  type Capability,
} from './capabilities.js';
import type { TenantPolicy, ValidatedRequest } from './types.js';

/** Deepest container nesting a body may have (the body object itself is level 1). */
export const MAX_DEPTH = 64;

// Compiled once at module load; `Check()` is the whole success path of the schema stage.
const CHAT = TypeCompiler.Compile(ChatBody);
const RESPONSES = TypeCompiler.Compile(ResponsesBody);
const EMBEDDINGS = TypeCompiler.Compile(EmbeddingsBody);
const MESSAGES = TypeCompiler.Compile(MessagesBody);

/** Each endpoint's required fields: always allowed, never subject to `policy.params`. */
function requiredOf(schema: TObject): ReadonlySet<string> {
  return new Set(schema.required ?? []);
}
const CHAT_REQUIRED = requiredOf(ChatBody);
const RESPONSES_REQUIRED = requiredOf(ResponsesBody);
const EMBEDDINGS_REQUIRED = requiredOf(EmbeddingsBody);
const MESSAGES_REQUIRED = requiredOf(MessagesBody);

/** Top-level fields governed by `policy.tools` rather than `policy.params`. */
const TOOL_FIELDS: ReadonlySet<string> = new Set(['tools', 'tool_choice', 'parallel_tool_calls']);

/**
 * Validates a parsed JSON body for an endpoint against its schema and the tenant policy.
 * Throws GatewayError. Does not mutate body.
 *
 * Checks run in a fixed order and the first failure wins: body shape and nesting depth,
 * schema (unknown fields refused at every depth), model, optional parameters, tools, files,
 * then counts and sizes. Deny by default: a model, parameter, tool or file input the policy
 * does not name is refused. Error messages and params carry field paths, never values.
 *
 * @example
 * const v = validateRequest('chat', JSON.parse(raw), tenant.policy, routedModels);
 * body[v.maxTokensField] = v.maxOutputTokens; // clamp sent upstream
 */
export function validateRequest(
  endpoint: Endpoint,
  body: unknown,
  policy: TenantPolicy,
  routedModels: ReadonlySet<string>,
): ValidatedRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('request_invalid', 'request body must be a JSON object');
  }
  if (exceedsDepth(body, MAX_DEPTH)) {
    throw new GatewayError('request_too_deep', `request nests deeper than ${MAX_DEPTH} levels`);
  }
  switch (endpoint) {
    case 'chat':
      return validateChat(body, policy, routedModels);
    case 'responses':
      return validateResponses(body, policy, routedModels);
    case 'embeddings':
      return validateEmbeddings(body, policy, routedModels);
    case 'messages':
      return validateMessages(body, policy, routedModels);
    default:
      // A caller bug, not client input.
      throw new GatewayError('internal_error', 'unknown endpoint');
  }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

function validateChat(body: object, tenantPolicy: TenantPolicy, routedModels: ReadonlySet<string>): ValidatedRequest {
  let policy = tenantPolicy;
  if (!CHAT.Check(body)) throw schemaError(CHAT, body);
  // Two caps at once would let the unclamped one reach the provider.
  if (body.max_tokens != null && body.max_completion_tokens != null) {
    throw new GatewayError('request_invalid', 'use either "max_tokens" or "max_completion_tokens", not both', {
      param: 'max_tokens',
    });
  }
  checkModel(body.model, policy, routedModels);
  checkParams(body, CHAT_REQUIRED, policy);
  const caps = capabilitiesFor(policy.capabilities, body.model);
  if (caps !== undefined) {
    checkChatCapabilities(body, caps);
    policy = unlocked(policy);
  }
  if (!policy.tools) refuseToolFields(body);

  const scan = startScan(policy);
  const messages = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (message === undefined) continue;
    switch (message.role) {
      case 'tool':
      case 'function':
        if (!policy.tools) throw toolsRefused(`messages[${i}]`);
        break;
      case 'assistant':
        if (message.tool_calls !== undefined && !policy.tools) throw toolsRefused(`messages[${i}].tool_calls`);
        break;
      case 'user': {
        const content = message.content;
        if (typeof content === 'string') break;
        for (let j = 0; j < content.length; j++) {
          const part = content[j];
          let size: number;
          switch (part?.type) {
            case 'image_url':
              size = part.image_url.url.length;
              break;
            case 'input_audio':
              size = part.input_audio.data.length;
              break;
            case 'file':
              size = part.file.file_data?.length ?? 0;
              break;
            default:
              continue;
          }
          if (countAttachment(scan, size)) noteAttachment(scan, `messages[${i}].content[${j}]`);
        }
        break;
      }
      default:
        break;
    }
  }
  finishScan(scan, messages.length, 'messages', policy);

  // Chat takes either cap field; keep the one the client used so its choice is what we clamp.
  let maxTokensField = 'max_completion_tokens';
  let clientCap = body.max_completion_tokens;
  if (clientCap == null && body.max_tokens != null) {
    maxTokensField = 'max_tokens';
    clientCap = body.max_tokens;
  }
  return {
    endpoint: 'chat',
    model: body.model,
    stream: body.stream === true,
    clientWantsStreamUsage: body.stream_options?.include_usage === true,
    maxTokensField,
    maxOutputTokens: clamp(clientCap, policy.maxOutputTokens),
  };
}

function validateResponses(body: object, tenantPolicy: TenantPolicy, routedModels: ReadonlySet<string>): ValidatedRequest {
  let policy = tenantPolicy;
  if (!RESPONSES.Check(body)) throw schemaError(RESPONSES, body);
  checkModel(body.model, policy, routedModels);
  checkParams(body, RESPONSES_REQUIRED, policy);
  const caps = capabilitiesFor(policy.capabilities, body.model);
  if (caps !== undefined) {
    checkResponsesCapabilities(body, caps);
    policy = unlocked(policy);
  }
  if (!policy.tools) refuseToolFields(body);
  // Built-in tools need a `capabilities` allowlist: `tools: true` alone covers function tools only.
  if (caps === undefined) checkResponsesToolCapabilities(body, NO_CAPABILITIES);

  const scan = startScan(policy);
  const input = body.input;
  let items = 1;
  if (typeof input !== 'string') {
    items = input.length;
    for (let i = 0; i < input.length; i++) {
      const item = input[i];
      if (item === undefined) continue;
      switch (item.type) {
        case 'function_call':
          if (!policy.tools) throw toolsRefused(`input[${i}]`);
          break;
        case 'function_call_output':
          if (!policy.tools) throw toolsRefused(`input[${i}]`);
          if (typeof item.output !== 'string') scanInputContent(scan, item.output, i, 'output');
          break;
        case 'reasoning':
          break;
        default:
          // A message (`type` is "message" or absent). Assistant turns carry no attachments.
          if (item.role !== 'assistant' && typeof item.content !== 'string') {
            scanInputContent(scan, item.content, i, 'content');
          }
          break;
      }
    }
  }
  finishScan(scan, items, 'input', policy);

  return {
    endpoint: 'responses',
    model: body.model,
    stream: body.stream === true,
    clientWantsStreamUsage: false,
    maxTokensField: 'max_output_tokens',
    maxOutputTokens: clamp(body.max_output_tokens, policy.maxOutputTokens),
  };
}

function scanInputContent(scan: Scan, parts: ResponsesInputContent, i: number, field: string): void {
  for (let j = 0; j < parts.length; j++) {
    const part = parts[j];
    let size: number;
    switch (part?.type) {
      case 'input_image':
        size = part.image_url?.length ?? 0;
        break;
      case 'input_file':
        size = Math.max(part.file_data?.length ?? 0, part.file_url?.length ?? 0);
        break;
      default:
        continue;
    }
    if (countAttachment(scan, size)) noteAttachment(scan, `input[${i}].${field}[${j}]`);
  }
}

function validateEmbeddings(body: object, policy: TenantPolicy, routedModels: ReadonlySet<string>): ValidatedRequest {
  if (!EMBEDDINGS.Check(body)) throw schemaError(EMBEDDINGS, body);
  checkModel(body.model, policy, routedModels);
  checkParams(body, EMBEDDINGS_REQUIRED, policy);
  checkItemCount(embeddingsItems(body.input), 'input', policy);
  return {
    endpoint: 'embeddings',
    model: body.model,
    stream: false,
    clientWantsStreamUsage: false,
    maxTokensField: undefined,
    maxOutputTokens: undefined,
  };
}

/**
 * How many inputs an embeddings body holds: a string or one flat token array is one input; an
 * array of strings or of token arrays holds one per item. Each input is embedded separately, so
 * `max_messages` ("most messages or input items") caps them as it caps chat messages.
 */
function embeddingsItems(input: EmbeddingsBody['input']): number {
  if (typeof input === 'string') return 1;
  return typeof input[0] === 'number' ? 1 : input.length;
}

function validateMessages(body: object, tenantPolicy: TenantPolicy, routedModels: ReadonlySet<string>): ValidatedRequest {
  let policy = tenantPolicy;
  if (!MESSAGES.Check(body)) throw schemaError(MESSAGES, body);
  checkModel(body.model, policy, routedModels);
  checkParams(body, MESSAGES_REQUIRED, policy);
  const caps = capabilitiesFor(policy.capabilities, body.model);
  if (caps !== undefined) {
    checkMessagesCapabilities(body, caps);
    policy = unlocked(policy);
  }
  if (!policy.tools) refuseToolFields(body);

  const scan = startScan(policy);
  const messages = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const content = messages[i]?.content;
    if (content === undefined || typeof content === 'string') continue;
    for (let j = 0; j < content.length; j++) {
      const block = content[j];
      if (block === undefined) continue;
      switch (block.type) {
        case 'tool_use':
          if (!policy.tools) throw toolsRefused(`messages[${i}].content[${j}]`);
          break;
        case 'tool_result':
          if (!policy.tools) throw toolsRefused(`messages[${i}].content[${j}]`);
          if (Array.isArray(block.content)) {
            for (let k = 0; k < block.content.length; k++) {
              const inner = block.content[k];
              if (inner !== undefined && inner.type !== 'text') {
                scanAnthropicMedia(scan, inner, `messages[${i}].content[${j}].content[${k}]`);
              }
            }
          }
          break;
        case 'image':
        case 'document':
          scanAnthropicMedia(scan, block, `messages[${i}].content[${j}]`);
          break;
        default:
          break;
      }
    }
  }
  finishScan(scan, messages.length, 'messages', policy);

  const maxOutputTokens = clamp(body.max_tokens, policy.maxOutputTokens);
  if (body.thinking?.type === 'enabled') checkThinkingBudget(body.thinking.budget_tokens, body.max_tokens, maxOutputTokens);
  return {
    endpoint: 'messages',
    model: body.model,
    stream: body.stream === true,
    clientWantsStreamUsage: false,
    maxTokensField: 'max_tokens',
    maxOutputTokens,
  };
}

/**
 * Anthropic requires `thinking.budget_tokens` below `max_tokens`, and the gateway may have
 * lowered `max_tokens` to the tenant's cap. A budget that no longer fits is refused here, naming
 * the cap, rather than rewritten: the client chose its budget, and a silently smaller one would
 * change the answer it gets. (Forwarded as it is, the provider would refuse it with its own words.)
 */
function checkThinkingBudget(budget: number, clientMax: number, effectiveMax: number): void {
  if (budget < effectiveMax) return;
  // numbers from the policy only: the client's own values are not echoed
  const message =
    clientMax > effectiveMax
      ? `"thinking.budget_tokens" must be below "max_tokens", which this tenant's output cap lowers to ${effectiveMax}`
      : '"thinking.budget_tokens" must be below "max_tokens"';
  throw new GatewayError('request_invalid', message, { param: 'thinking.budget_tokens' });
}

type AnthropicBlock = Extract<MessagesBody['messages'][number]['content'], unknown[]>[number];
type AnthropicMedia = Extract<AnthropicBlock, { type: 'image' | 'document' }>;

/** Counts an image or document block (and the images inside a content-source document). */
function scanAnthropicMedia(scan: Scan, block: AnthropicMedia, path: string): void {
  const source = block.source;
  let size = 0;
  switch (source.type) {
    case 'base64':
    case 'text':
      size = source.data.length;
      break;
    case 'url':
      size = source.url.length;
      break;
    case 'content':
      if (typeof source.content === 'string') {
        size = source.content.length;
      } else {
        for (let k = 0; k < source.content.length; k++) {
          const inner = source.content[k];
          if (inner?.type === 'image') scanAnthropicMedia(scan, inner, `${path}.source.content[${k}]`);
        }
      }
      break;
    default:
      break; // a file id: nothing inline to measure
  }
  if (countAttachment(scan, size)) noteAttachment(scan, path);
}

// ---------------------------------------------------------------------------------------------
// Capability allowlists (policy.capabilities; names and fields in src/policy/capabilities.ts)
// ---------------------------------------------------------------------------------------------

const NO_CAPABILITIES: ReadonlySet<Capability> = new Set(['tools']);

/** The policy with `tools` and `files` on: used once the capability allowlist has been checked. */
const unlockedCache = new WeakMap<TenantPolicy, TenantPolicy>();
function unlocked(policy: TenantPolicy): TenantPolicy {
  let out = unlockedCache.get(policy);
  if (out === undefined) {
    out = Object.freeze({ ...policy, tools: true, files: true });
    unlockedCache.set(policy, out);
  }
  return out;
}

function need(caps: ReadonlySet<Capability>, capability: Capability, path: string): void {
  if (!caps.has(capability)) {
    throw new GatewayError('policy_capability_not_allowed', `capability "${capability}" is not allowed for this model`, {
      param: path,
    });
  }
}

/** A bare tool mode (`"auto"`, `parallel_tool_calls`) needs some tool capability, whichever. */
function needAnyTool(caps: ReadonlySet<Capability>, path: string): void {
  if (!TOOL_CAPABILITIES.some((c) => caps.has(c))) need(caps, 'tools', path);
}

function checkChatCapabilities(body: ChatBody, caps: ReadonlySet<Capability>): void {
  for (const field of TOOL_FIELDS) {
    if (Object.hasOwn(body, field)) need(caps, 'tools', field);
  }
  const format = body.response_format?.type;
  if (format === 'json_schema' || format === 'json_object') need(caps, 'structured_output', 'response_format');
  if (body.audio != null) need(caps, 'audio', 'audio');
  if (body.modalities?.includes('audio') === true) need(caps, 'audio', 'modalities');
  const messages = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (message === undefined) continue;
    switch (message.role) {
      case 'tool':
      case 'function':
        need(caps, 'tools', `messages[${i}]`);
        break;
      case 'assistant':
        if (message.tool_calls !== undefined) need(caps, 'tools', `messages[${i}].tool_calls`);
        if (message.audio != null) need(caps, 'audio', `messages[${i}].audio`);
        break;
      case 'user': {
        const content = message.content;
        if (typeof content === 'string') break;
        for (let j = 0; j < content.length; j++) {
          const type = content[j]?.type;
          const path = `messages[${i}].content[${j}]`;
          if (type === 'image_url') need(caps, 'images', path);
          else if (type === 'input_audio') need(caps, 'audio', path);
          else if (type === 'file') need(caps, 'files', path);
        }
        break;
      }
      default:
        break;
    }
  }
}

/** `tools`, `tool_choice`, `parallel_tool_calls` of a Responses body. */
function checkResponsesToolCapabilities(body: ResponsesBody, caps: ReadonlySet<Capability>): void {
  const tools = body.tools ?? [];
  for (let i = 0; i < tools.length; i++) {
    const type = tools[i]?.type;
    if (type === undefined) continue;
    need(caps, type === 'function' ? 'tools' : (BUILT_IN_TOOL_CAPABILITY[type] ?? 'tools'), `tools[${i}]`);
  }
  const choice = body.tool_choice;
  if (choice !== undefined) {
    if (typeof choice === 'string') needAnyTool(caps, 'tool_choice');
    else if (choice.type === 'function' || choice.type === 'allowed_tools') need(caps, 'tools', 'tool_choice');
    else need(caps, BUILT_IN_TOOL_CAPABILITY[choice.type] ?? 'tools', 'tool_choice');
  }
  if (Object.hasOwn(body, 'parallel_tool_calls')) needAnyTool(caps, 'parallel_tool_calls');
}

function checkResponsesCapabilities(body: ResponsesBody, caps: ReadonlySet<Capability>): void {
  checkResponsesToolCapabilities(body, caps);
  const format = body.text?.format?.type;
  if (format === 'json_schema' || format === 'json_object') need(caps, 'structured_output', 'text.format');
  const input = body.input;
  if (typeof input === 'string') return;
  for (let i = 0; i < input.length; i++) {
    const item = input[i];
    if (item === undefined) continue;
    switch (item.type) {
      case 'function_call':
        need(caps, 'tools', `input[${i}]`);
        break;
      case 'function_call_output':
        need(caps, 'tools', `input[${i}]`);
        if (typeof item.output !== 'string') checkResponsesContent(caps, item.output, `input[${i}].output`);
        break;
      case 'reasoning':
        break;
      default:
        if (item.role !== 'assistant' && typeof item.content !== 'string') {
          checkResponsesContent(caps, item.content, `input[${i}].content`);
        }
        break;
    }
  }
}

function checkResponsesContent(caps: ReadonlySet<Capability>, parts: ResponsesInputContent, path: string): void {
  for (let j = 0; j < parts.length; j++) {
    const type = parts[j]?.type;
    if (type === 'input_image') need(caps, 'images', `${path}[${j}]`);
    else if (type === 'input_file') need(caps, 'files', `${path}[${j}]`);
  }
}

function checkMessagesCapabilities(body: MessagesBody, caps: ReadonlySet<Capability>): void {
  if (Object.hasOwn(body, 'tools')) need(caps, 'tools', 'tools');
  if (Object.hasOwn(body, 'tool_choice')) need(caps, 'tools', 'tool_choice');
  if (body.output_config?.format != null) need(caps, 'structured_output', 'output_config.format');
  const messages = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const content = messages[i]?.content;
    if (content === undefined || typeof content === 'string') continue;
    for (let j = 0; j < content.length; j++) {
      const block = content[j];
      if (block === undefined) continue;
      const path = `messages[${i}].content[${j}]`;
      switch (block.type) {
        case 'tool_use':
          need(caps, 'tools', path);
          break;
        case 'tool_result':
          need(caps, 'tools', path);
          if (Array.isArray(block.content)) {
            for (let k = 0; k < block.content.length; k++) {
              const inner = block.content[k];
              if (inner !== undefined && inner.type !== 'text') checkAnthropicMedia(caps, inner, `${path}.content[${k}]`);
            }
          }
          break;
        case 'image':
        case 'document':
          checkAnthropicMedia(caps, block, path);
          break;
        default:
          break;
      }
    }
  }
}

/** Image blocks need `images`, document blocks `files` (and `images` for images inside them). */
function checkAnthropicMedia(caps: ReadonlySet<Capability>, block: AnthropicMedia, path: string): void {
  if (block.type === 'image') {
    need(caps, 'images', path);
    return;
  }
  need(caps, 'files', path);
  const source = block.source;
  if (source.type === 'content' && typeof source.content !== 'string') {
    for (let k = 0; k < source.content.length; k++) {
      if (source.content[k]?.type === 'image') need(caps, 'images', `${path}.source.content[${k}]`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------------------------

function checkModel(model: string, policy: TenantPolicy, routedModels: ReadonlySet<string>): void {
  // One answer for "not routed" and "not yours": never reveal which models exist.
  // The model name is never echoed: it is client input.
  if (!routedModels.has(model) || !policy.models.includes(model)) {
    throw new GatewayError('policy_model_not_allowed', 'model is not allowed for this tenant', { param: 'model' });
  }
}

/** Every optional top-level field must be named in `policy.params` (tool fields excepted). */
function checkParams(body: object, required: ReadonlySet<string>, policy: TenantPolicy): void {
  // The schema has already refused unknown keys, so every key here is a known field name.
  for (const field in body) {
    if (required.has(field) || TOOL_FIELDS.has(field)) continue;
    if (!policy.params.includes(field)) {
      throw new GatewayError('policy_param_not_allowed', `parameter "${field}" is not allowed for this tenant`, {
        param: field,
      });
    }
  }
}

function refuseToolFields(body: object): void {
  for (const field of TOOL_FIELDS) {
    if (Object.hasOwn(body, field)) throw toolsRefused(field);
  }
}

function toolsRefused(path: string): GatewayError {
  return new GatewayError('policy_tools_not_allowed', 'tools are not allowed for this tenant', { param: path });
}

/** `max_messages`: most messages (or input items) one request may hold. */
function checkItemCount(items: number, field: string, policy: TenantPolicy): void {
  if (items > policy.maxMessages) {
    throw new GatewayError('request_too_many_messages', `"${field}" may hold at most ${policy.maxMessages} items`, {
      param: field,
    });
  }
}

/** The client's cap clamped to the policy's, or the policy's when the client gave none. */
function clamp(client: number | null | undefined, cap: number): number {
  return typeof client === 'number' && client < cap ? client : cap;
}

// ---------------------------------------------------------------------------------------------
// One pass over the conversation: files, attachment count and size
// ---------------------------------------------------------------------------------------------

/** What the pass has found. Reused between calls: validation is synchronous. */
interface Scan {
  toolsAllowed: boolean;
  filesAllowed: boolean;
  maxAttachmentBytes: number;
  attachments: number;
  /** Where the first file input was found when files are not allowed. */
  fileRefused: string | undefined;
  /** Where the first attachment over the size cap was found. */
  oversized: string | undefined;
}

const scanState: Scan = {
  toolsAllowed: false,
  filesAllowed: false,
  maxAttachmentBytes: 0,
  attachments: 0,
  fileRefused: undefined,
  oversized: undefined,
};

function startScan(policy: TenantPolicy): Scan {
  scanState.toolsAllowed = policy.tools;
  scanState.filesAllowed = policy.files;
  scanState.maxAttachmentBytes = policy.maxAttachmentBytes;
  scanState.attachments = 0;
  scanState.fileRefused = undefined;
  scanState.oversized = undefined;
  return scanState;
}

/**
 * Counts one attachment of `size` characters (inline data or URL). Returns true when this is
 * the first refusal of its kind, so the caller builds the path only then.
 */
function countAttachment(scan: Scan, size: number): boolean {
  if (!scan.filesAllowed) return scan.fileRefused === undefined;
  scan.attachments++;
  return size > scan.maxAttachmentBytes && scan.oversized === undefined;
}

function noteAttachment(scan: Scan, path: string): void {
  if (!scan.filesAllowed) {
    // A tools refusal would outrank this one; when tools are allowed none can come, so stop here.
    if (scan.toolsAllowed) throw filesRefused(path);
    scan.fileRefused = path;
  } else {
    scan.oversized = path;
  }
}

function filesRefused(path: string): GatewayError {
  return new GatewayError('policy_files_not_allowed', 'image, audio and file inputs are not allowed for this tenant', {
    param: path,
  });
}

function finishScan(scan: Scan, items: number, field: string, policy: TenantPolicy): void {
  if (scan.fileRefused !== undefined) throw filesRefused(scan.fileRefused);
  checkItemCount(items, field, policy);
  if (scan.attachments > policy.maxAttachments) {
    throw new GatewayError(
      'request_too_many_attachments',
      `a request may hold at most ${policy.maxAttachments} attachments`,
      { param: field },
    );
  }
  if (scan.oversized !== undefined) {
    throw new GatewayError(
      'request_attachment_too_large',
      `an attachment is larger than ${policy.maxAttachmentBytes} bytes`,
      { param: scan.oversized },
    );
  }
}
