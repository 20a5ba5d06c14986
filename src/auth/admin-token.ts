/** `kwa_<16 lowercase alphanumerics>_<43 base64url chars>`: an issued admin token (the id is public). */
const ADMIN_TOKEN_FORMAT = /^kwa_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

export { mintCredential } from './tenant-key.js';

/** Splits a presented admin credential; undefined for anything not shaped like an issued admin token. */
export function parseAdminToken(credential: string): { id: string; secret: string } | undefined {
  if (credential.length > 128) return undefined;
  const match = ADMIN_TOKEN_FORMAT.exec(credential);
  return match ? { id: match[1] as string, secret: match[2] as string } : undefined;
}
