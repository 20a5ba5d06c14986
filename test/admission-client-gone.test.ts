/**
 * A client that leaves while its request waits for admission (a round trip to the limits Redis)
 * gets no provider call: the request is dropped once admission answers, instead of being
 * forwarded to nobody (which would spend a provider call, tokens and, with `concurrent_requests`,
 * a slot until the answer came back). Found in review.
 *
 * The limits Redis sits behind a TCP relay that can hold its answers, so the test can keep the
 * request in admission for as long as it needs.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startHarness, type Harness } from './helpers/harness.js';
import { adminPut, sleep, until } from './helpers/quota-http.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';

const REDIS_URL = process.env['REDIS_URL'];
const SKIP = REDIS_URL ? undefined : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379): admission on Redis not tested';

describe('a client that leaves during admission', { skip: SKIP }, () => {
  let h: Harness;
  let relay: Awaited<ReturnType<typeof startTcpProxy>>;

  before(async () => {
    relay = await startTcpProxy(REDIS_URL as string);
    h = await startHarness({ config: { limits: { store: relay.url, key_prefix: `kw-test-gone-${process.pid}:` } } });
    const set = await adminPut(h.adminUrl, '/admin/tenants/acme/limits', { limits: { requests_per_minute: 1000, concurrent_requests: 5 } });
    assert.equal(set.status, 200, JSON.stringify(set.json));
  });

  after(async () => {
    relay?.release();
    await h?.close();
    relay?.close();
  });

  it('is never forwarded to the provider once admission answers', async () => {
    // an ordinary request first: admission on Redis works and reaches the provider
    const ok = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
    });
    assert.equal(ok.status, 200, await ok.text());
    const before = h.mock.received.length;

    relay.hold();
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'left during admission' }] });
    const socket = connect(Number(new URL(h.url).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    // the request is now waiting on the held Redis answer
    await sleep(300);
    socket.destroy();
    await sleep(100);
    relay.release();

    // admission completes, then the request is dropped: it is recorded as the client's abort, never forwarded
    await until(async () => {
      await h.gateway.writer.flush();
      const rows = await h.gateway.store.records.listUsage({ limit: 100 });
      return rows.some((r) => r.status === 499);
    }, 'the abandoned request is recorded (499)', 5000);
    await sleep(200);
    assert.equal(h.mock.received.length, before, 'the provider was called for a client that had left');
  });
});
