import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, configFromDocument, loadConfigFile } from '../src/config/load.js';
import { validateConfig } from '../src/config/validate.js';
import { configWarnings } from '../src/config/warnings.js';
import type { GatewayConfig } from '../src/config/types.js';
import { createSecretResolver } from '../src/secrets/resolver.js';
import { createEnvSource } from '../src/secrets/env-source.js';
import { createFileSource } from '../src/secrets/file-source.js';
import { SecretError } from '../src/secrets/types.js';
import { createProviderKeyPool } from '../src/secrets/provider-keys.js';
import { createSecretCache } from '../src/secrets/cache.js';
import type { SecretResolver } from '../src/secrets/resolver.js';

const cacheOver = (resolver: SecretResolver) => createSecretCache({ resolver, ttlMs: 60_000, refreshMs: 60_000 });
import { contractConfigYaml } from './helpers/config-contract.js';

// Plainly fake secrets: they unlock nothing, anywhere.
const FAKE_LITERAL_KEY = 'sk-fake-TEST-ONLY-literal-pasted-key-1234567890abcdef'; // fake, TEST ONLY
const FAKE_OPENAI_KEY = 'sk-fake-TEST-ONLY-openai-0000000000000000000000'; // fake, TEST ONLY
const FAKE_ANTHROPIC_KEY = 'sk-fake-TEST-ONLY-anthropic-00000000000000000000'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-config-000000000'; // fake, TEST ONLY
const FAKE_HMAC_KEY = 'fake-prompt-hmac-TEST-ONLY-config-00000000'; // fake, TEST ONLY

/** A minimal valid document; tests spread changes over it. */
function minimal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    admin: { token: 'env:KW_TEST_ADMIN' },
    audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_OPENAI' } },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
    ...overrides,
  };
}

