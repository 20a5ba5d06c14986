import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { openServices } from '../../main.js';
import { parseDuration } from '../../config/duration.js';
import { CliError, EXIT_USAGE, printTable } from '../output.js';
import { createRemoteTenantOperations, type TenantOperations } from '../remote-services.js';
import type { CommandTarget } from '../target.js';

const ACTOR = 'cli';

/** Runs `run` with the store's tenant service, or with the same operations over the admin API. */
async function withTenants<T>(target: CommandTarget, run: (tenants: TenantOperations) => Promise<T>): Promise<T> {
  if (target.kind === 'api') return run(createRemoteTenantOperations(target.client));
  const services = await openServices(target.config);
  try {
    return await run(services.tenants);
  } finally {
    await services.store.close();
  }
}

function emit(value: unknown, json: boolean, human: () => void): void {
  if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else human();
}

/** `keywarden tenants create|list|disable|enable|set-policy …` */
export async function tenantsCommand(target: CommandTarget, action: string | undefined, args: readonly string[],
  opts: { json: boolean; policyFile?: string; limits?: Record<string, number | null>; perKey?: boolean }): Promise<void> {
  await withTenants(target, async (tenants) => {
    switch (action) {
      case 'create': {
        const name = requireArg(args[0], 'tenants create NAME');
        const policy = opts.policyFile ? readPolicyFile(opts.policyFile) : undefined;
        const tenant = await tenants.createTenant(name, ACTOR, policy);
        emit(tenant, opts.json, () => process.stdout.write(`created tenant ${tenant.name} (${tenant.id})\n`));
        return;
      }
      case 'list': {
        const all = await tenants.listTenants();
        emit(all, opts.json, () => printTable(all, ['name', 'id', 'status', 'created_at']));
        return;
      }
      case 'disable':
      case 'enable': {
        const name = requireArg(args[0], `tenants ${action} NAME`);
        const tenant = await tenants.setTenantStatus(name, action === 'disable' ? 'disabled' : 'active', ACTOR);
        emit(tenant, opts.json, () => process.stdout.write(`tenant ${tenant.name} is now ${tenant.status}\n`));
        return;
      }
      case 'set-policy': {
        const name = requireArg(args[0], 'tenants set-policy NAME --policy-file FILE');
        if (!opts.policyFile) throw new CliError('tenants set-policy needs --policy-file FILE (YAML or JSON; an empty file clears the override)', EXIT_USAGE);
        const tenant = await tenants.setTenantPolicy(name, readPolicyFile(opts.policyFile) ?? null, ACTOR);
        emit(tenant, opts.json, () => process.stdout.write(`policy of tenant ${tenant.name} updated\n`));
        return;
      }
      case 'set-limits': {
        const name = requireArg(args[0], 'tenants set-limits NAME [--rpm N] [--tpm N] [--tpd N] [--usd-day X] [--usd-month X] [--concurrent N] [--per-key]');
        const limits = opts.limits ?? {};
        if (Object.keys(limits).length === 0) throw new CliError('tenants set-limits needs at least one of --rpm --tpm --tpd --usd-day --usd-month --concurrent', EXIT_USAGE);
        const tenant = await tenants.setTenantLimits(name, opts.perKey ? { key_limits: limits } : { limits }, ACTOR);
        emit(tenant, opts.json, () => {
          const policy = tenant.policy ?? {};
          process.stdout.write(`limits of tenant ${tenant.name}: ${JSON.stringify(policy['limits'] ?? {})}; per key: ${JSON.stringify(policy['key_limits'] ?? {})}\n`);
        });
        return;
      }
      default:
        throw new CliError('usage: keywarden tenants create NAME | list | disable NAME | enable NAME | set-policy NAME --policy-file FILE | set-limits NAME …', EXIT_USAGE);
    }
  });
}

/** `keywarden keys issue|list|revoke …` */
export async function keysCommand(target: CommandTarget, action: string | undefined, args: readonly string[],
  opts: { json: boolean; tenant?: string; expires?: string; label?: string; limits?: Record<string, number | null>; clear?: boolean }): Promise<void> {
  await withTenants(target, async (tenants) => {
    switch (action) {
      case 'issue': {
        const tenant = requireArg(opts.tenant, 'keys issue --tenant NAME [--expires 30d]');
        let expiresInMs: number | undefined;
        if (opts.expires !== undefined) {
          expiresInMs = parseDuration(opts.expires);
          if (expiresInMs === undefined) throw new CliError('--expires must be a duration such as 12h or 30d', EXIT_USAGE);
        }
        const issued = await tenants.issueKey(tenant, ACTOR, { expiresInMs, label: opts.label });
        // the key is shown once: the last line of stdout (or the JSON's "key")
        emit(issued, opts.json, () => {
          process.stderr.write(`issued key ${issued.id} for tenant ${issued.tenant}${issued.expires_at ? `, expires ${issued.expires_at}` : ''}; it is shown once:\n`);
          process.stdout.write(`${issued.key}\n`);
        });
        return;
      }
      case 'list': {
        const keys = await tenants.listKeys(opts.tenant);
        emit(keys, opts.json, () => printTable(keys, ['id', 'tenant', 'status', 'label', 'created_at', 'expires_at']));
        return;
      }
      case 'revoke': {
        const key = await tenants.revokeKey(requireArg(args[0], 'keys revoke KEY_ID'), ACTOR);
        emit(key, opts.json, () => process.stdout.write(`key ${key.id} revoked\n`));
        return;
      }
      case 'set-limits': {
        const id = requireArg(args[0], 'keys set-limits KEY_ID [--rpm N] [--tpm N] [--tpd N] [--usd-day X] [--usd-month X] [--concurrent N] | --clear');
        const given = Object.fromEntries(Object.entries(opts.limits ?? {}).filter(([, v]) => v !== null));
        if (!opts.clear && Object.keys(given).length === 0) throw new CliError('keys set-limits needs limits or --clear', EXIT_USAGE);
        const key = await tenants.setKeyLimits(id, opts.clear ? null : given, ACTOR);
        emit(key, opts.json, () => process.stdout.write(`limits of key ${key.id}: ${key.limits === null ? "the tenant's key_limits" : JSON.stringify(key.limits)}\n`));
        return;
      }
      default:
        throw new CliError('usage: keywarden keys issue --tenant NAME [--expires 30d] [--label L] [--json] | list [--tenant NAME] | revoke KEY_ID', EXIT_USAGE);
    }
  });
}

function requireArg(value: string | undefined, usage: string): string {
  if (value === undefined || value === '') throw new CliError(`usage: keywarden ${usage}`, EXIT_USAGE);
  return value;
}

function readPolicyFile(path: string): unknown {
  try {
    return parse(readFileSync(path, 'utf8')) ?? undefined;
  } catch {
    throw new CliError(`cannot read a policy from ${path}`, EXIT_USAGE);
  }
}
