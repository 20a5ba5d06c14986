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
