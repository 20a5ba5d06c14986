import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';

/*
 * Certificate revocation lists for client certificates (`listen.public_tls.crl`). OpenSSL does
 * the revocation check in the handshake; this module only reads the CRL files, at start-up and at
 * each reload (src/server/tls-reload.ts), so a file that is missing, unreadable or not a PEM CRL
 * stops the start (or fails the reload, keeping the CRLs in use) with every problem listed, and a
 * CRL that would make OpenSSL refuse every certificate (expired, or no CRL for a client CA) is
 * reported before the first client is refused. A reload also refuses a CRL older than the one
 * in use for the same CA (a rollback). Nothing here judges a certificate.
 */

/** What reading the configured CRL files found. */
export interface LoadedCrls {
  /** One PEM text per CRL (Node's `crl` option reads only the first CRL of each string). */
  pems: string[];
  /** Problems that stop the start: `listen.public_tls.crl: …`, one line each. */
  problems: string[];
  /** Conditions under which OpenSSL refuses client certificates, worth a warning at start-up and reload. */
  warnings: string[];
}

interface Tlv { tag: number; start: number; contentStart: number; end: number }

/** Reads one DER tag-length-value at `offset`; throws on a truncated or over-long encoding. */
function readTlv(der: Uint8Array, offset: number, limit = der.length): Tlv {
  if (offset + 2 > limit) throw new Error('truncated');
  const tag = der[offset] as number;
  let length = der[offset + 1] as number;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || contentStart + bytes > limit) throw new Error('bad length');
    length = 0;
    for (let i = 0; i < bytes; i += 1) length = length * 256 + (der[contentStart + i] as number);
    contentStart += bytes;
  }
  const end = contentStart + length;
  if (end > limit) throw new Error('truncated');
  return { tag, start: offset, contentStart, end };
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

function derTime(der: Uint8Array, tlv: Tlv): number {
  const text = Buffer.from(der.subarray(tlv.contentStart, tlv.end)).toString('latin1');
  const m = tlv.tag === UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) throw new Error('bad time');
  let year = Number(m[1]);
  // RFC 5280: a two-digit year below 50 is 20YY
  if (tlv.tag === UTC_TIME) year += year < 50 ? 2000 : 1900;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** The issuer name (DER) and update times of a DER CRL (RFC 5280 §5.1); throws when it is not one. */
export function parseCrl(der: Uint8Array): { issuer: Buffer; thisUpdate: number; nextUpdate: number | undefined } {
  const list = readTlv(der, 0);
  if (list.tag !== SEQUENCE || list.end !== der.length) throw new Error('not a CRL');
  const tbs = readTlv(der, list.contentStart, list.end);
  if (tbs.tag !== SEQUENCE) throw new Error('not a CRL');
  let field = readTlv(der, tbs.contentStart, tbs.end);
  if (field.tag === INTEGER) field = readTlv(der, field.end, tbs.end); // version (v2)
  if (field.tag !== SEQUENCE) throw new Error('not a CRL'); // signature algorithm
  const issuer = readTlv(der, field.end, tbs.end);
  if (issuer.tag !== SEQUENCE) throw new Error('not a CRL');
  const thisUpdate = readTlv(der, issuer.end, tbs.end);
  if (thisUpdate.tag !== UTC_TIME && thisUpdate.tag !== GENERALIZED_TIME) throw new Error('not a CRL');
  let nextUpdate: number | undefined;
  if (thisUpdate.end < tbs.end) {
    const next = readTlv(der, thisUpdate.end, tbs.end);
    if (next.tag === UTC_TIME || next.tag === GENERALIZED_TIME) nextUpdate = derTime(der, next);
  }
  return { issuer: Buffer.from(der.subarray(issuer.start, issuer.end)), thisUpdate: derTime(der, thisUpdate), nextUpdate };
}

/** The subject name (DER) of a DER certificate (RFC 5280 §4.1). */
function certificateSubject(der: Uint8Array): Buffer {
  const cert = readTlv(der, 0);
  const tbs = readTlv(der, cert.contentStart, cert.end);
  let field = readTlv(der, tbs.contentStart, tbs.end);
  if (field.tag === 0xa0) field = readTlv(der, field.end, tbs.end); // [0] version
  const signature = readTlv(der, field.end, tbs.end); // after the serial number
  const issuer = readTlv(der, signature.end, tbs.end);
  const validity = readTlv(der, issuer.end, tbs.end);
  const subject = readTlv(der, validity.end, tbs.end);
  return Buffer.from(der.subarray(subject.start, subject.end));
}

/**
 * The PEM blocks labelled `label` in `text`, in order. A linear scan with indexOf: a pattern with a
 * lazy body and a back-reference takes quadratic time on a file of many BEGIN lines with no END
 * (a 5 MB file held start-up for minutes); garbage between blocks is skipped.
 */
export function pemBlocks(text: string, label: string): Array<{ pem: string; der: Buffer }> {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const out: Array<{ pem: string; der: Buffer }> = [];
  let at = 0;
  for (;;) {
    const from = text.indexOf(begin, at);
    if (from < 0) break;
    const to = text.indexOf(end, from + begin.length);
    // no END after this BEGIN: none after a later BEGIN either
    if (to < 0) break;
    const body = text.slice(from + begin.length, to);
    out.push({ pem: `${begin}${body}${end}\n`, der: Buffer.from(body.replace(/\s+/g, ''), 'base64') });
    at = to + end.length;
  }
  return out;
}

