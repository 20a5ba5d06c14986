import { randomUUID } from 'node:crypto';
import type { AuditEvent, AuditRow, IncidentRecord, ProviderKeyRecord, Store, UsageRecord } from '../store/types.js';
import { ServiceError } from './tenant-service.js';
import { echoName } from '../policy/schema-errors.js';

/** What to contain: exactly one of a provider key fingerprint, a tenant key id or a tenant name. */
export interface ContainTarget {
  providerKey?: string;
  tenantKey?: string;
  tenant?: string;
}

export interface IncidentView {
  id: string;
  kind: IncidentRecord['kind'];
  target: string;
  target_ids: string[];
  tenant_id: string | null;
  provider: string | null;
  since: string;
  contained_at: string;
  actor: string;
  details: IncidentRecord['details'];
}

/** The blast radius of an incident, from the usage ledger and the audit chain (ids and HMACs, never content). */
export interface BlastRadius {
  incident: IncidentView;
  window: { since: string; until: string };
  requests: { total: number; by_outcome: Record<string, number>; by_status: Record<string, number> };
  tenants: Array<{ id: string; name: string | null; requests: number }>;
  keys: Array<{ id: string; tenant_id: string; requests: number }>;
  /** Client addresses as stored: `hmac-sha256:…` under the audit salt (never the address). */
  clients: Array<{ hmac: string; requests: number }>;
  models: Array<{ model: string; requests: number; input_tokens: number; output_tokens: number; cost_nano_usd: number }>;
  tokens: { input: number; output: number; cached_input: number; total: number };
  cost: { nano_usd: number; usd: string };
  first_use: string | null;
  last_use: string | null;
  anomalies: Array<{ seq: number; ts: string; kind: string; target: string | null; tenant: string | null; key: string | null; request_id: string | null }>;
  /** True when the ledger window held more rows than one investigation reads. */
  truncated: boolean;
}

const FINGERPRINT = /^[0-9a-f]{16}$/;
const KEY_ID = /^[a-z0-9]{16}$/;
const INCIDENT_ID = /^inc_[0-9a-f]{16}$/;
const MAX_ROWS = 1_000_000;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** nano-USD as a decimal dollar string, exact (no float rounding). */
export function nanoUsdText(nano: number): string {
  const sign = nano < 0 ? '-' : '';
  const abs = BigInt(Math.abs(Math.trunc(nano)));
  const whole = abs / 1_000_000_000n;
  const frac = (abs % 1_000_000_000n).toString().padStart(9, '0');
  return `${sign}${whole}.${frac}`;
}

function view(r: IncidentRecord): IncidentView {
  return {
    id: r.id, kind: r.kind, target: r.target, target_ids: r.targetIds, tenant_id: r.tenantId, provider: r.provider,
    since: iso(r.since), contained_at: iso(r.containedAt), actor: r.actor, details: r.details,
  };
}

function count<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/**
 * Incident response shared by the CLI and the admin API: contain a leaked provider key, tenant
 * key or tenant at once (every later request that depends on it is refused), then investigate
 * its blast radius from the records and draft the postmortem. Audit rows hold ids and
 * fingerprints only.
 */
