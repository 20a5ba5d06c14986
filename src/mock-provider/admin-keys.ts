/**
 * The providers' admin APIs for keys, as the mock serves them: OpenAI's project API keys
 * (`GET/DELETE /v1/organization/projects/{project}/api_keys[/{id}]`) and Anthropic's organization
 * API keys (`GET /v1/organizations/api_keys`, `POST /v1/organizations/api_keys/{id}`). The keys
 * listed are the mock's accepted API keys, each with a stable id and a redacted hint; deleting or
 * deactivating one makes the mock refuse that key (401) for that provider afterwards.
 * Pure builders over a small state object; the server does the transport.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { anthropicAuthError, anthropicError, anthropicMissingVersion } from './anthropic.js';
import { openaiAuthError, openaiError, openaiNotFound } from './openai.js';
import { jsonAnswer, type MockAnswer, type MockProviderKind } from './types.js';

/** Per provider: the values of keys revoked through its admin API (and Anthropic's status for each). */
export interface AdminKeyState {
  /** The admin key (undefined: every admin request is refused). */
  adminKey: Buffer | undefined;
  revoked: Record<MockProviderKind, Map<string, 'deleted' | 'inactive' | 'archived'>>;
}

export function newAdminKeyState(adminKey: string | undefined): AdminKeyState {
  return { adminKey: adminKey === undefined ? undefined : Buffer.from(adminKey), revoked: { openai: new Map(), anthropic: new Map() } };
}

/** Whether `value` was revoked at `provider` through the admin API. */
export function isRevoked(state: AdminKeyState, provider: MockProviderKind, value: string): boolean {
  return state.revoked[provider].has(value);
}

const digest = (value: string) => createHash('sha256').update(value).digest('hex');
/** OpenAI's project key ids look like `key_abc`; Anthropic's like `apikey_01…`. */
export const mockOpenaiKeyId = (value: string): string => `key_${digest(value).slice(0, 16)}`;
export const mockAnthropicKeyId = (value: string): string => `apikey_01${digest(value).slice(0, 22)}`;
/** The redacted values: OpenAI `sk-abc...wxyz` (6 + last 4), Anthropic `sk-ant-api03-R2D...igAA` (16 + last 4). */
export const openaiRedacted = (value: string): string => `${value.slice(0, 6)}...${value.slice(-4)}`;
export const anthropicHint = (value: string): string => `${value.slice(0, 16)}...${value.slice(-4)}`;

const OPENAI_LIST = /^\/v1\/organization\/projects\/([^/]+)\/api_keys$/;
const OPENAI_ONE = /^\/v1\/organization\/projects\/([^/]+)\/api_keys\/([^/]+)$/;
const ANTHROPIC_LIST = '/v1/organizations/api_keys';
const ANTHROPIC_ONE = /^\/v1\/organizations\/api_keys\/([^/]+)$/;

/** Which provider's admin API a path belongs to, if any. */
export function adminProviderOf(path: string): MockProviderKind | undefined {
  if (path.startsWith('/v1/organization/projects/')) return 'openai';
  if (path === ANTHROPIC_LIST || path.startsWith(ANTHROPIC_LIST + '/')) return 'anthropic';
  return undefined;
}

export interface AdminRequest {
  provider: MockProviderKind;
  method: string;
  path: string;
  query: URLSearchParams;
  /** The credential in the provider's header (Bearer / x-api-key). */
  sentKey: string | undefined;
  anthropicVersion: string | undefined;
  body: unknown;
  badJson: boolean;
  /** The keys the mock accepts now (undefined: any key, so none is listed). */
  acceptedKeys: readonly string[] | undefined;
}

function adminKeyMatches(state: AdminKeyState, sent: string | undefined): boolean {
  if (state.adminKey === undefined || sent === undefined) return false;
  const got = Buffer.from(sent);
  return got.length === state.adminKey.length && timingSafeEqual(got, state.adminKey);
}

