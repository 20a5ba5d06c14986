/**
 * The secret detector's rules against their fixtures (test/fixtures/detect/fixtures.ts, all FAKE):
 * every true positive is found by its own rule and by no other, no false positive is found by any
 * rule, and the engine's offsets, masking and fingerprints hold.
 */
import { looksLikeKey, looksLikeKnownKey } from '../src/detect/key-shape.js';
import { requestIdFrom } from '../src/server/request-id.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  RULES, createDetector, findSecrets, fingerprintSecret, hasSecret, maskSecret, maskSecretsIn, matchRule, shannonEntropy,
} from '../src/detect/detector.js';
import { base62, crc32, githubChecksumOk } from '../src/detect/rules.js';
import { FAKE, FIXTURES } from './fixtures/detect/fixtures.js';

describe('detector rules', () => {
  it('gives every rule a source, true-positive and false-positive fixtures', () => {
    const ids = RULES.map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'rule ids are unique');
    for (const rule of RULES) {
      assert.ok(rule.source.length > 10, `${rule.id} names its source`);
      const fx = FIXTURES[rule.id];
      assert.ok(fx, `${rule.id} has fixtures`);
      assert.ok(fx.tp.length >= 1 && fx.fp.length >= 1, `${rule.id} has tp and fp fixtures`);
    }
    for (const id of Object.keys(FIXTURES)) assert.ok(ids.includes(id), `fixtures for unknown rule ${id}`);
  });

  it('covers every vendor the detector promises', () => {
    const ids = new Set(RULES.map((r) => r.id));
    for (const id of [
      'openai-legacy-key', 'openai-project-key', 'openai-service-account-key', 'openai-admin-key', 'anthropic-api-key', 'anthropic-admin-key',
      'google-api-key', 'azure-openai-key', 'azure-ai-services-key', 'azure-annotated-key', 'aws-access-key-id', 'aws-secret-access-key', 'huggingface-token', 'groq-api-key',
      'mistral-api-key', 'cohere-api-key', 'replicate-api-token', 'xai-api-key', 'deepseek-api-key', 'perplexity-api-key',
      'openrouter-api-key', 'github-pat', 'slack-bot-token', 'stripe-secret-key', 'private-key', 'jwt', 'keywarden-tenant-key',
      'keywarden-admin-token',
    ]) assert.ok(ids.has(id), id);
  });

  for (const rule of RULES) {
    const fx = FIXTURES[rule.id];
    if (!fx) continue;
    describe(rule.id, () => {
      it('finds each true positive once, under this rule only', () => {
        for (const line of fx.tp) {
          const found = findSecrets(line);
          assert.deepEqual(found.map((f) => f.ruleId), [rule.id], `on: ${line.slice(0, 60)}`);
        }
      });
      it('reports nothing on its false positives (under any rule)', () => {
        for (const line of fx.fp) assert.deepEqual(findSecrets(line).map((f) => f.ruleId), [], `on: ${line.slice(0, 60)}`);
      });
      it("does not fire on any other rule's true positives, even on its own", () => {
        for (const [otherId, other] of Object.entries(FIXTURES)) {
          if (otherId === rule.id) continue;
          for (const line of other.tp) {
            assert.deepEqual(matchRule(rule, line).map((f) => f.ruleId), [], `${rule.id} fired on a ${otherId} fixture`);
          }
        }
      });
    });
  }
});