export function createIncidentService(options: { store: Store; now?: () => number; afterContain?: () => Promise<void> }) {
  const { store } = options;
  const now = options.now ?? Date.now;

  function event(actor: string, action: string, target: string | null, details: AuditEvent['details']): AuditEvent {
    return { ts: now(), actor, action, target, outcome: 'success', requestId: null, details };
  }

  async function requireIncident(id: string): Promise<IncidentRecord> {
    const incident = INCIDENT_ID.test(id) ? await store.incidents.get(id) : undefined;
    if (!incident) throw new ServiceError('not_found', 'no incident with this id');
    return incident;
  }

  async function containProviderKey(fingerprint: string, actor: string, incidentId: string): Promise<Omit<IncidentRecord, 'id' | 'actor' | 'containedAt'>> {
    if (!FINGERPRINT.test(fingerprint)) throw new ServiceError('invalid', 'a provider key fingerprint is 16 hex characters (see keywarden provider-keys list)');
    const rows = (await store.providerKeys.list()).filter((r) => r.fingerprint === fingerprint);
    if (rows.length === 0) throw new ServiceError('not_found', 'no provider key with this fingerprint in the register');
    const at = now();
    const revoked: ProviderKeyRecord[] = [];
    for (const row of rows) {
      if (row.state === 'revoked') continue;
      const changed = await store.providerKeys.revoke(row.id, at, event(actor, 'provider_key.revoke', row.id, {
        provider: row.provider, fingerprint: row.fingerprint, reason: 'incident', incident: incidentId, was: row.state,
      }));
      if (changed) revoked.push(row);
    }
    const providers = [...new Set(rows.map((r) => r.provider))].sort();
    const active = await store.providerKeys.active();
    const details: IncidentRecord['details'] = { revoked: revoked.length, already_revoked: rows.length - revoked.length, providers: providers.join(',') };
    // per provider: the other current key it switches to, or null (requests get 503 provider_key_contained)
    for (const p of providers) details[`switched_to.${p}`] = active.find((r) => r.provider === p && r.state === 'current')?.id ?? null;
    return {
      kind: 'provider_key', target: fingerprint, targetIds: rows.map((r) => r.id), tenantId: null, provider: providers.join(','),
      since: Math.min(...rows.map((r) => r.createdAt)),
      details,
    };
  }

  async function containTenantKey(keyId: string, actor: string, incidentId: string): Promise<Omit<IncidentRecord, 'id' | 'actor' | 'containedAt'>> {
    const key = KEY_ID.test(keyId) ? await store.keys.get(keyId) : undefined;
    if (!key) throw new ServiceError('not_found', 'no tenant key with this id');
    const wasRevoked = key.revokedAt !== null;
    if (!wasRevoked) await store.keys.revoke(key.id, now(), event(actor, 'key.revoke', key.id, { tenant: key.tenantId, reason: 'incident', incident: incidentId }));
    return {
      kind: 'tenant_key', target: key.id, targetIds: [key.id], tenantId: key.tenantId, provider: null, since: key.createdAt,
      details: { already_revoked: wasRevoked },
    };
  }

  async function containTenant(name: string, actor: string, incidentId: string): Promise<Omit<IncidentRecord, 'id' | 'actor' | 'containedAt'>> {
    const tenant = await store.tenants.getByName(name);
    if (!tenant) throw new ServiceError('not_found', `no tenant named "${echoName(name, '(name)')}"`);
    const wasDisabled = tenant.status === 'disabled';
    if (!wasDisabled) await store.tenants.setStatus(tenant.id, 'disabled', event(actor, 'tenant.disable', tenant.id, { reason: 'incident', incident: incidentId }));
    return {
      kind: 'tenant', target: tenant.name, targetIds: [tenant.id], tenantId: tenant.id, provider: null, since: tenant.createdAt,
      details: { already_disabled: wasDisabled },
    };
  }

  async function investigate(id: string, opts: { since?: number; until?: number } = {}): Promise<BlastRadius> {
    const incident = await requireIncident(id);
    const since = opts.since ?? incident.since;
    const until = opts.until ?? now() + 1;
    let rows: UsageRecord[];
    if (incident.kind === 'tenant_key') rows = await store.incidents.usageWindow({ keyId: incident.targetIds[0] as string, since, until, limit: MAX_ROWS + 1 });
    else if (incident.kind === 'tenant') rows = await store.incidents.usageWindow({ tenantId: incident.targetIds[0] as string, since, until, limit: MAX_ROWS + 1 });
    else {
      // requests refused for want of a provider key never reached the provider with the contained key
      rows = [];
      for (const provider of (incident.provider ?? '').split(',').filter(Boolean)) {
        rows.push(...await store.incidents.usageWindow({ provider, since, until, limit: MAX_ROWS + 1 }));
      }
      // a row that names its provider key counts only when it is one of the contained keys; a row
      // without one counts unless it was refused before reaching the provider (rows written before
      // the ledger recorded provider keys have none, and the contained key may have served them)
      const contained = new Set(incident.targetIds);
      rows = rows.filter((r) => r.errorCode !== 'provider_key_contained' && r.errorCode !== 'provider_key_unavailable')
        .filter((r) => (r.providerKeyId ? contained.has(r.providerKeyId) : r.outcome !== 'refused'))
        .sort((a, b) => a.ts - b.ts);
    }
    const truncated = rows.length > MAX_ROWS;
    if (truncated) rows = rows.slice(0, MAX_ROWS);

    const byOutcome = new Map<string, number>();
    const byStatus = new Map<string, number>();
    const tenants = new Map<string, number>();
    const keys = new Map<string, { tenant: string; n: number }>();
    const clients = new Map<string, number>();
    const models = new Map<string, { requests: number; input: number; output: number; cost: number }>();
    const tokens = { input: 0, output: 0, cached_input: 0, total: 0 };
    let cost = 0;
    let first: number | null = null;
    let last: number | null = null;
    for (const r of rows) {
      count(byOutcome, r.outcome);
      count(byStatus, String(r.status));
      count(tenants, r.tenantId);
      const k = keys.get(r.keyId) ?? { tenant: r.tenantId, n: 0 };
      k.n += 1;
      keys.set(r.keyId, k);
      if (r.clientHmac) count(clients, r.clientHmac);
      const m = models.get(r.model ?? '(none)') ?? { requests: 0, input: 0, output: 0, cost: 0 };
      m.requests += 1;
      m.input += r.inputTokens;
      m.output += r.outputTokens;
      m.cost += r.costNanoUsd;
      models.set(r.model ?? '(none)', m);
      tokens.input += r.inputTokens;
      tokens.output += r.outputTokens;
      tokens.cached_input += r.cachedInputTokens;
      cost += r.costNanoUsd;
      first = first === null ? r.ts : Math.min(first, r.ts);
      last = last === null ? r.ts : Math.max(last, r.ts);
    }
    tokens.total = tokens.input + tokens.output;

    // anomalies raised in the window about the tenants or keys involved (or the contained target)
    const tenantIds = new Set([...tenants.keys(), ...(incident.tenantId ? [incident.tenantId] : [])]);
    const keyIds = new Set([...keys.keys(), ...(incident.kind === 'tenant_key' ? incident.targetIds : [])]);
    const anomalies: BlastRadius['anomalies'] = [];
    let afterSeq = 0;
    for (;;) {
      const page: AuditRow[] = await store.auditTrail.range({ since, until, afterSeq, limit: 1000 });
      for (const a of page) {
        if (!a.action.startsWith('anomaly.')) continue;
        const tenant = typeof a.details['tenant'] === 'string' ? a.details['tenant'] : null;
        const key = typeof a.details['key'] === 'string' ? a.details['key'] : null;
        const relevant = (tenant !== null && tenantIds.has(tenant)) || (key !== null && keyIds.has(key))
          || (a.target !== null && (tenantIds.has(a.target) || keyIds.has(a.target)));
        if (relevant) anomalies.push({ seq: a.seq, ts: iso(a.ts), kind: a.action.slice('anomaly.'.length), target: a.target, tenant, key, request_id: a.requestId });
      }
      if (page.length < 1000) break;
      afterSeq = (page[page.length - 1] as AuditRow).seq;
    }

    const names = new Map((await store.tenants.list()).map((t) => [t.id, t.name]));
    const desc = <T extends { requests: number }>(a: T, b: T) => b.requests - a.requests;
    return {
      incident: view(incident),
      window: { since: iso(since), until: iso(until) },
      requests: { total: rows.length, by_outcome: Object.fromEntries(byOutcome), by_status: Object.fromEntries(byStatus) },
      tenants: [...tenants].map(([tid, n]) => ({ id: tid, name: names.get(tid) ?? null, requests: n })).sort(desc),
      keys: [...keys].map(([kid, v]) => ({ id: kid, tenant_id: v.tenant, requests: v.n })).sort(desc),
      clients: [...clients].map(([hmac, n]) => ({ hmac, requests: n })).sort(desc),
      models: [...models].map(([model, v]) => ({ model, requests: v.requests, input_tokens: v.input, output_tokens: v.output, cost_nano_usd: v.cost })).sort(desc),
      tokens,
      cost: { nano_usd: cost, usd: nanoUsdText(cost) },
      first_use: first === null ? null : iso(first),
      last_use: last === null ? null : iso(last),
      anomalies,
      truncated,
    };
  }

  return {
    /**
     * Contains the target at once (revokes the key or disables the tenant, audited) and records
     * the incident. A provider key is revoked in the register; the gateway's poll (250 ms) stops
     * using it and serves the provider's other current key, or answers 503 `provider_key_contained`.
     */
    async contain(target: ContainTarget, actor: string): Promise<IncidentView> {
      const given = [target.providerKey, target.tenantKey, target.tenant].filter((v) => v !== undefined);
      if (given.length !== 1) throw new ServiceError('invalid', 'give exactly one of --provider-key FINGERPRINT, --tenant-key KEY_ID or --tenant NAME');
      const id = `inc_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
      const contained = target.providerKey !== undefined ? await containProviderKey(target.providerKey, actor, id)
        : target.tenantKey !== undefined ? await containTenantKey(target.tenantKey, actor, id)
          : await containTenant(target.tenant as string, actor, id);
      const record: IncidentRecord = { id, actor, containedAt: now(), ...contained };
      await store.incidents.create(record, event(actor, 'incident.contain', id, {
        kind: record.kind, target: record.target, tenant: record.tenantId, provider: record.provider,
      }));
      await options.afterContain?.();
      return view(record);
    },

    async list(): Promise<IncidentView[]> {
      return (await store.incidents.list()).map(view);
    },

    async get(id: string): Promise<IncidentView> {
      return view(await requireIncident(id));
    },

    investigate,

    /** A postmortem draft in Markdown: timeline, the blast radius, and sections to fill in. */
    async report(id: string, opts: { since?: number } = {}): Promise<string> {
      return renderReport(await investigate(id, opts));
    },
  };
}

export type IncidentService = ReturnType<typeof createIncidentService>;

const KIND_TEXT: Record<IncidentRecord['kind'], string> = {
  provider_key: 'provider key', tenant_key: 'tenant key', tenant: 'tenant',
};

/** The blast radius as operator-readable text. */
export function renderInvestigation(b: BlastRadius): string {
  const lines = [
    `incident ${b.incident.id}: ${KIND_TEXT[b.incident.kind]} ${b.incident.target} contained at ${b.incident.contained_at} by ${b.incident.actor}`,
    `window: ${b.window.since} .. ${b.window.until}`,
    `requests: ${b.requests.total} (${Object.entries(b.requests.by_outcome).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})`,
    `first use: ${b.first_use ?? '-'}`,
    `last use: ${b.last_use ?? '-'}`,
    `tokens: input ${b.tokens.input}, output ${b.tokens.output}, cached input ${b.tokens.cached_input}, total ${b.tokens.total}`,
    `cost: $${b.cost.usd} (${b.cost.nano_usd} nano-USD)`,
    `tenants (${b.tenants.length}):`, ...b.tenants.map((t) => `  ${t.name ?? t.id} (${t.id}): ${t.requests}`),
    `keys (${b.keys.length}):`, ...b.keys.map((k) => `  ${k.id} (tenant ${k.tenant_id}): ${k.requests}`),
    `models (${b.models.length}):`, ...b.models.map((m) => `  ${m.model}: ${m.requests} requests, ${m.input_tokens} in / ${m.output_tokens} out, $${nanoUsdText(m.cost_nano_usd)}`),
    `client addresses (${b.clients.length}, as HMACs):`, ...b.clients.map((c) => `  ${c.hmac}: ${c.requests}`),
    // a request id is the client's choice and may be shared across tenants: never shown without its tenant
    `anomalies (${b.anomalies.length}):`, ...b.anomalies.map((a) => `  ${a.ts} ${a.kind} ${a.target ?? ''}${a.request_id ? ` request ${a.request_id} (tenant ${a.tenant ?? '-'})` : ''}`),
  ];
  if (b.truncated) lines.push('note: the window holds more ledger rows than one investigation reads; narrow it with --since');
  return `${lines.join('\n')}\n`;
}

/** The postmortem draft (Markdown). Ids and HMACs only; never content or key material. */
export function renderReport(b: BlastRadius): string {
  const i = b.incident;
  const table = (head: string[], rows: Array<Array<string | number>>) => rows.length === 0 ? '_none_\n'
    : `| ${head.join(' | ')} |\n| ${head.map(() => '---').join(' | ')} |\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n`;
  const timeline: Array<[string, string]> = [];
  if (b.first_use) timeline.push([b.first_use, 'first recorded use in the window']);
  for (const a of b.anomalies) timeline.push([a.ts, `anomaly \`${a.kind}\` raised${a.request_id ? ` (request \`${a.request_id}\` of tenant \`${a.tenant ?? '-'}\`)` : ''}`]);
  if (b.last_use) timeline.push([b.last_use, 'last recorded use']);
  timeline.push([i.contained_at, `contained: ${KIND_TEXT[i.kind]} \`${i.target}\` by \`${i.actor}\``]);
  timeline.sort((x, y) => x[0].localeCompare(y[0]));
  return `# Postmortem draft: incident ${i.id}

_Draft generated by keywarden from the usage ledger and the audit chain. Identifiers and HMACs only; edit before sharing._

## Summary

- What was contained: ${KIND_TEXT[i.kind]} \`${i.target}\`${i.provider ? ` (provider \`${i.provider}\`)` : ''}
- Contained at: ${i.contained_at} by \`${i.actor}\`
- Containment: ${Object.entries(i.details).map(([k, v]) => `${k}=${String(v)}`).join(', ') || '-'}
- Window investigated: ${b.window.since} to ${b.window.until}

## Timeline (UTC)

${table(['time', 'event'], timeline.map(([t, e]) => [t, e]))}
## Blast radius

- Requests: ${b.requests.total} (${Object.entries(b.requests.by_outcome).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'})
- First use: ${b.first_use ?? '-'}
- Last use: ${b.last_use ?? '-'}
- Tokens: ${b.tokens.input} input, ${b.tokens.output} output, ${b.tokens.cached_input} cached input, ${b.tokens.total} total
- Cost: $${b.cost.usd} (${b.cost.nano_usd} nano-USD)

### Tenants

${table(['tenant', 'id', 'requests'], b.tenants.map((t) => [t.name ?? '-', `\`${t.id}\``, t.requests]))}
### Keys