function pageOf<T extends { id: string }>(items: readonly T[], after: string | null, limitText: string | null, max: number): { page: T[]; hasMore: boolean } | string {
  const limit = limitText === null ? 20 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) return `limit must be an integer between 1 and ${max}`;
  let start = 0;
  if (after !== null) {
    const i = items.findIndex((k) => k.id === after);
    if (i === -1) return 'unknown pagination cursor';
    start = i + 1;
  }
  return { page: items.slice(start, start + limit), hasMore: start + limit < items.length };
}

/** Answers one admin API request (the caller checked `adminProviderOf(path)`). */
export function adminAnswer(state: AdminKeyState, req: AdminRequest, now: number): MockAnswer {
  const { provider } = req;
  if (!adminKeyMatches(state, req.sentKey)) return provider === 'openai' ? openaiAuthError(req.sentKey) : anthropicAuthError();
  const accepted = req.acceptedKeys ?? [];
  if (provider === 'openai') {
    const listed = accepted.filter((v) => !state.revoked.openai.has(v)).map((v) => ({
      object: 'organization.project.api_key', id: mockOpenaiKeyId(v), name: 'mock key', redacted_value: openaiRedacted(v),
      created_at: now, last_used_at: null, owner: { type: 'service_account' }, value: v,
    }));
    const list = OPENAI_LIST.exec(req.path);
    if (list && req.method === 'GET') {
      const paged = pageOf(listed, req.query.get('after'), req.query.get('limit'), 100);
      if (typeof paged === 'string') return openaiError(400, paged, 'invalid_request_error', null);
      const data = paged.page.map(({ value: _value, ...item }) => item);
      return jsonAnswer(200, { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: paged.hasMore });
    }
    const one = OPENAI_ONE.exec(req.path);
    if (one && req.method === 'DELETE') {
      const key = listed.find((k) => k.id === one[2]);
      if (!key) return openaiError(404, `No such API key: ${String(one[2]).slice(0, 64)}`, 'invalid_request_error', null);
      state.revoked.openai.set(key.value, 'deleted');
      return jsonAnswer(200, { object: 'organization.project.api_key.deleted', id: key.id, deleted: true });
    }
    return openaiNotFound(req.method, req.path);
  }

  if (req.anthropicVersion === undefined) return anthropicMissingVersion();
  const listed = accepted.map((v) => ({
    type: 'api_key', id: mockAnthropicKeyId(v), name: 'mock key', partial_key_hint: anthropicHint(v),
    status: state.revoked.anthropic.get(v) ?? 'active', created_at: new Date(now * 1000).toISOString(),
    created_by: { id: 'user_01mock', type: 'user' }, workspace_id: null, value: v,
  }));
  const strip = ({ value: _value, ...item }: (typeof listed)[number]) => item;
  if (req.path === ANTHROPIC_LIST && req.method === 'GET') {
    const paged = pageOf(listed, req.query.get('after_id'), req.query.get('limit'), 1000);
    if (typeof paged === 'string') return anthropicError(400, 'invalid_request_error', paged);
    const data = paged.page.map(strip);
    return jsonAnswer(200, { data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: paged.hasMore });
  }
  const one = ANTHROPIC_ONE.exec(req.path);
  if (one && req.method === 'POST') {
    const key = listed.find((k) => k.id === one[1]);
    if (!key) return anthropicError(404, 'not_found_error', 'API key not found.');
    if (req.badJson || typeof req.body !== 'object' || req.body === null) return anthropicError(400, 'invalid_request_error', 'The request body must be a JSON object.');
    const status = (req.body as Record<string, unknown>)['status'];
    if (status !== undefined && status !== 'active' && status !== 'inactive' && status !== 'archived') {
      return anthropicError(400, 'invalid_request_error', 'status: Input should be \'active\', \'inactive\' or \'archived\'');
    }
    const current = state.revoked.anthropic.get(key.value);
    if (status === 'active') {
      if (current === 'archived') return anthropicError(400, 'invalid_request_error', 'An archived API key cannot be reactivated.');
      state.revoked.anthropic.delete(key.value);
    } else if (status === 'inactive' || status === 'archived') {
      state.revoked.anthropic.set(key.value, status);
    }
    return jsonAnswer(200, strip({ ...key, status: state.revoked.anthropic.get(key.value) ?? 'active' }));
  }
  return anthropicError(404, 'not_found_error', 'Not found');
}
