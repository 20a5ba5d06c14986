/**
 * The secret detector engine: one pass over a string finds every rule's matches.
 *
 * How a string is scanned, so that clean text costs little more than a few literal searches:
 *   1. One alternation of every rule's literal anchor (`sk-`, `AKIA`, `ghp_`, `-----BEGIN`, `eyJ`, …)
 *      and one of every context rule's keyword (`azure`, `mistral`, …, any case) walk the text, in
 *      the regular-expression engine's compiled code. Text with none of them is done after that.
 *   2. At an anchor, only the rules of that anchor run, sticky at that position.
 *      At a keyword, only the rules of that keyword run, in a window around it.
 *   3. Each candidate must pass its rule's checks (entropy, checksum, structure), then
 *      overlapping findings are resolved (a prefix rule beats a keyword rule; the longer beats the
 *      shorter), so one secret is reported once, under the most specific rule.
 *
 * A finding never holds the secret: it holds its offsets in the scanned text, a masked form and
 * a fingerprint (`sha256:` + 16 hex of the SHA-256 of the secret), so nothing built from findings
 * can print a secret by mistake. Nothing here sends a secret anywhere: whether a key is live is
 * never checked.
 */
import { createHash } from 'node:crypto';
import { RULES, type Rule } from './rules.js';

