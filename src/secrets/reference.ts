/**
 * Secret reference schemes and the shape of their locators. A literal provider key pasted into
 * config fails these checks, so it is never used or echoed.
 *
 * - `env:NAME`                               environment variable (development)
 * - `file:PATH`                              a file readable only by its owner
 * - `enc-file:PATH#name`                     an entry of a file encrypted with AES-256-GCM
 * - `vault:MOUNT/PATH#field`                 HashiCorp Vault KV v2
 * - `aws-sm:SECRET_ID[#json_field]`          AWS Secrets Manager
 * - `azure-kv:VAULT_NAME/SECRET_NAME`        Azure Key Vault
 * - `gcp-sm:projects/P/secrets/S[/versions/V]` Google Secret Manager
 */
const LOCATORS: Readonly<Record<string, RegExp>> = {
  env: /^[A-Za-z_][A-Za-z0-9_]*$/,
  file: /^\S.*$/,
  'enc-file': /^[^#]+#[A-Za-z0-9_.-]+$/,
  vault: /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_./-]+#[A-Za-z0-9_.-]+$/,
  'aws-sm': /^[A-Za-z0-9/_+=.@:-]{1,2048}(#[A-Za-z0-9_.-]+)?$/,
  'azure-kv': /^[A-Za-z0-9-]{3,24}\/[A-Za-z0-9-]{1,127}$/,
  'gcp-sm': /^projects\/[A-Za-z0-9_-]+\/secrets\/[A-Za-z0-9_-]+(\/versions\/(latest|[0-9]+))?$/,
};

export const SECRET_SCHEMES = Object.keys(LOCATORS);

/** Whether a string is a well-formed secret reference of a known scheme. */
export function isSecretReference(text: string): boolean {
  const colon = text.indexOf(':');
  if (colon <= 0) return false;
  const pattern = LOCATORS[text.slice(0, colon)];
  return pattern !== undefined && pattern.test(text.slice(colon + 1));
}

/** Splits `scheme:locator`. Call only on strings that passed isSecretReference. */
export function splitReference(reference: string): { scheme: string; locator: string } {
  const colon = reference.indexOf(':');
  return { scheme: reference.slice(0, colon), locator: reference.slice(colon + 1) };
}
