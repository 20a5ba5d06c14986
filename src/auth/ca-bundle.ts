import { X509Certificate } from 'node:crypto';
import { pemBlocks } from './crl.js';

/*
 * The client CA bundle of a TLS listener (`listen.public_tls.client_ca`), checked when it is read
 * at start-up and at each reload. OpenSSL takes an empty or half-written bundle without a word
 * (createSecureContext({ ca: '' }) does not throw) and then trusts no client certificate at all:
 * on a reload that would lock every mTLS client out and close their connections. So the bundle
 * must hold at least one certificate, every block must parse, and no block may be cut short.
 */

const BEGIN = '-----BEGIN CERTIFICATE-----';
const END = '-----END CERTIFICATE-----';

function count(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n += 1;
  return n;
}

/**
 * The problems of a client CA bundle read from `file` (none when it is usable), each a line
 * naming `${path}.client_ca` and the file, never the bundle's content.
 *
 * @example caBundleProblems(readFileSync(file, 'utf8'), file, 'listen.public_tls') // [] or ['listen.public_tls.client_ca: …']
 */
export function caBundleProblems(text: string, file: string, path: string): string[] {
  const field = `${path}.client_ca`;
  const begins = count(text, BEGIN);
  if (begins === 0) return [`${field}: ${file} holds no PEM certificate (${BEGIN})`];
  const problems: string[] = [];
  const ends = count(text, END);
  // a bundle being written (or truncated) ends inside a block: refused, not trusted in part
  if (begins !== ends) problems.push(`${field}: ${file} is cut short: ${begins} BEGIN CERTIFICATE lines but ${ends} END lines`);
  const blocks = pemBlocks(text, 'CERTIFICATE');
  blocks.forEach((block, index) => {
    try {
      new X509Certificate(block.der);
    } catch {
      problems.push(`${field}: ${blocks.length > 1 ? `${file} (certificate ${index + 1})` : file} is not a valid certificate`);
    }
  });
  return problems;
}
