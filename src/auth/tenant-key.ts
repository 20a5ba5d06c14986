import { createHmac, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';

/** `kw_<16 lowercase alphanumerics>_<43 base64url chars>`: the id is public, the secret is not. */
const KEY_FORMAT = /^kw_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;
const MAX_CREDENTIAL_LENGTH = 256;
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export interface ParsedTenantKey {
  id: string;
  secret: string;
}

/** Splits a presented credential; undefined for anything not shaped like a tenant key. */
export function parseTenantKey(credential: string): ParsedTenantKey | undefined {
  if (credential.length > MAX_CREDENTIAL_LENGTH) return undefined;
  const match = KEY_FORMAT.exec(credential);
  if (!match) return undefined;
  return { id: match[1] as string, secret: match[2] as string };
}

/** Mints a new key: a random public id and 256 random bits of secret. */
export function generateTenantKey(): { id: string; secret: string; key: string } {
  return mintCredential('kw');
}

/**
 * `<prefix>_<16 [a-z0-9] id>_<43 base64url secret>`: the shape of every credential keywarden
 * issues (tenant keys `kw_`, admin tokens `kwa_`), so one parser and one scanner rule family fit.
 */
export function mintCredential(prefix: string): { id: string; secret: string; key: string } {
  const idBytes = randomBytes(16);
  let id = '';
  for (const byte of idBytes) id += ID_ALPHABET[byte % ID_ALPHABET.length];
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, key: `${prefix}_${id}_${secret}` };
}

/** The stored form of a secret: HMAC-SHA256 under the gateway's key-hash key, hex. */
export function hashKeySecret(hashKey: Buffer | KeyObject, secret: string): string {
  return createHmac('sha256', hashKey).update(secret).digest('hex');
}

/** Constant-time comparison of two hex hashes of equal length. */
export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}
