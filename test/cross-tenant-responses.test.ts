/**
 * Broken object-level authorisation across tenants (OWASP API1): every tenant calls the provider
 * with the operator's one key, so the provider keeps all their stored Responses answers under one
 * account. A tenant that learns another's `resp_…` id must not continue (and so read) that
 * conversation through `previous_response_id`. The gateway binds each relayed response id to its
 * tenant (src/services/response-owners.ts) and refuses every other chain with one answer.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, postJson, CONTRACT_POLICY, LogCapture, type Harness } from './helpers/harness.js';
import { parseSse, postRaw, usageRow, newRequestId } from './helpers/upstream-ledger.js';
import { createGateway, type Gateway } from '../src/main.js';
import { createResponseOwners, responseHash } from '../src/services/response-owners.js';
import { createOpenAiAdapter } from '../src/providers/openai/adapter.js';
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

describe('the response-ownership stage', () => {
  const logger = createLogger({ level: 'silent', destination: new LogCapture() });

  /** An in-memory repository, as a store shared by replicas would be. */
  function memoryRepo(): ResponseOwnerRepository & { reads: number; rows: Map<string, ResponseOwnerRecord> } {
    const rows = new Map<string, ResponseOwnerRecord>();
    const repo = {
      rows,
      reads: 0,
      async put(records: readonly ResponseOwnerRecord[]) {
        for (const r of records) rows.set(r.responseHash, r);
      },
      async isOwner(hash: string, tenantId: string, since: number) {
        repo.reads += 1;
        const r = rows.get(hash);
        return r !== undefined && r.tenantId === tenantId && r.createdAt >= since;
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
    repo.isOwner = async () => {
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