${table(['key', 'tenant id', 'requests'], b.keys.map((k) => [`\`${k.id}\``, `\`${k.tenant_id}\``, k.requests]))}
### Models

${table(['model', 'requests', 'input tokens', 'output tokens', 'cost (USD)'], b.models.map((m) => [m.model, m.requests, m.input_tokens, m.output_tokens, nanoUsdText(m.cost_nano_usd)]))}
### Client addresses (HMAC)

${table(['client (hmac)', 'requests'], b.clients.map((c) => [`\`${c.hmac}\``, c.requests]))}
### Anomalies

${table(['time', 'kind', 'target', 'tenant id', 'request'], b.anomalies.map((a) => [a.ts, a.kind, a.target ? `\`${a.target}\`` : '-', a.tenant ? `\`${a.tenant}\`` : '-', a.request_id ? `\`${a.request_id}\`` : '-']))}
## Root cause

_How was the key or tenant exposed?_

## Remediation

- [ ] ${i.kind === 'provider_key' ? 'Rotate the provider key (`keywarden provider-keys rotate PROVIDER --from REF`) and revoke it at the provider (`provider-keys revoke KEY_ID --provider-side`).' : i.kind === 'tenant_key' ? 'Issue the tenant a new key (`keywarden keys issue --tenant NAME`) through a safe channel.' : 'Re-enable the tenant (`keywarden tenants enable NAME`) once its keys are replaced.'}
- [ ] Check the clients listed above (\`keywarden audit hash ADDRESS\` gives the HMAC of a known address).
- [ ] Remove the leaked secret from where it was found (\`keywarden scan\`).

## Lessons

- _What went well_
- _What went wrong_
- _Follow-up actions, owners and dates_
`;
}
