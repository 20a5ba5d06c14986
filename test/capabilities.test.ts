import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { validateRequest } from '../src/policy/validate.js';
import { DEFAULT_POLICY, checkPolicyOverride } from '../src/config/validate.js';
import { GatewayError } from '../src/errors/index.js';
import type { Endpoint } from '../src/providers/types.js';
import type { TenantPolicy } from '../src/policy/types.js';
import { startHarness, postJson, type Harness } from './helpers/harness.js';

const ROUTED = new Set(['fast', 'claude']);
const BASE: TenantPolicy = {
  ...DEFAULT_POLICY,
  models: ['fast', 'claude'],
  params: ['response_format', 'audio', 'modalities', 'text', 'output_config', 'max_tokens'],
};

function policy(capabilities: Record<string, string[]> | undefined, extra: Record<string, unknown> = {}): TenantPolicy {
  const { policy: p, problems } = checkPolicyOverride(capabilities === undefined ? extra : { ...extra, capabilities }, BASE);
  assert.deepEqual(problems, []);
  return p;
}

function refused(endpoint: Endpoint, body: object, p: TenantPolicy, capability: string, param: string): void {
  assert.throws(
    () => validateRequest(endpoint, body, p, ROUTED),
    (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.code, 'policy_capability_not_allowed');
      assert.equal(err.status, 403);
      assert.equal(err.param, param);
      assert.match(err.message, new RegExp(`"${capability}"`));
      return true;
    },
  );
}

function allowed(endpoint: Endpoint, body: object, p: TenantPolicy): void {
  assert.doesNotThrow(() => validateRequest(endpoint, body, p, ROUTED));
}

const chat = (extra: object = {}, content: unknown = 'hi') => ({ model: 'fast', messages: [{ role: 'user', content }], ...extra });
const resp = (extra: object = {}, input: unknown = 'hi') => ({ model: 'fast', input, ...extra });
const msgs = (extra: object = {}, content: unknown = 'hi') => ({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content }], ...extra });
const FN_CHAT = { type: 'function', function: { name: 'f', parameters: { type: 'object' } } };
const FN_RESP = { type: 'function', name: 'f', parameters: { type: 'object' } };
const FN_MSGS = { name: 'f', input_schema: { type: 'object' } };

/** [endpoint, body, capability, param] — each body uses exactly one capability. */
const CASES: [Endpoint, object, string, string][] = [
  ['chat', chat({ tools: [FN_CHAT] }), 'tools', 'tools'],
  ['chat', chat({ tool_choice: 'auto' }), 'tools', 'tool_choice'],
  ['chat', chat({ parallel_tool_calls: true }), 'tools', 'parallel_tool_calls'],
  ['chat', { model: 'fast', messages: [{ role: 'tool', tool_call_id: 'c1', content: 'r' }] }, 'tools', 'messages[0]'],
  ['chat', { model: 'fast', messages: [{ role: 'assistant', tool_calls: [{ type: 'function', id: 'c1', function: { name: 'f', arguments: '{}' } }] }] }, 'tools', 'messages[0].tool_calls'],
  ['chat', chat({}, [{ type: 'image_url', image_url: { url: 'https://example.test/a.png' } }]), 'images', 'messages[0].content[0]'],
  ['chat', chat({}, [{ type: 'file', file: { file_id: 'file-1' } }]), 'files', 'messages[0].content[0]'],
  ['chat', chat({}, [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }]), 'audio', 'messages[0].content[0]'],
  ['chat', chat({ response_format: { type: 'json_object' } }), 'structured_output', 'response_format'],
  ['chat', chat({ response_format: { type: 'json_schema', json_schema: { name: 's', schema: {} } } }), 'structured_output', 'response_format'],
  ['chat', chat({ audio: { format: 'wav', voice: 'alloy' } }), 'audio', 'audio'],
  ['chat', chat({ modalities: ['text', 'audio'] }), 'audio', 'modalities'],
  ['responses', resp({ tools: [FN_RESP] }), 'tools', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'web_search' }] }), 'web_search', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'web_search_preview', search_context_size: 'low' }] }), 'web_search', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }), 'file_search', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] }), 'code_interpreter', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'image_generation', quality: 'low' }] }), 'image_generation', 'tools[0]'],
  ['responses', resp({ tools: [{ type: 'computer_use_preview', display_width: 800, display_height: 600, environment: 'browser' }] }), 'computer_use', 'tools[0]'],
  ['responses', resp({ tool_choice: { type: 'web_search_preview' } }), 'web_search', 'tool_choice'],
  ['responses', resp({ tool_choice: { type: 'function', name: 'f' } }), 'tools', 'tool_choice'],
  ['responses', resp({}, [{ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }]), 'tools', 'input[0]'],
  ['responses', resp({}, [{ type: 'function_call_output', call_id: 'c1', output: 'r' }]), 'tools', 'input[0]'],
  ['responses', resp({}, [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.test/a.png' }] }]), 'images', 'input[0].content[0]'],
  ['responses', resp({}, [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }]), 'files', 'input[0].content[0]'],
  ['responses', resp({ text: { format: { type: 'json_schema', name: 's', schema: {} } } }), 'structured_output', 'text.format'],
  ['messages', msgs({ tools: [FN_MSGS] }), 'tools', 'tools'],
  ['messages', msgs({ tool_choice: { type: 'auto' } }), 'tools', 'tool_choice'],
  ['messages', { model: 'claude', max_tokens: 10, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'f', input: {} }] }] }, 'tools', 'messages[0].content[0]'],
  ['messages', msgs({}, [{ type: 'tool_result', tool_use_id: 't1', content: 'r' }]), 'tools', 'messages[0].content[0]'],
  ['messages', msgs({}, [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }]), 'images', 'messages[0].content[0]'],
  ['messages', msgs({}, [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'doc' } }]), 'files', 'messages[0].content[0]'],
  ['messages', msgs({ output_config: { format: { type: 'json_schema', schema: {} } } }), 'structured_output', 'output_config.format'],
];

