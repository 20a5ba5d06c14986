/**
 * The one place where secrets are scrubbed from anything the gateway writes out.
 *
 * Two nets: every secret value the gateway loads is registered here (provider keys, admin
 * token, HMAC keys), and key-shaped strings (tenant keys, provider keys, bearer tokens) are
 * masked by pattern, so a key that was never registered — a client's wrong key, say — is
 * caught too. The logger runs every line through `scrubSecrets`.
 */

const REDACTED = '[REDACTED]';
const MIN_REGISTERED_LENGTH = 8;
const registered = new Set<string>();

// key shapes: tenant keys, OpenAI/Anthropic-style keys, AWS access key ids, bearer credentials
const KEY_PATTERN =
  /kw_[A-Za-z0-9]{4,32}_[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{12,}|AKIA[0-9A-Z]{16}|(?<=Bearer\s+)[^\s"',]{8,}/g;

/** Adds a secret value to the set scrubbed from every log line. Short values are ignored (too common to mask). */
export function registerSecret(value: string): void {
  if (value.length >= MIN_REGISTERED_LENGTH) registered.add(value);
}

/** Returns the text with registered secrets and key-shaped strings replaced by `[REDACTED]`. */
export function scrubSecrets(text: string): string {
  let out = text;
  for (const secret of registered) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  KEY_PATTERN.lastIndex = 0;
  return KEY_PATTERN.test(out) ? out.replace(KEY_PATTERN, REDACTED) : out;
}
