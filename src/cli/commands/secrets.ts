import { open } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { createSecretResolver, type SecretResolver } from '../../secrets/resolver.js';
import { isSecretReference } from '../../secrets/reference.js';
import { encryptSecretsFile, generateEncKey } from '../../secrets/backends/enc-file.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../output.js';

const MAX_VALUE_BYTES = 64 * 1024;

const USAGE = 'usage: keywarden secrets encrypt --file PATH --name NAME --key REF [--json]   (the value is read from stdin)\n' +
  '       keywarden secrets gen-key [--file PATH] [--json]';

/** A terminal or a pipe: what the value is read from. */
type Input = Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

export interface SecretsCommandOptions {
  /** encrypt: the encrypted secrets file; gen-key: a new file to write the key to (mode 0600). */
  file?: string;
  /** encrypt: the entry name (letters, digits, _ . -). */
  name?: string;
  /** encrypt: a secret reference to the encryption key (`env:NAME`, `file:PATH`), never the key itself. */
  key?: string;
  json?: boolean;
  /** For tests and embedding; default process.stdin / process.stdout / process.stderr / env: and file: sources. */
  stdin?: Input;
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
  resolver?: SecretResolver;
}

/**
 * `keywarden secrets encrypt --file PATH --name NAME --key REF`: reads a secret value from
 * stdin (never from the command line, which other users and shell history can see), and
 * creates or updates that entry of an encrypted secrets file; prints the entry's name,
 * version and reference, never the value.
 *
 * `keywarden secrets gen-key [--file PATH]`: prints a fresh base64 32-byte key, or writes it to
 * a new file with mode 0600 and prints the `file:` reference to it.
 *
 * ```sh
 * keywarden secrets gen-key --file /etc/keywarden/enc.key
 * keywarden secrets encrypt --file /etc/keywarden/secrets.enc.json --name openai \
 *   --key file:/etc/keywarden/enc.key < openai-key.txt
 * ```
 */
export async function secretsCommand(action: string | undefined, args: readonly string[], opts: SecretsCommandOptions): Promise<number> {
  const stdout = opts.stdout ?? process.stdout;
  // never echo positional arguments: someone may have typed the secret there
  if (args.length > 0) throw new CliError(`keywarden secrets ${action === 'encrypt' || action === 'gen-key' ? action : ''} takes no positional arguments; the value is read from stdin, never from the command line\n${USAGE}`, EXIT_USAGE);
  switch (action) {
    case 'encrypt': {
      if (!opts.file || !opts.name || !opts.key) throw new CliError(`secrets encrypt needs --file, --name and --key\n${USAGE}`, EXIT_USAGE);
      // security: a literal key on the command line would sit in process lists and shell history
      if (!isSecretReference(opts.key)) throw new CliError('--key must be a secret reference to the key (env:NAME or file:PATH), not the key itself', EXIT_USAGE);
      const path = resolvePath(opts.file);
      const key = (await (opts.resolver ?? createSecretResolver()).resolve(opts.key)).value;
      const value = await readValue(opts.stdin ?? process.stdin, opts.stderr ?? process.stderr);
      const entry = await encryptSecretsFile({ path, name: opts.name, value, key });
      const reference = `enc-file:${path}#${entry.name}`;
      if (opts.json) stdout.write(`${JSON.stringify({ file: path, name: entry.name, version: entry.version, reference })}\n`);
      else stdout.write(`encrypted entry ${entry.name} (version ${entry.version}) in ${path}\nreference: ${reference}\n`);
      return EXIT_OK;
    }
    case 'gen-key': {
      const key = generateEncKey();
      if (opts.file === undefined) {
        stdout.write(opts.json ? `${JSON.stringify({ key })}\n` : `${key}\n`);
        return EXIT_OK;
      }
      const path = resolvePath(opts.file);
      let handle;
      try {
        handle = await open(path, 'wx', 0o600); // never overwrite a key: entries sealed with it would be lost
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        throw new CliError(code === 'EEXIST' ? `${path} already exists; keys are never overwritten` : `cannot create ${path} (${code})`, EXIT_FAILURE);
      }
      try {
        await handle.chmod(0o600);
        await handle.writeFile(`${key}\n`, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      const reference = `file:${path}`;
      stdout.write(opts.json ? `${JSON.stringify({ file: path, reference })}\n` : `wrote a new key to ${path} (mode 0600)\nreference: ${reference}\n`);
      return EXIT_OK;
    }
    default:
      throw new CliError(USAGE, EXIT_USAGE);
  }
}

/** The secret value: piped stdin, or typed at a terminal with echo off. Surrounding whitespace is dropped. */
async function readValue(stdin: Input, stderr: { write(text: string): unknown }): Promise<string> {
  const raw = stdin.isTTY && typeof stdin.setRawMode === 'function' ? await promptHidden(stdin, stderr) : await readAll(stdin);
  const value = raw.trim();
  if (value === '') throw new CliError('no secret value on stdin (pipe it in: keywarden secrets encrypt … < value.txt)', EXIT_USAGE);
  return value;
}

async function readAll(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_VALUE_BYTES) {
      stdin.destroy();
      throw new CliError('the value on stdin is too large to be a secret (64 KiB at most)', EXIT_USAGE);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from a terminal without echoing it. */
function promptHidden(stdin: Input, stderr: { write(text: string): unknown }): Promise<string> {
  return new Promise((resolve, reject) => {
    let value = '';
    stderr.write('secret value (input hidden, Enter to finish): ');
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish();
        if (ch === '\u0003') return finish(new CliError('cancelled', EXIT_FAILURE));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
        if (value.length > MAX_VALUE_BYTES) return finish(new CliError('the value is too large to be a secret (64 KiB at most)', EXIT_USAGE));
      }
      return undefined;
    };
    stdin.setRawMode?.(true);
    stdin.on('data', onData);
    stdin.resume();
  });
}
