export { ERROR_CODES, isErrorCode, type ErrorCode, type ErrorFamily } from './codes.js';
export { GatewayError, isGatewayError, type GatewayErrorOptions } from './gateway-error.js';
export { errorBody, type ErrorDialect } from './shape.js';
