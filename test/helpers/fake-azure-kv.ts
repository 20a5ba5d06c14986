import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake answers for one secret name; a name with no answer set is not found. */
export type FakeAzureAnswer =
  | { kind: 'found'; value: string; version: string }
  | { kind: 'not_found' }
  | { kind: 'denied' }
  | { kind: 'throttled' }
  | { kind: 'server_error'; status?: number }
  | { kind: 'slow'; ms: number };

export interface FakeAzureRequest {
  method: string;
  /** The path, query included. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FakeAzureKeyVault {
  /** `http://127.0.0.1:PORT` */
  url: string;
  answers: Map<string, FakeAzureAnswer>;
  requests: FakeAzureRequest[];
  /** The bearer token the fake accepts; any other gets the challenge again. */
  acceptedToken: string;
  close(): Promise<void>;
}

export const AZURE_RESOURCE = 'https://vault.azure.net';
// planted in every error body: the backend must never relay a service's message
export const AZURE_ERROR_BODY_CANARY = 'sk-fake-TEST-ONLY-azure-error-body-canary-0002'; // fake, test only

/**
 * A loopback server speaking Key Vault's REST API for Get Secret:
 * `GET [/{vault}]/secrets/{name}[/{version}]?api-version=…`. It implements the challenge: a
 * request without the accepted bearer token gets 401 with
 * `WWW-Authenticate: Bearer authorization="…", resource="https://vault.azure.net"`. Errors are
 * Key Vault's `{"error":{"code","message"}}` bodies with the service's status codes.
 */
export async function startFakeAzureKeyVault(acceptedToken: string): Promise<FakeAzureKeyVault> {
  const answers = new Map<string, FakeAzureAnswer>();
  const requests: FakeAzureRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const fake = { acceptedToken };

  const server: Server = createServer((req, res) => {
    // the challenge request carries no body; drain anything else
    req.resume();
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const send = (status: number, payload: unknown, extra: Record<string, string> = {}): void => {
        const text = JSON.stringify(payload);
        res.writeHead(status, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(text),
          'x-ms-keyvault-service-version': '1.9.0.0',
          ...extra,
        });
        res.end(text);
      };
      const fail = (status: number, code: string, message: string, extra: Record<string, string> = {}): void =>
        send(status, { error: { code, message: `${message} (${AZURE_ERROR_BODY_CANARY})` } }, extra);

      const url = new URL(req.url ?? '/', 'http://fake');
      const match = /^(?:\/[a-z0-9-]+)?\/secrets\/([A-Za-z0-9-]+)(?:\/([A-Za-z0-9]*))?$/.exec(url.pathname);
      if (req.method !== 'GET' || match === null) return fail(404, 'NotFound', 'unknown route');
      if (!url.searchParams.has('api-version')) return fail(400, 'BadParameter', 'api-version is required');

      if (req.headers.authorization !== `Bearer ${fake.acceptedToken}`) {
        return fail(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.', {
          'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="${AZURE_RESOURCE}"`,
        });
      }

      const name = match[1] as string;
      const requestedVersion = match[2] ?? '';
      const answer = answers.get(name) ?? { kind: 'not_found' };
      switch (answer.kind) {
        case 'found': {
          if (requestedVersion !== '' && requestedVersion !== answer.version) {
            return fail(404, 'SecretNotFound', `A secret with (name/id) ${name}/${requestedVersion} was not found in this key vault.`);
          }
          const base = `http://${req.headers.host ?? '127.0.0.1'}`;
          return send(200, {
            value: answer.value,
            id: `${base}/secrets/${name}/${answer.version}`,
            attributes: { enabled: true, created: 1_700_000_000, updated: 1_700_000_000, recoveryLevel: 'Recoverable+Purgeable', recoverableDays: 90 },
            tags: {},
          });
        }
        case 'not_found':
          return fail(404, 'SecretNotFound', `A secret with (name/id) ${name} was not found in this key vault.`);
        case 'denied':
          return fail(403, 'Forbidden', "The user, group or application does not have secrets get permission on key vault 'fake'.");
        case 'throttled':
          return fail(429, 'Throttled', 'Request was not processed because too many requests were received.', { 'retry-after': '1' });
        case 'server_error':
          return fail(answer.status ?? 500, 'InternalServerError', 'An unexpected error occurred.');
        case 'slow': {
          const timer = setTimeout(() => {
            timers.delete(timer);
            send(200, { value: 'slow', id: `http://127.0.0.1/secrets/${name}/0123456789abcdef0123456789abcdef`, attributes: { enabled: true } });
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
    get acceptedToken() {
      return fake.acceptedToken;
    },
    set acceptedToken(token: string) {
      fake.acceptedToken = token;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
