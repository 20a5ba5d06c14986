/**
 * `keywarden scan` end to end, as a child process: files and directories (.gitignore respected),
 * a repository's history, stdin, the three output formats, exit statuses, .keywardenignore, the
 * pre-commit hook, and that no output ever holds a secret unmasked.
 *
 * Every key written here comes from test/fixtures/detect/fixtures.ts: FAKE, test-only values.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, unlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fingerprintSecret } from '../src/detect/detector.js';
import { installPreCommitHook } from '../src/scan/hook.js';
import { FAKE } from './fixtures/detect/fixtures.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/test
const BIN = resolve(here, '../../bin/keywarden.js');
const RUNNER = join(here, 'helpers/scan-runner.js');
// the CLI routes `scan` once wired into src/cli/main.ts; until then the runner calls scanCommand
const WIRED = (spawnSync(process.execPath, [BIN, 'scan', '--help'], { encoding: 'utf8' }).stdout ?? '').includes('--git-history');
const SCAN = WIRED ? [BIN, 'scan'] : [RUNNER];

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 'test@example.invalid',
  GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null',
};

interface Run { status: number | null; stdout: string; stderr: string }
function scan(args: string[], cwd: string, input?: string): Run {
  const r = spawnSync(process.execPath, [...SCAN, ...args], { cwd, input, encoding: 'utf8', env: GIT_ENV, maxBuffer: 64 << 20 });
  const run = { status: r.status, stdout: r.stdout, stderr: r.stderr };
  outputs.push(run.stdout, run.stderr);
  return run;
}
function git(cwd: string, ...args: string[]): Run {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: GIT_ENV });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const outputs: string[] = [];
const ALL_FAKES = Object.values(FAKE);

let root: string;
let n = 0;
function dir(files: Record<string, string> = {}): string {
  const d = join(root, `case-${n++}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(d, name)), { recursive: true });
    writeFileSync(join(d, name), text);
  }
  mkdirSync(d, { recursive: true });
  return d;
}
function repo(files: Record<string, string> = {}): string {
  const d = dir(files);
  assert.equal(git(d, 'init', '-q', '-b', 'main').status, 0);
  return d;
}

describe('keywarden scan', () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'kw-scan-test-'));
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('reports a key in a file with rule, file, line and column, masked, and exits 1', () => {
    const d = dir({ 'config/app.env': `# FAKE test-only\nPORT=8080\nOPENAI_API_KEY=${FAKE.openaiProject}\n`, 'README.md': 'nothing here\n' });
    const r = scan(['.'], d);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^config\/app\.env:3:16  openai-project-key  sk-proj-\*\*\*\*  sha256:[0-9a-f]{16}$/m);
    assert.ok(!r.stdout.includes(FAKE.openaiProject));
    assert.match(r.stderr, /1 secret found/);
  });

  it('exits 0 on a clean tree', () => {
    const d = dir({ 'a.txt': 'hello\n', 'src/b.ts': 'export const task = "disk-usage";\n' });
    const r = scan(['.'], d);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /no secrets found/);
  });

  it('respects .gitignore in a repository, and without git too', () => {
    const files = { '.gitignore': 'secrets/\n*.local\n', 'secrets/key.txt': FAKE.githubPat, 'dev.local': FAKE.groq, 'ok.txt': 'fine\n' };
    assert.equal(scan(['.'], repo(files)).status, 0);
    assert.equal(scan(['.'], dir(files)).status, 0);
    const tracked = repo({ ...files, 'leak.txt': `token=${FAKE.githubPat}\n` });
    const r = scan(['--format', 'json', '.'], tracked);
    assert.equal(r.status, 1);
    assert.deepEqual((JSON.parse(r.stdout) as { findings: Array<{ file: string }> }).findings.map((f) => f.file), ['leak.txt']);
  });

  it('finds a key committed and later removed only with --git-history, naming the commit', () => {
    const d = repo({ 'app.py': 'print("hi")\n' });
    git(d, 'add', '.');
    git(d, 'commit', '-q', '-m', 'first');
    writeFileSync(join(d, 'app.py'), `print("hi")\nclient = Anthropic(api_key="${FAKE.anthropic}")\n`);
    git(d, 'commit', '-q', '-am', 'add key (FAKE)');
    const leaked = git(d, 'rev-parse', 'HEAD').stdout.trim();
    writeFileSync(join(d, 'app.py'), 'print("hi")\n');
    git(d, 'commit', '-q', '-am', 'remove key');
    assert.equal(scan(['.'], d).status, 0, 'the work tree is clean');
    const r = scan(['--git-history', '--format', 'json'], d);
    assert.equal(r.status, 1, r.stderr);
    const { findings } = JSON.parse(r.stdout) as { findings: Array<Record<string, unknown>> };
    assert.equal(findings.length, 1);
    assert.deepEqual(
      { ruleId: findings[0]!['ruleId'], file: findings[0]!['file'], line: findings[0]!['line'], column: findings[0]!['column'], commit: findings[0]!['commit'] },
      { ruleId: 'anthropic-api-key', file: 'app.py', line: 2, column: 29, commit: leaked },
    );
  });

  it('scans stdin line by line, with line numbers, including a private key spread over lines', () => {
    const log = [
      ...Array.from({ length: 5000 }, (_, i) => `2024-06-07T12:00:00Z INFO step ${i} ok`),
      `2024-06-07T12:00:01Z DEBUG env SLACK_BOT_TOKEN=${FAKE.slackBot}`,
      '-----BEGIN PRIVATE KEY-----',
      ...(FAKE.pemBody.match(/.{1,64}/g) ?? []),
      '-----END PRIVATE KEY-----',
      'done',
    ].join('\n');
    const r = scan(['-', '--format', 'json'], dir(), log);
    assert.equal(r.status, 1, r.stderr);
    const { findings } = JSON.parse(r.stdout) as { findings: Array<{ ruleId: string; file: string; line: number }> };
    assert.deepEqual(findings.map((f) => [f.ruleId, f.file, f.line]), [['slack-bot-token', '<stdin>', 5001], ['private-key', '<stdin>', 5002]]);
    assert.equal(scan(['-'], dir(), 'a clean log\nline two\n').status, 0);
  });

  it('writes SARIF 2.1.0 with rule metadata, locations and fingerprints', () => {
    const d = dir({ 'k.txt': `\n\n  AWS_KEY=${FAKE.awsId}\n` });
    const r = scan(['--format', 'sarif', '.'], d);
    assert.equal(r.status, 1);
    const sarif = JSON.parse(r.stdout) as {
      version: string;
      runs: Array<{ tool: { driver: { name: string; rules: Array<{ id: string }> } }; results: Array<{ ruleId: string; locations: Array<{ physicalLocation: { artifactLocation: { uri: string }; region: { startLine: number; startColumn: number; endColumn: number } } }>; partialFingerprints: Record<string, string> }> }>;
    };
    assert.equal(sarif.version, '2.1.0');
    const run = sarif.runs[0]!;
    assert.equal(run.tool.driver.name, 'keywarden');
    assert.ok(run.tool.driver.rules.some((x) => x.id === 'aws-access-key-id'));
    assert.equal(run.results.length, 1);
    const res = run.results[0]!;
    assert.equal(res.ruleId, 'aws-access-key-id');
    assert.deepEqual(res.locations[0]!.physicalLocation.region, { startLine: 3, startColumn: 11, endColumn: 31 });
    assert.equal(res.locations[0]!.physicalLocation.artifactLocation.uri, 'k.txt');
    assert.equal(res.partialFingerprints['secretFingerprint/v1'], fingerprintSecret(FAKE.awsId));
  });

  it('exits 2 on usage errors', () => {
    const d = dir({ 'a.txt': 'x' });
    assert.equal(scan(['--no-such-flag'], d).status, 2);
    assert.equal(scan(['--format', 'xml', '.'], d).status, 2);
    assert.equal(scan(['does-not-exist'], d).status, 2);
    assert.equal(scan(['--git-history'], d).status, 2, 'not a repository');
    assert.equal(scan(['-', 'a.txt'], d, '').status, 2);
    const r = scan(['--format', 'xml'], d);
    assert.match(r.stderr, /--format must be one of text, json, sarif/);
  });

  it('silences a known false positive by fingerprint or by path glob, and nothing else', () => {
    const files = {
      'docs/example.md': `Example: ${FAKE.stripeTest}\n`,
      'test/fixtures/one.txt': `${FAKE.huggingface}\n`,
      'src/real.ts': `const k = "${FAKE.replicate}";\n`,
    };
    const d = dir({ ...files, '.keywardenignore': `# known\n${fingerprintSecret(FAKE.stripeTest)}  # docs example\ntest/fixtures/**\n` });
    const r = scan(['--format', 'json', '.'], d);
    assert.equal(r.status, 1);
    const out = JSON.parse(r.stdout) as { findings: Array<{ ruleId: string }>; stats: { ignored: number } };
    assert.deepEqual(out.findings.map((f) => f.ruleId), ['replicate-api-token']);
    assert.equal(out.stats.ignored, 1, 'the fingerprinted one; the glob skips its files unread');
    unlinkSync(join(d, 'src/real.ts'));
    assert.equal(scan(['.'], d).status, 0);
    // --ignore-file replaces the discovered file
    writeFileSync(join(d, 'other.ignore'), 'docs/*.md\n');
    assert.deepEqual(
      (JSON.parse(scan(['--format', 'json', '--ignore-file', 'other.ignore', '.'], d).stdout) as { findings: Array<{ ruleId: string }> }).findings.map((f) => f.ruleId),
      ['huggingface-token'],
    );
  });

  it('installs a pre-commit hook that blocks a commit with a key and lets a clean one through', () => {
    const d = repo({ 'readme.txt': 'hello\n' });
    if (WIRED) assert.equal(scan(['--install-hook'], d).status, 0);
    else assert.equal(installPreCommitHook(d, { command: `'${process.execPath}' '${RUNNER}'` }).ok, true);
    const hook = readFileSync(join(d, '.git/hooks/pre-commit'), 'utf8');
    assert.match(hook, WIRED ? /bin\/keywarden\.js' scan --staged$/m : /--staged$/m);
    git(d, 'add', '.');
    assert.equal(git(d, 'commit', '-q', '-m', 'clean').status, 0);
    writeFileSync(join(d, 'settings.py'), `MISTRAL_API_KEY = "${FAKE.mistral}"  # FAKE\n`);
    git(d, 'add', 'settings.py');
    const blocked = git(d, 'commit', '-q', '-m', 'leak');
    assert.notEqual(blocked.status, 0, 'the hook refused the commit');
    assert.match(blocked.stdout + blocked.stderr, /mistral-api-key/);
    assert.ok(!(blocked.stdout + blocked.stderr).includes(FAKE.mistral));
    assert.equal(git(d, 'rev-list', '--count', 'HEAD').stdout.trim(), '1', 'no commit was made');
    // a foreign hook is not replaced without --force
    writeFileSync(join(d, '.git/hooks/pre-commit'), '#!/bin/sh\nexit 0\n');
    assert.equal(installPreCommitHook(d).ok, false);
    assert.equal(installPreCommitHook(d, { force: true }).ok, true);
  });

  it('never prints a secret unmasked, in any format, from any source', () => {
    const body = ALL_FAKES.map((v, i) => `value_${i} = "${v}"`).join('\n');
    const d = repo({ 'all.txt': `${body}\n` });
    git(d, 'add', '.');
    git(d, 'commit', '-q', '-m', 'fakes');
    for (const format of ['text', 'json', 'sarif']) {
      assert.equal(scan(['--format', format, '.'], d).status, 1);
      assert.equal(scan(['--format', format, '--git-history'], d).status, 1);
      assert.equal(scan(['--format', format, '-'], d, body).status, 1);
    }
    const everything = outputs.join('\n');
    for (const value of ALL_FAKES) {
      const secret = value.replace('https://hooks.slack.com/services/', ''); // the webhook's host is public
      // nothing past the masked head (at most 8 characters) may appear
      for (let i = 8; i + 12 <= secret.length; i += 6) {
        assert.ok(!everything.includes(secret.slice(i, i + 12)), `part of a secret printed: ${secret.slice(0, 8)}…`);
      }
    }
  });
});
