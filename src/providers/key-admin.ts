/**
 * Provider-side key revocation through the providers' admin APIs (OpenAI organization admin API,
 * Anthropic admin API): request builders and answer readers only, no I/O, like the adapters. The
 * provider key service does the transport with the upstream client.
 *
 * The admin APIs never return a key's value, only a redacted hint (OpenAI `redacted_value`,
 * Anthropic `partial_key_hint`: a visible prefix, an ellipsis, the last few characters). A key is
 * found by comparing that prefix and suffix with our value, and only an unambiguous single match
 * is acted on.
 */
import type { ProviderConfig } from '../config/types.js';
import { DEFAULT_ANTHROPIC_VERSION } from './anthropic/adapter.js';
import { checkKey, isRecord, parseJson } from './common.js';
import type { ProviderType, UpstreamRequest } from './types.js';

/** Items per page asked for (both APIs accept 100). */
export const KEY_ADMIN_PAGE_SIZE = 100;
/** Most pages read before giving up (10 000 keys): a bound on a provider that keeps saying `has_more`. */
export const KEY_ADMIN_MAX_PAGES = 100;

/** One key as the provider's admin API lists it: its own id and redacted hint, never the value. */
export interface ListedProviderKey {
  /** The provider's key id (`key_…`, `apikey_…`); safe to print. */
  id: string;
  /** The redacted value: partial key material, never printed or logged. */
  hint: string;
  /** Anthropic's `status` (`active`, `inactive`, `archived`, `expired`); undefined for OpenAI (deleted keys are not listed). */
  status: string | undefined;
}

export interface ListedPage {
  keys: ListedProviderKey[];
  /** The cursor of the next page, or undefined on the last one. */
  next: string | undefined;
}

/** A refusal or unexpected answer of the admin API; the message never holds a body or a key. */
export class KeyAdminError extends Error {
  /** A short reason code for the audit row (`admin_key_refused`, `not_found`, `bad_answer`, …). */
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'KeyAdminError';
    this.reason = reason;
  }
}

/** One provider's admin API for keys. */
export interface KeyAdmin {
  readonly type: ProviderType;
  /** Where the operator looks in the provider console (for messages). */
  readonly scope: string;
  /** Lists one page of keys (`cursor` from the previous page's `next`). */
  listRequest(adminKey: string, cursor: string | undefined): UpstreamRequest;
  /** Reads a list answer; throws KeyAdminError for anything but a well-formed 200. */
  readList(status: number, bodyText: string): ListedPage;
  /** Deletes (OpenAI) or deactivates (Anthropic) the key with the provider's id `keyId`. */
  revokeRequest(adminKey: string, keyId: string): UpstreamRequest;
  /** Reads the revoke answer; throws KeyAdminError unless the provider confirmed it. */
  readRevoke(status: number, bodyText: string): void;
  /** Whether a listed key is already unusable (so no revoke request is needed). */
  isInactive(key: ListedProviderKey): boolean;
}

/** Provider ids become URL path segments and query values: token characters only. */
const SAFE_ID = /^[A-Za-z0-9_-]{1,128}$/;

function safeId(value: unknown): string | undefined {
  return typeof value === 'string' && SAFE_ID.test(value) ? value : undefined;
}

function statusError(status: number, what: string): KeyAdminError {
  // the provider's body is never quoted: it may name part of a key
  if (status === 401 || status === 403) {
    return new KeyAdminError('admin_key_refused', `the provider refused the admin key (HTTP ${status}) while ${what}; check admin_key (it must be an admin key with key-management rights)`);
  }
  if (status === 404) return new KeyAdminError('not_found', `the provider answered HTTP 404 while ${what}`);
  if (status >= 300 && status < 400) return new KeyAdminError('redirect', `the provider answered with a redirect (HTTP ${status}) while ${what}; redirects are not followed`);
  return new KeyAdminError('provider_error', `the provider answered HTTP ${status} while ${what}`);
}

function readPage(status: number, bodyText: string, hintField: string, withStatus: boolean, what: string): ListedPage {
  if (status !== 200) throw statusError(status, what);
  const body = parseJson(bodyText);
  if (!isRecord(body) || !Array.isArray(body['data'])) throw new KeyAdminError('bad_answer', `the provider's answer to ${what} was not a key list`);
  const keys: ListedProviderKey[] = [];
  for (const item of body['data']) {
    if (!isRecord(item)) continue;
    const id = safeId(item['id']);
    const hint = item[hintField];
    // an item we cannot name safely or match is skipped, never guessed at
    if (id === undefined || typeof hint !== 'string' || hint.length > 512) continue;
    keys.push({ id, hint, status: withStatus && typeof item['status'] === 'string' ? item['status'] : undefined });
  }
  let next: string | undefined;
  if (body['has_more'] === true) {
    const last = safeId(body['last_id']) ?? keys[keys.length - 1]?.id;
    if (last === undefined) throw new KeyAdminError('bad_answer', `the provider's answer to ${what} said has_more without a usable cursor`);
    next = last;
  }
  return { keys, next };
}

function checkId(keyId: string): string {
  if (!SAFE_ID.test(keyId)) throw new KeyAdminError('bad_answer', 'the provider key id is not a plain token');
  return keyId;
}

/**
 * OpenAI organization admin API, project API keys (the base URL ends in `/v1`):
 * `GET /organization/projects/{project}/api_keys?limit=100&after=…` lists `{ id, redacted_value }`,
 * `DELETE /organization/projects/{project}/api_keys/{id}` deletes one (`{ deleted: true }`).
 */
