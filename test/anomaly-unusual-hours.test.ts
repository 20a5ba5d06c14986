import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, postJson, type Harness } from './helpers/harness.js';

/**
 * Traffic at an hour the tenant has never used, driven through the gateway and the mock
 * provider with the anomaly clock moved: one alert for the new hour, none while it learns.
 */
describe('anomaly: traffic at unusual hours, through the gateway', () => {
  let h: Harness;
  after(async () => {
    await h?.close();
  });

  it('learns a tenant’s hours, then raises one unusual_hour alert for traffic in a new hour', async () => {
    // Monday 2026-11-23 09:00 UTC; the test moves this clock, the gateway reads it
    let clock = Date.UTC(2026, 10, 23, 9, 0, 0);
    h = await startHarness({
      anomalyClock: () => clock,
      config: {
        anomaly: {
          unusual_hours: { enabled: true, learning_period: '1h', min_requests: 6 },
          // only this detector is under test
          request_rate: { enabled: false }, token_rate: { enabled: false }, error_rate: { enabled: false },
          auth_failures: { enabled: false }, new_address: { enabled: false },
        },
      },
    });
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hours test' }] };
    // learning: requests on Monday 09:xx and 10:xx
    for (let i = 0; i < 8; i++) {
      clock = Date.UTC(2026, 10, 23, 9 + (i % 2), 5 * i, 0);
      assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat)).status, 200);
    }
    await h.gateway.writer.flush();
    const before = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((r) => r.action === 'anomaly.unusual_hour');
    assert.equal(before.length, 0, 'no alert while the usual hours are used');
    // Monday 03:00 the following week: never used before
    clock = Date.UTC(2026, 10, 30, 3, 0, 0);
    for (let i = 0; i < 3; i++) {
      clock += 60_000;
      assert.equal((await postJson(`${h.url}/v1/chat/completions`, h.key, chat)).status, 200);
    }
    await new Promise((r) => setTimeout(r, 100));
    await h.gateway.writer.flush();
    const alerts = (await h.gateway.store.records.listAudit({ limit: 10_000 })).filter((r) => r.action === 'anomaly.unusual_hour');
    assert.equal(alerts.length, 1, 'one alert, not one per request');
    assert.equal(alerts[0]?.details['hour_utc'], 3);
    assert.equal(alerts[0]?.details['tenant'], (await h.gateway.store.tenants.getByName('acme'))?.id);
  });
});
