/**
 * The secret detection rules: one place for every key format keywarden knows.
 *
 * Each rule is either
 *   - anchored: it names the literal strings its matches start with (`anchors`) and its pattern
 *     starts with one of them; the engine runs it only where an anchor occurs, or
 *   - keyword-context: the format alone is too broad (32 hex digits, 40 alphanumerics), so the
 *     engine runs the pattern only in a window around one of its `keywords` (matched without
 *     regard to case), and `context` must match just before the value (an assignment to a
 *     key-like name: `API_KEY=`, `"api_key": "`, `Ocp-Apim-Subscription-Key: `).
 * Then entropy (`minEntropy`, in bits per character), a checksum or a structure check (`check`)
 * drop placeholders and look-alikes.
 *
 * Sources: the published key formats of each vendor, gitleaks' default rules
 * (config/gitleaks.toml in gitleaks/gitleaks), TruffleHog's detectors (pkg/detectors/<vendor> in
 * trufflesecurity/trufflehog), Microsoft's identifiable-key rules (GeneratedRegexPatterns/ in
 * microsoft/security-utilities) and GitHub's token format (github.blog, 2021-04-05 "Behind GitHub's
 * new authentication token formats"). The source of each rule is in its `source`.
 *
 * Fixtures (true and false positives, all plainly fake) live in test/fixtures/detect/fixtures.ts.
 * A rule here must not fire on another rule's fixtures (test/detect-rules.test.ts holds them).
 */

export interface Rule {
  /** stable id, used in findings, SARIF and the ignore file */
  id: string;
  title: string;
  /** where the format comes from */
  source: string;
  /** literal strings (case-sensitive) that every match starts with */
  anchors?: readonly string[];
  /** for keyword-context rules: words (any case) one of which must be near the match */
  keywords?: readonly string[];
  /** the match; capture group 1 (when present) is the secret, else the whole match. No flags. */
  pattern: RegExp;
  /** which group holds the secret (default: 1 when the pattern has one, else 0) */
  secretGroup?: number;
  /** turns the matched secret into its canonical form (for the fingerprint and the checks) */
  normalize?: (secret: string) => string;
  /** minimum Shannon entropy (bits per character) of the secret after `entropySkip` characters */
  minEntropy?: number;
  entropySkip?: number;
  /** a checksum or structure check on the secret */
  check?: (secret: string) => boolean;
  /** keyword rules: must match the text just before the secret (up to 80 characters of its line), e.g. `API_KEY=` */
  context?: RegExp;
  /** keyword rules: how far before and after the keyword the secret may start (characters) */
  window?: { before: number; after: number };
}

// a match starts and ends at a token boundary: not inside a longer run of key characters
const B = '(?<![A-Za-z0-9_-])';
const E = '(?![A-Za-z0-9_-])';
const re = (source: string) => new RegExp(source);
/** the value is assigned to a name that says what it is: `NAME=`, `name: "`, `"name": '`, `name => ` */
const assignedTo = (names: string) => new RegExp(`(?:${names})[A-Za-z0-9_.-]*["'\`]?\\s*(?::=|=>|:|=)\\s*["'\`]?$`, 'i');

/** Upper case, lower case and digits all present: real random keys have them, words and placeholders rarely do. */
export function mixedCase(s: string): boolean {
  return /[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9]/.test(s);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) crc = (crc >>> 8) ^ (CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] as number);
  return (crc ^ 0xffffffff) >>> 0;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export function base62(n: number, width: number): string {
  let out = '';
  let v = n;
  while (v > 0) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out.padStart(width, '0');
}

/**
 * GitHub's classic token checksum: the last 6 characters are the CRC32 of the 30 random ones,
 * in base62 (0-9A-Za-z), left-padded with zeros (github.blog, 2021-04-05).
 */
export function githubChecksumOk(token: string): boolean {
  const body = token.slice(4);
  if (body.length !== 36) return false;
  return base62(crc32(body.slice(0, 30)), 6) === body.slice(30);
}

