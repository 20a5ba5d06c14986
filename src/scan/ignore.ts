/**
 * `.keywardenignore`: silences known false positives without silencing a rule.
 *
 * One entry a line; `#` starts a comment.
 *   sha256:0123456789abcdef      a fingerprint (as printed by `keywarden scan`): that secret, anywhere
 *   test/fixtures/detect/**      a path glob, relative to the ignore file's directory
 *   *.snap                       a glob without `/` matches the file name in any directory
 *   docs/                        a trailing `/` ignores everything under that directory
 * Globs: `*` any characters but `/`, `**` any characters, `?` one character.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import type { ScanFinding } from './types.js';

export const IGNORE_FILE = '.keywardenignore';

export interface IgnoreList {
  fingerprints: Set<string>;
  /** globs, each with the directory it is relative to */
  globs: Array<{ base: string; pattern: string; re: RegExp }>;
  /** files that were read */
  sources: string[];
}

const FINGERPRINT = /^sha256:[0-9a-f]{16}$/;

export function globToRegExp(glob: string): RegExp {
  let g = glob.trim();
  const anchored = g.startsWith('/') || g.replace(/\/$/, '').includes('/');
  if (g.startsWith('/')) g = g.slice(1);
  if (g.endsWith('/')) g += '**';
  let out = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i] as string;
    if (c === '*') {
      if (g[i + 1] === '*') {
        i++;
        if (g[i + 1] === '/') {
          i++;
          out += '(?:.*/)?';
        } else out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(anchored ? `^${out}(?:/.*)?$` : `(?:^|/)${out}(?:/.*)?$`);
}

export function emptyIgnoreList(): IgnoreList {
  return { fingerprints: new Set(), globs: [], sources: [] };
}

/** Adds the entries of one ignore file (globs relative to its directory). Missing files add nothing. */
export function loadIgnoreFile(list: IgnoreList, path: string): IgnoreList {
  const abs = resolve(path);
  if (!existsSync(abs) || list.sources.includes(abs)) return list;
  list.sources.push(abs);
  parseIgnore(list, readFileSync(abs, 'utf8'), dirname(abs));
  return list;
}

export function parseIgnore(list: IgnoreList, text: string, base: string): IgnoreList {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    if (FINGERPRINT.test(line)) list.fingerprints.add(line);
    else list.globs.push({ base, pattern: line, re: globToRegExp(line) });
  }
  return list;
}

const toPosix = (p: string) => (sep === '/' ? p : p.split(sep).join('/'));

/** True when the path (absolute, or relative to cwd) is under an ignore glob. */
export function pathIgnored(list: IgnoreList, path: string): boolean {
  if (list.globs.length === 0) return false;
  const abs = resolve(path);
  for (const g of list.globs) {
    const rel = toPosix(relative(g.base, abs));
    if (rel.startsWith('../') || rel === '..') continue;
    if (g.re.test(rel)) return true;
  }
  return false;
}

/** True when the finding is silenced: by its fingerprint, or by a glob over its file. */
export function findingIgnored(list: IgnoreList, f: ScanFinding, absPath?: string): boolean {
  if (list.fingerprints.has(f.fingerprint)) return true;
  return absPath !== undefined && pathIgnored(list, absPath);
}
