import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { addressGroup, createAuthFailureLimiter, tenantKeyIdOf } from '../src/auth/failure-limiter.js';
import { GatewayError } from '../src/errors/index.js';
import { validateConfig } from '../src/config/validate.js';
import { FAKE_ADMIN_TOKEN, postJson, startHarness, type Harness } from './helpers/harness.js';

/*
 * Credential guessing is slowed: refused credentials are counted per client address and per
 * tenant-key id, and past the limit requests answer 429 before any credential is checked.
 */

// Plainly fake credentials shaped like tenant keys: they unlock nothing, anywhere. TEST-ONLY.
const FAKE_SECRET = 'TESTONLYfakeSecretTESTONLYfakeSecret0000000'; // 43 chars, TEST-ONLY
const fakeKey = (id: string, secret = FAKE_SECRET) => `kw_${id}_${secret}`;
const FAKE_IDS = ['testonly00000001', 'testonly00000002', 'testonly00000003', 'testonly00000004', 'testonly00000005'];

async function models(h: Harness, key: string | undefined) {
  const res = await fetch(`${h.url}/v1/models`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: JSON.parse(text) as Record<string, any> };
}

/** The key with its secret replaced: right id, wrong secret. */
function wrongSecretOf(key: string): string {
  const last = key.at(-1) === 'A' ? 'B' : 'A';
  return `${key.slice(0, -1)}${last}`;
}

function limits(perAddress: { max: number; window: string }, perKey: { max: number; window: string }) {
  return { auth: { failure_limits: { per_address: perAddress, per_key: perKey } } };
}

