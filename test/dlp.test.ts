import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fingerprintSecret } from '../src/detect/detector.js';
import { findPii, ibanChecksumOk, luhnOk } from '../src/dlp/pii.js';
import { createDlpStage } from '../src/dlp/stage.js';
import { checkPolicyOverride, DEFAULT_POLICY } from '../src/config/validate.js';
import type { Endpoint } from '../src/providers/types.js';
import { FAKE } from './fixtures/detect/fixtures.js';
import { postJson, startHarness, type Harness } from './helpers/harness.js';

/*
 * Prompt DLP: secrets and personal data in the text a request sends to the model are masked or
 * blocked per tenant policy, on every endpoint, streamed or not, before the provider sees them.
 */

// FAKE, TEST ONLY: a detector fixture (an OpenAI project-key shape with "FAKE" inside); unlocks nothing
const SECRET = FAKE.openaiProject;
const SECRET_FP = fingerprintSecret(SECRET);
// FAKE personal data: a documentation e-mail domain, the well-known Visa test number, the ISO 13616 example IBAN
const EMAIL = 'ada.lovelace@example.org';
const CARD = '4111 1111 1111 1111';
const IBAN = 'DE89 3704 0044 0532 0130 00';

const ALL_PII = ['email', 'phone', 'card', 'iban'] as const;

// ---------------------------------------------------------------------------------------------
// PII rules
// ---------------------------------------------------------------------------------------------

describe('PII rules', () => {
  const truePositives: Array<[string, string, string]> = [
    ['pii-email', 'contact ada.lovelace@example.org please', 'ada.lovelace@example.org'],
    ['pii-email', 'x <first.last+tag@mail.example.co.uk>', 'first.last+tag@mail.example.co.uk'],
    ['pii-phone', 'ring +44 20 7946 0958 tomorrow', '+44 20 7946 0958'],
    ['pii-phone', 'us office +1 (555) 010-0199', '+1 (555) 010-0199'],
    ['pii-phone', 'call me on 020 7946 0958', '020 7946 0958'],
    ['pii-phone', 'phone: (555) 010-0199', '(555) 010-0199'],
    ['pii-phone', 'mobile 555.010.0199', '555.010.0199'],
    ['pii-card', 'card 4111 1111 1111 1111 exp 12/30', '4111 1111 1111 1111'],
    ['pii-card', 'mc 5555-5555-5555-4444', '5555-5555-5555-4444'],
    ['pii-card', 'amex 378282246310005.', '378282246310005'],
    ['pii-card', 'discover 6011111111111117', '6011111111111117'],
    ['pii-iban', 'pay to DE89 3704 0044 0532 0130 00 today', 'DE89 3704 0044 0532 0130 00'],
    ['pii-iban', 'GB82WEST12345698765432', 'GB82WEST12345698765432'],
    ['pii-iban', 'iban FR14 2004 1010 0505 0001 3M02 606.', 'FR14 2004 1010 0505 0001 3M02 606'],
  ];
  for (const [rule, text, expected] of truePositives) {
    it(`finds ${rule} in ${JSON.stringify(text)}`, () => {
      const found = findPii(text, ALL_PII);
      assert.deepEqual(found.map((m) => [m.ruleId, text.slice(m.start, m.end)]), [[rule, expected]]);
    });
  }

  const falsePositives = [
    'icon@2x.png', 'import x from "@scope/package"', 'ssh user@localhost', 'npm i pkg@1.2.3',
    'order 555-010-0199 shipped', 'on 2024-01-15 10:30', 'ip 192.168.100.200 phone', 'version 1.2.3.4', 'x+12', 'ticket 12345678901',
    '4111 1111 1111 1112', 'ts 1700000000000', '0000 0000 0000 0000', 'id 12345678901234567890123', 'pi 3.14159265358979323',
    '1234 5678 1234 5670', 'DE89 3704 0044 0532 0130 01', 'XX12 3456 7890 1234', 'DE89370400440532013000123', 'GB82 WEST 1234',
    'uuid 0f8b6a4e-2c1d-4c5e-9a7b-3d2e1f0a9b8c', 'sha 4111111111111111a', 'call at 10:30 on 2024-06-07', 'math 3+4111111111111111',
    'phone bill 2024-01-15',
  ];
  for (const text of falsePositives) {
    it(`finds nothing in ${JSON.stringify(text)}`, () => {
      assert.deepEqual(findPii(text, ALL_PII).map((m) => [m.ruleId, text.slice(m.start, m.end)]), []);
    });
  }

  it('checks card numbers with Luhn and IBANs with mod 97', () => {
    assert.equal(luhnOk('4111111111111111'), true);
    assert.equal(luhnOk('4111111111111112'), false);
    assert.equal(ibanChecksumOk('DE89370400440532013000'), true);
    assert.equal(ibanChecksumOk('DE88370400440532013000'), false);
  });

  it('runs only the rules it is given', () => {
    assert.deepEqual(findPii(`${EMAIL} ${CARD}`, ['card']).map((m) => m.ruleId), ['pii-card']);
  });
});

