import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * A throwaway PKI made with the `openssl` command at test time: a CA, a server certificate for
 * 127.0.0.1/localhost and client certificates. Every key is generated fresh in a temp dir and is
 * TEST-ONLY: it unlocks nothing anywhere and is deleted with the dir.
 */

export interface IssuedCertificate {
  certPath: string;
  keyPath: string;
  /** PEM text. */
  cert: string;
  key: string;
  /** SHA-256 of the DER certificate, lowercase hex. */
  fingerprint: string;
}

export interface TestCa extends IssuedCertificate {
  /** Issues a certificate signed by this CA. */
  issue(name: string, options?: IssueOptions): IssuedCertificate;
  /** Marks a certificate this CA issued as revoked in its database (for the next `crl`). */
  revoke(certificate: IssuedCertificate): void;
  /** Writes a PEM CRL of this CA listing every revoked certificate; returns its path. */
  crl(file: string, options?: CrlOptions): string;
}

export interface CrlOptions {
  /** A CRL whose nextUpdate is already past (lastUpdate 2020-01-01, nextUpdate 2020-01-02). */
  expired?: boolean;
}

export interface IssueOptions {
  commonName?: string;
  /** URI subject alternative names (SPIFFE IDs). */
  sanUris?: readonly string[];
  /** DNS and IP names (a server certificate). */
  dnsNames?: readonly string[];
  ips?: readonly string[];
  /** `server` adds serverAuth, `client` (default) clientAuth. */
  usage?: 'server' | 'client';
  /** An already expired certificate (notAfter in the past). */
  expired?: boolean;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function finish(dir: string, name: string): IssuedCertificate {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  const cert = readFileSync(certPath, 'utf8');
  return { certPath, keyPath, cert, key: readFileSync(keyPath, 'utf8'), fingerprint: createHash('sha256').update(new X509Certificate(cert).raw).digest('hex') };
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Makes a self-signed CA in `dir` (created if missing) named `name`. */
export function createTestCa(dir: string, name: string): TestCa {
  mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=keywarden ${name} TEST-ONLY`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const ca = finish(dir, name);
  let serial = 1;
  // a minimal `openssl ca` setup for CRLs: an index file (the revocation database) and a config naming it
  writeFileSync(join(dir, `${name}-index.txt`), '');
  writeFileSync(join(dir, `${name}-ca.cnf`), `[ ca ]\ndefault_ca = kw\n[ kw ]\ndatabase = ${name}-index.txt\ndefault_md = sha256\ndefault_crl_days = 1\n`);
  const caArgs = ['-config', `${name}-ca.cnf`, '-keyfile', `${name}.key`, '-cert', `${name}.crt`];
  return {
    ...ca,
    issue(leaf, options = {}) {
      openssl(['req', '-new', ...EC_KEY, '-keyout', `${leaf}.key`, '-out', `${leaf}.csr`, '-subj', `/CN=${options.commonName ?? leaf}`], dir);
      const names = [
        ...(options.sanUris ?? []).map((u) => `URI:${u}`), ...(options.dnsNames ?? []).map((d) => `DNS:${d}`), ...(options.ips ?? []).map((i) => `IP:${i}`),
      ];
      const ext = [
        'basicConstraints=CA:FALSE',
        `extendedKeyUsage=${options.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
        ...(names.length > 0 ? [`subjectAltName=${names.join(',')}`] : []),
      ].join('\n');
      writeFileSync(join(dir, `${leaf}.ext`), `${ext}\n`);
      const sign = ['x509', '-req', '-in', `${leaf}.csr`, '-CA', `${name}.crt`, '-CAkey', `${name}.key`, '-set_serial', String(serial++), '-out', `${leaf}.crt`, '-extfile', `${leaf}.ext`];
      if (!options.expired) openssl([...sign, '-days', '1'], dir);
      else {
        try {
          // OpenSSL 3.0–3.3: a negative validity gives notAfter a day before now
          openssl([...sign, '-days', '-1'], dir);
        } catch {
          openssl([...sign, '-not_before', '20200101000000Z', '-not_after', '20200102000000Z'], dir);
        }
      }
      const issued = finish(dir, leaf);
      if (options.expired && Date.parse(new X509Certificate(issued.cert).validTo) > Date.now()) throw new Error('openssl made no expired certificate');
      return issued;
    },
    revoke(certificate) {
      openssl(['ca', ...caArgs, '-revoke', certificate.certPath], dir);
    },
    crl(file, options = {}) {
      const dates = options.expired ? ['-crl_lastupdate', '20200101000000Z', '-crl_nextupdate', '20200102000000Z'] : [];
      const out = join(dir, file);
      openssl(['ca', ...caArgs, '-gencrl', ...dates, '-out', out], dir);
      return out;
    },
  };
}

/** A JSON answer over HTTPS: status, parsed body (undefined when not JSON) and text. */
/**
 * A fresh folder with a test CA and a server certificate for localhost / 127.0.0.1, its key
 * owner-only (the gateway reads it through the secret resolver, which refuses wider modes).
 */
export function createServerPki(prefix: string): { dir: string; ca: TestCa; server: IssuedCertificate } {
  const dir = mkdtempSync(join(tmpdir(), `keywarden-${prefix}-`));
  const ca = createTestCa(dir, 'ca');
  const server = ca.issue('server', { usage: 'server', commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  chmodSync(server.keyPath, 0o600);
  return { dir, ca, server };
}

export interface HttpsAnswer { status: number; json: Record<string, any> | undefined; text: string }

/** One request over a fresh TLS connection (no pooled session), optionally with a client certificate. */
export function httpsSend(url: string, path: string, options: { client?: IssuedCertificate; ca: string; body?: unknown; headers?: Record<string, string>; method?: string }): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = httpsRequest(new URL(path, url), {
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      agent: false,
      ca: options.ca,
      ...(options.client ? { cert: options.client.cert, key: options.client.key } : {}),
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(options.headers ?? {}) },
    }, (res) => readAnswer(res, resolve));
    req.on('error', reject);
    req.end(body);
  });
}

/** Reads a response whole: its status, its text, and the text as JSON when it is JSON. */
export function readAnswer(res: IncomingMessage, done: (answer: HttpsAnswer) => void): void {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => { text += chunk; });
  res.on('end', () => {
    let json: Record<string, any> | undefined;
    try { json = JSON.parse(text) as Record<string, any>; } catch { json = undefined; }
    done({ status: res.statusCode ?? 0, json, text });
  });
}
