/**
 * keywarden overhead benchmark: the same request sent straight to the mock provider and through
 * the gateway, at the same concurrency, all on loopback.
 *
 *   npm run bench                      (builds, then runs dist/bench/bench.js)
 *
 * Environment:
 *   BENCH_DURATION     seconds per measured throughput run (default 8)
 *   BENCH_WARMUP       seconds of warm-up before each throughput run (default 2)
 *   BENCH_CONNECTIONS  concurrency of the throughput runs (default 50)
 *   BENCH_SEQ          sequential requests per target for the concurrency-1 runs (default 3000)
 *   BENCH_ADMISSION_SEQ  sequential requests per tenant for the admission-cost runs (default 1000)
 *   REDIS_URL          the Redis server for the admission cost with the Redis counter store
 *                      (default redis://127.0.0.1:6379; that row is skipped when it cannot be reached)
 *   BENCH_PROFILE      1 to run the gateway under `node --cpu-prof` and print its top self-time
 *                      functions, or a directory to also keep the .cpuprofile there. Profiling
 *                      inflates every gateway figure; use it to find hot spots, not for targets.
 *   BENCH_KEEP         1 to keep the temporary directory (config, logs, store; fake secrets only)
 *
 * The mock provider and the gateway run as child processes started through the CLI
 * (`keywarden mock-provider`, `keywarden serve --config FILE`), with logging on at level info.
 * Prints a table and, last, one `BENCH_JSON {…}` line.
 *
 * Admission cost: the added p50 latency at concurrency 1 of a tenant with limits (rate, tokens and
 * a money budget, all generous so nothing is refused) over a tenant without limits (admission
 * skipped), on the gateway above (embedded counter store) and on a second gateway process with
 * `limits.store: REDIS_URL` sharing its SQLite file.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import autocannon, { type Instance as CannonInstance } from 'autocannon';
import { Pool } from 'undici';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { summariseCpuProfile, type ProfileSummary } from './cpu-profile.js';
import { DEMO_POLICY } from '../src/cli/demo.js';

const execFileP = promisify(execFile);

// ---------------------------------------------------------------- settings

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'bin', 'keywarden.js');

/** Plainly fake secrets for the benchmark: they unlock nothing, anywhere. */
const FAKE_PROVIDER_KEY = 'sk-fake-BENCH-ONLY-provider-key-00000000000000000'; // fake, bench only
const FAKE_ADMIN_TOKEN = 'fake-admin-token-BENCH-ONLY-0000000000000'; // fake, bench only
const FAKE_PROMPT_HMAC_KEY = 'fake-prompt-hmac-key-BENCH-ONLY-00000000000'; // fake, bench only

/** The contract's default tenant policy (as CONTRACT_POLICY in test/helpers/harness.ts), config form. */
const CONTRACT_POLICY = DEMO_POLICY;

/**
 * The Node flags the gateway runs with when started as shipped (`npm start`, and the `keywarden`
 * bin's shebang): a larger young generation, so the many short-lived objects of each request die
 * in fewer scavenges. The bare pass-through gets the same flags, so the floor stays comparable.
 */
const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=32'];

const TARGETS = { cpuUsPerRequest: 200, addedP50LatencyMs: 0.2, addedP50TtfbMs: 0.5 } as const;

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new BenchError(`${name} must be a whole number from ${min} to ${max} (got "${raw.slice(0, 20)}")`);
  return value;
}

class BenchError extends Error {}

// ---------------------------------------------------------------- small utilities

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const nowNs = () => process.hrtime.bigint();
const nsToMs = (ns: bigint) => Number(ns) / 1e6;

/** Nearest-rank percentile of an ascending array. */
function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

function summary(samples: number[]): { n: number; p50: number; p99: number; mean: number } {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return { n: sorted.length, p50: pct(sorted, 50), p99: pct(sorted, 99), mean: sorted.length ? sum / sorted.length : NaN };
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

let clockTicks = 100;
function readClockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** utime + stime of a process (all its threads), in µs, from /proc/PID/stat. */
function cpuUs(pid: number, name: string): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    throw new BenchError(`the ${name} (pid ${pid}) is no longer running`);
  }
  // the command name (field 2) may contain spaces: split after its closing parenthesis
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // fields 14 (utime) and 15 (stime)
  return (ticks * 1e6) / clockTicks;
}

/** Machine-wide CPU time in µs from /proc/stat: busy (everything but idle and iowait) and total. */
function machineCpuUs(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  const total = v.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: ((total - idle) * 1e6) / clockTicks, total: (total * 1e6) / clockTicks };
}

/** The bench process's own CPU time in µs (the load generator). */
function selfCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Children to stop on the way out. */
const children: Array<{ name: string; proc: ChildProcess; log: string }> = [];

function childEnv(): NodeJS.ProcessEnv {
  // the CLI applies KEYWARDEN_* overrides; none of the caller's may leak into the bench setup
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYWARDEN_') && k !== 'NODE_OPTIONS') env[k] = v;
  return env;
}

function exited(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null;
}

async function stopChild(proc: ChildProcess, graceMs = 15_000): Promise<{ code: number | null; signal: string | null; killed: boolean }> {
  if (!exited(proc)) {
    const done = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const timer = sleep(graceMs).then(() => 'timeout' as const);
    if ((await Promise.race([done, timer])) === 'timeout' && !exited(proc)) {
      proc.kill('SIGKILL');
      await done;
      return { code: proc.exitCode, signal: proc.signalCode, killed: true };
    }
  }
  return { code: proc.exitCode, signal: proc.signalCode, killed: false };
}

// ---------------------------------------------------------------- setup

interface Setup {
  dir: string;
  mockUrl: string;
  mockPid: number;
  gatewayUrl: string;
  gatewayPid: number;
  gatewayLog: string;
  configPath: string;
  /** The gateway's configuration document (a second gateway starts from it). */
  config: Record<string, unknown>;
  tenantKey: string;
  profileDir: string | undefined;
}

