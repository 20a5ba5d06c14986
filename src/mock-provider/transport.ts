/**
 * Writing a mock answer onto the wire, with the transport faults (malformed, truncate,
 * reset-mid-stream, chunk-delay, stall) applied. Kept apart from the builders so that they stay
 * pure, and from the server so that the hot path is easy to read.
 */
import type { ServerResponse } from 'node:http';
import type { Faults } from './faults.js';
import { JSON_HEADERS, SSE_CONTENT_TYPE } from './types.js';

/** Waits `ms`, resolving early if the response closes; the server tracks the timer for close(). */
export type Wait = (ms: number, res: ServerResponse) => Promise<void>;

/** A body that starts like JSON and is not (the `malformed` fault). */
const MALFORMED_BODY = '{"id":"mock-malformed","object":<<this is not JSON>>';

/** True once the client is gone: nothing more should be written. */
export function isGone(res: ServerResponse): boolean {
  const socket = res.socket;
  return res.destroyed || socket === null || socket.destroyed;
}

/** Sends a JSON body; on a 200, `malformed` and `truncate` corrupt it (content-length stays exact). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  faults: Readonly<Faults>,
  headers: Record<string, string | number>,
): void {
  let payload: string | Buffer = body;
  if (status === 200) {
    if (faults.malformed) payload = MALFORMED_BODY;
    else if (faults.truncate) {
      const bytes = Buffer.from(body);
      payload = bytes.subarray(0, Math.floor(bytes.length / 2));
    }
  }
  headers['content-type'] = JSON_HEADERS;
  headers['content-length'] = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  res.writeHead(status, headers);
  res.end(payload);
}

/** The first half of a frame's data line, keeping its `event:` line: not valid JSON. */
function brokenCopy(frame: string): string {
  const at = frame.indexOf('data: ') + 6;
  const data = frame.slice(at, frame.length - 2);
  return frame.slice(0, at) + data.slice(0, Math.ceil(data.length / 2)) + '\n\n';
}

/**
 * Sends SSE frames (the last one is the terminal event). Faults act at the stream's midpoint,
 * `floor(frames / 2)` events in: `reset-mid-stream` destroys the socket there, `malformed`
 * inserts a copy of the next event with its JSON cut in half, `stall=MS` pauses there;
 * `chunk-delay=MS` pauses before every event after the first; `truncate` drops the terminal event
 * and ends the response cleanly.
 */
export async function sendStream(
  res: ServerResponse,
  frames: string[],
  faults: Readonly<Faults>,
  headers: Record<string, string | number>,
  wait: Wait,
): Promise<void> {
  headers['content-type'] = SSE_CONTENT_TYPE;
  headers['cache-control'] = 'no-cache';
  res.writeHead(200, headers);
  const list = faults.truncate ? frames.slice(0, -1) : frames;
  const paced = faults.chunkDelay !== undefined || faults.stall !== undefined;
  if (!paced && !faults.resetMidStream && !faults.malformed) {
    // the common case: one write, no timers
    res.end(list.join(''));
    return;
  }
  const mid = Math.max(1, Math.floor(frames.length / 2));
  for (let i = 0; i < list.length; i++) {
    if (i > 0 && faults.chunkDelay !== undefined && faults.chunkDelay > 0) {
      await wait(faults.chunkDelay, res);
      if (isGone(res)) return;
    }
    const frame = list[i] as string;
    if (i === mid - 1 && faults.resetMidStream) {
      // destroy only once the events before the midpoint have reached the kernel
      res.write(frame, () => res.socket?.destroy());
      return;
    }
    if (i === mid) {
      if (faults.malformed) res.write(brokenCopy(frame));
      if (faults.stall !== undefined && faults.stall > 0) {
        await wait(faults.stall, res);
        if (isGone(res)) return;
      }
    }
    res.write(frame);
  }
  res.end();
}
