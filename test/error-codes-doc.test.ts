import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors/codes.js';

describe('docs/errors.md', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, string>();
  for (const line of doc.split('\n')) {
    const match = /^\| `([a-z_]+)` \| ([0-9 /]+) \|/.exec(line);
    if (match) rows.set(match[1] as string, match[2] as string);
  }

  it('documents every error code with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const documented = rows.get(code);
      assert.ok(documented !== undefined, `docs/errors.md does not document ${code}`);
      assert.ok(documented.split('/').map((s) => Number(s.trim())).includes(status), `${code}: documented status ${documented}, actual ${status}`);
    }
  });

  it('documents no code that does not exist', () => {
    for (const code of rows.keys()) assert.ok(Object.hasOwn(ERROR_CODES, code), `docs/errors.md documents unknown code ${code}`);
  });
});
