import { pino, type Logger, type DestinationStream } from 'pino';
import { scrubSecrets } from './redact.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Where lines go; stdout (asynchronous, flushed at shutdown) by default. Tests pass a capture stream. */
  destination?: DestinationStream;
}

/**
 * Serialises errors without their `cause` chain or arbitrary own properties, which can hold
 * request content or upstream bodies; only name, code and message (scrubbed later) are kept.
 */
function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: 'non-error value thrown' };
  const code = (err as { code?: unknown }).code;
  return { type: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
}

let lastMs = -1;
let lastField = '';

/**
 * pino's isoTime, formatted once per millisecond: a busy gateway writes several request lines in
 * the same millisecond, and building a Date and its ISO string for each was a measurable share
 * of a request's CPU.
 */
export function isoTimeField(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastField;
}

/**
 * The gateway's structured JSON logger. Every line passes through the central redactor before
 * it is written, so no call site has to remember to scrub.
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: false, minLength: 32_768, maxWrite: 65_536 });
  const logger = pino(
    {
      level: options.level,
      base: { service: 'keywarden' },
      timestamp: isoTimeField,
      serializers: { err: serializeError, error: serializeError },
      hooks: { streamWrite: scrubSecrets },
    },
    destination,
  );
  // lines are buffered for speed (one write per ~32 KB of lines); a quiet gateway still writes them out within a second
  setInterval(() => logger.flush(), 1000).unref();
  return logger;
}
