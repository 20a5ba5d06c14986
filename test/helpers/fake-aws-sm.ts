import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake answers for one secret id; an id with no answer set is not found. */
export type FakeAwsAnswer =
  | { kind: 'found'; value: string; version: string }
  | { kind: 'not_found' }
  | { kind: 'denied' }
  | { kind: 'bad_token' }
  | { kind: 'throttled' }
  | { kind: 'server_error'; status?: number }
  | { kind: 'slow'; ms: number };

export interface FakeAwsRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface FakeAwsSecretsManager {
  /** `http://127.0.0.1:PORT` */
  url: string;
  answers: Map<string, FakeAwsAnswer>;
  requests: FakeAwsRequest[];
  close(): Promise<void>;
}

// planted in every error body: the backend must never relay a service's message
export const AWS_ERROR_BODY_CANARY = 'sk-fake-TEST-ONLY-aws-error-body-canary-0001'; // fake, test only

/**
 * A loopback server speaking the AWS JSON 1.1 protocol of Secrets Manager for GetSecretValue:
 * `POST /` with `X-Amz-Target: secretsmanager.GetSecretValue` and a JSON body naming SecretId.
 * Requests must carry a SigV4 `Authorization` header; the signature is accepted, not checked.
 * Errors are what the service sends: HTTP 400 (500 for server faults) with `__type` in the body
 * and `x-amzn-ErrorType` in the headers.
 */
export async function startFakeAwsSecretsManager(): Promise<FakeAwsSecretsManager> {
  const answers = new Map<string, FakeAwsAnswer>();
  const requests: FakeAwsRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });

      const send = (status: number, payload: unknown, errorType?: string): void => {
        const text = JSON.stringify(payload);
        res.writeHead(status, {
          'content-type': 'application/x-amz-json-1.1',
          'content-length': Buffer.byteLength(text),
          'x-amzn-requestid': '00000000-0000-4000-8000-000000000000',
          ...(errorType !== undefined ? { 'x-amzn-errortype': `${errorType}:http://internal.amazon.com/coral/com.amazonaws.secretsmanager/` } : {}),
        });
        res.end(text);
      };
      const fail = (status: number, type: string, message: string): void =>
        send(status, { __type: type, Message: `${message} (${AWS_ERROR_BODY_CANARY})` }, type);

      if (req.method !== 'POST' || req.url !== '/') return fail(404, 'UnknownOperationException', 'not found');
      if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue') {
        return fail(400, 'UnknownOperationException', 'unknown operation');
      }
      // signing is accepted, not checked: it must only be present
      if (!/^AWS4-HMAC-SHA256 Credential=/.test(req.headers.authorization ?? '')) {
        return fail(400, 'MissingAuthenticationTokenException', 'request is missing Authentication Token');
      }
      let secretId: unknown;
      try {
        secretId = (JSON.parse(body) as { SecretId?: unknown }).SecretId;
      } catch {
        return fail(400, 'SerializationException', 'bad body');
      }
      if (typeof secretId !== 'string') return fail(400, 'InvalidParameterException', 'SecretId is required');

      const answer = answers.get(secretId) ?? { kind: 'not_found' };
      switch (answer.kind) {
        case 'found':
          return send(200, {
            ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${secretId}-AbCdEf`,
            Name: secretId,
            VersionId: answer.version,
            SecretString: answer.value,
            VersionStages: ['AWSCURRENT'],
            CreatedDate: 1.7e9,
          });
        case 'not_found':
          return fail(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
        case 'denied':
          return fail(400, 'AccessDeniedException', 'User: arn:aws:iam::000000000000:user/test is not authorized to perform: secretsmanager:GetSecretValue');
        case 'bad_token':
          return fail(400, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
        case 'throttled':
          return fail(400, 'ThrottlingException', 'Rate exceeded');
        case 'server_error':
          return fail(answer.status ?? 500, 'InternalServiceError', 'An error occurred on the server side.');
        case 'slow': {
          const timer = setTimeout(() => {
            timers.delete(timer);
            send(200, { Name: secretId, VersionId: 'slow-version', SecretString: 'slow' });
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
