/** Internal types shared by the mock provider's endpoint builders and its HTTP server. */
import type { Faults } from './faults.js';
import type { TextScan } from './text.js';

export type MockProviderKind = 'openai' | 'anthropic';

/** What an endpoint builder decided to send; the server does the transport and the faults. */
export type MockAnswer =
  | { kind: 'json'; status: number; body: string; headers?: Record<string, string> }
  /** SSE frames, each complete (`...\n\n`); the last one is the terminal event. */
  | { kind: 'stream'; frames: string[] };

/** Everything a builder needs; no I/O. */
export interface AnswerInput {
  body: Record<string, unknown>;
  scan: TextScan;
  faults: Readonly<Faults>;
  /** A short per-server unique suffix for ids. */
  seq: string;
  /** Unix seconds. */
  now: number;
}

/** One routed endpoint. */
export interface EndpointSpec {
  provider: MockProviderKind;
  /** Counts the request text and finds directives; absent for bodiless endpoints. */
  scan?: (body: Record<string, unknown>) => TextScan;
  answer: (input: AnswerInput) => MockAnswer;
}

export const JSON_HEADERS = 'application/json';
export const SSE_CONTENT_TYPE = 'text/event-stream; charset=utf-8';

export function jsonAnswer(status: number, payload: unknown, headers?: Record<string, string>): MockAnswer {
  return headers === undefined
    ? { kind: 'json', status, body: JSON.stringify(payload) }
    : { kind: 'json', status, body: JSON.stringify(payload), headers };
}

/** An unnamed SSE frame (`data: …`), as OpenAI chat streams use. */
export function sseData(payload: unknown): string {
  return 'data: ' + JSON.stringify(payload) + '\n\n';
}

/** A named SSE frame (`event: NAME` + `data: …`), as Responses and Anthropic streams use. */
export function sseEvent(name: string, payload: unknown): string {
  return 'event: ' + name + '\ndata: ' + JSON.stringify(payload) + '\n\n';
}