// ---------------------------------------------------------------------------------------------
// Policy and the stage as a function
// ---------------------------------------------------------------------------------------------

describe('dlp policy', () => {
  it('is off by default and keeps unset fields from the base', () => {
    assert.deepEqual(DEFAULT_POLICY.dlp, { secrets: 'off', pii: 'off', piiRules: ALL_PII });
    const { policy, problems } = checkPolicyOverride({ dlp: { secrets: 'block' } }, DEFAULT_POLICY);
    assert.deepEqual(problems, []);
    assert.deepEqual(policy.dlp, { secrets: 'block', pii: 'off', piiRules: ALL_PII });
  });

  it('refuses an unknown mode, rule or field, naming the path and not the value', () => {
    const { problems } = checkPolicyOverride({ dlp: { secrets: 'redact', pii_rules: ['email', 'ssn'], extra: 1 } }, DEFAULT_POLICY);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('policy.dlp.secrets: must be one of off, mask, block')));
    assert.ok(problems.some((p) => p.startsWith('policy.dlp.pii_rules:')));
    assert.ok(problems.some((p) => p.startsWith('policy.dlp.extra: unknown field')));
  });
});

describe('dlp stage (apply)', () => {
  const stage = createDlpStage({});
  const body = () => ({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: `key ${SECRET} mail ${EMAIL}` }] }] });

  it('returns the very same body when dlp is off', () => {
    const b = body();
    const r = stage.apply('chat', b, { secrets: 'off', pii: 'off', piiRules: ALL_PII });
    assert.equal(r.body, b);
    assert.equal(r.action, 'none');
  });

  it('masks into a copy and never mutates the client body', () => {
    const b = body();
    const before = JSON.stringify(b);
    const r = stage.apply('chat', b, { secrets: 'mask', pii: 'mask', piiRules: ALL_PII });
    assert.equal(JSON.stringify(b), before);
    assert.equal(r.action, 'mask');
    const text = (r.body as any).messages[0].content[0].text as string;
    assert.equal(text, 'key [REDACTED:openai-project-key] mail [REDACTED:pii-email]');
    assert.deepEqual(r.findings.map((f) => [f.ruleId, f.kind, f.path]), [
      ['openai-project-key', 'secret', 'messages[0].content[0].text'],
      ['pii-email', 'pii', 'messages[0].content[0].text'],
    ]);
    assert.equal(r.findings[0]?.fingerprint, SECRET_FP);
    assert.match(r.findings[1]?.fingerprint ?? '', /^hmac-sha256:[0-9a-f]{64}$/, 'personal data is fingerprinted with a keyed HMAC');
  });

  it('blocks on a secret even when personal data is only masked', () => {
    const r = stage.apply('chat', body(), { secrets: 'block', pii: 'mask', piiRules: ALL_PII });
    assert.equal(r.action, 'block');
    assert.equal(r.error?.code, 'dlp_secret_blocked');
    assert.equal(r.error?.param, 'messages[0].content[0].text');
    assert.ok(!r.error?.message.includes(SECRET.slice(0, 12)));
  });

  it('never echoes a free-form key of a tool input that looks like a key in the path it reports', () => {
    const b = { model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'f', input: { [SECRET]: SECRET, plain_key: 'x' } }] }] };
    const r = stage.apply('messages', b, { secrets: 'block', pii: 'off', piiRules: [] });
    assert.equal(r.action, 'block');
    assert.equal(r.error?.param, 'messages[0].content[0].input.(field)');
    assert.ok(!JSON.stringify(r.findings).includes(SECRET.slice(0, 12)), 'the key-shaped name is not in the findings');
    assert.ok(!(r.error?.message ?? '').includes(SECRET.slice(0, 12)));
  });

  it('scans only the text that reaches the model (not model names, ids or tool schemas)', () => {
    const b = { model: SECRET, messages: [{ role: 'assistant', content: null, tool_calls: [{ type: 'function', id: SECRET, function: { name: 'f', arguments: `{"k":"${SECRET}"}` } }] }] };
    const r = stage.apply('chat', b, { secrets: 'mask', pii: 'off', piiRules: [] });
    assert.deepEqual(r.findings.map((f) => f.path), ['messages[0].tool_calls[0].function.arguments']);
    assert.equal((r.body as any).model, SECRET);
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: every endpoint, whole and streamed, each mode
// ---------------------------------------------------------------------------------------------

interface Shape {
  endpoint: Endpoint;
  path: string;
  /** the JSON path the finding is reported at */
  param: string;
  stream: boolean;
  body(text: string, stream: boolean): Record<string, unknown>;
  headers(key: string): Record<string, string>;
}

const openai = (key: string) => ({ authorization: `Bearer ${key}` });
const anthropic = (key: string) => ({ 'x-api-key': key, 'anthropic-version': '2023-06-01' });

const SHAPES: Shape[] = [];
for (const stream of [false, true]) {
  SHAPES.push(
    {
      endpoint: 'chat', path: '/v1/chat/completions', param: 'messages[1].content', stream, headers: openai,
      body: (text, s) => ({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: text }], ...(s ? { stream: true } : {}) }),
    },
    {
      endpoint: 'responses', path: '/v1/responses', param: 'input[0].content[0].text', stream, headers: openai,
      body: (text, s) => ({ model: 'gpt-4o-mini', input: [{ role: 'user', content: [{ type: 'input_text', text }] }], ...(s ? { stream: true } : {}) }),
    },
    {
      endpoint: 'messages', path: '/v1/messages', param: 'system', stream, headers: anthropic,
      body: (text, s) => ({ model: 'claude-3-5-haiku-latest', max_tokens: 32, system: text, messages: [{ role: 'user', content: 'hi' }], ...(s ? { stream: true } : {}) }),
    },
  );
}
SHAPES.push({
  endpoint: 'embeddings', path: '/v1/embeddings', param: 'input[1]', stream: false, headers: openai,
  body: (text) => ({ model: 'text-embedding-3-small', input: ['first', text] }),
});

