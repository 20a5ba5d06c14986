/**
 * Personal-data rules for prompt DLP: e-mail addresses, phone numbers, payment card numbers and
 * IBANs. Each rule finds candidates with one regular expression and then checks them, so that
 * look-alikes (order numbers, timestamps, version strings, image names) are not reported:
 *
 *   - email: `local@domain.tld` with a letter-only top-level domain that is not a file
 *     extension (`icon@2x.png` is an image name, not an address).
 *   - phone: an international number (`+` and 8 to 15 digits, E.164) anywhere; a national
 *     number (10 or 11 digits, separators allowed) only after a word such as "phone", "tel",
 *     "mobile", "call" or "fax" on the same line. Dates and IP addresses are not numbers.
 *   - card: 13 to 19 digits (single spaces or dashes between them allowed) that pass the Luhn
 *     check and have a card network's leading digits and length (Visa 4…, Amex 34/37 with 15
 *     digits, Mastercard 51–55/2221–2720 with 16, …); not the account part of an IBAN.
 *   - iban: a country code, two check digits and the account, as long as that country's IBANs
 *     are, with the ISO 7064 mod-97 check (ISO 13616).
 *
 * Findings hold offsets and the matched value's canonical form (for the caller to fingerprint);
 * nothing here logs or keeps a value.
 */
import type { PiiRuleName } from './types.js';

export interface PiiMatch {
  ruleId: `pii-${PiiRuleName}`;
  start: number;
  end: number;
  /** the canonical value (digits only for numbers, no spaces for an IBAN, lower-case domain for e-mail) */
  value: string;
}

// ── email ─────────────────────────────────────────────────────────────────────────────────────
const EMAIL = /(?<![A-Za-z0-9._%+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![A-Za-z0-9-])/g;
const FILE_EXTENSIONS = new Set([
  'png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'bmp', 'tif', 'tiff', 'avif', 'css', 'scss', 'js', 'mjs', 'cjs', 'ts', 'tsx', 'jsx',
  'json', 'py', 'rb', 'go', 'rs', 'md', 'txt', 'html', 'htm', 'yml', 'yaml', 'toml', 'lock', 'xml', 'pdf', 'zip', 'gz', 'tgz', 'mp3', 'mp4', 'wav',
]);

function findEmails(text: string, out: PiiMatch[]): void {
  if (!text.includes('@')) return;
  EMAIL.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = EMAIL.exec(text)) !== null) {
    const local = m[1] as string;
    const domain = m[2] as string;
    const tld = (m[3] as string).toLowerCase();
    if (FILE_EXTENSIONS.has(tld) || local.endsWith('.') || local.includes('..')) continue;
    out.push({ ruleId: 'pii-email', start: m.index, end: m.index + m[0].length, value: `${local}@${domain.toLowerCase()}` });
  }
}

// ── phone ─────────────────────────────────────────────────────────────────────────────────────
const PHONE = /(?<![\w+/=.-])(\+?\(?\d[\d ().-]{5,22}\d)(?![\w])/g;
const PHONE_CONTEXT = /\b(?:phone|tel|telephone|mobile|cell|cellphone|call|fax|sms|whatsapp|landline)\b/i;

function phoneShapeOk(candidate: string): boolean {
  // at most one pair of parentheses, in order; no doubled separators such as `--` or `..`
  const open = candidate.indexOf('(');
  const close = candidate.indexOf(')');
  if ((open === -1) !== (close === -1) || close < open || candidate.indexOf('(', open + 1) !== -1 || candidate.indexOf(')', close + 1) !== -1) return false;
  if (/[ .-]{2,}|[.-][ ]|[ ][.-]/.test(candidate)) return false;
  // a date (2024-01-15 …) or an IP address is not a phone number
  if (/^\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)/.test(candidate) || /^\d{1,3}(?:\.\d{1,3}){3}$/.test(candidate)) return false;
  return true;
}

function findPhones(text: string, out: PiiMatch[]): void {
  PHONE.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = PHONE.exec(text)) !== null) {
    const candidate = m[1] as string;
    if (!phoneShapeOk(candidate)) continue;
    const digits = candidate.replace(/\D/g, '');
    if (candidate.startsWith('+')) {
      // E.164: a country code (never 0) and at most 15 digits in all
      if (digits.length < 8 || digits.length > 15 || digits.startsWith('0')) continue;
    } else {
      if (digits.length < 10 || digits.length > 11) continue;
      const lineStart = text.lastIndexOf('\n', m.index - 1) + 1;
      if (!PHONE_CONTEXT.test(text.slice(Math.max(lineStart, m.index - 40), m.index))) continue;
    }
    out.push({ ruleId: 'pii-phone', start: m.index, end: m.index + candidate.length, value: candidate.startsWith('+') ? `+${digits}` : digits });
  }
}

