import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { isLoopbackHost } from '../src/cli/admin-client.js';

/*
 * URLs the router cannot decode, and repeated query parameters: a coded 4xx in the endpoint's
 * shape with a request id (never Fastify's own body, never a 500), and on the admin listener an
 * audit row like any other call. Found in this session's security review.
 */

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

async function get(url: string, token?: string) {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  return { status: res.status, requestId: res.headers.get('x-request-id'), text, json: JSON.parse(text) as Record<string, any> };
}

describe('URLs the router cannot read', () => {
  it('public listener: 400 request_invalid in the OpenAI shape, with a request id, not echoing the path', async () => {
    for (const path of ['/v1/%ZZ', '/v1/chat/completions%E0%A4%A']) {
      const res = await get(h.url + path);
      assert.equal(res.status, 400, path);
      assert.equal(res.json['error'].code, 'request_invalid');
      assert.ok(res.requestId);
      assert.ok(!res.text.includes('%ZZ') && !res.text.includes('FST_'), res.text);
    }
    const anthropic = await get(`${h.url}/v1/messages%ZZ`);
    assert.equal(anthropic.status, 400);
    assert.equal(anthropic.json['type'], 'error', 'the Anthropic shape on /v1/messages');
  });

  it('admin listener: 400 admin_invalid_request and an audit row, for a bad escape and an overlong id', async () => {
    const before = (await h.gateway.store.records.listAudit({ limit: 100_000 })).length;
    for (const path of ['/admin/tenants/%ZZ', `/admin/tenants/${'a'.repeat(200)}`]) {
      const res = await get(h.adminUrl + path, FAKE_ADMIN_TOKEN);
      assert.equal(res.status, 400, path);
      assert.equal(res.json['error'].code, 'admin_invalid_request');
      assert.ok(res.requestId);
    }
    await h.gateway.writer.flush();
    const added = (await h.gateway.store.records.listAudit({ limit: 100_000 })).slice(before);
    assert.equal(added.filter((r) => r.action === 'admin.call' && r.details['code'] === 'admin_invalid_request').length, 2);
    assert.ok(!JSON.stringify(added).includes(FAKE_ADMIN_TOKEN));
  });

  it('admin listener: a repeated query parameter is a 400, never a 500', async () => {
    for (const path of ['/admin/keys?tenant=acme&tenant=beta', '/admin/usage?tenant=acme&tenant=acme', '/admin/audit?limit=1&limit=2']) {
      const res = await get(h.adminUrl + path, FAKE_ADMIN_TOKEN);
      assert.equal(res.status, 400, path);
      assert.equal(res.json['error'].code, 'admin_invalid_request');
    }
  });
});

describe('the CLI sends an admin token over plain http only to a literal loopback host', () => {
  it('accepts localhost, 127.0.0.0/8 and ::1, and refuses *.localhost names and others', () => {
    for (const host of ['localhost', '127.0.0.1', '127.1.2.3', '[::1]']) assert.equal(isLoopbackHost(host), true, host);
    for (const host of ['x.localhost', 'localhost.example.test', '10.0.0.1', 'gateway.internal', '::2']) assert.equal(isLoopbackHost(host), false, host);
  });
});
