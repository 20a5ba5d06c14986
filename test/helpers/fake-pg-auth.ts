import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A test double for the PostgreSQL login handshake only (not a database): a TCP server on a
 * free loopback port that speaks just enough of the v3 wire protocol to see what a client
 * sends as its password.
 *
 * Per connection: an SSLRequest (or GSSENCRequest) is answered `N` (no TLS here); the
 * StartupMessage is read (user, database, other parameters); one authentication request is
 * sent, by `method`:
 *   - `cleartext`: AuthenticationCleartextPassword (R, 3); the PasswordMessage holds the password.
 *   - `md5`: AuthenticationMD5Password (R, 5) with a random 4-byte salt; the PasswordMessage
 *     holds `md5` + md5hex(md5hex(password + user) + salt).
 *   - `scram-sha-256`: AuthenticationSASL (R, 10), SASLContinue (R, 11) with a server nonce,
 *     salt and iteration count; the client's proof is checked against `expectedPassword`
 *     (SCRAM never sends the password, so validity is all there is to record).
 * Whatever arrives is recorded as an attempt, and the login is always refused with the
 * ErrorResponse a real server sends (FATAL, SQLSTATE 28P01, `password authentication failed
 * for user "…"`), then the connection is closed. No query is ever served.
 */

export type FakePgAuthMethod = 'cleartext' | 'md5' | 'scram-sha-256';

/** What one client connection sent. */
export interface FakePgAttempt {
  /** The client asked for TLS first (and was told `N`). */
  sslRequested: boolean;
  /** StartupMessage parameters (`user`, `database`, `application_name`, …); undefined when none arrived. */
  startup: Record<string, string> | undefined;
  /** `cleartext`: the password as sent; `md5`: the `md5…` hash as sent. Undefined when no PasswordMessage came. */
  password?: string;
  /** `md5`: the salt this server sent. */
  salt?: Buffer;
  /** `scram-sha-256`: the mechanism the client chose and whether its proof matches `expectedPassword`. */
  scram?: { mechanism: string; proofValid: boolean };
}

export interface FakePgAuthServer {
  port: number;
  /** Every connection so far, in order of arrival (filled in as messages arrive). */
  attempts: FakePgAttempt[];
  /** Resolves once at least `n` attempts got as far as their password (or proof); rejects after `ms`. */
  waitForPasswords(n: number, ms?: number): Promise<FakePgAttempt[]>;
  close(): Promise<void>;
}

export interface FakePgAuthOptions {
  method: FakePgAuthMethod;
  /** Needed for `scram-sha-256`: the password the client's proof is checked against. */
  expectedPassword?: string;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3_0 = 196608;
const SCRAM_ITERATIONS = 4096; // PostgreSQL's default

/** What a client must send for `md5`: `md5` + md5hex(md5hex(password + user) + salt). Computed here, not by pg. */
export function md5PasswordMessage(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user, 'utf8').digest('hex');
  return `md5${createHash('md5').update(Buffer.concat([Buffer.from(inner, 'utf8'), salt])).digest('hex')}`;
}

/** md5hex(password + user): the verifier PostgreSQL stores for md5 roles (itself password-equivalent). */
export function md5Verifier(user: string, password: string): string {
  return createHash('md5').update(password + user, 'utf8').digest('hex');
}

/** Reads exact byte counts from a socket, in order. */
class Reader {
  private buffered = Buffer.alloc(0);
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.pump();
    });
    const end = () => {
      this.ended = true;
      this.pump();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { n, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    const w = this.wanted;
    if (!w) return;
    if (this.buffered.length >= w.n) {
      this.wanted = undefined;
      const out = this.buffered.subarray(0, w.n);
      this.buffered = this.buffered.subarray(w.n);
      w.resolve(out);
    } else if (this.ended) {
      this.wanted = undefined;
      w.reject(new Error('connection closed'));
    }
  }
}

/** A backend message: type byte, Int32 length (counting itself), body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function authRequest(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32BE(code, 0);
  return message('R', Buffer.concat([body, extra]));
}

function authFailed(user: string): Buffer {
  const field = (code: string, value: string) => Buffer.from(`${code}${value}\0`, 'utf8');
  return message('E', Buffer.concat([
    field('S', 'FATAL'), field('V', 'FATAL'), field('C', '28P01'),
    field('M', `password authentication failed for user "${user}"`), Buffer.from([0]),
  ]));
}

/** Splits a run of NUL-terminated strings. */
function cstrings(buf: Buffer): string[] {
  return buf.toString('utf8').split('\0');
}

/** Reads one frontend message of the expected type; anything else ends the conversation. */
async function readTyped(reader: Reader, type: string): Promise<Buffer> {
  const head = await reader.read(5);
  const got = head.toString('latin1', 0, 1);
  const length = head.readInt32BE(1);
  if (length < 4 || length > 64 * 1024) throw new Error(`implausible message length ${length}`);
  const body = await reader.read(length - 4);
  if (got !== type) throw new Error(`expected message ${type}, got ${got}`);
  return body;
}

