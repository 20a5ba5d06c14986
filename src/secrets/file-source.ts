import { open } from 'node:fs/promises';
import type { SecretSource, SecretValue } from './types.js';
import { SecretError } from './types.js';

const MAX_SECRET_FILE_BYTES = 64 * 1024;

/**
 * `file:PATH`: a secret from a file (a mounted Kubernetes or Docker secret, say).
 * A file that other users can read, or that anyone but its owner can write, is refused:
 * a key in such a file is already exposed.
 */
export function createFileSource(): SecretSource {
  return {
    scheme: 'file',
    async load(path: string): Promise<SecretValue> {
      const ref = `file:${path}`;
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        throw new SecretError(ref, `cannot be read (${code})`, code === 'ENOENT' ? 'not_found' : code === 'EACCES' || code === 'EPERM' ? 'access_denied' : 'unavailable');
      }
      try {
        const stat = await handle.stat();
        if (!stat.isFile()) throw new SecretError(ref, 'is not a regular file');
        // security: refuse world-readable and group/world-writable secret files
        if ((stat.mode & 0o004) !== 0) throw new SecretError(ref, 'is readable by other users (chmod 600 it)');
        if ((stat.mode & 0o022) !== 0) throw new SecretError(ref, 'is writable by other users (chmod 600 it)');
        if (stat.size > MAX_SECRET_FILE_BYTES) throw new SecretError(ref, 'is too large to be a secret');
        const value = (await handle.readFile('utf8')).trim();
        if (value === '') throw new SecretError(ref, 'is empty');
        return { value, version: `mtime:${Math.floor(stat.mtimeMs)}` };
      } finally {
        await handle.close();
      }
    },
  };
}
