/**
 * `keywarden scan`: finds secrets in files, in a repository's history, in staged changes or in
 * a log on stdin, with the detector library (src/detect/). Exits 1 when anything is found, 0 when
 * clean, 2 on a usage error. It never sends a key anywhere: whether a found key is live is not
 * checked (there is no option for it).
 *
 *   keywarden scan [PATH...]                 files and directories (default .), .gitignore respected
 *   keywarden scan -                         stdin, line by line with flat memory (CI logs)
 *   keywarden scan --git-history [PATH]      every commit of every ref of the repository at PATH
 *   keywarden scan --staged [PATH]           the staged changes (what the pre-commit hook runs)
 *   keywarden scan --install-hook [--force] [PATH]   install the git pre-commit hook
 *   --format text|json|sarif                 output (default text), on stdout
 *   --ignore-file FILE                       use FILE instead of the .keywardenignore files found
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatJson, formatSarif, formatText, SCAN_FORMATS, type ScanFormat } from '../../scan/format.js';
import { installPreCommitHook } from '../../scan/hook.js';
import { emptyIgnoreList, findingIgnored, IGNORE_FILE, loadIgnoreFile, pathIgnored, type IgnoreList } from '../../scan/ignore.js';
import { scanFile, scanGitHistory, scanGitStaged, scanStream, type Emit } from '../../scan/sources.js';
import { STDIN_NAME, type ScanFinding, type ScanStats } from '../../scan/types.js';
import { gitTopLevel, listFiles } from '../../scan/walk.js';

export const SCAN_USAGE = `usage: keywarden scan [PATH...|-] [--format text|json|sarif] [--git-history | --staged] [--ignore-file FILE]
       keywarden scan --install-hook [--force] [PATH]

  PATH...          files and directories to scan (default .); .gitignore is respected
  -                scan standard input (e.g. a CI log: ... | keywarden scan -)
  --git-history    scan every commit of every ref of the repository at PATH (default .)
  --staged         scan the staged changes of the repository at PATH (the pre-commit hook)
  --format F       text (default), json or sarif (SARIF 2.1.0)
  --ignore-file F  read fingerprints and path globs from F instead of .keywardenignore
  --install-hook   install a git pre-commit hook that runs \`keywarden scan --staged\`
  --force          with --install-hook: replace a pre-commit hook that is not keywarden's

Exit status: 0 clean, 1 secrets found, 2 usage error. Secrets are only ever printed masked.
Keys are never sent anywhere to check whether they are live.
`;

export interface ScanCommandOptions {
  /** where output goes (default process.stdout) */
  stdout?: { write(chunk: string): unknown };
  /** where messages go (default process.stderr) */
  stderr?: { write(chunk: string): unknown };
  /** standard input, for `scan -` (default process.stdin) */
  stdin?: Readable;
  /** the working directory paths are relative to (default process.cwd()) */
  cwd?: string;
}

const EXIT_CLEAN = 0;
const EXIT_FOUND = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