/** Verifies a SCRAM-SHA-256 ClientProof (RFC 5802) against the password the test expects. */
function scramProofValid(password: string, salt: Buffer, authMessage: string, proofB64: string): boolean {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, SCRAM_ITERATIONS, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const signature = createHmac('sha256', storedKey).update(authMessage).digest();
  const proof = Buffer.from(proofB64, 'base64');
  if (proof.length !== signature.length) return false;
  const recovered = Buffer.alloc(proof.length);
  for (let i = 0; i < proof.length; i++) recovered[i] = (proof[i] as number) ^ (signature[i] as number);
  return timingSafeEqual(createHash('sha256').update(recovered).digest(), storedKey);
}

async function converse(socket: Socket, options: FakePgAuthOptions, attempt: FakePgAttempt, onPassword: () => void): Promise<void> {
  const reader = new Reader(socket);
  // startup: Int32 length, Int32 code; SSL/GSS requests come first and are answered 'N'
  let params: Record<string, string> | undefined;
  while (!params) {
    const length = (await reader.read(4)).readInt32BE(0);
    if (length < 8 || length > 10_000) throw new Error(`implausible startup length ${length}`);
    const body = await reader.read(length - 4);
    const code = body.readInt32BE(0);
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      if (code === SSL_REQUEST) attempt.sslRequested = true;
      socket.write('N');
      continue;
    }
    if (code === CANCEL_REQUEST) return;
    if (code !== PROTOCOL_3_0) throw new Error(`unsupported protocol ${code}`);
    const parts = cstrings(body.subarray(4));
    params = {};
    for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) params[parts[i] as string] = parts[i + 1] as string;
  }
  attempt.startup = params;
  const user = params['user'] ?? '';

  if (options.method === 'cleartext' || options.method === 'md5') {
    if (options.method === 'md5') {
      attempt.salt = randomBytes(4);
      socket.write(authRequest(5, attempt.salt));
    } else {
      socket.write(authRequest(3));
    }
    attempt.password = cstrings(await readTyped(reader, 'p'))[0];
    onPassword();
  } else {
    socket.write(authRequest(10, Buffer.from('SCRAM-SHA-256\0\0', 'utf8')));
    // SASLInitialResponse: mechanism\0, Int32 length, client-first-message
    const initial = await readTyped(reader, 'p');
    const nul = initial.indexOf(0);
    const mechanism = initial.toString('utf8', 0, nul);
    const firstLength = initial.readInt32BE(nul + 1);
    const clientFirst = initial.toString('utf8', nul + 5, nul + 5 + firstLength);
    // gs2 header ("n,,") then the bare message "n=…,r=NONCE"
    const bare = clientFirst.slice(clientFirst.indexOf(',', clientFirst.indexOf(',') + 1) + 1);
    const clientNonce = /(?:^|,)r=([^,]+)/.exec(bare)?.[1] ?? '';
    const salt = randomBytes(16);
    const serverFirst = `r=${clientNonce}${randomBytes(18).toString('base64')},s=${salt.toString('base64')},i=${SCRAM_ITERATIONS}`;
    socket.write(authRequest(11, Buffer.from(serverFirst, 'utf8')));
    // SASLResponse: client-final-message "c=…,r=…,p=PROOF"
    const clientFinal = (await readTyped(reader, 'p')).toString('utf8');
    const proofAt = clientFinal.lastIndexOf(',p=');
    const withoutProof = clientFinal.slice(0, proofAt);
    const proof = clientFinal.slice(proofAt + 3);
    const authMessage = `${bare},${serverFirst},${withoutProof}`;
    const expected = options.expectedPassword ?? '';
    attempt.scram = { mechanism, proofValid: expected !== '' && proofAt > 0 && scramProofValid(expected, salt, authMessage, proof) };
    onPassword();
  }
  socket.end(authFailed(user));
}

/** Starts the fake on 127.0.0.1, a free port. */
export async function startFakePgAuth(options: FakePgAuthOptions): Promise<FakePgAuthServer> {
  if (options.method === 'scram-sha-256' && !options.expectedPassword) throw new Error('scram-sha-256 needs expectedPassword');
  const attempts: FakePgAttempt[] = [];
  const sockets = new Set<Socket>();
  const waiters = new Set<() => void>();
  const passwords = () => attempts.filter((a) => a.password !== undefined || a.scram !== undefined);
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const attempt: FakePgAttempt = { sslRequested: false, startup: undefined };
    attempts.push(attempt);
    converse(socket, options, attempt, () => { for (const w of waiters) w(); })
      .catch(() => undefined)
      .finally(() => { if (!socket.destroyed) socket.end(); });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    attempts,
    waitForPasswords(n, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`the fake PostgreSQL server saw ${passwords().length} password(s), wanted ${n}`));
        }, ms);
        function check(): void {
          if (passwords().length < n) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(passwords());
        }
        waiters.add(check);
        check();
      });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
