/**
 * The files a directory scan reads: what git would track (`git ls-files --cached --others
 * --exclude-standard`, so `.gitignore` is respected), or, outside a git work tree or without git,
 * a walk that skips `.git` and `node_modules` and honours the directory's own `.gitignore` (simple
 * globs only). Symbolic links are never followed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { globToRegExp } from './ignore.js';

/** The git work tree that holds `dir`, or undefined (not a repository, or no git). */
export function gitTopLevel(dir: string): string | undefined {
  const r = spawnSync('git', ['-C', dir, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' });
  if (r.status !== 0 || typeof r.stdout !== 'string') return undefined;
  const top = r.stdout.trim();
  return top === '' ? undefined : top;
}

/** Absolute paths of the regular files to scan under `dir`. */
export function listFiles(dir: string): string[] {
  const root = resolve(dir);
  if (gitTopLevel(root) !== undefined) {
    const r = spawnSync('git', ['-C', root, '-c', 'core.quotePath=false', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
    });
    if (r.status === 0 && typeof r.stdout === 'string') {
      const out: string[] = [];
      const seen = new Set<string>();
      for (const rel of r.stdout.split('\0')) {
        if (rel === '' || seen.has(rel)) continue;
        seen.add(rel);
        const abs = join(root, rel);
        try {
          if (lstatSync(abs).isFile()) out.push(abs);
        } catch {
          // listed in the index but deleted from the work tree
        }
      }
      return out.sort();
    }
  }
  return walk(root);
}

const ALWAYS_SKIPPED = new Set(['.git', 'node_modules']);

function walk(root: string): string[] {
  const ignores: RegExp[] = [];
  const gitignore = join(root, '.gitignore');
  if (existsSync(gitignore)) {
    for (const raw of readFileSync(gitignore, 'utf8').split(/\r?\n/)) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith('!')) continue;
      ignores.push(globToRegExp(line));
    }
  }
  const out: string[] = [];
  const stack: Array<[string, string]> = [[root, '']];
  while (stack.length > 0) {
    const [abs, rel] = stack.pop() as [string, string];
    let entries;
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (ALWAYS_SKIPPED.has(e.name)) continue;
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (ignores.some((re) => re.test(childRel))) continue;
      const childAbs = join(abs, e.name);
      if (e.isDirectory()) stack.push([childAbs, childRel]);
      else if (e.isFile()) out.push(childAbs);
    }
  }
  return out.sort();
}
