import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { SecureContextOptions, Server as TlsServer, TLSSocket } from 'node:tls';
import { secureClientConnection } from '../auth/client-cert.js';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { GatewayError, errorBody } from '../errors/index.js';
import { dialectForPath } from './routes.js';

/**
 * Sockets on which no further request is acted on: one whose request was refused for its framing,
 * and one retired by a change of client-certificate trust whose next request was answered 421.
 * The listener never hands a request on such a socket to its handler.
 */
const refusedSockets = new WeakSet<Socket>();

/**
 * Marks a connection whose request was refused for ambiguous framing. The answer closes it, and
 * any bytes after the refused request (a smuggled second request) get no answer of their own.
 */
export function refuseConnection(socket: Socket): void {
  refusedSockets.add(socket);
}

/**
 * True for a refused connection (its framing, or a request after its TLS trust was replaced):
 * Node's parser has already read any requests pipelined behind the refused one; they are never acted on.
 */
export function isRefusedConnection(socket: Socket): boolean {
  return refusedSockets.has(socket);
}

/**
 * Milliseconds a new TLS connection has to finish its handshake (Node's default is 120 s): an
 * unhandshaken connection holds a socket, keeps a drain waiting and was accepted under the TLS
 * material of its arrival, so it is not kept long.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

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
 * The secure-context options of a listener's material: one definition for the start-up check,
 * the server and every reload, so a reload can never apply something the start would refuse.
 */
function secureContextOptions(tls: HttpServerTls): SecureContextOptions {
  return {
    cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2',
    ...(tls.clientCa !== undefined ? { ca: tls.clientCa } : {}),
    // with CRLs OpenSSL checks the leaf's issuer's CRL: revoked, expired or missing CRL all leave `authorized` false
    ...(tls.clientCa !== undefined && tls.crl !== undefined ? { crl: [...tls.crl] } : {}),
  };
}

/**
 * Checks TLS material at start-up (and before a reload applies it), so a wrong key, a key that
 * does not match the certificate or an unreadable CA bundle is refused with a clear message
 * (never the key's content).
 */
export function checkServerTls(tls: HttpServerTls, path = 'listen.public_tls'): void {
  try {
    createSecureContext(secureContextOptions(tls));
  } catch (err) {
    const reason = (err as { code?: string }).code ?? 'unreadable';
    throw new Error(`${path}: the certificate, key or client CA bundle could not be used (${reason})`);
  }
}

/**
 * The TLS connections of a server and the generation of material each was accepted under. Node
 * binds a connection's secure context when its TCP connection arrives, not when its handshake
 * ends: the generation is taken then, and a connection still in its handshake is tracked too.
 */
interface TlsConnections {
  generation: number;
  /** TCP connections whose TLS handshake has not finished, with the generation of their arrival. */
  handshaking: Map<Socket, number>;
  live: Map<TLSSocket, number>;
}
const tlsConnections = new WeakMap<Server, TlsConnections>();
/** Responses not yet finished, per connection: a connection with none is idle. */
const openResponses = new WeakMap<Socket, Set<ServerResponse>>();
/** Connections accepted under client-certificate trust that has since been replaced. */
const retiredSockets = new WeakSet<Socket>();

/**
 * Puts new TLS material in use on a listener: new connections use it, established ones keep
 * the context they were accepted under. With `retireConnections` (the client CA bundle or the
 * CRLs changed), connections accepted before are not reused: those still in their handshake
 * (verified under the old material, whenever it ends) and idle ones close now, busy ones once
 * their responses are done, and a request that starts on a retired connection is answered 421
 * `connection_retired`, never handled; so a certificate revoked by the new CRL is not served on
 * a connection from before. Returns the number of connections retired. Throws, leaving the old
 * context in place, when Node refuses the material (callers check it with checkServerTls first).
 */
