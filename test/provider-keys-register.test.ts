import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { AuditEvent, ProviderKeyRecord, Store } from '../src/store/types.js';
import { createSecretCache } from '../src/secrets/cache.js';
import { createProviderKeyPool } from '../src/secrets/provider-keys.js';
import type { SecretResolver } from '../src/secrets/resolver.js';
import { configFromDocument } from '../src/config/load.js';
import { createMockProvider, type MockProvider } from '../src/mock-provider/server.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import { fakeNewKey, fp } from './helpers/provider-keys-setup.js';

const OLD = 'sk-fake-TEST-ONLY-register-old-key-000000000000'; // fake, TEST ONLY
const NEW = 'sk-fake-TEST-ONLY-register-new-key-000000000000'; // fake, TEST ONLY
const ev = (action: string): AuditEvent => ({ ts: Date.now(), actor: 'test', action, target: null, outcome: 'success', requestId: null, details: {} });
const row = (id: string, value: string, state: ProviderKeyRecord['state'], extra: Partial<ProviderKeyRecord> = {}): ProviderKeyRecord => ({
  id, provider: 'openai', reference: 'vault:kv/openai#api_key', fingerprint: fp(value), version: '1', state, owner: 'alice', purpose: 'prod',
  createdAt: Date.now(), rotatedAt: null, rotateEveryDays: 60, previousUntil: null, revokedAt: null, ...extra,
});

describe('the provider key register state machine', () => {
  let dir: string;
  let store: Store;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-pk-'));
    store = openSqliteStore(`sqlite:${join(dir, 'k.db')}`);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('bootstraps a provider once, then moves pending → current → previous → revoked with an audit row per change', async () => {
    const repo = store.providerKeys;
    assert.equal(await repo.bootstrap(row('pk_old', OLD, 'current'), ev('provider_key.register')), true);
    assert.equal(await repo.bootstrap(row('pk_other', NEW, 'current'), ev('provider_key.register')), false);
    const lock = await repo.lockRotation('openai', 'rot_1', 'host:1', Date.now());
    assert.equal(lock.created, true);
    const second = await repo.lockRotation('openai', 'rot_2', 'host:2', Date.now());
    assert.equal(second.created, false);
    assert.equal(second.rotation.rotationId, 'rot_1');
    await repo.addPending(row('pk_new', NEW, 'pending'), 'rot_1', ev('provider_key.pending'));
    assert.deepEqual((await repo.getRotation('openai'))?.newKeyId, 'pk_new');
    // the gateway only ever sees one current row
    await repo.promote('openai', 'rot_1', 'pk_new', Date.now() + 50, Date.now(), ev('provider_key.promote'));
    await repo.promote('openai', 'rot_1', 'pk_new', Date.now() + 50, Date.now(), ev('provider_key.promote')); // idempotent
    const states = Object.fromEntries((await repo.list()).map((k) => [k.id, k.state]));
    assert.deepEqual(states, { pk_old: 'previous', pk_new: 'current' });
    assert.equal((await repo.getRotation('openai'))?.step, 3);
    await new Promise((r) => setTimeout(r, 60));
    const expired = await repo.expirePrevious(Date.now(), 'test');
    assert.deepEqual(expired.map((k) => k.id), ['pk_old']);
    assert.deepEqual(await repo.expirePrevious(Date.now(), 'test'), []);
    assert.equal((await repo.get('pk_old'))?.state, 'revoked');
    assert.deepEqual((await repo.active()).map((k) => k.id), ['pk_new']);
    // a pending key cannot be promoted twice into a second current
    await assert.rejects(repo.promote('openai', 'rot_1', 'pk_old', 0, Date.now(), ev('x')), /revoked, not pending/);
    await repo.finishRotation('openai', 'rot_1', ev('provider_key.rotate'));
    assert.equal(await repo.getRotation('openai'), undefined);
    const actions = (await store.records.listAudit({ limit: 100 })).map((a) => a.action);
    assert.deepEqual(actions, ['provider_key.register', 'provider_key.pending', 'provider_key.promote', 'provider_key.revoke', 'provider_key.rotate']);
  });
});

