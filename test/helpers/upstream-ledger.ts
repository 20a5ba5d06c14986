import { randomUUID } from 'node:crypto';
import type { AuditRow, UsageRecord } from '../../src/store/types.js';
import type { Harness } from './harness.js';

/**
 * Helpers shared by the SDK, upstream-failure and policy tests: ledger and audit look-ups by
 * request id, SSE reading, and a well-formed request id to send.
 */

/** A request id the gateway keeps (it matches `^[A-Za-z0-9._:-]{8,128}$`). */
export function newRequestId(prefix = 'test'): string {
  return `${prefix}-${randomUUID()}`;
}

/**
 * The usage-ledger row of one request. Streams are recorded just after their last byte is
 * written, so the row may land a moment after the client saw the end: poll (bounded) for it.
 */
export async function usageRow(h: Harness, requestId: string, waitMs = 5000): Promise<UsageRecord> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    await h.gateway.writer.flush();
    const rows = await h.gateway.store.records.listUsage({ limit: 1000 });
    const row = rows.find((r) => r.requestId === requestId);
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`no usage row for request ${requestId} within ${waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every usage row of one request (there must be exactly one). */
export async function usageRows(h: Harness, requestId: string): Promise<UsageRecord[]> {
  await h.gateway.writer.flush();
  const rows = await h.gateway.store.records.listUsage({ limit: 1000 });
  return rows.filter((r) => r.requestId === requestId);
}

/** The `request` audit rows of one request. */
export async function auditRows(h: Harness, requestId: string): Promise<AuditRow[]> {
  await h.gateway.writer.flush();
  const rows = await h.gateway.store.records.listAudit({ limit: 100_000 });
  return rows.filter((r) => r.requestId === requestId && r.action === 'request');
}

/** One parsed Server-Sent Event. */
export interface ClientSseEvent {
  event: string | undefined;
  data: string;
}

/** Splits a complete SSE body into events (enough for the gateway's and the mock's framing). */
export function parseSse(text: string): ClientSseEvent[] {
  const events: ClientSseEvent[] = [];
  for (const block of text.replace(/\r\n/g, '\n').split('\n\n')) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    events.push({ event, data: data.join('\n') });
  }
  return events;
}

/** POSTs a JSON body and reads the whole answer as text (streams included). */
export async function postRaw(url: string, key: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}
