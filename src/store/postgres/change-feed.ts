import pg from 'pg';
import type { ClientConfig } from 'pg';

/** The channel tenant, tenant-key and admin-token writes notify, in their own transaction. */
export const CREDENTIALS_CHANNEL = 'keywarden_credentials';

/** The statement that notifies the other replicas; the payload names the schema so stores in other schemas ignore it. */
export const NOTIFY_CREDENTIALS = `SELECT pg_notify('${CREDENTIALS_CHANNEL}', current_schema())`;

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;

export interface ChangeFeed {
  /** Moves on every notification; while the feed is down, moves on every call. */
  stamp(): number;
  /** True while LISTEN is in place. */
  connected(): boolean;
  close(): Promise<void>;
}

/**
 * Listens for credential changes committed by any replica (PostgreSQL LISTEN/NOTIFY) on one
 * dedicated connection. A notification is delivered only after the writing transaction
 * commits. While the connection is down, notifications may be missed, so the stamp changes on
 * every read: caches built on it keep nothing until the feed is back (fail safe).
 */
export function startChangeFeed(config: ClientConfig): ChangeFeed {
  let notifications = 0;
  let downReads = 0;
  let client: pg.Client | undefined;
  let listening = false;
  let closed = false;
  let retryMs = RECONNECT_MIN_MS;
  let timer: NodeJS.Timeout | undefined;

  const scheduleReconnect = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, retryMs);
    timer.unref();
    retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
  };

  const lost = (c: pg.Client) => {
    if (client !== c) return;
    listening = false;
    client = undefined;
    c.end().catch(() => undefined);
    scheduleReconnect();
  };

  async function connect(): Promise<void> {
    if (closed) return;
    // TCP keepalive: a silently dropped connection must end (and fail safe) instead of looking alive
    const c = new pg.Client({ ...config, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    client = c;
    c.on('error', () => lost(c));
    c.on('end', () => lost(c));
    try {
      await c.connect();
      const schema = (await c.query<{ schema: string | null }>('SELECT current_schema() AS schema')).rows[0]?.schema ?? null;
      c.on('notification', (msg) => {
        if (msg.channel === CREDENTIALS_CHANNEL && msg.payload === schema) notifications += 1;
      });
      await c.query(`LISTEN ${CREDENTIALS_CHANNEL}`);
      if (closed || client !== c) {
        await c.end().catch(() => undefined);
        return;
      }
      // whatever happened while the feed was down is unknown: move the stamp once more
      notifications += 1;
      listening = true;
      retryMs = RECONNECT_MIN_MS;
    } catch {
      lost(c);
    }
  }

  void connect();

  return {
    stamp() {
      if (!listening) downReads += 1;
      // every counter only grows, so the sum moves whenever one does
      return notifications + downReads;
    },
    connected: () => listening,
    async close() {
      closed = true;
      listening = false;
      if (timer) clearTimeout(timer);
      const c = client;
      client = undefined;
      if (c) await c.end().catch(() => undefined);
    },
  };
}
