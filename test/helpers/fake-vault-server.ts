import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

/**
 * A fake HashiCorp Vault on loopback that speaks the parts of Vault's HTTP API keywarden uses:
 * KV v2 reads (`GET /v1/MOUNT/data/PATH` with `X-Vault-Token`, `X-Vault-Namespace`) and
 * AppRole login (`POST /v1/auth/MOUNT/login`), with Vault's JSON shapes and statuses
 * (403 `permission denied`, 404 `{"errors":[]}`, 400 `invalid role or secret ID`, 429 rate
 * limit, 503 `Vault is sealed`, 307 standby redirect), token policies, leases and expiry.
 */

export type VaultFault =
  | { kind: 'sealed' }
  | { kind: 'throttled' }
  | { kind: 'internal' }
  | { kind: 'malformed' }
  | { kind: 'huge' }
  | { kind: 'standby-redirect'; location: string }
  | { kind: 'slow'; delayMs: number };

export interface VaultRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

interface TokenRecord {
  /** Path prefixes (after /v1/) the token may read; `*` for all. */
  paths: readonly string[];
  expiresAt: number;
  namespace: string | undefined;
}

interface RoleRecord {
  secretId: string;
  paths: readonly string[];
  leaseSeconds: number;
}

interface SecretRecord {
  versions: Array<{ data: Record<string, unknown> | null; created: string; deleted: string }>;
}

export interface FakeVault {
  url: string;
  /** Every request received, in order, with the status it got. */
  requests: VaultRequest[];
  /** Successful AppRole logins. */
  logins(): number;
  /** Tokens issued by AppRole logins, in order. */
  issuedTokens: string[];
  /** Stores a new KV v2 version at `MOUNT/PATH`; returns its version number. */
  putSecret(mountAndPath: string, data: Record<string, unknown>): number;
  /** Soft-deletes the latest version (KV v2 `DELETE`): reads answer 404 with `data: null`. */
  deleteLatest(mountAndPath: string): void;
  addToken(token: string, options?: { paths?: readonly string[]; ttlSeconds?: number }): void;
  addRole(mount: string, roleId: string, secretId: string, options?: { paths?: readonly string[]; leaseSeconds?: number }): void;
  /** Invalidates every token issued or added so far. */
  revokeAllTokens(): void;
  /** A fault that answers every request (`on: 'read'` or `'login'` to limit it) until cleared. */
  setFault(fault: VaultFault | undefined, on?: 'all' | 'read' | 'login'): void;
  close(): Promise<void>;
}