async function startMock(dir: string, keyRef: string): Promise<{ url: string; proc: ChildProcess }> {
  const log = join(dir, 'mock.log');
  const fd = openSync(log, 'a', 0o600);
  const proc = spawn(process.execPath, [CLI, 'mock-provider', '--port', '0', '--host', '127.0.0.1', '--api-key', keyRef], {
    cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', fd],
  });
  closeSync(fd);
  children.push({ name: 'mock provider', proc, log });
  const url = await new Promise<string>((resolveUrl, reject) => {
    let seen = '';
    const timer = setTimeout(() => fail(new BenchError('the mock provider did not report its address within 15 s')), 15_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      proc.stdout?.removeAllListeners('data');
      reject(err);
    };
    proc.once('exit', (code, signal) => fail(new BenchError(`the mock provider exited early (code ${code}, signal ${signal}):\n${tail(log)}`)));
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      seen += chunk;
      const match = /mock provider listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (match) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        proc.stdout?.removeAllListeners('data');
        proc.stdout?.resume(); // keep draining whatever else it prints
        resolveUrl(match[1] as string);
      }
    });
  });
  return { url, proc };
}

async function waitReady(url: string, proc: ChildProcess, log: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (exited(proc)) throw new BenchError(`the gateway exited during startup (code ${proc.exitCode}, signal ${proc.signalCode}); last log lines:\n${tail(log)}`);
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      const text = await res.text();
      if (res.status === 200) return;
      last = `HTTP ${res.status} ${text.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new BenchError(`the gateway was not ready within ${timeoutMs / 1000} s (last: ${last}); last log lines:\n${tail(log)}`);
}

async function cli(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(process.execPath, [CLI, ...args], { cwd: ROOT, env: childEnv(), timeout: 30_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new BenchError(`keywarden ${args.slice(0, 2).join(' ')} failed: ${(e.stderr ?? e.message).trim().slice(0, 500)}`);
  }
}

async function setUp(dir: string, profile: string | undefined): Promise<Setup> {
  const secret = (name: string, value: string) => {
    const path = join(dir, name);
    writeFileSync(path, value, { mode: 0o600 });
    return `file:${path}`;
  };
  const providerKeyRef = secret('provider-key', FAKE_PROVIDER_KEY);
  const mock = await startMock(dir, providerKeyRef);

  const [publicPort, adminPort] = [await freePort(), await freePort()];
  const config = {
    listen: { public: `127.0.0.1:${publicPort}`, admin: `127.0.0.1:${adminPort}` },
    store: `sqlite:${join(dir, 'keywarden.db')}`,
    admin: { token: secret('admin-token', FAKE_ADMIN_TOKEN) },
    audit: { prompt_hmac_key: secret('prompt-hmac-key', FAKE_PROMPT_HMAC_KEY) },
    log: { level: 'info' },
    providers: {
      openai: { type: 'openai', base_url: `${mock.url}/v1`, api_key: providerKeyRef, timeout: '30s' },
      anthropic: { type: 'anthropic', base_url: mock.url, api_key: providerKeyRef, timeout: '30s' },
    },
    models: {
      'gpt-4o-mini': { provider: 'openai' },
      fast: { provider: 'openai', model: 'gpt-4o-mini' },
      'text-embedding-3-small': { provider: 'openai' },
      'claude-3-5-haiku-latest': { provider: 'anthropic' },
    },
    tenants: { defaults: { policy: CONTRACT_POLICY } },
    shutdown: { drain_timeout: '5s' },
  };
  const configPath = join(dir, 'keywarden.yaml');
  writeFileSync(configPath, `# keywarden benchmark configuration (generated; secrets are fake)\n${stringify(config)}`, { mode: 0o600 });

  const gatewayLog = join(dir, 'gateway.log');
  let profileDir: string | undefined;
  const nodeArgs: string[] = [...GATEWAY_NODE_FLAGS];
  if (profile !== undefined) {
    profileDir = profile === '1' ? join(dir, 'cpu-profile') : resolve(profile);
    mkdirSync(profileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`);
  }
  const gatewayUrl = `http://127.0.0.1:${publicPort}`;
  const gw = await startGateway('gateway', configPath, gatewayLog, gatewayUrl, nodeArgs);

  await cli(['tenants', 'create', 'bench', '--config', configPath]);
  const issued = JSON.parse(await cli(['keys', 'issue', '--tenant', 'bench', '--json', '--config', configPath])) as { key?: unknown };
  if (typeof issued.key !== 'string') throw new BenchError('keys issue --json did not print a "key"');

  return {
    dir, mockUrl: mock.url, mockPid: mock.proc.pid as number, gatewayUrl, gatewayPid: gw.pid as number, gatewayLog, configPath, config,
    tenantKey: issued.key, profileDir,
  };
}

/** Starts `keywarden serve --config FILE` (output to `log`) and waits until `/readyz` answers 200. */
async function startGateway(name: string, configPath: string, log: string, url: string, nodeArgs: string[] = []): Promise<ChildProcess> {
  const fd = openSync(log, 'a', 0o600);
  const gw = spawn(process.execPath, [...(nodeArgs.length > 0 ? nodeArgs : GATEWAY_NODE_FLAGS), CLI, 'serve', '--config', configPath], { cwd: ROOT, env: childEnv(), stdio: ['ignore', fd, fd] });
  closeSync(fd);
  children.push({ name, proc: gw, log });
  await waitReady(url, gw, log);
  return gw;
}

// ---------------------------------------------------------------- the request

interface Target {
  name: 'direct' | 'gateway' | 'passthrough';
  origin: string;
  path: string;
  headers: Record<string, string>;
}

function requestBody(stream: boolean): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
    max_tokens: 16,
    ...(stream ? { stream: true } : {}),
  });
}

function targets(s: Setup): { direct: Target & { name: 'direct' }; gateway: Target & { name: 'gateway' } } {
  return {
    direct: { name: 'direct', origin: s.mockUrl, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${FAKE_PROVIDER_KEY}` } },
    gateway: { name: 'gateway', origin: s.gatewayUrl, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${s.tenantKey}` } },
  };
}

/** One request of each kind to each target before measuring: a wrong setup fails here, clearly. */
async function sanityCheck(t: { direct: Target; gateway: Target }): Promise<void> {
  for (const target of [t.direct, t.gateway]) {
    for (const stream of [false, true]) {
      const res = await fetch(target.origin + target.path, { method: 'POST', headers: target.headers, body: requestBody(stream) });
      const text = await res.text();
      if (res.status !== 200) {
        let code = '';
        try {
          code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
        } catch { /* not JSON */ }
        throw new BenchError(`sanity check: ${target.name} ${stream ? 'streaming' : 'non-streaming'} request answered HTTP ${res.status} ${code}`);
      }
      if (stream && !text.includes('data: [DONE]')) throw new BenchError(`sanity check: ${target.name} stream did not end with [DONE]`);
      if (!stream && !text.includes('"usage"')) throw new BenchError(`sanity check: ${target.name} answer has no usage`);
      if (target.name === 'gateway') gatewayAnswered++;
    }
  }
}

