import type { GatewayConfig } from '../config/types.js';
import { adminConnectionFrom, createAdminClient, type AdminClient } from './admin-client.js';
import { configFor } from './config-arg.js';

/** What a management command works on: the store directly, or a running gateway's admin API. */
export type CommandTarget =
  | { kind: 'store'; config: GatewayConfig }
  | { kind: 'api'; client: AdminClient };

/**
 * The target the flags ask for: the admin API with `--admin-url` (or `KEYWARDEN_ADMIN_URL`
 * without `--config`), else the store of `--config` / `KEYWARDEN_CONFIG` / demo mode.
 * Through the API every replica sees a change at once and the server audits the token's owner.
 */
export function commandTarget(flags: { config?: string; adminUrl?: string; adminTokenFile?: string }, env: NodeJS.ProcessEnv = process.env): CommandTarget {
  const connection = adminConnectionFrom({
    ...(flags.adminUrl !== undefined ? { adminUrl: flags.adminUrl } : {}),
    ...(flags.adminTokenFile !== undefined ? { adminTokenFile: flags.adminTokenFile } : {}),
    configFlag: flags.config !== undefined,
  }, env);
  if (connection) return { kind: 'api', client: createAdminClient(connection) };
  return { kind: 'store', config: configFor(flags.config, env).config };
}
