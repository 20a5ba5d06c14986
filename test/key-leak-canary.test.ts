import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { findSecrets } from '../src/detect/detector.js';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { mapLimit, parseJson } from './helpers/security-http.js';
import { createLeakFinder, type Secret } from './helpers/leak-finder.js';

/*
 * Threat (THREATS.md, "Keys and content leaking"): a provider key, tenant key, admin token or
 * prompt planted with a unique value must never come back out — not in logs, ledger or audit
 * rows, error bodies or any response header — on any path: success, policy refusal, bad input,
 * upstream error, timeout, abort, wrong credentials, admin calls.
 *
 * The suite plants canaries, drives every path, then searches everything it can see with
 * detectors (key-shaped patterns, masked-key shapes and every 12-character window of every
 * canary), not only for the exact strings.
 */

/** Random alphanumerics, so the canaries are unique to this run. */
function rand(n: number): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  let out = '';
  for (const byte of randomBytes(n)) out += alphabet[byte % alphabet.length];
  return out;
}

/** Random alphanumerics with every character class, so a key shape passes the detectors' entropy and mixed-case checks. */
function keyBody(n: number): string {
  return `Aa9${rand(n - 3)}`;
}

// Plainly fake, TEST-ONLY values: they unlock nothing anywhere.
/**
 * The gateway's provider key, shaped like an OpenAI project key (`sk-proj-` + 150, high entropy)
 * so the project's own detectors recognise it; the mock's 401 names it masked.
 */
const PROVIDER_KEY = `sk-proj-FAKE-CANARY-PROVIDER-${keyBody(150)}`;
/**
 * A provider-key-shaped value registered nowhere: a user pastes it into prompts (DLP off for
 * `acme`) and sends it in headers. Only the detectors could catch it if it ever reached a log.
 */
const PASTED_KEY = `sk-proj-FAKE-CANARY-PASTED-${keyBody(150)}`;
const PROMPT_CANARY = `CANARY-PROMPT-${rand(20)}`;
const SYSTEM_CANARY = `CANARY-SYSTEM-${rand(20)}`;
const FIELD_VALUE_CANARY = `CANARY-FIELD-VALUE-${rand(20)}`;
/** Identifier-like: the gateway may echo a field name of this shape to the caller who sent it (SAFE_NAME). */
const FIELD_NAME_CANARY = `CANARY_FIELD_NAME_${rand(10)}_${rand(10)}`; // runs of 10: an ordinary name (a 20-character random run would be hidden as key-like)
/** Not identifier-like (spaces, quotes): must never be echoed at all. */
const ODD_FIELD_NAME_CANARY = `CANARY FIELD "NAME" ${rand(20)}`;
/**
 * A provider-key shape short enough (50) and plain enough (identifier characters) to pass the
 * field-name echo rule: sent as a field name and a tenant name, it must come back as a placeholder.
 */
const KEY_NAME_CANARY = `sk-FAKE-CANARY-NAME-${keyBody(30)}`;
const CREDENTIAL_CANARY = `CANARY-CREDENTIAL-${rand(24)}`;
const QUERY_CANARY = `CANARY-QUERY-${rand(20)}`;

/** The masked form OpenAI (and the mock) use when naming a rejected key: first 7, `****`, last 4. */
const MASKED_PROVIDER_KEY = PROVIDER_KEY.slice(0, 7) + '****' + PROVIDER_KEY.slice(-4);

interface Exchange {
  label: string;
  listener: 'public' | 'admin';
  status: number;
  /** Every response header as `name: value` lines. */
  headerText: string;
  body: string;
  requestId: string | undefined;
  /** Whether the gateway should have logged this request (a matched provider route). */
  logged: boolean;
  /** Secrets this one response may carry (the admin issue response carries the new key). */
  mayCarry: string[];
  /** Set when the client saw a transport error instead of a full answer. */
  transportError?: string;
}

const exchanges: Exchange[] = [];

interface CallOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** Send these exact bytes instead of JSON. */
  rawBody?: string | Uint8Array;
  listener?: 'public' | 'admin';
  logged?: boolean;
  mayCarry?: string[];
}

let h: Harness;

async function call(label: string, path: string, options: CallOptions = {}): Promise<Exchange> {
  const listener = options.listener ?? 'public';
  const base = listener === 'public' ? h.url : h.adminUrl;
  const method = options.method ?? (options.body !== undefined || options.rawBody !== undefined ? 'POST' : 'GET');
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  let body: string | Uint8Array | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const exchange: Exchange = {
    label, listener, status: 0, headerText: '', body: '', requestId: undefined,
    logged: options.logged ?? (listener === 'public'), mayCarry: options.mayCarry ?? [],
  };
  exchanges.push(exchange);
  try {
    const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) });
    exchange.status = res.status;
    exchange.requestId = res.headers.get('x-request-id') ?? undefined;
    const lines: string[] = [];
    res.headers.forEach((value, name) => lines.push(`${name}: ${value}`));
    exchange.headerText = lines.join('\n');
    exchange.body = await res.text();
  } catch (err) {
    exchange.transportError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
  return exchange;
}

/**
 * A client that walks away: sends the request with node:http on its own connection, then
 * destroys the socket `ms` after sending (`whenStreaming`: after the first body bytes arrive).
 * (fetch is not used here: after an abort it may open a spare connection that never sends a
 * request, which then holds the gateway's shutdown for its whole drain timeout.)
 */