function openaiKeyAdmin(projectId: string): KeyAdmin {
  const base = `/organization/projects/${projectId}/api_keys`;
  const headers = (adminKey: string): Record<string, string> => {
    checkKey(adminKey);
    return { authorization: `Bearer ${adminKey}`, accept: 'application/json' };
  };
  return {
    type: 'openai',
    scope: `project ${projectId}`,
    listRequest(adminKey, cursor) {
      const after = cursor === undefined ? '' : `&after=${encodeURIComponent(checkId(cursor))}`;
      return { method: 'GET', path: `${base}?limit=${KEY_ADMIN_PAGE_SIZE}${after}`, headers: headers(adminKey) };
    },
    readList: (status, bodyText) => readPage(status, bodyText, 'redacted_value', false, `listing the API keys of project ${projectId}`),
    revokeRequest(adminKey, keyId) {
      return { method: 'DELETE', path: `${base}/${checkId(keyId)}`, headers: headers(adminKey) };
    },
    readRevoke(status, bodyText) {
      if (status !== 200) throw statusError(status, 'deleting the key');
      const body = parseJson(bodyText);
      if (!isRecord(body) || body['deleted'] !== true) throw new KeyAdminError('bad_answer', 'the provider did not confirm the deletion');
    },
    isInactive: () => false,
  };
}

/**
 * Anthropic admin API: `GET /v1/organizations/api_keys?limit=100&after_id=…` lists
 * `{ id, partial_key_hint, status }`; `POST /v1/organizations/api_keys/{id}` with
 * `{"status":"inactive"}` deactivates one (the answer is the key with its new status).
 */
function anthropicKeyAdmin(): KeyAdmin {
  const base = '/v1/organizations/api_keys';
  const headers = (adminKey: string): Record<string, string> => {
    checkKey(adminKey);
    return { 'x-api-key': adminKey, 'anthropic-version': DEFAULT_ANTHROPIC_VERSION, accept: 'application/json' };
  };
  return {
    type: 'anthropic',
    scope: 'the organization',
    listRequest(adminKey, cursor) {
      const after = cursor === undefined ? '' : `&after_id=${encodeURIComponent(checkId(cursor))}`;
      return { method: 'GET', path: `${base}?limit=${KEY_ADMIN_PAGE_SIZE}${after}`, headers: headers(adminKey) };
    },
    readList: (status, bodyText) => readPage(status, bodyText, 'partial_key_hint', true, 'listing the organization\'s API keys'),
    revokeRequest(adminKey, keyId) {
      return {
        method: 'POST', path: `${base}/${checkId(keyId)}`,
        headers: { ...headers(adminKey), 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'inactive' }),
      };
    },
    readRevoke(status, bodyText) {
      if (status !== 200) throw statusError(status, 'deactivating the key');
      const body = parseJson(bodyText);
      if (!isRecord(body) || body['status'] !== 'inactive') throw new KeyAdminError('bad_answer', 'the provider did not confirm the key is inactive');
    },
    isInactive: (key) => key.status !== undefined && key.status !== 'active',
  };
}

/**
 * The admin API for a configured provider, or a reason why there is none (no `admin_key`, or
 * OpenAI without `project_id`).
 *
 * @example
 * const admin = createKeyAdmin(config.providers.openai);
 * if (typeof admin === 'string') print(`manual step: ${admin}`);
 */
export function createKeyAdmin(provider: ProviderConfig): KeyAdmin | string {
  if (provider.adminKey === undefined) return `no admin_key is configured for providers.${provider.id}`;
  switch (provider.type) {
    case 'openai':
      if (provider.projectId === undefined || !SAFE_ID.test(provider.projectId)) return `providers.${provider.id}.project_id is not configured`;
      return openaiKeyAdmin(provider.projectId);
    case 'anthropic':
      return anthropicKeyAdmin();
    default:
      return `keywarden has no admin API support for provider type ${String((provider as { type: unknown }).type)}`;
  }
}

/** Splits a redacted hint into its visible prefix and suffix; undefined when it has no single ellipsis. */
export function parseKeyHint(hint: string): { prefix: string; suffix: string } | undefined {
  // OpenAI and Anthropic write `sk-abc...wxyz`; some consoles use `…` or a run of `*`
  const separator = /(?:\.{3}|\u2026|\*{2,})+/g;
  const matches = [...hint.matchAll(separator)];
  if (matches.length !== 1) return undefined;
  const m = matches[0] as RegExpMatchArray;
  const at = m.index ?? 0;
  return { prefix: hint.slice(0, at), suffix: hint.slice(at + m[0].length) };
}

/**
 * Whether a redacted hint can be our key: its visible prefix and suffix (at least 3 characters
 * each, together shorter than the key) are our key's start and end.
 */
export function hintMatches(hint: string, value: string): boolean {
  const parts = parseKeyHint(hint);
  if (!parts) return false;
  const { prefix, suffix } = parts;
  if (prefix.length < 3 || suffix.length < 3 || prefix.length + suffix.length >= value.length) return false;
  return value.startsWith(prefix) && value.endsWith(suffix);
}

/** The listed keys whose hint matches our key's value (exactly one is required to act). */
export function matchListedKeys(keys: readonly ListedProviderKey[], value: string): ListedProviderKey[] {
  return keys.filter((k) => hintMatches(k.hint, value));
}
