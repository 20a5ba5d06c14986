/**
 * Broken object-level authorisation across tenants (OWASP API1): every tenant calls the provider
 * with the operator's one key, so the provider keeps all their stored Responses answers under one
 * account. A tenant that learns another's `resp_…` id must not continue (and so read) that
 * conversation through `previous_response_id`, replay its output items by id, or run code in (and
 * read the files of) its code interpreter container. The gateway binds each relayed response id,
 * output item id, container id and cited file id to its tenant (src/services/response-owners.ts)
 * and refuses every other use with one answer.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, postJson, CONTRACT_POLICY, LogCapture, type Harness } from './helpers/harness.js';
import { parseSse, postRaw, usageRow, newRequestId } from './helpers/upstream-ledger.js';
import { createGateway, type Gateway } from '../src/main.js';
import { createResponseOwners, responseHash } from '../src/services/response-owners.js';
import { createOpenAiAdapter, MAX_OUTPUT_ITEM_IDS } from '../src/providers/openai/adapter.js';
import { GatewayError } from '../src/errors/index.js';
import { createLogger } from '../src/log/logger.js';
import { validateConfig } from '../src/config/validate.js';
import type { NormalisedRequest } from '../src/providers/types.js';
import type { ResponseOwnerRecord, ResponseOwnerRepository } from '../src/store/types.js';

const PARAMS = [...CONTRACT_POLICY.params, 'previous_response_id', 'store'];
const FIRST = { model: 'gpt-4o-mini', input: 'hello', max_output_tokens: 16 };

function chain(id: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'gpt-4o-mini', input: 'and then?', max_output_tokens: 16, previous_response_id: id, ...extra };
}

/** The `id` of the response a stream announced in its `response.created` event. */
function createdId(text: string): string {
  const created = parseSse(text).find((e) => e.event === 'response.created');
  assert.ok(created, 'the stream has a response.created event');
  const id = (JSON.parse(created.data) as { response: { id: string } }).response.id;
  assert.match(id, /^resp_/);
  return id;
}

/** How many requests with `previous_response_id` the mock provider received. */
function chainsReceived(h: Harness): number {
  return h.mock.received.filter((r) => r.path === '/v1/responses' && typeof (r.body as Record<string, unknown> | undefined)?.['previous_response_id'] === 'string').length;
}

