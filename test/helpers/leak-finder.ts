import { findSecrets } from '../../src/detect/detector.js';

/** A planted value that must never come back out, and what to call it in a finding. */
export interface Secret {
  name: string;
  value: string;
}

/** Every window of `size` characters of `value` (a partial or masked copy still shows one). */
function windows(value: string, size = 12): string[] {
  const out = new Set<string>();
  for (let i = 0; i + size <= value.length; i++) {
    const w = value.slice(i, i + size);
    // a window of one repeated character says nothing about where it came from
    if (new Set(w).size > 2) out.add(w);
  }
  return [...out];
}

/** Key-shaped strings, whoever they belong to; a masked provider key (`sk-fake****abcd`); a provider's own error text. */
const KEY_DETECTORS: ReadonlyArray<[string, RegExp]> = [
  ['provider-key shape', /sk-[A-Za-z0-9_-]{12,}/],
  ['tenant-key shape', /kw_[a-z0-9]{16}_[A-Za-z0-9_-]{43}/],
  ['masked provider key', /sk-[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_-]*/],
  ['provider error text', /Incorrect API key provided|invalid_api_key|platform\.openai\.com/],
];

/**
 * The canary suites' check: one line per finding of any planted secret (whole, or any 12-character
 * window of it), any key shape (the ones above plus `extraDetectors`), anything the project's own
 * detector library finds, or the masked form of the gateway's provider key. Empty when clean.
 */
export function createLeakFinder(maskedProviderKey: string, extraDetectors: ReadonlyArray<[string, RegExp]> = []) {
  const detectors = [...KEY_DETECTORS, ...extraDetectors];
  return function findLeaks(where: string, text: string, secrets: readonly Secret[]): string[] {
    const found: string[] = [];
    for (const secret of secrets) {
      if (text.includes(secret.value)) {
        found.push(`${where}: the ${secret.name} itself`);
        continue;
      }
      const hit = windows(secret.value).find((w) => text.includes(w));
      if (hit !== undefined) found.push(`${where}: part of the ${secret.name} (${JSON.stringify(hit)})`);
    }
    for (const [name, pattern] of detectors) {
      const match = pattern.exec(text);
      if (match) found.push(`${where}: ${name} ${JSON.stringify(match[0].slice(0, 24))}…`);
    }
    for (const f of findSecrets(text)) found.push(`${where}: detector ${f.ruleId} ${f.masked}`);
    if (text.includes(maskedProviderKey)) found.push(`${where}: the masked provider key`);
    return found;
  };
}
