import { EventEmitter } from 'node:events';

/**
 * Cancels one request's upstream call when its client goes away. A plain EventEmitter with
 * `aborted`, which undici accepts as a `signal`: an AbortController costs several
 * microseconds to create and listen to (EventTarget machinery) on every request, and this path
 * needs only one listener, once.
 */
export class RequestAbort extends EventEmitter {
  aborted = false;
  reason: Error | undefined;

  /** The signal to hand to the upstream client (this object). */
  get signal(): RequestAbort {
    return this;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new Error('the client closed the connection');
    this.emit('abort');
  }
}

/** What the upstream client and the relay read: `aborted`, and an `abort` event. */
export type AbortSignalLike = Pick<RequestAbort, 'aborted' | 'reason'> & EventEmitter;