describe('response ids are bound to the tenant they were relayed to', () => {
  let h: Harness;
  let beta: string;
  let acmeSecondKey: string;
  let acmeWhole: string;
  let acmeStreamed: string;

  before(async () => {
    h = await startHarness({ policy: { params: PARAMS } });
    beta = (await h.tenantKey('beta')).key;
    acmeSecondKey = (await h.tenantKey('acme')).key;
    const whole = await postJson(`${h.url}/v1/responses`, h.key, FIRST);
    assert.equal(whole.status, 200, whole.text);
    acmeWhole = whole.json['id'] as string;
    assert.match(acmeWhole, /^resp_/);
    const streamed = await postRaw(`${h.url}/v1/responses`, h.key, { ...FIRST, stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    acmeStreamed = createdId(streamed.text);
    assert.notEqual(acmeStreamed, acmeWhole);
  });

  after(async () => {
    await h?.close();
  });

  it('lets a tenant chain at once on the id of its own whole answer', async () => {
    const res = await postJson(`${h.url}/v1/responses`, h.key, chain(acmeWhole));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json['object'], 'response');
    // passed on unchanged to the provider
    const sent = h.mock.received.at(-1)?.body as Record<string, unknown>;
    assert.equal(sent['previous_response_id'], acmeWhole);
  });

  it('lets a tenant chain on the id of its own streamed answer, streamed and whole', async () => {
    const streamed = await postRaw(`${h.url}/v1/responses`, h.key, chain(acmeStreamed, { stream: true }));
    assert.equal(streamed.status, 200, streamed.text);
    assert.ok(parseSse(streamed.text).some((e) => e.event === 'response.completed'), 'the chained stream completes');
    const next = createdId(streamed.text);
    // and the chained stream's own id is bound in turn
    const whole = await postJson(`${h.url}/v1/responses`, h.key, chain(next));
    assert.equal(whole.status, 200, whole.text);
  });

  it('lets another key of the same tenant chain (ownership is the tenant\'s, not the key\'s)', async () => {
    const res = await postJson(`${h.url}/v1/responses`, acmeSecondKey, chain(acmeWhole));
    assert.equal(res.status, 200, res.text);
  });

  it('refuses another tenant\'s response id with request_object_not_owned, without calling the provider', async () => {
    const before = chainsReceived(h);
    for (const id of [acmeWhole, acmeStreamed]) {
      const whole = await postJson(`${h.url}/v1/responses`, beta, chain(id));
      assert.equal(whole.status, 400, whole.text);
      assert.equal(whole.json['error']['code'], 'request_object_not_owned');
      assert.equal(whole.json['error']['param'], 'previous_response_id');
      assert.equal(whole.json['error']['type'], 'invalid_request_error');
      assert.ok(!whole.text.includes(id), 'the id is not echoed');
      const streamed = await postRaw(`${h.url}/v1/responses`, beta, chain(id, { stream: true }));
      assert.equal(streamed.status, 400, streamed.text);
      assert.equal((JSON.parse(streamed.text) as { error: { code: string } }).error.code, 'request_object_not_owned');
    }
    assert.equal(chainsReceived(h), before, 'no refused chain reached the provider');
  });

  it('answers an unknown id, an empty one and a foreign one identically', async () => {
    const foreign = await postJson(`${h.url}/v1/responses`, beta, chain(acmeWhole));
    const unknown = await postJson(`${h.url}/v1/responses`, beta, chain('resp_doesnotexist0000000000000000'));
    const empty = await postJson(`${h.url}/v1/responses`, beta, chain(''));
    for (const other of [unknown, empty]) {
      assert.equal(other.status, foreign.status);
      assert.deepEqual(other.json, foreign.json);
      assert.equal(other.headers.get('content-length'), foreign.headers.get('content-length'));
    }
    // the owner gets the same answer for an id nobody was given
    const own = await postJson(`${h.url}/v1/responses`, h.key, chain('resp_doesnotexist0000000000000000'));
    assert.deepEqual(own.json, foreign.json);
  });

  it('records the refusal like any other, with no tokens', async () => {
    const requestId = newRequestId('bola');
    const res = await postJson(`${h.url}/v1/responses`, beta, chain(acmeWhole), { 'x-request-id': requestId });
    assert.equal(res.status, 400);
    const row = await usageRow(h, requestId);
    assert.equal(row.errorCode, 'request_object_not_owned');
    assert.equal(row.outcome, 'refused');
    assert.equal(row.inputTokens + row.outputTokens, 0);
  });

  it('still refuses previous_response_id for a tenant whose policy does not allow it', async () => {
    const { key } = await h.tenantKey('gamma', { ...CONTRACT_POLICY });
    const res = await postJson(`${h.url}/v1/responses`, key, chain(acmeWhole));
    assert.equal(res.status, 400);
    assert.equal(res.json['error']['code'], 'policy_param_not_allowed');
  });

  it('refuses provider file, vector store and container ids unless the policy allows their capability', async () => {
    const received = h.mock.received.length;
    const refused: Array<[Record<string, unknown>, string]> = [
      [{ input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-OTHERTENANT' }] }] }, 'policy_files_not_allowed'],
      [{ input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-OTHERTENANT' }] }] }, 'policy_files_not_allowed'],
      [{ tools: [{ type: 'file_search', vector_store_ids: ['vs_OTHERTENANT'] }] }, 'policy_tools_not_allowed'],
      [{ tools: [{ type: 'code_interpreter', container: 'cntr_OTHERTENANT' }] }, 'policy_tools_not_allowed'],
    ];
    for (const [fields, code] of refused) {
      const res = await postJson(`${h.url}/v1/responses`, beta, { model: 'gpt-4o-mini', input: 'x', ...fields });
      assert.equal(res.json['error']?.['code'], code, res.text);
    }
    // with tools allowed but no capabilities list, built-in tools still need a capability
    const { key } = await h.tenantKey('delta', { ...CONTRACT_POLICY, tools: true });
    for (const tool of [{ type: 'file_search', vector_store_ids: ['vs_OTHERTENANT'] }, { type: 'code_interpreter', container: 'cntr_OTHERTENANT' }]) {
      const res = await postJson(`${h.url}/v1/responses`, key, { model: 'gpt-4o-mini', input: 'x', tools: [tool] });
      assert.equal(res.json['error']?.['code'], 'policy_capability_not_allowed', res.text);
    }
    assert.equal(h.mock.received.length, received, 'none reached the provider');
  });

  it('leaves requests that chain on nothing alone (null previous_response_id, other endpoints)', async () => {
    const res = await postJson(`${h.url}/v1/responses`, beta, chain(null));
    assert.equal(res.status, 200, res.text);
    const chat = await postJson(`${h.url}/v1/chat/completions`, beta, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 200, chat.text);
  });

  it('honours an id on another replica on the same store right after it was relayed', async () => {
    const replica = await createGateway(h.config, { logDestination: new LogCapture(), flushIntervalMs: 20 });
    try {
      const { publicUrl } = await replica.listen();
      const first = await postJson(`${h.url}/v1/responses`, h.key, FIRST);
      assert.equal(first.status, 200);
      const id = first.json['id'] as string;
      // sent at once: the other replica has only the store, where the write may still be landing
      const chained = await postJson(`${publicUrl}/v1/responses`, h.key, chain(id));
      assert.equal(chained.status, 200, chained.text);
      const foreign = await postJson(`${publicUrl}/v1/responses`, beta, chain(id));
      assert.equal(foreign.json['error']['code'], 'request_object_not_owned');
    } finally {
      await replica.close();
    }
  });

  it('still honours the tenant\'s ids after a restart on the same store, and still refuses others', async () => {
    await h.gateway.close();
    let restarted: Gateway | undefined;
    try {
      restarted = await createGateway(h.config, { logDestination: new LogCapture(), flushIntervalMs: 20 });
      const { publicUrl } = await restarted.listen();
      for (const id of [acmeWhole, acmeStreamed]) {
        const own = await postJson(`${publicUrl}/v1/responses`, h.key, chain(id));
        assert.equal(own.status, 200, own.text);
        const foreign = await postJson(`${publicUrl}/v1/responses`, beta, chain(id));
        assert.equal(foreign.status, 400);
        assert.equal(foreign.json['error']['code'], 'request_object_not_owned');
      }
    } finally {
      await restarted?.close();
    }
  });
});

describe('output item ids are bound to the tenant they were relayed to', () => {
  // reasoning and a forced function call make the mock answer with `rs_…` and `fc_…` items, as OpenAI does
  const ITEM_PARAMS = [...PARAMS, 'reasoning'];
  const REASON = { reasoning: { effort: 'low' } };
  const CALL = { ...REASON, tools: [{ type: 'function', name: 'lookup', parameters: { type: 'object', properties: {} } }], tool_choice: 'required' };
  let h: Harness;
  let beta: string;
  /** Item ids of acme's answers: whole, and streamed. */
  let whole: Ids;
  let streamed: Ids;
  let betaMsg: string;

  interface Ids { rs: string; fc: string; msg: string }

  /** The ids of a whole answer's output items, by type. */
  function idsOf(json: Record<string, any>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const item of json['output'] as Array<{ id: string; type: string }>) out[item.type] = item.id;
    return out;
  }

  /** The ids a stream announced in its output_item.added events, by type. */
  function streamedIdsOf(text: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of parseSse(text)) {
      if (e.event !== 'response.output_item.added') continue;
      const item = (JSON.parse(e.data) as { item: { id: string; type: string } }).item;
      out[item.type] = item.id;
    }
    return out;
  }

  /** Replays earlier output items by id, as an SDK replays `response.output` (a user turn first). */
  function replay(ids: Partial<Ids>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const input: Array<Record<string, unknown>> = [{ role: 'user', content: 'look it up' }];
    if (ids.rs !== undefined) input.push({ type: 'reasoning', id: ids.rs, summary: [] });
    if (ids.fc !== undefined) {
      input.push({ type: 'function_call', id: ids.fc, call_id: 'call_x', name: 'lookup', arguments: '{}', status: 'completed' });
      input.push({ type: 'function_call_output', call_id: 'call_x', output: 'found' });
    }
    if (ids.msg !== undefined) input.push({ type: 'message', role: 'assistant', id: ids.msg, status: 'completed', content: [{ type: 'output_text', text: 'earlier', annotations: [] }] });
    return { model: 'gpt-4o-mini', max_output_tokens: 16, input, ...extra };
  }

  /** Both answers acme gets: one with reasoning and a function call, one with reasoning and a message. */
  async function acmeIds(stream: boolean): Promise<Ids> {
    const read = async (extra: Record<string, unknown>) => {
      const body = { ...FIRST, ...extra, ...(stream ? { stream: true } : {}) };
      const res = await postRaw(`${h.url}/v1/responses`, h.key, body);
      assert.equal(res.status, 200, res.text);
      return stream ? streamedIdsOf(res.text) : idsOf(JSON.parse(res.text) as Record<string, any>);
    };
    const called = await read(CALL);
    const answered = await read(REASON);
    const ids = { rs: called['reasoning'] as string, fc: called['function_call'] as string, msg: answered['message'] as string };
    assert.match(ids.rs, /^rs_/);
    assert.match(ids.fc, /^fc_/);
    assert.match(ids.msg, /^msg_/);
    return ids;
  }

  /** Sends a request that must be refused as not owned, whole and streamed, and returns the whole answer. */
  async function refused(key: string, body: Record<string, unknown>, param: string, ids: readonly string[]) {
    const res = await postJson(`${h.url}/v1/responses`, key, body);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json['error']['code'], 'request_object_not_owned');
    assert.equal(res.json['error']['type'], 'invalid_request_error');
    assert.equal(res.json['error']['param'], param);
    for (const id of ids) assert.ok(!res.text.includes(id), 'the id is not echoed');
    const s = await postRaw(`${h.url}/v1/responses`, key, { ...body, stream: true });
    assert.equal(s.status, 400, s.text);
    const error = (JSON.parse(s.text) as { error: { code: string; param: string } }).error;
    assert.equal(error.code, 'request_object_not_owned');
    assert.equal(error.param, param);
    return res;
  }

  before(async () => {
    h = await startHarness({ policy: { params: ITEM_PARAMS, tools: true } });
    beta = (await h.tenantKey('beta')).key;
    whole = await acmeIds(false);
    streamed = await acmeIds(true);
    assert.notEqual(streamed.rs, whole.rs);
    const b = await postJson(`${h.url}/v1/responses`, beta, FIRST);
    assert.equal(b.status, 200, b.text);
    betaMsg = idsOf(b.json)['message'] as string;
  });

  after(async () => {
    await h?.close();
  });

  it('lets a tenant replay its own reasoning, function-call and message items by id, passed on unchanged', async () => {
    for (const ids of [whole, streamed]) {
      const res = await postJson(`${h.url}/v1/responses`, h.key, replay(ids));
      assert.equal(res.status, 200, res.text);
      const sent = h.mock.received.at(-1)?.body as { input: Array<{ id?: string }> };
      assert.deepEqual(sent.input.map((i) => i.id).filter((id) => id !== undefined), [ids.rs, ids.fc, ids.msg]);
    }
  });

  it('lets a tenant replay its own items in a streamed request, with its previous_response_id', async () => {
    for (const ids of [whole, streamed]) {
      const res = await postRaw(`${h.url}/v1/responses`, h.key, replay(ids, { stream: true }));
      assert.equal(res.status, 200, res.text);
      assert.ok(parseSse(res.text).some((e) => e.event === 'response.completed'), 'the stream completes');
    }
    // the response id and the item ids of one answer, in one request
    const first = await postJson(`${h.url}/v1/responses`, h.key, { ...FIRST, ...CALL });
    const ids = idsOf(first.json);
    const res = await postJson(`${h.url}/v1/responses`, h.key, replay({ rs: ids['reasoning'] as string, fc: ids['function_call'] as string }, { previous_response_id: first.json['id'] }));
    assert.equal(res.status, 200, res.text);
  });

  it('refuses another tenant\'s item ids with request_object_not_owned naming the item, without calling the provider', async () => {
    const received = h.mock.received.length;
    for (const ids of [whole, streamed]) {
      await refused(beta, replay({ rs: ids.rs }), 'input[1].id', [ids.rs]);
      await refused(beta, replay({ fc: ids.fc }), 'input[1].id', [ids.fc]);
      await refused(beta, replay({ msg: ids.msg }), 'input[1].id', [ids.msg]);
      // items are checked in order: a foreign one after the caller's own is named at its place
      await refused(h.key, replay({ ...ids, msg: betaMsg }), 'input[4].id', [betaMsg]);
    }
    assert.equal(h.mock.received.length, received, 'no refused request reached the provider');
  });

  it('answers a foreign item id, an unknown one and an empty one identically', async () => {
    const foreign = await refused(beta, replay({ rs: whole.rs }), 'input[1].id', [whole.rs]);
    const unknown = await refused(beta, replay({ rs: 'rs_doesnotexist00000000000000000000000000000000000000' }), 'input[1].id', []);
    const empty = await refused(beta, replay({ rs: '' }), 'input[1].id', []);
    // the owner gets the same answer for an id nobody was given
    const own = await refused(h.key, replay({ rs: 'rs_doesnotexist00000000000000000000000000000000000000' }), 'input[1].id', []);
    for (const other of [unknown, empty, own]) {
      assert.equal(other.status, foreign.status);
      assert.deepEqual(other.json, foreign.json);
      assert.equal(other.headers.get('content-length'), foreign.headers.get('content-length'));
    }
  });

  it('records the refusal like any other, with no tokens', async () => {
    const requestId = newRequestId('bola-item');
    const res = await postJson(`${h.url}/v1/responses`, beta, replay({ rs: whole.rs }), { 'x-request-id': requestId });
    assert.equal(res.status, 400);
    const row = await usageRow(h, requestId);
    assert.equal(row.errorCode, 'request_object_not_owned');
    assert.equal(row.outcome, 'refused');
    assert.equal(row.inputTokens + row.outputTokens, 0);
  });

  it('lets items without an id through as before', async () => {
    const res = await postJson(`${h.url}/v1/responses`, beta, {
      model: 'gpt-4o-mini',
      max_output_tokens: 16,
      input: [
        { role: 'user', content: 'hi' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'hello', annotations: [] }] },
        { type: 'function_call', call_id: 'call_y', name: 'lookup', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_y', output: 'found', id: null },
      ],
    });
    assert.equal(res.status, 200, res.text);
  });

  it('binds the items of a store: false answer (replayed statelessly), though not its response id', async () => {
    const first = await postJson(`${h.url}/v1/responses`, h.key, { ...FIRST, ...REASON, store: false });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json['store'], false);
    const rs = idsOf(first.json)['reasoning'] as string;
    const res = await postJson(`${h.url}/v1/responses`, h.key, replay({ rs }, { store: false }));
    assert.equal(res.status, 200, res.text);
    await refused(beta, replay({ rs }, { store: false }), 'input[1].id', [rs]);
    await refused(h.key, chain(first.json['id']), 'previous_response_id', [first.json['id'] as string]);
  });

  it('still honours the tenant\'s item ids after a restart on the same store, and still refuses others', async () => {
    await h.gateway.close();
    let restarted: Gateway | undefined;
    try {
      restarted = await createGateway(h.config, { logDestination: new LogCapture(), flushIntervalMs: 20 });
      const { publicUrl } = await restarted.listen();
      const received = h.mock.received.length;
      for (const ids of [whole, streamed]) {
        const own = await postJson(`${publicUrl}/v1/responses`, h.key, replay(ids));
        assert.equal(own.status, 200, own.text);
        for (const id of [ids.rs, ids.fc, ids.msg]) {
          const foreign = await postJson(`${publicUrl}/v1/responses`, beta, id === ids.fc ? replay({ fc: id }) : id === ids.rs ? replay({ rs: id }) : replay({ msg: id }));
          assert.equal(foreign.status, 400);
          assert.equal(foreign.json['error']['code'], 'request_object_not_owned');
          assert.equal(foreign.json['error']['param'], 'input[1].id');
        }
      }
      assert.equal(h.mock.received.length, received + 2, 'only the owner\'s two replays reached the provider');
    } finally {
      await restarted?.close();
    }
  });
});

