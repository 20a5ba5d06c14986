import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { secureClientConnection } from '../auth/client-cert.js';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { GatewayError, errorBody } from '../errors/index.js';

/** Sockets whose request was refused for its framing: whatever follows on them is not parsed. */
const refusedSockets = new WeakSet<Socket>();

/**
 * Marks a connection whose request was refused for ambiguous framing. The answer closes it, and
 * any bytes after the refused request (a smuggled second request) get no answer of their own.
 */
export function refuseConnection(socket: Socket): void {
  refusedSockets.add(socket);
}

/**
 * True for a connection refused for its framing: Node's parser has already read any requests
 * pipelined behind the refused one (a smuggled request); they are never acted on.
 */
export function isRefusedConnection(socket: Socket): boolean {
  return refusedSockets.has(socket);
}

const inFlight = new WeakMap<Server, { count: number }>();

/** Requests the server is still answering (streams included); drains wait for this to reach zero. */
export function inFlightRequests(server: Server): number {
  return inFlight.get(server)?.count ?? 0;
}

export interface HttpServerLimits {
  maxHeaderBytes: number;
}

/** TLS material of a listener, loaded (PEM text, not paths or references). */
export interface HttpServerTls {
  cert: string;
  key: string;
  /** CA bundle for client certificates: when set, the server asks each client for one. */
  clientCa?: string;
  /** CRLs (one PEM text each) client certificates are checked against; OpenSSL reports CERT_REVOKED. */
  crl?: readonly string[];
}

/**
 * Checks TLS material at start-up, so a wrong key, a key that does not match the certificate or
 * an unreadable CA bundle stops the gateway with a clear message (never the key's content).
 */
export function checkServerTls(tls: HttpServerTls, path = 'listen.public_tls'): void {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.clientCa !== undefined ? { ca: tls.clientCa } : {}), ...(tls.crl !== undefined ? { crl: [...tls.crl] } : {}) });
  } catch (err) {
    const reason = (err as { code?: string }).code ?? 'unreadable';
    throw new Error(`${path}: the certificate, key or client CA bundle could not be used (${reason})`);
  }
}

/**
 * Creates the Node HTTP server under a listener with strict parsing: Node's llhttp refuses
 * `Content-Length` together with `Transfer-Encoding`, duplicate `Content-Length` and obfuscated
 * `Transfer-Encoding` (the lenient parser stays off). Parse failures answer a coded 400 in the
 * OpenAI error shape instead of Node's bare one.
 *
 * With `tls` the server speaks HTTPS (TLS 1.2 at least). With `tls.clientCa` it requests a client
 * certificate but does not refuse a bad one in the handshake: the route's authentication reads
 * the verdict (`socket.authorized`) and answers a coded 401 the client can act on. With `tls.crl`
 * the verdict includes revocation (the CRLs are fixed for the server's life: a new one needs a restart).
 */
export function createHttpServer(limits: HttpServerLimits, handler: (req: IncomingMessage, res: ServerResponse) => void, tls?: HttpServerTls): Server {
  const httpOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    insecureHTTPParser: false,
    // the listener answers a missing Host itself, with a coded error (Node's answer is a bare 400)
    requireHostHeader: false,
    requestTimeout: 300_000,
    headersTimeout: 30_000,
    keepAliveTimeout: 65_000,
    noDelay: true,
  };
  if (tls) checkServerTls(tls);
  const server = tls
    ? createHttpsServer({
      ...httpOptions, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2',
      // rejectUnauthorized false: every certificate is judged per request, never silently accepted
      ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
      // with CRLs OpenSSL checks the leaf's issuer's CRL: revoked, expired or missing CRL all leave `authorized` false
      ...(tls.clientCa !== undefined && tls.crl !== undefined ? { crl: [...tls.crl] } : {}),
    }, handler) as unknown as Server
    : createServer(httpOptions, handler);
  // no renegotiation on any TLS connection; the handshake's client certificate is the only one trusted
  if (tls) server.on('secureConnection', (socket: TLSSocket) => secureClientConnection(socket));
  const counter = { count: 0 };
  inFlight.set(server, counter);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // a request refused for its framing (the handler ran first) and any pipelined behind it are
    // never answered on their own: the connection closes, so they are not waited for either
    if (refusedSockets.has(req.socket)) return;
    counter.count += 1;
    res.once('close', () => {
      counter.count -= 1;
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (refusedSockets.has(socket) || !socket.writable || (err as { code?: string }).code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const error = new GatewayError('request_header_invalid', tooLarge ? 'request headers are too large' : 'malformed HTTP request');
    const requestId = randomUUID();
    const body = JSON.stringify(errorBody(error, 'openai', requestId));
    socket.end(
      `HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
