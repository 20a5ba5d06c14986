import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { GatewayConfig, ProviderConfig } from '../config/types.js';
import type { AuditEvent, ProviderKeyRecord, ProviderKeyRotation, Store } from '../store/types.js';
import type { SecretResolver } from '../secrets/resolver.js';
import { newProviderKeyId, providerKeyFingerprint } from '../secrets/provider-keys.js';
import { postWebhook } from './webhook.js';
import { createKeyAdmin, KEY_ADMIN_MAX_PAGES, KeyAdminError, matchListedKeys, type ListedProviderKey } from '../providers/key-admin.js';
import { echoName } from '../policy/schema-errors.js';

const DAY_MS = 86_400_000;
/** A rotation lock whose holder has not written a heartbeat for this long is stale (its process died). */
const LOCK_LEASE_MS = 15_000;
const HEARTBEAT_MS = 2_000;
/**
 * How long a key stays pending before promotion at least: gateways poll the register every
 * 250 ms and preload pending values, so by then each has the new value in memory and switches
 * without a request finding the new current key not yet loaded.
 */
const PRELOAD_MS = 1_000;

/** Where to revoke a key by hand at each provider (when provider-side revocation is not set up or fails). */
export const PROVIDER_CONSOLES: Readonly<Record<string, string>> = {
  openai: 'https://platform.openai.com/api-keys',
  anthropic: 'https://console.anthropic.com/settings/keys',
};

export interface ProviderKeyServiceOptions {
  config: GatewayConfig;
  store: Store;
  resolver: SecretResolver;
  /** Who acts, for the audit log (`cli`). */
  actor: string;
  /** Operator output, one line at a time (never a key value). */
  print: (line: string) => void;
  now?: () => number;
  /** Called after each completed rotation step (tests interrupt the workflow here). */
  afterStep?: (step: number) => void | Promise<void>;
}

export interface RotateOptions {
  /** Read the new key from this reference instead of the current key's reference (its new version). */
  from?: string;
  /** Log files to scan for the old key's fingerprint. */
  logs?: readonly string[];
  /** Owner of the new key (default: the old key's). */
  owner?: string;
}

export interface RotateResult {
  ok: boolean;
  /** The last completed step (6 when the rotation finished). */
  step: number;
  newKeyId: string | null;
  oldKeyId: string | null;
}

/**
 * What `revoke --provider-side` did at the provider. `manual`: provider-side revocation is not set
 * up for this provider (no admin key); `failed`: it was tried and did not happen. Both come with
 * the manual step. Reasons never hold a key value, a hint or a provider's error body.
 */
export type ProviderSideOutcome =
  | { status: 'revoked'; providerKeyId: string; scope: string; stillAccepted: boolean | undefined }
  | { status: 'already_inactive'; providerKeyId: string; scope: string }
  | { status: 'manual'; reason: string }
  | { status: 'failed'; reason: string };

/** The largest admin API answer read (a page of 100 keys is a few tens of KB). */
const MAX_ADMIN_ANSWER_BYTES = 4 * 1024 * 1024;

async function readBounded(body: AsyncIterable<Buffer> & { destroy?: (err?: Error) => unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ADMIN_ANSWER_BYTES) {
      body.destroy?.();
      throw new KeyAdminError('bad_answer', 'the provider\'s answer was larger than expected');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface DueEntry {
  key: ProviderKeyRecord;
  ageDays: number;
  dueAt: number;
  status: 'overdue' | 'due_soon' | 'ok';
}

/** Thrown when a rotation cannot start: another one holds the lock, or the provider is unknown. */
export class RotationRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RotationRefusedError';
  }
}

/** Age in whole days since the key was created. */
export function keyAgeDays(key: ProviderKeyRecord, now: number): number {
  return Math.floor((now - key.createdAt) / DAY_MS);
}

/** When a key should be rotated: its interval after it became current (or was registered). */
export function keyDueAt(key: ProviderKeyRecord): number {
  return (key.rotatedAt ?? key.createdAt) + key.rotateEveryDays * DAY_MS;
}

function holderId(): string {
  return `${hostname()}:${process.pid}`;
}

/** True when the lock holder is known dead: same host, and no process with its pid. */
function holderIsDead(lockedBy: string): boolean {
  const i = lockedBy.lastIndexOf(':');
  if (i === -1 || lockedBy.slice(0, i) !== hostname()) return false;
  const pid = Number(lockedBy.slice(i + 1));
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'ESRCH';
  }
}

