import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { createEncFileSource, encryptSecretsFile, generateEncKey, parseEncKey, type EncFileDocument } from '../src/secrets/backends/enc-file.js';
import { secretsCommand } from '../src/cli/commands/secrets.js';
import { createSecretResolver } from '../src/secrets/resolver.js';
import { createEnvSource } from '../src/secrets/env-source.js';
import { createFileSource } from '../src/secrets/file-source.js';
import { SecretError, type SecretFailure } from '../src/secrets/types.js';
import { CliError } from '../src/cli/output.js';
import { CLI_BIN, cliEnv } from './helpers/cli-process.js';

// Plainly fake secret values: they unlock nothing, anywhere.
const FAKE_OPENAI_KEY = 'sk-fake-TEST-ONLY-enc-file-openai-key-00000000000'; // fake, TEST ONLY
const FAKE_OPENAI_KEY_2 = 'sk-fake-TEST-ONLY-enc-file-openai-rotated-0000001'; // fake, TEST ONLY
const FAKE_ANTHROPIC_KEY = 'sk-ant-fake-TEST-ONLY-enc-file-anthropic-0000000'; // fake, TEST ONLY
const FAKE_ADMIN_TOKEN = 'fake-admin-token-TEST-ONLY-enc-file-0000000000'; // fake, TEST ONLY

// `keywarden secrets …` through bin/keywarden.js once src/cli/main.ts dispatches it, else through
// the test-only entry point with the same flags
const MAIN_JS = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const WIRED = existsSync(MAIN_JS) && readFileSync(MAIN_JS, 'utf8').includes('secretsCommand');
const ENTRY = WIRED ? CLI_BIN : fileURLToPath(new URL('./helpers/secrets-cli-entry.js', import.meta.url));

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs `keywarden secrets ARGS…` with `stdin` piped in (the only way a value may arrive). */
function runSecrets(args: readonly string[], stdin: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ENTRY, 'secrets', ...args], { cwd: dir, env: cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`keywarden secrets ${args.join(' ')} did not finish\nstderr: ${stderr}`));
    }, 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // the command may exit before reading stdin
    child.stdin.end(stdin);
  });
}

let dir: string;
let key: string;
let keyFile: string;
const keyRef = () => `file:${keyFile}`;
const errorsSeen: unknown[] = [];
const forbidden = () => [FAKE_OPENAI_KEY, FAKE_OPENAI_KEY_2, FAKE_ANTHROPIC_KEY, FAKE_ADMIN_TOKEN, key, Buffer.from(key, 'base64').toString('hex')];

function assertNoSecretsIn(text: string): void {
  for (const secret of forbidden()) assert.ok(!text.includes(secret), `leaks a secret: ${text}`);
}

async function rejectsWith(promise: Promise<unknown>, reason: SecretFailure, message?: RegExp): Promise<SecretError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SecretError, `expected a SecretError, got ${inspect(err)}`);
    assert.equal(err.reason, reason, `reason of: ${err.message}`);
    if (message) assert.match(err.message, message);
    assertNoSecretsIn(`${String(err)}\n${err.stack ?? ''}\n${inspect(err)}`);
    errorsSeen.push(err);
    return err;
  }
  assert.fail(`expected a SecretError with reason ${reason}`);
}