describe('code interpreter container ids are bound to the tenant they were relayed to', () => {
  // both tenants may use the code interpreter: the binding, not the policy, keeps them apart
  const POLICY = { params: PARAMS, capabilities: { '*': ['code_interpreter'] } };
  const AUTO = { tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] };
  const UNKNOWN_CONTAINER = 'cntr_doesnotexist000000000000000000000000';
  let h: Harness;
  let beta: string;
  /** Acme's container and cited file ids: from a whole answer and from a stream. */
  let whole: Relayed;
  let streamed: Relayed;

  interface Relayed { container: string; file: string }

  /** The container of a whole answer's code_interpreter_call item, and the file its message cites. */
  function relayedOf(json: Record<string, any>): Relayed {
    const output = json['output'] as Array<Record<string, any>>;
    const call = output.find((i) => i['type'] === 'code_interpreter_call');
    assert.ok(call, 'the answer has a code_interpreter_call item');
    const message = output.find((i) => i['type'] === 'message');
    const citation = message?.['content'][0]['annotations'][0] as Record<string, string>;
    assert.equal(citation['type'], 'container_file_citation');
    assert.equal(citation['container_id'], call['container_id']);
    return { container: call['container_id'] as string, file: citation['file_id'] as string };
  }

  /** The same, from a stream's output_item.added and output_text.annotation.added events. */
  function streamedRelayedOf(text: string): Relayed {
    let container: string | undefined;
    let file: string | undefined;
    for (const e of parseSse(text)) {
      const data = JSON.parse(e.data) as Record<string, any>;
      if (e.event === 'response.output_item.added' && data['item']['type'] === 'code_interpreter_call') container = data['item']['container_id'];
      if (e.event === 'response.output_text.annotation.added') file = data['annotation']['file_id'];
    }
    assert.ok(container !== undefined && file !== undefined, 'the stream announced a container and a cited file');
    return { container, file };
  }

  function inContainer(container: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { ...FIRST, tools: [{ type: 'code_interpreter', container }], ...extra };
  }

  /** Replays an assistant message citing a container file, as an SDK replays `response.output`. */
  function citing(cited: Relayed, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const annotation = { type: 'container_file_citation', container_id: cited.container, file_id: cited.file, filename: 'mock.txt', start_index: 0, end_index: 4 };
    return {
      ...FIRST,
      input: [
        { role: 'user', content: 'make a file' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done', annotations: [annotation] }] },
        { role: 'user', content: 'and then?' },
      ],
      ...extra,
    };
  }

  /** How many Responses requests the mock provider received. */
  function received(): number {
    return h.mock.received.filter((r) => r.path === '/v1/responses').length;
  }

  /** Sends a request that must be refused as not owned, whole and streamed; returns the whole answer. */
  async function refused(key: string, body: Record<string, unknown>, param: string, ids: readonly string[], url = h.url) {
    const res = await postJson(`${url}/v1/responses`, key, body);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json['error']['code'], 'request_object_not_owned');
    assert.equal(res.json['error']['type'], 'invalid_request_error');
    assert.equal(res.json['error']['param'], param);
    for (const id of ids) assert.ok(!res.text.includes(id), 'the id is not echoed');
    const s = await postRaw(`${url}/v1/responses`, key, { ...body, stream: true });
    assert.equal(s.status, 400, s.text);
    const error = (JSON.parse(s.text) as { error: { code: string; param: string } }).error;
    assert.equal(error.code, 'request_object_not_owned');
    assert.equal(error.param, param);
    return res;
  }

  before(async () => {
    h = await startHarness({ policy: POLICY });
    beta = (await h.tenantKey('beta')).key;
    const first = await postJson(`${h.url}/v1/responses`, h.key, { ...FIRST, ...AUTO });
    assert.equal(first.status, 200, first.text);
    whole = relayedOf(first.json);
    const s = await postRaw(`${h.url}/v1/responses`, h.key, { ...FIRST, ...AUTO, stream: true });
    assert.equal(s.status, 200, s.text);
    streamed = streamedRelayedOf(s.text);
    assert.match(whole.container, /^cntr_/);
    assert.match(whole.file, /^cfile_/);
    assert.notEqual(streamed.container, whole.container);
  });

  after(async () => {
    await h?.close();
  });

  it('lets a tenant run code again in its own container, passed on unchanged, whole and streamed', async () => {
    for (const { container } of [whole, streamed]) {
      const res = await postJson(`${h.url}/v1/responses`, h.key, inContainer(container));
      assert.equal(res.status, 200, res.text);
      const sent = h.mock.received.at(-1)?.body as { tools: Array<{ container: unknown }> };
      assert.equal(sent.tools[0]?.container, container);
      // the answer names the same container, and it stays the tenant's
      assert.equal(relayedOf(res.json).container, container);
      const s = await postRaw(`${h.url}/v1/responses`, h.key, inContainer(container, { stream: true }));
      assert.equal(s.status, 200, s.text);
      assert.ok(parseSse(s.text).some((e) => e.event === 'response.completed'), 'the stream completes');
    }
  });

  it('refuses another tenant\'s container id with request_object_not_owned naming the tool, without calling the provider', async () => {
    const before = received();
    for (const { container } of [whole, streamed]) {
      await refused(beta, inContainer(container), 'tools[0].container', [container]);
      // at its place among the tools
      await refused(beta, { ...FIRST, tools: [AUTO.tools[0], { type: 'code_interpreter', container }] }, 'tools[1].container', [container]);
    }
    assert.equal(received(), before, 'no refused request reached the provider');
  });

  it('answers a foreign container id, an unknown one and an empty one identically', async () => {
    const foreign = await refused(beta, inContainer(whole.container), 'tools[0].container', [whole.container]);
    const unknown = await refused(beta, inContainer(UNKNOWN_CONTAINER), 'tools[0].container', []);
    const empty = await refused(beta, inContainer(''), 'tools[0].container', []);
    // the owner gets the same answer for a container nobody was given
    const own = await refused(h.key, inContainer(UNKNOWN_CONTAINER), 'tools[0].container', []);
    for (const other of [unknown, empty, own]) {
      assert.equal(other.status, foreign.status);
      assert.deepEqual(other.json, foreign.json);
      assert.equal(other.headers.get('content-length'), foreign.headers.get('content-length'));
    }
  });

  it('lets the automatic form through (it makes a new container), and binds that one to its tenant', async () => {
    const res = await postJson(`${h.url}/v1/responses`, beta, { ...FIRST, tools: [{ type: 'code_interpreter', container: { type: 'auto', file_ids: [] } }] });
    assert.equal(res.status, 200, res.text);
    const betas = relayedOf(res.json);
    assert.ok(![whole.container, streamed.container].includes(betas.container));
    const again = await postJson(`${h.url}/v1/responses`, beta, inContainer(betas.container));
    assert.equal(again.status, 200, again.text);
    await refused(h.key, inContainer(betas.container), 'tools[0].container', [betas.container]);
  });

  it('checks the container and file ids of citations replayed in an assistant message', async () => {
    for (const cited of [whole, streamed]) {
      const own = await postJson(`${h.url}/v1/responses`, h.key, citing(cited));
      assert.equal(own.status, 200, own.text);
    }
    const before = received();
    const at = 'input[1].content[0].annotations[0]';
    await refused(beta, citing(whole), `${at}.container_id`, [whole.container, whole.file]);
    // beta's own container with acme's file in it: the file is refused
    const res = await postJson(`${h.url}/v1/responses`, beta, { ...FIRST, ...AUTO });
    const betas = relayedOf(res.json);
    const received1 = received();
    await refused(beta, citing({ container: betas.container, file: whole.file }), `${at}.file_id`, [whole.file]);
    await refused(beta, citing({ container: betas.container, file: 'cfile_doesnotexist0000000000' }), `${at}.file_id`, []);
    assert.equal(received(), received1, 'no refused request reached the provider');
    assert.equal(received1, before + 1, 'only beta\'s own request reached it');
  });

  it('checks a container with the other ids of the request in one answer (previous_response_id first)', async () => {
    const first = await postJson(`${h.url}/v1/responses`, h.key, { ...FIRST, ...AUTO });
    const id = first.json['id'] as string;
    const own = await postJson(`${h.url}/v1/responses`, h.key, inContainer(whole.container, { input: 'and then?', previous_response_id: id }));
    assert.equal(own.status, 200, own.text);
    await refused(beta, inContainer(whole.container, { previous_response_id: id }), 'previous_response_id', [id]);
    await refused(h.key, inContainer(UNKNOWN_CONTAINER, { previous_response_id: id }), 'tools[0].container', []);
  });

  it('still refuses a container id for a tenant whose policy does not allow the code interpreter', async () => {
    const { key } = await h.tenantKey('gamma', { ...CONTRACT_POLICY, params: PARAMS, capabilities: null });
    const res = await postJson(`${h.url}/v1/responses`, key, inContainer(whole.container));
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json['error']['code'], 'policy_tools_not_allowed');
  });

  it('still honours the tenant\'s containers after a restart on the same store, and still refuses others', async () => {
    await h.gateway.close();
    let restarted: Gateway | undefined;
    try {
      restarted = await createGateway(h.config, { logDestination: new LogCapture(), flushIntervalMs: 20 });
      const { publicUrl } = await restarted.listen();
      const before = received();
      for (const cited of [whole, streamed]) {
        const own = await postJson(`${publicUrl}/v1/responses`, h.key, inContainer(cited.container));
        assert.equal(own.status, 200, own.text);
        const replayed = await postJson(`${publicUrl}/v1/responses`, h.key, citing(cited));
        assert.equal(replayed.status, 200, replayed.text);
        await refused(beta, inContainer(cited.container), 'tools[0].container', [cited.container], publicUrl);
      }
      assert.equal(received(), before + 4, 'only the owner\'s requests reached the provider');
    } finally {
      await restarted?.close();
    }
  });
});

