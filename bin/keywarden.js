#!/usr/bin/env -S node --max-semi-space-size=32
// (the flag: a larger young generation, fewer garbage collections under load; see README, Performance)
// The CLI entry point: the compiled TypeScript lives in dist/ (built by `npm run build`).
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('keywarden: not built yet; run `npm run build` first\n');
    process.exit(1);
  }
  throw err;
});
