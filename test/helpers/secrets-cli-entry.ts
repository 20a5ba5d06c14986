/**
 * Test-only stand-in for `keywarden secrets …` while src/cli/main.ts does not dispatch it yet:
 * the same flags and the same error-to-exit-status mapping as main.ts, nothing else.
 * Run as `node dist/test/helpers/secrets-cli-entry.js secrets encrypt --file F --name N --key REF`.
 */
import { parseArgs } from 'node:util';
import { secretsCommand } from '../../src/cli/commands/secrets.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from '../../src/cli/output.js';
import { SecretError } from '../../src/secrets/types.js';

try {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    strict: true,
    options: {
      file: { type: 'string' },
      name: { type: 'string' },
      key: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const [command, action, ...rest] = positionals;
  if (command !== 'secrets') throw new CliError('usage: keywarden secrets encrypt|gen-key …', EXIT_USAGE);
  process.exitCode = await secretsCommand(action, rest, {
    json: values.json ?? false,
    ...(values.file !== undefined ? { file: values.file } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
    ...(values.key !== undefined ? { key: values.key } : {}),
  });
} catch (err) {
  process.stderr.write(`keywarden: ${(err as Error).message}\n`);
  const code = (err as { code?: string }).code;
  process.exitCode = err instanceof CliError ? err.exitCode
    : err instanceof SecretError ? EXIT_FAILURE
      : code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ? EXIT_USAGE : EXIT_FAILURE;
}