function version(): string {
  try {
    const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../package.json');
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

const toPosix = (p: string) => (sep === '/' ? p : p.split(sep).join('/'));

export async function scanCommand(args: readonly string[], opts: ScanCommandOptions = {}): Promise<number> {
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const cwd = resolve(opts.cwd ?? process.cwd());
  try {
    return await run(args, opts, cwd, stdout, stderr);
  } catch (err) {
    if (err instanceof UsageError) {
      stderr.write(`keywarden scan: ${err.message}\n`);
      return EXIT_USAGE;
    }
    const code = (err as { code?: string }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      stderr.write(`keywarden scan: ${(err as Error).message}\n${SCAN_USAGE}`);
      return EXIT_USAGE;
    }
    stderr.write(`keywarden scan: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
}

async function run(
  args: readonly string[],
  opts: ScanCommandOptions,
  cwd: string,
  stdout: { write(chunk: string): unknown },
  stderr: { write(chunk: string): unknown },
): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    strict: true,
    options: {
      format: { type: 'string', default: 'text' },
      'git-history': { type: 'boolean', default: false },
      staged: { type: 'boolean', default: false },
      'ignore-file': { type: 'string', multiple: true },
      'install-hook': { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    stdout.write(SCAN_USAGE);
    return EXIT_CLEAN;
  }
  const format = values.format as ScanFormat;
  if (!SCAN_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${SCAN_FORMATS.join(', ')}`);
  const history = values['git-history'] ?? false;
  const staged = values.staged ?? false;
  const modes = [history, staged, values['install-hook'] ?? false].filter(Boolean).length;
  if (modes > 1) throw new UsageError('give only one of --git-history, --staged and --install-hook');
  const stdinMode = positionals.includes('-');
  if (stdinMode && (positionals.length > 1 || modes > 0)) throw new UsageError('"-" (stdin) is scanned on its own: no other paths, --git-history or --staged');
  if (values.force && !values['install-hook']) throw new UsageError('--force goes with --install-hook');
  const targets = (positionals.length === 0 ? ['.'] : positionals).map((p) => (p === '-' ? p : resolve(cwd, p)));
  for (const t of targets) if (t !== '-' && !existsSync(t)) throw new UsageError(`no such file or directory: ${relative(cwd, t) || t}`);
  if (modes > 0 && targets.length > 1) throw new UsageError('--git-history, --staged and --install-hook take one repository path');

  if (values['install-hook']) {
    const result = installPreCommitHook(targets[0] as string, { force: values.force ?? false });
    if (!result.ok) throw new UsageError(result.reason);
    stderr.write(`keywarden scan: ${result.replaced ? 'replaced' : 'installed'} the pre-commit hook at ${result.path}\n`);
    return EXIT_CLEAN;
  }

  // the ignore list: --ignore-file, else .keywardenignore in the working directory and at each target's root
  const ignore: IgnoreList = emptyIgnoreList();
  if (values['ignore-file'] && values['ignore-file'].length > 0) {
    for (const f of values['ignore-file']) {
      const abs = resolve(cwd, f);
      if (!existsSync(abs)) throw new UsageError(`no such ignore file: ${f}`);
      loadIgnoreFile(ignore, abs);
    }
  } else {
    loadIgnoreFile(ignore, join(cwd, IGNORE_FILE));
    for (const t of targets) {
      if (t === '-') continue;
      const dir = statSync(t).isDirectory() ? t : dirname(t);
      const top = gitTopLevel(dir);
      if (top !== undefined) loadIgnoreFile(ignore, join(top, IGNORE_FILE));
      loadIgnoreFile(ignore, join(dir, IGNORE_FILE));
    }
  }

  const findings: ScanFinding[] = [];
  const stats: ScanStats = { files: 0, bytes: 0, findings: 0, ignored: 0, skippedBinary: 0 };
  const emitFor = (absOf: (f: ScanFinding) => string | undefined): Emit => (f) => {
    if (findingIgnored(ignore, f, absOf(f))) stats.ignored++;
    else findings.push(f);
  };

  if (stdinMode) {
    stats.bytes = await scanStream(opts.stdin ?? process.stdin, STDIN_NAME, emitFor(() => undefined));
    stats.files = 1;
  } else if (history || staged) {
    const repo = gitTopLevel(targets[0] as string);
    if (repo === undefined) throw new UsageError(`${relative(cwd, targets[0] as string) || '.'} is not in a git repository`);
    const emit = emitFor((f) => join(repo, f.file));
    const r = history ? await scanGitHistory(repo, emit) : await scanGitStaged(repo, emit);
    stats.bytes = r.bytes;
    stats.files = r.files;
  } else {
    for (const t of targets) {
      const files = statSync(t).isDirectory() ? listFiles(t) : [t];
      for (const abs of files) {
        if (pathIgnored(ignore, abs)) continue;
        const display = toPosix(relative(cwd, abs)) || abs;
        try {
          const r = await scanFile(abs, display, emitFor(() => abs));
          if (r.binary) stats.skippedBinary++;
          else {
            stats.files++;
            stats.bytes += r.bytes;
          }
        } catch (err) {
          stderr.write(`keywarden scan: cannot read ${display}: ${(err as Error).message}\n`);
        }
      }
    }
  }

  stats.findings = findings.length;
  if (format === 'json') stdout.write(formatJson(findings, stats));
  else if (format === 'sarif') stdout.write(formatSarif(findings, version()));
  else {
    const text = formatText(findings, stats);
    // the findings on stdout, the summary line on stderr (so `> file` keeps only findings)
    const cut = text.lastIndexOf('keywarden scan:');
    if (cut > 0) stdout.write(text.slice(0, cut));
    stderr.write(text.slice(cut));
  }
  return findings.length > 0 ? EXIT_FOUND : EXIT_CLEAN;
}
