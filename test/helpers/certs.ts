import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
  };
}
