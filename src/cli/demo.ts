import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { configFromDocument } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';

/** Where demo mode keeps its database and generated secrets (override with KEYWARDEN_DATA_DIR). */
export function demoDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env['KEYWARDEN_DATA_DIR'] ?? './data');
}

/**
 * Makes (once) the random secrets demo mode needs, as owner-only files, and returns their
 * references. Nothing secret is ever a literal in config, not even in the demo.
 */
export function ensureDemoSecrets(dataDir: string): { adminToken: string; promptKey: string; mockKey: string; secretsDir: string } {
  const dir = join(dataDir, 'demo-secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const make = (name: string, value: () => string) => {
    const path = join(dir, name);
    if (!existsSync(path)) writeFileSync(path, `${value()}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
    return `file:${path}`;
  };
  return {
    adminToken: make('admin-token', () => `kwadmin_${randomBytes(24).toString('base64url')}`),
    promptKey: make('prompt-hmac-key', () => randomBytes(32).toString('base64url')),
    // plainly fake: the mock provider accepts only this, and it unlocks nothing real
    mockKey: make('mock-provider-key', () => `sk-mock-fake-${randomBytes(16).toString('hex')}`),
    secretsDir: dir,
  };
}

export function readSecretFile(reference: string): string {
  return readFileSync(reference.replace(/^file:/, ''), 'utf8').trim();
}

/** The contract's default tenant policy (issue #2's example config): the demo's, the tests' and the benchmark's. */
export const DEMO_POLICY = {
  models: ['gpt-4o-mini', 'fast', 'text-embedding-3-small', 'claude-3-5-haiku-latest'],
  params: ['temperature', 'top_p', 'stop', 'max_tokens', 'max_completion_tokens', 'max_output_tokens', 'stream',
    'stream_options', 'system', 'instructions', 'encoding_format', 'dimensions'],
  tools: false,
  files: false,
  max_body_bytes: 1_048_576,
  max_output_tokens: 4096,
};

/**
 * The configuration demo mode runs: both providers pointed at the built-in mock provider,
 * the contract's models and tenant defaults, an SQLite store under the data directory.
 */
export function demoConfig(mockUrl: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const dataDir = demoDataDir(env);
  const secrets = ensureDemoSecrets(dataDir);
  return configFromDocument(
    {
      listen: { public: '127.0.0.1:8080', admin: '127.0.0.1:8081' },
      store: `sqlite:${join(dataDir, 'keywarden.db')}`,
      admin: { token: secrets.adminToken },
      audit: { prompt_hmac_key: secrets.promptKey },
      providers: {
        openai: { type: 'openai', base_url: `${mockUrl}/v1`, api_key: secrets.mockKey, timeout: '60s' },
        anthropic: { type: 'anthropic', base_url: mockUrl, api_key: secrets.mockKey, timeout: '60s' },
      },
      models: {
        'gpt-4o-mini': { provider: 'openai' },
        fast: { provider: 'openai', model: 'gpt-4o-mini' },
        'text-embedding-3-small': { provider: 'openai' },
        'claude-3-5-haiku-latest': { provider: 'anthropic' },
      },
      tenants: { defaults: { policy: DEMO_POLICY } },
    },
    'demo configuration',
    env,
  );
}
