import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FAKE_PROVIDER_KEY, LogCapture, startHarness, type Harness } from './helpers/harness.js';
import {
  chat, gatewayOnSameStore, settledIdle, sleep, startWebhookReceiver, tenantIdOf, until, type ReceivedHook, type WebhookReceiver,
} from './helpers/quota-http.js';
import { createAlertSink } from '../src/quota/alerts.js';
import type { ThresholdEvent } from '../src/quota/admission.js';
import { windowAt } from '../src/quota/windows.js';
import { createLogger } from '../src/log/logger.js';
import type { RecordWriter } from '../src/audit/record-writer.js';
import type { AuditEvent } from '../src/store/types.js';
import type { Gateway } from '../src/main.js';

const REDIS_URL = process.env.REDIS_URL;
const SKIP_REDIS = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379); alert dedupe across replicas sharing Redis not tested';

// plainly fake: signs test webhooks only
const FAKE_WEBHOOK_SECRET = 'fake-webhook-secret-TEST-ONLY-0000000000';
/** Prompt text that must never reach an alert. */
const CANARY = 'CANARY-PROMPT-quota-alerts-5f1c9e';

const PAYLOAD_FIELDS = ['type', 'tenant', 'tenant_id', 'key_id', 'scope', 'limit', 'threshold_percent', 'used', 'max', 'unit', 'window_end', 'at'].sort();

function signatureOf(body: string, secret = FAKE_WEBHOOK_SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function jsonLogs(logs: LogCapture): Array<Record<string, any>> {
  return logs.lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, any>];
    } catch {
      return [];
    }
  });
}

function forTenant(hooks: readonly ReceivedHook[], tenant: string): ReceivedHook[] {
  return hooks.filter((hook) => hook.json['tenant'] === tenant);
}

/** Asserts nothing secret or content-bearing is in a webhook POST (body and headers). */
function assertNoSecrets(hook: ReceivedHook, secrets: readonly string[]): void {
  const everything = `${hook.body}\n${JSON.stringify(hook.headers)}`;
  for (const secret of secrets) assert.ok(!everything.includes(secret), `an alert carries a secret or prompt text (${secret.slice(0, 12)}…)`);
}