export async function startFakeVault(options: { kvMounts?: readonly string[]; namespace?: string } = {}): Promise<FakeVault> {
  const kvMounts = new Set(options.kvMounts ?? ['secret']);
  const secrets = new Map<string, SecretRecord>();
  const tokens = new Map<string, TokenRecord>();
  const roles = new Map<string, Map<string, RoleRecord>>(); // mount → role id → role
  const requests: VaultRequest[] = [];
  const issuedTokens: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let logins = 0;
  let fault: { fault: VaultFault; on: 'all' | 'read' | 'login' } | undefined;

  function send(res: ServerResponse, req: VaultRequest, status: number, body: unknown, headers: Record<string, string> = {}): void {
    req.status = status;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(text);
  }

  const envelope = (fields: Record<string, unknown>) => ({
    request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0,
    data: null, wrap_info: null, warnings: null, auth: null, mount_type: '', ...fields,
  });

  function applyFault(res: ServerResponse, req: VaultRequest, kind: 'read' | 'login'): boolean {
    if (!fault || (fault.on !== 'all' && fault.on !== kind)) return false;
    const f = fault.fault;
    switch (f.kind) {
      case 'sealed':
        send(res, req, 503, { errors: ['Vault is sealed'] });
        return true;
      case 'throttled':
        send(res, req, 429, { errors: [`request path "${req.path.slice(4)}": rate limit quota exceeded`] }, { 'retry-after': '1' });
        return true;
      case 'internal':
        send(res, req, 500, { errors: ['1 error occurred:\n\t* internal error\n\n'] });
        return true;
      case 'malformed':
        send(res, req, 200, '<html>not vault</html>');
        return true;
      case 'huge':
        send(res, req, 200, `{"data":{"data":{"pad":"${'x'.repeat(2 * 1024 * 1024)}"}}}`);
        return true;
      case 'standby-redirect':
        req.status = 307;
        res.writeHead(307, { location: `${f.location}${req.path}` });
        res.end();
        return true;
      case 'slow': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) send(res, req, 200, envelope({}));
        }, f.delayMs);
        timers.add(timer);
        return true;
      }
    }
  }

  function tokenFor(req: VaultRequest): TokenRecord | undefined {
    const header = req.headers['x-vault-token'];
    const record = typeof header === 'string' ? tokens.get(header) : undefined;
    if (!record || Date.now() >= record.expiresAt) return undefined;
    if (record.namespace !== namespaceOf(req)) return undefined;
    return record;
  }

  const namespaceOf = (req: VaultRequest) => {
    const ns = req.headers['x-vault-namespace'];
    return typeof ns === 'string' ? ns.replace(/\/$/, '') : undefined;
  };

  function handle(req: VaultRequest, res: ServerResponse): void {
    const url = new URL(req.path, 'http://vault.invalid');
    const login = /^\/v1\/auth\/(.+)\/login$/.exec(url.pathname);
    if (login) {
      if (req.method !== 'POST') return send(res, req, 405, { errors: ['1 error occurred:\n\t* unsupported operation\n\n'] });
      if (applyFault(res, req, 'login')) return undefined;
      let body: { role_id?: unknown; secret_id?: unknown } = {};
      try {
        body = JSON.parse(req.body) as typeof body;
      } catch {
        return send(res, req, 400, { errors: ['failed to parse JSON input'] });
      }
      const role = typeof body.role_id === 'string' ? roles.get(login[1] ?? '')?.get(body.role_id) : undefined;
      if (namespaceOf(req) !== options.namespace) return send(res, req, 400, { errors: ['invalid role or secret ID'] });
      if (!role || typeof body.secret_id !== 'string' || body.secret_id !== role.secretId) return send(res, req, 400, { errors: ['invalid role or secret ID'] });
      logins += 1;
      const token = `hvs.fake-TEST-ONLY-${randomBytes(12).toString('hex')}`; // fake, TEST ONLY
      issuedTokens.push(token);
      tokens.set(token, { paths: role.paths, expiresAt: Date.now() + role.leaseSeconds * 1000, namespace: options.namespace });
      return send(res, req, 200, envelope({
        auth: {
          client_token: token, accessor: randomBytes(8).toString('hex'), policies: ['default', 'keywarden'],
          token_policies: ['default', 'keywarden'], metadata: { role_name: 'keywarden' },
          lease_duration: role.leaseSeconds, renewable: true, entity_id: randomUUID(), token_type: 'service', orphan: true,
          mfa_requirement: null, num_uses: 0,
        },
      }));
    }
    const read = /^\/v1\/([^/]+)\/data\/(.+)$/.exec(url.pathname);
    if (read && req.method === 'GET') {
      if (applyFault(res, req, 'read')) return undefined;
      const token = tokenFor(req);
      const apiPath = url.pathname.slice('/v1/'.length);
      // Vault checks the token's policy before looking the path up: a denied path is 403 whether it exists or not
      if (!token || !token.paths.some((p) => p === '*' || apiPath.startsWith(p))) return send(res, req, 403, { errors: ['permission denied'] });
      const mount = read[1] ?? '';
      if (!kvMounts.has(mount)) return send(res, req, 404, { errors: [`no handler for route "${apiPath}". route entry not found.`] });
      const secret = secrets.get(`${mount}/${read[2] ?? ''}`);
      const latest = secret?.versions[secret.versions.length - 1];
      if (!secret || !latest) return send(res, req, 404, { errors: [] });
      const metadata = { created_time: latest.created, custom_metadata: null, deletion_time: latest.deleted, destroyed: false, version: secret.versions.length };
      if (latest.data === null) return send(res, req, 404, envelope({ data: { data: null, metadata } }));
      return send(res, req, 200, envelope({ data: { data: latest.data, metadata }, mount_type: 'kv' }));
    }
    return send(res, req, 404, { errors: [] });
  }

  const server = createServer((incoming: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (c: Buffer) => chunks.push(c));
    incoming.on('end', () => {
      const req: VaultRequest = { method: incoming.method ?? '', path: incoming.url ?? '', headers: incoming.headers, body: Buffer.concat(chunks).toString('utf8'), status: 0 };
      requests.push(req);
      handle(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const splitPath = (mountAndPath: string) => {
    const slash = mountAndPath.indexOf('/');
    if (slash <= 0) throw new Error('use MOUNT/PATH');
    return mountAndPath;
  };

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    issuedTokens,
    logins: () => logins,
    putSecret(mountAndPath, data) {
      const key = splitPath(mountAndPath);
      const record = secrets.get(key) ?? { versions: [] };
      record.versions.push({ data: { ...data }, created: new Date().toISOString(), deleted: '' });
      secrets.set(key, record);
      return record.versions.length;
    },
    deleteLatest(mountAndPath) {
      const latest = secrets.get(splitPath(mountAndPath))?.versions.at(-1);
      if (latest) {
        latest.data = null;
        latest.deleted = new Date().toISOString();
      }
    },
    addToken(token, opts = {}) {
      tokens.set(token, { paths: opts.paths ?? ['*'], expiresAt: opts.ttlSeconds ? Date.now() + opts.ttlSeconds * 1000 : Infinity, namespace: options.namespace });
    },
    addRole(mount, roleId, secretId, opts = {}) {
      const byId = roles.get(mount) ?? new Map<string, RoleRecord>();
      byId.set(roleId, { secretId, paths: opts.paths ?? ['*'], leaseSeconds: opts.leaseSeconds ?? 3600 });
      roles.set(mount, byId);
    },
    revokeAllTokens() {
      tokens.clear();
    },
    setFault(next, on = 'all') {
      fault = next ? { fault: next, on } : undefined;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
