// Runs `keywarden scan` through scanCommand directly (the same code path the CLI dispatches to);
// used by test/scan-cli.test.ts when bin/keywarden.js does not route `scan` yet.
import { scanCommand } from '../../src/cli/commands/scan.js';

process.exitCode = await scanCommand(process.argv.slice(2));
