import { createGateway, type Gateway } from '../../main.js';
import { createMockProvider, type MockProvider } from '../../mock-provider/server.js';
import { loadConfigFile } from '../../config/load.js';
import { demoConfig, readSecretFile } from '../demo.js';
import { createLogger } from '../../log/logger.js';

/**
 * `keywarden serve [--config FILE]`: runs the gateway until SIGTERM/SIGINT, then drains. SIGHUP
 * reloads the TLS listeners' certificates, keys, client CA bundles and CRLs (docs/configuration.md);
 * it never ends the process: one during start-up is carried out once the gateway listens, one
 * during shutdown is ignored.
 * Without a configuration it runs demo mode: the built-in mock provider as the upstream, a
 * demo tenant, and a ready curl line.
 */
export async function serveCommand(configPath: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // SIGHUP is caught from the first moment to the exit: without a handler Node ends the process
  // (exit 129), and a supervisor or logrotate may send one at any time
  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  let reloadQueued = false;
  let stoppingLogged = false;
  let onReload: () => void = () => undefined;
  process.on('SIGHUP', () => {
    if (phase === 'starting') {
      // the files may have changed after start-up read them: checked again once the gateway listens
      reloadQueued = true;
    } else if (phase === 'running') {
      onReload();
    } else if (!stoppingLogged) {
      stoppingLogged = true;
      gateway.logger.info({ signal: 'SIGHUP' }, 'SIGHUP during shutdown: ignored, no reload while draining');
      gateway.logger.flush();
    }
  });

  const path = configPath ?? env['KEYWARDEN_CONFIG'];
  let mock: MockProvider | undefined;
  let gateway: Gateway;
  if (path) {
    const config = loadConfigFile(path, env);
    gateway = await createGateway(config);
  } else {
    const placeholder = demoConfig('http://127.0.0.1:9', env);
    mock = await createMockProvider({ port: 0, apiKey: readSecretFile(placeholder.providers['openai']?.apiKey ?? '') });
    const config = demoConfig(mock.url, env);
    const logger = createLogger({ level: config.log.level });
    logger.warn({ upstream: mock.url }, 'DEMO MODE: no configuration given, so the upstream is the built-in MOCK provider; no real provider is called');
    gateway = await createGateway(config, { logger });
  }

  const { publicUrl, adminUrl } = await gateway.listen();
  gateway.logger.info({ publicUrl, adminUrl, store: gateway.store.kind }, 'keywarden listening');
  // the log destination buffers; an operator (or supervisor) must see the start-up lines now, not at exit
  gateway.logger.flush();

  if (mock) {
    const tenant = await gateway.tenants.listTenants().then((all) => all.find((t) => t.name === 'demo'));
    if (!tenant) await gateway.tenants.createTenant('demo', 'system');
    const demoTenant = await gateway.store.tenants.getByName('demo');
    // one live demo key at a time: the previous run's key is revoked
    if (demoTenant) await gateway.store.keys.revokeByLabel(demoTenant.id, 'demo', Date.now());
    const issued = await gateway.tenants.issueKey('demo', 'system', { label: 'demo' });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello from the keywarden demo' }] });
    process.stdout.write(
      `\nkeywarden is running in DEMO MODE: the upstream is the built-in mock provider (no real provider is called).\n` +
        `  public listener: ${publicUrl}\n  admin listener:  ${adminUrl} (admin token in ${config_dir(env)}/demo-secrets/admin-token)\n` +
        `  dashboard:       ${adminUrl}/dashboard (sign in with that admin token)\n\n` +
        `Try it (the demo tenant's key is printed here once; a restart issues a new one):\n\n` +
        `  curl -s ${publicUrl}/v1/chat/completions -H 'Authorization: Bearer ${issued.key}' -H 'content-type: application/json' -d '${body}'\n\n`,
    );
  }

  // SIGHUP reloads TLS material (the daemon convention) instead of ending the process; a failed
  // reload is logged and keeps the material in use
  onReload = () => {
    if (gateway.config.listen.publicTls === undefined && gateway.config.listen.adminTls === undefined) {
      gateway.logger.info({ signal: 'SIGHUP' }, 'SIGHUP: no TLS listener to reload');
      gateway.logger.flush();
      return;
    }
    // the outcome is written out at once: whoever sent the signal is watching for it
    void gateway.reloadTls('signal').then(() => gateway.logger.flush());
  };
  phase = 'running';
  if (reloadQueued) {
    gateway.logger.info({ signal: 'SIGHUP' }, 'SIGHUP during start-up: the TLS material is checked again now that the gateway listens');
    onReload();
  }

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      gateway.logger.info({ signal }, 'shutting down: draining in-flight requests');
      // the SIGHUP handler stays to the exit: a SIGHUP from now on is logged and ignored
      phase = 'stopping';
      void gateway.close().then(async () => {
        await mock?.close();
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // the process ends here, not when its event loop runs dry: Node's teardown after an empty loop puts
  // SIGHUP back to its default action (ending the process, 129) for a moment; an explicit exit does not
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2000);
    gateway.logger.flush(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  process.exit(0);
}

function config_dir(env: NodeJS.ProcessEnv): string {
  return env['KEYWARDEN_DATA_DIR'] ?? './data';
}
