import { openServices } from '../../main.js';
import { parseDuration } from '../../config/duration.js';
import { createAdminTokenService } from '../../services/admin-token-service.js';
import { CliError, EXIT_OK, EXIT_USAGE, printTable } from '../output.js';
import { createRemoteAdminTokenOperations, type AdminTokenOperations } from '../remote-services.js';
import type { CommandTarget } from '../target.js';

export interface AdminTokenFlags {
  json: boolean;
  owner?: string;
  role?: string;
  tenants?: readonly string[];
  expires?: string;
}

const USAGE = 'usage: keywarden admin-tokens issue --owner NAME --role viewer|operator|admin [--tenant NAME]... [--expires 90d] [--json]\n'
  + '       keywarden admin-tokens list [--json] | revoke TOKEN_ID';

/** Runs `fn` with admin token operations on the store (same hash key as the gateway) or over the admin API. */
async function withTokens<T>(target: CommandTarget, fn: (tokens: AdminTokenOperations) => Promise<T>): Promise<T> {
  if (target.kind === 'api') return fn(createRemoteAdminTokenOperations(target.client));
  const { store, hashKey } = await openServices(target.config);
  try {
    return await fn(createAdminTokenService({ store, hashKey }));
  } finally {
    await store.close();
  }
}

/**
 * `keywarden admin-tokens issue|list|revoke`: admin API tokens per person or automation, each
 * with a role (viewer < operator < admin) and optionally limited to some tenants. `issue`
 * shows the token once: the last line of stdout, or `token` in the JSON.
 */
export async function adminTokensCommand(target: CommandTarget, action: string | undefined, rest: readonly string[], flags: AdminTokenFlags): Promise<number> {
  switch (action) {
    case 'issue': {
      if (rest.length > 0 || flags.owner === undefined || flags.role === undefined) throw new CliError(USAGE, EXIT_USAGE);
      let expiresInMs: number | undefined;
      if (flags.expires !== undefined) {
        expiresInMs = parseDuration(flags.expires);
        if (expiresInMs === undefined || expiresInMs <= 0) throw new CliError('--expires must be a duration such as 12h or 90d', EXIT_USAGE);
      }
      const issued = await withTokens(target, (tokens) => tokens.issue({
        owner: flags.owner as string, role: flags.role as string,
        ...(flags.tenants !== undefined && flags.tenants.length > 0 ? { tenants: flags.tenants } : {}),
        ...(expiresInMs !== undefined ? { expiresInMs } : {}),
      }, 'cli'));
      if (flags.json) process.stdout.write(`${JSON.stringify(issued, null, 2)}\n`);
      else {
        const scope = issued.tenants === null ? 'every tenant' : `tenants ${issued.tenants.join(', ')}`;
        process.stderr.write(`issued admin token ${issued.id} (${issued.role}) for ${issued.owner}, ${scope}${issued.expires_at ? `, expires ${issued.expires_at}` : ''}; it is shown once:\n`);
        // the token is shown once: the last line of stdout
        process.stdout.write(`${issued.token}\n`);
      }
      return EXIT_OK;
    }
    case 'list': {
      if (rest.length > 0) throw new CliError(USAGE, EXIT_USAGE);
      const all = await withTokens(target, (tokens) => tokens.list());
      if (flags.json) process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
      else printTable(all.map((t) => ({ ...t, tenants: t.tenants === null ? '*' : t.tenants.join(',') })), ['id', 'owner', 'role', 'tenants', 'status', 'created_at', 'expires_at']);
      return EXIT_OK;
    }
    case 'revoke': {
      const [id, ...extra] = rest;
      if (id === undefined || extra.length > 0) throw new CliError(USAGE, EXIT_USAGE);
      const revoked = await withTokens(target, (tokens) => tokens.revoke(id, 'cli'));
      if (flags.json) process.stdout.write(`${JSON.stringify(revoked, null, 2)}\n`);
      else process.stdout.write(`admin token ${revoked.id} (${revoked.owner}) revoked\n`);
      return EXIT_OK;
    }
    default:
      throw new CliError(USAGE, EXIT_USAGE);
  }
}
