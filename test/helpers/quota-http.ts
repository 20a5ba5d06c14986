import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGateway, type Gateway } from '../../src/main.js';
import type { Harness } from './harness.js';
import { FAKE_ADMIN_TOKEN, postJson } from './harness.js';
import { counterKey, windowAt, type Metric, type Scope, type WindowKind } from '../../src/quota/windows.js';
import type { CounterState } from '../../src/quota/types.js';

/** Helpers shared by the quota tests (admission, settlement, alerts) over loopback HTTP. */

export const RATE_HEADER_NAMES = [
  'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens',
] as const;

/** The x-ratelimit-* headers of an answer (absent ones left out). */
export function rateHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of RATE_HEADER_NAMES) {
    const value = headers.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

/** OpenAI's reset duration style (`59s`, `1m0s`, `23h59m59s`). */
export const RESET_FORMAT = /^(?:\d+h)?(?:\d+m)?\d+s$/;

export interface ChatOptions {
  model?: string;
  maxTokens?: number;
  stream?: boolean;
  signal?: AbortSignal;
}

/** POST /v1/chat/completions with one user message. */
export function chat(url: string, key: string, content: string, opts: ChatOptions = {}) {
  const body: Record<string, unknown> = { model: opts.model ?? 'gpt-4o-mini', messages: [{ role: 'user', content }] };
  if (opts.maxTokens !== undefined) body['max_tokens'] = opts.maxTokens;
  if (opts.stream) body['stream'] = true;
  return postJson(`${url}/v1/chat/completions`, key, body);
}

/** PUT to the admin API with the (fake) admin token. */
export async function adminPut(adminUrl: string, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${adminUrl}${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/**
 * Minute windows make rate tests flaky when a test straddles a minute boundary (the counters
 * start over): when less than `needMs` is left in this UTC minute, waits for the next one.
 * Minute boundaries include day and month boundaries, so this guards those windows too.
 */
export async function roomInMinute(needMs = 4000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < needMs) await sleep(left + 50);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true (or throws after `timeoutMs` with `what`). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Waits until the gateway holds no reservation at all (settlement is off the answer's path). */
export async function settledIdle(gateway: Gateway, timeoutMs = 5000): Promise<void> {
  let last = -1;
  await until(async () => {
    last = await gateway.counters.reservedTotal(Date.now());
    return last === 0;
  }, `reservedTotal to return to 0 (still ${last})`, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; last reservedTotal ${last}`);
  });
}

/** The id of a tenant by name. */
export async function tenantIdOf(gateway: Gateway, name: string): Promise<string> {
  const tenant = await gateway.store.tenants.getByName(name);
  if (!tenant) throw new Error(`no tenant ${name}`);
  return tenant.id;
}

/** The counter key the admission uses for a scope/id/metric in the window containing `at`. */
export function counterKeyAt(scope: Scope, id: string, metric: Metric, kind: WindowKind, at = Date.now()): string {
  return counterKey(scope, id, metric, windowAt(kind, at));
}

/** Reads one counter of the gateway's counter store. */
export async function readCounter(gateway: Gateway, key: string): Promise<CounterState> {
  const [state] = await gateway.counters.read([key], Date.now());
  return state ?? { used: 0, reserved: 0 };
}

/** The usage-ledger row of one request (after flushing the writer). */
export async function ledgerRow(gateway: Gateway, requestId: string | null) {
  await gateway.writer.flush();
  const rows = await gateway.store.records.listUsage({ limit: 10_000 });
  const row = rows.find((r) => r.requestId === requestId);
  if (!row) throw new Error(`no ledger row for request ${requestId}`);
  return row;
}

/**
 * A second gateway built from the harness's own (already validated) config: same SQLite file,
 * same secrets, new listeners on port 0. Used to restart a gateway on the same store, or to run
 * two replicas side by side. Its logs go to the harness's log capture.
 */
export async function gatewayOnSameStore(h: Harness): Promise<{ gateway: Gateway; url: string; adminUrl: string }> {
  const gateway = await createGateway(h.config, { logDestination: h.logs, flushIntervalMs: 20 });
  const { publicUrl, adminUrl } = await gateway.listen();
  return { gateway, url: publicUrl, adminUrl };
}

export interface ReceivedHook {
  body: string;
  json: Record<string, any>;
  headers: IncomingHttpHeaders;
  /** The status this receiver answered with. */
  status: number;
}

export interface WebhookReceiver {
  url: string;
  /** Every POST, in arrival order (failed attempts included). */
  received: ReceivedHook[];
  /** The POSTs answered with 2xx. */
  delivered(): ReceivedHook[];
  close(): Promise<void>;
}

/**
 * A loopback webhook receiver capturing POST bodies and headers. `answer` picks the status (and
 * optionally extra headers) for each POST (default 204), e.g. to fail the first attempts.
 */
export async function startWebhookReceiver(
  answer: (hook: Omit<ReceivedHook, 'status'>, index: number) => number | { status: number; headers: Record<string, string> } = () => 204,
): Promise<WebhookReceiver> {
  const received: ReceivedHook[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, any> = {};
      try {
        json = JSON.parse(body) as Record<string, any>;
      } catch {
        // kept as text; the test will notice
      }
      const hook = { body, json, headers: req.headers };
      const chosen = answer(hook, received.length);
      const { status, headers } = typeof chosen === 'number' ? { status: chosen, headers: {} } : chosen;
      received.push({ ...hook, status });
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(status < 300 ? 'ok' : 'fail');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    delivered: () => received.filter((r) => r.status >= 200 && r.status < 300),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
