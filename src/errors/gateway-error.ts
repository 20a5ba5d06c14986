import { ERROR_CODES, type ErrorCode } from './codes.js';

export interface GatewayErrorOptions {
  /** The request field the error is about (`temperature`, `messages[3].content`), never its value. */
  param?: string;
  /** Seconds the client should wait before retrying (sent as `Retry-After`). */
  retryAfterSeconds?: number;
  /** The underlying failure, kept for operator logs only; never sent to a client. */
  cause?: unknown;
}

/**
 * The one error type of the request path: an HTTP status, a stable `code` and a safe message.
 *
 * The message must never hold request content or secret material, because error objects end
 * up in logs. Stages throw it; one error handler turns it into the endpoint's error shape.
 *
 * @example throw new GatewayError('policy_param_not_allowed', 'parameter "logprobs" is not allowed', { param: 'logprobs' })
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly param: string | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.param = options.param;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}
