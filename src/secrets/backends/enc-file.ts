import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SecretSource, SecretValue } from '../types.js';
import { SecretError } from '../types.js';

/** The `keywarden_enc` format version this code reads and writes. */
export const ENC_FILE_FORMAT = 1;

/** One entry of an encrypted secrets file: AES-256-GCM, all binary fields base64. */
export interface EncFileEntry {
  iv: string;
  tag: string;
  ct: string;
  /** A decimal counter, 1 for a new entry, +1 on each update (or a timestamp, written by other tools). */
  version: string;
}

/** `{ "keywarden_enc": 1, "entries": { "<name>": EncFileEntry } }` */
export interface EncFileDocument {
  keywarden_enc: typeof ENC_FILE_FORMAT;
  entries: Record<string, EncFileEntry>;
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_VALUE_BYTES = 64 * 1024;
const ENTRY_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const VERSION = /^[0-9]{1,15}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes an encryption key given as 64 hex digits or as base64 (standard or URL-safe) of
 * exactly 32 bytes. Throws SecretError (reason `invalid`) otherwise; never echoes the text.
 */
export function parseEncKey(text: string): Buffer {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  const std = t.replace(/-/g, '+').replace(/_/g, '/');
  const padded = std.length % 4 === 0 ? std : std + '='.repeat(4 - (std.length % 4));
  if (BASE64.test(padded)) {
    const key = Buffer.from(padded, 'base64');
    if (key.length === KEY_BYTES) return key;
  }
  throw new SecretError('enc-file', 'the key must be 32 bytes, base64 or hex encoded (make one with `keywarden secrets gen-key`)', 'invalid');
}

/** A fresh random 32-byte key, base64. */
export function generateEncKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/**
 * What GCM authenticates besides the ciphertext: the format, the entry's name and its version.
 * Moving an entry under another name, or relabelling its version, makes it undecryptable.
 */
function additionalData(name: string, version: string): Buffer {
  return Buffer.from(`keywarden_enc:${ENC_FILE_FORMAT}\n${name}\n${version}`, 'utf8');
}

function decodeBase64(text: unknown, bytes?: number): Buffer | undefined {
  if (typeof text !== 'string' || !BASE64.test(text)) return undefined;
  const out = Buffer.from(text, 'base64');
  return bytes === undefined || out.length === bytes ? out : undefined;
}

/** Encrypts one value as the entry `name` at `version`. */
export function sealEntry(key: Buffer, name: string, version: string, value: string): EncFileEntry {
  const iv = randomBytes(IV_BYTES); // fresh per entry and per update: never reuse an IV under one key
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(name, version));
  const plain = Buffer.from(value, 'utf8');
  const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  return { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), ct: ct.toString('base64'), version };
}

/** Decrypts the entry `name`; undefined when the key is wrong or anything was altered. */
function openEntry(key: Buffer, name: string, entry: EncFileEntry): string | undefined {
  const iv = decodeBase64(entry.iv, IV_BYTES);
  const tag = decodeBase64(entry.tag, TAG_BYTES);
  const ct = decodeBase64(entry.ct);
  if (!iv || !tag || !ct || ct.length === 0) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData(name, entry.version));
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([decipher.update(ct), decipher.final()]);
    const value = plain.toString('utf8');
    plain.fill(0);
    return value;
  } catch {
    return undefined;
  }
}

/**
 * Reads and checks an encrypted secrets file. The file must be a regular file that other users
 * can neither read nor write (the rule of `file:` secrets). Returns undefined when it does not
 * exist and `missingOk` is set.
 */
async function readDocument(path: string, ref: string, missingOk: boolean): Promise<Map<string, EncFileEntry> | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT' && missingOk) return undefined;
    if (code === 'ENOENT') throw new SecretError(ref, 'file does not exist', 'not_found');
    throw new SecretError(ref, `cannot be read (${code})`, code === 'EACCES' || code === 'EPERM' ? 'access_denied' : 'invalid');
  }
  let text: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new SecretError(ref, 'is not a regular file');
    // security: the same rule as file: secrets — refuse world-readable and group/world-writable files
    if ((stat.mode & 0o004) !== 0) throw new SecretError(ref, 'is readable by other users (chmod 600 it)');
    if ((stat.mode & 0o022) !== 0) throw new SecretError(ref, 'is writable by other users (chmod 600 it)');
    if (stat.size > MAX_FILE_BYTES) throw new SecretError(ref, 'is too large to be an encrypted secrets file');
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SecretError(ref, 'is not a keywarden encrypted secrets file (not JSON)');
  }
  const root = doc as Partial<EncFileDocument> | null;
  if (typeof root !== 'object' || root === null || Array.isArray(root) || !('keywarden_enc' in root)) {
    throw new SecretError(ref, 'is not a keywarden encrypted secrets file');
  }
  if (root.keywarden_enc !== ENC_FILE_FORMAT) throw new SecretError(ref, 'has an unsupported keywarden_enc format version');
  const entries = root.entries;
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) throw new SecretError(ref, 'has no "entries" object');
  // a Map, so names such as "constructor" or "__proto__" are plain data
  const out = new Map<string, EncFileEntry>();
  for (const [name, raw] of Object.entries(entries as Record<string, unknown>)) {
    const e = raw as Partial<EncFileEntry> | null;
    if (!ENTRY_NAME.test(name) || typeof e !== 'object' || e === null || typeof e.iv !== 'string' || typeof e.tag !== 'string' ||
      typeof e.ct !== 'string' || typeof e.version !== 'string' || !VERSION.test(e.version)) {
      throw new SecretError(ref, 'has a malformed entry');
    }
    out.set(name, { iv: e.iv, tag: e.tag, ct: e.ct, version: e.version });
  }
  return out;
}