// ── payment card ──────────────────────────────────────────────────────────────────────────────
const CARD = /(?<![\w.,+/=-])(\d(?:[ -]?\d){12,18})(?![\w])/g;
const IBAN_PREFIX_BEFORE = /[A-Z]{2}\d{2} ?$/;
/**
 * Whether the digits start and are as long as a card network's numbers: Visa 4 (13, 16, 19),
 * Amex 34/37 (15), Mastercard 51–55 and 2221–2720 (16), Diners 30/36/38/39 (14–19), JCB 35
 * (16–19), Discover/UnionPay/Maestro 6 and Maestro 50/56–58 (13–19).
 */
function cardNetworkOk(d: string): boolean {
  const n = d.length;
  const two = Number(d.slice(0, 2));
  const four = Number(d.slice(0, 4));
  if (d[0] === '4') return n === 13 || n === 16 || n === 19;
  if (two === 34 || two === 37) return n === 15;
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return n === 16;
  if (two === 30 || two === 36 || two === 38 || two === 39) return n >= 14;
  if (two === 35) return n >= 16;
  if (d[0] === '6' || two === 50 || (two >= 56 && two <= 58)) return n >= 13;
  return false;
}

/** The Luhn (mod 10) check over a string of digits. */
export function luhnOk(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function findCards(text: string, out: PiiMatch[]): void {
  CARD.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = CARD.exec(text)) !== null) {
    const digits = (m[1] as string).replace(/[ -]/g, '');
    if (digits.length < 13 || digits.length > 19 || !cardNetworkOk(digits) || /^(\d)\1+$/.test(digits) || !luhnOk(digits)) continue;
    // the account part of an IBAN-shaped string (a country code and check digits before it) is not a card
    if (IBAN_PREFIX_BEFORE.test(text.slice(Math.max(0, m.index - 6), m.index))) continue;
    out.push({ ruleId: 'pii-card', start: m.index, end: m.index + (m[1] as string).length, value: digits });
  }
}

// ── IBAN ──────────────────────────────────────────────────────────────────────────────────────
/** IBAN length per country (ISO 13616 registry). A country not listed here is not matched. */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, BY: 28, CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22,
  DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28,
  IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24,
  ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, SA: 24, SC: 31,
  SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20,
};
const IBAN_START = /(?<![A-Za-z0-9])([A-Z]{2})(\d{2})(?=[ ]?[A-Z0-9])/g;
const ALNUM_UPPER = /[A-Z0-9]/;

/** ISO 7064 mod 97-10 over an IBAN without spaces: the country and check digits move to the end, letters become 10–35. */
export function ibanChecksumOk(iban: string): boolean {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rest = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    const v = c >= 65 ? c - 55 : c - 48;
    rest = v >= 10 ? (rest * 100 + v) % 97 : (rest * 10 + v) % 97;
  }
  return rest === 1;
}

function findIbans(text: string, out: PiiMatch[]): void {
  IBAN_START.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = IBAN_START.exec(text)) !== null) {
    const length = IBAN_LENGTHS[m[1] as string];
    if (length === undefined) continue;
    // collect the account characters, allowing one space between groups (the printed form)
    let compact = (m[1] as string) + (m[2] as string);
    let i = m.index + 4;
    while (compact.length < length && i < text.length) {
      let ch = text[i] as string;
      if (ch === ' ' && i + 1 < text.length && ALNUM_UPPER.test(text[i + 1] as string)) {
        i++;
        ch = text[i] as string;
      }
      if (!ALNUM_UPPER.test(ch)) break;
      compact += ch;
      i++;
    }
    if (compact.length !== length) continue;
    // the account ends here: the next character must not continue it
    if (i < text.length && /[A-Za-z0-9]/.test(text[i] as string)) continue;
    if (!ibanChecksumOk(compact)) continue;
    out.push({ ruleId: 'pii-iban', start: m.index, end: i, value: compact });
    IBAN_START.lastIndex = i;
  }
}

const FINDERS: Readonly<Record<PiiRuleName, (text: string, out: PiiMatch[]) => void>> = {
  email: findEmails,
  phone: findPhones,
  card: findCards,
  iban: findIbans,
};

const HAS_DIGIT = /\d/;

/**
 * Every personal-data match of the given rules in the text, in order of position, overlaps
 * resolved (the longer match wins). Cheap on text without `@` or digits.
 *
 * @example findPii('mail me at ada@example.org', ['email']) // [{ ruleId: 'pii-email', start: 11, end: 26, value: 'ada@example.org' }]
 */
export function findPii(text: string, rules: readonly PiiRuleName[]): PiiMatch[] {
  const raw: PiiMatch[] = [];
  const digits = HAS_DIGIT.test(text);
  for (const rule of rules) {
    if (rule !== 'email' && !digits) continue;
    FINDERS[rule](text, raw);
  }
  if (raw.length <= 1) return raw;
  const ranked = [...raw].sort((a, b) => (b.end - b.start) - (a.end - a.start) || a.start - b.start);
  const kept: PiiMatch[] = [];
  for (const r of ranked) {
    if (kept.some((k) => r.start < k.end && k.start < r.end)) continue;
    kept.push(r);
  }
  return kept.sort((a, b) => a.start - b.start);
}
