/**
 * The text of a request that reaches the model, per endpoint: the only strings prompt DLP scans
 * and masks. Bodies here already passed schema validation, but every step still checks types,
 * so a shape this walker does not know is skipped, never a crash.
 *
 *   chat        messages[].content (string or text/refusal parts), .name, .refusal,
 *               .tool_calls[].function.arguments, prediction.content
 *   responses   instructions, input (string), input[].content (string or input_text/output_text/refusal parts),
 *               function_call.arguments, function_call_output.output (string or input_text parts),
 *               reasoning summary and reasoning text
 *   embeddings  input (a string or a list of strings; token arrays carry no text)
 *   messages    system (string or text blocks), messages[].content (string or text blocks),
 *               tool_result content (string or text blocks), tool_use input (every string in it),
 *               plain-text documents (source.data, source.content)
 *
 * Not scanned: model names, tool definitions and schemas, ids, attachments (images, audio, files,
 * which are not text), and Anthropic thinking blocks (signed by the provider: changing one makes
 * the request invalid).
 */
import type { Endpoint } from '../providers/types.js';
import { echoName } from '../policy/schema-errors.js';

export type JsonPath = readonly (string | number)[];
export type TextVisitor = (text: string, path: JsonPath) => void;

type Json = unknown;
const isRecord = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `messages[1].content[0].text`: a path for errors and audit rows (names and indexes only, never values). */
export function formatPath(path: JsonPath): string {
  let out = '';
  // keys can be free-form (tool inputs): one that looks like a key, or is not a plain name, is not echoed
  for (const step of path) out += typeof step === 'number' ? `[${step}]` : out === '' ? echoName(step) : `.${echoName(step)}`;
  return out;
}

function str(value: Json, path: JsonPath, visit: TextVisitor): void {
  if (typeof value === 'string' && value.length > 0) visit(value, path);
}

/** A string, or a list of parts whose `text` (or another named field) is text, for the given part types. */
function textOrParts(value: Json, path: JsonPath, visit: TextVisitor, fields: Readonly<Record<string, string>>): void {
  if (typeof value === 'string') {
    str(value, path, visit);
    return;
  }
  if (!Array.isArray(value)) return;
  value.forEach((part, i) => {
    if (!isRecord(part) || typeof part['type'] !== 'string') return;
    const field = fields[part['type']];
    if (field !== undefined) str(part[field], [...path, i, field], visit);
  });
}

/** Every string inside a free-form JSON value (a tool-call input). */
function everyString(value: Json, path: JsonPath, visit: TextVisitor): void {
  if (typeof value === 'string') str(value, path, visit);
  else if (Array.isArray(value)) value.forEach((v, i) => everyString(v, [...path, i], visit));
  else if (isRecord(value)) for (const [k, v] of Object.entries(value)) everyString(v, [...path, k], visit);
}

const CHAT_PARTS = { text: 'text', refusal: 'refusal' } as const;
const RESPONSES_PARTS = { input_text: 'text', output_text: 'text', refusal: 'refusal' } as const;
const ANTHROPIC_TEXT = { text: 'text' } as const;

function chat(body: Record<string, Json>, visit: TextVisitor): void {
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    messages.forEach((m, i) => {
      if (!isRecord(m)) return;
      const at = ['messages', i];
      textOrParts(m['content'], [...at, 'content'], visit, CHAT_PARTS);
      str(m['name'], [...at, 'name'], visit);
      str(m['refusal'], [...at, 'refusal'], visit);
      const calls = m['tool_calls'];
      if (Array.isArray(calls)) {
        calls.forEach((c, j) => {
          if (isRecord(c) && isRecord(c['function'])) str(c['function']['arguments'], [...at, 'tool_calls', j, 'function', 'arguments'], visit);
        });
      }
    });
  }
  const prediction = body['prediction'];
  if (isRecord(prediction)) textOrParts(prediction['content'], ['prediction', 'content'], visit, CHAT_PARTS);
}