describe('budget threshold alerts through the gateway', () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let secretDir: string;
  const failedAttempts = new Map<string, number>();

  before(async () => {
    // the retry tenant's alerts fail twice before the receiver takes them
    receiver = await startWebhookReceiver((hook) => {
      if (hook.json['tenant'] !== 'alerts-retry') return 204;
      const tries = failedAttempts.get('retry') ?? 0;
      if (tries >= 2) return 204;
      failedAttempts.set('retry', tries + 1);
      return 500;
    });
    secretDir = mkdtempSync(join(tmpdir(), 'keywarden-alerts-'));
    const secretPath = join(secretDir, 'webhook-secret');
    writeFileSync(secretPath, FAKE_WEBHOOK_SECRET, { mode: 0o600 });
    h = await startHarness({
      config: {
        alerts: { webhook_url: receiver.url, webhook_secret: `file:${secretPath}` },
        // 1000 USD per million tokens: 0.001 USD per token, so a 1 USD budget is 1000 tokens
        prices: { 'gpt-4o-mini': { input: 1000, output: 1000 } },
      },
    });
  });
  after(async () => {
    await h?.close();
    await receiver?.close();
    if (secretDir) rmSync(secretDir, { recursive: true, force: true });
  });

  it('sends one alert per threshold (50, 80, 100 %) of a daily money budget, not one per request', async () => {
    const { key } = await h.tenantKey('alerts-usd', { limits: { usd_per_day: 1 } });
    const tenantId = await tenantIdOf(h.gateway, 'alerts-usd');
    let admitted = 0;
    let refused = 0;
    // about 60 tokens (0.06 USD) a request: ~17 requests reach the budget, then a few more are refused
    for (let i = 0; i < 40 && refused < 4; i++) {
      const res = await chat(h.url, key, `${CANARY} [[mock:tokens=50]]`, { maxTokens: 50 });
      if (res.status === 200) admitted++;
      else {
        assert.equal(res.json.error.code, 'tenant_budget_day_exceeded');
        refused++;
      }
      await settledIdle(h.gateway);
    }
    assert.ok(admitted >= 10, `admitted ${admitted}`);
    assert.equal(refused, 4);
    await until(() => forTenant(receiver.delivered(), 'alerts-usd').length >= 3, 'three alerts');
    // more refusals after the 100 % alert add none
    for (let i = 0; i < 2; i++) assert.equal((await chat(h.url, key, `${CANARY} [[mock:tokens=50]]`, { maxTokens: 50 })).status, 429);
    await sleep(200);

    const hooks = forTenant(receiver.received, 'alerts-usd');
    assert.equal(hooks.length, 3, `one POST per threshold, got ${hooks.map((x) => x.json['threshold_percent']).join(',')}`);
    assert.deepEqual(hooks.map((x) => x.json['threshold_percent']).sort((a, b) => a - b), [50, 80, 100]);
    const windowEnd = new Date(windowAt('day', Date.now()).end).toISOString();
    for (const hook of hooks) {
      const p = hook.json;
      assert.deepEqual(Object.keys(p).sort(), PAYLOAD_FIELDS);
      assert.equal(p['type'], 'budget_threshold');
      assert.equal(p['tenant'], 'alerts-usd');
      assert.equal(p['tenant_id'], tenantId);
      assert.equal(p['scope'], 'tenant');
      assert.equal(p['key_id'], null);
      assert.equal(p['limit'], 'usd_per_day');
      assert.equal(p['unit'], 'usd');
      assert.equal(p['max'], 1);
      assert.equal(typeof p['used'], 'number');
      if (p['threshold_percent'] < 100) assert.ok(p['used'] >= p['threshold_percent'] / 100, `used ${p['used']} at ${p['threshold_percent']} %`);
      assert.equal(p['window_end'], windowEnd);
      assert.ok(!Number.isNaN(Date.parse(p['at'])));
      assert.equal(hook.headers['content-type'], 'application/json');
      assert.equal(hook.headers['x-keywarden-signature'], signatureOf(hook.body), 'signed with HMAC-SHA256 of the body');
      assertNoSecrets(hook, [CANARY, key, key.slice('kw_'.length + 16 + 1), FAKE_PROVIDER_KEY, FAKE_WEBHOOK_SECRET]);
    }

    // one log line and one audit row per threshold as well
    const lines = jsonLogs(h.logs).filter((l) => l['event'] === 'budget_threshold' && l['tenant'] === 'alerts-usd');
    assert.deepEqual(lines.map((l) => l['threshold_percent']).sort((a, b) => a - b), [50, 80, 100]);
    for (const line of lines) assert.ok(!JSON.stringify(line).includes(CANARY) && !JSON.stringify(line).includes(key));
    await h.gateway.writer.flush();
    const rows = (await h.gateway.store.records.listAudit({ limit: 100_000 }))
      .filter((r) => r.action === 'quota.threshold' && r.details['tenant'] === tenantId);
    assert.deepEqual(rows.map((r) => r.details['percent']).sort((a, b) => Number(a) - Number(b)), [50, 80, 100]);
    for (const row of rows) {
      assert.equal(row.actor, 'system');
      assert.equal(row.target, tenantId);
      assert.equal(row.details['limit'], 'usd_per_day');
      assert.ok(!JSON.stringify(row).includes(CANARY) && !JSON.stringify(row).includes(key));
    }
  });

  it("alerts on a key's daily token budget with the key's id and the unit tokens", async () => {
    const { key, id } = await h.tenantKey('alerts-key', { key_limits: { tokens_per_day: 600 } });
    let refused = 0;
    for (let i = 0; i < 30 && refused < 2; i++) {
      const res = await chat(h.url, key, 'spend tokens [[mock:tokens=50]]', { maxTokens: 50 });
      if (res.status !== 200) {
        assert.equal(res.json.error.code, 'key_tokens_per_day_exceeded');
        refused++;
      }
      await settledIdle(h.gateway);
    }
    assert.equal(refused, 2);
    await until(() => forTenant(receiver.delivered(), 'alerts-key').length >= 3, 'three alerts');
    await sleep(100);
    const hooks = forTenant(receiver.received, 'alerts-key');
    assert.deepEqual(hooks.map((x) => x.json['threshold_percent']).sort((a, b) => a - b), [50, 80, 100]);
    for (const hook of hooks) {
      assert.equal(hook.json['scope'], 'key');
      assert.equal(hook.json['key_id'], id);
      assert.equal(hook.json['limit'], 'tokens_per_day');
      assert.equal(hook.json['unit'], 'tokens');
      assert.equal(hook.json['max'], 600);
      assert.ok(Number.isInteger(hook.json['used']));
    }
  });

  it('retries a webhook that fails, until the receiver takes the alert', async () => {
    const { key } = await h.tenantKey('alerts-retry', { limits: { usd_per_day: 1 } });
    // one big request takes the budget past 50 % (not 80 %); the next admission notices it
    const big = await chat(h.url, key, 'big [[mock:tokens=550]]', { maxTokens: 600 });
    assert.equal(big.status, 200, big.text);
    await settledIdle(h.gateway);
    const small = await chat(h.url, key, 'small', { maxTokens: 10 });
    assert.equal(small.status, 200, small.text);
    // default backoff (not configurable): 500 ms, then 1 s
    await until(() => forTenant(receiver.delivered(), 'alerts-retry').length >= 1, 'the alert to be delivered', 8000);
    const attempts = forTenant(receiver.received, 'alerts-retry');
    assert.deepEqual(attempts.map((x) => x.status), [500, 500, 204]);
    assert.equal(new Set(attempts.map((x) => x.body)).size, 1, 'the same alert each time');
    assert.equal(attempts[0]?.json['threshold_percent'], 50);
    for (const attempt of attempts) assert.equal(attempt.headers['x-keywarden-signature'], signatureOf(attempt.body));
    const failures = jsonLogs(h.logs).filter((l) => l['event'] === 'alert_webhook_failed');
    assert.equal(failures.length, 2);
    assert.ok(failures.every((l) => l['status'] === 500));
  });
});

