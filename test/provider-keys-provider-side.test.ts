import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { configFromDocument } from '../src/config/load.js';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';
import { anthropicHint, mockAnthropicKeyId, mockOpenaiKeyId, openaiRedacted } from '../src/mock-provider/admin-keys.js';
import { hintMatches, parseKeyHint } from '../src/providers/key-admin.js';
import { cliEnv, runCli, type CliResult } from './helpers/cli-process.js';
import { fp } from './helpers/provider-keys-setup.js';

// Every key below is a plainly fake fixture (TEST ONLY: unlocks nothing anywhere).
const OPENAI_KEY = 'sk-fake-TEST-ONLY-provider-side-openai-key-a1b2'; // fake, TEST ONLY
const ANTHROPIC_KEY = 'sk-ant-fake-TEST-ONLY-provider-side-anthropic-e5f6'; // fake, TEST ONLY
const MANUAL_KEY = 'sk-fake-TEST-ONLY-provider-side-manual-key-m7n8'; // fake, TEST ONLY
const WRONG_ADMIN_TARGET = 'sk-fake-TEST-ONLY-provider-side-wrong-admin-w1w2'; // fake, TEST ONLY
const GONE_KEY = 'sk-fake-TEST-ONLY-provider-side-gone-key-g3g4'; // fake, TEST ONLY
// two keys with the same visible prefix and last four characters: the hints collide
const AMBIGUOUS_1 = 'sk-fake-TEST-ONLY-provider-side-ambiguous-one-zz99'; // fake, TEST ONLY
const AMBIGUOUS_2 = 'sk-fake-TEST-ONLY-provider-side-ambiguous-two-zz99'; // fake, TEST ONLY
const ADMIN_KEY = 'sk-admin-fake-TEST-ONLY-admin-key-0000-9z8y'; // fake, TEST ONLY
const WRONG_ADMIN_KEY = 'sk-admin-fake-TEST-ONLY-wrong-admin-key-7x6w'; // fake, TEST ONLY
// enough other keys in the project that the listing takes two pages of 100
const FILLERS = Array.from({ length: 150 }, (_, i) => `sk-fake-TEST-ONLY-provider-side-filler-${String(i).padStart(3, '0')}-f${String(i).padStart(3, '0')}`); // fake, TEST ONLY

const SECRETS = [OPENAI_KEY, ANTHROPIC_KEY, MANUAL_KEY, WRONG_ADMIN_TARGET, GONE_KEY, AMBIGUOUS_1, AMBIGUOUS_2, ADMIN_KEY, WRONG_ADMIN_KEY];
const PROJECT = 'proj_mockTEST';

interface ListedKey { id: string; provider: string; state: string; fingerprint: string }

/** No key value, redacted hint or tail of a key appears in `text`. */
function assertNoSecrets(text: string): void {
  for (const value of SECRETS) {
    assert.ok(!text.includes(value), 'a key value was printed');
    assert.ok(!text.includes(openaiRedacted(value)) && !text.includes(anthropicHint(value)), 'a redacted key hint was printed');
    assert.ok(!text.includes(value.slice(0, 12)), 'the start of a key was printed');
  }
}

