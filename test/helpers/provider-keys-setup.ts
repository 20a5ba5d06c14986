import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { FAKE_PROVIDER_KEY, type Harness } from './harness.js';
import { cliEnv, runCli, type CliResult } from './cli-process.js';

/** Plainly fake replacement provider keys (TEST ONLY: they unlock nothing). */
export const fakeNewKey = (n: number | string): string => `sk-fake-TEST-ONLY-rotated-key-${String(n).padStart(4, '0')}-000000000000`;

export const fp = (value: string): string => createHash('sha256').update(value).digest('hex').slice(0, 16);

/** Writes a secret file in the harness directory and returns its `file:` reference. */
export function writeSecret(h: { dir: string }, name: string, value: string): string {
  const path = join(h.dir, name);
  writeFileSync(path, value, { mode: 0o600 });
  return `file:${path}`;
}

/**
 * A config file for CLI children equal to the harness gateway's (same store, same secret files,
 * same mock), plus `extra` top-level fields.
 */
export function writeCliConfig(h: Harness, extra: Record<string, unknown> = {}): string {
  const doc = {
    listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
    store: h.config.store,
    admin: { token: h.config.admin.token },
    audit: { prompt_hmac_key: h.config.audit.promptHmacKey },
    log: { level: 'silent' },
    providers: {
      openai: { type: 'openai', base_url: `${h.mock.url}/v1`, api_key: h.config.providers['openai']!.apiKey, timeout: '5s' },
      anthropic: { type: 'anthropic', base_url: h.mock.url, api_key: h.config.providers['anthropic']!.apiKey, timeout: '5s' },
    },
    models: { 'gpt-4o-mini': { provider: 'openai' } },
    ...extra,
  };
  const path = join(h.dir, 'cli-config.json');
  writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
  return path;
}

export function pkCli(h: Harness, configPath: string, args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli([...args, '--config', configPath], { cwd: h.dir, env: cliEnv({ NODE_ENV: 'test', ...env }) });
}

/** Output must never hold a key value. */
export function assertNoKeyValues(text: string, values: readonly string[]): void {
  for (const v of [FAKE_PROVIDER_KEY, ...values]) if (text.includes(v)) throw new Error('a provider key value was printed');
}

/** A webhook receiver on loopback that records JSON bodies. */
export async function startWebhook(): Promise<{ url: string; bodies: Array<Record<string, unknown>>; raw: string[]; close(): Promise<void> }> {
  const bodies: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const server: Server = createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => { data += c.toString('utf8'); });
    req.on('end', () => {
      raw.push(data);
      try { bodies.push(JSON.parse(data) as Record<string, unknown>); } catch { /* not JSON */ }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hook`, bodies, raw,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
