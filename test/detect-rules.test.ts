/**
 * The secret detector's rules against their fixtures (test/fixtures/detect/fixtures.ts, all FAKE):
 * every true positive is found by its own rule and by no other, no false positive is found by any
 * rule, and the engine's offsets, masking and fingerprints hold.
 */
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
      'google-api-key', 'azure-openai-key', 'aws-access-key-id', 'aws-secret-access-key', 'huggingface-token', 'groq-api-key',
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
