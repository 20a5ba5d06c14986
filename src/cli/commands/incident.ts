import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../main.js';
import { createIncidentService, renderInvestigation, type BlastRadius } from '../../services/incident-service.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../output.js';
import { parseWhen } from './audit.js';
import { createRemoteIncidentOperations, type IncidentOperations } from '../remote-services.js';
import type { CommandTarget } from '../target.js';

export interface IncidentFlags {
  json: boolean;
  providerKey?: string;
  tenantKey?: string;
  tenant?: string;
  since?: string;
}

const USAGE = 'usage: keywarden incident contain --provider-key FINGERPRINT | --tenant-key KEY_ID | --tenant NAME [--json]\n'
  + '       keywarden incident investigate INCIDENT_ID [--since DATE|DURATION] [--json] | report INCIDENT_ID [--since …] | list [--json]';
const out = (line: string) => process.stdout.write(`${line}\n`);

/** Runs `fn` with the store's incident service, or with the same operations over the admin API. */
async function withService<T>(target: CommandTarget, fn: (service: IncidentOperations) => Promise<T>): Promise<T> {
  if (target.kind === 'api') return fn(createRemoteIncidentOperations(target.client));
  const store = openStore(target.config);
  try {
    return await fn(createIncidentService({ store }));
  } finally {
    await store.close();
  }
}

/**
 * `keywarden incident contain|investigate|report|list`, on the store or through the admin API.
 * A running gateway sees a containment from the store within its register poll (250 ms).
 */
export async function incidentCommand(target: CommandTarget, action: string | undefined, rest: readonly string[], flags: IncidentFlags): Promise<number> {
  const since = flags.since !== undefined ? { since: parseWhen(flags.since, '--since') } : {};
  switch (action) {
    case 'contain': {
      if (rest.length > 0) throw new CliError(USAGE, EXIT_USAGE);
      const given = [flags.providerKey, flags.tenantKey, flags.tenant].filter((v) => v !== undefined).length;
      if (given !== 1) throw new CliError(`give exactly one target\n${USAGE}`, EXIT_USAGE);
      const incident = await withService(target, (s) => s.contain({
        ...(flags.providerKey !== undefined ? { providerKey: flags.providerKey } : {}),
        ...(flags.tenantKey !== undefined ? { tenantKey: flags.tenantKey } : {}),
        ...(flags.tenant !== undefined ? { tenant: flags.tenant } : {}),
      }, 'cli'));
      if (flags.json) out(JSON.stringify(incident));
      else {
        out(`contained ${incident.kind.replace('_', ' ')} ${incident.target}: incident ${incident.id} (${incident.contained_at})`);
        for (const p of incident.kind === 'provider_key' ? (incident.provider ?? '').split(',').filter(Boolean) : []) {
          const next = incident.details[`switched_to.${p}`];
          out(typeof next === 'string' ? `provider ${p} now uses key ${next}`
            : `provider ${p} has no other current key: its requests get 503 provider_key_contained until a new key is promoted`);
        }
        out(`next: keywarden incident investigate ${incident.id}`);
      }
      return EXIT_OK;
    }
    case 'investigate': {
      const [id, ...extra] = rest;
      if (id === undefined || extra.length > 0) throw new CliError(USAGE, EXIT_USAGE);
      const radius = await withService(target, (s) => s.investigate(id, since));
      process.stdout.write(flags.json ? `${JSON.stringify(radius)}\n` : renderInvestigation(radius));
      return EXIT_OK;
    }
    case 'report': {
      const [id, ...extra] = rest;
      if (id === undefined || extra.length > 0) throw new CliError(USAGE, EXIT_USAGE);
      process.stdout.write(await withService(target, (s) => s.report(id, since)));
      return EXIT_OK;
    }
    case 'list': {
      const list = await withService(target, (s) => s.list());
      if (flags.json) out(JSON.stringify({ data: list }));
      else for (const i of list) out(`${i.id}  ${i.contained_at}  ${i.kind}  ${i.target}  ${i.actor}`);
      return EXIT_OK;
    }
    default:
      throw new CliError(USAGE, EXIT_USAGE);
  }
}

export interface DrillStep {
  step: string;
  ms: number;
  detail: string;
}

export interface DrillResult {
  steps: DrillStep[];
  /** Time from the contain command until the first refused request with the leaked tenant key. */
  tenantKeyContainmentMs: number;
  /** Time from the contain command until the first 503 `provider_key_contained`. */
  providerKeyContainmentMs: number;
  /** Requests the drill's traffic got answered with the leaked key before containment, and what the investigation found. */
  leakedRequestsSent: number;
  investigation: BlastRadius;
  report: string;
  ok: boolean;
}