describe('the response-ownership stage', () => {
  const logger = createLogger({ level: 'silent', destination: new LogCapture() });

  /** An in-memory repository, as a store shared by replicas would be. */
  function memoryRepo(): ResponseOwnerRepository & { reads: number; asked: number[]; rows: Map<string, ResponseOwnerRecord> } {
    const rows = new Map<string, ResponseOwnerRecord>();
    const repo = {
      rows,
      reads: 0,
      /** How many hashes each read asked for. */
      asked: [] as number[],
      async put(records: readonly ResponseOwnerRecord[]) {
        for (const r of records) rows.set(r.responseHash, r);
      },
      async ownedOf(hashes: readonly string[], tenantId: string, since: number) {
        repo.reads += 1;
        repo.asked.push(hashes.length);
        return new Set(hashes.filter((hash) => {
          const r = rows.get(hash);
          return r !== undefined && r.tenantId === tenantId && r.createdAt >= since;
        }));
      },
      async deleteBefore(before: number) {
        let n = 0;
        for (const [k, r] of rows) if (r.createdAt < before && rows.delete(k)) n += 1;
        return n;
      },
    };
    return repo;
  }

  function input(body: Record<string, unknown>, endpoint: NormalisedRequest['endpoint'] = 'responses') {
    return { target: { id: 'openai' }, request: { endpoint, body } };
  }

  it('costs nothing for a request that chains on nothing: no promise, no store read', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      assert.equal(owners.check('t_a', input({ model: 'm', input: 'x' })), undefined);
      assert.equal(owners.check('t_a', input({ model: 'm', input: 'x', previous_response_id: null })), undefined);
      assert.equal(owners.check('t_a', input({ model: 'm', previous_response_id: 'resp_1' }, 'chat')), undefined);
      assert.equal(repo.reads, 0);
    } finally {
      await owners.close();
    }
  });

  it('finds the tenant\'s own id in memory before it is written, and writes it soon after', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_1' });
      assert.equal(repo.rows.size, 0, 'not written on the request path');
      await owners.check('t_a', input({ previous_response_id: 'resp_1' }));
      assert.equal(repo.reads, 0, 'answered from memory');
      await owners.flush();
      assert.equal(repo.rows.get(responseHash('openai', 'resp_1'))?.tenantId, 't_a');
    } finally {
      await owners.close();
    }
  });

  it('finds an id another replica relayed a moment ago, once its write lands', async () => {
    const repo = memoryRepo();
    const one = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    const two = createResponseOwners({ repo, logger, retentionMs: 86_400_000, missRecheckMs: 50 });
    try {
      one.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_2' });
      await two.check('t_a', input({ previous_response_id: 'resp_2' }));
      assert.ok(repo.reads >= 1);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('refuses another tenant\'s id, an unknown id and an expired id with the same error', async () => {
    let clock = 1_000_000_000;
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 60_000, missRecheckMs: 1, now: () => clock });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_3' });
      await owners.flush();
      const refusals: GatewayError[] = [];
      const refused = async (tenant: string, id: string) => {
        await assert.rejects(owners.check(tenant, input({ previous_response_id: id })) as Promise<void>, (err: unknown) => {
          assert.ok(err instanceof GatewayError);
          refusals.push(err);
          return true;
        });
      };
      await refused('t_b', 'resp_3');
      await refused('t_a', 'resp_unknown');
      // the same id from another provider is another object
      await assert.rejects(owners.check('t_a', { target: { id: 'other' }, request: { endpoint: 'responses', body: { previous_response_id: 'resp_3' } } }) as Promise<void>);
      clock += 60_001;
      await refused('t_a', 'resp_3');
      for (const err of refusals) {
        assert.equal(err.code, 'request_object_not_owned');
        assert.equal(err.message, refusals[0]?.message);
        assert.equal(err.param, 'previous_response_id');
      }
      // and the retention job deletes it
      assert.equal(await owners.prune(), 1);
    } finally {
      await owners.close();
    }
  });

  it('fails closed when the store cannot be read', async () => {
    const repo = memoryRepo();
    repo.ownedOf = async () => {
      throw new Error('store down');
    };
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      await assert.rejects(owners.check('t_a', input({ previous_response_id: 'resp_4' })) as Promise<void>, (err: unknown) =>
        err instanceof GatewayError && err.code === 'service_unavailable');
    } finally {
      await owners.close();
    }
  });

  it('keeps records the store refused and writes them once it is back', async () => {
    const repo = memoryRepo();
    const put = repo.put;
    let down = true;
    repo.put = async (records) => {
      if (down) throw new Error('store down');
      return put(records);
    };
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_5' });
      await assert.rejects(owners.flush());
      down = false;
      await owners.flush();
      assert.equal(repo.rows.get(responseHash('openai', 'resp_5'))?.tenantId, 't_a');
    } finally {
      await owners.close();
    }
  });

  /** A Responses body replaying items with these ids (reasoning, assistant message, function call), in that order after a user turn. */
  function replay(ids: { rs?: string; msg?: string; fc?: string }, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const input: Array<Record<string, unknown>> = [{ role: 'user', content: 'hi' }];
    if (ids.rs !== undefined) input.push({ type: 'reasoning', id: ids.rs, summary: [] });
    if (ids.msg !== undefined) input.push({ type: 'message', role: 'assistant', id: ids.msg, content: [{ type: 'output_text', text: 'x', annotations: [] }] });
    if (ids.fc !== undefined) input.push({ type: 'function_call', id: ids.fc, call_id: 'call_1', name: 'f', arguments: '{}' });
    return { model: 'm', input, ...extra };
  }

  it('costs nothing for input items without ids: no promise, no store read', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      const body = {
        model: 'm',
        input: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
          { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' },
          { type: 'function_call_output', call_id: 'call_1', output: 'r', id: null },
        ],
      };
      assert.equal(owners.check('t_a', input(body)), undefined);
      // chat messages are not Responses items, whatever they hold
      assert.equal(owners.check('t_a', input({ model: 'm', messages: [{ role: 'assistant', id: 'msg_1', content: 'x' }], input: [{ id: 'rs_1' }] }, 'chat')), undefined);
      assert.equal(repo.reads, 0);
    } finally {
      await owners.close();
    }
  });

  it('binds an answer\'s output item ids with its response id, and finds them all in memory at once', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_i1', outputItemIds: ['rs_i1', 'msg_i1', 'fc_i1'] });
      await owners.check('t_a', input(replay({ rs: 'rs_i1', msg: 'msg_i1', fc: 'fc_i1' }, { previous_response_id: 'resp_i1' })));
      assert.equal(repo.reads, 0, 'answered from memory');
      await owners.flush();
      for (const id of ['resp_i1', 'rs_i1', 'msg_i1', 'fc_i1']) assert.equal(repo.rows.get(responseHash('openai', id))?.tenantId, 't_a', id);
    } finally {
      await owners.close();
    }
  });

  it('binds output item ids of an answer that has no response id to bind (store: false)', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: null, outputItemIds: ['rs_unstored'] });
      await owners.flush();
      assert.equal(repo.rows.size, 1);
      assert.equal(repo.rows.get(responseHash('openai', 'rs_unstored'))?.tenantId, 't_a');
      // nothing at all for an answer without a tenant or a provider
      owners.remember({ principal: undefined, provider: 'openai', responseId: 'resp_x', outputItemIds: ['rs_x'] });
      owners.remember({ principal: { tenantId: 't_a' }, provider: null, responseId: 'resp_y', outputItemIds: ['rs_y'] });
      await owners.flush();
      assert.equal(repo.rows.size, 1);
    } finally {
      await owners.close();
    }
  });

  it('reads every id a request names from the store in one query, and re-reads only what is missing', async () => {
    const repo = memoryRepo();
    const writer = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    // a fresh replica: nothing in its memory, everything comes from the store
    const reader = createResponseOwners({ repo, logger, retentionMs: 86_400_000, missRecheckMs: 1 });
    try {
      const many = Array.from({ length: 200 }, (_, i) => `rs_many${i}`);
      writer.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_many', outputItemIds: many });
      await writer.flush();
      const body = { model: 'm', previous_response_id: 'resp_many', input: many.map((id) => ({ type: 'reasoning', id, summary: [] })) };
      await reader.check('t_a', input(body));
      assert.deepEqual(repo.asked, [201], 'one query for the response id and all 200 item ids');
      // one foreign id among them: the first read asks for all, the re-read only for the missing one
      repo.asked.length = 0;
      writer.remember({ principal: { tenantId: 't_b' }, provider: 'openai', responseId: null, outputItemIds: ['rs_other'] });
      await writer.flush();
      const mixed = { ...body, input: [...body.input, { type: 'reasoning', id: 'rs_other', summary: [] }] };
      await assert.rejects(reader.check('t_a', input(mixed)) as Promise<void>, (err: unknown) =>
        err instanceof GatewayError && err.code === 'request_object_not_owned' && err.param === 'input[200].id');
      assert.deepEqual(repo.asked, [202, 1]);
      // the same id twice is asked for once
      repo.asked.length = 0;
      await reader.check('t_a', input(replay({ rs: 'rs_many0', msg: 'rs_many0' })));
      assert.deepEqual(repo.asked, [1]);
    } finally {
      await writer.close();
      await reader.close();
    }
  });

  it('refuses a foreign, unknown or expired item id with one error naming the item, never the id', async () => {
    let clock = 1_000_000_000;
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 60_000, missRecheckMs: 1, now: () => clock });
    try {
      owners.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_j', outputItemIds: ['rs_j', 'msg_j', 'fc_j'] });
      owners.remember({ principal: { tenantId: 't_b' }, provider: 'openai', responseId: 'resp_k', outputItemIds: ['rs_k'] });
      await owners.flush();
      const refusal = async (tenant: string, body: Record<string, unknown>, target = 'openai'): Promise<GatewayError> => {
        let caught: GatewayError | undefined;
        await assert.rejects(owners.check(tenant, { target: { id: target }, request: { endpoint: 'responses', body } }) as Promise<void>, (err: unknown) => {
          assert.ok(err instanceof GatewayError);
          caught = err;
          return true;
        });
        return caught as GatewayError;
      };
      const foreign = await refusal('t_b', replay({ rs: 'rs_j' }));
      const unknown = await refusal('t_b', replay({ rs: 'rs_nobody' }));
      const empty = await refusal('t_b', replay({ rs: '' }));
      // the same id relayed by another provider is another object
      const otherProvider = await refusal('t_a', replay({ rs: 'rs_j' }), 'other');
      for (const err of [foreign, unknown, empty, otherProvider]) {
        assert.equal(err.code, 'request_object_not_owned');
        assert.equal(err.status, 400);
        assert.equal(err.param, 'input[1].id');
        assert.equal(err.message, foreign.message);
        assert.ok(!err.message.includes('rs_'), 'the id is not named');
      }
      // the param names the first item, in order, that is not the tenant's own
      assert.equal((await refusal('t_a', replay({ rs: 'rs_j', msg: 'msg_j', fc: 'rs_k' }))).param, 'input[3].id');
      assert.equal((await refusal('t_a', replay({ rs: 'rs_k', msg: 'msg_nobody' }))).param, 'input[1].id');
      // a foreign previous_response_id is named before any item
      assert.equal((await refusal('t_a', replay({ rs: 'rs_k' }, { previous_response_id: 'resp_k' }))).param, 'previous_response_id');
      assert.equal((await refusal('t_a', replay({ rs: 'rs_k' }, { previous_response_id: 'resp_j' }))).param, 'input[1].id');
      // the owner's own ids pass; once expired, they are refused like the others
      await owners.check('t_a', input(replay({ rs: 'rs_j', msg: 'msg_j', fc: 'fc_j' })));
      clock += 60_001;
      assert.equal((await refusal('t_a', replay({ rs: 'rs_j' }))).param, 'input[1].id');
    } finally {
      await owners.close();
    }
  });

  /** A Responses body running code in `container` and replaying an assistant message citing `cited`. */
  function withContainer(container: unknown, cited?: { container: string; file: string }, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const annotations = cited === undefined ? [] : [
      { type: 'url_citation', url: 'https://example.test/', title: 't', start_index: 0, end_index: 1 },
      { type: 'container_file_citation', container_id: cited.container, file_id: cited.file, filename: 'a.txt', start_index: 0, end_index: 1 },
    ];
    return {
      model: 'm',
      input: [{ role: 'user', content: 'hi' }, { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'x', annotations }] }],
      tools: [{ type: 'function', name: 'f' }, { type: 'code_interpreter', container }],
      ...extra,
    };
  }

  it('checks a code interpreter container given by id and the ids of replayed citations, in the same one read', async () => {
    const repo = memoryRepo();
    const writer = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    const reader = createResponseOwners({ repo, logger, retentionMs: 86_400_000, missRecheckMs: 1 });
    try {
      // as the adapter hands them over: item ids with the container and file ids they carried
      writer.remember({ principal: { tenantId: 't_a' }, provider: 'openai', responseId: 'resp_c', outputItemIds: ['ci_c', 'cntr_a', 'msg_c', 'cfile_a'] });
      writer.remember({ principal: { tenantId: 't_b' }, provider: 'openai', responseId: null, outputItemIds: ['ci_d', 'cntr_b', 'cfile_b'] });
      await writer.flush();
      await reader.check('t_a', input(withContainer('cntr_a', { container: 'cntr_a', file: 'cfile_a' }, { previous_response_id: 'resp_c' })));
      assert.deepEqual(repo.asked, [3], 'one query: the response id, the container (named twice, asked once) and the file');
      const refusal = async (tenant: string, body: Record<string, unknown>): Promise<GatewayError> => {
        let caught: GatewayError | undefined;
        await assert.rejects(reader.check(tenant, input(body)) as Promise<void>, (err: unknown) => {
          assert.ok(err instanceof GatewayError);
          caught = err;
          return true;
        });
        return caught as GatewayError;
      };
      const at = 'input[1].content[0].annotations[1]';
      const foreign = await refusal('t_b', withContainer('cntr_a'));
      const unknown = await refusal('t_b', withContainer('cntr_nobody'));
      const empty = await refusal('t_a', withContainer(''));
      for (const err of [foreign, unknown, empty]) {
        assert.equal(err.code, 'request_object_not_owned');
        assert.equal(err.status, 400);
        assert.equal(err.param, 'tools[1].container');
        assert.equal(err.message, foreign.message);
        assert.ok(!err.message.includes('cntr_'), 'the id is not named');
      }
      // a replayed citation: its container first, then its file, before any tool
      assert.equal((await refusal('t_b', withContainer('cntr_b', { container: 'cntr_a', file: 'cfile_b' }))).param, `${at}.container_id`);
      const file = await refusal('t_b', withContainer('cntr_b', { container: 'cntr_b', file: 'cfile_a' }));
      assert.equal(file.param, `${at}.file_id`);
      assert.ok(!file.message.includes('cfile_'), 'the id is not named');
      await reader.check('t_b', input(withContainer('cntr_b', { container: 'cntr_b', file: 'cfile_b' })));
      // the same id relayed by another provider is another object
      await assert.rejects(reader.check('t_a', { target: { id: 'other' }, request: { endpoint: 'responses', body: withContainer('cntr_a') } }) as Promise<void>);
    } finally {
      await writer.close();
      await reader.close();
    }
  });

  it('costs nothing for a code interpreter in a new container: no promise, no store read', async () => {
    const repo = memoryRepo();
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      assert.equal(owners.check('t_a', input(withContainer({ type: 'auto', file_ids: ['file-FAKE'] }))), undefined);
      assert.equal(owners.check('t_a', input({ model: 'm', input: 'x', tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] })), undefined);
      assert.equal(repo.reads, 0);
    } finally {
      await owners.close();
    }
  });

  it('fails closed when the store cannot be read for input item ids', async () => {
    const repo = memoryRepo();
    repo.ownedOf = async () => {
      throw new Error('store down');
    };
    const owners = createResponseOwners({ repo, logger, retentionMs: 86_400_000 });
    try {
      await assert.rejects(owners.check('t_a', input(replay({ rs: 'rs_down' }))) as Promise<void>, (err: unknown) =>
        err instanceof GatewayError && err.code === 'service_unavailable');
    } finally {
      await owners.close();
    }
  });
});

