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

  it('warns once per variable outside development (NODE_ENV production, unset or anything else), naming the variable and never its value', async () => {
    for (const nodeEnv of ['production', undefined, 'staging']) {
      const config = configFromDocument(structuredClone(minimal), 'test', {});
      const warnings: string[] = [];
      const resolver = await createConfiguredResolver(config.secrets, { env: { ...env, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) }, onWarning: (m) => warnings.push(m) });
      await resolver.resolve('env:KW_TEST_OPENAI');
      await resolver.resolve('env:KW_TEST_OPENAI');
      await resolver.resolve('env:KW_TEST_ADMIN');
      assert.equal(warnings.length, 2, `NODE_ENV=${nodeEnv}`);
      assert.match(warnings[0] ?? '', /env:KW_TEST_OPENAI .*meant for development/);
      assert.match(warnings[0] ?? '', new RegExp(`NODE_ENV=${nodeEnv ?? 'unset'}`));
      assert.ok(!warnings.join('\n').includes('sk-fake-TEST-ONLY'));
      assert.ok(!warnings.join('\n').includes('fake-admin-TEST-ONLY'));
    }
  });

  it('does not warn in development or test', async () => {
    for (const nodeEnv of ['development', 'test']) {
      const config = configFromDocument(structuredClone(minimal), 'test', {});
      const warnings: string[] = [];
      const resolver = await createConfiguredResolver(config.secrets, { env: { ...env, NODE_ENV: nodeEnv }, onWarning: (m) => warnings.push(m) });
      assert.equal((await resolver.resolve('env:KW_TEST_OPENAI')).value, 'sk-fake-TEST-ONLY-000000000000');
      assert.deepEqual(warnings, [], `NODE_ENV=${nodeEnv}`);
    }
  });
});
