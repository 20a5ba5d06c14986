/**
 * Fault specs for the mock provider: a comma-separated list of `name[=value]`, read from the
 * `x-mock-fault` request header or from a `[[mock:SPEC]]` directive in the request's text.
 */

/** The faults chosen for one request. Absent numbers mean "not requested". */
export interface Faults {
  /** Milliseconds to wait before sending the status line and headers. */
  delay?: number;
  /** Answer with this status (400-599) in the provider's error shape. */
  status?: number;
  /** Destroy the socket without any response. */
  reset: boolean;
  /** Streams: send the first half of the events, then destroy the socket. */
  resetMidStream: boolean;
  /** Non-stream: a 200 whose body is not JSON. Stream: one event with non-JSON data mid-stream. */
  malformed: boolean;
  /** Non-stream: a 200 whose JSON body is cut in half. Stream: end before the terminal event. */
  truncate: boolean;
  /** Streams: milliseconds between events. */
  chunkDelay?: number;
  /** Streams: after the first half of the events, wait this long before continuing. */
  stall?: number;
  /** Answer 307 with a `location` off the provider (a client must not follow it). */
  redirect: boolean;
  /** Number of output words (= tokens). */
  tokens?: number;
}

/** Directive marker; text is scanned further only when it contains this. */
export const DIRECTIVE_MARKER = '[[mock:';

const DIRECTIVE_PATTERN = /\[\[mock:([^\]]*)\]\]/g;
/** Upper bound for any wait, so a typo cannot hang a test run for hours. */
const MAX_WAIT_MS = 600_000;
const MAX_TOKENS = 100_000;

/** A fresh fault set with nothing chosen. */
export function noFaults(): Faults {
  return { reset: false, resetMidStream: false, malformed: false, truncate: false, redirect: false };
}

/** Shared read-only empty fault set for the common no-fault path (no allocation per request). */
export const NO_FAULTS: Readonly<Faults> = Object.freeze(noFaults());

function parseCount(value: string | undefined, max: number): number | undefined {
  if (value === undefined || !/^\d{1,9}$/.test(value.trim())) return undefined;
  return Math.min(Number(value.trim()), max);
}

/**
 * Parses a fault spec such as `delay=200,status=429` into `into` (later names win).
 * Unknown names and malformed values are ignored.
 */
export function parseFaultSpec(spec: string, into: Faults): Faults {
  for (const item of spec.split(',')) {
    const eq = item.indexOf('=');
    const name = (eq === -1 ? item : item.slice(0, eq)).trim().toLowerCase();
    const value = eq === -1 ? undefined : item.slice(eq + 1);
    switch (name) {
      case 'delay': {
        const ms = parseCount(value, MAX_WAIT_MS);
        if (ms !== undefined) into.delay = ms;
        break;
      }
      case 'status': {
        const status = parseCount(value, 999);
        if (status !== undefined && status >= 400 && status <= 599) into.status = status;
        break;
      }
      case 'reset':
        into.reset = true;
        break;
      case 'reset-mid-stream':
        into.resetMidStream = true;
        break;
      case 'malformed':
        into.malformed = true;
        break;
      case 'truncate':
        into.truncate = true;
        break;
      case 'chunk-delay': {
        const ms = parseCount(value, MAX_WAIT_MS);
        if (ms !== undefined) into.chunkDelay = ms;
        break;
      }
      case 'stall': {
        const ms = parseCount(value, MAX_WAIT_MS);
        if (ms !== undefined) into.stall = ms;
        break;
      }
      case 'redirect':
        into.redirect = true;
        break;
      case 'tokens': {
        const n = parseCount(value, MAX_TOKENS);
        if (n !== undefined) into.tokens = n;
        break;
      }
      default:
        // unknown fault names are ignored on purpose
        break;
    }
  }
  return into;
}

/** Collects every `[[mock:SPEC]]` spec found in `text` into `specs`. */
export function collectDirectives(text: string, specs: string[]): void {
  for (const match of text.matchAll(DIRECTIVE_PATTERN)) {
    if (match[1] !== undefined) specs.push(match[1]);
  }
}
