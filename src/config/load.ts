import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { GatewayConfig } from './types.js';
import { validateConfig } from './validate.js';

/** Thrown when a configuration cannot be used; `problems` lists every one by its path. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`invalid configuration in ${source}:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Environment variables that override documented fields (see docs/configuration.md).
 * Each maps to a path in the YAML document.
 */
export const ENV_OVERRIDES: Readonly<Record<string, readonly string[]>> = {
  KEYWARDEN_LISTEN_PUBLIC: ['listen', 'public'],
  KEYWARDEN_LISTEN_ADMIN: ['listen', 'admin'],
  KEYWARDEN_STORE: ['store'],
  KEYWARDEN_LIMITS_STORE: ['limits', 'store'],
  KEYWARDEN_LOG_LEVEL: ['log', 'level'],
};

/** Applies ENV_OVERRIDES to a parsed document (mutates it). */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let node: Record<string, unknown> = doc;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1] as string] = value;
  }
}

/** Validates an already parsed document (with env overrides applied) or throws ConfigError. */
export function configFromDocument(doc: unknown, source: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const root = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : doc;
  if (typeof root === 'object' && root !== null && !Array.isArray(root)) applyEnvOverrides(root as Record<string, unknown>, env);
  const { config, problems } = validateConfig(root);
  if (!config) throw new ConfigError(source, problems);
  return config;
}

/**
 * Reads, parses and validates a YAML configuration file.
 *
 * @example const config = loadConfigFile('keywarden.yaml'); // throws ConfigError listing every problem
 */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`(file): cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100 });
  } catch (err) {
    const line = (err as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new ConfigError(path, [`(file): is not valid YAML${line ? ` (line ${line})` : ''}`]);
  }
  return configFromDocument(doc ?? {}, path, env);
}
