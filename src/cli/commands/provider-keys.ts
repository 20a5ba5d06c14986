import { createInterface } from 'node:readline/promises';
import type { GatewayConfig } from '../../config/types.js';
import { parseDuration } from '../../config/duration.js';
import { openStore } from '../../main.js';
import { createConfiguredResolver } from '../../secrets/from-config.js';
import { createProviderKeyService, RotationRefusedError, type ProviderKeyService } from '../../services/provider-key-service.js';
import { createProviderKeyOperations, type ProviderKeyOperations } from '../../services/provider-key-views.js';
import { createRemoteProviderKeyOperations } from '../remote-provider-keys.js';
import type { CommandTarget } from '../target.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, printTable } from '../output.js';
import { echoName } from '../../policy/schema-errors.js';

export interface ProviderKeysFlags {
  json: boolean;
  from?: string;
  logs?: readonly string[];
  yes: boolean;
  providerSide: boolean;
  within?: string;
  owner?: string;
  purpose?: string;
  rotateEvery?: string;
  to?: string;
  dryRun: boolean;
}

const out = (line: string) => process.stdout.write(`${line}\n`);
/** The date part of an ISO date-time, for tables. */
const day = (text: string | null) => (text === null ? null : text.slice(0, 10));

/** The crash hook of the rotation workflow: honoured only under NODE_ENV=test (the crash-resume tests). */
function crashHook(): ((step: number) => void) | undefined {
  const at = process.env['KEYWARDEN_ROTATION_CRASH_AFTER'];
  if (process.env['NODE_ENV'] !== 'test' || at === undefined) return undefined;
  const n = Number(at);
  return (step) => {
    if (step === n) {
      process.stderr.write(`keywarden: simulated crash after step ${step} (KEYWARDEN_ROTATION_CRASH_AFTER)\n`);
      process.exit(70);
    }
  };
}

async function withService<T>(config: GatewayConfig, json: boolean, fn: (service: ProviderKeyService) => Promise<T>): Promise<T> {
  const resolver = await createConfiguredResolver(config.secrets);
  const store = openStore(config);
  try {
    const hook = crashHook();
    // with --json, stdout carries the JSON alone: progress and housekeeping lines go to stderr
    const print = json ? (line: string) => process.stderr.write(`${line}\n`) : out;
    const service = createProviderKeyService({ config, store, resolver, actor: 'cli', print, ...(hook ? { afterStep: hook } : {}) });
    return await fn(service);
  } finally {
    await store.close();
  }
}

function days(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < 86_400_000 || ms % 86_400_000 !== 0) throw new CliError(`${flag} must be a whole number of days such as 60d`, EXIT_USAGE);
  return ms / 86_400_000;
}

async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes || !process.stdin.isTTY) return true;
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** Runs `fn` over the register where the target points: the store (and vault) here, or a gateway's admin API. */
async function withOperations<T>(target: CommandTarget, json: boolean, fn: (ops: ProviderKeyOperations) => Promise<T>): Promise<T> {
  // with --json, stdout carries the JSON alone: progress and housekeeping lines go to stderr
  const print = json ? (line: string) => process.stderr.write(`${line}\n`) : out;
  if (target.kind === 'api') return fn(createRemoteProviderKeyOperations(target.client, print));
  return withService(target.config, json, (service) => fn(createProviderKeyOperations(service, target.config)));
}

/**
 * `keywarden provider-keys list|rotate|revoke|due|set-owner`, on the store or (`--admin-url`)
 * through a running gateway, with the same output either way. Prints ids and fingerprints,
 * never key values.
 */