function callAndAbort(label: string, path: string, body: unknown, headers: Record<string, string>, ms: number, whenStreaming: boolean): Promise<void> {
  const exchange: Exchange = { label, listener: 'public', status: 0, headerText: '', body: '', requestId: undefined, logged: whenStreaming, mayCarry: [] };
  exchanges.push(exchange);
  const payload = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = httpRequest(h.url + path, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers },
    });
    const timer = whenStreaming ? undefined : setTimeout(() => req.destroy(), ms);
    req.on('response', (res) => {
      exchange.status = res.statusCode ?? 0;
      exchange.requestId = typeof res.headers['x-request-id'] === 'string' ? res.headers['x-request-id'] : undefined;
      exchange.headerText = Object.entries(res.headers).map(([k, v]) => `${k}: ${String(v)}`).join('\n');
      res.once('data', (chunk: Buffer) => {
        exchange.body += chunk.toString('utf8');
        if (whenStreaming) setTimeout(() => req.destroy(), ms);
      });
    });
    req.on('error', (err) => {
      exchange.transportError = err.message;
    });
    req.on('close', () => {
      if (timer) clearTimeout(timer);
      exchange.transportError ??= 'closed';
      resolve();
    });
    req.end(payload);
  });
}

/** The secret part of `kw_<16-char id>_<43-char secret>` (the secret itself may contain `_`). */
function secretOf(key: string): string {
  return key.slice('kw_'.length + 16 + 1);
}

const bearer = () => ({ authorization: `Bearer ${h.key}` });
const anthropicHeaders = () => ({ 'x-api-key': h.key, 'anthropic-version': '2023-06-01' });

function chatBody(extra: Record<string, unknown> = {}, directive = ''): Record<string, unknown> {
  return { model: 'gpt-4o-mini', messages: [{ role: 'system', content: SYSTEM_CANARY }, { role: 'user', content: `hello ${PROMPT_CANARY} my key is ${PASTED_KEY} ${directive}` }], ...extra };
}
function responsesBody(extra: Record<string, unknown> = {}, directive = ''): Record<string, unknown> {
  return { model: 'gpt-4o-mini', instructions: SYSTEM_CANARY, input: `hello ${PROMPT_CANARY} my key is ${PASTED_KEY} ${directive}`, ...extra };
}
function embeddingsBody(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'text-embedding-3-small', input: [`hello ${PROMPT_CANARY} my key is ${PASTED_KEY}`, SYSTEM_CANARY], ...extra };
}
function messagesBody(extra: Record<string, unknown> = {}, directive = ''): Record<string, unknown> {
  return { model: 'claude-3-5-haiku-latest', max_tokens: 64, system: SYSTEM_CANARY, messages: [{ role: 'user', content: `hello ${PROMPT_CANARY} my key is ${PASTED_KEY} ${directive}` }], ...extra };
}

// ---------------------------------------------------------------------------------------------
// Detectors
// ---------------------------------------------------------------------------------------------

const findLeaks = createLeakFinder(MASKED_PROVIDER_KEY);

// ---------------------------------------------------------------------------------------------