/**
 * Reads the CRL files of a listener: every `X509 CRL` PEM block of every file, each checked to
 * parse (here and by OpenSSL). Missing or unreadable files, files without a CRL and blocks that do
 * not parse are problems; a CRL past its nextUpdate (or before its thisUpdate) and a client CA
 * with no CRL are warnings, since OpenSSL then refuses the certificates concerned.
 *
 * @example loadCrls(['/etc/kw/clients.crl'], caBundle, 'listen.public_tls', readFileSync)
 */
export function loadCrls(files: readonly string[], clientCa: string, path: string, read: (file: string) => string, now = Date.now()): LoadedCrls {
  const result: LoadedCrls = { pems: [], problems: [], warnings: [] };
  const issuers: Buffer[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = read(file);
    } catch (err) {
      result.problems.push(`${path}.crl: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      continue;
    }
    const blocks = pemBlocks(text, 'X509 CRL');
    if (blocks.length === 0) {
      result.problems.push(`${path}.crl: ${file} holds no PEM CRL (-----BEGIN X509 CRL-----)`);
      continue;
    }
    blocks.forEach((block, index) => {
      const which = blocks.length > 1 ? `${file} (CRL ${index + 1})` : file;
      let parsed: ReturnType<typeof parseCrl>;
      try {
        parsed = parseCrl(block.der);
        createSecureContext({ crl: block.pem });
      } catch {
        result.problems.push(`${path}.crl: ${which} is not a valid CRL`);
        return;
      }
      result.pems.push(block.pem);
      issuers.push(parsed.issuer);
      if (parsed.nextUpdate !== undefined && parsed.nextUpdate < now) {
        result.warnings.push(`${path}.crl: ${which} expired at ${new Date(parsed.nextUpdate).toISOString()} (nextUpdate): every client certificate of its CA is refused until a fresh CRL is installed (read again on SIGHUP and every reload_interval)`);
      } else if (parsed.thisUpdate > now) {
        result.warnings.push(`${path}.crl: ${which} is not valid before ${new Date(parsed.thisUpdate).toISOString()} (thisUpdate): client certificates of its CA are refused until then; check the clock`);
      }
    });
  }
  if (result.problems.length === 0) {
    for (const ca of pemBlocks(clientCa, 'CERTIFICATE')) {
      let subject: Buffer;
      let name: string;
      try {
        subject = certificateSubject(ca.der);
        name = new X509Certificate(ca.der).subject.replace(/\n/g, ', ');
      } catch {
        continue; // the CA bundle itself is checked by checkServerTls
      }
      // OpenSSL checks the CRL of the leaf's issuer: without one, its certificates fail UNABLE_TO_GET_CRL
      if (!issuers.some((issuer) => issuer.equals(subject))) {
        result.warnings.push(`${path}.crl: no CRL for client CA "${name}": client certificates it issues are refused (auth_cert_untrusted)`);
      }
    }
  }
  return result;
}

/** The newest thisUpdate of each issuer (DER, hex) among CRL PEM texts; a text that does not parse is left out (the loader refused it). */
function newestByIssuer(pems: readonly string[]): Map<string, number> {
  const newest = new Map<string, number>();
  for (const pem of pems) {
    for (const block of pemBlocks(pem, 'X509 CRL')) {
      let parsed: ReturnType<typeof parseCrl>;
      try {
        parsed = parseCrl(block.der);
      } catch {
        continue;
      }
      const issuer = parsed.issuer.toString('hex');
      newest.set(issuer, Math.max(newest.get(issuer) ?? -Infinity, parsed.thisUpdate));
    }
  }
  return newest;
}

/**
 * The CRLs of `next` older than those in use (`inUse`): for an issuer of both, the newest
 * thisUpdate among the new CRLs must not be earlier than the newest in use. An older CRL put back
 * (a restored backup, a stale mirror, an attacker who can write the file) would un-revoke every
 * certificate revoked since, so a reload refuses it; a newer CRL that un-revokes one is accepted.
 * At start-up there is nothing in use to compare with. Each problem names `${path}.crl`.
 *
 * @example crlRollbackProblems(crlsInUse, reloadedCrls, caBundle, 'listen.public_tls') // [] or ['listen.public_tls.crl: … older than the CRL in use …']
 */
export function crlRollbackProblems(inUse: readonly string[], next: readonly string[], clientCa: string, path: string): string[] {
  const current = newestByIssuer(inUse);
  const problems: string[] = [];
  for (const [issuer, thisUpdate] of newestByIssuer(next)) {
    const kept = current.get(issuer);
    if (kept === undefined || thisUpdate >= kept) continue;
    problems.push(`${path}.crl: the CRL of ${issuerName(issuer, clientCa)} (thisUpdate ${new Date(thisUpdate).toISOString()}) is older than the CRL in use (thisUpdate ${new Date(kept).toISOString()}): a CRL is not rolled back, as that would un-revoke certificates (install a newer CRL)`);
  }
  return problems;
}

/** The subject of the client CA whose name is `issuerHex`, for a message; the CA's certificate holds it in readable form. */
function issuerName(issuerHex: string, clientCa: string): string {
  for (const ca of pemBlocks(clientCa, 'CERTIFICATE')) {
    try {
      if (certificateSubject(ca.der).toString('hex') === issuerHex) return `client CA "${new X509Certificate(ca.der).subject.replace(/\n/g, ', ')}"`;
    } catch {
      // not a certificate: the bundle is checked elsewhere
    }
  }
  return 'an issuer not in the client CA bundle';
}