export async function providerKeysCommand(target: CommandTarget, action: string | undefined, args: readonly string[], flags: ProviderKeysFlags): Promise<number> {
  switch (action) {
    case 'list':
      return withOperations(target, flags.json, async (ops) => {
        const rows = await ops.list();
        if (flags.json) {
          out(JSON.stringify(rows, null, 2));
        } else {
          printTable(rows.map((k) => ({
            id: k.id, provider: k.provider, state: k.state, fingerprint: k.fingerprint, owner: k.owner, purpose: k.purpose,
            created: day(k.created_at), rotated: day(k.rotated_at), every: `${k.rotate_every_days}d`, due: k.state === 'current' ? day(k.due_at) : null, age: `${k.age_days}d`,
          })), ['id', 'provider', 'state', 'fingerprint', 'owner', 'purpose', 'created', 'rotated', 'every', 'due', 'age']);
        }
        return EXIT_OK;
      });
    case 'rotate': {
      const provider = args[0];
      if (!provider) throw new CliError('usage: keywarden provider-keys rotate PROVIDER [--from REF] [--logs PATH…] [--owner NAME] [--yes]', EXIT_USAGE);
      if (target.kind === 'api' && flags.logs !== undefined) {
        // security: the gateway never reads files a client names; the CLI has no access to the gateway's files either
        throw new CliError('--logs cannot be used with --admin-url: the gateway does not read files a client names; rotate through the API, then scan the logs on their host (keywarden scan PATH, or provider-keys rotate --config … --logs there)', EXIT_USAGE);
      }
      if (!(await confirm(`Rotate the ${provider} provider key?`, flags.yes))) {
        out('not rotated');
        return EXIT_FAILURE;
      }
      return withOperations(target, flags.json, async (ops) => {
        try {
          const result = await ops.rotate(provider, {
            ...(flags.from ? { from: flags.from } : {}), ...(flags.logs ? { logs: flags.logs } : {}), ...(flags.owner ? { owner: flags.owner } : {}),
          });
          out(result.ok ? `rotated ${provider}: ${result.old_key_id ?? '(none)'} → ${result.new_key_id}` : `rotation of ${provider} stopped after step ${result.step}/6`);
          return result.ok ? EXIT_OK : EXIT_FAILURE;
        } catch (err) {
          if (err instanceof RotationRefusedError) throw new CliError(err.message, EXIT_FAILURE);
          throw err;
        }
      });
    }
    case 'revoke': {
      const id = args[0];
      if (!id) throw new CliError('usage: keywarden provider-keys revoke KEY_ID [--provider-side]', EXIT_USAGE);
      return withOperations(target, flags.json, async (ops) => {
        const result = await ops.revoke(id, flags.providerSide);
        if (!result) throw new CliError(`no provider key ${echoName(id, '(id)')}`, EXIT_FAILURE);
        const { key, changed } = result;
        out(changed ? `revoked ${key.id} (${key.provider}, ${key.fingerprint}); gateways stop using it within a second` : `${key.id} was already revoked`);
        if (changed && result.was === 'current') out(`warning: ${key.provider} has no current key now; its requests fail with 503 until: keywarden provider-keys rotate ${key.provider} --from REF`);
        const manual = `MANUAL STEP: delete the key with fingerprint ${key.fingerprint} at ${result.console}`;
        const side = result.provider_side;
        if (!flags.providerSide || side === undefined) {
          out(`the key keeps working at the provider until it is deleted there: ${result.console}`);
          return EXIT_OK;
        }
        // exit 0: revoked (or already inactive) at the provider, or provider-side revocation is not
        // set up (manual step); exit 1: it was tried and failed (manual step printed)
        switch (side.status) {
          case 'revoked':
            out(`provider-side: revoked key ${side.provider_key_id} at ${key.provider} (${side.scope})`);
            if (side.still_accepted === false) out(`provider-side: checked: ${key.provider} now refuses the key`);
            else if (side.still_accepted === true) out(`provider-side: warning: ${key.provider} still accepted the key a moment later (it can take a short while to apply); check ${result.console}`);
            else out(`provider-side: could not check that ${key.provider} now refuses the key; check ${result.console}`);
            return EXIT_OK;
          case 'already_inactive':
            out(`provider-side: key ${side.provider_key_id} at ${key.provider} (${side.scope}) is already inactive`);
            return EXIT_OK;
          case 'manual':
            out(`provider-side revocation is not automated for ${key.provider} (${side.reason}); ${manual}`);
            return EXIT_OK;
          case 'failed':
            out(`provider-side: FAILED — ${side.reason}; the key is revoked in keywarden but may still work at ${key.provider}; ${manual}`);
            return EXIT_FAILURE;
        }
      });
    }
    case 'due': {
      const withinMs = flags.within === undefined ? 7 * 86_400_000 : parseDuration(flags.within);
      if (withinMs === undefined) throw new CliError('--within must be a duration such as 7d', EXIT_USAGE);
      return withOperations(target, flags.json, async (ops) => {
        const due = await ops.due(withinMs);
        if (flags.json) out(JSON.stringify(due));
        else if (due.length === 0) out('no provider key is due for rotation');
        else printTable(due.map((e) => ({ id: e.id, provider: e.provider, owner: e.owner, fingerprint: e.fingerprint, status: e.status, due: day(e.due_at), age: `${e.age_days}d` })), ['id', 'provider', 'owner', 'fingerprint', 'status', 'due', 'age']);
        return due.some((e) => e.status === 'overdue') ? EXIT_FAILURE : EXIT_OK;
      });
    }
    case 'set-owner': {
      const id = args[0];
      if (!id || (flags.owner === undefined && flags.purpose === undefined && flags.rotateEvery === undefined)) {
        throw new CliError('usage: keywarden provider-keys set-owner KEY_ID --owner NAME [--purpose TEXT] [--rotate-every 60d]', EXIT_USAGE);
      }
      const rotateEveryDays = flags.rotateEvery === undefined ? undefined : days(flags.rotateEvery, '--rotate-every');
      return withOperations(target, flags.json, async (ops) => {
        const key = await ops.setOwner(id, {
          ...(flags.owner !== undefined ? { owner: flags.owner } : {}), ...(flags.purpose !== undefined ? { purpose: flags.purpose } : {}),
          ...(rotateEveryDays !== undefined ? { rotateEveryDays } : {}),
        });
        if (!key) throw new CliError(`no provider key ${echoName(id, '(id)')}`, EXIT_FAILURE);
        out(`${key.id}: owner ${key.owner ?? '-'}, purpose ${key.purpose ?? '-'}, rotate every ${key.rotate_every_days}d`);
        return EXIT_OK;
      });
    }
    default:
      throw new CliError('usage: keywarden provider-keys list [--json] | rotate PROVIDER [--from REF] [--logs PATH…] [--owner NAME] [--yes] | revoke KEY_ID [--provider-side] | due [--within 7d] | set-owner KEY_ID --owner NAME [--purpose TEXT] [--rotate-every 60d]', EXIT_USAGE);
  }
}