const readDoc = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as EncFileDocument;
const writeDoc = (path: string, doc: unknown) => {
  writeFileSync(path, JSON.stringify(doc));
  chmodSync(path, 0o600);
};
const mode = (path: string) => statSync(path).mode & 0o777;
let fileCount = 0;
const freshPath = () => join(dir, `secrets-${++fileCount}.enc.json`);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kw-enc-file-'));
  keyFile = join(dir, 'enc.key');
  const made = await runSecrets(['gen-key', '--file', keyFile], '');
  assert.equal(made.code, 0, made.stderr);
  key = readFileSync(keyFile, 'utf8').trim();
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('enc-file: keywarden secrets gen-key', () => {
  it('prints a fresh base64 key of 32 bytes each time', async () => {
    const a = await runSecrets(['gen-key'], '');
    const b = await runSecrets(['gen-key'], '');
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /^[A-Za-z0-9+/]{43}=\n$/);
    assert.equal(Buffer.from(a.stdout.trim(), 'base64').length, 32);
    assert.notEqual(a.stdout, b.stdout);
  });

  it('writes the key to a new file only its owner can read, and prints its file: reference', async () => {
    assert.equal(mode(keyFile), 0o600);
    assert.equal(parseEncKey(key).length, 32);
    const path = join(dir, 'another.key');
    const run = await runSecrets(['gen-key', '--file', path], '');
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.includes(`reference: file:${path}`));
    assert.ok(!run.stdout.includes(readFileSync(path, 'utf8').trim()), 'the key itself is not printed');
    const loaded = await createFileSource().load(path); // passes file:'s permission rule
    assert.equal(parseEncKey(loaded.value).length, 32);
  });

  it('never overwrites an existing key file', async () => {
    const run = await runSecrets(['gen-key', '--file', keyFile], '');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /already exists/);
    assert.equal(readFileSync(keyFile, 'utf8').trim(), key);
  });
});

describe('enc-file: keywarden secrets encrypt', () => {
  it('encrypts the value read from stdin into a 0600 file, printing name and version but never the value', async () => {
    const path = freshPath();
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], `${FAKE_OPENAI_KEY}\n`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /encrypted entry openai \(version 1\)/);
    assert.ok(run.stdout.includes(`reference: enc-file:${path}#openai`));
    assertNoSecretsIn(run.stdout + run.stderr);
    assert.equal(mode(path), 0o600);
    const text = readFileSync(path, 'utf8');
    assertNoSecretsIn(text);
    const doc = readDoc(path);
    assert.equal(doc.keywarden_enc, 1);
    const entry = doc.entries['openai'];
    assert.ok(entry);
    assert.equal(Buffer.from(entry.iv, 'base64').length, 12);
    assert.equal(Buffer.from(entry.tag, 'base64').length, 16);
    assert.equal(entry.version, '1');
    assert.deepEqual(await createEncFileSource({ key }).load(`${path}#openai`), { value: FAKE_OPENAI_KEY, version: 'v1' });
  });

  it('updates an entry with a new version and a fresh IV, keeping the other entries', async () => {
    const path = freshPath();
    assert.equal((await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], FAKE_OPENAI_KEY)).code, 0);
    assert.equal((await runSecrets(['encrypt', '--file', path, '--name', 'anthropic', '--key', keyRef()], FAKE_ANTHROPIC_KEY)).code, 0);
    const firstIv = readDoc(path).entries['openai']?.iv;
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef(), '--json'], FAKE_OPENAI_KEY_2);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { file: path, name: 'openai', version: '2', reference: `enc-file:${path}#openai` });
    assert.notEqual(readDoc(path).entries['openai']?.iv, firstIv);
    const source = createEncFileSource({ key });
    assert.deepEqual(await source.load(`${path}#openai`), { value: FAKE_OPENAI_KEY_2, version: 'v2' });
    assert.deepEqual(await source.load(`${path}#anthropic`), { value: FAKE_ANTHROPIC_KEY, version: 'v1' });
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file is left behind');
    assert.equal(mode(path), 0o600);
  });

  it('takes the key from an env: reference too', async () => {
    const path = freshPath();
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'admin', '--key', 'env:KW_ENC_TEST_KEY'], FAKE_ADMIN_TOKEN, { KW_ENC_TEST_KEY: key });
    assert.equal(run.code, 0, run.stderr);
    assert.equal((await createEncFileSource({ key }).load(`${path}#admin`)).value, FAKE_ADMIN_TOKEN);
  });

  it('refuses a value given on the command line, without echoing it or writing the file', async () => {
    const path = freshPath();
    const run = await runSecrets(['encrypt', FAKE_OPENAI_KEY, '--file', path, '--name', 'openai', '--key', keyRef()], '');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /stdin/);
    assertNoSecretsIn(run.stdout + run.stderr);
    assert.equal(existsSync(path), false);
  });

  it('refuses a literal key in --key, without echoing it', async () => {
    const path = freshPath();
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', key], FAKE_OPENAI_KEY);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /secret reference/);
    assertNoSecretsIn(run.stdout + run.stderr);
    assert.equal(existsSync(path), false);
  });

  it('refuses an empty stdin', async () => {
    const path = freshPath();
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], '  \n');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /no secret value/);
    assert.equal(existsSync(path), false);
  });

  it('refuses missing flags and a bad entry name', async () => {
    assert.equal((await runSecrets(['encrypt', '--file', freshPath(), '--key', keyRef()], FAKE_OPENAI_KEY)).code, 2);
    const bad = await runSecrets(['encrypt', '--file', freshPath(), '--name', 'open ai/../x', '--key', keyRef()], FAKE_OPENAI_KEY);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /entry name/);
  });

  it('refuses to add an entry with a key other than the file\'s, leaving the file as it was', async () => {
    const path = freshPath();
    assert.equal((await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], FAKE_OPENAI_KEY)).code, 0);
    const before = readFileSync(path, 'utf8');
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'anthropic', '--key', 'env:KW_OTHER_KEY'], FAKE_ANTHROPIC_KEY, { KW_OTHER_KEY: generateEncKey() });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot be decrypted with this key/);
    assertNoSecretsIn(run.stdout + run.stderr);
    assert.equal(readFileSync(path, 'utf8'), before);
  });

  it('refuses to update a file other users can read', async () => {
    const path = freshPath();
    assert.equal((await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], FAKE_OPENAI_KEY)).code, 0);
    chmodSync(path, 0o644);
    const run = await runSecrets(['encrypt', '--file', path, '--name', 'openai', '--key', keyRef()], FAKE_OPENAI_KEY_2);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /readable by other users/);
  });

  it('fails when the key reference cannot be loaded, naming the reference only', async () => {
    const run = await runSecrets(['encrypt', '--file', freshPath(), '--name', 'openai', '--key', 'env:KW_ENC_TEST_MISSING'], FAKE_OPENAI_KEY);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /env:KW_ENC_TEST_MISSING/);
  });

  it('can be called in-process as secretsCommand(action, args, opts) with the value on a stream', async () => {
    const path = freshPath();
    let out = '';
    const code = await secretsCommand('encrypt', [], {
      file: path, name: 'openai', key: keyRef(),
      stdin: Readable.from([Buffer.from(`${FAKE_OPENAI_KEY}\n`)]),
      stdout: { write: (t: string) => { out += t; } },
    });
    assert.equal(code, 0);
    assert.match(out, /version 1/);
    assertNoSecretsIn(out);
    assert.equal((await createEncFileSource({ key }).load(`${path}#openai`)).value, FAKE_OPENAI_KEY);
    await assert.rejects(secretsCommand('encrypt', [FAKE_OPENAI_KEY], { file: path, name: 'x', key: keyRef() }), (err: unknown) => {
      assert.ok(err instanceof CliError);
      assertNoSecretsIn(err.message);
      return true;
    });
  });
});

