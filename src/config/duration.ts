const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as `250ms`, `60s`, `5m`, `12h` or `30d` into milliseconds.
 * Returns undefined for anything else (callers turn that into a config or CLI error).
 *
 * @example parseDuration('60s') // 60000
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = UNITS[match[2] as string];
  return unit === undefined ? undefined : Number(match[1]) * unit;
}