/** Starts the bare pass-through (bench/passthrough.ts) in front of the mock provider. */
/** Starts bench/passthrough.ts: the HTTP relay, or with `tcp` the byte relay. */
async function startPassthrough(s: Setup, tcp = false): Promise<{ url: string; proc: ChildProcess }> {
  const log = join(s.dir, tcp ? 'tcp-relay.log' : 'passthrough.log');
  const fd = openSync(log, 'a', 0o600);
  const proc = spawn(process.execPath, [...GATEWAY_NODE_FLAGS, join(ROOT, 'dist', 'bench', 'passthrough.js'), s.mockUrl, FAKE_PROVIDER_KEY, ...(tcp ? ['--tcp'] : [])], {
    cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', fd],
  });
  closeSync(fd);
  children.push({ name: tcp ? 'tcp relay' : 'passthrough', proc, log });
  const url = await new Promise<string>((resolveUrl, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new BenchError('the pass-through did not report its address within 15 s')), 15_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new BenchError(`the pass-through exited early (code ${code}):\n${tail(log)}`));
    });
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      seen += chunk;
      const match = /passthrough listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (match) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolveUrl(match[1] as string);
      }
    });
  });
  return { url, proc };
}

// ---------------------------------------------------------------- throughput (autocannon)

interface LoadResult {
  target: 'direct' | 'gateway' | 'passthrough';
  stream: boolean;
  seconds: number;
  completed: number;
  rps: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latencyMs: { n: number; p50: number; p99: number; mean: number };
  gatewayCpuUsPerReq: number;
  mockCpuUsPerReq: number;
  loadgenCpuUsPerReq: number;
}

function cannon(target: Target, stream: boolean, seconds: number, connections: number, onLatency?: (ms: number, status: number) => void): CannonInstance {
  const instance = autocannon({
    url: target.origin + target.path, method: 'POST', headers: target.headers, body: requestBody(stream), connections, duration: seconds, timeout: 30,
  });
  if (onLatency) instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => onLatency(ms, status));
  return instance;
}

/** Gateway requests the load generator saw answered (to compare with the gateway's request log lines). */
let gatewayAnswered = 0;

/** `cpuPid`: whose CPU the "gateway" column measures (the pass-through floor measures its own). */
async function loadRun(s: Setup, target: Target, stream: boolean, seconds: number, warmup: number, connections: number, cpuPid = s.gatewayPid): Promise<LoadResult> {
  if (warmup > 0) {
    const warm = await cannon(target, stream, warmup, connections);
    if (target.name === 'gateway') gatewayAnswered += warm.requests.total;
  }
  await sleep(300); // let the warm-up's tail (aborted requests, record flushes) settle
  const latencies: number[] = [];
  const g0 = cpuUs(cpuPid, target.name);
  const m0 = cpuUs(s.mockPid, 'mock provider');
  const l0 = selfCpuUs();
  const t0 = nowNs();
  const result = await cannon(target, stream, seconds, connections, (ms, status) => {
    if (status >= 200 && status < 300) latencies.push(ms);
  });
  const elapsed = nsToMs(nowNs() - t0) / 1000;
  const g1 = cpuUs(cpuPid, target.name);
  const m1 = cpuUs(s.mockPid, 'mock provider');
  const l1 = selfCpuUs();
  const completed = result.requests.total;
  if (target.name === 'gateway') gatewayAnswered += completed;
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = Number(count);
  return {
    target: target.name, stream, seconds: elapsed, completed,
    rps: completed / result.duration,
    non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, statusCodes,
    latencyMs: summary(latencies),
    gatewayCpuUsPerReq: completed > 0 ? (g1 - g0) / completed : NaN,
    mockCpuUsPerReq: completed > 0 ? (m1 - m0) / completed : NaN,
    loadgenCpuUsPerReq: completed > 0 ? (l1 - l0) / completed : NaN,
  };
}

// ---------------------------------------------------------------- concurrency 1 (undici)

interface SeqResult {
  direct: number[];
  gateway: number[];
  failures: number;
}

/** One whole request; returns ms from sending to the end of the body. */
async function timedWhole(pool: Pool, target: Target, body: string): Promise<number | undefined> {
  const t0 = nowNs();
  const res = await pool.request({ method: 'POST', path: target.path, headers: target.headers, body });
  await res.body.arrayBuffer();
  const t1 = nowNs();
  return res.statusCode === 200 ? nsToMs(t1 - t0) : undefined;
}

/** One streamed request; returns ms from sending to the first body chunk (the body is read to its end). */
async function timedFirstByte(pool: Pool, target: Target, body: string): Promise<number | undefined> {
  const t0 = nowNs();
  const res = await pool.request({ method: 'POST', path: target.path, headers: target.headers, body });
  let first: bigint | undefined;
  let text = '';
  await new Promise<void>((resolveEnd, reject) => {
    res.body.on('data', (chunk: Buffer) => {
      first ??= nowNs();
      text += chunk.toString('utf8');
    });
    res.body.once('end', () => resolveEnd());
    res.body.once('error', reject);
  });
  if (res.statusCode !== 200 || first === undefined || !text.includes('[DONE]')) return undefined;
  return nsToMs(first - t0);
}

/**
 * Sequential requests, alternating direct and gateway in blocks (and swapping which goes first
 * in every other pair of blocks) so that background noise hits both alike.
 */
async function sequential(t: { direct: Target & { name: 'direct' }; gateway: Target & { name: 'gateway' } }, count: number, measure: typeof timedWhole, body: string,
  countsAsGateway = true): Promise<SeqResult> {
  const pools = { direct: new Pool(t.direct.origin, { connections: 1 }), gateway: new Pool(t.gateway.origin, { connections: 1 }) };
  const out: SeqResult = { direct: [], gateway: [], failures: 0 };
  const block = 100;
  const warm = Math.min(300, Math.max(20, Math.floor(count / 10)));
  try {
    for (const target of [t.direct, t.gateway] as Array<Target & { name: 'direct' | 'gateway' }>) for (let i = 0; i < warm; i++) await measure(pools[target.name], target, body);
    if (countsAsGateway) gatewayAnswered += warm;
    for (let done = 0, pair = 0; done < count; done += block, pair++) {
      const n = Math.min(block, count - done);
      const order: Array<Target & { name: 'direct' | 'gateway' }> = pair % 2 === 0 ? [t.direct, t.gateway] : [t.gateway, t.direct];
      for (const target of order) {
        if (target.name === 'gateway' && countsAsGateway) gatewayAnswered += n;
        for (let i = 0; i < n; i++) {
          const ms = await measure(pools[target.name], target, body);
          if (ms === undefined) out.failures++;
          else out[target.name].push(ms);
        }
      }
    }
  } finally {
    await Promise.all([pools.direct.close(), pools.gateway.close()]);
  }
  return out;
}