describe('the alert sink (webhook delivery)', () => {
  const receivers: WebhookReceiver[] = [];
  after(async () => {
    await Promise.all(receivers.map((r) => r.close()));
  });

  const event: ThresholdEvent = {
    scope: 'tenant', tenantId: 't_fake0001', tenantName: 'sink-tenant', keyId: null, limit: 'usd_per_month',
    percent: 80, used: 4_000_000_000, max: 5_000_000_000, windowEnd: Date.UTC(2030, 0, 1),
  };

  function sinkWith(url: string, opts: { secret?: string; attempts?: number } = {}) {
    const logs = new LogCapture();
    const audits: AuditEvent[] = [];
    const writer = { audit: (e: AuditEvent) => audits.push(e) } as unknown as RecordWriter;
    // retryBaseMs is not exposed in config (alerts: webhook_url, webhook_secret, thresholds only), so it is set here
    const sink = createAlertSink({
      logger: createLogger({ level: 'info', destination: logs }), writer, webhookUrl: new URL(url), webhookSecret: opts.secret,
      retryBaseMs: 10, attempts: opts.attempts ?? 3, timeoutMs: 2000,
    });
    return { sink, logs, audits };
  }

  it('gives up after the configured attempts against a receiver that always fails, and says so in the log', async () => {
    const receiver = await startWebhookReceiver(() => 500);
    receivers.push(receiver);
    const { sink, logs, audits } = sinkWith(receiver.url, { attempts: 3 });
    sink.alert(event);
    await sink.drain();
    assert.equal(receiver.received.length, 3);
    assert.equal(jsonLogs(logs).filter((l) => l['event'] === 'alert_webhook_failed').length, 3);
    assert.equal(jsonLogs(logs).filter((l) => l['event'] === 'alert_webhook_gave_up').length, 1);
    assert.equal(jsonLogs(logs).filter((l) => l['event'] === 'budget_threshold').length, 1);
    assert.equal(audits.length, 1);
    assert.equal(audits[0]?.action, 'quota.threshold');
  });

  it('sends the amounts in dollars for a money budget, and no signature without a secret', async () => {
    const receiver = await startWebhookReceiver();
    receivers.push(receiver);
    const { sink } = sinkWith(receiver.url);
    sink.alert(event);
    await sink.drain();
    assert.equal(receiver.received.length, 1);
    const hook = receiver.received[0] as ReceivedHook;
    assert.equal(hook.headers['x-keywarden-signature'], undefined);
    assert.equal(hook.json['used'], 4);
    assert.equal(hook.json['max'], 5);
    assert.equal(hook.json['unit'], 'usd');
    assert.equal(hook.json['window_end'], '2030-01-01T00:00:00.000Z');
  });

  it('signs with the secret and retries after a failure', async () => {
    const receiver = await startWebhookReceiver((_hook, index) => (index === 0 ? 503 : 200));
    receivers.push(receiver);
    const { sink } = sinkWith(receiver.url, { secret: FAKE_WEBHOOK_SECRET });
    sink.alert(event);
    await sink.drain();
    assert.deepEqual(receiver.received.map((r) => r.status), [503, 200]);
    for (const hook of receiver.received) assert.equal(hook.headers['x-keywarden-signature'], signatureOf(hook.body));
  });

  it('does not follow a redirect from the webhook receiver', async () => {
    const elsewhere = await startWebhookReceiver();
    receivers.push(elsewhere);
    const redirecting = await startWebhookReceiver(() => ({ status: 307, headers: { location: elsewhere.url } }));
    receivers.push(redirecting);
    const { sink, logs } = sinkWith(redirecting.url, { attempts: 1 });
    sink.alert(event);
    await sink.drain();
    assert.equal(redirecting.received.length, 1);
    assert.equal(elsewhere.received.length, 0, 'the redirect was not followed');
    assert.equal(jsonLogs(logs).filter((l) => l['event'] === 'alert_webhook_gave_up').length, 1, 'a redirect is a failed delivery');
  });
});

