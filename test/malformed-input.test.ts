import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { assertErrorShape, mapLimit, parseJson, rawRequest, seededRandom, type Dialect } from './helpers/security-http.js';

/*
 * Threats (THREATS.md, "Unbounded consumption", "Authentication bypass and injection"): bad
 * input of every kind — wrong types, huge and deep bodies, broken bytes, odd roots and content
 * types, prototype keys, injection and malformed credentials — is answered with a coded 4xx in
 * the endpoint's own error shape, never a 5xx or a dropped connection, never reaches the
 * provider, and leaves the gateway serving.
 *
 * Over a thousand cases are generated, part of them by a seeded PRNG (SEED below): a failure
 * names its case label and reproduces on the next run.
 */

const SEED = 0x5eed_2024;
const CONCURRENCY = 16;

type Endpoint = 'chat' | 'responses' | 'embeddings' | 'messages';
const PATHS: Record<Endpoint, string> = {
  chat: '/v1/chat/completions',
  responses: '/v1/responses',
  embeddings: '/v1/embeddings',
  messages: '/v1/messages',
};
const ENDPOINTS = Object.keys(PATHS) as Endpoint[];

/** Valid bodies under the harness's contract policy; every case below breaks one on purpose. */
const VALID: Record<Endpoint, Record<string, unknown>> = {
  chat: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, temperature: 0.5, stream: false },
  responses: { model: 'gpt-4o-mini', input: [{ role: 'user', content: 'hi' }], instructions: 'be brief', max_output_tokens: 8 },
  embeddings: { model: 'text-embedding-3-small', input: ['hi', 'there'], encoding_format: 'float', dimensions: 8 },
  messages: { model: 'claude-3-5-haiku-latest', max_tokens: 8, system: 'be brief', messages: [{ role: 'user', content: 'hi' }] },
};
const REQUIRED: Record<Endpoint, string[]> = {
  chat: ['model', 'messages'],
  responses: ['model', 'input'],
  embeddings: ['model', 'input'],
  messages: ['model', 'messages', 'max_tokens'],
};

// ---------------------------------------------------------------------------------------------
// Wrong values, by JSON kind
// ---------------------------------------------------------------------------------------------

type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'null' | 'array' | 'object';

function kindOf(value: unknown): Kind {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value as Kind;
}

/** One value of every kind (and a few awkward ones); a field gets every value of a kind it does not accept. */
const POOL: readonly unknown[] = ['text', '1', 'true', 1.5, -7.25, 3, 0, -1, 1e308, true, false, null, [], ['x'], [1], {}, { a: 1 }];

interface FieldSpec {
  /** Path into the body: keys and array indices. */
  path: Array<string | number>;
  accepts: Kind[];
  /** Values of an accepted kind that are still wrong (empty, out of range, unknown literal…). */
  extra?: unknown[];
}

const MODEL_EXTRA = ['', 'gpt-4o', 'GPT-4O-MINI', 'gpt-4o-mini ', 'gpt-4o-mini\u0000', '__proto__', 'constructor', 'toString'];
const MIN1 = [0, -1];

const FIELDS: Record<Endpoint, FieldSpec[]> = {
  chat: [
    { path: ['model'], accepts: ['string'], extra: MODEL_EXTRA },
    { path: ['messages'], accepts: ['array'], extra: [[], [1], ['hi'], [null], [[]], [{}]] },
    { path: ['messages', 0], accepts: ['object'], extra: [{}, { role: 'user' }, { content: 'x' }, { role: 'user', content: 'x', name: 1 }] },
    { path: ['messages', 0, 'role'], accepts: ['string'], extra: ['root', '', 'USER', 'user\u0000'] },
    { path: ['messages', 0, 'content'], accepts: ['string', 'array'], extra: [[1], [null], [{ type: 'text' }], [{ type: 'text', text: 1 }], [{ type: 'bogus', text: 'x' }]] },
    { path: ['temperature'], accepts: ['number', 'integer', 'null'] },
    { path: ['top_p'], accepts: ['number', 'integer', 'null'] },
    { path: ['max_tokens'], accepts: ['integer', 'null'], extra: MIN1 },
    { path: ['max_completion_tokens'], accepts: ['integer', 'null'], extra: MIN1 },
    { path: ['stream'], accepts: ['boolean', 'null'] },
    { path: ['stream_options'], accepts: ['object', 'null'], extra: [{ include_usage: 'yes' }, { include_usage: 1 }, { foo: true }] },
    { path: ['stop'], accepts: ['string', 'array', 'null'], extra: [[1], [null], [[]], [{}]] },
  ],
  responses: [
    { path: ['model'], accepts: ['string'], extra: MODEL_EXTRA },
    { path: ['input'], accepts: ['string', 'array'], extra: [[], [1], [null], [true], [[]]] },
    { path: ['input', 0, 'role'], accepts: ['string'], extra: ['root', '', 'assistant '] },
    { path: ['instructions'], accepts: ['string', 'null'] },
    { path: ['max_output_tokens'], accepts: ['integer', 'null'], extra: MIN1 },
    { path: ['temperature'], accepts: ['number', 'integer', 'null'] },
    { path: ['top_p'], accepts: ['number', 'integer', 'null'] },
    { path: ['stream'], accepts: ['boolean', 'null'] },
  ],
  embeddings: [
    { path: ['model'], accepts: ['string'], extra: MODEL_EXTRA },
    { path: ['input'], accepts: ['string', 'array'], extra: [[], [null], [1.5], [-1], [[]], ['a', 1], [true], [{}], [[1.5]], [['a']]] },
    { path: ['encoding_format'], accepts: [], extra: ['FLOAT', '', 'hex'] },
    { path: ['dimensions'], accepts: ['integer'], extra: MIN1 },
  ],
  messages: [
    { path: ['model'], accepts: ['string'], extra: MODEL_EXTRA },
    { path: ['messages'], accepts: ['array'], extra: [[], [1], ['hi'], [null], [[]], [{}]] },
    { path: ['messages', 0, 'role'], accepts: ['string'], extra: ['system', 'root', '', 'User'] },
    { path: ['messages', 0, 'content'], accepts: ['string', 'array'], extra: [[1], [null], [{ type: 'text' }], [{ type: 'bogus', text: 'x' }], [{ type: 'text', text: 1 }]] },
    { path: ['max_tokens'], accepts: ['integer'], extra: MIN1 },
    { path: ['system'], accepts: ['string', 'array'], extra: [[1], [null], [{ type: 'text' }], [{ type: 'text', text: 1 }]] },
    { path: ['temperature'], accepts: ['number', 'integer'] },
    { path: ['top_p'], accepts: ['number', 'integer'] },
    { path: ['stream'], accepts: ['boolean'] },
  ],
};

