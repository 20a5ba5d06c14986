import type { GatewayConfig } from '../config/types.js';
import type { ProviderKeyRecord, ProviderKeyState } from '../store/types.js';
import { keyAgeDays, keyDueAt, PROVIDER_CONSOLES, type DueEntry, type ProviderKeyService, type ProviderSideOutcome, type RotateOptions } from './provider-key-service.js';

/*
 * The provider key register as operators see it: the JSON shapes of `provider-keys list|due
 * --json` and of the admin API's /admin/provider-keys routes are these, so the CLI prints the
 * same thing whether it works on the store or through a gateway. A view carries ids and
 * fingerprints, and of the secret reference only its backend scheme: never a value, never the
 * full reference (a path or vault location is not everyone's business).
 */

export interface ProviderKeyView {
  id: string;
  provider: string;
  state: ProviderKeyState;
  fingerprint: string;
  /** `vault`, `file`, `enc-file`, … (the scheme of the reference, nothing after it). */
  reference_backend: string;
  version: string | null;
  owner: string | null;
  purpose: string | null;
  created_at: string;
  rotated_at: string | null;
  rotate_every_days: number;
  due_at: string;
  previous_until: string | null;
  revoked_at: string | null;
  age_days: number;
}

export interface DueView {
  id: string;
  provider: string;
  owner: string | null;
  fingerprint: string;
  status: DueEntry['status'];
  due_at: string;
  age_days: number;
}

export interface RotateView {
  ok: boolean;
  /** The last completed step (6 when the rotation finished). */
  step: number;
  new_key_id: string | null;
  old_key_id: string | null;
}

export type ProviderSideView =
  | { status: 'revoked'; provider_key_id: string; scope: string; still_accepted: boolean | null }
  | { status: 'already_inactive'; provider_key_id: string; scope: string }
  | { status: 'manual' | 'failed'; reason: string };

export interface RevokeView {
  /** The key after the revocation. */
  key: ProviderKeyView;
  /** False when it was revoked already. */
  changed: boolean;
  /** Its state before: revoking the `current` key leaves the provider without one. */
  was: ProviderKeyState;
  /** Where to delete the key by hand at the provider. */
  console: string;
  /** Present when provider-side revocation was asked for. */
  provider_side?: ProviderSideView;
}

export interface OwnerChange {
  owner?: string;
  purpose?: string;
  rotateEveryDays?: number;
}

/**
 * The register operations at the level of views. The CLI runs them on the store, the admin
 * API in the gateway, and the CLI's `--admin-url` mode over HTTP (src/cli/remote-provider-keys.ts).
 */
export interface ProviderKeyOperations {
  list(): Promise<ProviderKeyView[]>;
  due(withinMs: number): Promise<DueView[]>;
  /** Prints the step lines as it goes (locally) or after the answer (remotely). */
  rotate(provider: string, options: RotateOptions): Promise<RotateView>;
  /** Undefined when there is no such key. */
  revoke(id: string, providerSide: boolean): Promise<RevokeView | undefined>;
  setOwner(id: string, change: OwnerChange): Promise<ProviderKeyView | undefined>;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The scheme of a secret reference (`vault` of `vault:kv/openai#key`). */
export function referenceBackend(reference: string): string {
  const colon = reference.indexOf(':');
  return colon === -1 ? '(unknown)' : reference.slice(0, colon);
}

export function providerKeyView(key: ProviderKeyRecord, now: number = Date.now()): ProviderKeyView {
  return {
    id: key.id, provider: key.provider, state: key.state, fingerprint: key.fingerprint, reference_backend: referenceBackend(key.reference),
    version: key.version, owner: key.owner, purpose: key.purpose, created_at: new Date(key.createdAt).toISOString(),
    rotated_at: iso(key.rotatedAt), rotate_every_days: key.rotateEveryDays, due_at: new Date(keyDueAt(key)).toISOString(),
    previous_until: iso(key.previousUntil), revoked_at: iso(key.revokedAt), age_days: keyAgeDays(key, now),
  };
}

export function dueView(entry: DueEntry): DueView {
  return {
    id: entry.key.id, provider: entry.key.provider, owner: entry.key.owner, fingerprint: entry.key.fingerprint,
    status: entry.status, due_at: new Date(entry.dueAt).toISOString(), age_days: entry.ageDays,
  };
}

export function providerSideView(outcome: ProviderSideOutcome): ProviderSideView {
  switch (outcome.status) {
    case 'revoked':
      return { status: 'revoked', provider_key_id: outcome.providerKeyId, scope: outcome.scope, still_accepted: outcome.stillAccepted ?? null };
    case 'already_inactive':
      return { status: 'already_inactive', provider_key_id: outcome.providerKeyId, scope: outcome.scope };
    default:
      return { status: outcome.status, reason: outcome.reason };
  }
}

/** Where to delete a key of `provider` by hand (its type's console, else a generic hint). */
export function providerConsole(config: GatewayConfig, provider: string): string {
  const type = Object.hasOwn(config.providers, provider) ? config.providers[provider]?.type : undefined;
  return (type !== undefined ? PROVIDER_CONSOLES[type] : undefined) ?? 'the provider console';
}

/** The view-level operations over a `ProviderKeyService` (which holds the actor and the output). */
export function createProviderKeyOperations(service: ProviderKeyService, config: GatewayConfig): ProviderKeyOperations {
  return {
    async list() {
      const now = Date.now();
      return (await service.list()).map((k) => providerKeyView(k, now));
    },
    async due(withinMs) {
      return (await service.due(withinMs)).map(dueView);
    },
    async rotate(provider, options) {
      const result = await service.rotate(provider, options);
      return { ok: result.ok, step: result.step, new_key_id: result.newKeyId, old_key_id: result.oldKeyId };
    },
    async revoke(id, providerSide) {
      const result = await service.revoke(id);
      if (!result) return undefined;
      const { key, changed } = result;
      const after = (await service.list()).find((k) => k.id === id) ?? { ...key, state: 'revoked' as const };
      const view: RevokeView = { key: providerKeyView(after), changed, was: key.state, console: providerConsole(config, key.provider) };
      if (providerSide) view.provider_side = providerSideView(await service.revokeProviderSide(key));
      return view;
    },
    async setOwner(id, change) {
      const key = await service.setOwner(id, change);
      return key ? providerKeyView(key) : undefined;
    },
  };
}