describe('the OpenAI adapter reads the stored response id', () => {
  const adapter = createOpenAiAdapter();

  it('from a whole Responses answer, unless the provider keeps nothing (store: false)', () => {
    assert.equal(adapter.readResponseId?.('responses', { id: 'resp_abc', object: 'response', store: true }), 'resp_abc');
    assert.equal(adapter.readResponseId?.('responses', { id: 'resp_abc', object: 'response' }), 'resp_abc');
    assert.equal(adapter.readResponseId?.('responses', { id: 'resp_abc', store: false }), undefined);
    assert.equal(adapter.readResponseId?.('chat', { id: 'chatcmpl_abc' }), undefined);
    assert.equal(adapter.readResponseId?.('responses', { id: 'resp with space' }), undefined);
    assert.equal(adapter.readResponseId?.('responses', { id: 'r'.repeat(257) }), undefined);
    assert.equal(adapter.readResponseId?.('responses', { id: 42 }), undefined);
  });

  it('from a stream\'s response.created event, else its terminal event', () => {
    const request = { endpoint: 'responses', publicModel: 'm', upstreamModel: 'm', body: {}, stream: true, maxOutputTokens: 16, maxTokensField: 'max_output_tokens', clientWantsStreamUsage: false } as NormalisedRequest;
    const event = (type: string, data: Record<string, unknown>, named = true) => {
      const json = JSON.stringify({ type, ...data });
      return { event: named ? type : undefined, data: json, raw: `event: ${type}\ndata: ${json}\n\n` };
    };
    const reader = adapter.createStreamReader(request);
    assert.equal(reader.accept(event('response.created', { response: { id: 'resp_s1', store: true } })), true);
    reader.accept(event('response.output_text.delta', { delta: 'x' }));
    reader.accept(event('response.completed', { response: { id: 'resp_s1', usage: { input_tokens: 1, output_tokens: 1 } } }));
    assert.equal(reader.responseId?.(), 'resp_s1');

    // a stream without event names, and without a created event: the terminal event's response names it
    const unnamed = adapter.createStreamReader(request);
    unnamed.accept(event('response.completed', { response: { id: 'resp_s2', usage: { input_tokens: 1, output_tokens: 1 } } }, false));
    assert.equal(unnamed.responseId?.(), 'resp_s2');

    const unstored = adapter.createStreamReader(request);
    unstored.accept(event('response.created', { response: { id: 'resp_s3', store: false } }));
    unstored.accept(event('response.completed', { response: { id: 'resp_s3', store: false } }));
    assert.equal(unstored.responseId?.(), undefined);
  });
});

