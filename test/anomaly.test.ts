import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createAnomalyDetector, hourOfWeek, type ObservedRequest } from '../src/anomaly/detector.js';
import { createAnomalyAlertSink } from '../src/anomaly/alerts.js';
import { DEFAULT_ANOMALY_CONFIG, type AnomalyAlert, type AnomalyConfig } from '../src/anomaly/types.js';
import { DEFAULT_POLICY, validateConfig } from '../src/config/validate.js';
import { createLogger } from '../src/log/logger.js';
import type { AuditEvent } from '../src/store/types.js';
import type { Principal } from '../src/auth/types.js';
import { FAKE_ADMIN_TOKEN, LogCapture, startHarness, type Harness } from './helpers/harness.js';
import { chat, sleep, startWebhookReceiver, until, type WebhookReceiver } from './helpers/quota-http.js';

/*
 * Anomaly detection: each detector driven with an injected clock (fires once on the anomaly,
 * never on steady traffic, again only after the condition cleared for the quiet time), the
 * alert sink (log line, audit row, webhook with retry), the config section, and the whole
 * path through the gateway and the mock provider.
 */

const MINUTE = 60_000;
const HOUR = 3_600_000;
/** Monday 2025-01-06 09:00 UTC. */
const MONDAY_9 = Date.UTC(2025, 0, 6, 9, 0, 0);
const ADDRESS_A = '203.0.113.7';
const ADDRESS_B = '198.51.100.23';

function config(over: Partial<AnomalyConfig> = {}): AnomalyConfig {
  return { ...DEFAULT_ANOMALY_CONFIG, ...over };
}

function principal(tenant: string, keyId = `key-${tenant}`): Principal {
  return { tenantId: `tid-${tenant}`, tenantName: tenant, keyId, policy: DEFAULT_POLICY, keyLimits: {} };
}

let seq = 0;
function req(over: Partial<ObservedRequest> & { tenant?: string; keyId?: string } = {}): ObservedRequest {
  const { tenant, keyId, ...rest } = over;
  return {
    requestId: `req-${++seq}`, principal: tenant === undefined ? undefined : principal(tenant, keyId), status: 200, outcome: 'success',
    errorCode: null, usage: { inputTokens: 10, outputTokens: 10 }, clientAddress: ADDRESS_A, ...rest,
  };
}

function authFailure(address: string): ObservedRequest {
  return req({ status: 401, outcome: 'refused', errorCode: 'auth_invalid_credentials', clientAddress: address, usage: { inputTokens: 0, outputTokens: 0 } });
}

/** A detector on a hand-driven clock, collecting its alerts. */
function harnessFor(cfg: AnomalyConfig, start = MONDAY_9) {
  let t = start;
  const alerts: AnomalyAlert[] = [];
  const errors: unknown[] = [];
  const detector = createAnomalyDetector({ config: cfg, now: () => t, onAlert: (a) => alerts.push(a), onError: (e) => errors.push(e) });
  return {
    detector, alerts, errors,
    at(ms: number) {
      t = ms;
    },
    /** `count` requests spread evenly over the minute `minute` after `start`. */
    minute(minute: number, count: number, make: (i: number) => ObservedRequest, base = start) {
      for (let i = 0; i < count; i++) {
        t = base + minute * MINUTE + Math.floor((i * MINUTE) / Math.max(1, count)) + 1;
        detector.observe(make(i));
      }
    },
    kinds: () => alerts.map((a) => a.kind),
  };
}

const RATE_CONFIG = config({
  bucketMs: MINUTE, windowMs: 30 * MINUTE, minHistoryMs: 10 * MINUTE, quietMs: 5 * MINUTE,
  requestRate: { enabled: true, k: 4, factor: 3, minCount: 20 },
  tokenRate: { enabled: true, k: 4, factor: 3, minCount: 5000 },
  errorRate: { enabled: true, k: 4, minRate: 0.5, minErrors: 5 },
});

