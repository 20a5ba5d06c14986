import type { GatewayConfig } from './types.js';

/**
 * Valid configurations that still deserve an operator's attention, as one-line messages: shown
 * by `keywarden doctor` as WARN lines and logged by `serve` at start-up.
 */
export function configWarnings(config: GatewayConfig): string[] {
  const warnings: string[] = [];
  if (/^postgres(ql)?:\/\//.test(config.store) && config.quota.store === 'memory') {
    warnings.push('limits.store: memory with a postgres:// store counts quotas and failed authentications in each process: N replicas allow N times each limit (use a redis:// limits store to share them)');
  }
  return warnings;
}
