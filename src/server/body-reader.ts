import type { IncomingMessage } from 'node:http';
import { isUtf8 } from 'node:buffer';
import { GatewayError } from '../errors/index.js';

/**
 * Reads a request body up to `limit` bytes and parses it as JSON. Refuses early on a declared
 * `Content-Length` over the limit, stops reading as soon as the limit is passed, and refuses
 * invalid UTF-8 instead of silently replacing bytes.
 */
export function readJsonBody(stream: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = stream.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      stream.resume();
      reject(tooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (err: GatewayError) => {
      if (done) return;
      done = true;
      stream.removeListener('data', onData);
      stream.resume();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(tooLarge(limit));
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.on('error', () => fail(new GatewayError('request_invalid', 'the request body could not be read')));
    stream.on('aborted', () => fail(new GatewayError('request_invalid', 'the request body was cut short')));
    stream.on('end', () => {
      if (done) return;
      done = true;
      const buffer = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      if (buffer.length === 0) return reject(new GatewayError('request_invalid_json', 'the request body must be a JSON object'));
      if (!isUtf8(buffer)) return reject(new GatewayError('request_invalid_json', 'the request body is not valid UTF-8'));
      try {
        resolve(JSON.parse(buffer.toString('utf8')));
      } catch {
        // never echo the parser's message: it quotes the body
        reject(new GatewayError('request_invalid_json', 'the request body is not valid JSON'));
      }
    });
  });
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('request_body_too_large', `the request body exceeds this tenant's limit of ${limit} bytes`);
}
