/**
 * Where `keywarden scan` reads text from: files, a stream (stdin, for CI logs), and git diffs
 * (a repository's whole history, or the staged changes for the pre-commit hook).
 *
 * Streams are scanned in blocks of whole lines (about 1 MB each), so memory stays flat however
 * long the log; a block is never cut just after a `-----BEGIN` line, so a private key that spans
 * lines is seen whole. Diffs are scanned hunk by hunk, over the added lines only.
 */
import { spawn } from 'node:child_process';
import { createReadStream, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { findSecrets } from '../detect/detector.js';
import type { ScanFinding } from './types.js';

export type Emit = (finding: ScanFinding) => void;

const BLOCK = 1 << 20;
/** files up to this size are read whole; longer ones are streamed in blocks */
const WHOLE_FILE_LIMIT = 16 << 20;

/** Scans one block of text whose first line is `firstLine` of `file`. */
export function scanBlock(text: string, file: string, firstLine: number, emit: Emit, commit?: string): number {
  const found = findSecrets(text);
  for (const f of found) {
    const lineEnd = text.indexOf('\n', f.start);
    const sameLineEnd = lineEnd === -1 || lineEnd >= f.end;
    emit({
      ruleId: f.ruleId,
      title: f.title,
      file,
      line: firstLine + f.line - 1,
      column: f.column,
      ...(sameLineEnd ? { endColumn: f.column + (f.end - f.start) } : {}),
      ...(commit !== undefined ? { commit } : {}),
      masked: f.masked,
      fingerprint: f.fingerprint,
    });
  }
  return found.length;
}

function countNewlines(text: string, end = text.length): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Where to cut a buffer so that the part before is whole lines, and no `-----BEGIN` block is split. */
function cutPoint(buf: string): number {
  let cut = buf.lastIndexOf('\n') + 1;
  if (cut === 0) {
    // one very long line: cut at whitespace (or anywhere) near the end, keeping tokens whole
    const ws = buf.search(/\s\S*$/);
    cut = ws > 0 ? ws + 1 : buf.length - 4096;
  }
  // the last `-----BEGIN` in the final 32 KB before the cut (a forward search: lastIndexOf is slow)
  let begin = -1;
  for (let i = buf.indexOf('-----BEGIN', Math.max(0, cut - 32 * 1024)); i !== -1 && i < cut; i = buf.indexOf('-----BEGIN', i + 1)) begin = i;
  if (begin !== -1) {
    const lineStart = buf.lastIndexOf('\n', begin) + 1;
    if (lineStart > 0) cut = lineStart;
  }
  return cut;
}

/** Scans a stream of text (stdin, a large file) in blocks of whole lines; memory stays flat. Resolves to the bytes read. */
export async function scanStream(input: Readable, file: string, emit: Emit): Promise<number> {
  const decoder = new StringDecoder('utf8');
  let buf = '';
  let line = 1;
  let bytes = 0;
  const flush = (final: boolean) => {
    while (buf.length >= BLOCK || (final && buf.length > 0)) {
      const cut = buf.length < BLOCK ? buf.length : cutPoint(buf);
      const block = buf.slice(0, cut);
      buf = buf.slice(cut);
      scanBlock(block, file, line, emit);
      line += countNewlines(block);
    }
  };
  for await (const chunk of input) {
    const data = chunk as Buffer | string;
    if (typeof data === 'string') {
      bytes += Buffer.byteLength(data);
      buf += data;
    } else {
      bytes += data.length;
      buf += decoder.write(data);
    }
    if (buf.length >= BLOCK) flush(false);
  }
  buf += decoder.end();
  flush(true);
  return bytes;
}

export interface FileScanResult {
  bytes: number;
  binary: boolean;
}

/** Scans one file (read whole when small, streamed when large). Files with a NUL byte in their first 8 KB are binary and skipped. */
export async function scanFile(abs: string, display: string, emit: Emit): Promise<FileScanResult> {
  const fd = openSync(abs, 'r');
  let size: number;
  try {
    size = fstatSync(fd).size;
    const headLen = Math.min(size, 8192);
    const head = Buffer.allocUnsafe(headLen);
    const got = readSync(fd, head, 0, headLen, 0);
    if (head.subarray(0, got).includes(0)) return { bytes: size, binary: true };
    if (size <= WHOLE_FILE_LIMIT) {
      const all = Buffer.allocUnsafe(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, all, off, size - off, off);
        if (n === 0) break;
        off += n;
      }
      scanBlock(all.toString('utf8', 0, off), display, 1, emit);
      return { bytes: off, binary: false };
    }
  } finally {
    closeSync(fd);
  }
  return { bytes: await scanStream(createReadStream(abs), display, emit), binary: false };
}

