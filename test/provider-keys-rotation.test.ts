import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, postJson, FAKE_PROVIDER_KEY, type Harness } from './helpers/harness.js';
import { assertNoKeyValues, fakeNewKey, fp, pkCli, startWebhook, writeCliConfig, writeSecret } from './helpers/provider-keys-setup.js';

const chat = (h: Harness, text = 'hello') => postJson(`${h.url}/v1/chat/completions`, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });
const bearer = (r: { headers: Record<string, string | string[] | undefined> }) => String(r.headers['authorization'] ?? '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ListedKey { id: string; provider: string; state: string; fingerprint: string; age_days: number; owner: string | null }

describe('provider key rotation through the CLI against a running gateway', () => {
  let h: Harness;
  let cfg: string;
  let hook: Awaited<ReturnType<typeof startWebhook>>;
  const KEY_A = fakeNewKey('a1'); // fake, TEST ONLY
  const KEY_B = fakeNewKey('b2'); // fake, TEST ONLY
  const KEY_BAD = fakeNewKey('bad'); // fake, TEST ONLY: the mock never accepts it

  const list = async (): Promise<ListedKey[]> => {
    const r = await pkCli(h, cfg, ['provider-keys', 'list', '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListedKey[];
  };

  before(async () => {
    hook = await startWebhook();
    h = await startHarness({ config: { rotation: { grace_period: '1500ms' }, alerts: { webhook_url: hook.url } } });
    cfg = writeCliConfig(h, { rotation: { grace_period: '1500ms' }, alerts: { webhook_url: hook.url } });
  });
  after(async () => {
    await h?.close();
    await hook?.close();
  });

  it('registers each configured key as current at start, listing fingerprints and ages but never values', async () => {
    const r = await pkCli(h, cfg, ['provider-keys', 'list', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertNoKeyValues(r.stdout + r.stderr, []);
    const rows = JSON.parse(r.stdout) as ListedKey[];
    assert.deepEqual(rows.map((k) => [k.provider, k.state]).sort(), [['anthropic', 'current'], ['openai', 'current']]);
    assert.ok(rows.every((k) => k.fingerprint === fp(FAKE_PROVIDER_KEY) && k.age_days === 0));
    const table = await pkCli(h, cfg, ['provider-keys', 'list']);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /FINGERPRINT/);
    assertNoKeyValues(table.stdout, []);
  });

  it('a key the provider rejects stops the rotation at step 2 and leaves the current key serving', async () => {
    const before = (await list()).find((k) => k.provider === 'openai' && k.state === 'current')!;
    const ref = writeSecret(h, 'openai-bad', KEY_BAD);
    const r = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--from', ref, '--yes']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /step 1\/6 read: ok/);
    assert.match(r.stdout, /step 2\/6 verify: FAILED — .*HTTP 401.*current key pk_\w+ \(\w+\) still serves requests/);
    assert.doesNotMatch(r.stdout, /step 3\/6/);
    assertNoKeyValues(r.stdout + r.stderr, [KEY_BAD]);
    const after = await list();
    assert.deepEqual(after.filter((k) => k.provider === 'openai').map((k) => [k.id, k.state]), [[before.id, 'current']]);
    assert.equal((await chat(h)).status, 200);
    const audit = await h.gateway.store.records.listAudit({ limit: 1000 });
    assert.ok(audit.some((a) => a.action === 'provider_key.rotate' && a.outcome === 'failure' && a.details['reason'] === 'verification_failed'));
  });

  it('rotates under steady load with zero failed requests, notifies the webhook and scans logs by fingerprint', async () => {
    h.mock.setApiKeys([FAKE_PROVIDER_KEY, KEY_A]);
    const ref = writeSecret(h, 'openai-a', KEY_A);
    const logFile = join(h.dir, 'old.log');
    // a log that leaked the old key twice (fake key, TEST ONLY) and holds other tokens
    writeFileSync(logFile, `x auth=${FAKE_PROVIDER_KEY} y\nnothing here sk-fake-TEST-ONLY-unrelated-000000000\n"${FAKE_PROVIDER_KEY}"\n`);
    const statuses: number[] = [];
    let stop = false;
    const loop = async () => {
      while (!stop) statuses.push((await chat(h)).status);
    };
    const loops = [loop(), loop(), loop(), loop()];
    await sleep(100);
    const r = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--from', ref, '--logs', logFile, '--yes']);
    await sleep(600); // the gateway switches within a second
    stop = true;
    await Promise.all(loops);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (let n = 1; n <= 6; n++) assert.match(r.stdout, new RegExp(`step ${n}/6 \\S+: ok`));
    assert.match(r.stdout, /step 5\/6 scan-logs: ok — old key fingerprint \w+ found 2 time\(s\): .*old\.log: 2/);
    assertNoKeyValues(r.stdout + r.stderr, [KEY_A]);
    assert.ok(statuses.length > 20, `only ${statuses.length} requests ran`);
    assert.deepEqual([...new Set(statuses)], [200]);

    const openai = (await list()).filter((k) => k.provider === 'openai');
    assert.equal(openai.find((k) => k.state === 'current')?.fingerprint, fp(KEY_A));
    // the old key is previous for the (short) grace period, and revoked after it
    assert.ok(['previous', 'revoked'].includes(openai.find((k) => k.fingerprint === fp(FAKE_PROVIDER_KEY))?.state ?? ''));
    assert.equal(openai.filter((k) => k.state === 'pending').length, 0);
    // new requests now carry the new key only
    h.mock.reset();
    assert.equal((await chat(h)).status, 200);
    assert.deepEqual(h.mock.received.map(bearer), [`Bearer ${KEY_A}`]);

    const audit = await h.gateway.store.records.listAudit({ limit: 1000 });
    const rotated = audit.filter((a) => a.action === 'provider_key.rotate' && a.outcome === 'success');
    assert.equal(rotated.length, 1);
    assert.equal(rotated[0]!.details['new_fingerprint'], fp(KEY_A));
    assert.equal(rotated[0]!.details['old_fingerprint'], fp(FAKE_PROVIDER_KEY));
    assertNoKeyValues(JSON.stringify(audit), [KEY_A]);
    assert.equal(hook.bodies.length, 1);
    assert.equal(hook.bodies[0]!['type'], 'provider_key_rotated');
    assert.equal(hook.bodies[0]!['new_fingerprint'], fp(KEY_A));
    assertNoKeyValues(hook.raw.join(''), [KEY_A]);
  });

  it('the gateway revokes the previous key once its grace period ends', async () => {
    const deadline = Date.now() + 5000;
    let prev: ListedKey | undefined;
    do {
      await sleep(200);
      const rows = await h.gateway.store.providerKeys.list();
      prev = rows.filter((k) => k.provider === 'openai' && k.fingerprint === fp(FAKE_PROVIDER_KEY)).map((k) => ({ ...k, age_days: 0 }))[0];
    } while (prev?.state !== 'revoked' && Date.now() < deadline);
    assert.equal(prev?.state, 'revoked');
  });

  it('a revoked current key is never sent upstream again within a second', async () => {
    const current = (await list()).find((k) => k.provider === 'openai' && k.state === 'current')!;
    const r = await pkCli(h, cfg, ['provider-keys', 'revoke', current.id, '--provider-side']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /MANUAL STEP: delete the key with fingerprint \w+ at https:\/\/platform\.openai\.com\/api-keys/);
    assert.match(r.stdout, /openai has no current key now/);
    await sleep(1000);
    h.mock.reset();
    const results = await Promise.all([chat(h), chat(h), chat(h)]);
    assert.ok(results.every((x) => x.status === 503), JSON.stringify(results.map((x) => x.status)));
    assert.equal(h.mock.received.filter((x) => bearer(x) === `Bearer ${KEY_A}`).length, 0);
    assert.equal(h.mock.received.length, 0);
    // a revoked key cannot come back through a rotation
    const again = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--from', writeSecret(h, 'openai-a2', KEY_A), '--yes']);
    assert.equal(again.code, 1);
    assert.match(again.stdout, /step 1\/6 read: FAILED — .*was revoked/);
    // a fresh key restores service
    h.mock.setApiKeys([FAKE_PROVIDER_KEY, KEY_B]);
    const fresh = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--from', writeSecret(h, 'openai-b', KEY_B), '--yes']);
    assert.equal(fresh.code, 0, fresh.stdout);
    assert.match(fresh.stdout, /step 4\/6 retire: skipped — there was no previous key/);
    await sleep(600);
    assert.equal((await chat(h)).status, 200);
  });

  it('refuses a second rotation of a provider while one is in progress', async () => {
    const repo = h.gateway.store.providerKeys;
    // this test process holds the lock: alive, so not stale
    await repo.lockRotation('anthropic', 'rot_test_lock', `${hostname()}:${process.pid}`, Date.now());
    try {
      const r = await pkCli(h, cfg, ['provider-keys', 'rotate', 'anthropic', '--from', writeSecret(h, 'anth-x', fakeNewKey('x')), '--yes']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /a rotation of anthropic is already in progress \(rot_test_lock/);
      assert.doesNotMatch(r.stdout, /step 1\/6/);
      assert.equal((await repo.list()).filter((k) => k.provider === 'anthropic').length, 1);
    } finally {
      await repo.finishRotation('anthropic', 'rot_test_lock', { ts: Date.now(), actor: 'test', action: 'test.unlock', target: null, outcome: 'success', requestId: null, details: {} });
    }
  });
});