/** Counts key-shaped strings in a file whose SHA-256 fingerprint equals `fingerprint`. Never returns a value. */
export async function countFingerprintInFile(path: string, fingerprint: string): Promise<number> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let count = 0;
  const seen = new Map<string, boolean>();
  for await (const line of lines) {
    for (const match of line.matchAll(/[A-Za-z0-9_-]{20,256}/g)) {
      const token = match[0];
      let hit = seen.get(token);
      if (hit === undefined) {
        hit = providerKeyFingerprint(token) === fingerprint;
        if (seen.size < 100_000) seen.set(token, hit);
      }
      if (hit) count += 1;
    }
  }
  return count;
}

/**
 * The ownership register and the rotation workflow over the store. Every change writes its audit
 * event in the same transaction; output and audit rows name ids and fingerprints, never values.
 */
export function createProviderKeyService(options: ProviderKeyServiceOptions) {
  const { config, store, resolver, actor, print } = options;
  const now = options.now ?? Date.now;
  const repo = store.providerKeys;
  const graceMs = config.rotation?.gracePeriodMs ?? 10 * 60_000;

  const audit = (action: string, target: string | null, details: AuditEvent['details'], outcome: AuditEvent['outcome'] = 'success'): AuditEvent =>
    ({ ts: now(), actor, action, target, outcome, requestId: null, details });

  function providerConfig(provider: string): ProviderConfig {
    const p = Object.hasOwn(config.providers, provider) ? config.providers[provider] : undefined;
    if (!p) throw new RotationRefusedError(`unknown provider "${echoName(provider, '(name)')}" (configured: ${Object.keys(config.providers).join(', ')})`);
    return p;
  }

  /** Registers config keys with no row yet, and revokes `previous` keys past their grace period. */
  async function housekeeping(): Promise<void> {
    const { bootstrapProviderKeys } = await import('../secrets/provider-keys.js');
    await bootstrapProviderKeys(config.providers, repo, (ref) => resolver.resolve(ref), actor, now);
    for (const r of await repo.expirePrevious(now(), actor)) print(`revoked ${r.id} (${r.provider}, ${r.fingerprint}): its grace period ended`);
  }

  async function acquire(provider: string): Promise<ProviderKeyRotation> {
    const me = holderId();
    const { created, rotation } = await repo.lockRotation(provider, `rot_${randomUUID().replaceAll('-', '').slice(0, 16)}`, me, now());
    if (created) return rotation;
    const stale = now() - rotation.heartbeatAt > LOCK_LEASE_MS || holderIsDead(rotation.lockedBy);
    if (!stale) {
      throw new RotationRefusedError(
        `a rotation of ${provider} is already in progress (${rotation.rotationId}, at step ${rotation.step}/6, held by ${rotation.lockedBy}); ` +
        'wait for it to finish (a crashed one can be resumed once its holder is gone)');
    }
    if (!(await repo.takeOverRotation(provider, rotation.rotationId, rotation.lockedBy, me, now()))) {
      throw new RotationRefusedError(`another process took over the interrupted rotation of ${provider}; wait for it to finish`);
    }
    print(`resuming rotation ${rotation.rotationId} of ${provider} after step ${rotation.step}/6`);
    return { ...rotation, lockedBy: me };
  }

  async function currentOf(provider: string): Promise<ProviderKeyRecord | undefined> {
    return (await repo.active()).find((r) => r.provider === provider && r.state === 'current');
  }

  const step = (n: number, name: string, outcome: 'ok' | 'skipped' | 'FAILED', text: string) => print(`step ${n}/6 ${name}: ${outcome} — ${text}`);

  /**
   * `provider-keys rotate`: read → verify → promote → retire → scan logs → record. Each step is
   * recorded in the rotation row, so a re-run after a crash resumes after the last completed step.
   */
  async function rotate(provider: string, opts: RotateOptions = {}): Promise<RotateResult> {
    const pconf = providerConfig(provider);
    await housekeeping();
    const rotation = await acquire(provider);
    const { rotationId } = rotation;
    const beat = setInterval(() => { void repo.heartbeat(provider, rotation.lockedBy, now()).catch(() => undefined); }, HEARTBEAT_MS);
    beat.unref();
    let done = rotation.step;
    const after = async (n: number) => {
      done = n;
      await options.afterStep?.(n);
    };
    const result = (ok: boolean, newKeyId: string | null, oldKeyId: string | null): RotateResult => ({ ok, step: done, newKeyId, oldKeyId });
    try {
      // 1. read the new key version
      let newKeyId = rotation.newKeyId;
      let oldKeyId = rotation.oldKeyId;
      if (done >= 1 && newKeyId !== null) {
        const row = await repo.get(newKeyId);
        step(1, 'read', 'skipped', `already read: new key ${newKeyId} (${row?.fingerprint ?? '?'})`);
      } else {
        const current = await currentOf(provider);
        oldKeyId = current?.id ?? null;
        const reference = opts.from ?? current?.reference ?? pconf.apiKey;
        let secret;
        try {
          secret = await resolver.resolve(reference);
        } catch (err) {
          await repo.abandonRotation(provider, rotationId, null, audit('provider_key.rotate', provider, { provider, step: 1, reason: 'read_failed', rotation: rotationId }, 'failure'));
          step(1, 'read', 'FAILED', `${(err as Error).message}; nothing changed, ${current ? `current key ${current.id} (${current.fingerprint}) still serves requests` : 'there is no current key'}; fix the reference and run rotate again`);
          return result(false, null, oldKeyId);
        }
        const fingerprint = providerKeyFingerprint(secret.value);
        const all = await repo.list();
        const same = all.find((r) => r.provider === provider && r.fingerprint === fingerprint);
        if (same) {
          await repo.abandonRotation(provider, rotationId, null, audit('provider_key.rotate', provider, { provider, step: 1, reason: same.state === 'revoked' ? 'key_revoked_before' : 'same_key', fingerprint, rotation: rotationId }, 'failure'));
          step(1, 'read', 'FAILED', same.state === 'revoked'
            ? `${reference} holds key ${fingerprint}, which was revoked (${same.id}) and is never used again; write a new key and run rotate again`
            : `${reference} holds the key already registered as ${same.id} (${same.state}, ${fingerprint}); write the new key version to the vault or pass --from REF, then run rotate again; nothing changed`);
          return result(false, null, oldKeyId);
        }
        const at = now();
        const record: ProviderKeyRecord = {
          id: newProviderKeyId(), provider, reference, fingerprint, version: secret.version ?? null, state: 'pending',
          owner: opts.owner ?? current?.owner ?? pconf.owner ?? null, purpose: current?.purpose ?? pconf.purpose ?? null,
          createdAt: at, rotatedAt: null, rotateEveryDays: current?.rotateEveryDays ?? pconf.rotateEveryDays ?? 60, previousUntil: null, revokedAt: null,
        };
        await repo.addPending(record, rotationId, audit('provider_key.pending', record.id, { provider, fingerprint, rotation: rotationId, replaces: oldKeyId }));
        newKeyId = record.id;
        step(1, 'read', 'ok', `new key ${record.id} (${fingerprint}) from ${reference.slice(0, reference.indexOf(':'))} is pending`);
        await after(1);
      }
      if (newKeyId === null) throw new Error('rotation has no new key recorded');
      const newRow = await repo.get(newKeyId);
      if (!newRow || newRow.state === 'revoked') {
        await repo.abandonRotation(provider, rotationId, null, audit('provider_key.rotate', provider, { provider, reason: 'new_key_gone', rotation: rotationId }, 'failure'));
        step(Math.min(done + 1, 6), 'resume', 'FAILED', `new key ${newKeyId} is ${newRow ? 'revoked' : 'gone'}; the rotation is abandoned; run rotate again with a new key`);
        return result(false, newKeyId, oldKeyId);
      }
      const oldRow = oldKeyId === null ? undefined : await repo.get(oldKeyId);
      const stillCurrent = oldRow ? `current key ${oldRow.id} (${oldRow.fingerprint}) still serves requests` : 'there is no current key';

      // 2. verify against the provider
      if (done >= 2) step(2, 'verify', 'skipped', `key ${newKeyId} was verified before`);
      else {
        let failure: string | undefined;
        try {
          const secret = await resolver.resolve(newRow.reference);
          if (providerKeyFingerprint(secret.value) !== newRow.fingerprint) failure = `${newRow.reference} changed again while rotating (now ${providerKeyFingerprint(secret.value)})`;
          else {
            const [{ createProviderAdapter }, { createUpstreamClient }] = await Promise.all([import('../providers/registry.js'), import('../upstream/client.js')]);
            const adapter = createProviderAdapter(pconf.type);
            const client = createUpstreamClient(pconf, { connections: 1 });
            try {
              const res = await client.send(adapter.buildKeyCheckRequest(secret.value));
              await res.body.dump();
              if (res.statusCode !== 200) failure = `${pconf.baseUrl.origin} answered HTTP ${res.statusCode} to the key check`;
            } finally {
              await client.close();
            }
          }
        } catch (err) {
          failure = (err as Error).message;
        }
        if (failure !== undefined) {
          await repo.abandonRotation(provider, rotationId, newKeyId,
            audit('provider_key.rotate', provider, { provider, step: 2, reason: 'verification_failed', new_key: newKeyId, new_fingerprint: newRow.fingerprint, rotation: rotationId }, 'failure'));
          step(2, 'verify', 'FAILED', `${failure}; ${stillCurrent}; the unverified key ${newKeyId} was removed from the register; fix the new key and run rotate again`);
          return result(false, newKeyId, oldKeyId);
        }
        await repo.setRotationStep(provider, rotationId, 2, audit('provider_key.verify', newKeyId, { provider, fingerprint: newRow.fingerprint, rotation: rotationId }));
        step(2, 'verify', 'ok', `${pconf.baseUrl.origin} accepted key ${newKeyId}`);
        await after(2);
      }

      // 3. promote the new key to current (the old one becomes previous in the same transaction)
      if (done >= 3) step(3, 'promote', 'skipped', `key ${newKeyId} is already current`);
      else {
        const wait = newRow.createdAt + PRELOAD_MS - now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const until = now() + graceMs;
        await repo.promote(provider, rotationId, newKeyId, until, now(),
          audit('provider_key.promote', newKeyId, { provider, fingerprint: newRow.fingerprint, previous: oldKeyId, rotation: rotationId }));
        step(3, 'promote', 'ok', `key ${newKeyId} (${newRow.fingerprint}) is current; gateways switch to it within a second`);
        await after(3);
      }

      // 4. the old key: previous for the grace period, then revoked
      if (done >= 4) step(4, 'retire', 'skipped', 'done before');
      else {
        const old = oldKeyId === null ? undefined : await repo.get(oldKeyId);
        if (!old) step(4, 'retire', 'skipped', 'there was no previous key');
        else if (old.state === 'previous' && old.previousUntil !== null && old.previousUntil > now()) {
          step(4, 'retire', 'ok', `key ${old.id} (${old.fingerprint}) is previous until ${new Date(old.previousUntil).toISOString()}, then revoked (by the gateway's poll or any provider-keys command); in-flight requests finish with it`);
        } else {
          if (old.state !== 'revoked') await repo.revoke(old.id, now(), audit('provider_key.revoke', old.id, { provider, fingerprint: old.fingerprint, reason: 'rotated' }));
          step(4, 'retire', 'ok', `key ${old.id} (${old.fingerprint}) is revoked`);
        }
        await repo.setRotationStep(provider, rotationId, 4, null);
        await after(4);
      }

      // 5. scan logs for the old key's fingerprint
      let matches: number | null = null;
      if (done >= 5) step(5, 'scan-logs', 'skipped', 'done before');
      else {
        const files = opts.logs ?? [];
        if (files.length === 0 || !oldRow) step(5, 'scan-logs', 'skipped', !oldRow ? 'there was no old key' : 'no --logs given');
        else {
          const counts: string[] = [];
          matches = 0;
          for (const file of files) {
            try {
              const n = await countFingerprintInFile(file, oldRow.fingerprint);
              matches += n;
              counts.push(`${file}: ${n}`);
            } catch (err) {
              step(5, 'scan-logs', 'FAILED', `${file} could not be read (${(err as { code?: string }).code ?? 'error'}); steps 1-4 are done (key ${newKeyId} is current); fix the path and run rotate again to finish steps 5-6`);
              return result(false, newKeyId, oldKeyId);
            }
          }
          step(5, 'scan-logs', 'ok', `old key fingerprint ${oldRow.fingerprint} found ${matches} time(s): ${counts.join(', ')}${matches > 0 ? ' — treat those logs as holding a secret' : ''}`);
        }
        await repo.setRotationStep(provider, rotationId, 5, null);
        await after(5);
      }

      // 6. record: webhook, then the audit row that closes the rotation (and releases the lock)
      const details = {
        provider, rotation: rotationId, old_key: oldKeyId, old_fingerprint: oldRow?.fingerprint ?? null,
        new_key: newKeyId, new_fingerprint: newRow.fingerprint, log_matches: matches,
      };
      let notified = 'no webhook configured';
      if (config.alerts.webhookUrl) {
        const secret = config.alerts.webhookSecret ? (await resolver.resolve(config.alerts.webhookSecret)).value : undefined;
        const delivered = await postWebhook({
          url: config.alerts.webhookUrl, secret, userAgent: 'keywarden-rotation', attempts: 3, retryBaseMs: 250,
          body: JSON.stringify({ type: 'provider_key_rotated', ...details, at: new Date(now()).toISOString() }),
        });
        if (!delivered) {
          step(6, 'record', 'FAILED', `the webhook could not be reached; key ${newKeyId} is current and the rotation is otherwise complete; run rotate again to retry the notification`);
          return result(false, newKeyId, oldKeyId);
        }
        notified = 'webhook notified';
      }
      await repo.finishRotation(provider, rotationId, audit('provider_key.rotate', provider, details));
      step(6, 'record', 'ok', `audit log written, ${notified}`);
      await after(6);
      return result(true, newKeyId, oldKeyId);
    } finally {
      clearInterval(beat);
    }
  }

  return {
    housekeeping,
    rotate,
    async list(): Promise<Array<ProviderKeyRecord & { ageDays: number; dueAt: number }>> {
      await housekeeping();
      const t = now();
      return (await repo.list()).map((k) => ({ ...k, ageDays: keyAgeDays(k, t), dueAt: keyDueAt(k) }));
    },
    async due(withinMs: number): Promise<DueEntry[]> {
      await housekeeping();
      const t = now();
      return (await repo.active())
        .filter((k) => k.state === 'current')
        .map((key) => {
          const dueAt = keyDueAt(key);
          return { key, ageDays: keyAgeDays(key, t), dueAt, status: dueAt <= t ? 'overdue' as const : dueAt <= t + withinMs ? 'due_soon' as const : 'ok' as const };
        })
        .filter((e) => e.status !== 'ok')
        .sort((a, b) => a.dueAt - b.dueAt);
    },
    async revoke(id: string): Promise<{ key: ProviderKeyRecord; changed: boolean } | undefined> {
      await housekeeping();
      const key = await repo.get(id);
      if (!key) return undefined;
      const changed = await repo.revoke(id, now(), audit('provider_key.revoke', id, { provider: key.provider, fingerprint: key.fingerprint, reason: 'operator', was: key.state }));
      return { key, changed };
    },
    async setOwner(id: string, fields: { owner?: string; purpose?: string; rotateEveryDays?: number }): Promise<ProviderKeyRecord | undefined> {
      const key = await repo.get(id);
      if (!key) return undefined;
      await repo.setOwner(id, fields, audit('provider_key.set_owner', id, {
        provider: key.provider, owner: fields.owner ?? null, purpose_changed: fields.purpose !== undefined, rotate_every_days: fields.rotateEveryDays ?? null,
      }));
      return repo.get(id);
    },
    /**
     * `revoke --provider-side`, after the local revoke: finds the key at the provider through its
     * admin API (by the redacted hint of the value read through the key's reference) and deletes
     * (OpenAI) or deactivates (Anthropic) it, then checks that the provider now refuses it. Writes
     * the audit row `provider_key.revoke_provider_side` (ids and fingerprints only).
     */
    async revokeProviderSide(key: ProviderKeyRecord): Promise<ProviderSideOutcome> {
      const record = async (outcome: ProviderSideOutcome, reasonCode: string): Promise<ProviderSideOutcome> => {
        const ok = outcome.status === 'revoked' || outcome.status === 'already_inactive';
        await store.records.append([], [audit('provider_key.revoke_provider_side', key.id, {
          provider: key.provider, fingerprint: key.fingerprint, result: outcome.status, reason: reasonCode,
          provider_key_id: ok ? outcome.providerKeyId : null,
        }, ok ? 'success' : 'failure')]);
        return outcome;
      };
      const pconf = Object.hasOwn(config.providers, key.provider) ? config.providers[key.provider] : undefined;
      if (!pconf) return record({ status: 'manual', reason: `provider ${key.provider} is no longer configured` }, 'provider_not_configured');
      const admin = createKeyAdmin(pconf);
      if (typeof admin === 'string') return record({ status: 'manual', reason: admin }, 'not_configured');

      // 1. our key's value, through its reference; it must still be the revoked key
      let value: string;
      try {
        value = (await resolver.resolve(key.reference)).value;
      } catch (err) {
        return record({ status: 'failed', reason: `the key's value can no longer be read through its reference (${(err as Error).message})` }, 'key_unreadable');
      }
      if (providerKeyFingerprint(value) !== key.fingerprint) {
        // the reference now holds another key (a newer vault version): never act on that one
        return record({ status: 'failed', reason: `the key's reference now holds a different key (${providerKeyFingerprint(value)}); the revoked key's value can no longer be read` }, 'key_unreadable');
      }
      let adminKey: string;
      try {
        adminKey = (await resolver.resolve(pconf.adminKey as string)).value;
      } catch (err) {
        return record({ status: 'failed', reason: `providers.${pconf.id}.admin_key could not be read (${(err as Error).message})` }, 'admin_key_unreadable');
      }
      if (!/^[\x21-\x7e]{1,4096}$/.test(adminKey)) {
        return record({ status: 'failed', reason: `providers.${pconf.id}.admin_key holds no usable key (empty or invalid characters)` }, 'admin_key_unreadable');
      }

      const [{ createUpstreamClient }, { createProviderAdapter }] = await Promise.all([import('../upstream/client.js'), import('../providers/registry.js')]);
      // the project's pooled client: fixed origin, no redirects followed, connect/header/body timeouts
      const client = createUpstreamClient(pconf, { connections: 1 });
      try {
        // 2. list the provider's keys, page by page, and find ours by its redacted hint
        const matches: ListedProviderKey[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          if (++pages > KEY_ADMIN_MAX_PAGES) throw new KeyAdminError('too_many_keys', `more than ${KEY_ADMIN_MAX_PAGES} pages of keys at ${admin.scope}`);
          const res = await client.send(admin.listRequest(adminKey, cursor));
          const page = admin.readList(res.statusCode, await readBounded(res.body));
          matches.push(...matchListedKeys(page.keys, value));
          cursor = page.next;
        } while (cursor !== undefined);
        if (matches.length === 0) {
          return record({ status: 'failed', reason: `no key at ${admin.scope} matches this key (already deleted there, or it belongs elsewhere)` }, 'no_match');
        }
        if (matches.length > 1) {
          // a prefix and a few last characters can collide: never guess which key to delete
          return record({ status: 'failed', reason: `${matches.length} keys at ${admin.scope} match this key's redacted hint (${matches.map((m) => m.id).join(', ')}); refusing to choose` }, 'ambiguous_match');
        }
        const target = matches[0] as ListedProviderKey;
        if (admin.isInactive(target)) {
          return record({ status: 'already_inactive', providerKeyId: target.id, scope: admin.scope }, 'already_inactive');
        }
        // 3. delete / deactivate it
        const res = await client.send(admin.revokeRequest(adminKey, target.id));
        admin.readRevoke(res.statusCode, await readBounded(res.body));
        // 4. check: the provider should now refuse the key (it may take a moment to apply)
        let stillAccepted: boolean | undefined;
        try {
          const check = await client.send(createProviderAdapter(pconf.type).buildKeyCheckRequest(value));
          await check.body.dump();
          stillAccepted = check.statusCode === 200 ? true : check.statusCode === 401 || check.statusCode === 403 ? false : undefined;
        } catch {
          stillAccepted = undefined;
        }
        return record({ status: 'revoked', providerKeyId: target.id, scope: admin.scope, stillAccepted }, 'revoked');
      } catch (err) {
        if (err instanceof KeyAdminError) return record({ status: 'failed', reason: err.message }, err.reason);
        // transport failures come as GatewayError with a fixed message (never a body or a key)
        const code = (err as { code?: unknown }).code;
        return record({ status: 'failed', reason: `${pconf.baseUrl.origin}: ${(err as Error).message}` }, typeof code === 'string' ? code : 'error');
      } finally {
        await client.close();
      }
    },
    /** Keys (not revoked) owned by `owner`. */
    async ownedBy(owner: string): Promise<ProviderKeyRecord[]> {
      await housekeeping();
      return (await repo.active()).filter((k) => k.owner === owner);
    },
  };
}

export type ProviderKeyService = ReturnType<typeof createProviderKeyService>;