describe('failed authentication limits, per client address', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: limits({ max: 3, window: '1m' }, { max: 1000, window: '1m' }) });
  });
  after(() => h.close());

  it('answers 429 auth_rate_limited with Retry-After after max failures, even to a valid key (fails closed)', async () => {
    for (const id of FAKE_IDS.slice(0, 3)) {
      const refused = await models(h, fakeKey(id));
      assert.equal(refused.status, 401);
      assert.equal(refused.json['error'].code, 'auth_invalid_credentials');
    }
    const limited = await models(h, h.key);
    assert.equal(limited.status, 429);
    assert.equal(limited.json['error'].code, 'auth_rate_limited');
    assert.equal(limited.json['error'].type, 'rate_limit_error');
    // the message says nothing about whether the credential was right
    assert.doesNotMatch(limited.json['error'].message, /invalid|valid key|correct/i);
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${limited.headers.get('retry-after')}`);
  });

  it('answers the Anthropic error shape on /v1/messages', async () => {
    const limited = await postJson(`${h.url}/v1/messages`, undefined,
      { model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-api-key': h.key, 'anthropic-version': '2023-06-01' });
    assert.equal(limited.status, 429);
    assert.equal(limited.json['type'], 'error');
    assert.equal(limited.json['error'].type, 'rate_limit_error');
    assert.equal(limited.json['error'].code, 'auth_rate_limited');
    assert.equal(typeof limited.json['request_id'], 'string');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    // the limited request never reached the provider
    assert.equal(h.mock.received.filter((r) => r.path.includes('/messages')).length, 0);
  });

  it('never writes a presented credential to the logs', async () => {
    await sleep(50);
    const logs = h.logs.text();
    for (const id of FAKE_IDS.slice(0, 3)) assert.ok(!logs.includes(fakeKey(id)), 'a refused credential was logged');
    assert.ok(!logs.includes(FAKE_SECRET), 'a refused secret was logged');
    assert.ok(!logs.includes(h.key), 'the valid key was logged');
  });
});

describe('failed authentication limits, per key id', () => {
  let h: Harness;
  before(async () => {
    // one address is all loopback gives: the per-address limit is set out of reach
    h = await startHarness({ config: limits({ max: 1000, window: '1m' }, { max: 3, window: '1m' }) });
  });
  after(() => h.close());

  it('answers wrong secrets for a limited key id with 429, lets its right secret in, and leaves other key ids alone', async () => {
    const other = await h.tenantKey('other-tenant');
    for (let i = 0; i < 3; i++) assert.equal((await models(h, wrongSecretOf(h.key))).status, 401);
    const limited = await models(h, wrongSecretOf(h.key));
    assert.equal(limited.status, 429, 'a wrong secret for a limited key id is answered as limited');
    assert.equal(limited.json['error'].code, 'auth_rate_limited');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    // key ids are public: others' wrong guesses must not lock the key's owner out
    assert.equal((await models(h, h.key)).status, 200, 'the right secret of a limited key id still gets in');

    const fine = await models(h, other.key);
    assert.equal(fine.status, 200, 'another key id is not limited');
    // a wrong secret for another key id is refused as wrong, not as limited
    assert.equal((await models(h, wrongSecretOf(other.key))).status, 401);
  });
});

describe('failed authentication limits, windows and switches', () => {
  it('lets a client in again once the window has passed', async () => {
    const h = await startHarness({ config: limits({ max: 2, window: '300ms' }, { max: 1000, window: '1m' }) });
    try {
      assert.equal((await models(h, fakeKey(FAKE_IDS[0] as string))).status, 401);
      assert.equal((await models(h, fakeKey(FAKE_IDS[1] as string))).status, 401);
      assert.equal((await models(h, h.key)).status, 429);
      await sleep(350);
      assert.equal((await models(h, h.key)).status, 200);
    } finally {
      await h.close();
    }
  });

  it('counts requests without any credential (cheap probing)', async () => {
    const h = await startHarness({ config: limits({ max: 2, window: '1m' }, { max: 1000, window: '1m' }) });
    try {
      const missing = await models(h, undefined);
      assert.equal(missing.json['error'].code, 'auth_missing_credentials');
      assert.equal((await models(h, undefined)).status, 401);
      const limited = await models(h, undefined);
      assert.equal(limited.status, 429);
      assert.equal(limited.json['error'].code, 'auth_rate_limited');
    } finally {
      await h.close();
    }
  });

  it('does not reset the count on a successful authentication', async () => {
    const h = await startHarness({ config: limits({ max: 2, window: '1m' }, { max: 1000, window: '1m' }) });
    try {
      assert.equal((await models(h, fakeKey(FAKE_IDS[0] as string))).status, 401);
      assert.equal((await models(h, h.key)).status, 200);
      assert.equal((await models(h, fakeKey(FAKE_IDS[1] as string))).status, 401);
      assert.equal((await models(h, h.key)).status, 429);
    } finally {
      await h.close();
    }
  });

  it('is on by default and can be turned off', async () => {
    const h = await startHarness({ config: { auth: { failure_limits: { enabled: false } } } });
    try {
      for (let i = 0; i < 25; i++) assert.equal((await models(h, fakeKey(FAKE_IDS[0] as string))).status, 401);
      assert.equal((await models(h, h.key)).status, 200);
    } finally {
      await h.close();
    }
  });
});

describe('failed authentication limits, admin listener', () => {
  it('answers 429 admin_auth_rate_limited after max refused admin tokens, counted apart from the public listener', async () => {
    const h = await startHarness({ config: limits({ max: 2, window: '1m' }, { max: 1000, window: '1m' }) });
    try {
      const admin = (token: string) => fetch(`${h.adminUrl}/admin/tenants`, { headers: { authorization: `Bearer ${token}` } });
      const wrongToken = 'fake-admin-token-TEST-ONLY-wrong-0000000'; // TEST-ONLY
      assert.equal((await admin(wrongToken)).status, 401);
      assert.equal((await admin(wrongToken)).status, 401);
      const limited = await admin(FAKE_ADMIN_TOKEN);
      assert.equal(limited.status, 429, 'the right admin token is refused unverified while limited');
      const body = await limited.json() as Record<string, any>;
      assert.equal(body['error'].code, 'admin_auth_rate_limited');
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      // the public listener keeps its own counts
      assert.equal((await models(h, h.key)).status, 200);
      await sleep(50);
      assert.ok(!h.logs.text().includes(wrongToken), 'a refused admin token was logged');
    } finally {
      await h.close();
    }
  });
});

describe('failed authentication limits, admin token ids', () => {
  it('wrong secrets sent for an issued token id cannot lock its owner out', async () => {
    const h = await startHarness({ config: limits({ max: 1000, window: '1m' }, { max: 2, window: '1m' }) });
    try {
      const call = (token: string) => fetch(`${h.adminUrl}/admin/whoami`, { headers: { authorization: `Bearer ${token}` } });
      const issued = await fetch(`${h.adminUrl}/admin/tokens`, {
        method: 'POST', headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ owner: 'lockout-target', role: 'admin' }),
      }).then((r) => r.json() as Promise<{ id: string; token: string }>);
      const forged = `kwa_${issued.id}_${'F'.repeat(43)}`; // fake, TEST ONLY
      assert.equal((await call(forged)).status, 401);
      assert.equal((await call(forged)).status, 401);
      const limited = await call(forged);
      assert.equal(limited.status, 429);
      assert.equal(((await limited.json()) as Record<string, any>)['error'].code, 'admin_auth_rate_limited');
      assert.equal((await call(issued.token)).status, 200, 'the owner still gets in');
    } finally {
      await h.close();
    }
  });
});

describe('createAuthFailureLimiter', () => {
  const window = (max: number, windowMs = 60_000) => ({ max, windowMs });

  it('refuses at max failures with the seconds left in the window, and lets in after it', () => {
    let now = 1_000_000;
    const limiter = createAuthFailureLimiter({ perAddress: window(2), perKey: window(100), now: () => now });
    limiter.fail('10.0.0.1');
    limiter.check('10.0.0.1');
    limiter.fail('10.0.0.1');
    now += 15_500;
    assert.throws(() => limiter.check('10.0.0.1'), (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.code, 'auth_rate_limited');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterSeconds, 45);
      return true;
    });
    limiter.check('10.0.0.2');
    now += 44_500;
    limiter.check('10.0.0.1');
  });

  it('limits a key id across addresses, and uses the listener code it was given', () => {
    const limiter = createAuthFailureLimiter({ perAddress: window(100), perKey: window(2), code: 'admin_auth_rate_limited' });
    limiter.fail('10.0.0.1', 'abc');
    limiter.fail('10.0.0.2', 'abc');
    const blocked = limiter.keyBlockedMs('abc');
    assert.ok(blocked > 0 && blocked <= 60_000);
    assert.equal(limiter.refusal(blocked).code, 'admin_auth_rate_limited');
    assert.equal(limiter.keyBlockedMs('other'), 0);
    assert.equal(limiter.keyBlockedMs(undefined), 0);
    limiter.check('10.0.0.3');
  });

  it('forgets the least recently seen entry past maxTracked, keeping addresses and key ids apart', () => {
    const limiter = createAuthFailureLimiter({ perAddress: window(1), perKey: window(1), maxTracked: 2 });
    limiter.fail('10.0.0.1', 'k1');
    // a flood of key ids does not push the address out
    for (const id of ['k2', 'k3', 'k4']) limiter.fail('10.0.0.9', id);
    assert.throws(() => limiter.check('10.0.0.1'), { code: 'auth_rate_limited' });
    assert.equal(limiter.keyBlockedMs('k1'), 0); // k1 was forgotten: memory stays bounded
    limiter.fail('10.0.0.2');
    limiter.fail('10.0.0.3');
    limiter.check('10.0.0.1'); // now forgotten too
  });

  it('groups IPv6 by /64 and reads IPv4-mapped addresses as IPv4', () => {
    const limiter = createAuthFailureLimiter({ perAddress: window(1), perKey: window(100) });
    limiter.fail('2001:db8:1:2::1');
    assert.throws(() => limiter.check('2001:db8:1:2:ffff:ffff:ffff:ffff'), { code: 'auth_rate_limited' });
    limiter.check('2001:db8:1:3::1');
    limiter.fail('::ffff:192.0.2.7');
    assert.throws(() => limiter.check('192.0.2.7'), { code: 'auth_rate_limited' });
    assert.equal(addressGroup('2001:DB8:0:0:1::9'), '2001:db8:0:0::/64');
    assert.equal(addressGroup('::ffff:c000:207'), '192.0.2.7');
    assert.equal(addressGroup('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressGroup('::1'), '0:0:0:0::/64');
    assert.equal(addressGroup('127.0.0.1'), '127.0.0.1');
  });

  it('refuses bad options at once', () => {
    assert.throws(() => createAuthFailureLimiter({ perAddress: window(0), perKey: window(1) }), RangeError);
    assert.throws(() => createAuthFailureLimiter({ perAddress: window(1), perKey: window(1, 0) }), RangeError);
    assert.throws(() => createAuthFailureLimiter({ perAddress: window(1), perKey: window(1), maxTracked: 0 }), RangeError);
  });

  it('takes the key id from tenant-key-shaped credentials only', () => {
    assert.equal(tenantKeyIdOf(fakeKey('testonly00000001')), 'testonly00000001');
    assert.equal(tenantKeyIdOf(undefined), undefined);
    assert.equal(tenantKeyIdOf(''), undefined);
    assert.equal(tenantKeyIdOf('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl'), undefined);
  });
});

describe('auth.failure_limits configuration', () => {
  const doc = (auth?: Record<string, unknown>) => ({
    admin: { token: 'env:KW_TEST_ADMIN' },
    audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_OPENAI' } },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
    ...(auth ? { auth } : {}),
  });

  it('is on with safe defaults when the section is absent', () => {
    const { config, problems } = validateConfig(doc());
    assert.deepEqual(problems, []);
    assert.deepEqual(config?.auth.failureLimits, { enabled: true, perAddress: { max: 20, windowMs: 60_000 }, perKey: { max: 50, windowMs: 60_000 } });
  });

  it('lists every problem by path', () => {
    const { problems } = validateConfig(doc({ failure_limits: { enabled: 'no', per_address: { max: 0, window: 'soon' }, per_key: { window: '2d', burst: 3 }, extra: 1 } }));
    const paths = problems.map((p) => p.split(':')[0]);
    for (const path of ['auth.failure_limits.enabled', 'auth.failure_limits.per_address.max', 'auth.failure_limits.per_address.window',
      'auth.failure_limits.per_key.window', 'auth.failure_limits.per_key.burst', 'auth.failure_limits.extra']) {
      assert.ok(paths.includes(path), `no problem at ${path}: ${problems.join('; ')}`);
    }
  });
});
