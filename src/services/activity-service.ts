import type { AuditQuery, AuditRow, Store } from '../store/types.js';

/** Usage of one tenant and model over a range, as the admin API reports it. */
export interface UsageView {
  tenant: string;
  model: string | null;
  requests: number;
  /** Requests whose outcome was not `success`: refused, upstream errors, aborted or broken streams. */
  errors: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

/** An audit row as the admin API shows it: ids, HMACs and counts, never content. */
export interface AuditView {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  outcome: string;
  request_id: string | null;
  details: AuditRow['details'];
}

export const MAX_AUDIT_PAGE = 1_000;

/**
 * Read-only reports for viewers: usage summed per tenant and model, and pages of the audit
 * trail. `tenantIds` narrows both to those tenants (a scoped admin token's view).
 */
export function createActivityService(options: { store: Store }) {
  const { store } = options;

  async function tenantNames(): Promise<Map<string, string>> {
    return new Map((await store.tenants.list()).map((t) => [t.id, t.name]));
  }

  return {
    async usage(filter: { tenantIds?: readonly string[]; since: number; until: number }): Promise<UsageView[]> {
      const names = await tenantNames();
      return (await store.records.summarizeUsage(filter)).map((r) => ({
        tenant: names.get(r.tenantId) ?? r.tenantId, model: r.model, requests: r.requests, errors: r.errors, input_tokens: r.inputTokens, output_tokens: r.outputTokens,
        cost_usd: r.costNanoUsd / 1e9,
      }));
    },

    /**
     * A page of audit rows, oldest first; `action` keeps rows whose action starts with it
     * (`anomaly.`); `newestFirst` gives the newest `limit` rows instead, with no next page.
     */
    async audit(filter: AuditQuery): Promise<{ data: AuditView[]; next_after: number | null }> {
      const limit = Math.max(1, Math.min(MAX_AUDIT_PAGE, Math.floor(filter.limit)));
      const rows = await store.records.queryAudit({ ...filter, limit });
      const data = rows.map((r) => ({
        seq: r.seq, ts: new Date(r.ts).toISOString(), actor: r.actor, action: r.action, target: r.target, outcome: r.outcome, request_id: r.requestId, details: r.details,
      }));
      return { data, next_after: !filter.newestFirst && rows.length === limit ? (rows[rows.length - 1] as AuditRow).seq : null };
    },
  };
}

export type ActivityService = ReturnType<typeof createActivityService>;