function wrongValues(spec: FieldSpec): unknown[] {
  const accepts = new Set<Kind>(spec.accepts);
  const wrong = POOL.filter((v) => !accepts.has(kindOf(v)));
  return [...wrong, ...(spec.extra ?? [])];
}

function hasParent(body: unknown, path: ReadonlyArray<string | number>): boolean {
  let node: any = body;
  for (const key of path.slice(0, -1)) {
    if (typeof node !== 'object' || node === null || !(key in node)) return false;
    node = node[key];
  }
  return typeof node === 'object' && node !== null;
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

/** Sets `path` in a copy of `body` (creating nothing: every path exists in VALID or is a top-level key). */
function withValue(body: Record<string, unknown>, path: ReadonlyArray<string | number>, value: unknown): Record<string, unknown> {
  const copy = clone(body);
  let node: any = copy;
  for (const key of path.slice(0, -1)) node = node[key];
  node[path[path.length - 1] as string | number] = clone(value);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Cases and how they are sent and judged
// ---------------------------------------------------------------------------------------------

interface Case {
  group: string;
  label: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer | (() => AsyncIterable<Buffer>);
  /** Bytes written to a raw socket instead (for what an HTTP client refuses to send). */
  raw?: Buffer;
  /** Error shape expected; by default from the path. */
  dialect?: Dialect;
  /** The code(s) this case must get; any documented code otherwise. */
  code?: string | readonly string[];
}

interface Outcome {
  c: Case;
  status: number;
  text: string;
  json: unknown;
  requestId: string | undefined;
  transport?: string;
}

let h: Harness;
let agent: Agent;
const outcomes: Outcome[] = [];

function dialectOf(c: Case): Dialect {
  return c.dialect ?? (c.path.startsWith('/v1/messages') ? 'anthropic' : 'openai');
}

function authFor(endpoint: Endpoint | 'models'): Record<string, string> {
  return endpoint === 'messages' ? { 'x-api-key': h.key, 'anthropic-version': '2023-06-01' } : { authorization: `Bearer ${h.key}` };
}

function jsonCase(group: string, label: string, endpoint: Endpoint, body: Buffer | string, extra: Partial<Case> = {}): Case {
  return {
    group, label, method: 'POST', path: PATHS[endpoint],
    headers: { 'content-type': 'application/json', ...authFor(endpoint), ...(extra.headers ?? {}) },
    body: typeof body === 'string' ? Buffer.from(body) : body,
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'headers')),
  };
}

