import { realpathSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { GatewayConfig } from '../config/types.js';
import type { Store } from '../store/types.js';
import type { SecretResolver } from '../secrets/resolver.js';
import { isSecretReference, splitReference } from '../secrets/reference.js';
import { GatewayError } from '../errors/index.js';
import { createProviderKeyService, RotationRefusedError } from '../services/provider-key-service.js';
import { createProviderKeyOperations, type DueView, type OwnerChange, type ProviderKeyView, type RevokeView, type RotateView } from '../services/provider-key-views.js';
import { echoName } from '../policy/schema-errors.js';

/**
 * Secret backends a rotation through the admin API may read the new key from. `file:` and
 * `env:` are refused: with them a remote admin could make the gateway read any file or
 * variable it can (`file:/etc/shadow`, the admin token's file) and send it to the provider as a
 * key. The vault-style backends read only what the gateway's own vault identity may read, and
 * `enc-file:` only decrypts entries sealed with the gateway's key.
 */
export const API_ROTATION_BACKENDS: readonly string[] = ['vault', 'aws-sm', 'azure-kv', 'gcp-sm', 'enc-file'];

/** What a rotation through the API answers: the result and the operator lines (never a key value). */
export interface ApiRotateView extends RotateView {
  lines: string[];
}

/** The provider key register on the admin listener: each call acts as the calling admin. */
export interface AdminProviderKeys {
  list(actor: string): Promise<ProviderKeyView[]>;
  due(actor: string, withinMs: number): Promise<DueView[]>;
  rotate(actor: string, provider: string, options: { from?: string; owner?: string }): Promise<ApiRotateView>;
  revoke(actor: string, id: string, providerSide: boolean): Promise<RevokeView | undefined>;
  setOwner(actor: string, id: string, change: OwnerChange): Promise<ProviderKeyView | undefined>;
}

export interface AdminProviderKeysOptions {
  config: GatewayConfig;
  store: Store;
  resolver: SecretResolver;
  /** Called after a rotation or revocation made here, so this gateway switches keys at once. */
  afterChange?: () => Promise<void> | void;
}

/** A comparable form of a reference: `enc-file:` paths resolved, so `/a/./b` matches `/a/b`. */
function normaliseReference(reference: string): string {
  if (!isSecretReference(reference)) return reference;
  const { scheme, locator } = splitReference(reference);
  if (scheme !== 'enc-file' && scheme !== 'file') return reference;
  const hash = scheme === 'enc-file' ? locator.lastIndexOf('#') : -1;
  return hash === -1 ? `${scheme}:${resolvePath(locator)}` : `${scheme}:${resolvePath(locator.slice(0, hash))}${locator.slice(hash)}`;
}

/** The real path (symlinks and `/proc/self/root` detours resolved) of an `enc-file:` reference's file, if it exists. */
function encFilePath(reference: string): string | undefined {
  if (!isSecretReference(reference)) return undefined;
  const { scheme, locator } = splitReference(reference);
  if (scheme !== 'enc-file') return undefined;
  const hash = locator.lastIndexOf('#');
  try {
    return realpathSync(hash === -1 ? locator : locator.slice(0, hash));
  } catch {
    return undefined;
  }
}

/** Every secret reference the configuration names, with the path it sits at (`admin.token`). */
function configReferences(value: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (typeof value === 'string') {
    if (isSecretReference(value)) out.set(normaliseReference(value), path);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => configReferences(item, `${path}[${i}]`, out));
  } else if (typeof value === 'object' && value !== null && !(value instanceof URL)) {
    for (const [key, item] of Object.entries(value)) configReferences(item, path === '' ? key : `${path}.${key}`, out);
  }
  return out;
}

/**
 * The provider key register for the admin API (`global(admin)` routes): a service per call, so
 * audit rows name the calling admin, and operator lines collected into the answer. Rotation runs
 * in the gateway process, which has the vault access; it never scans log files (a client must
 * not make the server read files it names), and its `from` reference must pass `checkFrom`.
 */