/** One secret found in a string. Offsets are UTF-16 indexes into the scanned text; line and column are 1-based. */
export interface Finding {
  ruleId: string;
  title: string;
  /** start of the whole match (what a scrubber would replace) */
  start: number;
  /** end (exclusive) of the whole match */
  end: number;
  line: number;
  column: number;
  /** the secret shown masked: its first few characters and `****` */
  masked: string;
  /** `sha256:` + the first 16 hex digits of the SHA-256 of the secret */
  fingerprint: string;
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(text: string): number {
  if (text.length === 0) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** The masked form of a secret: at most its first 8 characters (never more than a quarter of it) and `****`. */
export function maskSecret(secret: string): string {
  if (secret.length < 12) return '****';
  return `${secret.slice(0, Math.min(8, Math.floor(secret.length / 4)))}****`;
}

/** `sha256:` + the first 16 hex digits of the SHA-256 of the secret: stable, safe to print and to list in `.keywardenignore`. */
export function fingerprintSecret(secret: string): string {
  return `sha256:${createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 16)}`;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/** Rules whose pattern starts with this lookbehind only match at a token boundary. */
const BOUNDARY = '(?<![A-Za-z0-9_-])';
const KEY_CHAR = /[A-Za-z0-9_-]/;

interface CompiledRule {
  rule: Rule;
  boundary: boolean;
  /** sticky (anchor rules) or global (keyword rules) */
  re: RegExp;
  index: number;
}

/** A set of rules compiled into one scanner. `createDetector()` with the default rules is what `findSecrets` uses. */
export interface Detector {
  readonly rules: readonly Rule[];
  /** Every finding in the text, in order of position, overlaps resolved. */
  find(text: string): Finding[];
  /** True when the text holds at least one finding (stops at the first). */
  test(text: string): boolean;
}

export function createDetector(rules: readonly Rule[] = RULES): Detector {
  const byAnchor = new Map<string, CompiledRule[]>();
  const byKeyword = new Map<string, CompiledRule[]>();
  const ids = new Set<string>();
  rules.forEach((rule, index) => {
    if (ids.has(rule.id)) throw new Error(`duplicate rule id ${rule.id}`);
    ids.add(rule.id);
    if (rule.pattern.flags.replace(/[dsu]/g, '') !== '') throw new Error(`rule ${rule.id}: pattern flags must be empty (the engine adds them)`);
    const hasAnchors = (rule.anchors?.length ?? 0) > 0;
    const hasKeywords = (rule.keywords?.length ?? 0) > 0;
    if (hasAnchors === hasKeywords) throw new Error(`rule ${rule.id}: give either anchors or keywords`);
    if (hasAnchors) {
      const compiled = { rule, re: new RegExp(rule.pattern.source, `${rule.pattern.flags}y`), index, boundary: rule.pattern.source.startsWith(BOUNDARY) };
      for (const a of rule.anchors ?? []) {
        const list = byAnchor.get(a) ?? [];
        list.push(compiled);
        byAnchor.set(a, list);
      }
    } else {
      const compiled = { rule, re: new RegExp(rule.pattern.source, `${rule.pattern.flags}g`), index, boundary: false };
      for (const k of rule.keywords ?? []) {
        const key = k.toLowerCase();
        const list = byKeyword.get(key) ?? [];
        list.push(compiled);
        byKeyword.set(key, list);
      }
    }
  });
  // Two native passes: one alternation of every anchor (case-sensitive), one of every keyword
  // (case-insensitive). Both run in the regular-expression engine's compiled code.
  const literalRe = (words: Iterable<string>, flags: string) => {
    const list = [...words].sort((a, b) => b.length - a.length).map(escapeRegExp);
    return list.length > 0 ? new RegExp(list.join('|'), flags) : undefined;
  };
  const anchorRe = literalRe(byAnchor.keys(), 'g');
  const keywordRe = literalRe(byKeyword.keys(), 'gi');

  function accept(rule: Rule, m: RegExpExecArray, text: string): string | undefined {
    const group = rule.secretGroup ?? (m.length > 1 && m[1] !== undefined ? 1 : 0);
    let secret = m[group];
    if (secret === undefined) return undefined;
    if (rule.normalize) secret = rule.normalize(secret);
    if (rule.minEntropy !== undefined && shannonEntropy(secret.slice(rule.entropySkip ?? 0)) < rule.minEntropy) return undefined;
    if (rule.check && !rule.check(secret)) return undefined;
    if (rule.context) {
      const lineStart = text.lastIndexOf('\n', m.index - 1) + 1;
      if (!rule.context.test(text.slice(Math.max(lineStart, m.index - 80), m.index))) return undefined;
    }
    return secret;
  }

  interface Raw { c: CompiledRule; start: number; end: number; secret: string }

  function collect(text: string, firstOnly: boolean): Raw[] {
    const raws: Raw[] = [];
    let hit: RegExpExecArray | null;
    if (anchorRe) {
      anchorRe.lastIndex = 0;
      while ((hit = anchorRe.exec(text)) !== null) {
        const at = hit.index;
        // most anchored rules start at a token boundary: skip `task-…` for `sk-` without running them
        const prevIsKeyChar = at > 0 && KEY_CHAR.test(text[at - 1] as string);
        for (const c of byAnchor.get(hit[0]) ?? []) {
          if (prevIsKeyChar && c.boundary) continue;
          c.re.lastIndex = at;
          const m = c.re.exec(text);
          if (m === null) continue;
          const secret = accept(c.rule, m, text);
          if (secret === undefined) continue;
          raws.push({ c, start: m.index, end: m.index + m[0].length, secret });
          if (firstOnly) return raws;
        }
      }
    }
    if (!keywordRe) return raws;
    keywordRe.lastIndex = 0;
    let keywordDone: Set<string> | undefined;
    while ((hit = keywordRe.exec(text)) !== null) {
      const at = hit.index;
      const token = hit[0];
      keywordDone ??= new Set<string>();
      for (const c of byKeyword.get(token.toLowerCase()) ?? []) {
        const before = c.rule.window?.before ?? 40;
        const after = c.rule.window?.after ?? 120;
        const from = Math.max(0, at - before);
        const to = Math.min(text.length, at + token.length + after);
        c.re.lastIndex = from;
        let m: RegExpExecArray | null;
        while ((m = c.re.exec(text)) !== null && m.index < to) {
          const key = `${c.index}:${m.index}`;
          if (!keywordDone.has(key)) {
            keywordDone.add(key);
            const secret = accept(c.rule, m, text);
            if (secret !== undefined) {
              raws.push({ c, start: m.index, end: m.index + m[0].length, secret });
              if (firstOnly) return raws;
            }
          }
          if (m[0].length === 0) c.re.lastIndex++;
        }
      }
    }
    return raws;
  }

  function resolve(raws: Raw[]): Raw[] {
    if (raws.length <= 1) return raws;
    // the most specific first: anchored before keyword rules, then longer, then rule order
    const ranked = [...raws].sort((a, b) => {
      const ka = a.c.rule.keywords ? 1 : 0;
      const kb = b.c.rule.keywords ? 1 : 0;
      return ka - kb || (b.end - b.start) - (a.end - a.start) || a.start - b.start || a.c.index - b.c.index;
    });
    const kept: Raw[] = [];
    for (const r of ranked) {
      if (kept.some((k) => r.start < k.end && k.start < r.end)) continue;
      kept.push(r);
    }
    return kept.sort((a, b) => a.start - b.start);
  }

  return {
    rules,
    find(text: string): Finding[] {
      const raws = resolve(collect(text, false));
      if (raws.length === 0) return [];
      const out: Finding[] = [];
      let line = 1;
      let lineStart = 0;
      let counted = 0;
      for (const r of raws) {
        for (let nl = text.indexOf('\n', counted); nl !== -1 && nl < r.start; nl = text.indexOf('\n', nl + 1)) {
          line++;
          lineStart = nl + 1;
        }
        counted = Math.max(counted, r.start);
        out.push({
          ruleId: r.c.rule.id,
          title: r.c.rule.title,
          start: r.start,
          end: r.end,
          line,
          column: r.start - lineStart + 1,
          masked: maskSecret(r.secret),
          fingerprint: fingerprintSecret(r.secret),
        });
      }
      return out;
    },
    test(text: string): boolean {
      return collect(text, true).length > 0;
    },
  };
}

let defaultDetector: Detector | undefined;

/** The detector over every built-in rule (compiled once). */
export function detector(): Detector {
  defaultDetector ??= createDetector(RULES);
  return defaultDetector;
}

/** Every secret in the text, found by the built-in rules. Cheap on text with no anchor or keyword. */
export function findSecrets(text: string): Finding[] {
  return detector().find(text);
}

/** True when the text holds a secret (stops at the first). */
export function hasSecret(text: string): boolean {
  return detector().test(text);
}

/** The text with every finding replaced by its masked form (or by `replacement` when given). */
export function maskSecretsIn(text: string, replacement?: (f: Finding) => string): string {
  const findings = findSecrets(text);
  if (findings.length === 0) return text;
  let out = '';
  let pos = 0;
  for (const f of findings) {
    out += text.slice(pos, f.start) + (replacement ? replacement(f) : `[${f.ruleId}:${f.masked}]`);
    pos = f.end;
  }
  return out + text.slice(pos);
}

/** Runs a single rule on its own over the text (no overlap resolution against other rules): for tests of look-alike formats. */
export function matchRule(rule: Rule, text: string): Finding[] {
  return createDetector([rule]).find(text);
}

export type { Rule } from './rules.js';
export { RULES } from './rules.js';