describe('anomaly detector: request-rate spikes', () => {
  it('stays silent on steady traffic, fires once on a spike, and once more only after the spike has cleared for the quiet time', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 15; m++) h.minute(m, 5, () => req({ tenant: 'steady' }));
    assert.deepEqual(h.kinds(), [], 'steady traffic raised an alert');

    h.minute(15, 40, () => req({ tenant: 'steady' }));
    h.minute(16, 40, () => req({ tenant: 'steady' }));
    assert.deepEqual(h.kinds(), ['request_rate'], 'a spike over two buckets is one alert');
    const first = h.alerts[0] as AnomalyAlert;
    assert.equal(first.tenant, 'steady');
    assert.equal(first.tenantId, 'tid-steady');
    assert.equal(first.scope, 'tenant');
    assert.equal(first.values['requests'], 20, 'fires when the bucket reaches the threshold');
    assert.equal(first.values['baseline_mean'], 5);
    assert.equal(first.values['baseline_stddev'], 0);

    // back to normal for longer than the quiet time: the next spike is a new alert
    for (let m = 17; m < 24; m++) h.minute(m, 5, () => req({ tenant: 'steady' }));
    assert.equal(h.alerts.length, 1);
    h.minute(24, 40, () => req({ tenant: 'steady' }));
    assert.deepEqual(h.kinds(), ['request_rate', 'request_rate']);
    assert.deepEqual(h.errors, []);
  });

  it('does not fire again while a spike goes on, however long', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 12; m++) h.minute(m, 5, () => req({ tenant: 'long' }));
    for (let m = 12; m < 30; m++) h.minute(m, 200, () => req({ tenant: 'long' }));
    assert.deepEqual(h.kinds(), ['request_rate']);
  });

  it('never alerts a quiet tenant below the minimum volume, even at ten times its usual rate', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 15; m++) h.minute(m, 1, () => req({ tenant: 'quiet' }));
    h.minute(15, 10, () => req({ tenant: 'quiet' }));
    assert.deepEqual(h.kinds(), []);
  });

  it('does not judge a tenant before it has min_history of traffic', () => {
    const h = harnessFor(RATE_CONFIG);
    h.minute(0, 5, () => req({ tenant: 'new' }));
    h.minute(1, 200, () => req({ tenant: 'new' }));
    assert.deepEqual(h.kinds(), []);
  });

  it('keeps tenants apart: one tenant\'s spike says nothing about another', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 12; m++) h.minute(m, 10, (i) => req({ tenant: i % 2 === 0 ? 'a' : 'b' }));
    h.minute(12, 60, (i) => req({ tenant: i % 6 === 0 ? 'b' : 'a' }));
    assert.deepEqual(h.alerts.map((a) => [a.kind, a.tenant]), [['request_rate', 'a']]);
  });

  it('does nothing at all when anomaly.enabled is false', () => {
    const h = harnessFor({ ...RATE_CONFIG, enabled: false });
    for (let m = 0; m < 12; m++) h.minute(m, 5, () => req({ tenant: 'off' }));
    h.minute(12, 200, () => req({ tenant: 'off' }));
    for (let i = 0; i < 100; i++) h.detector.observe(authFailure(ADDRESS_A));
    assert.deepEqual(h.kinds(), []);
    assert.deepEqual(h.detector.sizes(), { tenants: 0, keys: 0, addresses: 0, open: 0 });
  });
});

describe('anomaly detector: token-rate spikes', () => {
  it('fires once when tokens spike at an unchanged request rate, and not for the request rate', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 12; m++) h.minute(m, 5, () => req({ tenant: 'tok', usage: { inputTokens: 50, outputTokens: 50 } }));
    assert.deepEqual(h.kinds(), []);
    h.minute(12, 5, () => req({ tenant: 'tok', usage: { inputTokens: 100, outputTokens: 3000 } }));
    h.minute(13, 5, () => req({ tenant: 'tok', usage: { inputTokens: 100, outputTokens: 3000 } }));
    assert.deepEqual(h.kinds(), ['token_rate']);
    const alert = h.alerts[0] as AnomalyAlert;
    assert.equal(alert.values['tokens'], 6200, 'the second big request crosses 5000 tokens in the bucket');
    assert.equal(alert.values['baseline_mean'], 500);
    // cleared for the quiet time, then a new spike
    for (let m = 14; m < 21; m++) h.minute(m, 5, () => req({ tenant: 'tok', usage: { inputTokens: 50, outputTokens: 50 } }));
    h.minute(21, 5, () => req({ tenant: 'tok', usage: { inputTokens: 100, outputTokens: 9000 } }));
    assert.deepEqual(h.kinds(), ['token_rate', 'token_rate']);
  });
});