describe('the gateway pool serves only the verified current key', () => {
  it('keeps the verified value when the vault gets an unverified version, and forgets revoked keys at the next poll', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keywarden-pk-'));
    const store = openSqliteStore(`sqlite:${join(dir, 'k.db')}`);
    let value = OLD;
    let version = 1;
    const resolver: SecretResolver = { resolve: async () => ({ value, version: String(version) }) } as unknown as SecretResolver;
    const cache = createSecretCache({ resolver, ttlMs: 60_000, refreshMs: 60_000 });
    const events: Array<{ type: string; fingerprint?: string }> = [];
    const config = configFromDocument({
      admin: { token: 'env:X' }, audit: { prompt_hmac_key: 'env:Y' },
      providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'vault:kv/openai#api_key' } },
      models: { m: { provider: 'openai' } },
    }, 'test', {});
    const pool = createProviderKeyPool({ providers: config.providers, cache, repo: store.providerKeys, onEvent: (e) => events.push(e) });
    try {
      await pool.load();
      assert.equal(pool.current('openai'), OLD);
      // the vault now holds a new version nobody verified
      value = NEW;
      version = 2;
      await cache.refreshAll();
      assert.equal(pool.current('openai'), OLD);
      assert.deepEqual(events.filter((e) => e.type === 'unverified_version').map((e) => e.fingerprint), [fp(NEW)]);
      // the register revokes the current key: nothing is served after the next poll
      const current = (await store.providerKeys.active())[0]!;
      await store.providerKeys.revoke(current.id, Date.now(), ev('provider_key.revoke'));
      await pool.poll();
      assert.equal(pool.current('openai'), undefined);
      assert.equal(pool.status()[0]?.loaded, false);
    } finally {
      pool.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('due and offboard from the CLI', () => {
  let dir: string;
  let cfg: string;
  let mock: MockProvider;
  const keyFile = () => join(dir, 'openai-key');
  const cli = (args: string[]) => runCli([...args, '--config', cfg], { cwd: dir, env: cliEnv({ NODE_ENV: 'test' }) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-pk-'));
    mock = await createMockProvider({ apiKey: [OLD] });
    writeFileSync(keyFile(), OLD, { mode: 0o600 });
    writeFileSync(join(dir, 'admin'), 'fake-admin-TEST-ONLY-00000000000000', { mode: 0o600 });
    writeFileSync(join(dir, 'hmac'), 'fake-hmac-TEST-ONLY-000000000000000', { mode: 0o600 });
    cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({
      store: `sqlite:${join(dir, 'k.db')}`, admin: { token: `file:${join(dir, 'admin')}` }, audit: { prompt_hmac_key: `file:${join(dir, 'hmac')}` },
      log: { level: 'silent' },
      providers: { openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: `file:${keyFile()}`, owner: 'alice', purpose: 'production chat', rotate_every: '30d' } },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
    }), { mode: 0o600 });
  });
  after(async () => {
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('due exits 0 when nothing is overdue, lists a key due soon, and exits 1 once one is overdue', async () => {
    const none = await cli(['provider-keys', 'due']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no provider key is due/);
    const soon = await cli(['provider-keys', 'due', '--within', '31d', '--json']);
    assert.equal(soon.code, 0);
    assert.deepEqual((JSON.parse(soon.stdout) as Array<{ status: string; owner: string }>).map((e) => [e.status, e.owner]), [['due_soon', 'alice']]);
    // forty days pass (the register's dates, moved back)
    const db = new Database(join(dir, 'k.db'));
    db.prepare('UPDATE provider_keys SET created_at = created_at - ?').run(40 * 86_400_000);
    db.close();
    const overdue = await cli(['provider-keys', 'due']);
    assert.equal(overdue.code, 1);
    assert.match(overdue.stdout, /overdue/);
    const listed = JSON.parse((await cli(['provider-keys', 'list', '--json'])).stdout) as Array<{ age_days: number; rotate_every_days: number; purpose: string }>;
    assert.deepEqual(listed.map((k) => [k.age_days, k.rotate_every_days, k.purpose]), [[40, 30, 'production chat']]);
  });

  it('offboard --dry-run only lists; offboard rotates each key and hands it over', async () => {
    const dry = await cli(['offboard', '--owner', 'alice', '--to', 'bob', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /openai\s+current/);
    assert.match(dry.stdout, /dry run: 1 key\(s\)/);
    assert.doesNotMatch(dry.stdout, /step 1\/6/);
    const NEXT = fakeNewKey('offboard'); // fake, TEST ONLY
    mock.setApiKeys([OLD, NEXT]);
    writeFileSync(keyFile(), NEXT, { mode: 0o600 }); // the vault's new version, same reference
    const run = await cli(['offboard', '--owner', 'alice', '--to', 'bob']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /step 6\/6 record: ok/);
    assert.ok(!run.stdout.includes(NEXT) && !run.stdout.includes(OLD));
    const rows = JSON.parse((await cli(['provider-keys', 'list', '--json'])).stdout) as Array<{ state: string; owner: string; fingerprint: string }>;
    assert.deepEqual(rows.filter((k) => k.state !== 'revoked').map((k) => [k.state, k.owner, k.fingerprint]).sort(),
      [['current', 'bob', fp(NEXT)], ['previous', 'bob', fp(OLD)]]);
    const after = await cli(['offboard', '--owner', 'alice', '--to', 'bob', '--dry-run']);
    assert.match(after.stdout, /alice owns no provider key/);
    // the due report is clean after the rotation
    assert.equal((await cli(['provider-keys', 'due'])).code, 0);
  });
});