function decodeJsonPart(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A JWT: its header decodes to a JSON object with an `alg`, its payload to a JSON object. */
export function jwtShapeOk(token: string): boolean {
  const [header, payload] = token.split('.');
  if (header === undefined || payload === undefined) return false;
  const h = decodeJsonPart(header) as { alg?: unknown } | undefined;
  const p = decodeJsonPart(payload);
  return typeof h === 'object' && h !== null && typeof h.alg === 'string' && h.alg.toLowerCase() !== 'none' && typeof p === 'object' && p !== null;
}

const stripPemBody = (s: string) => s.replace(/\\[rn]|\s/g, '');

export const RULES: readonly Rule[] = [
  // ── OpenAI ────────────────────────────────────────────────────────────────────────────────
  {
    id: 'openai-legacy-key',
    title: 'OpenAI API key (legacy user key)',
    source: 'gitleaks openai-api-key (sk- + 20 + "T3BlbkFJ" + 20); OpenAI API reference, authentication',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-[A-Za-z0-9]{48})${E}`),
    minEntropy: 4.0,
    entropySkip: 3,
    check: mixedCase,
  },
  {
    id: 'openai-project-key',
    title: 'OpenAI API key (project or user key)',
    source: 'gitleaks openai-api-key (sk-proj- … T3BlbkFJ …); OpenAI project API keys (sk-proj-, and sk-None- user keys)',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-(?:proj|None)-[A-Za-z0-9_-]{80,250})${E}`),
    minEntropy: 4.2,
    entropySkip: 8,
    check: mixedCase,
  },
  {
    id: 'openai-service-account-key',
    title: 'OpenAI service account key',
    source: 'gitleaks openai-api-key (sk-svcacct- … T3BlbkFJ …); OpenAI project service accounts',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-svcacct-[A-Za-z0-9_-]{80,250})${E}`),
    minEntropy: 4.2,
    entropySkip: 11,
    check: mixedCase,
  },
  {
    id: 'openai-admin-key',
    title: 'OpenAI admin key',
    source: 'gitleaks openai-api-key (sk-admin- … T3BlbkFJ …); OpenAI Administration API keys',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-admin-[A-Za-z0-9_-]{80,250})${E}`),
    minEntropy: 4.2,
    entropySkip: 9,
    check: mixedCase,
  },
  // ── Anthropic ─────────────────────────────────────────────────────────────────────────────
  {
    id: 'anthropic-api-key',
    title: 'Anthropic API key',
    source: 'gitleaks anthropic-api-key (sk-ant-api03- + 93 + "AA")',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-ant-api03-[A-Za-z0-9_-]{93}AA)${E}`),
    minEntropy: 4.2,
    entropySkip: 13,
  },
  {
    id: 'anthropic-admin-key',
    title: 'Anthropic admin API key',
    source: 'gitleaks anthropic-admin-api-key (sk-ant-admin01- + 93 + "AA")',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-ant-admin01-[A-Za-z0-9_-]{93}AA)${E}`),
    minEntropy: 4.2,
    entropySkip: 15,
  },
  // ── Google ────────────────────────────────────────────────────────────────────────────────
  {
    id: 'google-api-key',
    title: 'Google API key',
    source: 'gitleaks gcp-api-key (AIza + 35 [\\w-]); Google Cloud API keys documentation',
    anchors: ['AIza'],
    pattern: re(`${B}(AIza[0-9A-Za-z_-]{35})${E}`),
    minEntropy: 3.5,
    entropySkip: 4,
  },
  // ── Azure OpenAI / AI services, current format (84 characters, "JQQJ9" at offset 52) ────────
  // Microsoft's "common annotated security key" (CASK) format, from Microsoft's own published
  // rule SEC101/200 UnclassifiedLegacyCommonAnnotatedSecurityKey (microsoft/security-utilities,
  // GeneratedRegexPatterns/PreciselyClassifiedSecurityKeys.json):
  //   [A-Za-z0-9]{52} JQQJ9 [9DH] [A-Za-z0-9] [A-L] [A-Za-z0-9]{16} [A-Za-z] [A-Za-z0-9]{7} ([A-Za-z0-9]{2}==)?
  // offsets 76-79 carry the issuing provider's signature: "ACOG" for Azure AI services (Cognitive
  // Services, Azure OpenAI, AI Foundry), others for other Azure services (e.g. "AZDO" Azure DevOps).
  // The marker sits inside the key, not at its start, so these are keyword rules whose keyword is
  // the marker itself (matched in a window that reaches back to the key's first character); no
  // assignment context is needed because the marker and the fixed shape are specific enough.
  {
    id: 'azure-ai-services-key',
    title: 'Azure OpenAI / Azure AI services key (84-character format)',
    source: 'microsoft/security-utilities SEC101/200 (52 + "JQQJ9" + [9DH] + … , 84 [A-Za-z0-9]) with the Azure AI services provider signature "ACOG" at offset 76',
    keywords: ['JQQJ9'],
    pattern: re(
      '(?<![A-Za-z0-9_+/-])([A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9][A-L][A-Za-z0-9]{16}ACOG[A-Za-z0-9]{4}(?:[A-Za-z0-9]{2}==)?)(?![A-Za-z0-9_+/=-])',
    ),
    window: { before: 60, after: 0 },
    minEntropy: 4.0,
    // the 52 random characters mix upper case, lower case and digits (rejects `xxxx…JQQJ99…` placeholders)
    check: (s) => mixedCase(s.slice(0, 52)),
  },
  {
    id: 'azure-annotated-key',
    title: 'Azure common annotated security key (other Azure services)',
    source: 'microsoft/security-utilities SEC101/200 UnclassifiedLegacyCommonAnnotatedSecurityKey (84 [A-Za-z0-9] with "JQQJ9" at offset 52), any provider signature but "ACOG"',
    keywords: ['JQQJ9'],
    pattern: re(
      '(?<![A-Za-z0-9_+/-])([A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9][A-L][A-Za-z0-9]{16}(?!ACOG)[A-Za-z][A-Za-z0-9]{7}(?:[A-Za-z0-9]{2}==)?)(?![A-Za-z0-9_+/=-])',
    ),
    window: { before: 60, after: 0 },
    minEntropy: 4.0,
    check: (s) => mixedCase(s.slice(0, 52)),
  },
  // ── Azure OpenAI / Cognitive Services, older format (32 hex digits: needs a keyword) ──────────
  {
    id: 'azure-openai-key',
    title: 'Azure OpenAI / Cognitive Services key',
    source: 'TruffleHog azure_openai detector (32 hex after "api[_.-]?key" / "openai[_.-]?key", near ".openai.azure.com"); Azure AI services keys (Ocp-Apim-Subscription-Key, api-key header)',
    // "openai": a 32-hex value assigned to OPENAI_API_KEY / openai.api_key is an Azure OpenAI key
    // (OpenAI's own keys start with sk-); the context below still requires a key-like name
    keywords: ['azure', 'cognitive', 'openai', 'ocp-apim-subscription-key'],
    pattern: re('(?<![A-Za-z0-9_+/-])([a-f0-9]{32}|[A-F0-9]{32})(?![A-Za-z0-9_+/=-])'),
    context: assignedTo('key|secret|token|subscription'),
    window: { before: 40, after: 120 },
    minEntropy: 3.2,
    check: (s) => /[0-9]/.test(s) && /[a-fA-F]/.test(s),
  },
  // ── AWS ───────────────────────────────────────────────────────────────────────────────────
  {
    id: 'aws-access-key-id',
    title: 'AWS access key id',
    source: 'gitleaks aws-access-token ((A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA) + 16 [A-Z2-7]); AWS IAM identifiers',
    anchors: ['AKIA', 'ASIA', 'ABIA', 'ACCA', 'A3T'],
    pattern: re('(?<![A-Za-z0-9])((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?![A-Za-z0-9])'),
    minEntropy: 3.0,
    entropySkip: 4,
    // AWS's documentation example keys end in EXAMPLE
    check: (s) => !s.endsWith('EXAMPLE'),
  },
  {
    id: 'aws-secret-access-key',
    title: 'AWS secret access key',
    source: 'TruffleHog aws detector (40 base64 characters near the AWS secret keyword); AWS IAM access keys',
    keywords: ['aws', 'secretaccesskey', 'secret_access_key'],
    pattern: re('(?<![A-Za-z0-9/+_-])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=_-])'),
    context: assignedTo('secret'),
    window: { before: 40, after: 120 },
    minEntropy: 4.0,
    check: (s) => mixedCase(s) && !s.endsWith('EXAMPLEKEY'),
  },
  // ── Model providers with a prefix ─────────────────────────────────────────────────────────
  {
    id: 'huggingface-token',
    title: 'Hugging Face access token',
    source: 'gitleaks huggingface-access-token (hf_ + 34 letters)',
    anchors: ['hf_'],
    pattern: re(`${B}(hf_[A-Za-z]{34})${E}`),
    minEntropy: 3.8,
    entropySkip: 3,
    check: (s) => /[a-z]/.test(s.slice(3)) && /[A-Z]/.test(s.slice(3)),
  },
  {
    id: 'huggingface-org-token',
    title: 'Hugging Face organization API token',
    source: 'gitleaks huggingface-organization-api-token (api_org_ + 34 letters)',
    anchors: ['api_org_'],
    pattern: re(`${B}(api_org_[A-Za-z]{34})${E}`),
    minEntropy: 3.8,
    entropySkip: 8,
    check: (s) => /[a-z]/.test(s.slice(8)) && /[A-Z]/.test(s.slice(8)),
  },
  {
    id: 'groq-api-key',
    title: 'Groq API key',
    source: 'TruffleHog groq detector (gsk_ + 52 alphanumerics)',
    anchors: ['gsk_'],
    pattern: re(`${B}(gsk_[A-Za-z0-9]{52})${E}`),
    minEntropy: 4.0,
    entropySkip: 4,
    check: mixedCase,
  },
  {
    id: 'replicate-api-token',
    title: 'Replicate API token',
    source: 'TruffleHog replicate detector (r8_ + 37 alphanumerics)',
    anchors: ['r8_'],
    pattern: re(`${B}(r8_[A-Za-z0-9]{37})${E}`),
    minEntropy: 3.8,
    entropySkip: 3,
    check: mixedCase,
  },
  {
    id: 'xai-api-key',
    title: 'xAI API key',
    source: 'TruffleHog xai detector (xai- + 80 alphanumerics)',
    anchors: ['xai-'],
    pattern: re(`${B}(xai-[A-Za-z0-9]{80})${E}`),
    minEntropy: 4.3,
    entropySkip: 4,
    check: mixedCase,
  },
  {
    id: 'deepseek-api-key',
    title: 'DeepSeek API key',
    source: 'TruffleHog deepseek detector (sk- + 32 lower-case hex)',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-[a-f0-9]{32})${E}`),
    minEntropy: 3.2,
    entropySkip: 3,
    check: (s) => /[0-9]/.test(s.slice(3)) && /[a-f]/.test(s.slice(3)),
  },
  {
    id: 'perplexity-api-key',
    title: 'Perplexity API key',
    source: 'TruffleHog perplexity detector (pplx- + 48 alphanumerics)',
    anchors: ['pplx-'],
    pattern: re(`${B}(pplx-[A-Za-z0-9]{48})${E}`),
    minEntropy: 4.0,
    entropySkip: 5,
    check: mixedCase,
  },
  {
    id: 'openrouter-api-key',
    title: 'OpenRouter API key',
    source: 'TruffleHog openrouter detector (sk-or-v1- + 64 hex)',
    anchors: ['sk-'],
    pattern: re(`${B}(sk-or-v1-[a-f0-9]{64})${E}`),
    minEntropy: 3.5,
    entropySkip: 9,
  },
  // ── Model providers without a prefix (keyword context) ────────────────────────────────────
  {
    id: 'mistral-api-key',
    title: 'Mistral AI API key',
    source: 'TruffleHog mistral detector (32 alphanumerics near "mistral")',
    keywords: ['mistral'],
    pattern: re('(?<![A-Za-z0-9_+/-])([A-Za-z0-9]{32})(?![A-Za-z0-9_+/=-])'),
    context: assignedTo('key|token|secret'),
    window: { before: 40, after: 120 },
    minEntropy: 3.8,
    check: mixedCase,
  },
  {
    id: 'cohere-api-key',
    title: 'Cohere API key',
    source: 'TruffleHog cohere detector (40 alphanumerics near "cohere")',
    keywords: ['cohere', 'co_api_key'],
    pattern: re('(?<![A-Za-z0-9_+/-])([A-Za-z0-9]{40})(?![A-Za-z0-9_+/=-])'),
    context: assignedTo('key|token|secret'),
    window: { before: 40, after: 120 },
    minEntropy: 4.0,
    check: mixedCase,
  },
  // ── GitHub (classic tokens carry a CRC32 checksum) ────────────────────────────────────────
  {
    id: 'github-pat',
    title: 'GitHub personal access token (classic)',
    source: 'gitleaks github-pat (ghp_ + 36); checksum per github.blog 2021-04-05',
    anchors: ['ghp_'],
    pattern: re(`${B}(ghp_[A-Za-z0-9]{36})${E}`),
    check: githubChecksumOk,
  },
  {
    id: 'github-oauth-token',
    title: 'GitHub OAuth access token',
    source: 'gitleaks github-oauth (gho_ + 36); checksum per github.blog 2021-04-05',
    anchors: ['gho_'],
    pattern: re(`${B}(gho_[A-Za-z0-9]{36})${E}`),
    check: githubChecksumOk,
  },
  {
    id: 'github-app-token',
    title: 'GitHub App user-to-server or server-to-server token',
    source: 'gitleaks github-app-token ((ghu|ghs)_ + 36); checksum per github.blog 2021-04-05',
    anchors: ['ghu_', 'ghs_'],
    pattern: re(`${B}(gh[us]_[A-Za-z0-9]{36})${E}`),
    check: githubChecksumOk,
  },
  {
    id: 'github-refresh-token',
    title: 'GitHub refresh token',
    source: 'gitleaks github-refresh-token (ghr_ + 36); checksum per github.blog 2021-04-05',
    anchors: ['ghr_'],
    pattern: re(`${B}(ghr_[A-Za-z0-9]{36})${E}`),
    check: githubChecksumOk,
  },
  {
    id: 'github-fine-grained-pat',
    title: 'GitHub fine-grained personal access token',
    source: 'gitleaks github-fine-grained-pat (github_pat_ + 82 [A-Za-z0-9_])',
    anchors: ['github_pat_'],
    pattern: re(`${B}(github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})${E}`),
    minEntropy: 4.3,
    entropySkip: 11,
    check: (s) => mixedCase(s.slice(11)),
  },
  // ── Slack ─────────────────────────────────────────────────────────────────────────────────
  {
    id: 'slack-bot-token',
    title: 'Slack bot token',
    source: 'gitleaks slack-bot-token (xoxb-<team>-<bot>-<secret>); Slack token types',
    anchors: ['xoxb-'],
    pattern: re(`${B}(xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{20,40})${E}`),
    minEntropy: 3.5,
    check: (s) => mixedCase(s.slice(s.lastIndexOf('-') + 1)),
  },
  {
    id: 'slack-user-token',
    title: 'Slack user token',
    source: 'gitleaks slack-user-token (xox[pe]-<id>-<id>-<id>-<secret>); Slack token types',
    anchors: ['xoxp-', 'xoxe-'],
    pattern: re(`${B}(xox[pe](?:-[0-9]{10,13}){3}-[A-Za-z0-9]{28,34})${E}`),
    minEntropy: 3.3,
  },
  {
    id: 'slack-app-token',
    title: 'Slack app-level token',
    source: 'gitleaks slack-app-token (xapp-<n>-<app>-<n>-<hex>)',
    anchors: ['xapp-'],
    pattern: re(`${B}(xapp-[0-9]-[A-Z0-9]{8,14}-[0-9]{10,16}-[a-f0-9]{40,80})${E}`),
    minEntropy: 3.3,
  },
  {
    id: 'slack-webhook-url',
    title: 'Slack incoming webhook URL',
    source: 'gitleaks slack-webhook-url (hooks.slack.com/services/T…/B…/…)',
    anchors: ['hooks.slack.com/'],
    pattern: re('(hooks\\.slack\\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24})(?![A-Za-z0-9])'),
    check: (s) => mixedCase(s.slice(-24)),
  },
  // ── Stripe ────────────────────────────────────────────────────────────────────────────────
  {
    id: 'stripe-secret-key',
    title: 'Stripe secret key',
    source: 'gitleaks stripe-access-token ((sk|rk)_(test|live|prod)_ + 10-99); Stripe API keys (publishable pk_ keys are not secret)',
    anchors: ['sk_live_', 'sk_test_', 'sk_prod_'],
    pattern: re(`${B}(sk_(?:live|test|prod)_[A-Za-z0-9]{20,247})${E}`),
    minEntropy: 3.8,
    entropySkip: 8,
    check: (s) => mixedCase(s.slice(8)),
  },
  {
    id: 'stripe-restricted-key',
    title: 'Stripe restricted key',
    source: 'gitleaks stripe-access-token ((sk|rk)_(test|live|prod)_ + 10-99); Stripe restricted API keys',
    anchors: ['rk_live_', 'rk_test_', 'rk_prod_'],
    pattern: re(`${B}(rk_(?:live|test|prod)_[A-Za-z0-9]{20,247})${E}`),
    minEntropy: 3.8,
    entropySkip: 8,
    check: (s) => mixedCase(s.slice(8)),
  },
  // ── Generic credential formats ────────────────────────────────────────────────────────────
  {
    id: 'private-key',
    title: 'Private key block',
    source: 'gitleaks private-key (-----BEGIN … PRIVATE KEY----- with a body); RFC 7468 textual encodings',
    anchors: ['-----BEGIN'],
    pattern: re(
      '-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:\\s|\\\\[rn])*' +
        '(?:(?:Proc-Type|DEK-Info|Comment|Version):[^\\n\\\\]*(?:\\s|\\\\[rn])+)*' +
        '((?:[A-Za-z0-9+/=]|\\s|\\\\[rn]){64,20000})',
    ),
    normalize: stripPemBody,
    minEntropy: 4.8,
    check: (s) => s.length >= 64,
  },
  {
    id: 'jwt',
    title: 'JSON Web Token',
    source: 'gitleaks jwt (ey….ey….signature); RFC 7519',
    anchors: ['eyJ'],
    pattern: re(`${B}(eyJ[A-Za-z0-9_-]{10,}\\.eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{16,})${E}`),
    check: jwtShapeOk,
  },
  // ── keywarden's own credentials ───────────────────────────────────────────────────────────
  {
    id: 'keywarden-tenant-key',
    title: 'keywarden tenant key',
    source: 'keywarden src/auth/tenant-key.ts (kw_ + 16 [a-z0-9] + _ + 43 base64url)',
    anchors: ['kw_'],
    pattern: re(`${B}(kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43})${E}`),
    minEntropy: 4.0,
    entropySkip: 20,
  },
  {
    id: 'keywarden-issued-admin-token',
    title: 'keywarden admin token (issued)',
    source: 'keywarden src/auth/admin-token.ts (kwa_ + 16 [a-z0-9] + _ + 43 base64url)',
    anchors: ['kwa_'],
    pattern: re(`${B}(kwa_[a-z0-9]{16}_[A-Za-z0-9_-]{43})${E}`),
    minEntropy: 4.0,
    entropySkip: 21,
  },
  {
    id: 'keywarden-admin-token',
    title: 'keywarden admin token',
    source: 'keywarden src/cli/demo.ts (kwadmin_ + 32 base64url)',
    anchors: ['kwadmin_'],
    pattern: re(`${B}(kwadmin_[A-Za-z0-9_-]{32})${E}`),
    minEntropy: 3.8,
    entropySkip: 8,
  },
];