describe('anomaly detector: error-rate spikes', () => {
  it('fires once when most answers of a bucket fail, never for a steady low error rate', () => {
    const h = harnessFor(RATE_CONFIG);
    // one failure in ten, every minute: the tenant's normal
    for (let m = 0; m < 12; m++) h.minute(m, 10, (i) => (i === 3 ? req({ tenant: 'err', status: 502, outcome: 'upstream_error', errorCode: 'upstream_error' }) : req({ tenant: 'err' })));
    assert.deepEqual(h.kinds(), []);

    h.minute(12, 10, () => req({ tenant: 'err', status: 502, outcome: 'upstream_error', errorCode: 'upstream_error' }));
    h.minute(13, 10, () => req({ tenant: 'err', status: 504, outcome: 'upstream_error', errorCode: 'upstream_timeout' }));
    assert.deepEqual(h.kinds(), ['error_rate']);
    const alert = h.alerts[0] as AnomalyAlert;
    assert.equal(alert.values['errors'], 5, 'fires at min_errors');
    assert.equal(alert.values['rate'], 1);
    assert.equal(alert.values['baseline_rate'], 0.1);

    for (let m = 14; m < 21; m++) h.minute(m, 10, () => req({ tenant: 'err' }));
    assert.equal(h.alerts.length, 1);
    h.minute(21, 10, () => req({ tenant: 'err', status: 200, outcome: 'stream_broken', errorCode: 'upstream_stream_broken' }));
    assert.deepEqual(h.kinds(), ['error_rate', 'error_rate'], 'broken streams count as errors; a new episode alerts again');
  });

  it('does not count client refusals (4xx) as errors', () => {
    const h = harnessFor(RATE_CONFIG);
    for (let m = 0; m < 12; m++) h.minute(m, 10, () => req({ tenant: 'policy' }));
    h.minute(12, 10, () => req({ tenant: 'policy', status: 400, outcome: 'refused', errorCode: 'policy_param_not_allowed' }));
    assert.deepEqual(h.kinds(), []);
  });
});

describe('anomaly detector: authentication-failure bursts', () => {
  const AUTH_CONFIG = config({ authFailures: { enabled: true, perAddress: 10, global: 50, maxAddresses: 1000 }, quietMs: 5 * MINUTE });

  it('fires once per address for a burst, names the address only by its HMAC, and again only after it cleared', () => {
    const h = harnessFor(AUTH_CONFIG);
    // a few typos a minute from one address: normal
    for (let m = 0; m < 5; m++) h.minute(m, 9, () => authFailure(ADDRESS_A));
    assert.deepEqual(h.kinds(), []);
    h.minute(5, 40, () => authFailure(ADDRESS_A));
    h.minute(6, 40, () => authFailure(ADDRESS_A));
    assert.deepEqual(h.kinds(), ['auth_failure_burst']);
    const alert = h.alerts[0] as AnomalyAlert;
    assert.equal(alert.scope, 'address');
    assert.equal(alert.tenant, null);
    assert.equal(alert.values['failures'], 10);
    assert.match(alert.client ?? '', /^hmac-sha256:[0-9a-f]{64}$/);
    assert.ok(!JSON.stringify(h.alerts).includes(ADDRESS_A), 'the client address appears in clear');

    // another address bursting is its own alert
    h.minute(7, 12, () => authFailure(ADDRESS_B));
    assert.equal(h.alerts.length, 2);
    assert.notEqual(h.alerts[1]?.client, alert.client);

    // quiet for five minutes, then a new burst from the first address
    h.minute(13, 20, () => authFailure(ADDRESS_A));
    assert.deepEqual(h.kinds(), ['auth_failure_burst', 'auth_failure_burst', 'auth_failure_burst']);
    assert.equal(h.alerts[2]?.client, alert.client, 'the same address gets the same tag');
  });

  it('fires a global alert when many addresses each stay below the per-address threshold', () => {
    const h = harnessFor(AUTH_CONFIG);
    h.minute(0, 54, (i) => authFailure(`192.0.2.${i % 6}`));
    assert.deepEqual(h.alerts.map((a) => [a.kind, a.scope]), [['auth_failure_burst', 'global']]);
    assert.equal(h.alerts[0]?.client, null);
    assert.equal(h.alerts[0]?.values['failures'], 50);
  });

  it('keeps a bounded table of addresses however many there are', () => {
    const h = harnessFor(AUTH_CONFIG);
    h.minute(0, 5000, (i) => authFailure(`2001:db8::${i.toString(16)}`));
    assert.ok(h.detector.sizes().addresses <= 1000);
  });
});