// ---------------------------------------------------------------- admission cost (limits on vs off)

/** Limits so generous that nothing is refused: admission runs in full (reserve, then settle) on every request. */
const BENCH_LIMITS = { requests_per_minute: 10_000_000, tokens_per_minute: 1_000_000_000, usd_per_month: 1_000_000 } as const;

/** One tenant on one gateway, measured at concurrency 1. */
interface Series {
  label: string;
  target: Target;
  limits: boolean;
  /** Requests to the first gateway count towards `gatewayAnswered` (compared with its log). */
  firstGateway: boolean;
}

interface AdmissionSetup {
  series: Series[];
  /** The Redis gateway, or why it was not started. */
  redis: { url: string; pid: number; log: string } | { skipped: string };
}

/** REDIS_URL without its password (for display), and the password (passed to the gateway as a secret). */
function redisTarget(): { url: string; shown: string; password: string | undefined } {
  const raw = process.env['REDIS_URL'] || 'redis://127.0.0.1:6379';
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new BenchError('REDIS_URL is not a URL');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new BenchError('REDIS_URL must start with redis:// or rediss://');
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  parsed.password = '';
  const url = parsed.toString().replace(/\/$/, '');
  return { url, shown: url, password };
}

/** Why Redis cannot be used (undefined when it answers PING within a second). Never echoes the URL. */
async function redisProblem(url: string, password: string | undefined): Promise<string | undefined> {
  const client = new Redis(url, {
    ...(password !== undefined ? { password } : {}),
    lazyConnect: true, connectTimeout: 1000, commandTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (err) {
    return `not reachable (${(err as { code?: string }).code ?? 'no answer'})`;
  } finally {
    client.disconnect();
  }
}

/**
 * A tenant with limits next to the unlimited one, and a second gateway process whose counter store
 * is Redis (same SQLite file, so the same tenants and keys).
 */
async function setUpAdmission(s: Setup): Promise<AdmissionSetup> {
  await cli(['tenants', 'create', 'bench-limits', '--config', s.configPath]);
  await cli(['tenants', 'set-limits', 'bench-limits', '--rpm', String(BENCH_LIMITS.requests_per_minute), '--tpm', String(BENCH_LIMITS.tokens_per_minute),
    '--usd-month', String(BENCH_LIMITS.usd_per_month), '--config', s.configPath]);
  const issued = JSON.parse(await cli(['keys', 'issue', '--tenant', 'bench-limits', '--json', '--config', s.configPath])) as { key?: unknown };
  if (typeof issued.key !== 'string') throw new BenchError('keys issue --json did not print a "key"');
  const limitsKey = issued.key;
  const target = (origin: string, key: string): Target => ({
    name: 'gateway', origin, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  });
  const series: Series[] = [
    { label: 'no limits (gateway 1)', target: target(s.gatewayUrl, s.tenantKey), limits: false, firstGateway: true },
    { label: 'limits, embedded counter store (gateway 1)', target: target(s.gatewayUrl, limitsKey), limits: true, firstGateway: true },
  ];

  const redis = redisTarget();
  const problem = await redisProblem(redis.url, redis.password);
  if (problem) return { series, redis: { skipped: `Redis at ${redis.shown} ${problem}` } };
  const [publicPort, adminPort] = [await freePort(), await freePort()];
  let redisPassword: string | undefined;
  if (redis.password !== undefined) {
    const path = join(s.dir, 'redis-password');
    writeFileSync(path, redis.password, { mode: 0o600 });
    redisPassword = `file:${path}`;
  }
  const config = {
    ...s.config,
    listen: { public: `127.0.0.1:${publicPort}`, admin: `127.0.0.1:${adminPort}` },
    limits: { store: redis.url, ...(redisPassword ? { redis_password: redisPassword } : {}) },
  };
  const configPath = join(s.dir, 'keywarden-redis.yaml');
  writeFileSync(configPath, `# keywarden benchmark configuration, Redis counter store (generated; secrets are fake)\n${stringify(config)}`, { mode: 0o600 });
  const url = `http://127.0.0.1:${publicPort}`;
  const log = join(s.dir, 'gateway-redis.log');
  const proc = await startGateway('gateway (redis)', configPath, log, url);
  series.push(
    { label: 'no limits (gateway 2)', target: target(url, s.tenantKey), limits: false, firstGateway: false },
    { label: 'limits, Redis counter store (gateway 2)', target: target(url, limitsKey), limits: true, firstGateway: false },
  );
  return { series, redis: { url: redis.shown, pid: proc.pid as number, log } };
}

/** One request per series before measuring: limits must be on (rate-limit headers) or off (none). */
async function admissionSanityCheck(series: readonly Series[]): Promise<void> {
  for (const x of series) {
    const res = await fetch(x.target.origin + x.target.path, { method: 'POST', headers: x.target.headers, body: requestBody(false) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new BenchError(`sanity check: ${x.label} answered HTTP ${res.status}`);
    const limited = res.headers.get('x-ratelimit-limit-requests') !== null;
    if (limited !== x.limits) throw new BenchError(`sanity check: ${x.label} ${limited ? 'carries' : 'lacks'} x-ratelimit-* headers`);
    if (x.firstGateway) gatewayAnswered++;
  }
}

/**
 * Sequential whole requests for every series, in blocks of 100 taken in turn (rotating which series
 * goes first each round) so that drift and background noise hit all alike.
 */
async function sequentialSeries(series: readonly Series[], count: number): Promise<{ samples: number[][]; failures: number }> {
  const pools = series.map((x) => new Pool(x.target.origin, { connections: 1 }));
  const samples = series.map(() => [] as number[]);
  let failures = 0;
  const body = requestBody(false);
  const block = 100;
  const warm = Math.min(200, Math.max(20, Math.floor(count / 10)));
  try {
    for (let i = 0; i < series.length; i++) {
      for (let j = 0; j < warm; j++) await timedWhole(pools[i] as Pool, (series[i] as Series).target, body);
      if ((series[i] as Series).firstGateway) gatewayAnswered += warm;
    }
    for (let done = 0, round = 0; done < count; done += block, round++) {
      const n = Math.min(block, count - done);
      for (let k = 0; k < series.length; k++) {
        const i = (k + round) % series.length;
        const x = series[i] as Series;
        if (x.firstGateway) gatewayAnswered += n;
        for (let j = 0; j < n; j++) {
          const ms = await timedWhole(pools[i] as Pool, x.target, body);
          if (ms === undefined) failures++;
          else (samples[i] as number[]).push(ms);
        }
      }
    }
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
  return { samples, failures };
}

// ---------------------------------------------------------------- report

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : 'n/a');
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('   ')).join('\n');
}

function round3(v: number): number {
  return Number.isFinite(v) ? Math.round(v * 1000) / 1000 : NaN;
}

/** Counts the gateway's per-request log lines and its warnings/errors. */
function readGatewayLog(path: string): { requestLines: number; warnOrError: number; messages: Record<string, number> } {
  let requestLines = 0;
  let warnOrError = 0;
  const messages: Record<string, number> = {};
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { requestLines, warnOrError, messages };
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; level?: number; code?: string | null };
      if (entry.msg === 'request') requestLines++;
      if ((entry.level ?? 0) >= 40) {
        warnOrError++;
        const key = `${entry.msg ?? '?'}${entry.code ? ` (${entry.code})` : ''}`;
        messages[key] = (messages[key] ?? 0) + 1;
      }
    } catch { /* not a JSON line */ }
  }
  return { requestLines, warnOrError, messages };
}