describe('the OpenAI adapter reads the output item ids', () => {
  const adapter = createOpenAiAdapter();
  const request = { endpoint: 'responses', publicModel: 'm', upstreamModel: 'm', body: {}, stream: true, maxOutputTokens: 16, maxTokensField: 'max_output_tokens', clientWantsStreamUsage: false } as NormalisedRequest;
  const event = (type: string, data: Record<string, unknown>, named = true) => {
    const json = JSON.stringify({ type, ...data });
    return { event: named ? type : undefined, data: json, raw: `event: ${type}\ndata: ${json}\n\n` };
  };

  it('from a whole Responses answer\'s output, stored or not, skipping what does not look like an id', () => {
    const output = [
      { id: 'rs_w1', type: 'reasoning', summary: [] },
      { id: 'fc_w1', type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' },
      { id: 'msg_w1', type: 'message', role: 'assistant', content: [] },
      { id: 'msg_w1', type: 'message', role: 'assistant', content: [] },
      { id: 'has space', type: 'message' }, { id: 42 }, { type: 'message' }, 'not an item', null,
    ];
    assert.deepEqual(adapter.readOutputItemIds?.('responses', { id: 'resp_w', output }), ['rs_w1', 'fc_w1', 'msg_w1']);
    // with store: false the response id is not bound, but its items are (they are replayed by id)
    assert.deepEqual(adapter.readOutputItemIds?.('responses', { id: 'resp_w', store: false, output: output.slice(0, 1) }), ['rs_w1']);
    assert.deepEqual(adapter.readOutputItemIds?.('responses', { id: 'resp_w', output: 'x' }), []);
    assert.deepEqual(adapter.readOutputItemIds?.('chat', { id: 'chatcmpl_w', output }), []);
  });

  it('caps the ids bound per answer', () => {
    const output = Array.from({ length: MAX_OUTPUT_ITEM_IDS + 10 }, (_, i) => ({ id: `fc_cap${i}`, type: 'function_call' }));
    const ids = adapter.readOutputItemIds?.('responses', { output }) ?? [];
    assert.equal(ids.length, MAX_OUTPUT_ITEM_IDS);
    assert.equal(ids.at(-1), `fc_cap${MAX_OUTPUT_ITEM_IDS - 1}`);
  });

  it('from a stream\'s output_item.added events, named or not, and its terminal event\'s output', () => {
    const reader = adapter.createStreamReader(request);
    reader.accept(event('response.created', { response: { id: 'resp_s', store: false, output: [] } }));
    reader.accept(event('response.output_item.added', { output_index: 0, item: { id: 'rs_s1', type: 'reasoning', summary: [] } }));
    reader.accept(event('response.output_item.added', { output_index: 1, item: { id: 'fc_s1', type: 'function_call', arguments: '' } }, false));
    reader.accept(event('response.function_call_arguments.delta', { item_id: 'fc_s9', delta: '{}' }));
    // a client that leaves now has still been sent these two
    assert.deepEqual(reader.outputItemIds?.(), ['rs_s1', 'fc_s1']);
    reader.accept(event('response.output_item.done', { output_index: 1, item: { id: 'fc_s1', type: 'function_call', arguments: '{}' } }));
    reader.accept(event('response.completed', { response: { id: 'resp_s', store: false, output: [{ id: 'rs_s1' }, { id: 'fc_s1' }, { id: 'msg_s1' }], usage: { input_tokens: 1, output_tokens: 1 } } }));
    assert.deepEqual(reader.outputItemIds?.(), ['rs_s1', 'fc_s1', 'msg_s1']);
    assert.equal(reader.responseId?.(), undefined, 'the response id of a store: false stream is not bound');
    assert.equal(reader.finished(), true);
  });

  it('with the container of a code_interpreter_call and the container and file ids of output text annotations', () => {
    const output = [
      { id: 'ci_w1', type: 'code_interpreter_call', status: 'completed', code: 'x', outputs: null, container_id: 'cntr_w1' },
      // only a code interpreter call names a container
      { id: 'fc_w2', type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}', container_id: 'cntr_not' },
      {
        id: 'msg_w2', type: 'message', role: 'assistant', content: [
          { type: 'output_text', text: 'x', annotations: [
            { type: 'container_file_citation', container_id: 'cntr_w1', file_id: 'cfile_w1', filename: 'a.txt', start_index: 0, end_index: 1 },
            { type: 'url_citation', url: 'https://example.test/', title: 't', start_index: 0, end_index: 1 },
            { type: 'file_citation', file_id: 'file-w1', filename: 'b.pdf', index: 0 },
            { type: 'file_path', file_id: 'file-w2', index: 0 },
            { type: 'file_citation', file_id: 'has space', filename: 'c', index: 0 }, null, 'x',
          ] },
          { type: 'refusal', refusal: 'no' },
        ],
      },
      // annotations are read on messages only
      { id: 'rs_w2', type: 'reasoning', summary: [], content: [{ annotations: [{ file_id: 'file-not' }] }] },
    ];
    assert.deepEqual(adapter.readOutputItemIds?.('responses', { id: 'resp_w', output }), ['ci_w1', 'cntr_w1', 'fc_w2', 'msg_w2', 'cfile_w1', 'file-w1', 'file-w2', 'rs_w2']);
  });

  it('caps the container and file ids with the item ids, however many annotations an answer has', () => {
    const annotations = Array.from({ length: MAX_OUTPUT_ITEM_IDS * 2 }, (_, i) => ({ type: 'file_citation', file_id: `file-cap${i}`, filename: 'a', index: 0 }));
    const ids = adapter.readOutputItemIds?.('responses', { output: [{ id: 'msg_cap', type: 'message', content: [{ type: 'output_text', text: 'x', annotations }] }] }) ?? [];
    assert.equal(ids.length, MAX_OUTPUT_ITEM_IDS);
    assert.equal(ids[0], 'msg_cap');
    assert.equal(ids.at(-1), `file-cap${MAX_OUTPUT_ITEM_IDS - 2}`);
  });

  it('from a stream: a code_interpreter_call\'s container when announced, annotation events, and the terminal output', () => {
    const reader = adapter.createStreamReader(request);
    reader.accept(event('response.created', { response: { id: 'resp_c', output: [] } }));
    reader.accept(event('response.output_item.added', { output_index: 0, item: { id: 'ci_s1', type: 'code_interpreter_call', status: 'in_progress', code: '', outputs: null, container_id: 'cntr_s1' } }));
    reader.accept(event('response.code_interpreter_call_code.delta', { item_id: 'ci_s1', output_index: 0, delta: 'print(1)' }));
    // the done event (the whole item, with its outputs) is not parsed
    reader.accept(event('response.output_item.done', { output_index: 0, item: { id: 'ci_s1', type: 'code_interpreter_call', container_id: 'cntr_done' } }));
    assert.deepEqual(reader.outputItemIds?.(), ['ci_s1', 'cntr_s1'], 'a client that leaves now has the container bound');
    reader.accept(event('response.output_item.added', { output_index: 1, item: { id: 'msg_s2', type: 'message', content: [] } }));
    reader.accept(event('response.output_text.annotation.added', { item_id: 'msg_s2', annotation_index: 0, annotation: { type: 'container_file_citation', container_id: 'cntr_s1', file_id: 'cfile_s1', filename: 'a', start_index: 0, end_index: 1 } }));
    reader.accept(event('response.output_text.annotation.added', { item_id: 'msg_s2', annotation_index: 1, annotation: { type: 'file_citation', file_id: 'file-s1', filename: 'b', index: 0 } }, false));
    assert.deepEqual(reader.outputItemIds?.(), ['ci_s1', 'cntr_s1', 'msg_s2', 'cfile_s1', 'file-s1']);
    const terminalOutput = [
      { id: 'ci_s1', type: 'code_interpreter_call', container_id: 'cntr_s1' },
      { id: 'ci_s3', type: 'code_interpreter_call', container_id: 'cntr_s3' },
      { id: 'msg_s2', type: 'message', content: [{ type: 'output_text', text: 'x', annotations: [{ type: 'file_path', file_id: 'file-s4', index: 0 }] }] },
    ];
    reader.accept(event('response.completed', { response: { id: 'resp_c', output: terminalOutput, usage: { input_tokens: 1, output_tokens: 1 } } }));
    assert.deepEqual(reader.outputItemIds?.(), ['ci_s1', 'cntr_s1', 'msg_s2', 'cfile_s1', 'file-s1', 'ci_s3', 'cntr_s3', 'file-s4']);
  });

  it('does not take an id from text that only mentions an annotation event', () => {
    const reader = adapter.createStreamReader(request);
    const sneaky = JSON.stringify({ type: 'response.output_text.delta', delta: '"type":"response.output_text.annotation.added","annotation":{"container_id":"cntr_fake"}' });
    reader.accept({ event: undefined, data: sneaky, raw: `data: ${sneaky}\n\n` });
    assert.deepEqual(reader.outputItemIds?.(), []);
  });

  it('does not take an id from text that only mentions an output_item.added event', () => {
    const reader = adapter.createStreamReader(request);
    const sneaky = JSON.stringify({ type: 'response.output_text.delta', delta: '"type":"response.output_item.added","item":{"id":"rs_fake"}' });
    reader.accept({ event: undefined, data: sneaky, raw: `data: ${sneaky}\n\n` });
    assert.deepEqual(reader.outputItemIds?.(), []);
  });
});

describe('tenants.response_owner_retention', () => {
  const doc = (tenants: Record<string, unknown> | undefined) => ({
    admin: { token: 'env:KW_TEST_ADMIN' },
    audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_OPENAI' } },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
    ...(tenants ? { tenants } : {}),
  });

  it('defaults to 30 days, as long as OpenAI keeps stored responses', () => {
    const { config, problems } = validateConfig(doc(undefined));
    assert.deepEqual(problems, []);
    assert.equal(config?.tenants.responseOwnerRetentionMs, 30 * 86_400_000);
  });

  it('takes a duration, and refuses one under an hour or not a duration', () => {
    assert.equal(validateConfig(doc({ response_owner_retention: '90d' })).config?.tenants.responseOwnerRetentionMs, 90 * 86_400_000);
    for (const bad of ['10m', 'soon', -1]) {
      const { problems } = validateConfig(doc({ response_owner_retention: bad }));
      assert.ok(problems.some((p) => p.includes('tenants.response_owner_retention')), `${String(bad)}: ${problems.join('; ')}`);
    }
  });
});