describe('anomaly detector: a key used from a new client address', () => {
  const NEW_ADDRESS_CONFIG = config({ newAddress: { enabled: true, learningMs: HOUR, minRequests: 10, maxAddressesPerKey: 8 }, quietMs: 10 * MINUTE });

  it('learns a key\'s addresses, then fires once for an address never seen for it', () => {
    const h = harnessFor(NEW_ADDRESS_CONFIG);
    // during learning, a second address is just learned
    for (let m = 0; m < 120; m += 5) h.minute(m, 1, () => req({ tenant: 'acme', keyId: 'k1', clientAddress: m === 30 ? ADDRESS_B : ADDRESS_A }));
    assert.deepEqual(h.kinds(), []);
    h.minute(121, 3, () => req({ tenant: 'acme', keyId: 'k1', clientAddress: '192.0.2.99' }));
    assert.deepEqual(h.kinds(), ['new_client_address'], 'fires once, then the address is known');
    const alert = h.alerts[0] as AnomalyAlert;
    assert.equal(alert.scope, 'key');
    assert.equal(alert.keyId, 'k1');
    assert.equal(alert.tenant, 'acme');
    assert.equal(alert.values['known_addresses'], 2);
    assert.match(alert.client ?? '', /^hmac-sha256:/);
    assert.ok(!JSON.stringify(alert).includes('192.0.2.99'));
    // known addresses stay silent
    h.minute(122, 5, (i) => req({ tenant: 'acme', keyId: 'k1', clientAddress: i % 2 ? ADDRESS_A : ADDRESS_B }));
    // another new address within the quiet time: the same open alert
    h.minute(125, 1, () => req({ tenant: 'acme', keyId: 'k1', clientAddress: '192.0.2.100' }));
    assert.equal(h.alerts.length, 1);
    // after the quiet time, a further new address alerts again
    h.minute(140, 1, () => req({ tenant: 'acme', keyId: 'k1', clientAddress: '192.0.2.101' }));
    assert.deepEqual(h.kinds(), ['new_client_address', 'new_client_address']);
  });

  it('says nothing about a new key, whose first addresses are all new', () => {
    const h = harnessFor(NEW_ADDRESS_CONFIG);
    for (let m = 0; m < 120; m += 5) h.minute(m, 1, () => req({ tenant: 'acme', keyId: 'old', clientAddress: ADDRESS_A }));
    h.minute(121, 3, (i) => req({ tenant: 'acme', keyId: 'fresh', clientAddress: `192.0.2.${i}` }));
    assert.deepEqual(h.kinds(), []);
  });
});