function responses(body: Record<string, Json>, visit: TextVisitor): void {
  str(body['instructions'], ['instructions'], visit);
  const input = body['input'];
  if (typeof input === 'string') {
    str(input, ['input'], visit);
    return;
  }
  if (!Array.isArray(input)) return;
  input.forEach((item, i) => {
    if (!isRecord(item)) return;
    const at = ['input', i];
    const type = item['type'];
    if (type === 'function_call') str(item['arguments'], [...at, 'arguments'], visit);
    else if (type === 'function_call_output') textOrParts(item['output'], [...at, 'output'], visit, RESPONSES_PARTS);
    else if (type === 'reasoning') {
      for (const list of ['summary', 'content'] as const) {
        const parts = item[list];
        if (Array.isArray(parts)) parts.forEach((p, j) => isRecord(p) && str(p['text'], [...at, list, j, 'text'], visit));
      }
    } else if (typeof item['role'] === 'string') textOrParts(item['content'], [...at, 'content'], visit, RESPONSES_PARTS);
  });
}

function embeddings(body: Record<string, Json>, visit: TextVisitor): void {
  const input = body['input'];
  if (typeof input === 'string') str(input, ['input'], visit);
  else if (Array.isArray(input)) input.forEach((v, i) => str(v, ['input', i], visit));
}

function anthropicBlocks(value: Json, path: JsonPath, visit: TextVisitor): void {
  if (typeof value === 'string') {
    str(value, path, visit);
    return;
  }
  if (!Array.isArray(value)) return;
  value.forEach((block, i) => {
    if (!isRecord(block)) return;
    const at = [...path, i];
    switch (block['type']) {
      case 'text':
        str(block['text'], [...at, 'text'], visit);
        break;
      case 'tool_result':
        textOrParts(block['content'], [...at, 'content'], visit, ANTHROPIC_TEXT);
        if (Array.isArray(block['content'])) {
          block['content'].forEach((inner, j) => {
            if (isRecord(inner) && inner['type'] === 'document') documentText(inner, [...at, 'content', j], visit);
          });
        }
        break;
      case 'tool_use':
        everyString(block['input'], [...at, 'input'], visit);
        break;
      case 'document':
        documentText(block, at, visit);
        break;
      default:
        // images, thinking (signed), redacted thinking: not text the gateway may change
        break;
    }
  });
}

function documentText(block: Record<string, Json>, at: JsonPath, visit: TextVisitor): void {
  const source = block['source'];
  if (!isRecord(source)) return;
  if (source['type'] === 'text') str(source['data'], [...at, 'source', 'data'], visit);
  else if (source['type'] === 'content') textOrParts(source['content'], [...at, 'source', 'content'], visit, ANTHROPIC_TEXT);
  str(block['context'], [...at, 'context'], visit);
}

function messages(body: Record<string, Json>, visit: TextVisitor): void {
  const system = body['system'];
  if (typeof system === 'string') str(system, ['system'], visit);
  else if (Array.isArray(system)) textOrParts(system, ['system'], visit, ANTHROPIC_TEXT);
  const list = body['messages'];
  if (Array.isArray(list)) list.forEach((m, i) => isRecord(m) && anthropicBlocks(m['content'], ['messages', i, 'content'], visit));
}

/** Calls `visit` for every non-empty text string of the body that reaches the model on this endpoint. */
export function forEachTextPart(endpoint: Endpoint, body: Record<string, unknown>, visit: TextVisitor): void {
  switch (endpoint) {
    case 'chat':
      return chat(body, visit);
    case 'responses':
      return responses(body, visit);
    case 'embeddings':
      return embeddings(body, visit);
    case 'messages':
      return messages(body, visit);
    default:
      return undefined;
  }
}

/** Sets the string at `path` in a (cloned) body. The path came from {@link forEachTextPart} on an identical body. */
export function setAtPath(root: Record<string, unknown>, path: JsonPath, value: string): void {
  let node: unknown = root;
  for (let i = 0; i < path.length - 1; i++) node = (node as Record<string | number, unknown>)[path[i] as string | number];
  (node as Record<string | number, unknown>)[path[path.length - 1] as string | number] = value;
}