describe('provider-keys revoke --provider-side through the providers\' admin APIs', () => {
  let dir: string;
  let cfg: string;
  let mock: MockProvider;
  const outputs: string[] = [];
  const secretFile = (name: string, value: string): string => {
    const path = join(dir, name);
    writeFileSync(path, value, { mode: 0o600 });
    return `file:${path}`;
  };
  const cli = async (args: string[]): Promise<CliResult> => {
    const r = await runCli([...args, '--config', cfg], { cwd: dir, env: cliEnv({ NODE_ENV: 'test' }) });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const keyOf = async (provider: string): Promise<ListedKey> => {
    const r = await cli(['provider-keys', 'list', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const row = (JSON.parse(r.stdout) as ListedKey[]).find((k) => k.provider === provider);
    assert.ok(row, `no register row for ${provider}`);
    return row;
  };
  /** GET /v1/models at the mock with `key` in the provider's header: the provider's view of the key. */
  const modelsStatus = async (type: 'openai' | 'anthropic', key: string): Promise<number> => {
    const res = await request(`${mock.url}/v1/models`, {
      headers: type === 'openai' ? { authorization: `Bearer ${key}` } : { 'x-api-key': key, 'anthropic-version': '2023-06-01' },
    });
    await res.body.dump();
    return res.statusCode;
  };
  const adminCalls = () => mock.received.filter((r) => r.path.startsWith('/v1/organization/projects/'));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-pk-side-'));
    mock = await createMockProvider({
      apiKey: [...FILLERS.slice(0, 75), OPENAI_KEY, ...FILLERS.slice(75), ANTHROPIC_KEY, MANUAL_KEY, WRONG_ADMIN_TARGET, GONE_KEY, AMBIGUOUS_1, AMBIGUOUS_2],
      adminKey: ADMIN_KEY,
    });
    const admin = secretFile('admin-key', ADMIN_KEY);
    const openai = (name: string, key: string, extra: Record<string, unknown> = { admin_key: admin, project_id: PROJECT }) =>
      ({ type: 'openai', base_url: `${mock.url}/v1`, api_key: secretFile(name, key), timeout: '5s', ...extra });
    cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({
      store: `sqlite:${join(dir, 'k.db')}`,
      admin: { token: secretFile('admin-token', 'fake-admin-token-TEST-ONLY-0000000000') }, // fake, TEST ONLY
      audit: { prompt_hmac_key: secretFile('hmac', 'fake-hmac-TEST-ONLY-000000000000000') }, // fake, TEST ONLY
      log: { level: 'silent' },
      providers: {
        openai: openai('openai-key', OPENAI_KEY),
        anthropic: { type: 'anthropic', base_url: mock.url, api_key: secretFile('anthropic-key', ANTHROPIC_KEY), admin_key: admin, timeout: '5s' },
        'openai-manual': openai('manual-key', MANUAL_KEY, {}),
        'openai-wrong-admin': openai('wrong-admin-target', WRONG_ADMIN_TARGET, { admin_key: secretFile('wrong-admin', WRONG_ADMIN_KEY), project_id: PROJECT }),
        'openai-gone': openai('gone-key', GONE_KEY),
        'openai-ambiguous': openai('ambiguous-key', AMBIGUOUS_1),
      },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
    }), { mode: 0o600 });
  });
  after(async () => {
    await mock?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deletes an OpenAI project key found by its redacted value across pages, after which OpenAI refuses it', async () => {
    assert.equal(await modelsStatus('openai', OPENAI_KEY), 200);
    const key = await keyOf('openai');
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^revoked ${key.id} \\(openai, ${key.fingerprint}\\)`, 'm'));
    assert.match(r.stdout, new RegExp(`provider-side: revoked key ${mockOpenaiKeyId(OPENAI_KEY)} at openai \\(project ${PROJECT}\\)`));
    assert.match(r.stdout, /provider-side: checked: openai now refuses the key/);
    assert.doesNotMatch(r.stdout, /MANUAL STEP/);
    // two list pages (150+ keys), then one DELETE of exactly our key, with the admin key as Bearer
    const calls = adminCalls();
    assert.deepEqual(calls.map((c) => c.method), ['GET', 'GET', 'DELETE']);
    assert.equal(calls[2]!.path, `/v1/organization/projects/${PROJECT}/api_keys/${mockOpenaiKeyId(OPENAI_KEY)}`);
    assert.ok(calls.every((c) => c.headers['authorization'] === `Bearer ${ADMIN_KEY}`));
    assert.equal(await modelsStatus('openai', OPENAI_KEY), 401);
    // nothing else was deleted: the neighbours still work, and the same value still works at the other provider
    assert.equal(await modelsStatus('openai', FILLERS[74]!), 200);
    assert.equal(await modelsStatus('openai', FILLERS[75]!), 200);
    assert.equal(await modelsStatus('anthropic', OPENAI_KEY), 200);
    assert.equal((await keyOf('openai')).state, 'revoked');
  });

  it('deactivates an Anthropic key by its partial_key_hint, after which Anthropic refuses it', async () => {
    assert.equal(await modelsStatus('anthropic', ANTHROPIC_KEY), 200);
    const key = await keyOf('anthropic');
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`provider-side: revoked key ${mockAnthropicKeyId(ANTHROPIC_KEY)} at anthropic`));
    assert.match(r.stdout, /provider-side: checked: anthropic now refuses the key/);
    const calls = mock.received.filter((c) => c.path.startsWith('/v1/organizations/api_keys'));
    // the key is on the second page of 100
    assert.deepEqual(calls.map((c) => [c.method, c.path]), [
      ['GET', '/v1/organizations/api_keys'],
      ['GET', '/v1/organizations/api_keys'],
      ['POST', `/v1/organizations/api_keys/${mockAnthropicKeyId(ANTHROPIC_KEY)}`],
    ]);
    assert.deepEqual(calls[2]!.body, { status: 'inactive' });
    assert.ok(calls.every((c) => c.headers['x-api-key'] === ADMIN_KEY && c.headers['anthropic-version'] !== undefined));
    assert.equal(await modelsStatus('anthropic', ANTHROPIC_KEY), 401);
    assert.equal(await modelsStatus('anthropic', MANUAL_KEY), 200);
  });

  it('running it again reports an Anthropic key already inactive, and an OpenAI key no longer listed as a failure', async () => {
    const anthropic = await cli(['provider-keys', 'revoke', (await keyOf('anthropic')).id, '--provider-side']);
    assert.equal(anthropic.code, 0, anthropic.stdout);
    assert.match(anthropic.stdout, /was already revoked/);
    assert.match(anthropic.stdout, new RegExp(`provider-side: key ${mockAnthropicKeyId(ANTHROPIC_KEY)} at anthropic \\(the organization\\) is already inactive`));
    mock.reset();
    const openai = await cli(['provider-keys', 'revoke', (await keyOf('openai')).id, '--provider-side']);
    assert.equal(openai.code, 1, openai.stdout);
    assert.match(openai.stdout, /provider-side: FAILED — no key at project proj_mockTEST matches this key .*MANUAL STEP: delete the key with fingerprint \w+ at https:\/\/platform\.openai\.com\/api-keys/);
    assert.equal(adminCalls().filter((c) => c.method === 'DELETE').length, 0);
  });

  it('without an admin_key it revokes locally, prints the manual step and exits 0, calling no admin API', async () => {
    const key = await keyOf('openai-manual');
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`provider-side revocation is not automated for openai-manual \\(no admin_key is configured for providers\\.openai-manual\\); MANUAL STEP: delete the key with fingerprint ${key.fingerprint} at https://platform\\.openai\\.com/api-keys`));
    assert.equal(mock.received.length, 0);
    assert.equal(await modelsStatus('openai', MANUAL_KEY), 200);
    assert.equal((await keyOf('openai-manual')).state, 'revoked');
  });

  it('a wrong admin key fails clearly with exit 1 and the manual step, deletes nothing and never echoes a key', async () => {
    const key = await keyOf('openai-wrong-admin');
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /provider-side: FAILED — the provider refused the admin key \(HTTP 401\) while listing the API keys of project proj_mockTEST; check admin_key/);
    assert.match(r.stdout, /the key is revoked in keywarden but may still work at openai-wrong-admin; MANUAL STEP: delete the key with fingerprint \w+/);
    // the mock's 401 body names the masked admin key, as OpenAI's does: it must not be relayed
    assert.doesNotMatch(r.stdout + r.stderr, /Incorrect API key|\*\*\*\*/);
    assert.ok(!(r.stdout + r.stderr).includes(WRONG_ADMIN_KEY.slice(-4)));
    assert.deepEqual(adminCalls().map((c) => c.method), ['GET']);
    assert.equal(await modelsStatus('openai', WRONG_ADMIN_TARGET), 200);
    assert.equal((await keyOf('openai-wrong-admin')).state, 'revoked');
  });

  it('refuses to choose when two provider keys match the redacted hint, and deletes neither', async () => {
    assert.equal(openaiRedacted(AMBIGUOUS_1), openaiRedacted(AMBIGUOUS_2));
    const key = await keyOf('openai-ambiguous');
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`provider-side: FAILED — 2 keys at project ${PROJECT} match this key's redacted hint \\(${mockOpenaiKeyId(AMBIGUOUS_1)}, ${mockOpenaiKeyId(AMBIGUOUS_2)}\\); refusing to choose`));
    assert.match(r.stdout, /MANUAL STEP/);
    assert.equal(adminCalls().filter((c) => c.method === 'DELETE').length, 0);
    assert.equal(await modelsStatus('openai', AMBIGUOUS_1), 200);
    assert.equal(await modelsStatus('openai', AMBIGUOUS_2), 200);
  });

  it('when the key can no longer be read through its reference it says so, prints the manual step and calls no admin API', async () => {
    const key = await keyOf('openai-gone');
    rmSync(join(dir, 'gone-key'));
    mock.reset();
    const r = await cli(['provider-keys', 'revoke', key.id, '--provider-side']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /provider-side: FAILED — the key's value can no longer be read through its reference .*MANUAL STEP: delete the key with fingerprint \w+/);
    assert.equal(mock.received.length, 0);
    assert.equal(await modelsStatus('openai', GONE_KEY), 200);
  });

  it('never prints a key, hint or admin key, and audits each attempt with ids and fingerprints only', async () => {
    assertNoSecrets(outputs.join('\n'));
    const store = openSqliteStore(`sqlite:${join(dir, 'k.db')}`);
    try {
      const rows = (await store.records.listAudit({ limit: 1000 })).filter((a) => a.action === 'provider_key.revoke_provider_side');
      assertNoSecrets(JSON.stringify(rows));
      const by = (fingerprint: string) => rows.filter((a) => a.details['fingerprint'] === fingerprint).map((a) => [a.outcome, a.details['reason'], a.details['provider_key_id']]);
      assert.deepEqual(by(fp(OPENAI_KEY)), [['success', 'revoked', mockOpenaiKeyId(OPENAI_KEY)], ['failure', 'no_match', null]]);
      assert.deepEqual(by(fp(ANTHROPIC_KEY)), [['success', 'revoked', mockAnthropicKeyId(ANTHROPIC_KEY)], ['success', 'already_inactive', mockAnthropicKeyId(ANTHROPIC_KEY)]]);
      assert.deepEqual(by(fp(MANUAL_KEY)), [['failure', 'not_configured', null]]);
      assert.deepEqual(by(fp(WRONG_ADMIN_TARGET)), [['failure', 'admin_key_refused', null]]);
      assert.deepEqual(by(fp(AMBIGUOUS_1)), [['failure', 'ambiguous_match', null]]);
      assert.deepEqual(by(fp(GONE_KEY)), [['failure', 'key_unreadable', null]]);
      assert.ok(rows.every((a) => a.actor === 'cli' && typeof a.target === 'string' && a.target.startsWith('pk_')));
    } finally {
      await store.close();
    }
  });
});