describe('anomaly detector: traffic at unusual hours', () => {
  // a week: every hour of the week gets its chance to be seen before any is called unusual
  const HOURS_CONFIG = config({ unusualHours: { enabled: true, learningMs: 7 * 86_400_000, minRequests: 20 }, quietMs: 15 * MINUTE });

  /** Office hours (09:00–12:00 UTC) every day of days [from, to) counted from Monday. */
  function officeHours(h: ReturnType<typeof harnessFor>, from: number, to: number): void {
    for (let d = from; d < to; d++) for (let hour = 0; hour < 3; hour++) h.minute(0, 4, () => req({ tenant: 'office' }), MONDAY_9 + d * 86_400_000 + hour * HOUR);
  }

  it('numbers the hours of the week from Monday 00:00 UTC', () => {
    assert.equal(hourOfWeek(Date.UTC(2025, 0, 6, 0, 30)), 0);
    assert.equal(hourOfWeek(MONDAY_9), 9);
    assert.equal(hourOfWeek(Date.UTC(2025, 0, 12, 23, 59)), 167);
  });

  it('stays silent during the learning period and in hours the tenant uses', () => {
    const h = harnessFor(HOURS_CONFIG);
    officeHours(h, 0, 2);
    // 03:00 on the second night: still learning
    h.at(MONDAY_9 + 86_400_000 + 18 * HOUR);
    h.detector.observe(req({ tenant: 'office' }));
    officeHours(h, 2, 9);
    assert.deepEqual(h.kinds(), []);
  });

  it('fires once for traffic in an hour with no history, and again only for a later unused hour after the quiet time', () => {
    const h = harnessFor(HOURS_CONFIG);
    officeHours(h, 0, 8);
    const night = MONDAY_9 + 8 * 86_400_000 + 18 * HOUR + 50 * MINUTE; // Wednesday 03:50 of the second week
    h.minute(0, 5, () => req({ tenant: 'office' }), night);
    assert.deepEqual(h.kinds(), ['unusual_hour'], 'one alert for the hour, not one per request');
    const alert = h.alerts[0] as AnomalyAlert;
    assert.equal(alert.values['hour_utc'], 3);
    assert.equal(alert.values['weekday'], 2);
    assert.equal(alert.values['hours_used'], 21);
    assert.equal(alert.tenant, 'office');
    // 04:05: another unused hour, but within the quiet time of the last unusual request
    h.at(night + 15 * MINUTE);
    h.detector.observe(req({ tenant: 'office' }));
    assert.equal(h.alerts.length, 1);
    // 05:30: unused, and the condition was clear for more than the quiet time
    h.at(night + 100 * MINUTE);
    h.detector.observe(req({ tenant: 'office' }));
    assert.deepEqual(h.kinds(), ['unusual_hour', 'unusual_hour']);
    assert.equal(h.alerts[1]?.values['hour_utc'], 5);
  });
});

describe('anomaly alert delivery', () => {
  let receiver: WebhookReceiver;
  before(async () => {
    // the first POST fails: delivery is retried with backoff
    receiver = await startWebhookReceiver((_hook, index) => (index === 0 ? 503 : 204));
  });
  after(async () => {
    await receiver?.close();
  });

  it('logs the alert, writes an audit row anomaly.<kind>, counts it and POSTs it to the webhook, retrying a failed POST', async () => {
    const logs = new LogCapture();
    const audits: AuditEvent[] = [];
    const fired: string[] = [];
    const sink = createAnomalyAlertSink({
      logger: createLogger({ level: 'info', destination: logs }), writer: { audit: (e) => audits.push(e) },
      webhookUrl: new URL(receiver.url), webhookSecret: undefined, retryBaseMs: 10, metrics: { alertFired: (kind, limit) => fired.push(`${kind}/${limit}`) },
    });
    const alert: AnomalyAlert = {
      kind: 'error_rate', scope: 'tenant', tenant: 'acme', tenantId: 'tid-acme', keyId: null, client: null, requestId: 'req-1',
      values: { errors: 5, requests: 6, rate: 0.833 }, at: MONDAY_9,
    };
    sink.alert(alert);
    // queued, not delivered, on the caller's turn: the request path does no I/O
    assert.equal(audits.length, 0);
    assert.equal(logs.lines.length, 0);
    await sink.drain();

    assert.equal(receiver.received.length, 2);
    assert.equal(receiver.received[0]?.status, 503);
    const hook = receiver.delivered()[0];
    assert.ok(hook);
    assert.deepEqual(hook.json, {
      type: 'anomaly', kind: 'error_rate', scope: 'tenant', tenant: 'acme', tenant_id: 'tid-acme', key_id: null, client: null,
      request_id: 'req-1', values: { errors: 5, requests: 6, rate: 0.833 }, at: new Date(MONDAY_9).toISOString(),
    });
    assert.equal(hook.headers['x-keywarden-signature'], undefined, 'no signature without a secret');

    assert.equal(audits.length, 1);
    assert.equal(audits[0]?.action, 'anomaly.error_rate');
    assert.equal(audits[0]?.actor, 'system');
    assert.equal(audits[0]?.target, 'tid-acme');
    assert.equal(audits[0]?.details['rate'], 0.833);

    const lines = logs.lines.map((l) => JSON.parse(l) as Record<string, any>);
    const anomalyLines = lines.filter((l) => l['msg'] === 'anomaly');
    assert.equal(anomalyLines.length, 1);
    assert.equal(anomalyLines[0]?.['kind'], 'error_rate');
    assert.equal(anomalyLines[0]?.['tenant'], 'acme');
    assert.deepEqual(anomalyLines[0]?.['values'], { errors: 5, requests: 6, rate: 0.833 });
    assert.equal(lines.filter((l) => l['event'] === 'alert_webhook_failed').length, 1);
    assert.deepEqual(fired, ['anomaly/error_rate']);
  });
});

