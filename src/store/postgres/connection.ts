import pg from 'pg';
import type { ClientConfig, CustomTypesConfig, PoolClient } from 'pg';
// pg's own URL parser (a dependency of pg), so the URL means exactly what it means to pg
import { parse } from 'pg-connection-string';

/** Options of the PostgreSQL store beyond its URL. */
export interface PostgresStoreOptions {
  /**
   * The schema the store's tables live in (created when missing). Unset, the connection's own
   * `search_path` decides (`public`, or `?options=-c search_path=…` in the URL).
   */
  schema?: string;
  /** Most connections the pool opens (default 10). */
  poolSize?: number;
  /** The password, when not in the URL, `PGPASSWORD` or `~/.pgpass` (read at each new connection). */
  password?: () => Promise<string>;
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** True for the store URLs the PostgreSQL store opens. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/*
 * pg returns BIGINT and NUMERIC as strings because they may exceed 2^53. Every such value here
 * is an epoch-millisecond time, a count, a token or a nano-USD sum, which fit; they are read as
 * numbers on this store's connections only (the global pg parsers are left alone).
 */
const numericTypes: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if ((oid === INT8_OID || oid === NUMERIC_OID) && format !== 'binary') return (value: string) => Number(value);
    return format === undefined ? pg.types.getTypeParser(oid) : pg.types.getTypeParser(oid, format);
  }) as CustomTypesConfig['getTypeParser'],
};

/** The client config shared by the pool and the notification listener. */
export function clientConfig(url: string, options: PostgresStoreOptions): ClientConfig {
  if (!isPostgresUrl(url)) throw new Error('store: a PostgreSQL URL starts with postgres:// or postgresql://');
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) throw new Error('store: the schema name must be a plain identifier');
  return {
    types: numericTypes,
    // a down database fails a request (and /readyz) in seconds rather than hanging it
    connectionTimeoutMillis: 5_000,
    application_name: 'keywarden',
    ...(options.schema !== undefined ? { options: `-c search_path=${options.schema}` } : {}),
    // parsed here, not passed as `connectionString`: pg lets every field parsed from that string
    // (the URL's empty password among them) override the same field beside it, so the password
    // function was dropped and store_password never read: pg fell back to PGPASSWORD, ~/.pgpass or
    // none (brianc/node-postgres#3327). The URL is parsed and merged exactly as pg does it itself
    // (`parse`, not `parseIntoClientConfig`, which drops string `ssl=` values such as `require`
    // or `no-verify` and so would turn TLS off); URL settings still win over the defaults above;
    // the password function comes after them.
    ...(parse(url) as ClientConfig),
    ...(options.password ? { password: options.password } : {}),
  };
}

/** Runs `fn` in one transaction on a pooled client: committed when it returns, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr) {
      // a connection that cannot roll back is not given back to the pool
      broken = rollbackErr as Error;
    }
    throw err;
  } finally {
    client.release(broken);
  }
}