/**
 * `enc-file:PATH#name`: an entry of a local file encrypted with AES-256-GCM (written by
 * `keywarden secrets encrypt`). The key comes from another reference, loaded by the caller:
 *
 * ```ts
 * const key = (await resolver.resolve('file:/etc/keywarden/enc.key')).value;
 * const sources = [createEnvSource(), createFileSource(), createEncFileSource({ key })];
 * ```
 *
 * A wrong key, an altered entry, or an entry moved under another name is refused with reason
 * `invalid`; an unknown name with `not_found`. The version is the entry's (`v3`).
 */
export function createEncFileSource(options: { key: string }): SecretSource {
  const key = parseEncKey(options.key);
  return {
    scheme: 'enc-file',
    async load(locator: string): Promise<SecretValue> {
      const ref = `enc-file:${locator}`;
      const hash = locator.lastIndexOf('#');
      const path = hash > 0 ? locator.slice(0, hash) : '';
      const name = locator.slice(hash + 1);
      if (hash <= 0 || !ENTRY_NAME.test(name)) throw new SecretError(ref, 'is not a reference of the form enc-file:PATH#name', 'invalid');
      const entries = await readDocument(path, ref, false);
      const entry = entries?.get(name);
      if (entry === undefined) throw new SecretError(ref, `has no entry "${name}"`, 'not_found');
      const value = openEntry(key, name, entry);
      if (value === undefined) throw new SecretError(ref, 'cannot be decrypted (wrong key, or the entry was altered or moved)', 'invalid');
      const trimmed = value.trim();
      if (trimmed === '') throw new SecretError(ref, 'is empty', 'not_found');
      return { value: trimmed, version: `v${entry.version}` };
    },
  };
}

/**
 * Creates or updates the entry `name` of an encrypted secrets file with `value`, and returns
 * the entry's new version. The file is written whole to a temporary file (mode 0600) in the
 * same directory and renamed over the old one, so a reader sees the old file or the new one,
 * never half of either. Refuses a file that other users can read or write, and a key that
 * cannot decrypt the entries already in the file (one file, one key).
 */
export async function encryptSecretsFile(options: { path: string; name: string; value: string; key: string }): Promise<{ name: string; version: string }> {
  const { path, name, value } = options;
  const ref = `enc-file:${path}#${name}`;
  if (!ENTRY_NAME.test(name)) throw new SecretError(`enc-file:${path}`, 'entry name must be 1-128 letters, digits, _ . or -', 'invalid');
  if (value.trim() === '') throw new SecretError(ref, 'the value is empty', 'invalid');
  if (Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES) throw new SecretError(ref, 'the value is too large to be a secret', 'invalid');
  const key = parseEncKey(options.key);
  const entries = (await readDocument(path, ref, true)) ?? new Map<string, EncFileEntry>();
  for (const [other, entry] of entries) {
    if (openEntry(key, other, entry) === undefined) {
      throw new SecretError(ref, `the file's entry "${other}" cannot be decrypted with this key (wrong key, or the file was altered)`, 'invalid');
    }
  }
  const previous = entries.get(name);
  const version = String(previous === undefined ? 1 : Number(previous.version) + 1);
  entries.set(name, sealEntry(key, name, version, value));
  const doc: EncFileDocument = { keywarden_enc: ENC_FILE_FORMAT, entries: Object.fromEntries(entries) };
  try {
    await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new SecretError(`enc-file:${path}`, `cannot be written (${code})`, code === 'EACCES' || code === 'EPERM' ? 'access_denied' : 'invalid');
  }
  return { name, version };
}

/** Writes `text` to a fresh 0600 temporary file beside `path`, flushes it, and renames it over `path`. */
async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600); // wx: never write through a file or link planted at that name
  try {
    try {
      await handle.chmod(0o600);
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  // make the rename itself durable; not every platform lets a directory be opened
  try {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // best effort
  }
}