interface Sample { sentAt: number; doneAt: number; status: number; code: string | null }

/**
 * `keywarden drill`: a tabletop rehearsal against the mock provider, all in this process and a
 * temporary directory: starts a gateway, plants a leaked tenant key, runs concurrent traffic,
 * contains the key (through a separate store connection, as the CLI does), then the provider key,
 * investigates, reports, and prints each step's duration.
 */
export async function runDrill(opts: { workers?: number; print?: (line: string) => void } = {}): Promise<DrillResult> {
  const print = opts.print ?? (() => undefined);
  const workers = opts.workers ?? 8;
  const [{ createGateway }, { createMockProvider }, { configFromDocument }, { DEMO_POLICY }] = await Promise.all([
    import('../../main.js'), import('../../mock-provider/server.js'), import('../../config/load.js'), import('../demo.js'),
  ]);
  const steps: DrillStep[] = [];
  const timed = async <T>(step: string, fn: () => Promise<T>, detail: (v: T) => string): Promise<T> => {
    const t0 = performance.now();
    const v = await fn();
    const entry = { step, ms: Math.round((performance.now() - t0) * 10) / 10, detail: detail(v) };
    steps.push(entry);
    print(`${entry.step.padEnd(22)} ${String(entry.ms).padStart(9)} ms  ${entry.detail}`);
    return v;
  };

  const dir = mkdtempSync(join(tmpdir(), 'keywarden-drill-'));
  // drill-only secrets, random per run: they unlock nothing but this run's mock provider
  const providerKey = `sk-drill-only-${randomBytes(12).toString('hex')}`;
  const secret = (name: string, value: string) => {
    const path = join(dir, name);
    writeFileSync(path, value, { mode: 0o600 });
    return `file:${path}`;
  };
  const mock = await createMockProvider({ port: 0, apiKey: providerKey });
  let gateway: Awaited<ReturnType<typeof createGateway>> | undefined;
  const stopTraffic = { stop: false };
  const loops: Array<Promise<void>> = [];
  try {
    const config = configFromDocument({
      listen: { public: '127.0.0.1:0', admin: '127.0.0.1:0' },
      store: `sqlite:${join(dir, 'keywarden.db')}`,
      admin: { token: secret('admin-token', randomBytes(24).toString('hex')) },
      audit: { prompt_hmac_key: secret('prompt-key', randomBytes(24).toString('hex')) },
      log: { level: 'warn' },
      providers: {
        openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: secret('openai-key', providerKey), timeout: '10s' },
      },
      models: { 'gpt-4o-mini': { provider: 'openai' } },
      tenants: { defaults: { policy: { ...DEMO_POLICY, models: ['gpt-4o-mini'] } } },
      // all drill traffic comes from one loopback address: after the leaked key's refusals the
      // failure limiter would answer the bystander 429, hiding the provider key containment
      auth: { failure_limits: { enabled: false } },
    }, 'drill configuration', {});
    const sink = new Writable({ write(_c, _e, cb) { cb(); } });
    const gw = await timed('start gateway', async () => {
      const g = await createGateway(config, { logDestination: sink, flushIntervalMs: 20 });
      const urls = await g.listen();
      return { g, url: urls.publicUrl };
    }, (v) => `mock provider ${mock.url}, gateway ${v.url}`);
    gateway = gw.g;
    const g = gw.g;

    const planted = await timed('plant leaked key', async () => {
      await g.tenants.createTenant('drill-victim', 'drill');
      await g.tenants.createTenant('drill-bystander', 'drill');
      const leaked = await g.tenants.issueKey('drill-victim', 'drill', { label: 'drill-leaked' });
      const other = await g.tenants.issueKey('drill-bystander', 'drill');
      return { leaked, other };
    }, (v) => `tenant key ${v.leaked.id} of drill-victim is "leaked"`);

    const leakedSamples: Sample[] = [];
    const otherSamples: Sample[] = [];
    const send = async (key: string, into: Sample[], i: number) => {
      const sentAt = performance.now();
      try {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `drill request ${i}` }], max_tokens: 16 }),
        });
        const body = await res.json().catch(() => undefined) as { error?: { code?: string } } | undefined;
        into.push({ sentAt, doneAt: performance.now(), status: res.status, code: body?.error?.code ?? null });
      } catch {
        into.push({ sentAt, doneAt: performance.now(), status: 0, code: 'network' });
      }
    };
    const loop = (key: string, into: Sample[]) => (async () => {
      for (let i = 0; !stopTraffic.stop; i++) await send(key, into, i);
    })();
    await timed('run traffic', async () => {
      for (let w = 0; w < workers; w++) loops.push(loop(planted.leaked.key, leakedSamples));
      loops.push(loop(planted.other.key, otherSamples));
      while (leakedSamples.filter((s) => s.status === 200).length < workers * 5) await new Promise((r) => setTimeout(r, 10));
    }, () => `${workers} workers with the leaked key and 1 bystander, ${leakedSamples.length} requests so far`);

    // contain through a separate store connection, exactly as `keywarden incident contain` does from another process
    const cliStore = openStore(config);
    const cli = createIncidentService({ store: cliStore });
    const waitFor = async (samples: Sample[], from: number, refused: (s: Sample) => boolean): Promise<number> => {
      for (;;) {
        const hit = samples.find((s) => s.doneAt >= from && refused(s));
        if (hit) return hit.doneAt - from;
        if (performance.now() - from > 10_000) throw new Error('containment did not take effect within 10 s');
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    let tenantKeyContainmentMs = 0;
    let leakedBefore = 0;
    const incident = await timed('contain tenant key', async () => {
      const from = performance.now();
      const contained = await cli.contain({ tenantKey: planted.leaked.id }, 'cli');
      tenantKeyContainmentMs = await waitFor(leakedSamples, from, (s) => s.status === 401 && s.code === 'auth_key_revoked');
      return contained;
    }, (v) => `incident ${v.id}: first refused request ${Math.round(tenantKeyContainmentMs * 10) / 10} ms after the command`);

    let providerKeyContainmentMs = 0;
    const fingerprint = (await g.store.providerKeys.list()).find((r) => r.provider === 'openai' && r.state === 'current')?.fingerprint;
    if (!fingerprint) throw new Error('the drill gateway has no current provider key');
    await timed('contain provider key', async () => {
      const from = performance.now();
      const contained = await cli.contain({ providerKey: fingerprint }, 'cli');
      providerKeyContainmentMs = await waitFor(otherSamples, from, (s) => s.status === 503 && s.code === 'provider_key_contained');
      return contained;
    }, (v) => `incident ${v.id}: first 503 provider_key_contained ${Math.round(providerKeyContainmentMs * 10) / 10} ms after the command`);

    stopTraffic.stop = true;
    await Promise.all(loops);
    await g.writer.flush();
    // every request the leaked key got past authentication with (the ledger records exactly these);
    // once revoked, the key's refusals trip the failed-authentication limit, answered before any check
    leakedBefore = leakedSamples.filter((s) => s.status !== 0 && s.code !== 'auth_key_revoked' && s.code !== 'auth_rate_limited').length;

    const investigation = await timed('investigate', () => cli.investigate(incident.id), (b) => `${b.requests.total} requests, ${b.tokens.total} tokens, $${b.cost.usd}, ${b.clients.length} client(s)`);
    const report = await timed('report', () => cli.report(incident.id), (r) => `${r.split('\n').length} lines of Markdown`);
    await cliStore.close();
    const matches = investigation.requests.total === leakedBefore;
    print(`containment: tenant key ${Math.round(tenantKeyContainmentMs)} ms, provider key ${Math.round(providerKeyContainmentMs)} ms (goal: under 1000 ms)`);
    print(`blast radius ${matches ? 'matches' : 'DOES NOT match'} the drill's traffic: ${investigation.requests.total} recorded, ${leakedBefore} answered`);
    return {
      steps, tenantKeyContainmentMs, providerKeyContainmentMs, leakedRequestsSent: leakedBefore, investigation, report,
      ok: matches && tenantKeyContainmentMs < 1000 && providerKeyContainmentMs < 1000,
    };
  } finally {
    stopTraffic.stop = true;
    await Promise.allSettled(loops);
    await gateway?.close();
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `keywarden drill [--json]`: exit 1 when containment took a second or more, or the blast radius did not match. */
export async function drillCommand(flags: { json: boolean }): Promise<number> {
  const result = await runDrill({ print: flags.json ? undefined : out });
  if (flags.json) {
    const { report: _report, ...rest } = result;
    out(JSON.stringify(rest));
  }
  return result.ok ? EXIT_OK : EXIT_FAILURE;
}
