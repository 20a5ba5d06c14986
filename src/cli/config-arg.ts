import { loadConfigFile } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { demoConfig } from './demo.js';

/**
 * The configuration a command works on: `--config FILE`, else `$KEYWARDEN_CONFIG`, else the
 * demo configuration (so `keywarden tenants list` after `npm start` sees the demo's store).
 */
export function configFor(configPath: string | undefined, env: NodeJS.ProcessEnv = process.env): { config: GatewayConfig; demo: boolean } {
  const path = configPath ?? env['KEYWARDEN_CONFIG'];
  if (path) return { config: loadConfigFile(path, env), demo: false };
  // the mock URL does not matter to store-only commands; `serve` builds its own demo config
  return { config: demoConfig('http://127.0.0.1:9', env), demo: true };
}
