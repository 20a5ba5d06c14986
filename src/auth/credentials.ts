/**
 * Extracts the tenant credential from request headers: `Authorization: Bearer …` (OpenAI
 * clients) or `x-api-key` (Anthropic clients). Returns undefined when none is present.
 * Takes plain header values so it stays independent of the HTTP framework.
 */
export function extractCredential(authorization: string | string[] | undefined, apiKey: string | string[] | undefined): string | undefined {
  // a repeated header is ambiguous: treat it as no usable credential
  if (Array.isArray(authorization) || Array.isArray(apiKey)) return '';
  if (typeof authorization === 'string' && authorization.length > 0) {
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    return match ? (match[1] as string) : '';
  }
  if (typeof apiKey === 'string' && apiKey.length > 0) return apiKey.trim();
  return undefined;
}

/**
 * The credential headers as sent, from the raw header list: Node folds a repeated
 * `Authorization` into its first value, which would hide an ambiguous request. Repeats come
 * back as arrays, which extractCredential refuses.
 */
export function credentialHeaders(rawHeaders: readonly string[]): { authorization: string | string[] | undefined; apiKey: string | string[] | undefined } {
  let authorization: string | string[] | undefined;
  let apiKey: string | string[] | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length !== 13 && name.length !== 9) continue;
    const lower = name.toLowerCase();
    const value = rawHeaders[i + 1] as string;
    if (lower === 'authorization') authorization = authorization === undefined ? value : ([] as string[]).concat(authorization, value);
    else if (lower === 'x-api-key') apiKey = apiKey === undefined ? value : ([] as string[]).concat(apiKey, value);
  }
  return { authorization, apiKey };
}
