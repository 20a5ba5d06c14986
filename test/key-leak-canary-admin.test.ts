import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliEnv, runCli, type CliResult } from './helpers/cli-process.js';
import { FAKE_ADMIN_TOKEN, startHarness, type Harness } from './helpers/harness.js';
import { parseJson } from './helpers/security-http.js';
import { createLeakFinder, type Secret } from './helpers/leak-finder.js';
import { rawExchange } from './helpers/raw-http.js';

/*
 * Threat (THREATS.md, "Keys and content leaking"), the surfaces added after
 * test/key-leak-canary.test.ts: the admin reports (`/admin/usage` with its error counts,
 * `/admin/audit` filtered and newest first, `/admin/audit/verify`, `/admin/audit/export` as JSONL
 * and CSV), the dashboard's static files and its error answers, the remote CLI's output, the log
 * lines of refused smuggling and framing on the public listener, and an upstream error answer
 * whose body never ends or breaks off. Canaries are planted in credentials, prompts, headers and
 * in what a hostile provider sends back; none may come out anywhere this suite can see.
 */

/** Random alphanumerics, so the canaries are unique to this run. */
function rand(n: number): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  let out = '';
  for (const byte of randomBytes(n)) out += alphabet[byte % alphabet.length];
  return out;
}

/** Random alphanumerics with every character class, so a key shape passes the detectors' entropy and mixed-case checks. */
function keyBody(n: number): string {
  return `Aa9${rand(n - 3)}`;
}

const b64url = (text: string) => Buffer.from(text).toString('base64url');

// Plainly fake, TEST-ONLY values, built at run time (the repository scans itself): they unlock nothing anywhere.
/** The gateway's provider key (OpenAI project-key shape, so the project's detectors know it). */
const PROVIDER_KEY = `sk-proj-FAKE-CANARY-PROVIDER-${keyBody(150)}`;
/** What a hostile provider names in its error body: a provider-key-shaped value the gateway never had. */
const UPSTREAM_KEY_CANARY = `sk-proj-FAKE-CANARY-UPSTREAM-${keyBody(150)}`;
const PROMPT_CANARY = `CANARY-PROMPT-${rand(20)}`;
const CREDENTIAL_CANARY = `CANARY-CREDENTIAL-${rand(24)}`;
/** A JWT-shaped credential no key signed (signature text `TEST-ONLY`), carrying the credential canary. */
const FAKE_JWT = [b64url('{"alg":"HS256","typ":"JWT"}'), b64url(JSON.stringify({ sub: CREDENTIAL_CANARY, iss: 'TEST-ONLY' })), b64url(`signature-TEST-ONLY-${rand(16)}`)].join('.');
/** A tenant-key-shaped credential whose secret is the credential canary. */
const FORGED_TENANT_KEY = `kw_${'canaryid'.repeat(2)}_${(CREDENTIAL_CANARY + rand(43)).slice(0, 43)}`;
/** An admin-token-shaped credential carrying the canary. */
const FORGED_ADMIN_TOKEN = `kwa_${'canaryid'.repeat(2)}_${(CREDENTIAL_CANARY + rand(43)).slice(0, 43)}`;
/** The masked form OpenAI (and the mock) use when naming a rejected key: first 7, `****`, last 4. */
const MASKED_PROVIDER_KEY = PROVIDER_KEY.slice(0, 7) + '****' + PROVIDER_KEY.slice(-4);

/** The base key shapes, plus JWTs and admin tokens (this suite plants both). */
const findLeaks = createLeakFinder(MASKED_PROVIDER_KEY, [
  ['admin-token shape', /kwa_[a-z0-9]{16}_[A-Za-z0-9_-]{43}/],
  ['JWT shape', /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./],
]);

interface Seen {
  label: string;
  status: number;
  headerText: string;
  body: string;
}

async function fetchSeen(label: string, url: string, init: RequestInit = {}): Promise<Seen> {
  const res = await fetch(url, { redirect: 'manual', ...init });
  const lines: string[] = [];
  res.headers.forEach((value, name) => lines.push(`${name}: ${value}`));
  return { label, status: res.status, headerText: lines.join('\n'), body: await res.text() };
}


