/**
 * `keywarden scan` throughput: a generated tree of 10,000 files / 100 MB, and a 1 GB synthetic
 * log piped to `keywarden scan -`, each in a child process, with MB/s and the child's peak RSS
 * (VmHWM from /proc, sampled; "n/a" where /proc is missing).
 *
 *   node dist/bench/scan-bench.js          (after `npm run build`)
 *
 * Environment:
 *   SCAN_BENCH_SCALE   fraction of the full sizes (default 1; 0.05 = 500 files / 5 MB and a 50 MB log)
 *   SCAN_BENCH_KEEP    1 to keep the generated tree (FAKE keys only)
 *
 * The generated text is log- and source-like, with a FAKE key (test/fixtures/detect) in about
 * one file in 500 and one log line in 100,000, so the scan also does the work of reporting.
 * Prints a table and, last, one `SCAN_BENCH_JSON {…}` line.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAKE } from '../test/fixtures/detect/fixtures.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const BIN = resolve(here, '../../bin/keywarden.js');
const RUNNER = resolve(here, '../test/helpers/scan-runner.js');
const WIRED = (spawnSync(process.execPath, [BIN, 'scan', '--help'], { encoding: 'utf8' }).stdout ?? '').includes('--git-history');
const SCAN = WIRED ? [BIN, 'scan'] : [RUNNER];

const scale = Number(process.env['SCAN_BENCH_SCALE'] ?? '1');
if (!Number.isFinite(scale) || scale <= 0) throw new Error('SCAN_BENCH_SCALE must be a positive number');
const FILES = Math.max(1, Math.round(10_000 * scale));
const TREE_BYTES = Math.round(100e6 * scale);
const LOG_BYTES = Math.round(1e9 * scale);
const fakes = Object.values(FAKE);

// a small deterministic generator (no Math.random: the same tree every run)
let seed = 0x9e3779b9;
const rand = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
};
const WORDS = 'request tenant acme status duration bytes upstream model gpt chat completions const function return import export async await value config error retry token_count latency cache key-id user path handler'.split(' ');
function logLine(i: number): string {
  const w = () => WORDS[Math.floor(rand() * WORDS.length)] as string;
  return `2024-06-07T12:${String(i % 60).padStart(2, '0')}:00.${i % 1000}Z INFO [worker-${i % 8}] ${w()}=${w()} id=${(i * 2654435761 >>> 0).toString(16)} ${w()} ${w()}_${w()} ms=${i % 997} path=/v1/${w()}/${w()}`;
}
function sourceLine(i: number): string {
  const w = () => WORDS[Math.floor(rand() * WORDS.length)] as string;
  return `  const ${w()}_${i} = await ${w()}.${w()}({ ${w()}: "${w()}-${w()}", limit: ${i % 1000} }); // ${w()} ${w()}`;
}

interface Measured { seconds: number; peakRssMb: number | undefined; status: number | null; stdoutBytes: number }

/** Runs the scan in a child, sampling its peak RSS; `feed` writes its stdin (for `scan -`). */
function runScan(args: string[], feed?: (stdin: NodeJS.WritableStream) => Promise<void>): Promise<Measured> {
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [...SCAN, ...args], { stdio: [feed ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let peak: number | undefined;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peak = Math.max(peak ?? 0, Number(m[1]) / 1024);
      } catch {
        // gone, or no /proc
      }
    };
    const timer = setInterval(sample, 50);
    let stdoutBytes = 0;
    child.stdout?.on('data', (d: Buffer) => (stdoutBytes += d.length));
    child.stderr?.resume();
    child.on('error', reject);
    child.on('exit', (status) => {
      clearInterval(timer);
      resolvePromise({ seconds: Number(process.hrtime.bigint() - started) / 1e9, peakRssMb: peak, status, stdoutBytes });
    });
    if (feed && child.stdin) {
      child.stdin.on('error', () => {});
      void feed(child.stdin).then(() => child.stdin?.end(), reject);
    }
  });
}

