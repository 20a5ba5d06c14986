/**
 * Every error code keywarden can return, with its HTTP status and error family.
 *
 * Codes are stable: clients `switch` on them and `docs/errors.md` documents each one
 * (a test checks). A retired code is never reused for another meaning.
 */
export const ERROR_CODES = {
  // authentication: deliberately terse, a wrong credential never says why
  auth_missing_credentials: { status: 401, family: 'authentication' },
  auth_invalid_credentials: { status: 401, family: 'authentication' },
  auth_key_expired: { status: 401, family: 'authentication' },
  auth_key_revoked: { status: 401, family: 'authentication' },
  auth_tenant_disabled: { status: 401, family: 'authentication' },
  auth_jwt_expired: { status: 401, family: 'authentication' },
  auth_jwt_not_yet_valid: { status: 401, family: 'authentication' },
  auth_jwt_issuer: { status: 401, family: 'authentication' },
  auth_jwt_audience: { status: 401, family: 'authentication' },
  auth_jwt_key_unknown: { status: 401, family: 'authentication' },
  auth_jwt_algorithm: { status: 401, family: 'authentication' },
  auth_jwt_invalid: { status: 401, family: 'authentication' },
  auth_jwt_tenant_unknown: { status: 401, family: 'authentication' },
  // too many failed authentications from this address or for this key id: refused unverified
  auth_rate_limited: { status: 429, family: 'rate_limit' },
  auth_cert_required: { status: 401, family: 'authentication' },
  auth_cert_untrusted: { status: 401, family: 'authentication' },
  auth_cert_expired: { status: 401, family: 'authentication' },
  auth_cert_revoked: { status: 401, family: 'authentication' },
  auth_cert_unknown: { status: 401, family: 'authentication' },

  // the HTTP request itself
  request_header_invalid: { status: 400, family: 'invalid_request' },
  request_unsupported_media_type: { status: 415, family: 'invalid_request' },
  request_body_too_large: { status: 413, family: 'too_large' },
  request_invalid_json: { status: 400, family: 'invalid_request' },
  request_too_deep: { status: 400, family: 'invalid_request' },
  request_invalid: { status: 400, family: 'invalid_request' },
  request_unknown_field: { status: 400, family: 'invalid_request' },
  request_too_many_messages: { status: 400, family: 'invalid_request' },
  request_too_many_attachments: { status: 400, family: 'invalid_request' },
  request_attachment_too_large: { status: 400, family: 'invalid_request' },
  route_not_found: { status: 404, family: 'not_found' },
  method_not_allowed: { status: 405, family: 'invalid_request' },
  // a streamed answer's client stopped reading it for longer than the provider's timeout: the
  // gateway closed the stream (recorded only; the client, not reading, is never sent it)
  client_read_timeout: { status: 408, family: 'timeout' },

  // tenant policy
  policy_model_not_allowed: { status: 403, family: 'permission' },
  policy_param_not_allowed: { status: 400, family: 'invalid_request' },
  policy_tools_not_allowed: { status: 400, family: 'invalid_request' },
  policy_files_not_allowed: { status: 400, family: 'invalid_request' },
  policy_capability_not_allowed: { status: 403, family: 'permission' },
  // a provider-stored object (previous_response_id) this tenant was not given: the same answer as
  // for an unknown id (400, as the provider answers an unknown one), so nobody learns another's ids exist
  request_object_not_owned: { status: 400, family: 'invalid_request' },

  // prompt DLP: the tenant's policy blocks secrets or personal data in the text sent to the model
  dlp_secret_blocked: { status: 400, family: 'invalid_request' },
  dlp_pii_blocked: { status: 400, family: 'invalid_request' },

  // quotas: a limit of the tenant (all its keys) or of the key itself was reached
  tenant_requests_per_minute_exceeded: { status: 429, family: 'rate_limit' },
  tenant_tokens_per_minute_exceeded: { status: 429, family: 'rate_limit' },
  tenant_tokens_per_day_exceeded: { status: 429, family: 'rate_limit' },
  tenant_budget_day_exceeded: { status: 429, family: 'rate_limit' },
  tenant_budget_month_exceeded: { status: 429, family: 'rate_limit' },
  tenant_concurrent_requests_exceeded: { status: 429, family: 'rate_limit' },
  key_requests_per_minute_exceeded: { status: 429, family: 'rate_limit' },
  key_tokens_per_minute_exceeded: { status: 429, family: 'rate_limit' },
  key_tokens_per_day_exceeded: { status: 429, family: 'rate_limit' },
  key_budget_day_exceeded: { status: 429, family: 'rate_limit' },
  key_budget_month_exceeded: { status: 429, family: 'rate_limit' },
  key_concurrent_requests_exceeded: { status: 429, family: 'rate_limit' },
  quota_model_unpriced: { status: 403, family: 'permission' },
  quota_store_unavailable: { status: 503, family: 'overloaded' },

  // the provider behind the gateway
  upstream_timeout: { status: 504, family: 'timeout' },
  upstream_unreachable: { status: 502, family: 'server' },
  upstream_rate_limited: { status: 429, family: 'rate_limit' },
  upstream_auth_failed: { status: 502, family: 'server' },
  upstream_rejected_request: { status: 400, family: 'invalid_request' },
  upstream_error: { status: 502, family: 'server' },
  upstream_overloaded: { status: 503, family: 'overloaded' },
  upstream_invalid_response: { status: 502, family: 'server' },
  provider_key_unavailable: { status: 503, family: 'overloaded' },
  provider_key_contained: { status: 503, family: 'overloaded' },

  // the gateway itself
  service_unavailable: { status: 503, family: 'overloaded' },
  // never an answer (the connection is closed): the record of a request the gateway ended at shutdown
  shutdown_drain_timeout: { status: 503, family: 'overloaded' },
  // a request on a TLS connection verified under client-certificate trust since replaced (a reload):
  // not handled; the client sends it again on a new connection
  connection_retired: { status: 421, family: 'server' },
  internal_error: { status: 500, family: 'server' },

  // admin API
  admin_unauthorized: { status: 401, family: 'authentication' },
  admin_forbidden: { status: 403, family: 'permission' },
  admin_auth_rate_limited: { status: 429, family: 'rate_limit' },
  admin_invalid_request: { status: 400, family: 'invalid_request' },
  admin_not_found: { status: 404, family: 'not_found' },
  admin_conflict: { status: 409, family: 'invalid_request' },
} as const satisfies Record<string, { status: number; family: ErrorFamily }>;

/** Broad classes that map onto each provider's own error `type` vocabulary. */
export type ErrorFamily =
  | 'authentication'
  | 'permission'
  | 'invalid_request'
  | 'too_large'
  | 'not_found'
  | 'rate_limit'
  | 'timeout'
  | 'overloaded'
  | 'server';

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}
