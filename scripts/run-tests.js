#!/usr/bin/env node
// Runs every compiled test file under dist/test with node:test. Suites that need PostgreSQL or
// Redis read DATABASE_URL / REDIS_URL and skip themselves (saying so) when those are unset.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const dir = 'dist/test';
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort()
  .map((f) => join(dir, f));
for (const name of ['DATABASE_URL', 'REDIS_URL']) {
  if (!process.env[name]) process.stdout.write(`note: ${name} is not set; suites that need it are skipped\n`);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