describe('detector engine', () => {
  it('reports 1-based line and column, and offsets that cover the secret', () => {
    const text = `first line\n  token = ${FAKE.githubPat}\nthird ${FAKE.awsId} end\n`;
    const found = findSecrets(text);
    assert.deepEqual(found.map((f) => [f.ruleId, f.line, f.column]), [['github-pat', 2, 11], ['aws-access-key-id', 3, 7]]);
    assert.equal(text.slice(found[0]!.start, found[0]!.end), FAKE.githubPat);
    assert.equal(text.slice(found[1]!.start, found[1]!.end), FAKE.awsId);
  });

  it('never puts the secret in a finding: masked form and fingerprint only', () => {
    const found = findSecrets(`k=${FAKE.anthropic}`);
    assert.equal(found.length, 1);
    const json = JSON.stringify(found);
    assert.ok(!json.includes(FAKE.anthropic.slice(8, 30)), 'no part of the secret beyond the masked head');
    assert.equal(found[0]!.masked, 'sk-ant-a****');
    assert.equal(found[0]!.fingerprint, `sha256:${createHash('sha256').update(FAKE.anthropic).digest('hex').slice(0, 16)}`);
  });

  it('masks short secrets entirely and long ones to at most 8 characters', () => {
    assert.equal(maskSecret('short'), '****');
    assert.equal(maskSecret('abcdefghijklmnop'), 'abcd****');
    assert.equal(maskSecret(FAKE.openaiProject), 'sk-proj-****');
    assert.match(fingerprintSecret('x'), /^sha256:[0-9a-f]{16}$/);
  });

  it('fingerprints a PEM key by its body, so a file and an escaped log line agree', () => {
    const file = findSecrets(FIXTURES['private-key']!.tp[0]!);
    const escaped = findSecrets(FIXTURES['private-key']!.tp[3]!);
    assert.equal(file.length, 1);
    assert.equal(escaped.length, 1);
    assert.equal(file[0]!.fingerprint, escaped[0]!.fingerprint);
  });

  it('resolves overlaps to one finding per secret', () => {
    const text = `AZURE_OPENAI_API_KEY=${FAKE.azureHex} and OPENROUTER=${FAKE.openrouter}`; // FAKE values
    assert.deepEqual(findSecrets(text).map((f) => f.ruleId), ['azure-openai-key', 'openrouter-api-key']);
  });

  it('needs the keyword nearby for keyword-context rules', () => {
    assert.equal(findSecrets(`MISTRAL_API_KEY=${FAKE.mistral}`).length, 1);
    assert.equal(findSecrets(`SOME_API_KEY=${FAKE.mistral}`).length, 0);
    assert.equal(findSecrets(`mistral settings ${'.'.repeat(300)} api_key=${FAKE.mistral}`).length, 0, 'too far from the keyword');
  });

  describe('Azure OpenAI / AI services keys', () => {
    // Built at runtime from a hash so that no key-shaped literal sits in this file (the repository
    // scans itself): FAKE, TEST-ONLY values in Microsoft's 84-character annotated-key shape.
    const base62 = (seed: string, n: number) => createHash('sha512').update(seed).digest('base64').replace(/[+/=]/g, '').slice(0, n);
    const fakeAzureKey = (seed: string, signature: string) =>
      `${base62(`${seed}-random`, 52)}${'JQQJ'}99AK${base62(`${seed}-middle`, 16)}${signature}${base62(`${seed}-tail`, 4)}`;

    it('finds an 84-character Azure AI services key by its JQQJ99 marker and ACOG signature', () => {
      const key = fakeAzureKey('TEST-ONLY one', 'ACOG');
      assert.equal(key.length, 84);
      const text = `AZURE_OPENAI_ENDPOINT=https://example.openai.azure.com/\nAZURE_OPENAI_API_KEY=${key}\n`;
      const found = findSecrets(text);
      assert.deepEqual(found.map((f) => [f.ruleId, f.line]), [['azure-ai-services-key', 2]]);
      assert.equal(text.slice(found[0]!.start, found[0]!.end), key);
      assert.equal(found[0]!.fingerprint, fingerprintSecret(key));
      // in a log line with no key-like name at all: the marker is enough
      assert.equal(maskSecretsIn(`upstream call header ${key} status=401`), `upstream call header [azure-ai-services-key:${key.slice(0, 8)}****] status=401`);
    });

    it('reports another Azure service signature under the generic annotated-key rule', () => {
      assert.deepEqual(findSecrets(`PAT=${fakeAzureKey('TEST-ONLY two', 'AZDO')}`).map((f) => f.ruleId), ['azure-annotated-key']);
    });

    it('reports nothing for 84 random base64 characters, a git SHA, a UUID or a 32-hex value with no Azure keyword', () => {
      const random84 = createHash('sha512').update('TEST-ONLY random').digest('base64').slice(0, 84);
      assert.equal(random84.length, 84);
      const sha = createHash('sha1').update('TEST-ONLY commit').digest('hex');
      const hex32 = createHash('md5').update('TEST-ONLY hex').digest('hex');
      for (const line of [
        `AZURE_OPENAI_API_KEY=${random84}`,
        `api_key="${random84}"`,
        `AZURE_OPENAI_API_KEY=${sha}`,
        `azure deploy commit ${sha}`,
        'AZURE_OPENAI_API_KEY=0f8fad5b-d9cb-469f-a165-70867728950e',
        `SOME_API_KEY=${hex32}`,
        `x-api-key: ${hex32}`,
        `checksum ${hex32}`,
      ]) assert.deepEqual(findSecrets(line).map((f) => f.ruleId), [], `on: ${line.slice(0, 40)}`);
    });

    it('takes a 32-hex value only next to an Azure or OpenAI keyword and a key-like name', () => {
      const hex32 = createHash('md5').update('TEST-ONLY hex').digest('hex');
      assert.deepEqual(findSecrets(`AZURE_OPENAI_API_KEY=${hex32}`).map((f) => f.ruleId), ['azure-openai-key']);
      assert.deepEqual(findSecrets(`export OPENAI_API_KEY=${hex32}`).map((f) => f.ruleId), ['azure-openai-key']);
      assert.deepEqual(findSecrets(`azure:\n  api-key: "${hex32}"`).map((f) => f.ruleId), ['azure-openai-key']);
      assert.equal(findSecrets(`azure region eastus ${'.'.repeat(200)} api_key=${hex32}`).length, 0, 'too far from the keyword');
      assert.equal(findSecrets(`AZURE_OPENAI_API_VERSION=${hex32}`).length, 0, 'not assigned to a key-like name');
    });
  });

  it('masks secrets in place for log scrubbing, leaving other text as it was', () => {
    const out = maskSecretsIn(`user=alice key=${FAKE.tenantKey} status=401`);
    assert.equal(out, 'user=alice key=[keywarden-tenant-key:kw_r95r1****] status=401');
    assert.equal(maskSecretsIn('nothing to see'), 'nothing to see');
    assert.equal(hasSecret(`x ${FAKE.stripeLive}`), true);
    assert.equal(hasSecret('sk- AKIA ghp_ eyJ -----BEGIN anchors alone'), false);
  });

  it('checks the GitHub CRC32 checksum in base62', () => {
    assert.equal(crc32('123456789'), 0xcbf43926, 'CRC-32 check value');
    assert.equal(base62(61, 2), '0z');
    assert.equal(githubChecksumOk(FAKE.githubPat), true);
    assert.equal(githubChecksumOk(FAKE.githubPatBadChecksum), false);
  });

  it('measures entropy in bits per character', () => {
    assert.equal(shannonEntropy('aaaa'), 0);
    assert.equal(shannonEntropy('abcd'), 2);
  });

  it('refuses a rule set with a duplicate id or a rule with neither anchors nor keywords', () => {
    const rule = RULES[0]!;
    assert.throws(() => createDetector([rule, rule]), /duplicate/);
    assert.throws(() => createDetector([{ ...rule, anchors: [] }]), /anchors or keywords/);
  });

  it('finds nothing in ordinary source text and logs', () => {
    const text = [
      'import { createHash } from "node:crypto";',
      '{"level":30,"time":1700000000000,"msg":"request completed","tenant":"acme","status":200,"ms":12}',
      'commit 3f2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a',
      'const task = "disk-usage"; // sk- prefix mentioned in docs',
    ].join('\n');
    assert.deepEqual(findSecrets(text), []);
  });
});

