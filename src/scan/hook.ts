/**
 * `keywarden scan --install-hook`: a git pre-commit hook that scans the staged changes and
 * blocks the commit when a secret is found (`git commit --no-verify` skips it, as for any hook).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HOOK_MARKER = '# keywarden pre-commit hook';

/** bin/keywarden.js of this installation (dist/src/scan/hook.js → ../../../bin/keywarden.js). */
export function keywardenBin(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/keywarden.js');
}

export function hookScript(command: string): string {
  return [
    '#!/bin/sh',
    `${HOOK_MARKER} (installed by \`keywarden scan --install-hook\`).`,
    '# Scans the staged changes for secrets and blocks the commit when one is found.',
    '# Silence a false positive with .keywardenignore; skip once with `git commit --no-verify`.',
    `exec ${command} --staged`,
    '',
  ].join('\n');
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export type HookResult = { ok: true; path: string; replaced: boolean } | { ok: false; reason: string };

/** Writes the pre-commit hook into the repository that holds `dir` (honouring core.hooksPath). */
/** `command` is what runs `keywarden scan` (default: this node and this installation's bin/keywarden.js, then `scan`). */
export function installPreCommitHook(dir: string, opts: { force?: boolean; command?: string } = {}): HookResult {
  const r = spawnSync('git', ['-C', dir, 'rev-parse', '--git-path', 'hooks'], { encoding: 'utf8' });
  if (r.status !== 0 || typeof r.stdout !== 'string' || r.stdout.trim() === '') return { ok: false, reason: `${dir} is not in a git repository` };
  const hooksRel = r.stdout.trim();
  const hooksDir = isAbsolute(hooksRel) ? hooksRel : resolve(dir, hooksRel);
  const path = join(hooksDir, 'pre-commit');
  let replaced = false;
  if (existsSync(path)) {
    const current = readFileSync(path, 'utf8');
    if (!current.includes(HOOK_MARKER) && !opts.force) {
      return { ok: false, reason: `${path} already exists and is not keywarden's; pass --force to replace it` };
    }
    replaced = true;
  }
  mkdirSync(hooksDir, { recursive: true });
  const command = opts.command ?? `${shellQuote(process.execPath)} ${shellQuote(keywardenBin())} scan`;
  writeFileSync(path, hookScript(command), { mode: 0o755 });
  chmodSync(path, 0o755);
  return { ok: true, path, replaced };
}