export function applyServerTls(server: Server, tls: HttpServerTls, options: { retireConnections: boolean }): number {
  const state = tlsConnections.get(server);
  if (!state) throw new Error('not a TLS listener');
  // Node builds the whole new context before swapping it in: on a throw the old one stays.
  // The new context has new session-ticket keys, so a session from before is not resumed with
  // its old verdict: its next connection is a full handshake against the new CRLs.
  (server as unknown as TlsServer).setSecureContext(secureContextOptions(tls));
  const before = state.generation;
  state.generation += 1;
  if (!options.retireConnections) return 0;
  let retired = 0;
  for (const [raw, generation] of state.handshaking) {
    if (generation > before) continue;
    // its handshake would verify the client certificate against the old CA bundle and CRLs
    retired += 1;
    state.handshaking.delete(raw);
    raw.destroy();
  }
  for (const [socket, generation] of state.live) {
    if (generation > before) continue;
    retired += 1;
    retiredSockets.add(socket);
    const pending = openResponses.get(socket);
    if (!pending || pending.size === 0) {
      socket.destroy();
      continue;
    }
    for (const res of pending) {
      if (!res.headersSent) res.setHeader('connection', 'close');
      else res.once('finish', () => socket.end());
    }
  }
  return retired;
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
 * the verdict includes revocation. `applyServerTls` replaces the material while the server runs.
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
  // a request on a refused connection never reaches the handler (whatever the handler checks itself)
  const guarded = (req: IncomingMessage, res: ServerResponse): void => {
    if (refusedSockets.has(req.socket)) return;
    handler(req, res);
  };
  const server = tls
    ? createHttpsServer({
      ...httpOptions, ...secureContextOptions(tls),
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      // rejectUnauthorized false: every certificate is judged per request, never silently accepted
      ...(tls.clientCa !== undefined ? { requestCert: true, rejectUnauthorized: false } : {}),
    }, guarded) as unknown as Server
    : createServer(httpOptions, guarded);
  if (tls) {
    const connections: TlsConnections = { generation: 0, handshaking: new Map(), live: new Map() };
    tlsConnections.set(server, connections);
    // after Node's own listener, which wrapped the socket in a TLSSocket bound to the current context
    server.on('connection', (raw: Socket) => {
      connections.handshaking.set(raw, connections.generation);
      raw.once('close', () => connections.handshaking.delete(raw));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      // no renegotiation on any TLS connection; the handshake's client certificate is the only one trusted
      secureClientConnection(socket);
      // the generation of the TCP connection's arrival (the TLSSocket's _parent is it): the context
      // that verified the handshake; unknown, it counts as the oldest, retired at the next change
      const raw = (socket as unknown as { _parent?: Socket })._parent;
      const arrived = raw === undefined ? undefined : connections.handshaking.get(raw);
      if (raw !== undefined) connections.handshaking.delete(raw);
      connections.live.set(socket, arrived ?? -1);
      socket.once('close', () => connections.live.delete(socket));
    });
    // before the handler: a request that starts on a retired connection is refused (421), never handled
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      if (retiredSockets.has(socket)) {
        refuseRetired(req, res);
        return;
      }
      let pending = openResponses.get(socket);
      if (!pending) openResponses.set(socket, pending = new Set());
      pending.add(res);
      res.once('close', () => pending.delete(res));
    });
  }
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
    // Node's HTTPS server reports a failed or timed-out TLS handshake here too: such a connection
    // has no HTTP to answer in (an answer written to it would wait for a handshake that never comes)
    const tlsState = tlsConnections.get(server);
    const handshakeFailed = tlsState !== undefined && !tlsState.live.has(socket as TLSSocket);
    if (handshakeFailed || refusedSockets.has(socket) || !socket.writable || (err as { code?: string }).code === 'ECONNRESET') {
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

/**
 * Answers a request that started on a connection retired by new client-certificate trust: it was
 * verified under the trust that was replaced, so it is neither authenticated nor forwarded. The
 * 421 tells the client to send it again on a new connection (RFC 9110 §15.5.20); the connection
 * closes after the responses before it, and nothing more on it is acted on.
 */
function refuseRetired(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  if (refusedSockets.has(socket)) return;
  refusedSockets.add(socket);
  const requestId = randomUUID();
  const error = new GatewayError('connection_retired', 'this connection was verified under TLS trust that has since been replaced; send the request again on a new connection');
  const body = JSON.stringify(errorBody(error, dialectForPath(req.url ?? '/'), requestId));
  res.writeHead(error.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, connection: 'close' });
  res.end(body);
}
