import { createInterface } from 'node:readline/promises';
import type { GatewayConfig } from '../../config/types.js';
import { parseDuration } from '../../config/duration.js';
import { openStore } from '../../main.js';
import { createConfiguredResolver } from '../../secrets/from-config.js';
import { createProviderKeyService, PROVIDER_CONSOLES, RotationRefusedError, type ProviderKeyService } from '../../services/provider-key-service.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, printTable } from '../output.js';

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
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString().slice(0, 10));

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

/** `keywarden provider-keys list|rotate|revoke|due|set-owner`. Prints ids and fingerprints, never key values. */
export async function providerKeysCommand(config: GatewayConfig, action: string | undefined, args: readonly string[], flags: ProviderKeysFlags): Promise<number> {
  switch (action) {
    case 'list':
      return withService(config, flags.json, async (service) => {
        const rows = await service.list();
        if (flags.json) {
          out(JSON.stringify(rows.map((k) => ({
            id: k.id, provider: k.provider, state: k.state, fingerprint: k.fingerprint, reference_backend: k.reference.slice(0, k.reference.indexOf(':')),
            version: k.version, owner: k.owner, purpose: k.purpose, created_at: new Date(k.createdAt).toISOString(),
            rotated_at: k.rotatedAt === null ? null : new Date(k.rotatedAt).toISOString(), rotate_every_days: k.rotateEveryDays,
            due_at: new Date(k.dueAt).toISOString(), previous_until: k.previousUntil === null ? null : new Date(k.previousUntil).toISOString(),
            revoked_at: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(), age_days: k.ageDays,
          })), null, 2));
        } else {
          printTable(rows.map((k) => ({
            id: k.id, provider: k.provider, state: k.state, fingerprint: k.fingerprint, owner: k.owner, purpose: k.purpose,
            created: iso(k.createdAt), rotated: iso(k.rotatedAt), every: `${k.rotateEveryDays}d`, due: k.state === 'current' ? iso(k.dueAt) : null, age: `${k.ageDays}d`,
          })), ['id', 'provider', 'state', 'fingerprint', 'owner', 'purpose', 'created', 'rotated', 'every', 'due', 'age']);
        }
        return EXIT_OK;
      });
    case 'rotate': {
      const provider = args[0];
      if (!provider) throw new CliError('usage: keywarden provider-keys rotate PROVIDER [--from REF] [--logs PATH…] [--yes]', EXIT_USAGE);
      if (!(await confirm(`Rotate the ${provider} provider key?`, flags.yes))) {
        out('not rotated');
        return EXIT_FAILURE;
      }
      return withService(config, flags.json, async (service) => {
        try {
          const result = await service.rotate(provider, { ...(flags.from ? { from: flags.from } : {}), ...(flags.logs ? { logs: flags.logs } : {}) });
          out(result.ok ? `rotated ${provider}: ${result.oldKeyId ?? '(none)'} → ${result.newKeyId}` : `rotation of ${provider} stopped after step ${result.step}/6`);
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
      return withService(config, flags.json, async (service) => {
        const result = await service.revoke(id);
        if (!result) throw new CliError(`no provider key ${id.slice(0, 64)}`, EXIT_FAILURE);
        const { key, changed } = result;
        out(changed ? `revoked ${key.id} (${key.provider}, ${key.fingerprint}); gateways stop using it within a second` : `${key.id} was already revoked`);
        if (changed && key.state === 'current') out(`warning: ${key.provider} has no current key now; its requests fail with 503 until: keywarden provider-keys rotate ${key.provider} --from REF`);
        const consoleUrl = PROVIDER_CONSOLES[config.providers[key.provider]?.type ?? ''] ?? 'the provider console';
        const manual = `MANUAL STEP: delete the key with fingerprint ${key.fingerprint} at ${consoleUrl}`;
        if (!flags.providerSide) {
          out(`the key keeps working at the provider until it is deleted there: ${consoleUrl}`);
          return EXIT_OK;
        }
        // exit 0: revoked (or already inactive) at the provider, or provider-side revocation is not
        // set up (manual step); exit 1: it was tried and failed (manual step printed)
        const side = await service.revokeProviderSide(key);
        switch (side.status) {
          case 'revoked':
            out(`provider-side: revoked key ${side.providerKeyId} at ${key.provider} (${side.scope})`);
            if (side.stillAccepted === false) out(`provider-side: checked: ${key.provider} now refuses the key`);
            else if (side.stillAccepted === true) out(`provider-side: warning: ${key.provider} still accepted the key a moment later (it can take a short while to apply); check ${consoleUrl}`);
            else out(`provider-side: could not check that ${key.provider} now refuses the key; check ${consoleUrl}`);
            return EXIT_OK;
          case 'already_inactive':
            out(`provider-side: key ${side.providerKeyId} at ${key.provider} (${side.scope}) is already inactive`);
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
      return withService(config, flags.json, async (service) => {
        const due = await service.due(withinMs);
        if (flags.json) {
          out(JSON.stringify(due.map((e) => ({ id: e.key.id, provider: e.key.provider, owner: e.key.owner, fingerprint: e.key.fingerprint, status: e.status, due_at: new Date(e.dueAt).toISOString(), age_days: e.ageDays }))));
        } else if (due.length === 0) out('no provider key is due for rotation');
        else printTable(due.map((e) => ({ id: e.key.id, provider: e.key.provider, owner: e.key.owner, fingerprint: e.key.fingerprint, status: e.status, due: iso(e.dueAt), age: `${e.ageDays}d` })), ['id', 'provider', 'owner', 'fingerprint', 'status', 'due', 'age']);
        return due.some((e) => e.status === 'overdue') ? EXIT_FAILURE : EXIT_OK;
      });
    }
    case 'set-owner': {
      const id = args[0];
      if (!id || (flags.owner === undefined && flags.purpose === undefined && flags.rotateEvery === undefined)) {
        throw new CliError('usage: keywarden provider-keys set-owner KEY_ID --owner NAME [--purpose TEXT] [--rotate-every 60d]', EXIT_USAGE);
      }
      const rotateEveryDays = flags.rotateEvery === undefined ? undefined : days(flags.rotateEvery, '--rotate-every');
      return withService(config, flags.json, async (service) => {
        const key = await service.setOwner(id, {
          ...(flags.owner !== undefined ? { owner: flags.owner } : {}), ...(flags.purpose !== undefined ? { purpose: flags.purpose } : {}),
          ...(rotateEveryDays !== undefined ? { rotateEveryDays } : {}),
        });
        if (!key) throw new CliError(`no provider key ${id.slice(0, 64)}`, EXIT_FAILURE);
        out(`${key.id}: owner ${key.owner ?? '-'}, purpose ${key.purpose ?? '-'}, rotate every ${key.rotateEveryDays}d`);
        return EXIT_OK;
      });
    }
    default:
      throw new CliError('usage: keywarden provider-keys list [--json] | rotate PROVIDER [--from REF] [--logs PATH…] [--yes] | revoke KEY_ID [--provider-side] | due [--within 7d] | set-owner KEY_ID --owner NAME [--purpose TEXT] [--rotate-every 60d]', EXIT_USAGE);
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
