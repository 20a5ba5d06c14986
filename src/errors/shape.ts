import { ERROR_CODES, type ErrorFamily } from './codes.js';
import type { GatewayError } from './gateway-error.js';

/** Which client-facing error vocabulary an endpoint speaks. */
export type ErrorDialect = 'openai' | 'anthropic';

const OPENAI_TYPES: Record<ErrorFamily, string> = {
  authentication: 'authentication_error',
  permission: 'permission_error',
  invalid_request: 'invalid_request_error',
  too_large: 'invalid_request_error',
  not_found: 'not_found_error',
  rate_limit: 'rate_limit_error',
  timeout: 'timeout_error',
  overloaded: 'server_error',
  server: 'server_error',
};

const ANTHROPIC_TYPES: Record<ErrorFamily, string> = {
  authentication: 'authentication_error',
  permission: 'permission_error',
  invalid_request: 'invalid_request_error',
  too_large: 'request_too_large',
  not_found: 'not_found_error',
  rate_limit: 'rate_limit_error',
  timeout: 'timeout_error',
  overloaded: 'overloaded_error',
  server: 'api_error',
};

/**
 * The JSON body for an error in the given dialect.
 *
 * OpenAI: `{"error":{"message","type","param","code"}}`.
 * Anthropic: `{"type":"error","error":{"type","message","code"},"request_id"}` (`code` is our addition,
 * which the Anthropic SDK ignores).
 */
export function errorBody(err: GatewayError, dialect: ErrorDialect, requestId: string): Record<string, unknown> {
  const family = ERROR_CODES[err.code].family;
  if (dialect === 'anthropic') {
    return {
      type: 'error',
      error: { type: ANTHROPIC_TYPES[family], message: err.message, code: err.code },
      request_id: requestId,
    };
  }
  return {
    error: { message: err.message, type: OPENAI_TYPES[family], param: err.param ?? null, code: err.code },
  };
}