export function createAdminProviderKeys(options: AdminProviderKeysOptions): AdminProviderKeys {
  const { config, store, resolver } = options;
  // references the gateway holds for other purposes (admin token, HMAC keys, TLS keys, admin
  // keys, …): a rotation must never send one of them to a provider as a key
  const reserved = configReferences(config, '', new Map());
  for (const provider of Object.values(config.providers)) reserved.delete(normaliseReference(provider.apiKey));

  // encrypted secrets files the configuration already uses: the only ones a rotation through the
  // API may read (so `from` cannot probe the filesystem, or open a FIFO and hold the rotation lock)
  const encFiles = new Set<string>();
  for (const reference of configReferences(config, '', new Map()).keys()) {
    const real = encFilePath(reference);
    if (real !== undefined) encFiles.add(real);
  }
  for (const provider of Object.values(config.providers)) {
    const real = encFilePath(provider.apiKey);
    if (real !== undefined) encFiles.add(real);
  }

  const operations = (actor: string, print: (line: string) => void) =>
    createProviderKeyOperations(createProviderKeyService({ config, store, resolver, actor, print }), config);

  /**
   * Throws a 400 unless `from` is a well-formed reference of a backend the API allows, names no
   * secret the gateway holds for another purpose (compared by reference and then by value, so an
   * alias, a symlink or another spelling of the same secret is caught), and can be read. Every
   * read failure gets the same answer: the API is not a way to learn what exists where.
   */
  async function checkFrom(from: string): Promise<void> {
    const bad = (message: string) => new GatewayError('admin_invalid_request', message, { param: 'from' });
    if (!isSecretReference(from)) throw bad('"from" must be a secret reference such as vault:MOUNT/PATH#field');
    const { scheme } = splitReference(from);
    if (!API_ROTATION_BACKENDS.includes(scheme)) {
      throw bad(`"from" may not be a ${scheme}: reference through the admin API (it would let the gateway read a local ${scheme === 'env' ? 'variable' : 'file'} of your choosing); use ${API_ROTATION_BACKENDS.map((s) => `${s}:`).join(', ')} or rotate with the CLI on the gateway host`);
    }
    const usedFor = reserved.get(normaliseReference(from));
    if (usedFor !== undefined) throw bad(`"from" names the secret the gateway uses for ${usedFor}, not a provider key`);
    const unreadable = bad('"from" cannot be used: the gateway could not read a key there');
    if (scheme === 'enc-file') {
      const real = encFilePath(from);
      if (real === undefined || !encFiles.has(real)) throw bad('"from" may name only an encrypted secrets file the configuration already uses (or rotate with the CLI on the gateway host)');
    }
    let value: string;
    try {
      value = (await resolver.resolve(from)).value;
    } catch {
      throw unreadable;
    }
    for (const [reference, path] of reserved) {
      const held = await resolver.resolve(reference).then((r) => r.value, () => undefined);
      if (held !== undefined && held === value) throw bad(`"from" holds the secret the gateway uses for ${path}, not a provider key`);
    }
  }

  /** Hides full references the caller did not give (the current key's path or vault location). */
  async function hiddenReferences(from: string | undefined): Promise<string[]> {
    const refs = new Set<string>([...(await store.providerKeys.list()).map((k) => k.reference), ...Object.values(config.providers).map((p) => p.apiKey)]);
    if (from !== undefined) refs.delete(from);
    return [...refs].sort((a, b) => b.length - a.length);
  }

  return {
    list: (actor) => operations(actor, () => undefined).list(),
    due: (actor, withinMs) => operations(actor, () => undefined).due(withinMs),
    async rotate(actor, provider, { from, owner }) {
      if (!Object.hasOwn(config.providers, provider)) {
        throw new GatewayError('admin_invalid_request', `unknown provider "${echoName(provider, '(name)')}" (configured: ${Object.keys(config.providers).join(', ')})`, { param: 'provider' });
      }
      if (from !== undefined) await checkFrom(from);
      const hidden = await hiddenReferences(from);
      const lines: string[] = [];
      const print = (line: string) => {
        let shown = line;
        for (const ref of hidden) if (shown.includes(ref)) shown = shown.split(ref).join(`${ref.slice(0, ref.indexOf(':'))}:(reference)`);
        lines.push(shown);
      };
      let result: RotateView;
      try {
        result = await operations(actor, print).rotate(provider, { ...(from !== undefined ? { from } : {}), ...(owner !== undefined ? { owner } : {}) });
      } catch (err) {
        // the provider was checked above: a refusal here is the rotation lock
        if (err instanceof RotationRefusedError) throw new GatewayError('admin_conflict', err.message);
        throw err;
      } finally {
        // whatever step it reached, this gateway re-reads the register now rather than on its next poll
        await options.afterChange?.();
      }
      return { ...result, lines };
    },
    async revoke(actor, id, providerSide) {
      const result = await operations(actor, () => undefined).revoke(id, providerSide);
      if (result?.changed) await options.afterChange?.();
      return result;
    },
    setOwner: (actor, id, change) => operations(actor, () => undefined).setOwner(id, change),
  };
}
