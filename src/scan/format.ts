/**
 * `keywarden scan` output: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning UIs.
 * Findings carry only the masked secret and its fingerprint, so no format can print a secret.
 */
import { RULES } from '../detect/rules.js';
import type { ScanFinding, ScanStats } from './types.js';

export type ScanFormat = 'text' | 'json' | 'sarif';
export const SCAN_FORMATS: readonly ScanFormat[] = ['text', 'json', 'sarif'];

const where = (f: ScanFinding) => `${f.file}:${f.line}:${f.column}${f.commit ? ` (commit ${f.commit.slice(0, 12)})` : ''}`;

export function formatText(findings: readonly ScanFinding[], stats: ScanStats): string {
  const lines = findings.map((f) => `${where(f)}  ${f.ruleId}  ${f.masked}  ${f.fingerprint}`);
  const ignored = stats.ignored > 0 ? `, ${stats.ignored} ignored` : '';
  lines.push(
    findings.length === 0
      ? `keywarden scan: no secrets found (${stats.files} sources, ${(stats.bytes / 1e6).toFixed(1)} MB${ignored})`
      : `keywarden scan: ${findings.length} secret${findings.length === 1 ? '' : 's'} found (${stats.files} sources, ${(stats.bytes / 1e6).toFixed(1)} MB${ignored}); ` +
          'silence a false positive by adding its fingerprint or path to .keywardenignore',
  );
  return `${lines.join('\n')}\n`;
}

export function formatJson(findings: readonly ScanFinding[], stats: ScanStats): string {
  return `${JSON.stringify({ version: 1, findings, stats }, null, 2)}\n`;
}

/** SARIF 2.1.0 (OASIS): one run, every rule described, one result per finding. */
export function formatSarif(findings: readonly ScanFinding[], version: string): string {
  const rules = RULES.map((r) => ({
    id: r.id,
    name: r.id.replace(/(^|-)(\w)/g, (_m, _d: string, c: string) => c.toUpperCase()),
    shortDescription: { text: r.title },
    fullDescription: { text: `${r.title}. Format source: ${r.source}.` },
    defaultConfiguration: { level: 'error' },
    properties: { tags: ['security', 'secret'] },
  }));
  const index = new Map(RULES.map((r, i) => [r.id, i]));
  const results = findings.map((f) => ({
    ruleId: f.ruleId,
    ruleIndex: index.get(f.ruleId) ?? -1,
    level: 'error',
    message: { text: `${f.title} found: ${f.masked} (${f.fingerprint})${f.commit ? ` added in commit ${f.commit}` : ''}` },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: f.file === '<stdin>' ? 'stdin' : encodeURI(f.file) },
          region: { startLine: f.line, startColumn: f.column, ...(f.endColumn !== undefined ? { endColumn: f.endColumn } : {}) },
        },
      },
    ],
    partialFingerprints: { 'secretFingerprint/v1': f.fingerprint },
    ...(f.commit ? { properties: { commit: f.commit } } : {}),
  }));
  const log = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'keywarden', informationUri: 'https://github.com/keywarden/keywarden', version, rules } },
        results,
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}
