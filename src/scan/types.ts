/** What `keywarden scan` reports: a detector finding placed in a file (or a commit, or stdin). Never the secret itself. */
export interface ScanFinding {
  ruleId: string;
  title: string;
  /** path relative to the working directory (forward slashes), or `<stdin>` */
  file: string;
  line: number;
  column: number;
  endColumn?: number;
  /** the commit that added the line (history scans only) */
  commit?: string;
  masked: string;
  fingerprint: string;
}

export interface ScanStats {
  files: number;
  bytes: number;
  findings: number;
  ignored: number;
  skippedBinary: number;
}

export const STDIN_NAME = '<stdin>';
