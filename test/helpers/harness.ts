import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { configFromDocument } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { createGateway, type Gateway } from '../../src/main.js';
import { createMockProvider, type MockProvider } from '../../src/mock-provider/server.js';
import { DEMO_POLICY } from '../../src/cli/demo.js';

/** Plainly fake secrets for tests: they unlock nothing, anywhere. */
export const FAKE_PROVIDER_KEY = 'sk-fake-TEST-ONLY-provider-key-0000000000000000';
export const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-000000000000';
export const FAKE_PROMPT_HMAC_KEY = 'fake-prompt-hmac-key-TEST-ONLY-0000000000';

/** The contract's default tenant policy (issue #2), in config form. */
export const CONTRACT_POLICY = DEMO_POLICY;

/** The contract's model routes: every suite's gateway and the CLI configurations over its store. */
export const CONTRACT_MODELS = {
  'gpt-4o-mini': { provider: 'openai' },
  fast: { provider: 'openai', model: 'gpt-4o-mini' },
  'text-embedding-3-small': { provider: 'openai' },
  'claude-3-5-haiku-latest': { provider: 'anthropic' },
};

/** Captures log lines written by the gateway's logger. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(line);
    cb();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export interface Harness {
  gateway: Gateway;
  mock: MockProvider;
  config: GatewayConfig;
  /** `http://127.0.0.1:PORT` of the public listener. */
  url: string;
  adminUrl: string;
  /** A tenant key of tenant `acme` (full contract policy). */
  key: string;
  keyId: string;
  logs: LogCapture;
  dir: string;
  /** Issues another key for a (new or existing) tenant, optionally with a policy override. */
  tenantKey(name: string, policy?: Record<string, unknown>, opts?: { expiresInMs?: number }): Promise<{ key: string; id: string }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Extra/overriding config document fields (merged shallowly at the top level). */
  config?: Record<string, unknown>;
  policy?: Record<string, unknown>;
  /** Provider timeout (default 5s). */
  timeout?: string;
  providerKey?: string;
  /** Key the mock expects (defaults to providerKey); set differently to simulate a rejected gateway key. */
  mockKey?: string;
  /** Record writer flush interval (default 20 ms). */
  flushIntervalMs?: number;
  /** The clock of anomaly detection. */
  anomalyClock?: () => number;
}

/**
 * Starts the mock provider and a gateway in-process on loopback (port 0), with file-based
 * secrets in a temporary directory, a tenant `acme` and one key. Logs are captured.
 */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const providerKey = options.providerKey ?? FAKE_PROVIDER_KEY;
  const mock = await createMockProvider({ port: 0, apiKey: options.mockKey ?? providerKey });
  const dir = mkdtempSync(join(tmpdir(), 'keywarden-test-'));
  const secret = (name: string, value: string) => {
    const path = join(dir, name);
    writeFileSync(path, value, { mode: 0o600 });
    return `file:${path}`;
  };
  const doc: Record<string, unknown> = {
    listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
    store: `sqlite:${join(dir, 'keywarden.db')}`,
    admin: { token: secret('admin-token', FAKE_ADMIN_TOKEN) },
    audit: { prompt_hmac_key: secret('prompt-key', FAKE_PROMPT_HMAC_KEY) },
    log: { level: 'info' },
    providers: {
      openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: secret('openai-key', providerKey), timeout: options.timeout ?? '5s' },
      anthropic: { type: 'anthropic', base_url: mock.url, api_key: secret('anthropic-key', providerKey), timeout: options.timeout ?? '5s' },
    },
    models: CONTRACT_MODELS,
    tenants: { defaults: { policy: { ...CONTRACT_POLICY, ...(options.policy ?? {}) } } },
    ...(options.config ?? {}),
    // most suites send many wrong credentials on purpose: the failed-authentication limit is
    // raised out of their way unless a test sets its own (test/auth-rate-limit.test.ts does)
    auth: { failure_limits: { per_address: { max: 100_000, window: '1m' }, per_key: { max: 100_000, window: '1m' } }, ...((options.config?.['auth'] as Record<string, unknown> | undefined) ?? {}) },
  };
  const config = configFromDocument(doc, 'test', {});
  const logs = new LogCapture();
  const gateway = await createGateway(config, { logDestination: logs, flushIntervalMs: options.flushIntervalMs ?? 20, ...(options.anomalyClock ? { anomalyClock: options.anomalyClock } : {}) });
  const { publicUrl, adminUrl } = await gateway.listen();
  await gateway.tenants.createTenant('acme', 'test');
  const issued = await gateway.tenants.issueKey('acme', 'test');
  return {
    gateway, mock, config, url: publicUrl, adminUrl, key: issued.key, keyId: issued.id, logs, dir,
    async tenantKey(name, policy, opts = {}) {
      const existing = await gateway.store.tenants.getByName(name);
      if (!existing) await gateway.tenants.createTenant(name, 'test', policy);
      else if (policy) await gateway.tenants.setTenantPolicy(name, policy, 'test');
      const k = await gateway.tenants.issueKey(name, 'test', opts);
      return { key: k.key, id: k.id };
    },
    async close() {
      await gateway.close();
      await mock.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** POSTs JSON to the gateway with a tenant key; returns status, headers and parsed body. */
export async function postJson(url: string, key: string | undefined, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as Record<string, any> };
}