function writeTree(root: string): number {
  const perFile = Math.max(200, Math.floor(TREE_BYTES / FILES));
  let total = 0;
  for (let f = 0; f < FILES; f++) {
    const sub = join(root, `pkg-${f % 50}`, `mod-${f % 7}`);
    if (f < 350) mkdirSync(sub, { recursive: true });
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < perFile; i++) {
      const line = f % 2 === 0 ? sourceLine(i) : logLine(i);
      lines.push(line);
      size += line.length + 1;
    }
    if (f % 500 === 7) lines.splice(Math.floor(lines.length / 2), 0, `  apiKey: "${fakes[f % fakes.length]}", // FAKE bench value`);
    const text = `${lines.join('\n')}\n`;
    writeFileSync(join(sub, `file-${f}.${f % 2 === 0 ? 'ts' : 'log'}`), text);
    total += Buffer.byteLength(text);
  }
  return total;
}

async function feedLog(stdin: NodeJS.WritableStream): Promise<void> {
  // a 4 MB block of varied lines, written again and again (with one FAKE key per block)
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 4 << 20; i++) {
    const line = i === 1000 ? `2024-06-07T12:00:00Z DEBUG env OPENAI_API_KEY=${FAKE.openaiProject} (FAKE bench value)` : logLine(i);
    lines.push(line);
    size += line.length + 1;
  }
  const block = Buffer.from(`${lines.join('\n')}\n`);
  for (let sent = 0; sent < LOG_BYTES; sent += block.length) {
    const chunk = sent + block.length > LOG_BYTES ? block.subarray(0, LOG_BYTES - sent) : block;
    if (!stdin.write(chunk)) await new Promise<void>((r) => stdin.once('drain', () => r()));
  }
}

const fmt = (n: number | undefined, d = 0) => (n === undefined ? 'n/a' : n.toFixed(d));

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'kw-scan-bench-'));
  try {
    process.stdout.write(`keywarden scan benchmark (scale ${scale}; ${WIRED ? 'bin/keywarden.js scan' : 'scanCommand runner'})\n`);
    const t0 = Date.now();
    const treeBytes = writeTree(root);
    process.stdout.write(`generated ${FILES} files, ${(treeBytes / 1e6).toFixed(1)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    const tree = await runScan(['--format', 'json', root]);
    const log = await runScan(['-', '--format', 'json'], feedLog);
    const rows = [
      { what: `tree: ${FILES} files`, mb: treeBytes / 1e6, ...tree },
      { what: 'log on stdin', mb: LOG_BYTES / 1e6, ...log },
    ];
    process.stdout.write(`\n${'scan'.padEnd(24)}${'MB'.padStart(9)}${'seconds'.padStart(10)}${'MB/s'.padStart(9)}${'peak RSS MB'.padStart(13)}  exit\n`);
    for (const r of rows) {
      process.stdout.write(
        `${r.what.padEnd(24)}${fmt(r.mb, 1).padStart(9)}${fmt(r.seconds, 2).padStart(10)}${fmt(r.mb / r.seconds, 1).padStart(9)}${fmt(r.peakRssMb).padStart(13)}  ${r.status}\n`,
      );
      if (r.status !== 1) process.stdout.write(`  warning: expected exit 1 (the FAKE keys), got ${r.status}\n`);
    }
    const json = Object.fromEntries(rows.map((r, i) => [i === 0 ? 'tree' : 'log', { mb: r.mb, seconds: r.seconds, mbPerSecond: r.mb / r.seconds, peakRssMb: r.peakRssMb ?? null, exit: r.status }]));
    process.stdout.write(`SCAN_BENCH_JSON ${JSON.stringify({ scale, files: FILES, ...json })}\n`);
  } finally {
    if (process.env['SCAN_BENCH_KEEP'] === '1') process.stdout.write(`kept ${root}\n`);
    else rmSync(root, { recursive: true, force: true });
  }
}

await main();