describe('enc-file: reading entries', () => {
  let path: string;
  before(async () => {
    path = freshPath();
    await encryptSecretsFile({ path, name: 'openai', value: FAKE_OPENAI_KEY, key });
    await encryptSecretsFile({ path, name: 'anthropic', value: FAKE_ANTHROPIC_KEY, key });
  });

  it('resolves enc-file: references through the resolver', async () => {
    const resolver = createSecretResolver([createEnvSource(), createFileSource(), createEncFileSource({ key })]);
    assert.deepEqual(await resolver.resolve(`enc-file:${path}#anthropic`), { value: FAKE_ANTHROPIC_KEY, version: 'v1' });
  });

  it('accepts the same key written as hex', async () => {
    const hex = parseEncKey(key).toString('hex');
    assert.equal((await createEncFileSource({ key: hex }).load(`${path}#openai`)).value, FAKE_OPENAI_KEY);
  });

  it('refuses a wrong key as invalid ("cannot be decrypted")', async () => {
    await rejectsWith(createEncFileSource({ key: generateEncKey() }).load(`${path}#openai`), 'invalid', /cannot be decrypted/);
  });

  it('refuses a tampered ciphertext, tag or IV as invalid', async () => {
    const source = createEncFileSource({ key });
    for (const field of ['ct', 'tag', 'iv'] as const) {
      const copy = freshPath();
      const doc = readDoc(path);
      const entry = doc.entries['openai'];
      assert.ok(entry);
      const bytes = Buffer.from(entry[field], 'base64');
      bytes[0] = (bytes[0] ?? 0) ^ 0x01;
      entry[field] = bytes.toString('base64');
      writeDoc(copy, doc);
      await rejectsWith(source.load(`${copy}#openai`), 'invalid', /cannot be decrypted/);
      assert.equal((await source.load(`${copy}#anthropic`)).value, FAKE_ANTHROPIC_KEY, 'the untouched entry still loads');
    }
  });

  it('refuses entries swapped between names (the name is authenticated)', async () => {
    const copy = freshPath();
    const doc = readDoc(path);
    const { openai, anthropic } = doc.entries;
    assert.ok(openai && anthropic);
    doc.entries = { openai: anthropic, anthropic: openai };
    writeDoc(copy, doc);
    const source = createEncFileSource({ key });
    await rejectsWith(source.load(`${copy}#openai`), 'invalid', /cannot be decrypted/);
    await rejectsWith(source.load(`${copy}#anthropic`), 'invalid', /cannot be decrypted/);
  });

  it('refuses an entry whose version label was changed (the version is authenticated)', async () => {
    const copy = freshPath();
    const doc = readDoc(path);
    const entry = doc.entries['openai'];
    assert.ok(entry);
    entry.version = '7';
    writeDoc(copy, doc);
    await rejectsWith(createEncFileSource({ key }).load(`${copy}#openai`), 'invalid', /cannot be decrypted/);
  });

  it('answers not_found for an unknown name, including names of object properties', async () => {
    const source = createEncFileSource({ key });
    await rejectsWith(source.load(`${path}#mistral`), 'not_found', /no entry "mistral"/);
    await rejectsWith(source.load(`${path}#constructor`), 'not_found');
    await rejectsWith(source.load(`${path}#__proto__`), 'not_found');
  });

  it('answers not_found for a file that does not exist', async () => {
    await rejectsWith(createEncFileSource({ key }).load(`${join(dir, 'nope.enc.json')}#openai`), 'not_found');
  });

  it('refuses a file other users can read, or write', async () => {
    const copy = freshPath();
    writeDoc(copy, readDoc(path));
    chmodSync(copy, 0o644);
    await rejectsWith(createEncFileSource({ key }).load(`${copy}#openai`), 'invalid', /readable by other users/);
    chmodSync(copy, 0o620);
    await rejectsWith(createEncFileSource({ key }).load(`${copy}#openai`), 'invalid', /writable by other users/);
  });

  it('refuses files that are not keywarden encrypted secrets files', async () => {
    const source = createEncFileSource({ key });
    const cases: unknown[] = [
      'not json',
      { entries: {} },
      { keywarden_enc: 2, entries: {} },
      { keywarden_enc: 1, entries: [] },
      { keywarden_enc: 1, entries: { openai: { iv: 'AAAA', tag: 'AAAA', ct: 'AAAA', version: 1 } } },
    ];
    for (const content of cases) {
      const copy = freshPath();
      writeFileSync(copy, typeof content === 'string' ? content : JSON.stringify(content));
      chmodSync(copy, 0o600);
      await rejectsWith(source.load(`${copy}#openai`), 'invalid');
    }
  });

  it('refuses a key that is not 32 bytes of base64 or hex, without echoing it', () => {
    for (const bad of ['', 'short', Buffer.alloc(16, 7).toString('base64'), 'z'.repeat(64), `${key}x`]) {
      assert.throws(() => createEncFileSource({ key: bad }), (err: unknown) => {
        assert.ok(err instanceof SecretError);
        assert.equal(err.reason, 'invalid');
        if (bad.length > 4) assert.ok(!err.message.includes(bad));
        errorsSeen.push(err);
        return true;
      });
    }
  });

  it('no error raised in this file carries a secret value or the key', () => {
    assert.ok(errorsSeen.length >= 15, `saw ${errorsSeen.length} errors`);
    for (const err of errorsSeen) assertNoSecretsIn(`${String(err)}\n${(err as Error).stack ?? ''}\n${inspect(err)}`);
  });
});