describe('key-leak canary: planted keys and prompts never come back out', () => {
  let tenantSecret: string;
  let issued: { key: string; id: string; secret: string } | undefined;
  let revokedKeyId: string | undefined;
  let usageText = '';
  let auditText = '';
  let logText = '';
  let usageRows = 0;
  let metricsText = '';
  let secrets: Secret[] = [];

  before(async () => {
    h = await startHarness({ providerKey: PROVIDER_KEY, timeout: '1s' });
    tenantSecret = secretOf(h.key);
    assert.equal(tenantSecret.length, 43);

    // tenants whose policies make the remaining refusals reachable
    const tiny = await h.tenantKey('tiny', { max_body_bytes: 512, max_messages: 2 });
    const files = await h.tenantKey('files', { files: true, max_attachments: 1, max_attachment_bytes: 16 });
    const dlpMask = await h.tenantKey('dlp-mask', { dlp: { secrets: 'mask' } });
    const dlpBlock = await h.tenantKey('dlp-block', { dlp: { secrets: 'block' } });

    // ---- success, whole and streamed, on every endpoint and both dialects
    const plans: Array<() => Promise<unknown>> = [];
    const add = (fn: () => Promise<unknown>) => plans.push(fn);
    add(() => call('chat whole', '/v1/chat/completions', { headers: bearer(), body: chatBody() }));
    add(() => call('chat stream', '/v1/chat/completions', { headers: bearer(), body: chatBody({ stream: true, stream_options: { include_usage: true } }) }));
    add(() => call('chat via alias', '/v1/chat/completions', { headers: bearer(), body: chatBody({ model: 'fast' }) }));
    add(() => call('chat with x-api-key', '/v1/chat/completions', { headers: { 'x-api-key': h.key }, body: chatBody() }));
    add(() => call('responses whole', '/v1/responses', { headers: bearer(), body: responsesBody() }));
    add(() => call('responses stream', '/v1/responses', { headers: bearer(), body: responsesBody({ stream: true }) }));
    add(() => call('embeddings whole', '/v1/embeddings', { headers: bearer(), body: embeddingsBody() }));
    add(() => call('messages whole', '/v1/messages', { headers: anthropicHeaders(), body: messagesBody() }));
    add(() => call('messages stream', '/v1/messages', { headers: anthropicHeaders(), body: messagesBody({ stream: true }) }));
    add(() => call('messages with bearer', '/v1/messages', { headers: { ...bearer(), 'anthropic-version': '2023-06-01' }, body: messagesBody() }));
    // (GET /v1/models is answered by the gateway itself and writes no request log line)
    add(() => call('models (OpenAI)', '/v1/models', { headers: bearer(), logged: false }));
    add(() => call('models (Anthropic)', '/v1/models', { headers: anthropicHeaders(), logged: false }));
    add(() => call('models with a query canary', `/v1/models?api_key=${QUERY_CANARY}`, { headers: bearer(), logged: false }));

    // ---- a provider-key-shaped value in headers: ones the gateway ignores, and one it forwards
    add(() => call('pasted key in an ignored header', '/v1/chat/completions', { headers: { ...bearer(), 'x-debug-token': PASTED_KEY, 'openai-organization': PASTED_KEY }, body: chatBody() }));
    add(() => call('pasted key as anthropic-version', '/v1/messages', { headers: { 'x-api-key': h.key, 'anthropic-version': PASTED_KEY }, body: messagesBody() }));
    add(() => call('pasted key as the x-api-key', '/v1/messages', { headers: { 'x-api-key': PASTED_KEY, 'anthropic-version': '2023-06-01' }, body: messagesBody() }));
    add(() => call('pasted key in an ignored header, upstream 401', '/v1/chat/completions', { headers: { ...bearer(), 'x-debug-token': PASTED_KEY }, body: chatBody({}, '[[mock:status=401]]') }));

    // ---- prompt DLP on: masked before the provider, or refused
    add(() => call('dlp mask chat', '/v1/chat/completions', { headers: { authorization: `Bearer ${dlpMask.key}` }, body: chatBody() }));
    add(() => call('dlp mask messages stream', '/v1/messages', { headers: { 'x-api-key': dlpMask.key, 'anthropic-version': '2023-06-01' }, body: messagesBody({ stream: true }) }));
    add(() => call('dlp mask chat upstream 401', '/v1/chat/completions', { headers: { authorization: `Bearer ${dlpMask.key}` }, body: chatBody({}, '[[mock:status=401]]') }));
    add(() => call('dlp block responses', '/v1/responses', { headers: { authorization: `Bearer ${dlpBlock.key}` }, body: responsesBody() }));
    add(() => call('dlp block embeddings', '/v1/embeddings', { headers: { authorization: `Bearer ${dlpBlock.key}` }, body: embeddingsBody() }));

    // ---- policy refusals, each with the canaries in the request
    add(() => call('model not allowed', '/v1/chat/completions', { headers: bearer(), body: chatBody({ model: 'gpt-4o' }) }));
    add(() => call('model named by the canary', '/v1/chat/completions', { headers: bearer(), body: chatBody({ model: PROMPT_CANARY }) }));
    add(() => call('messages model not allowed', '/v1/messages', { headers: anthropicHeaders(), body: messagesBody({ model: `claude-${PROMPT_CANARY}` }) }));
    add(() => call('param not allowed', '/v1/chat/completions', { headers: bearer(), body: chatBody({ user: FIELD_VALUE_CANARY }) }));
    add(() => call('tools not allowed', '/v1/chat/completions', {
      headers: bearer(), body: chatBody({ tools: [{ type: 'function', function: { name: 'f', description: FIELD_VALUE_CANARY } }] }),
    }));
    add(() => call('messages tools not allowed', '/v1/messages', {
      headers: anthropicHeaders(), body: messagesBody({ tools: [{ name: 'f', description: FIELD_VALUE_CANARY, input_schema: { type: 'object' } }] }),
    }));
    add(() => call('files not allowed', '/v1/chat/completions', {
      headers: bearer(),
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'text', text: PROMPT_CANARY }, { type: 'image_url', image_url: { url: `https://example.invalid/${FIELD_VALUE_CANARY}` } }] }] },
    }));
    add(() => call('attachment too large', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${files.key}` },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${FIELD_VALUE_CANARY}` } }] }] },
    }));
    add(() => call('too many attachments', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${files.key}` },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }, { type: 'image_url', image_url: { url: PROMPT_CANARY.slice(0, 10) } }, { type: 'text', text: PROMPT_CANARY }] }] },
    }));
    add(() => call('too many messages', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${tiny.key}` },
      body: { model: 'gpt-4o-mini', messages: [1, 2, 3].map(() => ({ role: 'user', content: PROMPT_CANARY })) },
    }));
    add(() => call('body too large', '/v1/chat/completions', {
      headers: { authorization: `Bearer ${tiny.key}` }, body: chatBody({}, PROMPT_CANARY.repeat(40)),
    }));
    add(() => call('too deep', '/v1/chat/completions', {
      headers: bearer(),
      rawBody: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${'['.repeat(100)}"${PROMPT_CANARY}"${']'.repeat(100)}}]}`,
    }));
    add(() => call('wrong type', '/v1/chat/completions', { headers: bearer(), body: chatBody({ temperature: FIELD_VALUE_CANARY }) }));
    add(() => call('wrong role', '/v1/chat/completions', { headers: bearer(), body: { model: 'gpt-4o-mini', messages: [{ role: PROMPT_CANARY, content: PROMPT_CANARY }] } }));
    add(() => call('both caps', '/v1/chat/completions', { headers: bearer(), body: chatBody({ max_tokens: 5, max_completion_tokens: 6 }) }));
    add(() => call('stream on embeddings', '/v1/embeddings', { headers: bearer(), body: embeddingsBody({ stream: true }) }));
    add(() => call('bad JSON', '/v1/chat/completions', { headers: bearer(), rawBody: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${PROMPT_CANARY}` }));
    add(() => call('bad JSON token', '/v1/messages', { headers: anthropicHeaders(), rawBody: `{"model": ${PROMPT_CANARY}}` }));
    add(() => call('invalid UTF-8', '/v1/chat/completions', {
      headers: bearer(),
      rawBody: Buffer.concat([Buffer.from(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${PROMPT_CANARY}`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}]}')]),
    }));
    add(() => call('non-object root', '/v1/responses', { headers: bearer(), body: [PROMPT_CANARY] }));
    add(() => call('unsupported media type', '/v1/chat/completions', { headers: { ...bearer(), 'content-type': 'text/plain' }, rawBody: PROMPT_CANARY }));
    add(() => call('wrong method with query canary', `/v1/chat/completions?key=${QUERY_CANARY}`, { method: 'GET', headers: bearer(), logged: false }));
    add(() => call('unknown route naming the canary', `/v1/${PROMPT_CANARY}`, { headers: bearer(), body: chatBody(), logged: false }));

    // ---- unknown fields: the canary as the value, and as the name
    add(() => call('unknown top-level field (value)', '/v1/chat/completions', { headers: bearer(), body: chatBody({ base_url: `http://${FIELD_VALUE_CANARY}.invalid` }) }));
    add(() => call('unknown field named by the canary', '/v1/chat/completions', {
      headers: bearer(), body: chatBody({ [FIELD_NAME_CANARY]: FIELD_VALUE_CANARY }), mayCarry: [FIELD_NAME_CANARY],
    }));
    add(() => call('unknown nested field named by the canary', '/v1/messages', {
      headers: anthropicHeaders(),
      body: { ...messagesBody(), messages: [{ role: 'user', content: PROMPT_CANARY, [FIELD_NAME_CANARY]: FIELD_VALUE_CANARY }] },
      mayCarry: [FIELD_NAME_CANARY],
    }));
    add(() => call('unknown field with an odd name', '/v1/responses', { headers: bearer(), body: responsesBody({ [ODD_FIELD_NAME_CANARY]: FIELD_VALUE_CANARY }) }));
    add(() => call('unknown nested field with an odd name', '/v1/chat/completions', {
      headers: bearer(), body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x', [ODD_FIELD_NAME_CANARY]: FIELD_VALUE_CANARY }] },
    }));

    // ---- the tenant's own key sent as its x-request-id: replaced, never echoed nor stored in the ledger or the audit chain
    add(() => call('tenant key as the x-request-id', '/v1/chat/completions', { headers: { ...bearer(), 'x-request-id': h.key }, body: chatBody() }));
    add(() => call('sk key as the x-request-id', '/v1/chat/completions', { headers: { ...bearer(), 'x-request-id': KEY_NAME_CANARY }, body: chatBody() }));

    // ---- key-shaped field names (the tenant's own key, a provider-key shape): never echoed, even though they look like identifiers
    const keyNamed = (label: string, path: string, headers: Record<string, string>, body: Record<string, unknown>) =>
      add(() => call(`key-shaped name: ${label}`, path, { headers, body }));
    keyNamed('tenant key as a top-level field (chat)', '/v1/chat/completions', bearer(), chatBody({ [h.key]: 1 }));
    keyNamed('sk key as a top-level field (chat)', '/v1/chat/completions', bearer(), chatBody({ [KEY_NAME_CANARY]: 1 }));
    keyNamed('tenant key as a metadata key (chat)', '/v1/chat/completions', bearer(), chatBody({ metadata: { [h.key]: 1 } }));
    keyNamed('sk key as a metadata key (chat)', '/v1/chat/completions', bearer(), chatBody({ metadata: { [KEY_NAME_CANARY]: 1 } }));
    keyNamed('sk key as a nested field (chat)', '/v1/chat/completions', bearer(), { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT_CANARY, [KEY_NAME_CANARY]: 'x' }] });
    keyNamed('tenant key as a nested field (chat)', '/v1/chat/completions', bearer(), { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT_CANARY, [h.key]: 'x' }] });
    keyNamed('tenant key as a top-level field (responses)', '/v1/responses', bearer(), responsesBody({ [h.key]: 1 }));
    keyNamed('sk key as a top-level field (embeddings)', '/v1/embeddings', bearer(), embeddingsBody({ [KEY_NAME_CANARY]: 1 }));
    keyNamed('tenant key as a top-level field (messages)', '/v1/messages', anthropicHeaders(), messagesBody({ [h.key]: 1 }));
    keyNamed('sk key as a metadata key (messages)', '/v1/messages', anthropicHeaders(), messagesBody({ metadata: { [KEY_NAME_CANARY]: 'x' } }));
    keyNamed('sk key as a nested field (messages)', '/v1/messages', anthropicHeaders(), {
      ...messagesBody(), messages: [{ role: 'user', content: [{ type: 'text', text: PROMPT_CANARY, [KEY_NAME_CANARY]: 1 }] }],
    });

    // ---- upstream errors, whole and streamed, in both dialects
    const faults = ['status=401', 'status=500', 'status=429', 'status=503', 'delay=1500', 'reset', 'malformed', 'truncate', 'redirect'];
    for (const fault of faults) {
      const d = `[[mock:${fault}]]`;
      add(() => call(`chat whole ${fault}`, '/v1/chat/completions', { headers: bearer(), body: chatBody({}, d) }));
      add(() => call(`chat stream ${fault}`, '/v1/chat/completions', { headers: bearer(), body: chatBody({ stream: true }, d) }));
      add(() => call(`responses whole ${fault}`, '/v1/responses', { headers: bearer(), body: responsesBody({}, d) }));
      add(() => call(`messages whole ${fault}`, '/v1/messages', { headers: anthropicHeaders(), body: messagesBody({}, d) }));
      add(() => call(`messages stream ${fault}`, '/v1/messages', { headers: anthropicHeaders(), body: messagesBody({ stream: true }, d) }));
    }
    for (const fault of ['reset-mid-stream', 'stall=1500']) {
      const d = `[[mock:${fault}]]`;
      add(() => call(`chat stream ${fault}`, '/v1/chat/completions', { headers: bearer(), body: chatBody({ stream: true }, d) }));
      add(() => call(`responses stream ${fault}`, '/v1/responses', { headers: bearer(), body: responsesBody({ stream: true }, d) }));
      add(() => call(`messages stream ${fault}`, '/v1/messages', { headers: anthropicHeaders(), body: messagesBody({ stream: true }, d) }));
    }

    // ---- client aborts: before the answer, and in the middle of a stream
    add(() => callAndAbort('abort whole chat', '/v1/chat/completions', chatBody({}, '[[mock:delay=800]]'), bearer(), 150, false));
    add(() => callAndAbort('abort whole messages', '/v1/messages', messagesBody({}, '[[mock:delay=800]]'), anthropicHeaders(), 150, false));
    add(() => callAndAbort('abort mid-stream chat', '/v1/chat/completions', chatBody({ stream: true }, '[[mock:stall=800]]'), bearer(), 50, true));
    add(() => callAndAbort('abort mid-stream responses', '/v1/responses', responsesBody({ stream: true }, '[[mock:stall=800]]'), bearer(), 50, true));
    add(() => callAndAbort('abort mid-stream messages', '/v1/messages', messagesBody({ stream: true }, '[[mock:stall=800]]'), anthropicHeaders(), 50, true));

    // ---- wrong credentials carrying canaries
    const forged = `kw_${'canaryid'.repeat(2)}_${(CREDENTIAL_CANARY + rand(43)).slice(0, 43)}`;
    const nearMiss = h.key.slice(0, -1) + (h.key.endsWith('A') ? 'B' : 'A');
    const wrongCredentials: Array<[string, Record<string, string>]> = [
      ['bearer canary', { authorization: `Bearer ${CREDENTIAL_CANARY}` }],
      ['x-api-key canary', { 'x-api-key': CREDENTIAL_CANARY }],
      ['tenant-key-shaped canary', { authorization: `Bearer ${forged}` }],
      ['near-miss of the real tenant key', { authorization: `Bearer ${nearMiss}` }],
      ['the provider key as a tenant credential', { authorization: `Bearer ${PROVIDER_KEY}` }],
      ['the admin token as a tenant credential', { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` }],
      ['basic auth canary', { authorization: `Basic ${Buffer.from(`user:${CREDENTIAL_CANARY}`).toString('base64')}` }],
      ['injection canary', { authorization: `Bearer ' OR '1'='1' -- ${CREDENTIAL_CANARY}` }],
    ];
    for (const [name, headers] of wrongCredentials) {
      add(() => call(`wrong credential (${name}) chat`, '/v1/chat/completions', { headers, body: chatBody() }));
      add(() => call(`wrong credential (${name}) messages`, '/v1/messages', { headers: { ...headers, 'anthropic-version': '2023-06-01' }, body: messagesBody() }));
      add(() => call(`wrong credential (${name}) models`, '/v1/models', { headers, logged: false }));
    }
    add(() => call('no credential', '/v1/chat/completions', { body: chatBody() }));

    // ---- the admin token and tenant/provider keys sent where they do not belong
    add(() => call('admin route on the public port with the admin token', '/admin/tenants', { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` }, logged: false }));
    add(() => call('admin wrong token canary', '/admin/tenants', { listener: 'admin', headers: { authorization: `Bearer ${CREDENTIAL_CANARY}` } }));
    add(() => call('admin with a tenant key', '/admin/keys', { listener: 'admin', headers: bearer() }));
    add(() => call('admin with the provider key', '/admin/keys', { listener: 'admin', headers: { authorization: `Bearer ${PROVIDER_KEY}` } }));

    await mapLimit(plans, 16, (fn) => fn());

    // ---- admin API: issue (the one response that carries the new key), list, use, revoke
    const adminAuth = { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` };
    const issueResponse = await fetch(`${h.adminUrl}/admin/tenants/acme/keys`, {
      method: 'POST', headers: { ...adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ label: 'canary' }),
    });
    assert.equal(issueResponse.status, 201);
    const issuedBody = (await issueResponse.json()) as { key: string; id: string };
    issued = { key: issuedBody.key, id: issuedBody.id, secret: secretOf(issuedBody.key) };
    await call('admin list tenants', '/admin/tenants', { listener: 'admin', headers: adminAuth });
    await call('admin list keys', '/admin/keys', { listener: 'admin', headers: adminAuth });
    await call('admin list acme keys', '/admin/keys?tenant=acme', { listener: 'admin', headers: adminAuth });
    await call('issued key used', '/v1/chat/completions', { headers: { authorization: `Bearer ${issued.key}` }, body: chatBody() });
    const revoke = await call('admin revoke', `/admin/keys/${issued.id}/revoke`, { listener: 'admin', method: 'POST', headers: adminAuth });
    assert.equal(revoke.status, 200);
    revokedKeyId = issued.id;
    const revokedUse = await call('revoked key used', '/v1/chat/completions', { headers: { authorization: `Bearer ${issued.key}` }, body: chatBody() });
    assert.equal(revokedUse.status, 401);
    await call('admin list keys after revoke', '/admin/keys', { listener: 'admin', headers: adminAuth });

    // ---- key-shaped tenant names in admin URLs: not found, named back only as a placeholder
    const scopedIssue = await fetch(`${h.adminUrl}/admin/tokens`, {
      method: 'POST', headers: { ...adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ owner: 'canary-scoped', role: 'viewer', tenants: ['acme'] }),
    });
    assert.equal(scopedIssue.status, 201);
    const scopedAuth = { authorization: `Bearer ${((await scopedIssue.json()) as { token: string }).token}` };
    for (const [what, name] of [['tenant key', h.key], ['sk key', KEY_NAME_CANARY]] as const) {
      const enc = encodeURIComponent(name);
      for (const [who, headers] of [['unscoped', adminAuth], ['scoped', scopedAuth]] as const) {
        await call(`admin key-shaped name: ${what} as a tenant in the path (${who})`, `/admin/tenants/${enc}`, { listener: 'admin', headers });
        await call(`admin key-shaped name: ${what} as ?tenant= of /admin/keys (${who})`, `/admin/keys?tenant=${enc}`, { listener: 'admin', headers });
        await call(`admin key-shaped name: ${what} as ?tenant= of /admin/usage (${who})`, `/admin/usage?tenant=${enc}`, { listener: 'admin', headers });
        await call(`admin key-shaped name: ${what} as ?tenant= of /admin/audit (${who})`, `/admin/audit?tenant=${enc}`, { listener: 'admin', headers });
        await call(`admin key-shaped echo: ${what} as a repeated query parameter name (${who})`, `/admin/tenants?${enc}=1&${enc}=2`, { listener: 'admin', headers });
      }
      await call(`admin key-shaped echo: ${what} as a tenant of a scoped token`, '/admin/tokens', {
        listener: 'admin', method: 'POST', headers: { ...adminAuth, 'content-type': 'application/json' }, body: { owner: 'canary-x', role: 'viewer', tenants: [name] },
      });
      await call(`admin key-shaped echo: ${what} as the tenant to contain`, '/admin/incidents/contain', {
        listener: 'admin', method: 'POST', headers: { ...adminAuth, 'content-type': 'application/json' }, body: { tenant: name, reason: 'canary' },
      });
      for (const [route, body] of [
        ['/admin/tenants/acme/limits', { limits: { [name]: 1 } }],
        ['/admin/tenants/acme/policy', { policy: { [name]: 1 } }],
        ['/admin/tenants/acme/policy', { policy: { capabilities: { [name]: 'x' } } }],
      ] as const) {
        await call(`admin key-shaped echo: ${what} as a field of PUT ${route}`, route, {
          listener: 'admin', method: 'PUT', headers: { ...adminAuth, 'content-type': 'application/json' }, body,
        });
      }
      await call(`admin key-shaped echo: ${what} as a provider to rotate`, `/admin/provider-keys/rotate`, {
        listener: 'admin', method: 'POST', headers: { ...adminAuth, 'content-type': 'application/json' }, body: { provider: name },
      });
    }

    // let aborted and stalled requests finish and be recorded, then read everything back
    await new Promise((resolve) => setTimeout(resolve, 1200));
    await h.gateway.writer.flush();
    const usage = await h.gateway.store.records.listUsage({ limit: 10_000 });
    const audit = await h.gateway.store.records.listAudit({ limit: 10_000 });
    usageRows = usage.length;
    usageText = JSON.stringify(usage);
    auditText = JSON.stringify(audit);
    logText = h.logs.text();
    const metricsResponse = await fetch(`${h.adminUrl}/metrics`, { headers: adminAuth });
    assert.equal(metricsResponse.status, 200);
    metricsText = await metricsResponse.text();

    secrets = [
      { name: 'provider key', value: PROVIDER_KEY },
      { name: 'provider-key-shaped prompt and header canary', value: PASTED_KEY },
      { name: 'tenant key secret', value: tenantSecret },
      { name: 'issued key secret', value: issued.secret },
      { name: 'admin token', value: FAKE_ADMIN_TOKEN },
      { name: 'prompt canary', value: PROMPT_CANARY },
      { name: 'system canary', value: SYSTEM_CANARY },
      { name: 'field value canary', value: FIELD_VALUE_CANARY },
      { name: 'field name canary', value: FIELD_NAME_CANARY },
      { name: 'odd field name canary', value: ODD_FIELD_NAME_CANARY },
      { name: 'credential canary', value: CREDENTIAL_CANARY },
      { name: 'key-shaped field name canary', value: KEY_NAME_CANARY },
      { name: 'query canary', value: QUERY_CANARY },
    ];
  });

  after(async () => {
    await h?.close();
  });

  it('drove every path and got an answer on each (the searches below are not vacuous)', () => {
    assert.ok(exchanges.length >= 100, `only ${exchanges.length} exchanges`);
    const byLabel = new Map(exchanges.map((e) => [e.label, e]));
    const status = (label: string) => byLabel.get(label)?.status;
    assert.equal(status('chat whole'), 200);
    assert.equal(status('chat stream'), 200);
    assert.equal(status('responses stream'), 200);
    assert.equal(status('embeddings whole'), 200);
    assert.equal(status('messages whole'), 200);
    assert.equal(status('messages stream'), 200);
    assert.equal(status('models (Anthropic)'), 200);
    assert.equal(status('model not allowed'), 403);
    assert.equal(status('body too large'), 413);
    assert.equal(status('unknown field named by the canary'), 400);
    assert.equal(status('chat whole status=401'), 502);
    assert.equal(status('chat whole status=429'), 429);
    assert.equal(status('chat whole delay=1500'), 504);
    assert.equal(status('wrong credential (bearer canary) chat'), 401);
    assert.equal(status('admin wrong token canary'), 401);
    assert.equal(byLabel.get('abort whole chat')?.status, 0, 'the client left before any answer');
    assert.equal(byLabel.get('abort mid-stream chat')?.status, 200, 'the client left in the middle of a stream');
    // mid-stream faults reach the client as an error event inside a 200 stream
    assert.match(byLabel.get('chat stream reset-mid-stream')?.body ?? '', /event: error/);
    // the mock really did name the masked key in its 401 body, so there was something to leak
    assert.ok(h.mock.received.some((r) => JSON.stringify(r.body).includes('[[mock:status=401]]')));
    // the provider-key-shaped canary really reached the provider (DLP off) and really is a detectable key
    assert.ok(h.mock.received.some((r) => JSON.stringify(r.body ?? null).includes(PASTED_KEY)), 'DLP off: the pasted key was forwarded');
    assert.deepEqual(findSecrets(`k=${PASTED_KEY}`).map((f) => f.ruleId), ['openai-project-key']);
    assert.deepEqual(findSecrets(`k=${PROVIDER_KEY}`).map((f) => f.ruleId), ['openai-project-key']);
    assert.equal(status('pasted key in an ignored header'), 200);
    assert.equal(status('pasted key as the x-api-key'), 401);
    assert.equal(status('dlp mask chat'), 200);
    assert.equal(status('dlp mask chat upstream 401'), 502);
    assert.equal(status('dlp block responses'), 400);
    assert.equal(status('dlp block embeddings'), 400);
  });

  it('refuses a key-shaped field or tenant name and names it back only as a placeholder', () => {
    const keyNamed = exchanges.filter((e) => e.label.startsWith('key-shaped name: '));
    const adminNamed = exchanges.filter((e) => e.label.startsWith('admin key-shaped name: '));
    assert.equal(keyNamed.length, 11);
    assert.equal(adminNamed.length, 16);
    for (const e of keyNamed) {
      assert.equal(e.status, 400, `${e.label}: ${e.body}`);
      const json = parseJson(e.body) as { error?: { message?: unknown; param?: unknown; code?: unknown } } | undefined;
      assert.match(String(json?.error?.code), /^request_(unknown_field|invalid)$/, e.label);
      assert.match(String(json?.error?.message), /\(field\)/, `${e.label}: the name is shown as a placeholder`);
      if (json?.error?.param !== undefined) assert.match(String(json.error.param), /\(field\)$/, e.label);
    }
    for (const e of adminNamed) {
      assert.equal(e.status, 404, `${e.label}: ${e.body}`);
      assert.match(e.body, /admin_not_found/, e.label);
      assert.match(e.body, /no tenant named \\"\(name\)\\"/, `${e.label}: the name is shown as a placeholder`);
    }
    // other admin answers that name what they were given: refused, with a placeholder in its place
    const adminEchoed = exchanges.filter((e) => e.label.startsWith('admin key-shaped echo: '));
    assert.equal(adminEchoed.length, 16);
    for (const e of adminEchoed) {
      assert.ok(e.status >= 400 && e.status < 500, `${e.label}: ${e.status} ${e.body}`);
      assert.match(e.body, /\((name|parameter|field|model)\)/, `${e.label}: the name is shown as a placeholder: ${e.body}`);
    }
  });

  it('never puts a key, token or canary into any log line', () => {
    const leaks = h.logs.lines.flatMap((line, i) => findLeaks(`log line ${i}`, line, secrets));
    assert.deepEqual(leaks, [], `log lines leak:\n${leaks.join('\n')}`);
  });

  it('masks the pasted key before the provider for a tenant with prompt DLP on, and audits only its fingerprint', () => {
    const masked = h.mock.received.filter((r) => JSON.stringify(r.body ?? null).includes('[REDACTED:openai-project-key]'));
    assert.ok(masked.length >= 3, `only ${masked.length} masked upstream requests`);
    assert.ok(masked.every((r) => !JSON.stringify(r.body).includes(PASTED_KEY)));
    assert.match(auditText, /dlp\.mask/);
    assert.match(auditText, /dlp\.block/);
  });

  it('never puts a key, token or canary into the metrics', () => {
    assert.ok(metricsText.includes('keywarden_'), 'the metrics page is not empty');
    const leaks = findLeaks('metrics', metricsText, secrets);
    assert.deepEqual(leaks, [], leaks.join('\n'));
  });

  it('never puts a key, token or canary into a usage-ledger row', () => {
    assert.ok(usageRows > 50, `only ${usageRows} usage rows`);
    const leaks = findLeaks('usage ledger', usageText, secrets);
    assert.deepEqual(leaks, [], leaks.join('\n'));
  });

  it('never puts a key, token or canary into an audit row, and key operations name only key ids', () => {
    const leaks = findLeaks('audit log', auditText, secrets);
    assert.deepEqual(leaks, [], leaks.join('\n'));
    assert.ok(revokedKeyId !== undefined && auditText.includes(revokedKeyId), 'the audit chain names the issued/revoked key id');
    assert.match(auditText, /key\.issue/);
    assert.match(auditText, /key\.revoke/);
  });

  it('never returns a key, token or canary in a response body or header', () => {
    const leaks: string[] = [];
    for (const e of exchanges) {
      // the one identifier-like field name the caller sent may be named back to that caller (as the error's param)
      const own = secrets.filter((s) => !e.mayCarry.includes(s.value));
      leaks.push(...findLeaks(`${e.label} [headers]`, e.headerText, secrets));
      leaks.push(...findLeaks(`${e.label} [body]`, e.body, own));
      if (e.mayCarry.length > 0) {
        const json = parseJson(e.body) as { error?: { message?: unknown; code?: unknown } } | undefined;
        assert.equal(json?.error?.code, 'request_unknown_field', e.label);
        assert.match(String(json?.error?.message), new RegExp(`^unknown field "([A-Za-z0-9_\\[\\]]+\\.)?${FIELD_NAME_CANARY}"$`),
          `${e.label}: the name comes back only as the path of the refused field`);
        const scrubbed = e.body.split(FIELD_NAME_CANARY).join('');
        leaks.push(...findLeaks(`${e.label} [body, beyond the echoed field name]`, scrubbed, secrets));
      }
    }
    assert.deepEqual(leaks, [], `responses leak:\n${leaks.join('\n')}`);
  });

  it('shows the issued tenant key only in the issue response and never its secret afterwards', () => {
    assert.ok(issued);
    const carriers = exchanges.filter((e) => e.body.includes(issued!.secret) || e.headerText.includes(issued!.secret));
    assert.deepEqual(carriers.map((e) => e.label), []);
    const list = exchanges.find((e) => e.label === 'admin list keys');
    assert.ok(list && list.body.includes(issued.id), 'the key list names the key by id');
  });

  it('logs every request it answered on a provider route, by request id and key id (the logs are not empty)', () => {
    const expected = exchanges.filter((e) => e.logged && e.requestId !== undefined && e.status !== 0);
    assert.ok(expected.length >= 100, `only ${expected.length} logged exchanges`);
    const missing = expected.filter((e) => !logText.includes(e.requestId as string)).map((e) => `${e.label} (${e.requestId})`);
    assert.deepEqual(missing, [], 'request ids missing from the logs');
    assert.ok(logText.includes(h.keyId), 'the acme key id is logged');
    assert.ok(issued && logText.includes(issued.id), 'the issued key id is logged');
    assert.ok(usageText.includes(h.keyId), 'usage rows carry the key id');
    // refused and failed requests are logged with their code, not their content
    assert.match(logText, /"code":"upstream_auth_failed"/);
    assert.match(logText, /"code":"auth_invalid_credentials"/);
    assert.match(logText, /"code":"request_unknown_field"/);
    assert.match(logText, /"outcome":"client_aborted"/);
  });

  it('keeps the redactor as a second net only: no log line needed a key scrubbed out', () => {
    const scrubbed = h.logs.lines.filter((line) => line.includes('[REDACTED'));
    assert.deepEqual(scrubbed, [], 'a secret reached the logger and had to be redacted');
  });
});