// ---------------------------------------------------------------- main

async function run(dir: string): Promise<number> {
  const duration = envInt('BENCH_DURATION', 8, 1, 3600);
  const warmup = envInt('BENCH_WARMUP', 2, 0, 600);
  const connections = envInt('BENCH_CONNECTIONS', 50, 1, 10_000);
  const seq = envInt('BENCH_SEQ', 3000, 10, 10_000_000);
  const admissionSeq = envInt('BENCH_ADMISSION_SEQ', 1000, 10, 10_000_000);
  const profile = process.env['BENCH_PROFILE'] || undefined;
  clockTicks = readClockTicks();

  const cpuList = cpus();
  const machine = {
    cpu: cpuList[0]?.model.trim() ?? 'unknown', cores: cpuList.length, platform: `${process.platform} ${release()}`,
    loadavgStart: loadavg().map(round3), loadavgEnd: [] as number[],
  };
  const out = (line = '') => process.stdout.write(`${line}\n`);
  out('keywarden benchmark: direct to the mock provider vs through the gateway (loopback)');
  out(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.platform}; node ${process.version}; load average at start ${machine.loadavgStart.join(' ')}`);
  out(`settings: ${duration} s per throughput run after ${warmup} s warm-up, concurrency ${connections}; ${seq} sequential requests per target;` +
    ` ${admissionSeq} per tenant for the admission cost; CLK_TCK ${clockTicks}; gateway and pass-through run with ${GATEWAY_NODE_FLAGS.join(' ')} (as npm start)${profile ? '; gateway under --cpu-prof (figures inflated)' : ''}`);
  out(`note: mock provider, gateway and load generator share these ${machine.cores} cores, so absolute figures are low and noisy;`);
  out('      only the ratios (gateway vs direct) from one run are meaningful.');
  out();

  const s = await setUp(dir, profile);
  const t = targets(s);
  await sanityCheck(t);
  out(`started mock provider (pid ${s.mockPid}) at ${s.mockUrl} and gateway (pid ${s.gatewayPid}) at ${s.gatewayUrl}; tenant "bench" and its key issued with the CLI`);
  const adm = await setUpAdmission(s);
  await admissionSanityCheck(adm.series);
  out(`tenant "bench-limits" (requests_per_minute, tokens_per_minute, usd_per_month: none reached) and its key issued with the CLI; ` +
    ('pid' in adm.redis ? `gateway 2 (pid ${adm.redis.pid}) with limits.store ${adm.redis.url}` : `admission cost with Redis skipped: ${adm.redis.skipped}`));

  const progress = (msg: string) => process.stderr.write(`  … ${msg}\n`);
  // how busy the rest of the machine was while we measured: a noise indicator
  const ours = () => cpuUs(s.gatewayPid, 'gateway') + cpuUs(s.mockPid, 'mock provider') + selfCpuUs();
  const machine0 = machineCpuUs();
  const ours0 = ours();
  const load: Record<'whole' | 'stream', { direct: LoadResult; gateway: LoadResult }> = {} as never;
  for (const [kind, stream] of [['whole', false], ['stream', true]] as const) {
    progress(`throughput ${kind === 'stream' ? 'streaming' : 'non-streaming'}: direct`);
    const direct = await loadRun(s, t.direct, stream, duration, warmup, connections);
    progress(`throughput ${kind === 'stream' ? 'streaming' : 'non-streaming'}: gateway`);
    const gateway = await loadRun(s, t.gateway, stream, duration, warmup, connections);
    load[kind] = { direct, gateway };
  }
  // the floor: the same relay with nothing else, in the same run
  const passthrough = await startPassthrough(s);
  const floorTarget: Target = { name: 'passthrough', origin: passthrough.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } };
  const floor: Record<'whole' | 'stream', LoadResult> = {} as never;
  for (const [kind, stream] of [['whole', false], ['stream', true]] as const) {
    progress(`throughput ${kind === 'stream' ? 'streaming' : 'non-streaming'}: bare pass-through (node:http + undici, no checks)`);
    floor[kind] = await loadRun(s, floorTarget, stream, duration, warmup, connections, passthrough.proc.pid as number);
  }
  progress(`latency at concurrency 1: ${seq} whole requests per target`);
  const seqWhole = await sequential(t, seq, timedWhole, requestBody(false));
  progress(`time to first byte at concurrency 1: ${seq} streamed requests per target`);
  const seqTtfb = await sequential(t, seq, timedFirstByte, requestBody(true));
  // the floor at concurrency 1 too: direct against the bare pass-through, in alternating blocks
  progress(`latency at concurrency 1, bare pass-through: ${seq} whole requests per target`);
  const floorSeq = await sequential({ direct: t.direct, gateway: { ...floorTarget, name: 'gateway' } }, seq, timedWhole, requestBody(false), false);
  // its CPU counts as ours in the noise indicator below, not as other processes'
  let floorCpuUs = cpuUs(passthrough.proc.pid as number, 'passthrough');
  await stopChild(passthrough.proc);
  // and the floor under that: the extra process alone, relaying bytes without any HTTP
  const relay = await startPassthrough(s, true);
  progress(`latency at concurrency 1, TCP byte relay: ${seq} whole requests per target`);
  const relaySeq = await sequential({ direct: t.direct, gateway: { ...t.direct, origin: relay.url, name: 'gateway' } }, seq, timedWhole, requestBody(false), false);
  floorCpuUs += cpuUs(relay.proc.pid as number, 'tcp relay');
  await stopChild(relay.proc);
  machine.loadavgEnd = loadavg().map(round3);
  const machine1 = machineCpuUs();
  const ours1 = ours();
  const machineTotal = machine1.total - machine0.total;
  const othersShare = machineTotal > 0 ? Math.max(0, (machine1.busy - machine0.busy - (ours1 - ours0) - floorCpuUs) / machineTotal) : NaN;
  const busyShare = machineTotal > 0 ? (machine1.busy - machine0.busy) / machineTotal : NaN;
  progress(`admission cost at concurrency 1: ${admissionSeq} whole requests per tenant, ${adm.series.length} tenant/gateway pairs`);
  const admSeq = await sequentialSeries(adm.series, admissionSeq);

  // stop the gateways now so their logs (and profile) are complete
  const gatewayChild = children.find((c) => c.name === 'gateway');
  const stopped = gatewayChild ? await stopChild(gatewayChild.proc) : undefined;
  const log = readGatewayLog(s.gatewayLog);
  const redisChild = children.find((c) => c.name === 'gateway (redis)');
  const redisStopped = redisChild ? await stopChild(redisChild.proc) : undefined;
  const redisLog = 'log' in adm.redis ? readGatewayLog(adm.redis.log) : undefined;
  let prof: ProfileSummary | undefined;
  if (s.profileDir && existsSync(s.profileDir)) {
    const file = readdirSync(s.profileDir).filter((f) => f.endsWith('.cpuprofile')).sort().pop();
    if (file) prof = summariseCpuProfile(join(s.profileDir, file), 20);
    else process.stderr.write('bench: no .cpuprofile was written by the gateway\n');
  }

  // ---- figures
  const fw = summary(floorSeq.direct);
  const fp = summary(floorSeq.gateway);
  const rw = summary(relaySeq.direct);
  const rp = summary(relaySeq.gateway);
  const lw = summary(seqWhole.direct);
  const lg = summary(seqWhole.gateway);
  const tw = summary(seqTtfb.direct);
  const tg = summary(seqTtfb.gateway);
  const admStats = adm.series.map((x, i) => ({ ...x, stats: summary(admSeq.samples[i] ?? []) }));
  const admPair = (from: number) => {
    const none = admStats[from];
    const limits = admStats[from + 1];
    if (!none || !limits) return undefined;
    return { none: none.stats, limits: limits.stats, addedP50: limits.stats.p50 - none.stats.p50, addedP99: limits.stats.p99 - none.stats.p99 };
  };
  const admEmbedded = admPair(0);
  const admRedis = admPair(2);
  const targetsOut = [
    { name: 'gateway CPU per request, non-streaming (µs)', value: load.whole.gateway.gatewayCpuUsPerReq, limit: TARGETS.cpuUsPerRequest },
    { name: 'gateway CPU per request, streaming (µs)', value: load.stream.gateway.gatewayCpuUsPerReq, limit: TARGETS.cpuUsPerRequest },
    { name: 'added p50 latency, concurrency 1 (ms)', value: lg.p50 - lw.p50, limit: TARGETS.addedP50LatencyMs },
    { name: 'added p50 time to first byte, concurrency 1 (ms)', value: tg.p50 - tw.p50, limit: TARGETS.addedP50TtfbMs },
  ].map((x) => ({ ...x, pass: Number.isFinite(x.value) && x.value <= x.limit }));

  out();
  out(`Throughput, concurrency ${connections}, ${duration} s each (latency = whole request, from the load generator)`);
  const tp: string[][] = [['', 'req/s', 'ratio', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'gw CPU µs/req', 'mock CPU µs/req', 'loadgen CPU µs/req']];
  for (const kind of ['whole', 'stream'] as const) {
    const { direct, gateway } = load[kind];
    const label = kind === 'whole' ? 'non-streaming' : 'streaming';
    tp.push([`${label} direct`, f0(direct.rps), '1.00', f3(direct.latencyMs.p50), f3(direct.latencyMs.p99), String(direct.non2xx), String(direct.errors), '-', f0(direct.mockCpuUsPerReq), f0(direct.loadgenCpuUsPerReq)]);
    tp.push([`${label} gateway`, f0(gateway.rps), ratio(gateway.rps, direct.rps), f3(gateway.latencyMs.p50), f3(gateway.latencyMs.p99), String(gateway.non2xx), String(gateway.errors),
      f0(gateway.gatewayCpuUsPerReq), f0(gateway.mockCpuUsPerReq), f0(gateway.loadgenCpuUsPerReq)]);
    tp.push([`${label} added (gw - direct)`, '', '', f3(gateway.latencyMs.p50 - direct.latencyMs.p50), f3(gateway.latencyMs.p99 - direct.latencyMs.p99), '', '', '', '', '']);
    const bare = floor[kind];
    tp.push([`${label} bare pass-through`, f0(bare.rps), ratio(bare.rps, direct.rps), f3(bare.latencyMs.p50), f3(bare.latencyMs.p99), String(bare.non2xx), String(bare.errors),
      f0(bare.gatewayCpuUsPerReq), f0(bare.mockCpuUsPerReq), f0(bare.loadgenCpuUsPerReq)]);
  }
  out(table(tp));
  out(`  bare pass-through: node:http in, undici out, no checks or records (bench/passthrough.ts); the gateway's own work costs` +
    ` ${f0(load.whole.gateway.gatewayCpuUsPerReq - floor.whole.gatewayCpuUsPerReq)} µs (whole) / ${f0(load.stream.gateway.gatewayCpuUsPerReq - floor.stream.gatewayCpuUsPerReq)} µs (streamed) of CPU per request above it`);
  out(`  (closed loop: at concurrency ${connections} latency is about ${connections} / req/s, so the added latency mostly mirrors the throughput gap)`);
  out();
  out('Concurrency 1 (sequential, alternating blocks of 100)');
  out(table([
    ['', 'n', 'direct p50', 'gateway p50', 'added p50', 'direct p99', 'gateway p99', 'added p99'],
    ['latency, whole request (ms)', String(lw.n + lg.n), f3(lw.p50), f3(lg.p50), f3(lg.p50 - lw.p50), f3(lw.p99), f3(lg.p99), f3(lg.p99 - lw.p99)],
    ['time to first streamed byte (ms)', String(tw.n + tg.n), f3(tw.p50), f3(tg.p50), f3(tg.p50 - tw.p50), f3(tw.p99), f3(tg.p99), f3(tg.p99 - tw.p99)],
    ['bare pass-through, whole request (ms)', String(fw.n + fp.n), f3(fw.p50), f3(fp.p50), f3(fp.p50 - fw.p50), f3(fw.p99), f3(fp.p99), f3(fp.p99 - fw.p99)],
    ['TCP byte relay, whole request (ms)', String(rw.n + rp.n), f3(rw.p50), f3(rp.p50), f3(rp.p50 - rw.p50), f3(rw.p99), f3(rp.p99), f3(rp.p99 - rw.p99)],
  ]));
  out('  (the last two rows: direct against a bare node:http + undici pass-through, then against a byte relay with no HTTP at all,');
  out('   instead of the gateway: the floors under the added latency. The byte relay is what one more process in the path costs here.)');
  if (seqWhole.failures + seqTtfb.failures + floorSeq.failures + relaySeq.failures > 0) {
    out(`  failed sequential requests: ${seqWhole.failures} whole, ${seqTtfb.failures} streamed, ${floorSeq.failures} pass-through, ${relaySeq.failures} byte relay`);
  }
  out();
  out('Admission cost, concurrency 1 (whole requests; blocks of 100 in turn; added = limits on - limits off, same gateway process)');
  const admRows: string[][] = [['', 'n', 'p50 ms', 'p99 ms', 'added p50', 'added p99']];
  admStats.forEach((x, i) => {
    const base = admStats[i - 1];
    const added = x.limits && base ? [f3(x.stats.p50 - base.stats.p50), f3(x.stats.p99 - base.stats.p99)] : ['', ''];
    admRows.push([x.label, String(x.stats.n), f3(x.stats.p50), f3(x.stats.p99), ...added]);
  });
  if ('skipped' in adm.redis) admRows.push(['limits, Redis counter store', '-', '-', '-', 'skipped', '']);
  out(table(admRows));
  out(`  admission cost (added p50): embedded store ${admEmbedded ? `${f3(admEmbedded.addedP50)} ms` : 'n/a'}; ` +
    `Redis store ${admRedis ? `${f3(admRedis.addedP50)} ms` : `skipped (${'skipped' in adm.redis ? adm.redis.skipped : '?'})`}`);
  if (admSeq.failures > 0) out(`  failed admission-cost requests: ${admSeq.failures}`);
  out();
  out('Targets');
  out(table([['', 'value', 'target', ''], ...targetsOut.map((x) => [x.name, f3(x.value), `<= ${x.limit}`, x.pass ? 'PASS' : 'MISS'])]));
  out();
  const allLoad = [load.whole.direct, load.whole.gateway, load.stream.direct, load.stream.gateway];
  const bad = allLoad.reduce((n, r) => n + r.non2xx + r.errors, 0) + seqWhole.failures + seqTtfb.failures + floorSeq.failures + relaySeq.failures + admSeq.failures;
  out(`responses: ${bad === 0 ? 'all 2xx' : `${bad} non-2xx or failed (see the table)`}; gateway request log lines: ${log.requestLines} for ${gatewayAnswered} answered requests` +
    ` (more lines = requests cut off when a load run stopped); gateway warnings/errors logged: ${log.warnOrError}` +
    `${log.warnOrError > 0 ? ` ${JSON.stringify(log.messages)}` : ''}; gateway stopped ${stopped ? (stopped.killed ? 'by SIGKILL after the grace period' : `with code ${stopped.code}`) : '?'}`);
  if (log.requestLines < gatewayAnswered) out(`WARNING: the gateway logged ${gatewayAnswered - log.requestLines} fewer request lines than requests it answered (lines lost?)`);
  if (redisLog) {
    out(`gateway 2 (Redis counter store): request log lines ${redisLog.requestLines}; warnings/errors logged: ${redisLog.warnOrError}` +
      `${redisLog.warnOrError > 0 ? ` ${JSON.stringify(redisLog.messages)}` : ''}; stopped ${redisStopped ? (redisStopped.killed ? 'by SIGKILL after the grace period' : `with code ${redisStopped.code}`) : '?'}`);
  }
  out(`machine during the measurements: ${(busyShare * 100).toFixed(0)}% busy, of which other processes (not mock, gateway or load generator) ${(othersShare * 100).toFixed(0)}% of all cores;` +
    ` load average at end ${machine.loadavgEnd.join(' ')}`);
  out(`${machine.cores} cores shared by mock, gateway and load generator${othersShare > 0.1 ? ' and other work' : ''}: compare ratios from one run, not absolute numbers.`);
  if (prof) {
    out();
    out(`Gateway CPU profile (${f0(prof.totalMs)} ms busy; shares exclude idle)`);
    out(table([['area', 'self ms', 'share'], ...prof.areas.slice(0, 12).map((a) => [a.area, f0(a.selfMs), `${(a.share * 100).toFixed(1)}%`])]));
    out();
    out('top self time, all code');
    out(table([['function', 'area', 'self ms', 'share'], ...prof.top.map((r) => [r.name, r.area, f0(r.selfMs), `${(r.share * 100).toFixed(1)}%`])]));
    out();
    out('top self time, src/');
    out(table([['function', 'self ms', 'share'], ...prof.topSrc.map((r) => [r.name, f0(r.selfMs), `${(r.share * 100).toFixed(1)}%`])]));
    if (s.profileDir && profile !== '1') out(`profile kept in ${s.profileDir}`);
  }

  const strip = (r: LoadResult) => ({
    rps: round3(r.rps), completed: r.completed, seconds: round3(r.seconds), non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts, statusCodes: r.statusCodes,
    p50Ms: round3(r.latencyMs.p50), p99Ms: round3(r.latencyMs.p99), meanMs: round3(r.latencyMs.mean),
    gatewayCpuUsPerReq: round3(r.gatewayCpuUsPerReq), mockCpuUsPerReq: round3(r.mockCpuUsPerReq), loadgenCpuUsPerReq: round3(r.loadgenCpuUsPerReq),
  });
  const json = {
    machine: { ...machine, node: process.version, clkTck: clockTicks, busyShare: round3(busyShare), otherProcessesShare: round3(othersShare) },
    settings: { durationS: duration, warmupS: warmup, connections, seq, admissionSeq, profiled: profile !== undefined },
    throughput: {
      nonStreaming: { direct: strip(load.whole.direct), gateway: strip(load.whole.gateway), ratio: round3(load.whole.gateway.rps / load.whole.direct.rps) },
      streaming: { direct: strip(load.stream.direct), gateway: strip(load.stream.gateway), ratio: round3(load.stream.gateway.rps / load.stream.direct.rps) },
      // node:http + undici with nothing else: the relay's own cost in this run
      barePassthrough: { nonStreaming: strip(floor.whole), streaming: strip(floor.stream) },
    },
    concurrency50: {
      nonStreaming: { addedP50Ms: round3(load.whole.gateway.latencyMs.p50 - load.whole.direct.latencyMs.p50), addedP99Ms: round3(load.whole.gateway.latencyMs.p99 - load.whole.direct.latencyMs.p99) },
      streaming: { addedP50Ms: round3(load.stream.gateway.latencyMs.p50 - load.stream.direct.latencyMs.p50), addedP99Ms: round3(load.stream.gateway.latencyMs.p99 - load.stream.direct.latencyMs.p99) },
    },
    latencyC1: {
      direct: { n: lw.n, p50Ms: round3(lw.p50), p99Ms: round3(lw.p99) }, gateway: { n: lg.n, p50Ms: round3(lg.p50), p99Ms: round3(lg.p99) },
      addedP50Ms: round3(lg.p50 - lw.p50), addedP99Ms: round3(lg.p99 - lw.p99), failures: seqWhole.failures,
      barePassthrough: { direct: { p50Ms: round3(fw.p50) }, passthrough: { p50Ms: round3(fp.p50) }, addedP50Ms: round3(fp.p50 - fw.p50), failures: floorSeq.failures },
      tcpByteRelay: { direct: { p50Ms: round3(rw.p50) }, relay: { p50Ms: round3(rp.p50) }, addedP50Ms: round3(rp.p50 - rw.p50), failures: relaySeq.failures },
    },
    ttfbC1: {
      direct: { n: tw.n, p50Ms: round3(tw.p50), p99Ms: round3(tw.p99) }, gateway: { n: tg.n, p50Ms: round3(tg.p50), p99Ms: round3(tg.p99) },
      addedP50Ms: round3(tg.p50 - tw.p50), addedP99Ms: round3(tg.p99 - tw.p99), failures: seqTtfb.failures,
    },
    admissionC1: {
      n: admissionSeq,
      limits: BENCH_LIMITS,
      embedded: admEmbedded ? {
        noLimits: { n: admEmbedded.none.n, p50Ms: round3(admEmbedded.none.p50), p99Ms: round3(admEmbedded.none.p99) },
        limits: { n: admEmbedded.limits.n, p50Ms: round3(admEmbedded.limits.p50), p99Ms: round3(admEmbedded.limits.p99) },
        addedP50Ms: round3(admEmbedded.addedP50), addedP99Ms: round3(admEmbedded.addedP99),
      } : null,
      redis: admRedis && 'url' in adm.redis ? {
        url: adm.redis.url,
        noLimits: { n: admRedis.none.n, p50Ms: round3(admRedis.none.p50), p99Ms: round3(admRedis.none.p99) },
        limits: { n: admRedis.limits.n, p50Ms: round3(admRedis.limits.p50), p99Ms: round3(admRedis.limits.p99) },
        addedP50Ms: round3(admRedis.addedP50), addedP99Ms: round3(admRedis.addedP99),
        gatewayLog: redisLog,
      } : { skipped: 'skipped' in adm.redis ? adm.redis.skipped : 'no samples' },
      failures: admSeq.failures,
    },
    targets: targetsOut.map((x) => ({ ...x, value: round3(x.value) })),
    allResponses2xx: bad === 0,
    gatewayLog: { ...log, answeredRequests: gatewayAnswered },
    ...(prof ? { profile: { busyMs: round3(prof.totalMs), areas: prof.areas.slice(0, 12), topSrc: prof.topSrc.slice(0, 10) } } : {}),
    note: 'mock, gateway and load generator share the machine; only ratios from one run are meaningful',
  };
  out();
  out(`BENCH_JSON ${JSON.stringify(json)}`);
  if (bad > 0) {
    process.stderr.write(`bench: ${bad} requests were not answered 2xx; the figures above are not trustworthy\n`);
    return 1;
  }
  return 0;
}

