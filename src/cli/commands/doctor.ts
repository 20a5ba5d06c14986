import { configWarnings } from '../../config/warnings.js';
import { loadConfigFile } from '../../config/load.js';
import { createConfiguredResolver } from '../../secrets/from-config.js';
import { SecretError } from '../../secrets/types.js';
import type { SecretResolver } from '../../secrets/resolver.js';
import { loadPublicTls, openStore } from '../../main.js';
import { createProviderAdapter } from '../../providers/registry.js';
import { createUpstreamClient } from '../../upstream/client.js';
import { EXIT_FAILURE, EXIT_OK } from '../output.js';

/**
 * `keywarden doctor --config FILE [--online]`: validates the configuration, loads every secret
 * reference, opens the store, and with `--online` proves each provider key with a cheap
 * authenticated call. Prints one line per check; never prints a secret.
 */
export async function doctorCommand(configPath: string, online: boolean, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const config = loadConfigFile(configPath, env); // throws ConfigError → exit 2
  process.stdout.write(`ok    configuration ${configPath}\n`);
  let failures = 0;
  let resolver: SecretResolver;
  try {
    resolver = await createConfiguredResolver(config.secrets, { onWarning: (message) => process.stdout.write(`warn  ${message}\n`) });
    if (config.secrets.vault) process.stdout.write(`ok    secrets.vault credentials\n`);
    if (config.secrets.encFileKey) process.stdout.write(`ok    secrets.enc_file.key\n`);
  } catch (err) {
    // a vault's own credentials (or the encrypted-file key) could not be loaded
    process.stdout.write(`FAIL  secrets backends: ${(err as Error).message}\n`);
    process.stdout.write('1 check(s) failed\n');
    return EXIT_FAILURE;
  }
  const refs: Array<[string, string]> = [
    ['admin.token', config.admin.token],
    ['audit.prompt_hmac_key', config.audit.promptHmacKey],
    ...(config.auth.keyHashKey ? [['auth.key_hash_key', config.auth.keyHashKey] as [string, string]] : []),
    ...Object.values(config.providers).map((p) => [`providers.${p.id}.api_key`, p.apiKey] as [string, string]),
  ];
  // every other secret reference the configuration names
  const optional: Array<[string, string | undefined]> = [
    ...Object.values(config.providers).map((p) => [`providers.${p.id}.admin_key`, p.adminKey] as [string, string | undefined]),
    ['audit.checkpoint_key', config.audit.checkpointKey],
    ['audit.sampling.key', config.audit.sampling?.key],
    ['alerts.webhook_secret', config.alerts.webhookSecret],
    ['limits.redis_password', config.quota.redisPassword],
  ];
  for (const [path, ref] of optional) if (ref !== undefined) refs.push([path, ref]);
  const loaded = new Map<string, string>();
  for (const [path, ref] of refs) {
    try {
      const secret = await resolver.resolve(ref);
      loaded.set(path, secret.value);
      process.stdout.write(`ok    ${path} (${ref.split(':')[0]}, version ${secret.version})\n`);
    } catch (err) {
      failures += 1;
      const reason = err instanceof SecretError ? ` [${err.reason}]` : '';
      process.stdout.write(`FAIL  ${path}: ${(err as Error).message}${reason}\n`);
    }
  }
  for (const [path, tls] of [['listen.public_tls', config.listen.publicTls], ['listen.admin_tls', config.listen.adminTls]] as const) {
    if (!tls) continue;
    // the files are read and the key resolved as serve would, and checked to work together
    try {
      // conditions under which OpenSSL refuses client certificates (an expired CRL, a CA without one) are shown, not failed
      const warnings: string[] = [];
      await loadPublicTls(tls, resolver, path, (message) => warnings.push(message));
      process.stdout.write(`ok    ${path} (certificate and key${tls.clientCa !== undefined ? ', client CA bundle' : ''}${tls.crl !== undefined ? ', CRLs' : ''})\n`);
      for (const warning of warnings) process.stdout.write(`WARN  ${warning}\n`);
    } catch (err) {
      failures += 1;
      process.stdout.write(`FAIL  ${(err as Error).message}\n`);
    }
  }
  for (const warning of configWarnings(config)) process.stdout.write(`WARN  ${warning}\n`);
  try {
    const store = openStore(config);
    await store.ping();
    await store.close();
    process.stdout.write(`ok    store ${shownStore(config.store)}\n`);
  } catch (err) {
    failures += 1;
    process.stdout.write(`FAIL  store ${shownStore(config.store)}: ${(err as Error).message}\n`);
  }
  if (online) {
    for (const provider of Object.values(config.providers)) {
      const key = loaded.get(`providers.${provider.id}.api_key`);
      if (key === undefined) continue;
      const adapter = createProviderAdapter(provider.type);
      const client = createUpstreamClient(provider, { connections: 1 });
      try {
        const res = await client.send(adapter.buildKeyCheckRequest(key));
        await res.body.dump();
        if (res.statusCode === 200) process.stdout.write(`ok    providers.${provider.id}: key accepted by ${provider.baseUrl.origin}\n`);
        else {
          failures += 1;
          process.stdout.write(`FAIL  providers.${provider.id}: ${adapter.mapError(res.statusCode, '', undefined).message} (HTTP ${res.statusCode})\n`);
        }
      } catch (err) {
        failures += 1;
        process.stdout.write(`FAIL  providers.${provider.id}: ${(err as Error).message}\n`);
      } finally {
        await client.close();
      }
    }
  }
  process.stdout.write(failures === 0 ? 'all checks passed\n' : `${failures} check(s) failed\n`);
  return failures === 0 ? EXIT_OK : EXIT_FAILURE;
}

/**
 * The store as doctor prints it: a PostgreSQL URL with the value of any query parameter whose
 * name mentions a password (`sslpassword`, …) replaced by `…` (validation already refuses a
 * password in the user-info part or as `password=`).
 */
export function shownStore(store: string): string {
  const q = store.indexOf('?');
  if (!/^postgres(ql)?:\/\//.test(store) || q < 0) return store;
  const params = new URLSearchParams(store.slice(q + 1));
  let hidden = false;
  for (const name of [...params.keys()]) {
    if (/pass/i.test(name)) {
      params.set(name, '…');
      hidden = true;
    }
  }
  return hidden ? `${store.slice(0, q)}?${params.toString().replace(/%E2%80%A6/g, '…')}` : store;
}