describe('prompt DLP on the request path', () => {
  let h: Harness;
  const keys: Record<string, string> = {};

  before(async () => {
    h = await startHarness();
    keys['off'] = h.key;
    keys['secrets-mask'] = (await h.tenantKey('secrets-mask', { dlp: { secrets: 'mask' } })).key;
    keys['secrets-block'] = (await h.tenantKey('secrets-block', { dlp: { secrets: 'block' } })).key;
    keys['pii-mask'] = (await h.tenantKey('pii-mask', { dlp: { pii: 'mask' } })).key;
    keys['pii-block'] = (await h.tenantKey('pii-block', { dlp: { pii: 'block', pii_rules: ['card', 'iban'] } })).key;
    keys['tools-mask'] = (await h.tenantKey('tools-mask', { tools: true, dlp: { secrets: 'mask', pii: 'mask' } })).key;
  });

  after(async () => {
    await h?.close();
  });

  /** The body the mock provider received for the request carrying this marker, as JSON text (undefined: never sent). */
  function upstreamBody(marker: string): string | undefined {
    const hit = h.mock.received.find((r) => JSON.stringify(r.body ?? null).includes(marker));
    return hit ? JSON.stringify(hit.body) : undefined;
  }

  async function send(shape: Shape, tenant: string, text: string) {
    const marker = `m-${randomUUID()}`;
    const res = await postJson(h.url + shape.path, undefined, shape.body(`${marker} ${text}`, shape.stream), shape.headers(keys[tenant] as string));
    return { res, marker, upstream: upstreamBody(marker) };
  }

  async function auditRows(requestId: string | null) {
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listAudit({ limit: 10_000 });
    return rows.filter((r) => r.requestId === requestId && r.action.startsWith('dlp.'));
  }

  for (const shape of SHAPES) {
    const label = `${shape.endpoint}${shape.stream ? ' (stream)' : ''}`;

    it(`${label}: off forwards the text untouched and writes no dlp audit row`, async () => {
      const { res, upstream } = await send(shape, 'off', `my key ${SECRET}`);
      assert.equal(res.status, 200, res.text);
      assert.ok(upstream?.includes(SECRET), 'the provider got the text as sent');
      assert.deepEqual(await auditRows(res.headers.get('x-request-id')), []);
    });

    it(`${label}: mask replaces the secret before the provider sees it, and audits the fingerprint only`, async () => {
      const { res, upstream } = await send(shape, 'secrets-mask', `my key ${SECRET} thanks`);
      assert.equal(res.status, 200, res.text);
      if (shape.stream) assert.match(res.text, /data: /);
      assert.ok(upstream !== undefined, 'the request was forwarded');
      assert.ok(!upstream.includes(SECRET) && !upstream.includes(SECRET.slice(8, 40)), 'the provider never sees the secret');
      assert.ok(upstream.includes('my key [REDACTED:openai-project-key] thanks'));
      const rows = await auditRows(res.headers.get('x-request-id'));
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.action, 'dlp.mask');
      assert.equal(rows[0]?.details['rules'], 'openai-project-key');
      assert.equal(rows[0]?.details['fingerprints'], SECRET_FP);
      assert.equal(rows[0]?.details['paths'], shape.param);
      assert.ok(!JSON.stringify(rows).includes(SECRET.slice(8, 40)));
    });

    it(`${label}: block answers 400 dlp_secret_blocked, never calls the provider, and audits the fingerprint only`, async () => {
      const { res, marker, upstream } = await send(shape, 'secrets-block', `my key ${SECRET}`);
      assert.equal(res.status, 400, res.text);
      const error = (res.json?.['error'] ?? {}) as Record<string, unknown>;
      assert.equal(error['code'], 'dlp_secret_blocked');
      assert.match(String(error['message']), /openai-project-key/);
      if (shape.endpoint !== 'messages') assert.equal(error['param'], shape.param);
      assert.ok(!res.text.includes(SECRET.slice(8, 40)) && !res.text.includes(marker), 'the answer does not echo the request');
      assert.equal(upstream, undefined, 'the provider was not called');
      const rows = await auditRows(res.headers.get('x-request-id'));
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.action, 'dlp.block');
      assert.equal(rows[0]?.outcome, 'failure');
      assert.equal(rows[0]?.details['fingerprints'], SECRET_FP);
      assert.equal(rows[0]?.details['code'], 'dlp_secret_blocked');
      assert.ok(!JSON.stringify(rows).includes(SECRET.slice(8, 40)));
      await h.gateway.writer.flush();
      const usage = await h.gateway.store.records.listUsage({ limit: 10_000 });
      const row = usage.find((u) => u.requestId === res.headers.get('x-request-id'));
      assert.equal(row?.errorCode, 'dlp_secret_blocked', 'the refusal is in the ledger with its code');
    });

    it(`${label}: pii mask replaces e-mail, card and IBAN; pii block refuses a card`, async () => {
      const masked = await send(shape, 'pii-mask', `mail ${EMAIL}, card ${CARD}, iban ${IBAN}`);
      assert.equal(masked.res.status, 200, masked.res.text);
      assert.ok(masked.upstream !== undefined);
      for (const value of [EMAIL, CARD, IBAN]) assert.ok(!masked.upstream.includes(value), `the provider never sees ${value}`);
      assert.ok(masked.upstream.includes('mail [REDACTED:pii-email], card [REDACTED:pii-card], iban [REDACTED:pii-iban]'));
      const blocked = await send(shape, 'pii-block', `card ${CARD}`);
      assert.equal(blocked.res.status, 400);
      assert.equal((blocked.res.json?.['error'] as Record<string, unknown>)?.['code'], 'dlp_pii_blocked');
      assert.equal(blocked.upstream, undefined);
      // the e-mail rule is not among this tenant's rules: passed as sent
      const email = await send(shape, 'pii-block', `mail ${EMAIL}`);
      assert.equal(email.res.status, 200);
      assert.ok(email.upstream?.includes(EMAIL));
    });
  }

  it('masks tool results and function outputs too (chat tool message, responses function_call_output, messages tool_result)', async () => {
    const key = keys['tools-mask'] as string;
    const marker = `m-${randomUUID()}`;
    const chat = await postJson(`${h.url}/v1/chat/completions`, key, {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: `${marker} look it up` },
        { role: 'assistant', content: null, tool_calls: [{ type: 'function', id: 'c1', function: { name: 'lookup', arguments: `{"q":"${EMAIL}"}` } }] },
        { role: 'tool', tool_call_id: 'c1', content: `found ${SECRET}` },
      ],
    });
    assert.equal(chat.status, 200, chat.text);
    const responses = await postJson(`${h.url}/v1/responses`, key, {
      model: 'gpt-4o-mini',
      input: [
        { role: 'user', content: `${marker} look it up` },
        { type: 'function_call', call_id: 'c1', name: 'lookup', arguments: `{"q":"${EMAIL}"}` },
        { type: 'function_call_output', call_id: 'c1', output: `found ${SECRET}` },
      ],
    });
    assert.equal(responses.status, 200, responses.text);
    const messages = await postJson(`${h.url}/v1/messages`, undefined, {
      model: 'claude-3-5-haiku-latest', max_tokens: 32,
      messages: [
        { role: 'user', content: `${marker} look it up` },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: EMAIL } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: `found ${SECRET}` }] }] },
      ],
    }, anthropic(key));
    assert.equal(messages.status, 200, messages.text);
    const sent = h.mock.received.filter((r) => JSON.stringify(r.body ?? null).includes(marker)).map((r) => JSON.stringify(r.body));
    assert.equal(sent.length, 3);
    for (const text of sent) {
      assert.ok(!text.includes(SECRET) && !text.includes(EMAIL), text);
      assert.ok(text.includes('found [REDACTED:openai-project-key]'));
      assert.ok(text.includes('[REDACTED:pii-email]'));
    }
  });

  it('counts the masked text, not the secret, in what the gateway records (no value in logs or audit)', async () => {
    await h.gateway.writer.flush();
    const audit = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 10_000 }));
    const logs = h.logs.text();
    for (const value of [SECRET.slice(8, 40), EMAIL, CARD, IBAN, '4111111111111111']) {
      assert.ok(!audit.includes(value), `audit holds ${value}`);
      assert.ok(!logs.includes(value), `logs hold ${value}`);
    }
    assert.match(logs, /"event":"dlp_mask"/);
    assert.match(logs, /"event":"dlp_block"/);
  });
});