async function cleanUp(dir: string | undefined): Promise<void> {
  for (const child of [...children].reverse()) {
    try {
      await stopChild(child.proc);
    } catch { /* already gone */ }
  }
  children.length = 0;
  if (!dir) return;
  if (process.env['BENCH_KEEP'] === '1') process.stderr.write(`bench: kept ${dir} (BENCH_KEEP=1)\n`);
  else rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  let dir: string | undefined;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`bench: ${signal}: stopping the mock provider and the gateway\n`);
    void cleanUp(dir).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (process.platform !== 'linux') throw new BenchError('the benchmark reads CPU time from /proc and runs on Linux only');
    if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new BenchError('the project is not built; run `npm run build` first');
    dir = mkdtempSync(join(tmpdir(), 'keywarden-bench-'));
    process.exitCode = await run(dir);
  } catch (err) {
    const message = err instanceof BenchError ? err.message : (err as Error).stack ?? String(err);
    process.stderr.write(`bench: FAILED: ${message}\n`);
    for (const child of children) {
      if (child.name === 'gateway' && !(err instanceof BenchError)) process.stderr.write(`last gateway log lines:\n${tail(child.log)}\n`);
    }
    process.exitCode = 1;
  } finally {
    if (!interrupted) await cleanUp(dir);
  }
}

await main();