describe('log scrubbing: the detectors are the last net for a key that reaches the logger', () => {
  it('masks every detector fixture key in an error message, an upstream body and a header value, and keeps the line valid JSON', async () => {
    const { createLogger } = await import('../src/log/logger.js');
    const { LogCapture } = await import('./helpers/harness.js');
    const { FAKE } = await import('./fixtures/detect/fixtures.js');
    const capture = new LogCapture();
    const logger = createLogger({ level: 'info', destination: capture });
    // FAKE, TEST ONLY keys (test/fixtures/detect); none of them is registered with the redactor
    const keys = [PASTED_KEY, FAKE.githubPat, FAKE.anthropic, FAKE.google, FAKE.slackBot, FAKE.stripeLive, FAKE.jwt, FAKE.huggingface, FAKE.tenantKey];
    for (const key of keys) {
      logger.error({ err: new Error(`upstream said: invalid key ${key}`) }, 'an error that names a key');
      logger.warn({ upstreamBody: `{"error":{"message":"Incorrect API key provided: ${key}"}}` }, 'an upstream error body');
      logger.info({ headers: { 'x-debug-token': key } }, `a header\n${key}`);
    }
    logger.flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(capture.lines.length, keys.length * 3);
    const leaks: string[] = [];
    capture.lines.forEach((line, i) => {
      assert.doesNotThrow(() => JSON.parse(line), `line ${i} is still JSON`);
      for (const key of keys) if (line.includes(key.slice(0, 20)) || line.includes(key.slice(-16))) leaks.push(`line ${i}: ${key.slice(0, 8)}…`);
      for (const f of findSecrets(line)) leaks.push(`line ${i}: detector ${f.ruleId}`);
    });
    assert.deepEqual(leaks, []);
    // the detector pass names the rule it masked (the key-shape pattern alone would say [REDACTED])
    assert.ok(capture.lines.some((line) => line.includes('[REDACTED:github-pat]')));
  });
});
