import { openStore } from '../../main.js';
import { createActivityService } from '../../services/activity-service.js';
import { CliError, EXIT_OK, EXIT_USAGE, printTable } from '../output.js';
import { fetchRemoteUsage, type UsageReport } from '../remote-services.js';
import type { CommandTarget } from '../target.js';
import { parseWhen } from './audit.js';
import { echoName } from '../../policy/schema-errors.js';

export interface UsageFlags {
  json: boolean;
  tenant?: string;
  since?: string;
  until?: string;
}

const DAY_MS = 86_400_000;

/** Usage per tenant and model from the store's ledger, through the service behind `GET /admin/usage`. */
async function localUsage(target: Extract<CommandTarget, { kind: 'store' }>, filter: { tenant?: string; since: number; until: number }): Promise<UsageReport> {
  const store = openStore(target.config);
  try {
    let tenantIds: string[] | undefined;
    if (filter.tenant !== undefined) {
      const tenant = await store.tenants.getByName(filter.tenant);
      if (!tenant) throw new CliError(`no tenant named "${echoName(filter.tenant, '(name)')}"`);
      tenantIds = [tenant.id];
    }
    const data = await createActivityService({ store }).usage({ ...(tenantIds ? { tenantIds } : {}), since: filter.since, until: filter.until });
    return { since: new Date(filter.since).toISOString(), until: new Date(filter.until).toISOString(), data };
  } finally {
    await store.close();
  }
}

/**
 * `keywarden usage [--tenant NAME] [--since 24h|DATE] [--until DATE] [--json]`: requests,
 * errors (requests whose outcome was not a success), tokens and cost per tenant and model over
 * a window (the last 24 hours by default), from the store or through the admin API (where a
 * tenant-scoped token sees its tenants only).
 */
export async function usageCommand(target: CommandTarget, rest: readonly string[], flags: UsageFlags): Promise<number> {
  if (rest.length > 0) throw new CliError('usage: keywarden usage [--tenant NAME] [--since 24h|DATE] [--until DATE] [--json]', EXIT_USAGE);
  const now = Date.now();
  const since = flags.since !== undefined ? parseWhen(flags.since, '--since', now) : now - DAY_MS;
  const until = flags.until !== undefined ? parseWhen(flags.until, '--until', now) : now;
  if (since >= until) throw new CliError('--since must be before --until', EXIT_USAGE);
  const filter = { ...(flags.tenant !== undefined ? { tenant: flags.tenant } : {}), since, until };
  const report = target.kind === 'api' ? await fetchRemoteUsage(target.client, filter) : await localUsage(target, filter);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT_OK;
  }
  process.stdout.write(`usage from ${report.since} to ${report.until}\n`);
  if (report.data.length === 0) process.stdout.write('no requests in this window\n');
  // fixed decimals: a small cost would otherwise print as 1.2e-7
  else printTable(report.data.map((r) => ({ ...r, cost_usd: Number(r.cost_usd).toFixed(6) })), ['tenant', 'model', 'requests', 'errors', 'input_tokens', 'output_tokens', 'cost_usd']);
  return EXIT_OK;
}