describe('provider admin key configuration and hint matching', () => {
  const base = (provider: Record<string, unknown>) => ({
    admin: { token: 'env:X' }, audit: { prompt_hmac_key: 'env:Y' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:OPENAI_API_KEY', ...provider } },
    models: { m: { provider: 'openai' } },
  });
  const problems = (provider: Record<string, unknown>): string[] => {
    try {
      configFromDocument(base(provider), 'test', {});
      return [];
    } catch (err) {
      return [...((err as { problems?: string[] }).problems ?? [String(err)])];
    }
  };

  it('accepts admin_key as a secret reference with an OpenAI project_id', () => {
    const config = configFromDocument(base({ admin_key: 'env:OPENAI_ADMIN_KEY', project_id: 'proj_abc123' }), 'test', {});
    assert.equal(config.providers['openai']?.adminKey, 'env:OPENAI_ADMIN_KEY');
    assert.equal(config.providers['openai']?.projectId, 'proj_abc123');
  });

  it('refuses a literal admin key without echoing it, an OpenAI admin_key without project_id, and a project_id with path characters', () => {
    const literal = problems({ admin_key: ADMIN_KEY, project_id: 'proj_abc' });
    assert.ok(literal.some((p) => p.startsWith('providers.openai.admin_key')), literal.join('\n'));
    assert.ok(!literal.join('\n').includes(ADMIN_KEY));
    assert.ok(problems({ admin_key: 'env:A' }).some((p) => p.startsWith('providers.openai.project_id')));
    assert.ok(problems({ admin_key: 'env:A', project_id: '../../users' }).some((p) => p.startsWith('providers.openai.project_id')));
  });

  it('matches a hint only on a visible prefix and suffix of at least three characters each', () => {
    assert.deepEqual(parseKeyHint('sk-ant-api03-R2D...igAA'), { prefix: 'sk-ant-api03-R2D', suffix: 'igAA' });
    assert.ok(hintMatches('sk-fak...a1b2', OPENAI_KEY));
    assert.ok(hintMatches('sk-fak\u2026a1b2', OPENAI_KEY));
    assert.ok(hintMatches('sk-fak****a1b2', OPENAI_KEY));
    assert.ok(!hintMatches('sk-fak...a1b3', OPENAI_KEY));
    assert.ok(!hintMatches('sk...a1b2', OPENAI_KEY), 'a two-character prefix is too weak to match on');
    assert.ok(!hintMatches('sk-fak...b2', OPENAI_KEY), 'a two-character suffix is too weak to match on');
    assert.ok(!hintMatches('sk-fak...x...a1b2', OPENAI_KEY), 'two ellipses are not a hint');
    assert.ok(!hintMatches(`${OPENAI_KEY.slice(0, 30)}...${OPENAI_KEY.slice(-30)}`, OPENAI_KEY), 'visible parts must be shorter than the key');
  });
});
