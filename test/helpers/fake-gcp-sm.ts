import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32c } from '../../src/secrets/backends/gcp-sm.js';

/**
 * How the fake answers for one secret (`projects/P/secrets/S`); a secret with no answer set is
 * not found. `found` serves `versions/latest` and `versions/{version}`; `crc` 'wrong' sends a
 * mismatching dataCrc32c, 'absent' none.
 */
export type FakeGcpAnswer =
  | { kind: 'found'; value: string | Buffer; version: number; crc?: 'ok' | 'wrong' | 'absent' }
  | { kind: 'not_found' }
  | { kind: 'denied' }
  | { kind: 'throttled' }
  | { kind: 'server_error'; status?: number }
  | { kind: 'redirect'; location: string }
  | { kind: 'slow'; ms: number };

export interface FakeGcpRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FakeGcpSecretManager {
  /** `http://127.0.0.1:PORT` */
  url: string;
  answers: Map<string, FakeGcpAnswer>;
  requests: FakeGcpRequest[];
  close(): Promise<void>;
}

// planted in every error body: the backend must never relay a service's message
export const GCP_ERROR_BODY_CANARY = 'sk-fake-TEST-ONLY-gcp-error-body-canary-0003'; // fake, test only
const PROJECT_NUMBER = '123456789012';

/**
 * A loopback server speaking Secret Manager's REST API for AccessSecretVersion:
 * `GET /v1/projects/P/secrets/S/versions/V:access` with `Authorization: Bearer <token>`.
 * Answers carry the name with the project number, the base64 payload and its CRC32C as an
 * int64 string; errors are Google's `{"error":{"code","message","status"}}` bodies.
 */
export async function startFakeGcpSecretManager(acceptedToken: string): Promise<FakeGcpSecretManager> {
  const answers = new Map<string, FakeGcpAnswer>();
  const requests: FakeGcpRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const send = (status: number, payload: unknown, extra: Record<string, string> = {}): void => {
        const text = JSON.stringify(payload);
        res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text), ...extra });
        res.end(text);
      };
      const fail = (code: number, status: string, message: string): void =>
        send(code, { error: { code, message: `${message} (${GCP_ERROR_BODY_CANARY})`, status } });

      const match = /^\/v1\/(projects\/[A-Za-z0-9_-]+\/secrets\/[A-Za-z0-9_-]+)\/versions\/(latest|[0-9]+):access$/.exec(req.url ?? '');
      if (req.method !== 'GET' || match === null) return fail(404, 'NOT_FOUND', 'unknown route');
      if (req.headers.authorization !== `Bearer ${acceptedToken}`) {
        return fail(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token.');
      }
      const secret = match[1] as string;
      const requested = match[2] as string;
      const secretName = secret.replace(/^projects\/[^/]+/, `projects/${PROJECT_NUMBER}`);
      const answer = answers.get(secret) ?? { kind: 'not_found' };
      switch (answer.kind) {
        case 'found': {
          if (requested !== 'latest' && Number(requested) !== answer.version) {
            return fail(404, 'NOT_FOUND', `Secret Version [${secretName}/versions/${requested}] not found.`);
          }
          const bytes = typeof answer.value === 'string' ? Buffer.from(answer.value, 'utf8') : answer.value;
          const crc = crc32c(bytes);
          const payload: Record<string, string> = { data: bytes.toString('base64') };
          if (answer.crc !== 'absent') payload['dataCrc32c'] = String(answer.crc === 'wrong' ? (crc + 1) >>> 0 : crc);
          return send(200, { name: `${secretName}/versions/${answer.version}`, payload });
        }
        case 'not_found':
          return fail(404, 'NOT_FOUND', `Secret [${secretName}] not found or has no versions.`);
        case 'denied':
          return fail(403, 'PERMISSION_DENIED', `Permission 'secretmanager.versions.access' denied for resource '${secretName}/versions/${requested}'.`);
        case 'throttled':
          return fail(429, 'RESOURCE_EXHAUSTED', "Quota exceeded for quota metric 'Access requests'.");
        case 'server_error':
          return fail(answer.status ?? 503, 'UNAVAILABLE', 'The service is currently unavailable.');
        case 'redirect':
          res.writeHead(302, { location: answer.location, 'content-length': 0 });
          return res.end();
        case 'slow': {
          const timer = setTimeout(() => {
            timers.delete(timer);
            send(200, { name: `${secretName}/versions/1`, payload: { data: Buffer.from('slow').toString('base64') } });
          }, answer.ms);
          timers.add(timer);
          return undefined;
        }
      }
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    answers,
    requests,
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