describe('anomaly configuration', () => {
  const base = {
    admin: { token: 'env:KW_ADMIN' }, audit: { prompt_hmac_key: 'env:KW_PROMPT' },
    providers: { openai: { type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'env:KW_OPENAI' } },
  };

  it('is on by default with documented defaults', () => {
    const { config: cfg, problems } = validateConfig(base);
    assert.deepEqual(problems, []);
    assert.deepEqual(cfg?.anomaly, DEFAULT_ANOMALY_CONFIG);
    assert.equal(cfg?.anomaly.enabled, true);
  });

  it('reads every threshold, with durations', () => {
    const { config: cfg, problems } = validateConfig({
      ...base,
      anomaly: {
        enabled: true, bucket: '10s', window: '10m', min_history: '0s', quiet_time: '2m',
        request_rate: { k: 2.5, factor: 2, min_count: 7 }, token_rate: { enabled: false },
        error_rate: { min_rate: 0.3, min_errors: 4 }, auth_failures: { per_address: 5, global: 9 },
        new_address: { learning_period: '1h', min_requests: 3, max_addresses_per_key: 4 }, unusual_hours: { learning_period: '21d', min_requests: 10 },
      },
    });
    assert.deepEqual(problems, []);
    const a = cfg?.anomaly as AnomalyConfig;
    assert.equal(a.bucketMs, 10_000);
    assert.equal(a.windowMs, 600_000);
    assert.equal(a.minHistoryMs, 0);
    assert.equal(a.quietMs, 120_000);
    assert.deepEqual(a.requestRate, { enabled: true, k: 2.5, factor: 2, minCount: 7 });
    assert.equal(a.tokenRate.enabled, false);
    assert.equal(a.tokenRate.minCount, DEFAULT_ANOMALY_CONFIG.tokenRate.minCount);
    assert.deepEqual(a.errorRate, { enabled: true, k: 4, minRate: 0.3, minErrors: 4 });
    assert.deepEqual({ ...a.authFailures }, { enabled: true, perAddress: 5, global: 9, maxAddresses: DEFAULT_ANOMALY_CONFIG.authFailures.maxAddresses });
    assert.deepEqual(a.newAddress, { enabled: true, learningMs: 3_600_000, minRequests: 3, maxAddressesPerKey: 4 });
    assert.deepEqual(a.unusualHours, { enabled: true, learningMs: 21 * 86_400_000, minRequests: 10 });
  });

  it('lists every bad field at once', () => {
    const { config: cfg, problems } = validateConfig({
      ...base,
      anomaly: {
        enabled: 'yes', bucket: '1m', window: '30s', quiet_time: 'soon', surprise: 1,
        request_rate: { k: -1, factor: 0.5, min_count: 0 }, error_rate: { min_rate: 2 }, auth_failures: { per_address: 1.5 },
      },
    });
    assert.equal(cfg, undefined);
    for (const path of ['anomaly.enabled', 'anomaly.window', 'anomaly.quiet_time', 'anomaly.surprise', 'anomaly.request_rate.k',
      'anomaly.request_rate.factor', 'anomaly.request_rate.min_count', 'anomaly.error_rate.min_rate', 'anomaly.auth_failures.per_address']) {
      assert.ok(problems.some((p) => p.startsWith(`${path}:`)), `no problem reported for ${path}: ${problems.join('; ')}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Through the gateway and the mock provider
// ---------------------------------------------------------------------------------------------

/** Plainly fake: a wrong tenant key for the authentication-failure burst. */
const FAKE_WRONG_KEY = 'kw_fakeTEST_ONLYwrongkey000000000000';
const BUCKET_MS = 1000;

/** POSTs a chat request from a chosen local (loopback) address, so the gateway sees another client address. */
function chatFrom(localAddress: string, url: string, key: string, content: string): Promise<{ status: number; requestId: string | undefined }> {
  const target = new URL(`${url}/v1/chat/completions`);
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });
  return new Promise((resolve, reject) => {
    const r = httpRequest({
      host: target.hostname, port: target.port, path: target.pathname, method: 'POST', localAddress,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId: res.headers['x-request-id'] as string | undefined }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** Waits until the start of a detector bucket, so a burst lands in one bucket. */
async function bucketStart(): Promise<void> {
  const into = Date.now() % BUCKET_MS;
  if (into > 50) await sleep(BUCKET_MS - into + 5);
}

describe('anomaly alerts through the gateway and the mock provider', () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  const keys: Record<string, string> = {};

  before(async () => {
    // the first anomaly POST fails, so the gateway's delivery retries with backoff
    receiver = await startWebhookReceiver((_hook, index) => (index === 0 ? 503 : 204));
    h = await startHarness({
      config: {
        alerts: { webhook_url: receiver.url },
        anomaly: {
          bucket: '1s', window: '20s', min_history: '3s', quiet_time: '10m',
          // thresholds far from the normal pace below (about 1.5 requests and 100 tokens a bucket),
          // and bursts big enough to cross them even when split over two or three buckets
          request_rate: { k: 4, factor: 3, min_count: 12 },
          token_rate: { k: 4, factor: 3, min_count: 3000 },
          error_rate: { k: 4, min_rate: 0.5, min_errors: 4 },
          auth_failures: { per_address: 8, global: 1000 },
          new_address: { learning_period: '1s', min_requests: 3 },
        },
      },
    });
    for (const name of ['steady', 'spiky', 'failing', 'hungry', 'roaming']) keys[name] = (await h.tenantKey(name)).key;
  });
  after(async () => {
    await h?.close();
    await receiver?.close();
  });

  const anomalyHooks = () => receiver.delivered().filter((x) => x.json['type'] === 'anomaly');
  const anomalyLogs = () => h.logs.lines.filter((l) => l.includes('"msg":"anomaly"')).map((l) => JSON.parse(l) as Record<string, any>);
  async function anomalyAudits() {
    await h.gateway.writer.flush();
    return (await h.gateway.store.records.listAudit({ limit: 100_000 })).filter((r) => r.action.startsWith('anomaly.'));
  }

  /** Normal traffic: one request at a time, under two a second, until `stop()` says so (and at least `min` requests). */
  async function normal(name: string, stop: () => boolean, min = 0): Promise<number> {
    let n = 0;
    while (n < min || !stop()) {
      const res = await chat(h.url, keys[name] as string, `hello from ${name}`);
      assert.equal(res.status, 200);
      n++;
      await sleep(600);
    }
    return n;
  }

  it('raises exactly one alert each for a request-rate, token-rate and error-rate spike, an auth-failure burst and a new client address, and none for steady traffic', async () => {
    // 1. a baseline: every tenant at a steady, normal pace
    let baselineDone = false;
    let allDone = false;
    const steady = normal('steady', () => allDone);
    const others = ['spiky', 'failing', 'hungry', 'roaming'].map((name) => normal(name, () => baselineDone, 5));
    await sleep(4500);
    baselineDone = true;
    await Promise.all(others);
    assert.equal(anomalyHooks().length, 0, 'normal traffic raised an alert');
    assert.equal(anomalyLogs().length, 0);

    // 2. the anomalies, each from its own tenant, in one bucket
    await bucketStart();
    const spike = Promise.all(Array.from({ length: 40 }, () => chat(h.url, keys['spiky'] as string, 'burst')));
    const errors = (async () => {
      for (let i = 0; i < 9; i++) assert.equal((await chat(h.url, keys['failing'] as string, 'fail [[mock:status=500]]')).status >= 500, true);
    })();
    const tokens = Promise.all(Array.from({ length: 4 }, () => chat(h.url, keys['hungry'] as string, 'long [[mock:tokens=1500]]', { maxTokens: 2000 })));
    const authBurst = Promise.all(Array.from({ length: 20 }, async () => {
      const res = await chat(h.url, FAKE_WRONG_KEY, 'let me in');
      assert.equal(res.status, 401);
      assert.equal(res.json.error.code, 'auth_invalid_credentials');
    }));
    const roamed = chatFrom('127.0.0.2', h.url, keys['roaming'] as string, 'hello from elsewhere');
    const [spikeAnswers, , tokenAnswers, , moved] = await Promise.all([spike, errors, tokens, authBurst, roamed]);
    assert.ok(spikeAnswers.every((r) => r.status === 200));
    assert.ok(tokenAnswers.every((r) => r.status === 200));
    assert.equal(moved.status, 200);

    // 3. a little more of the same, which must not alert again, then stop
    await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => chat(h.url, keys['spiky'] as string, 'burst'))),
      chat(h.url, keys['failing'] as string, 'fail [[mock:status=500]]'),
      chatFrom('127.0.0.2', h.url, keys['roaming'] as string, 'hello again'),
      chat(h.url, FAKE_WRONG_KEY, 'let me in'),
    ]);
    await until(() => anomalyHooks().length >= 5, 'five anomaly alerts delivered', 10_000).catch((err: Error) => {
      throw new Error(`${err.message}; got ${anomalyHooks().map((x) => `${x.json['kind']}/${x.json['tenant']}`).join(', ') || 'none'}`);
    });
    await sleep(300);
    allDone = true;
    assert.ok(await steady > 5);

    const byKind = new Map(anomalyHooks().map((x) => [x.json['kind'] as string, x.json]));
    assert.equal(anomalyHooks().length, 5, `alerts: ${anomalyHooks().map((x) => `${x.json['kind']}/${x.json['tenant']}`).join(', ')}`);
    assert.deepEqual([...byKind.keys()].sort(), ['auth_failure_burst', 'error_rate', 'new_client_address', 'request_rate', 'token_rate']);
    assert.equal(byKind.get('request_rate')?.['tenant'], 'spiky');
    assert.equal(byKind.get('error_rate')?.['tenant'], 'failing');
    assert.equal(byKind.get('token_rate')?.['tenant'], 'hungry');
    assert.equal(byKind.get('new_client_address')?.['tenant'], 'roaming');
    assert.equal(byKind.get('auth_failure_burst')?.['tenant'], null);
    assert.equal(byKind.get('auth_failure_burst')?.['scope'], 'address');
    assert.ok(!anomalyHooks().some((x) => x.json['tenant'] === 'steady'), 'steady traffic raised an alert');
    assert.equal(receiver.received.filter((x) => x.status === 503).length, 1, 'the failed POST was retried');

    // the same five in the audit trail and the log, and no client address in clear anywhere
    const audits = await anomalyAudits();
    assert.deepEqual(audits.map((r) => r.action).sort(),
      ['anomaly.auth_failure_burst', 'anomaly.error_rate', 'anomaly.new_client_address', 'anomaly.request_rate', 'anomaly.token_rate']);
    const logged = anomalyLogs();
    assert.deepEqual(logged.map((l) => l['kind']).sort(), ['auth_failure_burst', 'error_rate', 'new_client_address', 'request_rate', 'token_rate']);
    const everything = JSON.stringify([anomalyHooks().map((x) => x.body), audits, logged]);
    assert.ok(!everything.includes('127.0.0.1') && !everything.includes('127.0.0.2'), 'a client address appears in clear');
    assert.match(byKind.get('new_client_address')?.['client'] as string, /^hmac-sha256:[0-9a-f]{64}$/);

    // the alert's client tag is the one the request audit rows carry for that address
    const moveRow = (await h.gateway.store.records.listAudit({ limit: 100_000 })).find((r) => r.requestId === moved.requestId);
    assert.ok(moveRow, 'no audit row for the request from the new address');
    assert.equal(moveRow.details['client'], byKind.get('new_client_address')?.['client']);

    // counted once each in /metrics
    const res = await fetch(`${h.adminUrl}/metrics`, { headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` } });
    const text = await res.text();
    for (const kind of ['request_rate', 'token_rate', 'error_rate', 'auth_failure_burst', 'new_client_address']) {
      assert.match(text, new RegExp(`keywarden_alerts_fired_total\\{kind="anomaly",limit="${kind}"\\} 1\\b`));
    }
  });
});