function withBaseUrl(url: string): Record<string, unknown> {
  return minimal({ providers: { openai: { type: 'openai', base_url: url, api_key: 'env:KW_TEST_OPENAI' } } });
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'keywarden-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a file and then sets its mode exactly (writeFileSync's mode is filtered by the umask). */
function writeWithMode(name: string, content: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

describe('configuration validation', () => {
  it('lists every problem by its path in one go, without echoing a literal key', () => {
    const doc = {
      listen: { public: '127.0.0.1:8080', admin: 'not-an-address', extra: true },
      store: 'mysql://db',
      admin: { token: FAKE_LITERAL_KEY },
      audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
      log: { level: 'loud' },
      providers: {
        openai: {
          type: 'openai',
          base_url: 'http://api.openai.com/v1',
          api_key: FAKE_LITERAL_KEY,
          timeout: 'sixty seconds',
          retries: 3,
        },
        anthropic: { type: 'mystery', base_url: 'https://api.anthropic.com', api_key: 'env:KW_TEST_ANTHROPIC', connect_timeout: '0s' },
      },
      models: { fast: { provider: 'nowhere' } },
      tenants: { defaults: { policy: { models: ['fast'], max_body_bytes: -1, toolz: true } } },
      shutdown: { drain_timeout: 'forever' },
      surprise: 1,
    };
    const { config, problems } = validateConfig(doc);
    assert.equal(config, undefined);
    const expected = [
      'surprise: unknown field',
      'listen.extra: unknown field',
      'listen.admin: must be "host:port"',
      'store: must be sqlite:PATH',
      'admin.token: must be a secret reference',
      'log.level: must be one of',
      'providers.openai.retries: unknown field',
      'providers.openai.base_url: must be an https URL',
      'providers.openai.api_key: must be a secret reference',
      'providers.openai.timeout: must be a duration',
      'providers.anthropic.type: must be one of openai, anthropic',
      'providers.anthropic.connect_timeout: must be a duration',
      'models.fast.provider: must name a provider configured under providers',
      'tenants.defaults.policy.toolz: unknown field',
      'tenants.defaults.policy.max_body_bytes: must be a whole number',
      'tenants.defaults.policy.models[0]: names a model not configured under models',
      'shutdown.drain_timeout: must be a duration',
    ];
    for (const prefix of expected) {
      assert.ok(problems.some((p) => p.startsWith(prefix)), `missing problem "${prefix}" in:\n${problems.join('\n')}`);
    }
    // the pasted literal is named by its path, never repeated
    const all = problems.join('\n');
    assert.ok(!all.includes(FAKE_LITERAL_KEY), 'a literal key was echoed in a problem');
    assert.ok(!all.includes('sk-fake'), 'part of a literal key was echoed in a problem');
  });

  it('throws ConfigError from a file with every problem, and the message never carries the literal', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, [
      'admin:',
      `  token: ${FAKE_LITERAL_KEY}`,
      'audit:',
      '  prompt_hmac_key: env:KW_TEST_HMAC',
      'providers:',
      '  openai:',
      '    type: openai',
      '    base_url: ftp://example.com',
      `    api_key: ${FAKE_LITERAL_KEY}`,
      '    timeout: 10 minutes',
      'unknown_section: {}',
      '',
    ].join('\n'));
    let caught: unknown;
    try {
      loadConfigFile(path, {});
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError, 'expected a ConfigError');
    assert.equal(caught.problems.length, 5, caught.problems.join('\n'));
    for (const prefix of ['admin.token:', 'providers.openai.base_url: must be an https URL', 'providers.openai.api_key:',
      'providers.openai.timeout:', 'unknown_section: unknown field']) {
      assert.ok(caught.problems.some((p) => p.startsWith(prefix)), `missing "${prefix}"`);
      assert.ok(caught.message.includes(prefix), `message lacks "${prefix}"`);
    }
    assert.ok(!caught.message.includes(FAKE_LITERAL_KEY));
    assert.ok(!caught.message.includes('sk-fake'));
  });

  it('does not echo file content when the YAML cannot be parsed', () => {
    const path = join(dir, 'broken.yaml');
    writeFileSync(path, `admin:\n  token: ${FAKE_LITERAL_KEY}\n  : : [unclosed\n`);
    assert.throws(() => loadConfigFile(path, {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /is not valid YAML/);
      assert.ok(!err.message.includes(FAKE_LITERAL_KEY));
      return true;
    });
  });

  it('reports an unreadable config file as a problem, not a crash', () => {
    assert.throws(() => loadConfigFile(join(dir, 'does-not-exist.yaml'), {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems[0] ?? '', /^\(file\): cannot be read \(ENOENT\)/);
      return true;
    });
  });

  it('refuses a literal key in every secret field, whatever its shape', () => {
    for (const literal of [FAKE_LITERAL_KEY, 'hunter2-TEST-ONLY', 'env:lower-case-dash', 'env:', 'file:', 'vault:secret/x']) {
      const { problems } = validateConfig(minimal({ admin: { token: literal }, audit: { prompt_hmac_key: literal } }));
      assert.ok(problems.some((p) => p.startsWith('admin.token: must be a secret reference')), `admin.token accepted ${literal}`);
      assert.ok(problems.some((p) => p.startsWith('audit.prompt_hmac_key: must be a secret reference')));
      if (literal.length > 6) assert.ok(!problems.join('\n').includes(literal), `echoed ${literal}`);
    }
  });

  it('requires the admin token, the prompt HMAC key and at least one provider', () => {
    const { problems } = validateConfig({});
    assert.ok(problems.some((p) => p.startsWith('admin.token: is required')));
    assert.ok(problems.some((p) => p.startsWith('audit.prompt_hmac_key: is required')));
    assert.ok(problems.some((p) => p.startsWith('providers: configure at least one provider')));
  });

  it('refuses bad durations and accepts good ones', () => {
    for (const bad of ['60', '1.5s', '-5s', '0s', '5 m', '1w', 'soon', '']) {
      const doc = minimal({ providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:X', timeout: bad } } });
      const { problems } = validateConfig(doc);
      assert.ok(problems.some((p) => p.startsWith('providers.openai.timeout: must be a duration')), `accepted timeout ${JSON.stringify(bad)}`);
    }
    const cases: Array<[unknown, number]> = [['500ms', 500], ['60s', 60_000], ['5m', 300_000], ['2h', 7_200_000], [30, 30_000]];
    for (const [good, ms] of cases) {
      const doc = minimal({ providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:X', timeout: good } } });
      const { config, problems } = validateConfig(doc);
      assert.deepEqual(problems, []);
      assert.equal(config?.providers['openai']?.timeoutMs, ms);
    }
  });

  it('refuses base URLs carrying credentials, a query or a fragment', () => {
    for (const url of ['https://user:pw@api.openai.com/v1', 'https://api.openai.com/v1?key=x', 'https://api.openai.com/v1#frag', 'not a url']) {
      const { problems } = validateConfig(withBaseUrl(url));
      assert.ok(problems.some((p) => p.startsWith('providers.openai.base_url:')), `accepted ${url}`);
      assert.ok(!problems.join('\n').includes('pw@'), 'echoed URL credentials');
    }
  });

  it('returns a frozen config', () => {
    const { config } = validateConfig(minimal());
    assert.ok(config);
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.providers['openai']));
    assert.ok(Object.isFrozen(config.tenants.defaults.policy));
  });
});

describe('plain http base URLs', () => {
  it('are allowed on loopback', () => {
    for (const url of ['http://127.0.0.1:9999/v1', 'http://127.8.9.10:1234', 'http://localhost:8000/v1', 'http://[::1]:8000/v1']) {
      const { problems, config } = validateConfig(withBaseUrl(url));
      assert.deepEqual(problems, [], `refused ${url}`);
      assert.equal(config?.providers['openai']?.baseUrl.protocol, 'http:');
    }
  });

  it('are refused off loopback, including host names that merely start with 127. or localhost', () => {
    for (const url of ['http://api.openai.com/v1', 'http://10.0.0.1/v1', 'http://0.0.0.0:80', 'http://[::2]:80',
      'http://127.attacker.example/v1', 'http://127.0.0.1.nip.io/v1', 'http://localhost.attacker.example/v1']) {
      const { problems } = validateConfig(withBaseUrl(url));
      assert.ok(problems.some((p) => p.startsWith('providers.openai.base_url: must be an https URL')), `accepted ${url}: ${problems.join('; ')}`);
    }
  });

  it('keeps the base path without a trailing slash', () => {
    const { config } = validateConfig(withBaseUrl('https://api.openai.com/v1/'));
    assert.equal(config?.providers['openai']?.baseUrl.href, 'https://api.openai.com/v1');
  });
});

describe('environment overrides', () => {
  it('KEYWARDEN_LISTEN_PUBLIC, KEYWARDEN_STORE and KEYWARDEN_LOG_LEVEL win over the file', () => {
    const path = join(dir, 'overridden.yaml');
    writeFileSync(path, [
      'listen:',
      '  public: 0.0.0.0:8080',
      '  admin: 127.0.0.1:8081',
      'store: sqlite:./from-file.db',
      'log:',
      '  level: info',
      'admin: { token: env:KW_TEST_ADMIN }',
      'audit: { prompt_hmac_key: env:KW_TEST_HMAC }',
      'providers:',
      '  openai: { type: openai, base_url: https://api.openai.com/v1, api_key: env:KW_TEST_OPENAI }',
      '',
    ].join('\n'));
    const fileOnly = loadConfigFile(path, {});
    assert.deepEqual(fileOnly.listen.public, { host: '0.0.0.0', port: 8080 });
    assert.equal(fileOnly.store, 'sqlite:./from-file.db');
    assert.equal(fileOnly.log.level, 'info');

    const config = loadConfigFile(path, {
      KEYWARDEN_LISTEN_PUBLIC: '127.0.0.1:19090',
      KEYWARDEN_LISTEN_ADMIN: '127.0.0.1:19091',
      KEYWARDEN_STORE: 'sqlite:/var/tmp/from-env.db',
      KEYWARDEN_LOG_LEVEL: 'debug',
    });
    assert.deepEqual(config.listen.public, { host: '127.0.0.1', port: 19090 });
    assert.deepEqual(config.listen.admin, { host: '127.0.0.1', port: 19091 });
    assert.equal(config.store, 'sqlite:/var/tmp/from-env.db');
    assert.equal(config.log.level, 'debug');
  });

  it('apply when the file has no such section, and an empty variable is ignored', () => {
    const config = configFromDocument(minimal(), 'test', { KEYWARDEN_LOG_LEVEL: 'warn', KEYWARDEN_STORE: '' });
    assert.equal(config.log.level, 'warn');
    assert.equal(config.store, 'sqlite:./data/keywarden.db');
  });

  it('are validated like the file, under the path they override', () => {
    assert.throws(() => configFromDocument(minimal(), 'test', { KEYWARDEN_LOG_LEVEL: 'loud', KEYWARDEN_LISTEN_PUBLIC: 'nope', KEYWARDEN_STORE: 'mysql://x' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.ok(err.problems.some((p) => p.startsWith('log.level:')));
        assert.ok(err.problems.some((p) => p.startsWith('listen.public:')));
        assert.ok(err.problems.some((p) => p.startsWith('store:')));
        return true;
      });
  });
});

describe('a PostgreSQL store', () => {
  it('accepts postgres:// and postgresql:// URLs, with the password as a secret reference', () => {
    for (const store of ['postgres://keywarden@db.internal:5432/keywarden', 'postgresql://keywarden@10.0.0.5/kw?sslmode=require']) {
      const { config, problems } = validateConfig(minimal({ store, store_password: 'env:KW_TEST_PG_PASSWORD', limits: { store: 'redis://redis.internal:6379' } }));
      assert.deepEqual(problems, []);
      assert.equal(config?.store, store);
      assert.equal(config?.storePassword, 'env:KW_TEST_PG_PASSWORD');
    }
  });

  it('refuses a password in the URL, a literal store_password, and store_password without postgres', () => {
    const inUrl = validateConfig(minimal({ store: 'postgres://keywarden:hunter2-TEST-ONLY@db:5432/kw' })).problems;
    assert.ok(inUrl.some((p) => p.startsWith('store: must not carry a password')));
    assert.ok(!inUrl.join('\n').includes('hunter2'), 'the password is not echoed');
    const literal = validateConfig(minimal({ store: 'postgres://keywarden@db/kw', store_password: 'hunter2-TEST-ONLY' })).problems;
    assert.ok(literal.some((p) => p.startsWith('store_password: must be a secret reference')));
    const onSqlite = validateConfig(minimal({ store_password: 'env:KW_TEST_PG_PASSWORD' })).problems;
    assert.ok(onSqlite.some((p) => p.startsWith('store_password: applies only to a postgres:// store')));
  });
});

describe('server.stream_stall_timeout', () => {
  it('defaults to 5 minutes (or half a shorter lease) and, when set, must stay below limits.reservation_lease', () => {
    assert.equal(validateConfig(minimal()).config?.server.streamStallMs, 300_000);
    assert.equal(validateConfig(minimal({ server: { stream_stall_timeout: '30s' } })).config?.server.streamStallMs, 30_000);
    const tooLong = validateConfig(minimal({ server: { stream_stall_timeout: '20m' } })).problems;
    assert.ok(tooLong.some((p) => p.startsWith('server.stream_stall_timeout: must be shorter than limits.reservation_lease')), tooLong.join('\n'));
    assert.deepEqual(validateConfig(minimal({ server: { stream_stall_timeout: '20m' }, limits: { reservation_lease: '30m' } })).problems, []);
    // unset, it follows a short lease down to half of it instead of refusing the file
    assert.equal(validateConfig(minimal({ limits: { reservation_lease: '4s' } })).config?.server.streamStallMs, 2_000);
    assert.ok(validateConfig(minimal({ server: { stream_stall_timeout: 'soon' } })).problems.some((p) => p.startsWith('server.stream_stall_timeout')));
  });
});

describe('quota counters with a PostgreSQL store', () => {
  it('requires limits.store to be chosen: memory counters would let N replicas allow N times each limit', () => {
    const problems = validateConfig(minimal({ store: 'postgres://keywarden@db/kw' })).problems;
    assert.ok(problems.some((p) => p.startsWith('limits.store: must be set with a postgres:// store')), problems.join('\n'));
    // `store:` left empty in YAML is null: not written out either
    const empty = validateConfig(minimal({ store: 'postgres://keywarden@db/kw', limits: { store: null } })).problems;
    assert.ok(empty.some((p) => p.startsWith('limits.store: must be set with a postgres:// store')), empty.join('\n'));
    // the embedded store keeps its one-process default
    assert.deepEqual(validateConfig(minimal({ store: 'sqlite::memory:' })).problems, []);
  });

  it('accepts Redis quietly and memory with a warning (doctor and serve show it)', () => {
    const redis = validateConfig(minimal({ store: 'postgres://keywarden@db/kw', limits: { store: 'redis://redis.internal:6379' } }));
    assert.deepEqual(redis.problems, []);
    assert.deepEqual(configWarnings(redis.config as GatewayConfig), []);
    const memory = validateConfig(minimal({ store: 'postgresql://keywarden@db/kw', limits: { store: 'memory' } }));
    assert.deepEqual(memory.problems, []);
    const warnings = configWarnings(memory.config as GatewayConfig);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /^limits\.store: memory with a postgres:\/\/ store counts quotas and failed authentications in each process/);
    assert.deepEqual(configWarnings(validateConfig(minimal()).config as GatewayConfig), [], 'no warning on the embedded store');
  });

  it('KEYWARDEN_LIMITS_STORE sets limits.store, so both stores can come from the environment', () => {
    const config = configFromDocument(minimal(), 'test', { KEYWARDEN_STORE: 'postgres://keywarden@db/kw', KEYWARDEN_LIMITS_STORE: 'redis://redis.internal:6379' });
    assert.equal(config.quota.store, 'redis://redis.internal:6379');
    assert.throws(() => configFromDocument(minimal(), 'test', { KEYWARDEN_STORE: 'postgres://keywarden@db/kw' }), /limits\.store: must be set/);
  });
});

describe('the contract configuration from the issue', () => {
  let path: string;
  let anthropicPath: string;
  const env = {
    KEYWARDEN_ADMIN_TOKEN: FAKE_ADMIN_TOKEN,
    KEYWARDEN_PROMPT_HMAC_KEY: FAKE_HMAC_KEY,
    OPENAI_API_KEY: FAKE_OPENAI_KEY,
  };

  before(() => {
    anthropicPath = writeWithMode('anthropic', `${FAKE_ANTHROPIC_KEY}\n`, 0o600);
    path = join(dir, 'contract.yaml');
    writeFileSync(path, contractConfigYaml(anthropicPath));
  });

  it('is accepted as written', () => {
    const config = loadConfigFile(path, env);
    assert.deepEqual(config.listen, { public: { host: '127.0.0.1', port: 8080 }, admin: { host: '127.0.0.1', port: 8081 } });
    assert.equal(config.store, 'sqlite:./data/keywarden.db');
    assert.equal(config.admin.token, 'env:KEYWARDEN_ADMIN_TOKEN');
    assert.equal(config.audit.promptHmacKey, 'env:KEYWARDEN_PROMPT_HMAC_KEY');
    const openai = config.providers['openai'];
    const anthropic = config.providers['anthropic'];
    assert.equal(openai?.type, 'openai');
    assert.equal(openai?.baseUrl.href, 'https://api.openai.com/v1');
    assert.equal(openai?.apiKey, 'env:OPENAI_API_KEY');
    assert.equal(openai?.timeoutMs, 60_000);
    assert.equal(anthropic?.type, 'anthropic');
    assert.equal(anthropic?.baseUrl.origin, 'https://api.anthropic.com');
    assert.equal(anthropic?.apiKey, `file:${anthropicPath}`);
    assert.deepEqual({ ...config.models['fast'] }, { name: 'fast', provider: 'openai', model: 'gpt-4o-mini' });
    assert.deepEqual({ ...config.models['gpt-4o-mini'] }, { name: 'gpt-4o-mini', provider: 'openai', model: 'gpt-4o-mini' });
    assert.equal(config.models['claude-3-5-haiku-latest']?.provider, 'anthropic');
    assert.equal(config.models['text-embedding-3-small']?.provider, 'openai');
    const policy = config.tenants.defaults.policy;
    assert.deepEqual([...policy.models], ['gpt-4o-mini', 'fast', 'text-embedding-3-small', 'claude-3-5-haiku-latest']);
    assert.equal(policy.params.length, 12);
    assert.ok(policy.params.includes('stream_options') && policy.params.includes('dimensions'));
    assert.equal(policy.tools, false);
    assert.equal(policy.files, false);
    assert.equal(policy.maxBodyBytes, 1_048_576);
    assert.equal(policy.maxOutputTokens, 4096);
  });

  it('resolves every secret reference it names', async () => {
    const config = loadConfigFile(path, env);
    const resolver = createSecretResolver([createEnvSource(env), createFileSource()]);
    assert.equal((await resolver.resolve(config.admin.token)).value, FAKE_ADMIN_TOKEN);
    assert.equal((await resolver.resolve(config.audit.promptHmacKey)).value, FAKE_HMAC_KEY);
    const pool = createProviderKeyPool(config.providers, cacheOver(resolver));
    await pool.load();
    assert.deepEqual(pool.status().map((s) => [s.provider, s.loaded]), [['openai', true], ['anthropic', true]]);
    assert.equal(pool.current('openai'), FAKE_OPENAI_KEY);
    // the file's trailing newline is not part of the key
    assert.equal(pool.current('anthropic'), FAKE_ANTHROPIC_KEY);
  });
});

describe('secret references', () => {
  const envResolver = (env: NodeJS.ProcessEnv) => createSecretResolver([createEnvSource(env), createFileSource()]);

  async function refusal(reference: string, env: NodeJS.ProcessEnv = {}): Promise<SecretError> {
    try {
      await envResolver(env).resolve(reference);
    } catch (err) {
      assert.ok(err instanceof SecretError, `expected a SecretError, got ${String(err)}`);
      return err;
    }
    assert.fail(`${reference} was accepted`);
  }

  it('env: fails when the variable is missing or blank, naming the reference', async () => {
    const missing = await refusal('env:KW_TEST_NOT_SET');
    assert.equal(missing.reference, 'env:KW_TEST_NOT_SET');
    assert.match(missing.message, /^env:KW_TEST_NOT_SET: environment variable is not set or empty$/);
    const blank = await refusal('env:KW_TEST_BLANK', { KW_TEST_BLANK: '   ' });
    assert.match(blank.message, /^env:KW_TEST_BLANK:/);
  });

  it('env: loads a set variable', async () => {
    const secret = await envResolver({ KW_TEST_SET: FAKE_OPENAI_KEY }).resolve('env:KW_TEST_SET');
    assert.equal(secret.value, FAKE_OPENAI_KEY);
  });

  it('file: is refused when world-readable (0644), naming the file and not its content', async () => {
    const path = writeWithMode('world-readable', FAKE_OPENAI_KEY, 0o644);
    const err = await refusal(`file:${path}`);
    assert.equal(err.reference, `file:${path}`);
    assert.match(err.message, /readable by other users/);
    assert.ok(!err.message.includes(FAKE_OPENAI_KEY));
  });

  it('file: is refused when group- or world-writable', async () => {
    for (const [name, mode] of [['group-writable', 0o620], ['world-writable', 0o602], ['wide-open', 0o666]] as const) {
      const path = writeWithMode(name, FAKE_OPENAI_KEY, mode);
      const err = await refusal(`file:${path}`);
      assert.match(err.message, /by other users/, `${name} was not refused for its mode`);
      assert.ok(!err.message.includes(FAKE_OPENAI_KEY));
    }
  });

  it('file: is accepted at 0600 and 0640', async () => {
    for (const mode of [0o600, 0o640, 0o400]) {
      const path = writeWithMode(`ok-${mode.toString(8)}`, `  ${FAKE_OPENAI_KEY}\n`, mode);
      const secret = await envResolver({}).resolve(`file:${path}`);
      assert.equal(secret.value, FAKE_OPENAI_KEY);
      assert.match(secret.version, /^mtime:\d+$/);
      assert.ok(!secret.version.includes(FAKE_OPENAI_KEY));
    }
  });

  it('file: refuses an empty or blank file, a missing file and a directory', async () => {
    const empty = writeWithMode('empty', '', 0o600);
    assert.match((await refusal(`file:${empty}`)).message, /is empty$/);
    const blank = writeWithMode('blank', ' \n\t\n', 0o600);
    assert.match((await refusal(`file:${blank}`)).message, /is empty$/);
    assert.match((await refusal(`file:${join(dir, 'absent')}`)).message, /cannot be read \(ENOENT\)/);
    assert.match((await refusal(`file:${dir}`)).message, /not a regular file|cannot be read/);
  });

  it('a literal passed as a reference is refused without being echoed', async () => {
    const err = await refusal(FAKE_LITERAL_KEY);
    assert.ok(!err.message.includes(FAKE_LITERAL_KEY));
    assert.ok(!err.message.includes('sk-fake'));
    assert.equal(err.reference, '(reference)');
  });

  it('the provider key pool reports a failed key by its reference, never a value', async () => {
    const readable = writeWithMode('pool-readable', FAKE_ANTHROPIC_KEY, 0o644);
    const config = configFromDocument(minimal({
      providers: {
        openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_POOL_MISSING' },
        anthropic: { type: 'anthropic', base_url: 'https://api.anthropic.com', api_key: `file:${readable}` },
      },
    }), 'test', {});
    const pool = createProviderKeyPool(config.providers, cacheOver(envResolver({})));
    // the gateway refuses to start: the error names each failing reference, never a value
    await assert.rejects(pool.load(), (err: Error) => /providers\.openai\.api_key: env:KW_TEST_POOL_MISSING/.test(err.message) && !err.message.includes(FAKE_ANTHROPIC_KEY));
    const status = Object.fromEntries(pool.status().map((s) => [s.provider, s]));
    assert.equal(status['openai']?.loaded, false);
    assert.match(status['openai']?.error ?? '', /^env:KW_TEST_POOL_MISSING:/);
    assert.equal(status['anthropic']?.loaded, false);
    assert.match(status['anthropic']?.error ?? '', /readable by other users/);
    assert.ok(!JSON.stringify(pool.status()).includes(FAKE_ANTHROPIC_KEY));
    assert.equal(pool.current('anthropic'), undefined);
  });
});
