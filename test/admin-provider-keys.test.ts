import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHarness, postJson, FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY, FAKE_PROVIDER_KEY, type Harness } from './helpers/harness.js';
import { assertNoKeyValues, fakeNewKey, fp } from './helpers/provider-keys-setup.js';
import { cliEnv, runCli } from './helpers/cli-process.js';
import { encryptSecretsFile, generateEncKey } from '../src/secrets/backends/enc-file.js';

/*
 * The provider key register on the admin API (unscoped admin tokens only): listing without
 * values or references, rotation in the gateway process from a vault-style reference (never
 * file: or env:, never a log path), revocation that switches this gateway at once, and the
 * CLI's provider-keys commands through --admin-url.
 */

const chat = (h: Harness) => postJson(`${h.url}/v1/chat/completions`, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
const bearer = (r: { headers: Record<string, string | string[] | undefined> }) => String(r.headers['authorization'] ?? '');

interface KeyView { id: string; provider: string; state: string; fingerprint: string; reference_backend: string; owner: string | null; purpose: string | null; rotate_every_days: number; age_days: number; due_at: string }

describe('provider keys through the admin API', () => {
  let h: Harness;
  let dir: string;
  let encKey: string;
  let encPath: string;
  let operatorToken: string;
  let scopedAdminToken: string;
  const KEY_2 = fakeNewKey('api-2'); // fake, TEST ONLY
  const KEY_3 = fakeNewKey('api-3'); // fake, TEST ONLY
  const KEY_4 = fakeNewKey('api-4'); // fake, TEST ONLY
  const allKeys = () => [KEY_2, KEY_3, KEY_4, FAKE_ADMIN_TOKEN, FAKE_PROMPT_HMAC_KEY, encKey];

  const admin = async (method: string, path: string, body?: unknown, token = FAKE_ADMIN_TOKEN) => {
    const res = await fetch(`${h.adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, text, json: JSON.parse(text) as Record<string, any> };
  };
  const seal = async (name: string, value: string) => {
    await encryptSecretsFile({ path: encPath, name, value, key: encKey });
    return `enc-file:${encPath}#${name}`;
  };
  const current = async (provider: string): Promise<KeyView> => {
    const r = await admin('GET', '/admin/provider-keys');
    return (r.json['data'] as KeyView[]).find((k) => k.provider === provider && k.state === 'current')!;
  };
  const remote = (token: string, ...args: string[]) =>
    runCli(['--admin-url', h.adminUrl, ...args], { cwd: dir, env: cliEnv({ KEYWARDEN_ADMIN_TOKEN: token, KEYWARDEN_DATA_DIR: join(dir, 'data') }) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keywarden-admin-pk-'));
    encKey = generateEncKey();
    const keyFile = join(dir, 'enc.key');
    writeFileSync(keyFile, encKey, { mode: 0o600 });
    encPath = join(dir, 'secrets.enc.json');
    // the prompt HMAC key sits in the encrypted file too: a rotation must never read it as a provider key
    await seal('prompt', FAKE_PROMPT_HMAC_KEY);
    h = await startHarness({
      config: {
        secrets: { enc_file: { key: `file:${keyFile}` } },
        audit: { prompt_hmac_key: `enc-file:${encPath}#prompt` },
        rotation: { grace_period: '1500ms' },
      },
    });
    const issue = async (body: Record<string, unknown>) => {
      const r = await admin('POST', '/admin/tokens', body);
      assert.equal(r.status, 201, r.text);
      return r.json['token'] as string;
    };
    operatorToken = await issue({ owner: 'ops-person', role: 'operator' });
    scopedAdminToken = await issue({ owner: 'acme-admin', role: 'admin', tenants: ['acme'] });
  });
  after(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the register with fingerprints and the backend only, never a key value or a full reference', async () => {
    const r = await admin('GET', '/admin/provider-keys');
    assert.equal(r.status, 200, r.text);
    const rows = r.json['data'] as KeyView[];
    assert.deepEqual(rows.map((k) => [k.provider, k.state]).sort(), [['anthropic', 'current'], ['openai', 'current']]);
    for (const k of rows) {
      assert.equal(k.fingerprint, fp(FAKE_PROVIDER_KEY));
      assert.equal(k.reference_backend, 'file');
      assert.equal(k.age_days, 0);
      assert.ok(!Number.isNaN(Date.parse(k.due_at)));
      assert.equal('reference' in k, false);
    }
    assertNoKeyValues(r.text, allKeys());
    // the secret files' paths are not in the answer either
    assert.ok(!r.text.includes(h.dir), 'a full reference was listed');

    const due = await admin('GET', '/admin/provider-keys/due?within=100d');
    assert.equal(due.status, 200, due.text);
    assert.deepEqual((due.json['data'] as Array<{ provider: string; status: string }>).map((d) => [d.provider, d.status]).sort(), [['anthropic', 'due_soon'], ['openai', 'due_soon']]);
    const bad = await admin('GET', '/admin/provider-keys/due?within=soon');
    assert.equal(bad.status, 400);
    assert.equal(bad.json['error'].code, 'admin_invalid_request');
  });

  it('refuses operator tokens and tenant-scoped admin tokens (403) and changes nothing for them', async () => {
    const before = await current('openai');
    for (const token of [operatorToken, scopedAdminToken]) {
      for (const [method, path, body] of [
        ['GET', '/admin/provider-keys', undefined], ['GET', '/admin/provider-keys/due', undefined],
        ['POST', '/admin/provider-keys/rotate', { provider: 'openai', from: `enc-file:${encPath}#prompt` }],
        ['POST', `/admin/provider-keys/${before.id}/revoke`, {}], ['PUT', `/admin/provider-keys/${before.id}/owner`, { owner: 'mallory' }],
      ] as const) {
        const r = await admin(method, path, body, token);
        assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
        assert.equal(r.json['error'].code, 'admin_forbidden');
      }
    }
    const after = await current('openai');
    assert.deepEqual(after, before);
  });

  it('refuses file: and env: references, secrets the gateway uses elsewhere, log paths and unknown providers (400)', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ provider: 'openai', from: '/etc/shadow' }, 'from'],
      [{ provider: 'openai', from: 'file:/etc/shadow' }, 'from'],
      [{ provider: 'openai', from: `file:${join(h.dir, 'admin-token')}` }, 'from'],
      [{ provider: 'openai', from: 'env:HOME' }, 'from'],
      // the prompt HMAC key's entry, spelled with a detour in its path
      [{ provider: 'openai', from: `enc-file:${dir}/./secrets.enc.json#prompt` }, 'from'],
      [{ provider: 'openai', logs: ['/var/log/syslog'] }, 'logs'],
      [{ provider: 'no-such-provider' }, 'provider'],
      [{}, 'provider'],
    ];
    for (const [body, param] of cases) {
      const r = await admin('POST', '/admin/provider-keys/rotate', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json['error'].code, 'admin_invalid_request');
      assert.equal(r.json['error'].param, param, r.text);
      assertNoKeyValues(r.text, allKeys());
    }
    // the same secret by another path (a symlink, a /proc detour): caught by its value (review finding)
    symlinkSync(encPath, join(dir, 'alias.enc.json'));
    for (const from of [`enc-file:${join(dir, 'alias.enc.json')}#prompt`, `enc-file:/proc/self/root${encPath}#prompt`]) {
      const r = await admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from });
      assert.equal(r.status, 400, `${from}: ${r.text}`);
      assert.match(r.json['error'].message, /the gateway uses for audit/);
    }
    // files the configuration does not use are never opened: one answer whatever is there (no filesystem oracle)
    const answers = new Set<string>();
    for (const from of ['enc-file:/etc/passwd#x', 'enc-file:/nonexistent/file#x', 'enc-file:/root#x', `enc-file:${join(h.dir, 'admin-token')}#x`]) {
      const r = await admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from });
      assert.equal(r.status, 400, `${from}: ${r.text}`);
      answers.add(r.json['error'].message as string);
    }
    assert.equal(answers.size, 1, [...answers].join(' | '));
    const refused = await admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from: `enc-file:${encPath}#prompt` });
    assert.match(refused.json['error'].message, /audit\.promptHmacKey|audit/);
    // nothing was read or registered: the register still has one openai key, and no rotation is held
    const openai = ((await admin('GET', '/admin/provider-keys')).json['data'] as KeyView[]).filter((k) => k.provider === 'openai');
    assert.equal(openai.length, 1);
    assert.equal(await h.gateway.store.providerKeys.getRotation('openai'), undefined);
  });

  it('rotates in the gateway from an enc-file: reference, switching it at once while requests keep answering 200', async () => {
    const before = await current('openai');
    h.mock.setApiKeys([FAKE_PROVIDER_KEY, KEY_2]);
    const from = await seal('openai-2', KEY_2);
    const statuses: number[] = [];
    let stop = false;
    const loop = async () => {
      while (!stop) statuses.push((await chat(h)).status);
    };
    const loops = [loop(), loop(), loop()];
    const r = await admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from, owner: 'platform-team' });
    // at once: the first request after the answer already carries the new key
    h.mock.reset();
    const next = await chat(h);
    stop = true;
    await Promise.all(loops);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['ok'], true);
    assert.equal(r.json['step'], 6);
    assert.equal(r.json['old_key_id'], before.id);
    const lines = r.json['lines'] as string[];
    for (let n = 1; n <= 6; n++) assert.ok(lines.some((l) => l.startsWith(`step ${n}/6 `)), `no step ${n} in ${lines.join('\n')}`);
    assert.ok(lines.some((l) => /^step 5\/6 scan-logs: skipped/.test(l)), lines.join('\n'));
    assertNoKeyValues(r.text, allKeys());
    assert.equal(next.status, 200);
    assert.ok(h.mock.received.length > 0 && h.mock.received.every((x) => bearer(x) === `Bearer ${KEY_2}`), 'the gateway still used the old key');
    assert.ok(statuses.length > 5, `only ${statuses.length} requests ran`);
    assert.deepEqual([...new Set(statuses)], [200]);

    const now = await current('openai');
    assert.equal(now.id, r.json['new_key_id']);
    assert.equal(now.fingerprint, fp(KEY_2));
    assert.equal(now.reference_backend, 'enc-file');
    assert.equal(now.owner, 'platform-team');
    // the audit rows name the calling admin, never a value
    const audit = await h.gateway.store.records.listAudit({ limit: 1000 });
    const promoted = audit.find((a) => a.action === 'provider_key.promote' && a.target === now.id);
    assert.match(promoted?.actor ?? '', /^admin:/);
    assertNoKeyValues(JSON.stringify(audit), allKeys());
  });

  it('answers 409 to a second rotation of the same provider while one runs', async () => {
    h.mock.setApiKeys([FAKE_PROVIDER_KEY, KEY_2, KEY_3]);
    const from = await seal('openai-3', KEY_3);
    const [a, b] = await Promise.all([
      admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from }),
      admin('POST', '/admin/provider-keys/rotate', { provider: 'openai', from }),
    ]);
    const statuses = [a.status, b.status].sort();
    assert.deepEqual(statuses, [200, 409], `${a.text}\n${b.text}`);
    const conflict = a.status === 409 ? a : b;
    assert.equal(conflict.json['error'].code, 'admin_conflict');
    assert.match(conflict.json['error'].message, /already in progress/);
    assert.equal((a.status === 200 ? a : b).json['ok'], true);
    assert.equal((await current('openai')).fingerprint, fp(KEY_3));
  });

  it('revokes a key: the gateway stops using it at once, and a second revoke changes nothing', async () => {
    const key = await current('openai');
    const r = await admin('POST', `/admin/provider-keys/${key.id}/revoke`, {});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['changed'], true);
    assert.equal(r.json['was'], 'current');
    assert.equal(r.json['key'].state, 'revoked');
    assert.equal(r.json['provider_side'], undefined);
    assert.match(r.json['console'], /platform\.openai\.com/);
    h.mock.reset();
    const res = await chat(h);
    assert.equal(res.status, 503);
    assert.equal(h.mock.received.filter((x) => bearer(x) === `Bearer ${KEY_3}`).length, 0);
    const again = await admin('POST', `/admin/provider-keys/${key.id}/revoke`, {});
    assert.equal(again.status, 200);
    assert.equal(again.json['changed'], false);
    const missing = await admin('POST', '/admin/provider-keys/pk_nosuchkey/revoke', {});
    assert.equal(missing.status, 404);
    assert.equal(missing.json['error'].code, 'admin_not_found');
    const badBody = await admin('POST', `/admin/provider-keys/${key.id}/revoke`, { provider_side: 'yes' });
    assert.equal(badBody.status, 400);
  });

  it('sets owner, purpose and rotation interval, refusing a bad interval and an unknown key', async () => {
    const anthropic = await current('anthropic');
    const r = await admin('PUT', `/admin/provider-keys/${anthropic.id}/owner`, { owner: 'alice', purpose: 'claude in production', rotate_every: '30d' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['owner'], 'alice');
    assert.equal(r.json['purpose'], 'claude in production');
    assert.equal(r.json['rotate_every_days'], 30);
    assert.equal((await current('anthropic')).owner, 'alice');
    for (const body of [{ rotate_every: '36h' }, { owner: 'a\nb' }, {}, { owner: 7 }]) {
      const bad = await admin('PUT', `/admin/provider-keys/${anthropic.id}/owner`, body);
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.json['error'].code, 'admin_invalid_request');
    }
    const missing = await admin('PUT', '/admin/provider-keys/pk_nosuchkey/owner', { owner: 'alice' });
    assert.equal(missing.status, 404);
    const audit = await h.gateway.store.records.listAudit({ limit: 1000 });
    assert.ok(audit.some((a) => a.action === 'provider_key.set_owner' && a.target === anthropic.id && a.actor.startsWith('admin:')));
  });

  it('the CLI lists and rotates through --admin-url with the same output as on the store', async () => {
    const table = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'list');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /FINGERPRINT/);
    assert.match(table.stdout, /anthropic\s+current/);
    const json = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'list', '--json');
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as KeyView[];
    const api = (await admin('GET', '/admin/provider-keys')).json['data'] as KeyView[];
    assert.deepEqual(rows.map((k) => k.id).sort(), api.map((k) => k.id).sort());
    assertNoKeyValues(table.stdout + json.stdout, allKeys());

    // openai has no current key since the revoke above: rotating through the API restores it
    h.mock.setApiKeys([KEY_4]);
    const from = await seal('openai-4', KEY_4);
    const rotated = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'rotate', 'openai', '--from', from, '--owner', 'carol', '--yes');
    assert.equal(rotated.code, 0, rotated.stdout + rotated.stderr);
    for (let n = 1; n <= 6; n++) assert.match(rotated.stdout, new RegExp(`step ${n}/6 \\S+: (ok|skipped)`));
    assert.match(rotated.stdout, /rotated openai: \(none\) → pk_\w+/);
    assertNoKeyValues(rotated.stdout + rotated.stderr, allKeys());
    h.mock.reset();
    assert.equal((await chat(h)).status, 200);
    assert.deepEqual(h.mock.received.map(bearer), [`Bearer ${KEY_4}`]);
    assert.equal((await current('openai')).owner, 'carol');

    const due = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'due', '--within', '100d', '--json');
    assert.equal(due.code, 0, due.stderr);
    assert.ok((JSON.parse(due.stdout) as Array<{ provider: string }>).some((d) => d.provider === 'openai'));
    const owner = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'set-owner', rows.find((k) => k.provider === 'anthropic' && k.state === 'current')!.id, '--owner', 'bob', '--rotate-every', '45d');
    assert.equal(owner.code, 0, owner.stderr);
    assert.match(owner.stdout, /owner bob, purpose claude in production, rotate every 45d/);
  });

  it('the CLI refuses --logs with --admin-url, and reports a refused token', async () => {
    const logs = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'rotate', 'openai', '--logs', '/var/log/syslog', '--yes');
    assert.equal(logs.code, 2);
    assert.match(logs.stderr, /--logs cannot be used with --admin-url/);
    const forbidden = await remote(operatorToken, 'provider-keys', 'list');
    assert.equal(forbidden.code, 1);
    assert.match(forbidden.stderr, /admin_forbidden/);
    const conflictFree = await remote(FAKE_ADMIN_TOKEN, 'provider-keys', 'rotate', 'openai', '--from', 'file:/etc/passwd', '--yes');
    assert.equal(conflictFree.code, 1);
    assert.match(conflictFree.stderr, /may not be a file: reference/);
    // offboarding stays on the store
    const offboard = await remote(FAKE_ADMIN_TOKEN, 'offboard', '--owner', 'alice', '--to', 'bob');
    assert.equal(offboard.code, 2);
    assert.match(offboard.stderr, /"offboard" works on the store only/);
  });
});
