import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConfiguredResolver } from '../src/secrets/from-config.js';
import { configFromDocument } from '../src/config/load.js';

const minimal = {
  admin: { token: 'env:KW_TEST_ADMIN' },
  audit: { prompt_hmac_key: 'env:KW_TEST_HMAC' },
  providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_TEST_OPENAI' } },
};

describe('env: secret references', () => {
  // plainly fake values, test only
  const env = { KW_TEST_ADMIN: 'fake-admin-TEST-ONLY', KW_TEST_OPENAI: 'sk-fake-TEST-ONLY-000000000000' };

  it('warns once per variable when NODE_ENV=production, naming the variable and never its value', async () => {
    const config = configFromDocument(structuredClone(minimal), 'test', {});
    const warnings: string[] = [];
    const resolver = await createConfiguredResolver(config.secrets, { env: { ...env, NODE_ENV: 'production' }, onWarning: (m) => warnings.push(m) });
    await resolver.resolve('env:KW_TEST_OPENAI');
    await resolver.resolve('env:KW_TEST_OPENAI');
    await resolver.resolve('env:KW_TEST_ADMIN');
    assert.equal(warnings.length, 2);
    assert.match(warnings[0] ?? '', /env:KW_TEST_OPENAI .*production/);
    assert.ok(!warnings.join('\n').includes('sk-fake-TEST-ONLY'));
  });

  it('does not warn outside production', async () => {
    const config = configFromDocument(structuredClone(minimal), 'test', {});
    const warnings: string[] = [];
    const resolver = await createConfiguredResolver(config.secrets, { env: { ...env, NODE_ENV: 'development' }, onWarning: (m) => warnings.push(m) });
    assert.equal((await resolver.resolve('env:KW_TEST_OPENAI')).value, 'sk-fake-TEST-ONLY-000000000000');
    assert.deepEqual(warnings, []);
  });
});