describe('key-shaped names and request ids', () => {
  it('treats a long run mixing letters and digits as key material, but not names built of words and short numbers', () => {
    for (const key of ['0123456789abcdef0123456789abcdef', 'hf_FAKEtestONLY0123456789abcdefghij', 'glpat-FAKE0TEST0ONLY0abcdefgh', 'a1B2c3D4e5F6g7H8i9J0k1L2']) {
      assert.equal(looksLikeKey(key), true, key);
    }
    for (const name of ['temperature', 'max_completion_tokens', 'claude-3-5-haiku-20241022', 'text-embedding-3-small', 'customer_tier', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ']) {
      assert.equal(looksLikeKey(name), false, name);
    }
  });

  it('keeps random-looking request ids (trace ids) and replaces ones in a known key format', () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    assert.equal(looksLikeKnownKey(traceId), false);
    assert.equal(requestIdFrom(traceId), traceId);
    assert.equal(requestIdFrom('req-2026-11-27-000123'), 'req-2026-11-27-000123');
    for (const key of ['kw_abcd1234efgh5678_FAKEtestONLYsecret0123456789', 'sk-FAKE-TEST-ONLY-0123456789abcdef']) {
      const id = requestIdFrom(key);
      assert.notEqual(id, key);
      assert.match(id, /^[0-9a-f-]{36}$/, 'a fresh UUID instead');
    }
  });
});