describe('alerts from two gateways sharing Redis', SKIP_REDIS ? { skip: SKIP_REDIS } : {}, () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let replica: { gateway: Gateway; url: string } | undefined;

  before(async () => {
    receiver = await startWebhookReceiver();
    h = await startHarness({ config: { limits: { store: REDIS_URL }, alerts: { webhook_url: receiver.url } } });
    // a second replica: same SQLite file (same tenants and keys), same Redis counters
    replica = await gatewayOnSameStore(h);
  });
  after(async () => {
    await replica?.gateway.close();
    await h?.close();
    await receiver?.close();
  });

  it('sends one alert per threshold across both replicas', async () => {
    // tenant ids are random per run, so the counters and alert claims in Redis are this run's own
    const { key } = await h.tenantKey('alerts-replicas', { limits: { tokens_per_day: 1000 } });
    const tenantId = await tenantIdOf(h.gateway, 'alerts-replicas');
    const urls = [h.url, (replica as { url: string }).url];
    let refused = 0;
    for (let i = 0; i < 40 && refused < 4; i++) {
      const res = await chat(urls[i % 2] as string, key, 'replicated [[mock:tokens=50]]', { maxTokens: 50 });
      if (res.status !== 200) {
        assert.equal(res.json.error.code, 'tenant_tokens_per_day_exceeded');
        refused++;
      }
      // the shared total may hold other runs' reservations: wait for this tenant's counter
      const counterKey = `t:${tenantId}:tok:${windowAt('day', Date.now()).id}`;
      await until(async () => (await h.gateway.counters.read([counterKey], Date.now()))[0]?.reserved === 0, 'settlement');
    }
    assert.equal(refused, 4);
    await until(() => forTenant(receiver.received, 'alerts-replicas').length >= 3, 'three alerts');
    await sleep(200);
    const hooks = forTenant(receiver.received, 'alerts-replicas');
    assert.deepEqual(hooks.map((x) => x.json['threshold_percent']).sort((a, b) => a - b), [50, 80, 100]);
    const lines = jsonLogs(h.logs).filter((l) => l['event'] === 'budget_threshold' && l['tenant'] === 'alerts-replicas');
    assert.equal(lines.length, 3, 'one log line per threshold from the two replicas together');
  });
});

