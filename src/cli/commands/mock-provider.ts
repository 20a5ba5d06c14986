import { createMockProvider } from '../../mock-provider/server.js';
import { createSecretResolver } from '../../secrets/resolver.js';
import { CliError, EXIT_USAGE } from '../output.js';

/** `keywarden mock-provider --port N [--host H] [--api-key REF]`: serves the mock until stopped. */
export async function mockProviderCommand(port: string | undefined, host: string | undefined, apiKeyRef: string | undefined): Promise<void> {
  const portNumber = port === undefined ? 0 : Number(port);
  if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535) throw new CliError('--port must be a port number', EXIT_USAGE);
  const apiKey = apiKeyRef === undefined ? undefined : (await createSecretResolver().resolve(apiKeyRef)).value;
  const mock = await createMockProvider({ port: portNumber, host: host ?? '127.0.0.1', ...(apiKey ? { apiKey } : {}) });
  process.stdout.write(`mock provider listening on ${mock.url} (OpenAI at ${mock.url}/v1, Anthropic at ${mock.url})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => void mock.close().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
