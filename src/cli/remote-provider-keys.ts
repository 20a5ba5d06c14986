import type { DueView, ProviderKeyOperations, ProviderKeyView, RevokeView, RotateView } from '../services/provider-key-views.js';
import { adminPath, type AdminClient } from './admin-client.js';
import { durationText } from './remote-services.js';
import { CliError, EXIT_USAGE } from './output.js';

/**
 * The provider key register over a running gateway's admin API (an unscoped `admin` token is
 * needed). Rotation runs in the gateway, which reads the new key through its own vault access;
 * the step lines come back in the answer and are printed with `print` once it arrives. Log files
 * are never sent to the gateway to read: `--logs` is a local-only option.
 */
export function createRemoteProviderKeyOperations(client: AdminClient, print: (line: string) => void): ProviderKeyOperations {
  return {
    list: async () => (await client.json<{ data: ProviderKeyView[] }>('GET', '/admin/provider-keys')).data,
    due: async (withinMs: number) => (await client.json<{ data: DueView[] }>('GET', '/admin/provider-keys/due', { query: { within: durationText(withinMs) } })).data,
    async rotate(provider, options) {
      if (options.logs !== undefined && options.logs.length > 0) {
        throw new CliError('--logs cannot be used with --admin-url: the gateway does not read files a client names; run the rotation, then scan the logs where they are (keywarden scan, or provider-keys rotate with --config on that host)', EXIT_USAGE);
      }
      const answer = await client.json<RotateView & { lines?: unknown }>('POST', '/admin/provider-keys/rotate', {
        body: { provider, ...(options.from !== undefined ? { from: options.from } : {}), ...(options.owner !== undefined ? { owner: options.owner } : {}) },
      });
      for (const line of Array.isArray(answer.lines) ? answer.lines : []) if (typeof line === 'string') print(line);
      return { ok: answer.ok, step: answer.step, new_key_id: answer.new_key_id, old_key_id: answer.old_key_id };
    },
    // an unknown id is the API's admin_not_found error, reported as it comes (exit 1)
    revoke: (id, providerSide) => client.json<RevokeView>('POST', adminPath`/admin/provider-keys/${id}/revoke`, { body: { provider_side: providerSide } }),
    setOwner: (id, change) => client.json<ProviderKeyView>('PUT', adminPath`/admin/provider-keys/${id}/owner`, {
      body: {
        ...(change.owner !== undefined ? { owner: change.owner } : {}), ...(change.purpose !== undefined ? { purpose: change.purpose } : {}),
        ...(change.rotateEveryDays !== undefined ? { rotate_every: `${change.rotateEveryDays}d` } : {}),
      },
    }),
  };
}
