/** Schemes a reference may use; vault backends add theirs here when they land. */
export const SECRET_SCHEMES = ['env', 'file'] as const;

/**
 * Whether a string is a secret reference (`env:NAME`, `file:/path`) rather than a literal secret.
 * A literal provider key pasted into config fails this check, so it never gets used or echoed.
 */
export function isSecretReference(text: string): boolean {
  const colon = text.indexOf(':');
  if (colon <= 0) return false;
  const scheme = text.slice(0, colon);
  const locator = text.slice(colon + 1);
  if (!(SECRET_SCHEMES as readonly string[]).includes(scheme) || locator.length === 0) return false;
  if (scheme === 'env') return /^[A-Za-z_][A-Za-z0-9_]*$/.test(locator);
  return true;
}

/** Splits `scheme:locator`. Call only on strings that passed isSecretReference. */
export function splitReference(reference: string): { scheme: string; locator: string } {
  const colon = reference.indexOf(':');
  return { scheme: reference.slice(0, colon), locator: reference.slice(colon + 1) };
}
