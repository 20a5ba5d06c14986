import type { SseEvent } from './types.js';

/** An incremental Server-Sent Events parser (see {@link createSseParser}). */
export interface SseParser {
  /** Feeds the next piece of the stream; complete events are emitted synchronously, in order. */
  push(chunk: string): void;
  /**
   * Ends the stream: returns the text of an event that never got its terminating blank line
   * (empty when the stream ended cleanly) and resets the parser. That event is not emitted.
   */
  end(): string;
}

const LF = 10;
const CR = 13;
const SPACE = 32;
const COLON = 58;
const BOM = 0xfeff;

/**
 * Creates an incremental SSE parser for relaying a provider stream.
 *
 * - Lines end with `\n`, `\r\n` or `\r`, and a chunk may end anywhere, including between the `\r`
 *   and `\n` of a CRLF (a trailing `\r` is held back until the next chunk or `end()` decides).
 * - An event ends at a blank line. Every block of lines that a blank line ends is emitted,
 *   including comment-only blocks (`: ping`) and stray blank lines: they come out with
 *   `data: ''` and `event: undefined`, so that their bytes can be relayed as `raw`.
 * - `raw` is the exact received text of the event including its terminating blank line:
 *   concatenating every emitted `raw` and the text `end()` returns gives back the input.
 * - Fields: `data` lines are joined with `\n`, `event` sets the event name (empty → undefined);
 *   one space after the colon is dropped; `id`, `retry` and unknown fields are kept only in `raw`.
 *   A UTF-8 BOM at the very start of the stream is ignored for parsing (kept in `raw`).
 *
 * Cost is linear in the input: each chunk is scanned once with `indexOf`, and the text of an
 * unfinished event or line is only appended to (never re-scanned) until it completes.
 * If `onEvent` throws, the exception propagates out of `push` and the rest of that chunk is lost.
 */
export function createSseParser(onEvent: (e: SseEvent) => void): SseParser {
  /** The previous chunk ended with `\r`, not yet consumed (it may be the first half of a CRLF). */
  let pendingCr = false;
  /** Raw text of the current (unfinished) event that came in earlier chunks. */
  let rawHead = '';
  /** The unfinished line's text that came in earlier chunks. */
  let lineHead = '';
  let data: string | undefined;
  let eventName: string | undefined;
  let atStreamStart = true;

  function fieldLine(line: string): void {
    if (line.charCodeAt(0) === COLON) return; // comment
    const colon = line.indexOf(':');
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === SPACE ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    if (field === 'data') {
      data = data === undefined ? value : `${data}\n${value}`;
    } else if (field === 'event') {
      eventName = value === '' ? undefined : value;
    }
  }

  function dispatch(raw: string): void {
    const event: SseEvent = { event: eventName, data: data ?? '', raw };
    data = undefined;
    eventName = undefined;
    onEvent(event);
  }

  /** Scans `text`; unless `final`, a trailing `\r` is left pending for the next chunk. */
  function scan(text: string, final: boolean): void {
    let limit = text.length;
    if (!final && limit > 0 && text.charCodeAt(limit - 1) === CR) {
      limit -= 1;
      pendingCr = true;
    }
    let pos = 0;
    let rawStart = 0;
    // Cached positions of the next LF / CR at or after `pos` (-1: none left, -2: not searched yet).
    let nextLf = -2;
    let nextCr = -2;
    while (pos < limit) {
      if (nextLf !== -1 && nextLf < pos) nextLf = text.indexOf('\n', pos);
      if (nextCr !== -1 && nextCr < pos) nextCr = text.indexOf('\r', pos);
      let end: number;
      if (nextLf === -1) end = nextCr;
      else if (nextCr === -1) end = nextLf;
      else end = Math.min(nextLf, nextCr);
      if (end === -1 || end >= limit) break;
      const terminatorLength = text.charCodeAt(end) === CR && text.charCodeAt(end + 1) === LF ? 2 : 1;
      let line = lineHead === '' ? text.slice(pos, end) : lineHead + text.slice(pos, end);
      lineHead = '';
      if (atStreamStart) {
        atStreamStart = false;
        if (line.charCodeAt(0) === BOM) line = line.slice(1);
      }
      pos = end + terminatorLength;
      if (line === '') {
        const raw = rawHead === '' ? text.slice(rawStart, pos) : rawHead + text.slice(rawStart, pos);
        rawHead = '';
        rawStart = pos;
        dispatch(raw);
      } else {
        fieldLine(line);
      }
    }
    if (pos < limit) lineHead += text.slice(pos, limit);
    if (rawStart < limit) rawHead += text.slice(rawStart, limit);
  }

  return {
    push(chunk: string): void {
      if (pendingCr) {
        pendingCr = false;
        scan(`\r${chunk}`, false);
      } else if (chunk !== '') {
        scan(chunk, false);
      }
    },
    end(): string {
      if (pendingCr) {
        pendingCr = false;
        scan('\r', true);
      }
      const rest = rawHead;
      rawHead = '';
      lineHead = '';
      data = undefined;
      eventName = undefined;
      atStreamStart = true;
      return rest;
    },
  };
}