// ---------------------------------------------------------------------------------------------

describe('key-leak canary: admin reports, dashboard, remote CLI and refused framing', () => {
  let h: Harness;
  let dir: string;
  /** An issued (random, high-entropy) admin token, besides the bootstrap one. */
  let issuedAdminToken = '';
  let secrets: Secret[] = [];
  const seen: Seen[] = [];
  const cliRuns: Array<{ label: string; result: CliResult }> = [];
  const raw: Array<{ label: string; statuses: number[]; text: string }> = [];
  const reports = new Map<string, Seen>();

  const chatBody = (directive = '', stream = false) => JSON.stringify({
    model: 'gpt-4o-mini', ...(stream ? { stream: true } : {}),
    messages: [{ role: 'user', content: `hello ${PROMPT_CANARY} ${directive}` }],
  });
  const messagesBody = (directive = '') => JSON.stringify({
    model: 'claude-3-5-haiku-latest', max_tokens: 64, messages: [{ role: 'user', content: `hello ${PROMPT_CANARY} ${directive}` }],
  });
  const publicCall = (label: string, path: string, headers: Record<string, string>, body: string) =>
    fetchSeen(label, h.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body }).then((s) => seen.push(s));
  const adminCall = (label: string, path: string, token: string | undefined, init: RequestInit = {}) =>
    fetchSeen(label, h.adminUrl + path, { ...init, headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...((init.headers as Record<string, string> | undefined) ?? {}) } })
      .then((s) => {
        seen.push(s);
        return s;
      });
  const remote = async (label: string, token: string, ...args: string[]) => {
    const result = await runCli(['--admin-url', h.adminUrl, ...args], { cwd: dir, env: cliEnv({ KEYWARDEN_DATA_DIR: join(dir, 'data'), KEYWARDEN_ADMIN_TOKEN: token }) });
    cliRuns.push({ label, result });
    return result;
  };

  before(async () => {
    h = await startHarness({ providerKey: PROVIDER_KEY });
    dir = mkdtempSync(join(tmpdir(), 'keywarden-canary-admin-'));
    const anthropic = { 'x-api-key': h.key, 'anthropic-version': '2023-06-01' };
    const bearer = { authorization: `Bearer ${h.key}` };

    // ---- canary traffic: successes, provider 401/500 faults, wrong keys carrying the canary
    await publicCall('chat ok', '/v1/chat/completions', bearer, chatBody());
    await publicCall('messages ok', '/v1/messages', anthropic, messagesBody());
    for (const fault of ['status=401', 'status=500']) {
      await publicCall(`chat ${fault}`, '/v1/chat/completions', bearer, chatBody(`[[mock:${fault}]]`));
      await publicCall(`chat stream ${fault}`, '/v1/chat/completions', bearer, chatBody(`[[mock:${fault}]]`, true));
      await publicCall(`messages ${fault}`, '/v1/messages', anthropic, messagesBody(`[[mock:${fault}]]`));
    }
    const wrong: Array<[string, Record<string, string>]> = [
      ['bearer canary', { authorization: `Bearer ${CREDENTIAL_CANARY}` }],
      ['forged tenant key', { authorization: `Bearer ${FORGED_TENANT_KEY}` }],
      ['fake JWT', { authorization: `Bearer ${FAKE_JWT}` }],
      ['x-api-key canary', { 'x-api-key': CREDENTIAL_CANARY, 'anthropic-version': '2023-06-01' }],
      ['the provider key', { authorization: `Bearer ${PROVIDER_KEY}` }],
      ['the admin token', { authorization: `Bearer ${FAKE_ADMIN_TOKEN}` }],
    ];
    for (const [name, headers] of wrong) {
      await publicCall(`wrong credential (${name}) chat`, '/v1/chat/completions', headers, chatBody());
      await publicCall(`wrong credential (${name}) messages`, '/v1/messages', { 'anthropic-version': '2023-06-01', ...headers }, messagesBody());
    }

    // ---- an issued admin token; admin calls refused for a canary-carrying token or bad queries
    const issueRes = await fetch(`${h.adminUrl}/admin/tokens`, {
      method: 'POST', headers: { authorization: `Bearer ${FAKE_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ owner: 'canary-admin', role: 'admin' }),
    });
    assert.equal(issueRes.status, 201);
    issuedAdminToken = ((await issueRes.json()) as { token: string }).token;
    const reportPaths = ['/admin/usage', '/admin/audit', '/admin/audit/verify', '/admin/audit/export?since=1h'];
    for (const path of reportPaths) {
      for (const [name, token] of [['credential canary', CREDENTIAL_CANARY], ['forged admin token', FORGED_ADMIN_TOKEN], ['fake JWT', FAKE_JWT], ['tenant key', h.key], ['provider key', PROVIDER_KEY]] as const) {
        await adminCall(`admin ${path} with the ${name}`, path, token);
      }
      await adminCall(`admin ${path} with no token`, path, undefined);
    }
    // refused queries that carry the canary (the answer names the parameter, never its value)
    for (const [name, path] of [
      ['action', `/admin/audit?action=${encodeURIComponent(PROMPT_CANARY)}`],
      ['order', `/admin/audit?order=${encodeURIComponent(PROMPT_CANARY)}`],
      ['limit', `/admin/audit?action=request&order=desc&limit=${encodeURIComponent(CREDENTIAL_CANARY)}`],
      ['export since', `/admin/audit/export?since=${encodeURIComponent(PROMPT_CANARY)}`],
      ['export format', `/admin/audit/export?since=1h&format=${encodeURIComponent(CREDENTIAL_CANARY)}`],
      ['usage since', `/admin/usage?since=${encodeURIComponent(CREDENTIAL_CANARY)}`],
      ['action twice', `/admin/audit?action=request&action=${encodeURIComponent(PROMPT_CANARY)}`],
    ] as const) {
      await adminCall(`admin refused query (${name})`, path, FAKE_ADMIN_TOKEN);
    }

    // ---- the dashboard's static files and its error answers
    for (const path of ['/dashboard', '/dashboard/dashboard.js', '/dashboard/dashboard.css', '/dashboard/']) {
      await adminCall(`dashboard ${path}`, path, undefined);
      await adminCall(`dashboard ${path} with the admin token`, path, FAKE_ADMIN_TOKEN);
      await adminCall(`dashboard ${path} with a canary token`, path, CREDENTIAL_CANARY);
    }
    await adminCall('dashboard with a canary query', `/dashboard?token=${encodeURIComponent(CREDENTIAL_CANARY)}&q=${encodeURIComponent(PROMPT_CANARY)}`, undefined);
    await adminCall('dashboard unknown file named by the canary', `/dashboard/${PROMPT_CANARY}.js`, undefined);
    await adminCall('dashboard unknown file, canary token', `/dashboard/${PROMPT_CANARY}.js`, CREDENTIAL_CANARY);
    await adminCall('dashboard unknown file, admin token', `/dashboard/${PROMPT_CANARY}.js`, FAKE_ADMIN_TOKEN);
    await adminCall('dashboard unreadable URL', `/dashboard/%E0%A4%A${PROMPT_CANARY}`, CREDENTIAL_CANARY);
    await adminCall('dashboard POST with a canary body', '/dashboard', FAKE_ADMIN_TOKEN, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT_CANARY, key: PROVIDER_KEY }),
    });
    await adminCall('dashboard POST with a canary body, no token', '/dashboard/dashboard.js', undefined, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT_CANARY }),
    });

    // ---- refused smuggling and framing on the public listener, canaries in every part
    const smuggledChat = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: canary-smuggled-inner-01\r\nAuthorization: Bearer ${h.key}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(chatBody())}\r\n\r\n${chatBody()}`;
    const chunk = `${chatBody()}`;
    const chunked = `${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    const refusals: Array<[string, string]> = [
      ['smuggling behind TE gzip,chunked', `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: canary-smuggle-te-0001\r\nAuthorization: Bearer ${h.key}\r\nx-debug-token: ${UPSTREAM_KEY_CANARY}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunked}${smuggledChat}`],
      ['smuggling behind Content-Encoding', `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: canary-smuggle-ce-0001\r\nAuthorization: Bearer ${h.key}\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(chatBody())}\r\n\r\n${chatBody()}${smuggledChat}`],
      ['smuggling behind CL and TE', `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.key}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}${smuggledChat}`],
      ['smuggling behind no Host', `POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer ${FORGED_TENANT_KEY}\r\nContent-Length: 0\r\n\r\n${smuggledChat}`],
      ['framing refusal on /v1/messages', `POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: canary-framing-msg-0001\r\nx-api-key: ${h.key}\r\nanthropic-version: 2023-06-01\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${Buffer.byteLength(messagesBody()).toString(16)}\r\n${messagesBody()}\r\n0\r\n\r\n`],
      ['framing refusal with a canary credential', `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: canary-framing-cred-001\r\nAuthorization: Bearer ${CREDENTIAL_CANARY}\r\nContent-Encoding: br\r\nContent-Length: 0\r\n\r\n`],
    ];
    for (const [label, bytes] of refusals) raw.push({ label, ...(await rawExchange(h.url, bytes)) });

    // let everything be recorded, then read the reports with a good token
    await new Promise((resolve) => setTimeout(resolve, 200));
    await h.gateway.writer.flush();
    for (const [name, path] of [
      ['usage', '/admin/usage?since=1h'],
      ['usage by tenant', '/admin/usage?tenant=acme&since=1h'],
      ['audit admin.call desc', '/admin/audit?action=admin.call&order=desc&limit=500'],
      ['audit request desc', '/admin/audit?action=request&order=desc&limit=500'],
      ['audit all asc', '/admin/audit?limit=1000'],
      ['audit verify', '/admin/audit/verify'],
      ['audit export jsonl', '/admin/audit/export?since=1h&format=jsonl'],
      ['audit export csv', '/admin/audit/export?since=1h&format=csv'],
    ] as const) {
      reports.set(name, await adminCall(`report ${name}`, path, FAKE_ADMIN_TOKEN));
    }
    reports.set('audit export jsonl (issued token)', await adminCall('report audit export (issued token)', '/admin/audit/export?since=1h', issuedAdminToken));

    // ---- the remote CLI, with the bootstrap token and an issued one
    for (const [tokenName, token] of [['bootstrap', FAKE_ADMIN_TOKEN], ['issued', issuedAdminToken]] as const) {
      await remote(`usage (${tokenName})`, token, 'usage', '--since', '1h');
      await remote(`usage --json (${tokenName})`, token, 'usage', '--since', '1h', '--json');
      await remote(`audit verify (${tokenName})`, token, 'audit', 'verify');
      await remote(`audit verify --json (${tokenName})`, token, 'audit', 'verify', '--json');
      await remote(`audit export jsonl (${tokenName})`, token, 'audit', 'export', '--since', '1h', '--format', 'jsonl');
      await remote(`audit export csv (${tokenName})`, token, 'audit', 'export', '--since', '1h', '--format', 'csv');
    }
    // refused runs: a wrong token carrying the canary, and a bad argument
    await remote('usage (canary token)', CREDENTIAL_CANARY, 'usage');
    await remote('audit verify (forged admin token)', FORGED_ADMIN_TOKEN, 'audit', 'verify');
    await remote('audit export (fake JWT)', FAKE_JWT, 'audit', 'export', '--since', '1h');
    await remote('audit export bad format', FAKE_ADMIN_TOKEN, 'audit', 'export', '--since', '1h', '--format', PROMPT_CANARY);
    await remote('usage bad since', FAKE_ADMIN_TOKEN, 'usage', '--since', CREDENTIAL_CANARY);

    await new Promise((resolve) => setTimeout(resolve, 100));
    await h.gateway.writer.flush();

    secrets = [
      { name: 'provider key', value: PROVIDER_KEY },
      { name: 'upstream key canary', value: UPSTREAM_KEY_CANARY },
      { name: 'tenant key secret', value: h.key.slice('kw_'.length + 16 + 1) },
      { name: 'admin token', value: FAKE_ADMIN_TOKEN },
      { name: 'issued admin token secret', value: issuedAdminToken.slice('kwa_'.length + 16 + 1) },
      { name: 'prompt canary', value: PROMPT_CANARY },
      { name: 'credential canary', value: CREDENTIAL_CANARY },
      { name: 'fake JWT', value: FAKE_JWT },
    ];
  });

  after(async () => {
    await h?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('drove the failures and the reports show them (the searches below are not vacuous)', () => {
    const status = (label: string) => seen.find((s) => s.label === label)?.status;
    assert.equal(status('chat ok'), 200);
    assert.equal(status('chat status=401'), 502);
    assert.equal(status('chat status=500'), 502);
    assert.equal(status('wrong credential (bearer canary) chat'), 401);
    assert.equal(status('admin /admin/usage with the credential canary'), 401);
    for (const s of seen.filter((e) => e.label.startsWith('admin refused query'))) assert.equal(s.status, 400, `${s.label}: ${s.body}`);
    assert.equal(seen.filter((e) => e.label.startsWith('admin refused query')).length, 7);
    assert.ok(h.mock.received.some((r) => JSON.stringify(r.body ?? null).includes('[[mock:status=401]]')), 'the mock saw the 401 fault');
    for (const name of reports.keys()) assert.equal(reports.get(name)?.status, 200, name);
    const usage = parseJson(reports.get('usage')?.body ?? '') as { data: Array<{ tenant: string; requests: number; errors: number }> };
    const acme = usage.data.filter((row) => row.tenant === 'acme');
    assert.ok(acme.reduce((n, row) => n + row.errors, 0) >= 6, `usage errors: ${JSON.stringify(acme)}`);
    const desc = (parseJson(reports.get('audit admin.call desc')?.body ?? '') as { data: Array<{ action: string; seq: number; outcome: string }> }).data;
    assert.ok(desc.length >= 30 && desc.every((row) => row.action === 'admin.call'), `admin.call rows: ${desc.length}`);
    assert.ok(desc.some((row) => row.outcome === 'failure'));
    assert.ok(desc.every((row, i) => i === 0 || row.seq < (desc[i - 1] as { seq: number }).seq), 'newest first');
    assert.equal((parseJson(reports.get('audit verify')?.body ?? '') as { ok: boolean }).ok, true);
    const jsonl = reports.get('audit export jsonl')?.body ?? '';
    assert.ok(jsonl.split('\n').length > 50 && jsonl.includes('"admin.call"') && jsonl.includes('"request"'), 'the export holds request and admin rows');
    assert.match(reports.get('audit export csv')?.body ?? '', /^seq,time,actor,action/);
  });

  it('never puts a key, token or canary into an admin report, refusal or their headers', () => {
    const leaks = seen.filter((s) => !s.label.startsWith('dashboard')).flatMap((s) => [
      ...findLeaks(`${s.label} [headers]`, s.headerText, secrets),
      ...findLeaks(`${s.label} [body]`, s.body, secrets),
    ]);
    assert.deepEqual(leaks, [], `admin answers leak:\n${leaks.join('\n')}`);
  });

  it('never puts a key, token or canary into the dashboard files or its error answers', () => {
    const dash = seen.filter((s) => s.label.startsWith('dashboard'));
    const status = (label: string) => dash.find((s) => s.label === label)?.status;
    assert.equal(status('dashboard /dashboard'), 200);
    assert.equal(status('dashboard /dashboard/dashboard.js'), 200);
    assert.equal(status('dashboard /dashboard/dashboard.css'), 200);
    assert.equal(status('dashboard unknown file, canary token'), 401);
    assert.equal(status('dashboard unknown file, admin token'), 404);
    const leaks = dash.flatMap((s) => [
      ...findLeaks(`${s.label} [headers]`, s.headerText, secrets),
      ...findLeaks(`${s.label} [body]`, s.body, secrets),
    ]);
    assert.deepEqual(leaks, [], `dashboard answers leak:\n${leaks.join('\n')}`);
  });

  it('the remote CLI prints usage, verification and exports without any key, token or canary', () => {
    const ok = cliRuns.filter((r) => !/canary|forged|JWT|bad/.test(r.label));
    assert.equal(ok.length, 12);
    for (const { label, result } of ok) {
      assert.equal(result.code, 0, `${label}: ${result.stderr}`);
      assert.ok(result.stdout.length > 0, label);
    }
    const refused = cliRuns.filter((r) => /canary|forged|JWT|bad/.test(r.label));
    for (const { label, result } of refused) assert.notEqual(result.code, 0, label);
    assert.match(cliRuns.find((r) => r.label === 'usage (canary token)')?.result.stderr ?? '', /admin_unauthorized/);
    const leaks = cliRuns.flatMap(({ label, result }) => [
      ...findLeaks(`cli ${label} [stdout]`, result.stdout, secrets),
      ...findLeaks(`cli ${label} [stderr]`, result.stderr, secrets),
    ]);
    assert.deepEqual(leaks, [], `CLI output leaks:\n${leaks.join('\n')}`);
  });

  it('refuses the smuggling and framing attempts and answers them without any key, token or canary', async () => {
    for (const r of raw) {
      assert.ok(r.statuses.length >= 1 && r.statuses.every((s) => s >= 400 && s < 500), `${r.label}: ${r.statuses.join(',')}`);
      assert.ok(!r.statuses.includes(200), `${r.label}: the smuggled request was answered`);
    }
    // the request smuggled behind each refusal was never handled: no log line names it
    assert.equal(h.logs.lines.filter((line) => line.includes('canary-smuggled-inner-01')).length, 0, 'a smuggled request was handled');
    // the framing refusal on a real route is logged (so the log search below covers it)
    assert.ok(h.logs.lines.some((line) => line.includes('canary-framing-msg-0001') && line.includes('request_header_invalid')), 'the framing refusal was logged');
    const leaks = raw.flatMap((r) => findLeaks(`raw ${r.label}`, r.text, secrets));
    assert.deepEqual(leaks, [], `raw answers leak:\n${leaks.join('\n')}`);
  });

  it('never puts a key, token or canary into any log line or audit row of all of the above', async () => {
    assert.ok(h.logs.lines.length >= 20, `only ${h.logs.lines.length} log lines`);
    const leaks = h.logs.lines.flatMap((line, i) => findLeaks(`log line ${i}`, line, secrets));
    assert.deepEqual(leaks, [], `log lines leak:\n${leaks.join('\n')}`);
    const audit = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 100_000 }));
    assert.deepEqual(findLeaks('audit rows', audit, secrets), []);
    assert.deepEqual(h.logs.lines.filter((line) => line.includes('[REDACTED')), [], 'a secret reached the logger and had to be redacted');
  });
});

// ---------------------------------------------------------------------------------------------

describe('key-leak canary: a provider error answer with the key and prompt in its body (endless, cut off, or whole)', () => {
  let h: Harness;
  let keyDir: string;
  let server: ReturnType<typeof createServer>;
  const state = { requests: 0, sentCanary: 0 };
  const answers: Seen[] = [];
  /**
   * What a hostile or careless provider sends back: our key, a key of its own, the prompt. Its
   * `code` is a safe lowercase identifier, which the gateway may name by design (src/providers/common.ts
   * safeProviderCode, docs/errors.md); everything else must stay behind.
   */
  const ERROR_PREFIX = JSON.stringify({
    error: { message: `Incorrect API key provided: ${MASKED_PROVIDER_KEY} (${PROVIDER_KEY}); also ${UPSTREAM_KEY_CANARY}; you said: ${PROMPT_CANARY}`, type: 'invalid_request_error', code: 'canary_provider_code' },
  }).slice(0, -1);
  const secrets: Secret[] = [
    { name: 'provider key', value: PROVIDER_KEY },
    { name: 'upstream key canary', value: UPSTREAM_KEY_CANARY },
    { name: 'prompt canary', value: PROMPT_CANARY },
  ];

  before(async () => {
    server = createServer((req, res) => {
      let text = '';
      req.setEncoding('utf8').on('data', (c: string) => { text += c; });
      req.on('end', () => {
        state.requests += 1;
        // the mode rides in the prompt: `mode=endless-500`, `mode=cut-429`, `mode=whole-401` (a complete body, read as the hint)
        const m = /mode=(endless|cut|whole)-(\d{3})/.exec(text);
        const status = Number(m?.[2] ?? 500);
        if (m?.[1] === 'whole') {
          res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '2', 'x-debug-key': UPSTREAM_KEY_CANARY });
          res.end(`${ERROR_PREFIX}}`);
          state.sentCanary += 1;
          return;
        }
        if (m?.[1] === 'cut') {
          res.writeHead(status, { 'content-type': 'application/json', 'content-length': '100000', 'retry-after': '2', 'x-debug-key': UPSTREAM_KEY_CANARY });
          res.write(ERROR_PREFIX);
          state.sentCanary += 1;
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        }
        res.writeHead(status, { 'content-type': 'application/json', 'x-debug-key': UPSTREAM_KEY_CANARY });
        res.write(ERROR_PREFIX);
        state.sentCanary += 1;
        const filler = Buffer.alloc(16_384, 0x20);
        const timer = setInterval(() => {
          if (res.writableLength < 1_048_576) res.write(filler);
        }, 1);
        res.once('close', () => clearInterval(timer));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    keyDir = mkdtempSync(join(tmpdir(), 'keywarden-canary-endless-'));
    const keyFile = join(keyDir, 'openai-key');
    writeFileSync(keyFile, PROVIDER_KEY, { mode: 0o600 });
    h = await startHarness({
      providerKey: PROVIDER_KEY,
      config: {
        providers: { openai: { type: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: `file:${keyFile}`, timeout: '5s' } },
        models: { 'gpt-4o-mini': { provider: 'openai' } },
        tenants: { defaults: { policy: { models: ['gpt-4o-mini'], params: ['stream'], tools: false, files: false } } },
      },
    });
    for (const mode of ['endless-401', 'endless-500', 'endless-429', 'cut-401', 'cut-500', 'cut-429', 'whole-401', 'whole-500', 'whole-429']) {
      for (const stream of [false, true]) {
        answers.push(await fetchSeen(`${mode}${stream ? ' stream' : ''}`, `${h.url}/v1/chat/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.key}` },
          body: JSON.stringify({ model: 'gpt-4o-mini', ...(stream ? { stream: true } : {}), messages: [{ role: 'user', content: `${PROMPT_CANARY} mode=${mode}` }] }),
        }));
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    await h.gateway.writer.flush();
  });

  after(async () => {
    server?.closeAllConnections();
    await h?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  it('answers each with a coded gateway error and none of what the provider said', () => {
    assert.equal(state.requests, 18);
    assert.equal(state.sentCanary, 18, 'the provider sent its canary body every time');
    const leaks: string[] = [];
    for (const a of answers) {
      assert.ok(a.status >= 400, `${a.label}: ${a.status}`);
      const code = (parseJson(a.body) as { error?: { code?: string } } | undefined)?.error?.code;
      assert.match(code ?? '', /^upstream_/, `${a.label}: ${a.body.slice(0, 200)}`);
      leaks.push(...findLeaks(`${a.label} [headers]`, a.headerText, secrets), ...findLeaks(`${a.label} [body]`, a.body, secrets));
    }
    assert.deepEqual(leaks, [], `answers leak:\n${leaks.join('\n')}`);
    // the complete body really was read as the hint: its safe code is named, nothing else of it
    assert.match(answers.find((a) => a.label === 'whole-429')?.body ?? '', /\(canary_provider_code\)/);
  });

  it('logs each of them without the provider key, the provider’s key-shaped text or the prompt', async () => {
    assert.ok(h.logs.lines.some((line) => line.includes('"code":"upstream_')), 'the upstream errors were logged');
    const leaks = h.logs.lines.flatMap((line, i) => findLeaks(`log line ${i}`, line, secrets));
    assert.deepEqual(leaks, [], `log lines leak:\n${leaks.join('\n')}`);
    assert.deepEqual(h.logs.lines.filter((line) => line.includes('[REDACTED')), [], 'a secret reached the logger and had to be redacted');
    const audit = JSON.stringify(await h.gateway.store.records.listAudit({ limit: 10_000 }));
    const usage = JSON.stringify(await h.gateway.store.records.listUsage({ limit: 10_000 }));
    assert.deepEqual([...findLeaks('audit rows', audit, secrets), ...findLeaks('usage rows', usage, secrets)], []);
  });
});