/** `keywarden offboard --owner NAME --to NAME [--dry-run]`: lists a person's keys, rotates each and hands them over. */
export async function offboardCommand(config: GatewayConfig, flags: ProviderKeysFlags): Promise<number> {
  if (!flags.owner || (!flags.to && !flags.dryRun)) throw new CliError('usage: keywarden offboard --owner NAME --to NAME [--dry-run]', EXIT_USAGE);
  const owner = flags.owner;
  return withService(config, flags.json, async (service) => {
    const keys = await service.ownedBy(owner);
    if (keys.length === 0) {
      out(`${owner} owns no provider key`);
      return EXIT_OK;
    }
    printTable(keys.map((k) => ({ id: k.id, provider: k.provider, state: k.state, fingerprint: k.fingerprint, purpose: k.purpose })), ['id', 'provider', 'state', 'fingerprint', 'purpose']);
    if (flags.dryRun) {
      out(`dry run: ${keys.length} key(s) owned by ${owner} would be rotated and handed to ${flags.to ?? '(--to)'}`);
      return EXIT_OK;
    }
    const to = flags.to as string;
    let failed = 0;
    for (const key of keys) {
      if (key.state === 'current') {
        out(`rotating ${key.provider} (${key.id})`);
        try {
          const result = await service.rotate(key.provider, { owner: to });
          if (!result.ok) failed += 1;
        } catch (err) {
          failed += 1;
          out(`${key.provider}: ${(err as Error).message}`);
        }
      }
      // whatever the rotation did, the key that stays in the register gets a live owner
      const row = (await service.list()).find((k) => k.id === key.id);
      if (row && row.state !== 'revoked' && row.owner === owner) await service.setOwner(key.id, { owner: to });
    }
    out(failed === 0 ? `offboarded ${owner}: ${keys.length} key(s) rotated or handed to ${to}` : `${failed} rotation(s) failed; see the steps above; ownership moved to ${to}`);
    return failed === 0 ? EXIT_OK : EXIT_FAILURE;
  });
}