/**
 * Runs `git` with the given arguments and scans the added lines of the unified diff it prints
 * (`git log -p …` or `git diff --cached …`). Resolves to the bytes of diff read.
 */
export async function scanGitDiff(cwd: string, args: readonly string[], emit: Emit): Promise<{ bytes: number; files: number }> {
  const child = spawn('git', ['-c', 'core.quotePath=false', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<number>((resolveExit, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolveExit(code ?? 1));
  });
  const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
  let commit: string | undefined;
  let file: string | undefined;
  let oldLeft = 0;
  let newLeft = 0;
  let nextNewLine = 0;
  let block: string[] = [];
  let blockStart = 0;
  let blockLen = 0;
  let bytes = 0;
  const files = new Set<string>();
  const flushBlock = () => {
    if (block.length > 0 && file !== undefined) scanBlock(block.join('\n'), file, blockStart, emit, commit);
    block = [];
    blockLen = 0;
  };
  const endOfHunk = () => {
    if (oldLeft <= 0 && newLeft <= 0) flushBlock();
  };
  for await (const line of rl) {
    bytes += line.length + 1;
    const c = line.charCodeAt(0);
    if (oldLeft > 0 || newLeft > 0) {
      if (c === 43 /* + added */) {
        if (block.length === 0 || blockLen > BLOCK) {
          flushBlock();
          blockStart = nextNewLine;
        }
        block.push(line.slice(1));
        blockLen += line.length;
        nextNewLine++;
        newLeft--;
        endOfHunk();
        continue;
      }
      if (c === 45 /* - removed */) {
        oldLeft--;
        endOfHunk();
        continue;
      }
      if (c === 32 /* context */) {
        flushBlock();
        oldLeft--;
        newLeft--;
        nextNewLine++;
        endOfHunk();
        continue;
      }
      if (c === 92 /* \ No newline at end of file */) continue;
      // the hunk ended sooner than its header said: read the line as a header
      flushBlock();
      oldLeft = 0;
      newLeft = 0;
    }
    if (line.startsWith('commit ') && /^commit [0-9a-f]{40}/.test(line)) {
      commit = line.slice(7, 47);
      file = undefined;
    } else if (line.startsWith('diff --git ')) {
      file = undefined;
    } else if (line.startsWith('+++ ')) {
      const target = line.slice(4);
      file = target === '/dev/null' ? undefined : target.replace(/^b\//, '');
      if (file !== undefined) files.add(`${commit ?? ''}:${file}`);
    } else if (line.startsWith('@@ ')) {
      const m = /^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
      if (m) {
        oldLeft = m[1] === undefined ? 1 : Number(m[1]);
        nextNewLine = Number(m[2]);
        newLeft = m[3] === undefined ? 1 : Number(m[3]);
        block = [];
        blockLen = 0;
      }
    }
  }
  flushBlock();
  const code = await exited;
  if (code !== 0) throw new Error(`git ${args[0]} failed: ${stderr.trim().split('\n')[0] ?? `exit ${code}`}`);
  return { bytes, files: files.size };
}

/** Every commit of every ref: the lines each one added. */
export function scanGitHistory(repo: string, emit: Emit): Promise<{ bytes: number; files: number }> {
  return scanGitDiff(repo, ['log', '-p', '--all', '-U0', '--no-color', '--no-ext-diff', '--no-textconv', '--format=commit %H'], emit);
}

/** The staged changes (what the next commit would add). */
export function scanGitStaged(repo: string, emit: Emit): Promise<{ bytes: number; files: number }> {
  return scanGitDiff(repo, ['diff', '--cached', '-U0', '--no-color', '--no-ext-diff', '--no-textconv'], emit);
}