describe('capability allowlists (validateRequest)', () => {
  for (const [endpoint, body, capability, param] of CASES) {
    it(`${endpoint}: refuses ${param} (${capability}) when the model's list leaves ${capability} out, and allows it when listed`, () => {
      refused(endpoint, body, policy({ '*': [] }), capability, param);
      // Only another capability listed is still a refusal.
      const other = capability === 'images' ? 'files' : 'images';
      refused(endpoint, body, policy({ fast: [other], claude: [other] }), capability, param);
      allowed(endpoint, body, policy({ fast: [capability], claude: [capability] }));
    });
  }

  it('uses the model\'s own entry before "*", and "*" for models not named', () => {
    const body = chat({ tools: [FN_CHAT] });
    allowed('chat', body, policy({ '*': ['tools'] }));
    refused('chat', body, policy({ fast: [], '*': ['tools'] }), 'tools', 'tools');
    allowed('chat', body, policy({ fast: ['tools'], '*': [] }));
    refused('chat', body, policy({ claude: ['tools'] }), 'tools', 'tools');
  });

  it('overrides the legacy tools/files booleans when present', () => {
    allowed('chat', chat({}, [{ type: 'image_url', image_url: { url: 'https://example.test/a.png' } }]), policy({ '*': ['images'] }, { files: false }));
    refused('chat', chat({ tools: [FN_CHAT] }), policy({ '*': [] }, { tools: true }), 'tools', 'tools');
  });

  it('keeps the legacy booleans when capabilities is absent, and keeps built-in tools refused under tools: true', () => {
    assert.throws(() => validateRequest('chat', chat({ tools: [FN_CHAT] }), policy(undefined), ROUTED), { code: 'policy_tools_not_allowed' });
    allowed('chat', chat({ tools: [FN_CHAT] }), policy(undefined, { tools: true }));
    allowed('responses', resp({ tools: [FN_RESP] }), policy(undefined, { tools: true }));
    refused('responses', resp({ tools: [{ type: 'web_search' }] }), policy(undefined, { tools: true }), 'web_search', 'tools[0]');
    allowed('chat', chat({ response_format: { type: 'json_object' } }), policy(undefined));
  });

  it('lets embeddings through whatever the list says (they carry no capability)', () => {
    allowed('embeddings', { model: 'fast', input: 'hi' }, policy({ '*': [] }));
  });

  it('still applies params: a listed capability does not allow an unlisted optional field', () => {
    const p = { ...policy({ '*': ['structured_output'] }), params: [] };
    assert.throws(() => validateRequest('chat', chat({ response_format: { type: 'json_object' } }), p, ROUTED), { code: 'policy_param_not_allowed' });
  });

  it('refuses unknown capability names and malformed lists in config', () => {
    assert.deepEqual(checkPolicyOverride({ capabilities: { fast: ['teleport'] } }, BASE).problems.length, 1);
    assert.deepEqual(checkPolicyOverride({ capabilities: ['tools'] }, BASE).problems.length, 1);
    assert.deepEqual(checkPolicyOverride({ capabilities: { fast: 'tools' } }, BASE).problems.length, 1);
    assert.equal(checkPolicyOverride({ capabilities: null }, policy({ '*': ['tools'] })).policy.capabilities, undefined);
  });
});

describe('capability allowlists over HTTP', () => {
  let h: Harness;
  let key: string;
  before(async () => {
    h = await startHarness();
    ({ key } = await h.tenantKey('caps-tenant', { tools: true, capabilities: { fast: ['tools'] } }));
  });
  after(async () => {
    await h.close();
  });

  it('answers 403 policy_capability_not_allowed for a built-in tool outside the list, without calling the upstream', async () => {
    const before = h.mock.received.length;
    const res = await postJson(`${h.url}/v1/responses`, key, {
      model: 'fast',
      input: 'hi',
      tools: [{ type: 'web_search_preview' }],
    });
    assert.equal(res.status, 403);
    assert.equal(res.json.error.code, 'policy_capability_not_allowed');
    assert.equal(res.json.error.param, 'tools[0]');
    assert.match(res.json.error.message, /web_search/);
    assert.equal(h.mock.received.length, before);
  });

  it('lets an allowed capability through to the upstream', async () => {
    const before = h.mock.received.length;
    const res = await postJson(`${h.url}/v1/chat/completions`, key, {
      model: 'fast',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [FN_CHAT],
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(h.mock.received.length, before + 1);
  });
});