async function send(c: Case): Promise<Outcome> {
  try {
    if (c.raw) {
      const res = await rawRequest(h.url, c.raw);
      if (res.dropped) return { c, status: 0, text: res.body, json: undefined, requestId: undefined, transport: 'connection closed without an answer' };
      return { c, status: res.status, text: res.body, json: parseJson(res.body), requestId: res.headers['x-request-id'] };
    }
    const res = await request(h.url + c.path, {
      method: c.method as 'POST',
      headers: c.headers,
      body: typeof c.body === 'function' ? Readable.from(c.body()) : c.body ?? null,
      dispatcher: agent,
    });
    const text = await res.body.text();
    const id = res.headers['x-request-id'];
    return { c, status: res.statusCode, text, json: parseJson(text), requestId: typeof id === 'string' ? id : undefined };
  } catch (err) {
    return { c, status: 0, text: '', json: undefined, requestId: undefined, transport: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}

/** Every problem with one answer, as text (empty when it is a proper coded 4xx). */
function judge(o: Outcome): string[] {
  const where = `[${o.c.group}] ${o.c.label}`;
  if (o.transport) return [`${where}: ${o.transport}`];
  const problems: string[] = [];
  if (o.status < 400 || o.status > 499) problems.push(`${where}: status ${o.status} (${o.text.slice(0, 160)})`);
  if (!o.requestId) problems.push(`${where}: no x-request-id`);
  try {
    const code = assertErrorShape(o.json, dialectOf(o.c), where);
    const expected = o.c.code === undefined ? undefined : typeof o.c.code === 'string' ? [o.c.code] : o.c.code;
    if (expected && !expected.includes(code)) problems.push(`${where}: code ${code}, expected ${expected.join(' | ')}`);
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
  }
  return problems;
}

async function runGroup(cases: Case[]): Promise<Outcome[]> {
  const results = await mapLimit(cases, CONCURRENCY, send);
  outcomes.push(...results);
  const problems = results.flatMap(judge);
  assert.deepEqual(problems, [], `${problems.length} of ${cases.length} answers were wrong:\n${problems.slice(0, 40).join('\n')}`);
  return results;
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

function wrongTypeCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    for (const spec of FIELDS[endpoint]) {
      for (const value of wrongValues(spec)) {
        cases.push(jsonCase('wrong types', `${endpoint} ${spec.path.join('.')} = ${JSON.stringify(value)}`, endpoint, JSON.stringify(withValue(VALID[endpoint], spec.path, value))));
      }
    }
    for (const field of REQUIRED[endpoint]) {
      const body = clone(VALID[endpoint]);
      delete body[field];
      cases.push(jsonCase('wrong types', `${endpoint} without ${field}`, endpoint, JSON.stringify(body), { code: 'request_invalid' }));
    }
  }
  return cases;
}

function hugeCases(): Case[] {
  const cases: Case[] = [];
  const big = 'x'.repeat(900_000); // within the 1 MiB body limit
  for (const endpoint of ENDPOINTS) {
    const v = VALID[endpoint];
    cases.push(jsonCase('huge', `${endpoint} 900 KB model name`, endpoint, JSON.stringify({ ...v, model: big }), { code: 'policy_model_not_allowed' }));
    cases.push(jsonCase('huge', `${endpoint} 900 KB unknown field value`, endpoint, JSON.stringify({ ...v, zz_unknown: big }), { code: 'request_unknown_field' }));
    cases.push(jsonCase('huge', `${endpoint} 500 KB unknown field name`, endpoint, JSON.stringify({ ...v, ['k'.repeat(500_000)]: 1 }), { code: 'request_unknown_field' }));
    cases.push(jsonCase('huge', `${endpoint} 150k-item array of numbers as the model`, endpoint, JSON.stringify({ ...v, model: new Array(150_000).fill(1) }), { code: 'request_invalid' }));
    cases.push(jsonCase('huge', `${endpoint} 1.5 MB body (content-length)`, endpoint, JSON.stringify({ ...v, model: 'y'.repeat(1_500_000) }), { code: 'request_body_too_large' }));
    cases.push(jsonCase('huge', `${endpoint} 5 MB body of spaces`, endpoint, Buffer.alloc(5_000_000, 0x20), { code: 'request_body_too_large' }));
    cases.push({
      ...jsonCase('huge', `${endpoint} 2.5 MB chunked body`, endpoint, ''),
      body: async function* () {
        yield Buffer.from('{"model":"');
        for (let i = 0; i < 40; i++) yield Buffer.alloc(65_536, 0x61);
        yield Buffer.from('"}');
      },
      code: 'request_body_too_large',
    });
  }
  const msg = { role: 'user', content: 'hi' };
  cases.push(jsonCase('huge', 'chat 100k junk messages', 'chat', JSON.stringify({ ...VALID.chat, messages: new Array(100_000).fill(1) }), { code: 'request_invalid' }));
  cases.push(jsonCase('huge', 'chat 300 messages (over the message cap)', 'chat', JSON.stringify({ ...VALID.chat, messages: new Array(300).fill(msg) }), { code: 'request_too_many_messages' }));
  cases.push(jsonCase('huge', 'messages 300 messages (over the message cap)', 'messages', JSON.stringify({ ...VALID.messages, messages: new Array(300).fill(msg) }), { code: 'request_too_many_messages' }));
  cases.push(jsonCase('huge', 'responses 300 input items (over the message cap)', 'responses', JSON.stringify({ ...VALID.responses, input: new Array(300).fill(msg) }), { code: 'request_too_many_messages' }));
  cases.push(jsonCase('huge', 'embeddings 200k negative tokens', 'embeddings', JSON.stringify({ ...VALID.embeddings, input: new Array(200_000).fill(-1) }), { code: 'request_invalid' }));
  cases.push(jsonCase('huge', 'chat 50k content parts of the wrong type', 'chat', JSON.stringify({ ...VALID.chat, messages: [{ role: 'user', content: new Array(50_000).fill({ type: 'nope' }) }] })));
  return cases;
}

function deepCases(): Case[] {
  const cases: Case[] = [];
  const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  const mixed = (n: number) => '[{"a":'.repeat(n) + '1' + '}]'.repeat(n);
  for (const endpoint of ENDPOINTS) {
    const prefix = JSON.stringify(VALID[endpoint]).slice(0, -1);
    cases.push(jsonCase('deep', `${endpoint} 10k nested arrays in an unknown field`, endpoint, `${prefix},"zz":${arrays(10_000)}}`, { code: ['request_too_deep', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 10k nested objects in an unknown field`, endpoint, `${prefix},"zz":${objects(10_000)}}`, { code: ['request_too_deep', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 10k nested array/object pairs`, endpoint, `${prefix},"zz":${mixed(5_000)}}`, { code: ['request_too_deep', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 100k nested arrays`, endpoint, `${prefix},"zz":${arrays(100_000)}}`, { code: ['request_too_deep', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 10k nested arrays as the root`, endpoint, arrays(10_000), { code: ['request_invalid', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 10k nested objects as the root`, endpoint, objects(10_000), { code: ['request_too_deep', 'request_invalid_json'] }));
    cases.push(jsonCase('deep', `${endpoint} 65 levels (one past the cap)`, endpoint, `${prefix},"zz":${arrays(64)}}`, { code: 'request_too_deep' }));
  }
  cases.push(jsonCase('deep', 'chat 10k nested arrays as message content', 'chat', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${arrays(10_000)}}]}`, { code: 'request_too_deep' }));
  cases.push(jsonCase('deep', 'messages 10k nested arrays as message content', 'messages', `{"model":"claude-3-5-haiku-latest","max_tokens":8,"messages":[{"role":"user","content":${arrays(10_000)}}]}`, { code: 'request_too_deep' }));
  return cases;
}

const BAD_UTF8: ReadonlyArray<[string, number[]]> = [
  ['0xff', [0xff]],
  ['lone continuation 0x80', [0x80]],
  ['overlong slash c0 af', [0xc0, 0xaf]],
  ['surrogate ed a0 80', [0xed, 0xa0, 0x80]],
  ['truncated 3-byte e2 82', [0xe2, 0x82]],
  ['beyond U+10FFFF f4 90 80 80', [0xf4, 0x90, 0x80, 0x80]],
  ['latin-1 e9', [0xe9]],
];

function utf8Cases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    const text = JSON.stringify(VALID[endpoint]);
    const at = text.indexOf('hi');
    for (const [name, bytes] of BAD_UTF8) {
      const inString = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from(bytes), Buffer.from(text.slice(at))]);
      cases.push(jsonCase('invalid utf-8', `${endpoint} ${name} inside a string`, endpoint, inString, { code: 'request_invalid_json' }));
    }
    const keyAt = text.indexOf('model');
    cases.push(jsonCase('invalid utf-8', `${endpoint} 0xff inside a key`, endpoint, Buffer.concat([Buffer.from(text.slice(0, keyAt)), Buffer.from([0xff]), Buffer.from(text.slice(keyAt))]), { code: 'request_invalid_json' }));
    cases.push(jsonCase('invalid utf-8', `${endpoint} 0xfe 0xff at the end`, endpoint, Buffer.concat([Buffer.from(text), Buffer.from([0xfe, 0xff])]), { code: 'request_invalid_json' }));
    cases.push(jsonCase('invalid utf-8', `${endpoint} UTF-16LE body`, endpoint, Buffer.from(text, 'utf16le'), { code: 'request_invalid_json' }));
  }
  return cases;
}

function truncatedCases(random: () => number): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    const text = JSON.stringify(VALID[endpoint]);
    const cuts = new Set<number>([0, 1, text.length - 1, text.indexOf(':') + 1, text.indexOf('[') + 1]);
    while (cuts.size < 18) cuts.add(1 + Math.floor(random() * (text.length - 2)));
    for (const cut of cuts) cases.push(jsonCase('truncated', `${endpoint} cut at ${cut}/${text.length}`, endpoint, text.slice(0, cut), { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} trailing garbage`, endpoint, text + '}', { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} two JSON documents`, endpoint, text + text, { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} single quotes`, endpoint, text.replace(/"/g, "'"), { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} trailing comma`, endpoint, text.slice(0, -1) + ',}', { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} comment`, endpoint, '/* hi */' + text, { code: 'request_invalid_json' }));
    cases.push(jsonCase('truncated', `${endpoint} NaN value`, endpoint, text.slice(0, -1) + ',"temperature":NaN}', { code: 'request_invalid_json' }));
  }
  return cases;
}

const ROOTS = ['[]', '[{}]', '[{"model":"gpt-4o-mini"}]', '1', '-1', '0', '1e400', 'null', 'true', 'false', '"string"', '""', ' "padded" '];

function rootCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    for (const root of ROOTS) cases.push(jsonCase('non-object root', `${endpoint} ${root.trim()}`, endpoint, root, { code: 'request_invalid' }));
    cases.push(jsonCase('non-object root', `${endpoint} [valid body]`, endpoint, `[${JSON.stringify(VALID[endpoint])}]`, { code: 'request_invalid' }));
  }
  return cases;
}

/** JSON text from key/value-text pairs, keeping duplicates. */
function dup(pairs: Array<[string, unknown]>): string {
  return '{' + pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',') + '}';
}

function duplicateKeyCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    const v = VALID[endpoint];
    const entries = Object.entries(v);
    const [listKey] = REQUIRED[endpoint].filter((k) => k !== 'model');
    cases.push(jsonCase('duplicate keys', `${endpoint} model, then model: null`, endpoint, dup([...entries, ['model', null]]), { code: 'request_invalid' }));
    cases.push(jsonCase('duplicate keys', `${endpoint} model, then a model not allowed`, endpoint, dup([...entries, ['model', 'gpt-4o']]), { code: 'policy_model_not_allowed' }));
    cases.push(jsonCase('duplicate keys', `${endpoint} ${listKey}, then empty`, endpoint, dup([...entries, [listKey as string, []]]), { code: 'request_invalid' }));
    cases.push(jsonCase('duplicate keys', `${endpoint} unknown key twice`, endpoint, dup([...entries, ['zz', 1], ['zz', 2]]), { code: 'request_unknown_field' }));
    cases.push(jsonCase('duplicate keys', `${endpoint} __proto__ twice`, endpoint, dup([...entries, ['__proto__', {}], ['__proto__', { model: 'x' }]]), { code: 'request_unknown_field' }));
  }
  cases.push(jsonCase('duplicate keys', 'chat duplicate role inside a message', 'chat', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x","role":"root"}]}', { code: 'request_invalid' }));
  cases.push(jsonCase('duplicate keys', 'chat stream, then stream: "yes"', 'chat', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":false,"stream":"yes"}', { code: 'request_invalid' }));
  cases.push(jsonCase('duplicate keys', 'messages duplicate content inside a message', 'messages', '{"model":"claude-3-5-haiku-latest","max_tokens":8,"messages":[{"role":"user","content":"x","content":7}]}', { code: 'request_invalid' }));
  return cases;
}

function prototypeCases(): Case[] {
  const cases: Case[] = [];
  const keys: Array<[string, unknown]> = [
    ['__proto__', { polluted: 'yes' }],
    ['__proto__', null],
    ['__proto__', { model: 'gpt-4o-mini', isAdmin: true }],
    ['constructor', { prototype: { polluted: 'yes' } }],
    ['prototype', { polluted: 'yes' }],
    ['hasOwnProperty', 1],
  ];
  for (const endpoint of ENDPOINTS) {
    const text = JSON.stringify(VALID[endpoint]).slice(0, -1);
    for (const [key, value] of keys) {
      cases.push(jsonCase('prototype keys', `${endpoint} top-level ${key}`, endpoint, `${text},${JSON.stringify(key)}:${JSON.stringify(value)}}`, { code: 'request_unknown_field' }));
    }
    const listKey = endpoint === 'responses' ? 'input' : endpoint === 'embeddings' ? undefined : 'messages';
    if (listKey) {
      cases.push(jsonCase('prototype keys', `${endpoint} __proto__ inside a message`, endpoint,
        JSON.stringify(VALID[endpoint]).replace('"content":"hi"', '"content":"hi","__proto__":{"role":"system"}'), { code: 'request_unknown_field' }));
      cases.push(jsonCase('prototype keys', `${endpoint} constructor inside a message`, endpoint,
        JSON.stringify(VALID[endpoint]).replace('"content":"hi"', '"content":"hi","constructor":{"prototype":{"polluted":"yes"}}'), { code: 'request_unknown_field' }));
    }
  }
  cases.push(jsonCase('prototype keys', 'chat __proto__ in stream_options', 'chat', JSON.stringify(VALID.chat).slice(0, -1) + ',"stream_options":{"__proto__":{"include_usage":true}}}', { code: 'request_unknown_field' }));
  cases.push(jsonCase('prototype keys', 'chat __proto__ in a content part', 'chat', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"x","__proto__":{"type":"image_url"}}]}]}', { code: 'request_unknown_field' }));
  return cases;
}

function rawHttp(method: string, path: string, headerLines: Array<string | Buffer>, body: Buffer | string = ''): Buffer {
  const bodyBuf = typeof body === 'string' ? Buffer.from(body) : body;
  const parts: Buffer[] = [Buffer.from(`${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: ${bodyBuf.length}\r\n`)];
  for (const line of headerLines) parts.push(Buffer.isBuffer(line) ? line : Buffer.from(line), Buffer.from('\r\n'));
  parts.push(Buffer.from('\r\n'), bodyBuf);
  return Buffer.concat(parts);
}

function nulCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    const text = JSON.stringify(VALID[endpoint]);
    const comma = text.indexOf(',');
    cases.push(jsonCase('NUL bytes', `${endpoint} raw NUL between members`, endpoint, text.slice(0, comma + 1) + '\u0000' + text.slice(comma + 1), { code: 'request_invalid_json' }));
    cases.push(jsonCase('NUL bytes', `${endpoint} raw NUL inside a string`, endpoint, text.replace('"hi"', '"h\u0000i"'), { code: 'request_invalid_json' }));
    cases.push(jsonCase('NUL bytes', `${endpoint} raw NUL before the body`, endpoint, '\u0000' + text, { code: 'request_invalid_json' }));
    cases.push(jsonCase('NUL bytes', `${endpoint} escaped NUL in the model`, endpoint, JSON.stringify({ ...VALID[endpoint], model: `${String(VALID[endpoint]['model'])}\u0000` }), { code: 'policy_model_not_allowed' }));
    cases.push(jsonCase('NUL bytes', `${endpoint} escaped NUL as a key`, endpoint, text.slice(0, -1) + ',"\\u0000":1}', { code: 'request_unknown_field' }));
    cases.push(jsonCase('NUL bytes', `${endpoint} escaped NUL inside a known key`, endpoint, text.replace('"model"', '"mod\\u0000el"'), { code: ['request_unknown_field', 'request_invalid'] }));
    const auth = Object.entries(authFor(endpoint)).map(([k, v]) => `${k}: ${v}`);
    // what no HTTP client will send: the parser refuses it before any route
    cases.push({ group: 'NUL bytes', label: `${endpoint} NUL in a header value`, method: 'POST', path: PATHS[endpoint], headers: {}, dialect: 'openai', code: 'request_header_invalid',
      raw: rawHttp('POST', PATHS[endpoint], [...auth, 'content-type: application/json', 'x-note: a\u0000b'], text) });
    cases.push({ group: 'NUL bytes', label: `${endpoint} NUL in a header name`, method: 'POST', path: PATHS[endpoint], headers: {}, dialect: 'openai', code: 'request_header_invalid',
      raw: rawHttp('POST', PATHS[endpoint], [...auth, 'content-type: application/json', 'x-no\u0000te: 1'], text) });
    cases.push({ group: 'NUL bytes', label: `${endpoint} NUL in the path`, method: 'POST', path: PATHS[endpoint], headers: {}, dialect: 'openai', code: 'request_header_invalid',
      raw: rawHttp('POST', `${PATHS[endpoint]}\u0000`, [...auth, 'content-type: application/json'], text) });
    cases.push({ group: 'NUL bytes', label: `${endpoint} NUL in the content type`, method: 'POST', path: PATHS[endpoint], headers: {}, dialect: 'openai', code: 'request_header_invalid',
      raw: rawHttp('POST', PATHS[endpoint], [...auth, 'content-type: application/json\u0000'], text) });
  }
  return cases;
}

const ODD_CONTENT_TYPES = [
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz',
  'application/xml', 'text/json', 'application/jsonp', 'application/json-patch+json', 'application/vnd.api+json',
  'application/javascript', 'application/ json', 'application/json,text/plain', 'json', '*/*', 'application/*', '',
];

function contentTypeCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    const text = JSON.stringify(VALID[endpoint]);
    for (const type of ODD_CONTENT_TYPES) {
      cases.push(jsonCase('content types', `${endpoint} content-type ${JSON.stringify(type)}`, endpoint, text, { headers: { 'content-type': type }, code: 'request_unsupported_media_type' }));
    }
    const noType = jsonCase('content types', `${endpoint} no content-type`, endpoint, text, { code: 'request_unsupported_media_type' });
    delete noType.headers['content-type'];
    cases.push(noType);
    // bodies are never decompressed, so an encoded body is refused rather than parsed as if plain
    cases.push(jsonCase('content types', `${endpoint} gzip content-encoding`, endpoint, gzipSync(text), { headers: { 'content-encoding': 'gzip' }, code: 'request_unsupported_media_type' }));
    cases.push(jsonCase('content types', `${endpoint} gzip content-encoding on a plain body`, endpoint, text, { headers: { 'content-encoding': 'gzip' }, code: 'request_unsupported_media_type' }));
    cases.push(jsonCase('content types', `${endpoint} br content-encoding on a plain body`, endpoint, text, { headers: { 'content-encoding': 'br' }, code: 'request_unsupported_media_type' }));
    cases.push(jsonCase('content types', `${endpoint} JSON content type, form body`, endpoint, 'model=gpt-4o-mini&messages=hi', { code: 'request_invalid_json' }));
  }
  return cases;
}

function methodCases(): Case[] {
  const cases: Case[] = [];
  for (const endpoint of ENDPOINTS) {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      cases.push({ group: 'methods', label: `${method} ${PATHS[endpoint]}`, method, path: PATHS[endpoint], headers: authFor(endpoint), code: 'method_not_allowed' });
    }
    for (const method of ['PUT', 'PATCH']) {
      // a body on the wrong method is never parsed: still method_not_allowed, not a body error
      cases.push({ ...jsonCase('methods', `${method} ${PATHS[endpoint]} with a body`, endpoint, JSON.stringify(VALID[endpoint])), method, code: 'method_not_allowed' });
      cases.push({ ...jsonCase('methods', `${method} ${PATHS[endpoint]} with a 2 MB body`, endpoint, Buffer.alloc(2_000_000, 0x20)), method, code: 'method_not_allowed' });
    }
    cases.push({ group: 'methods', label: `OPTIONS ${PATHS[endpoint]}`, method: 'OPTIONS', path: PATHS[endpoint], headers: authFor(endpoint), code: 'route_not_found' });
    cases.push({ group: 'methods', label: `unknown method on ${PATHS[endpoint]}`, method: 'BREW', path: PATHS[endpoint], headers: {}, dialect: 'openai', code: 'request_header_invalid',
      raw: rawHttp('BREW', PATHS[endpoint], []) });
  }
  cases.push({ group: 'methods', label: 'POST /v1/models without a body', method: 'POST', path: '/v1/models', headers: authFor('models'), code: 'route_not_found' });
  cases.push({ group: 'methods', label: 'DELETE /v1/models', method: 'DELETE', path: '/v1/models', headers: authFor('models'), code: 'route_not_found' });
  cases.push({ ...jsonCase('methods', 'POST /v1/models with a body', 'chat', JSON.stringify(VALID.chat)), path: '/v1/models', code: 'route_not_found' });
  cases.push({ ...jsonCase('methods', 'POST /v1/chat/completion (a near miss) with a body', 'chat', JSON.stringify(VALID.chat)), path: '/v1/chat/completion', code: 'route_not_found' });
  return cases;
}

// ---- credentials

/** A 43-character base64url string (the shape of a tenant-key secret), deterministic. */
function fakeSecret(random: () => number, length = 43): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(random() * alphabet.length)];
  return out;
}

interface Credential {
  label: string;
  headers?: Record<string, string | string[]>;
  /** Raw header lines (bytes no client library sends). */
  rawLines?: Buffer[];
}

function badCredentials(random: () => number, otherSecret: string): Credential[] {
  const id = h.keyId;
  const secret = h.key.slice('kw_'.length + 17);
  const bearer = (token: string): Credential => ({ label: `Bearer ${token.length > 60 ? `${token.slice(0, 40)}…(${token.length})` : token}`, headers: { authorization: `Bearer ${token}` } });
  // plainly fake, TEST-ONLY values
  return [
    bearer("' OR '1'='1"),
    bearer("'OR'1'='1'--"),
    bearer('kw_aaaaaaaaaaaaaaaa_\' UNION SELECT secret_hash FROM tenant_keys--'),
    bearer(`${h.key}' OR '1'='1`),
    bearer('kw_'),
    bearer('kw_x_y'),
    bearer(`kw_${id.slice(0, 15)}_${secret}`),
    bearer(`kw_${id}a_${secret}`),
    bearer(`kw_${id.toUpperCase()}_${secret}`),
    bearer(`kw_${id}_${secret.slice(0, 42)}`),
    bearer(`kw_${id}_${secret}A`),
    bearer(`kw_${id}_${fakeSecret(random)}`),
    bearer(`kw_${id}_${otherSecret}`),
    bearer(`kw_${id}_`),
    bearer(`kw_${id}`),
    bearer(`kw__${secret}`),
    bearer(`KW_${id}_${secret}`),
    bearer(`kw-${id}-${secret}`),
    bearer(h.key.slice(0, -1)),
    bearer(`${h.key}x`),
    bearer(encodeURIComponent(`${h.key}=`)),
    bearer('a'.repeat(10_240)),
    bearer(`kw_${id}_${'A'.repeat(10_240)}`),
    bearer('sk-fake-TEST-ONLY-not-a-tenant-key-0000000000'),
    bearer(FAKE_ADMIN_TOKEN),
    bearer('eyJhbGciOiJub25lIn0.eyJzdWIiOiJhY21lIn0.'),
    bearer('null'),
    bearer('undefined'),
    bearer('*'),
    { label: 'empty Bearer', headers: { authorization: 'Bearer' } },
    { label: 'Bearer and spaces', headers: { authorization: 'Bearer    ' } },
    { label: 'two tokens', headers: { authorization: `Bearer ${h.key} ${h.key}` } },
    { label: 'token, comma', headers: { authorization: `Bearer ${h.key},x` } },
    { label: 'Basic scheme around the real key', headers: { authorization: `Basic ${Buffer.from(`acme:${h.key}`).toString('base64')}` } },
    { label: 'Token scheme with the real key', headers: { authorization: `Token ${h.key}` } },
    { label: 'real key without a scheme', headers: { authorization: h.key } },
    { label: 'x-api-key injection', headers: { 'x-api-key': "' OR '1'='1" } },
    { label: 'x-api-key 10 KB', headers: { 'x-api-key': 'k'.repeat(10_240) } },
    { label: 'x-api-key with Bearer prefix', headers: { 'x-api-key': `Bearer x${h.key}` } },
    { label: 'x-api-key twice', headers: { 'x-api-key': [h.key, h.key] } },
    { label: 'x-api-key real key and junk', headers: { 'x-api-key': [h.key, 'junk'] } },
    { label: 'junk Authorization beside a valid x-api-key', headers: { authorization: 'Bearer junk', 'x-api-key': h.key } },
    { label: 'empty Bearer beside a valid x-api-key', headers: { authorization: 'Bearer', 'x-api-key': h.key } },
    { label: 'unicode Bearer (UTF-8 bytes)', rawLines: [Buffer.from(`authorization: Bearer kw_ключключключключ_${'я'.repeat(43)}`, 'utf8')] },
    { label: 'unicode x-api-key (UTF-8 bytes)', rawLines: [Buffer.from('x-api-key: 🔑🔑🔑-токен', 'utf8')] },
    { label: 'latin-1 bytes in Bearer', rawLines: [Buffer.from(`authorization: Bearer ${h.key.slice(0, -1)}é`, 'latin1')] },
    { label: 'real key with a unicode look-alike', rawLines: [Buffer.from(`authorization: Bearer ${h.key.replace('kw_', 'kw\u2009')}`, 'utf8')] },
  ];
}

function credentialCase(endpoint: Endpoint | 'models', cred: Credential, code: string): Case {
  const path = endpoint === 'models' ? '/v1/models' : PATHS[endpoint];
  const method = endpoint === 'models' ? 'GET' : 'POST';
  const body = endpoint === 'models' ? undefined : JSON.stringify(VALID[endpoint]);
  const base: Record<string, string> = endpoint === 'messages' ? { 'anthropic-version': '2023-06-01' } : {};
  if (body !== undefined) base['content-type'] = 'application/json';
  const label = `${method} ${path} ${cred.label}`;
  if (cred.rawLines) {
    const lines = [...Object.entries(base).map(([k, v]) => `${k}: ${v}`), ...cred.rawLines];
    return { group: 'credentials', label, method, path, headers: {}, raw: rawHttp(method, path, lines, body ?? ''), code };
  }
  return { group: 'credentials', label, method, path, headers: { ...base, ...(cred.headers ?? {}) }, ...(body === undefined ? {} : { body: Buffer.from(body) }), code };
}

// ---- seeded fuzz: mutations that can only make a valid body invalid

/** A control character JSON allows nowhere (not even as whitespace). */
function forbiddenControl(random: () => number): number {
  const choices = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0b, 0x0c, 0x0e, 0x0f, 0x10, 0x1b, 0x1f];
  return choices[Math.floor(random() * choices.length)] as number;
}

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)] as T;
}

/** Every object inside a body (the places an unknown key can be planted). */
function objectsIn(value: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (Array.isArray(value)) for (const item of value) objectsIn(item, out);
  else if (typeof value === 'object' && value !== null) {
    out.push(value as Record<string, unknown>);
    for (const item of Object.values(value)) objectsIn(item, out);
  }
  return out;
}

function fuzzCases(random: () => number, count: number): Case[] {
  const cases: Case[] = [];
  for (let n = 0; n < count; n++) {
    const endpoint = pick(random, ENDPOINTS);
    let body = clone(VALID[endpoint]);
    const steps: string[] = [];
    const structural = 1 + Math.floor(random() * 2);
    for (let s = 0; s < structural; s++) {
      const kind = Math.floor(random() * 3);
      if (kind === 0) {
        const target = pick(random, objectsIn(body));
        const key = `zz_${Math.floor(random() * 1e6).toString(36)}`;
        target[key] = clone(pick(random, POOL));
        steps.push(`+${key}`);
      } else if (kind === 1) {
        const spec = pick(random, FIELDS[endpoint]);
        const value = pick(random, wrongValues(spec));
        // an earlier step may have removed the field's parent: then replace the top-level field
        const path = hasParent(body, spec.path) ? spec.path : spec.path.slice(0, 1);
        body = withValue(body, path, value);
        steps.push(`${path.join('.')}=${JSON.stringify(value)}`);
      } else {
        const field = pick(random, REQUIRED[endpoint]);
        delete body[field];
        steps.push(`-${field}`);
      }
    }
    let bytes = Buffer.from(JSON.stringify(body));
    const byteLevel = Math.floor(random() * 4);
    if (byteLevel === 1) {
      const at = Math.floor(random() * bytes.length);
      bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([forbiddenControl(random)]), bytes.subarray(at)]);
      steps.push(`ctl@${at}`);
    } else if (byteLevel === 2) {
      const at = Math.floor(random() * bytes.length);
      bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(random, BAD_UTF8)[1]), bytes.subarray(at)]);
      steps.push(`utf8@${at}`);
    } else if (byteLevel === 3) {
      const at = 1 + Math.floor(random() * (bytes.length - 1));
      bytes = bytes.subarray(0, at);
      steps.push(`cut@${at}`);
    }
    cases.push(jsonCase('seeded fuzz', `#${n} ${endpoint} ${steps.join(' ')}`, endpoint, bytes));
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------

describe('malformed input: every bad request gets a coded 4xx and never reaches the provider', () => {
  let otherSecret: string;

  before(async () => {
    h = await startHarness();
    agent = new Agent({ connections: CONCURRENCY, pipelining: 1 });
    const other = await h.tenantKey('other');
    otherSecret = other.key.slice('kw_'.length + 17);
  });

  after(async () => {
    await agent?.close();
    await h?.close();
  });

  it('refuses a wrong type, a wrong value or a missing field at every field of every endpoint', async () => {
    const results = await runGroup(wrongTypeCases());
    assert.ok(results.length >= 400, `only ${results.length} wrong-type cases`);
  });

  it('refuses huge strings and arrays within the body limit, and bodies beyond it (declared or chunked)', async () => {
    await runGroup(hugeCases());
  });

  it('refuses deep nesting (10k and 100k levels) without crashing', async () => {
    await runGroup(deepCases());
  });

  it('refuses invalid UTF-8 instead of replacing bytes', async () => {
    await runGroup(utf8Cases());
  });

  it('refuses truncated and not-quite-JSON bodies', async () => {
    await runGroup(truncatedCases(seededRandom(SEED)));
  });

  it('refuses arrays, numbers, null and strings as the body', async () => {
    await runGroup(rootCases());
  });

  it('refuses duplicate keys whose last value is wrong (the last one is what is checked and sent)', async () => {
    await runGroup(duplicateKeyCases());
  });

  it('refuses __proto__, constructor and prototype keys at any depth and is not polluted by them', async () => {
    await runGroup(prototypeCases());
    assert.equal((Object.prototype as Record<string, unknown>)['polluted'], undefined);
    assert.equal((Object.prototype as Record<string, unknown>)['isAdmin'], undefined);
  });

  it('refuses NUL bytes in the body, in header names and values, and in the path', async () => {
    await runGroup(nulCases());
  });

  it('refuses bodies that are not declared as application/json, and undecoded content encodings', async () => {
    await runGroup(contentTypeCases());
  });

  it('answers wrong methods with method_not_allowed or route_not_found', async () => {
    await runGroup(methodCases());
  });

  it('refuses seeded random mutations of valid bodies', async () => {
    await runGroup(fuzzCases(seededRandom(SEED + 1), 250));
  });

  it('gives every malformed or injected credential the same 401 as any wrong key', async () => {
    const creds = badCredentials(seededRandom(SEED + 2), otherSecret);
    const cases: Case[] = [];
    for (const endpoint of [...ENDPOINTS, 'models'] as const) {
      for (const cred of creds) cases.push(credentialCase(endpoint, cred, 'auth_invalid_credentials'));
    }
    const results = await runGroup(cases);
    // identical error objects per dialect (only the Anthropic body's request_id differs)
    for (const dialect of ['openai', 'anthropic'] as const) {
      const errors = results.filter((o) => dialectOf(o.c) === dialect).map((o) => JSON.stringify((o.json as { error: unknown }).error));
      assert.ok(errors.length > 0);
      assert.deepEqual([...new Set(errors)], [errors[0]], `${dialect}: wrong credentials got different error bodies`);
    }
    assert.ok(results.every((o) => o.status === 401));
  });

  it('tells a request with no credential at all that credentials are missing', async () => {
    const cases: Case[] = [];
    for (const endpoint of [...ENDPOINTS, 'models'] as const) {
      cases.push(credentialCase(endpoint, { label: 'no credential' }, 'auth_missing_credentials'));
      cases.push(credentialCase(endpoint, { label: 'empty Authorization', headers: { authorization: '' } }, 'auth_missing_credentials'));
      cases.push(credentialCase(endpoint, { label: 'empty x-api-key', headers: { 'x-api-key': '' } }, 'auth_missing_credentials'));
    }
    await runGroup(cases);
  });

  it('refuses a request carrying two Authorization headers, however each reads', async () => {
    // Node folds a repeated Authorization into its first value; the gateway must see both
    const cases = [...ENDPOINTS, 'models' as const].flatMap((endpoint) => [
      credentialCase(endpoint, { label: 'Authorization twice', headers: { authorization: [`Bearer ${h.key}`, `Bearer ${h.key}`] } }, 'auth_invalid_credentials'),
      credentialCase(endpoint, { label: 'Authorization valid then junk', headers: { authorization: [`Bearer ${h.key}`, 'Bearer junk'] } }, 'auth_invalid_credentials'),
      credentialCase(endpoint, { label: 'Authorization junk then valid', headers: { authorization: ['Bearer junk', `Bearer ${h.key}`] } }, 'auth_invalid_credentials'),
    ]);
    const before = h.mock.received.length;
    const results = await runGroup(cases);
    assert.ok(results.every((o) => o.status === 401));
    assert.equal(h.mock.received.length, before, 'the provider was called');
  });

  it('sent over a thousand bad requests, none of which reached the provider', () => {
    assert.ok(outcomes.length >= 1000, `only ${outcomes.length} cases ran`);
    assert.equal(h.mock.received.length, 0, `the provider was called: ${JSON.stringify(h.mock.received.slice(0, 3).map((r) => r.path))}`);
  });

  it('is still serving afterwards: /healthz answers and valid requests succeed on every endpoint', async () => {
    const received = h.mock.received.length;
    const health = await request(`${h.url}/healthz`, { dispatcher: agent });
    assert.equal(health.statusCode, 200);
    assert.deepEqual(await health.body.json(), { status: 'ok' });
    for (const endpoint of ENDPOINTS) {
      const res = await request(h.url + PATHS[endpoint], {
        method: 'POST', dispatcher: agent,
        headers: { 'content-type': 'application/json', ...authFor(endpoint) },
        body: JSON.stringify(VALID[endpoint]),
      });
      const text = await res.body.text();
      assert.equal(res.statusCode, 200, `${endpoint}: ${text.slice(0, 200)}`);
    }
    const models = await request(`${h.url}/v1/models`, { headers: authFor('models'), dispatcher: agent });
    assert.equal(models.statusCode, 200);
    await models.body.dump();
    assert.equal(h.mock.received.length, received + ENDPOINTS.length);
  });
});
