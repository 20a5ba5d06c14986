import type { RedisOptions } from 'ioredis';

/**
 * ioredis options for a client on the request path's side (quota counters, shared failure
 * counts): a command never waits for a connection (no offline queue, no resend), each one is
 * bounded by `timeoutMs`, and the client keeps reconnecting by itself, so an outage is seen at
 * once and the recovery needs nobody. The password comes from a secret reference, never the URL.
 */
export function failFastRedisOptions(timeoutMs: number, password: string | undefined): RedisOptions {
  return {
    ...(password !== undefined ? { password } : {}),
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1000),
    // bounds how long close() lets a half-dead socket keep the process alive
    disconnectTimeout: timeoutMs,
    retryStrategy: (times) => Math.min(50 * times, 1000),
  };
}

/** Closes a client politely when it is connected (QUIT), else drops the connection. */
export async function closeRedis(redis: { status: string; quit(): Promise<unknown>; disconnect(): void }): Promise<void> {
  if (redis.status === 'ready') {
    try {
      await redis.quit();
      return;
    } catch {
      // fall through: drop the connection
    }
  }
  redis.disconnect();
}
