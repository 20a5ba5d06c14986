import type { Endpoint } from '../providers/types.js';
import type { ErrorDialect } from '../errors/index.js';

export interface ProviderRoute {
  path: string;
  endpoint: Endpoint;
  /** The error and stream vocabulary clients of this route expect. */
  dialect: ErrorDialect;
}

/** The public routes that reach a provider. Anything else is 404: deny by default. */
export const PROVIDER_ROUTES: readonly ProviderRoute[] = [
  { path: '/v1/chat/completions', endpoint: 'chat', dialect: 'openai' },
  { path: '/v1/responses', endpoint: 'responses', dialect: 'openai' },
  { path: '/v1/embeddings', endpoint: 'embeddings', dialect: 'openai' },
  { path: '/v1/messages', endpoint: 'messages', dialect: 'anthropic' },
];

/** The dialect for an error on a path no route matched (Anthropic clients use /v1/messages…). */
export function dialectForPath(url: string): ErrorDialect {
  return url.startsWith('/v1/messages') ? 'anthropic' : 'openai';
}
