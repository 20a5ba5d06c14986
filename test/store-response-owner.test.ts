/**
 * The response-ownership part of the store contract (src/store/types.ts, ResponseOwnerRepository),
 * run against SQLite (a temporary file) always and PostgreSQL when DATABASE_URL is set (each case
 * in its own schema, dropped afterwards). "Two stores" are two opened on the same database, as
 * two gateway replicas would be.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { createPostgresStore } from '../src/store/postgres/index.js';
import type { Store } from '../src/store/types.js';
import { responseHash } from '../src/services/response-owners.js';

const DATABASE_URL = process.env.DATABASE_URL;
const SKIP_POSTGRES = DATABASE_URL
  ? undefined
  : 'DATABASE_URL is not set (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test); PostgreSQL store not tested';
if (SKIP_POSTGRES) process.stdout.write(`# note: ${SKIP_POSTGRES}\n`);

const DAY = 86_400_000;

interface Fixture {
  open(): Promise<Store>;
  dispose(): Promise<void>;
}

/** Whether the store holds `hash` for the tenant, through the batch read with a list of one. */
async function owns(store: Store, hash: string, tenantId: string, since: number): Promise<boolean> {
  const owned = await store.responseOwners.ownedOf([hash], tenantId, since);
  assert.ok(owned.size <= 1, 'only hashes that were asked for come back');
  return owned.has(hash);
}

function contract(name: string, fixture: () => Promise<Fixture>, opts: { skip?: string } = {}): void {
  describe(`Store contract (response owners): ${name}`, opts.skip ? { skip: opts.skip } : {}, () => {
    async function withStore(fn: (store: Store, f: Fixture) => Promise<void>): Promise<void> {
      const f = await fixture();
      try {
        await fn(await f.open(), f);
      } finally {
        await f.dispose();
      }
    }

    it('answers true only for the tenant an id was recorded for, and the same false for another tenant and an unknown id', () =>
      withStore(async (store) => {
        const now = Date.now();
        const a1 = responseHash('openai', 'resp_a1');
        await store.responseOwners.put([{ responseHash: a1, tenantId: 't_a', createdAt: now }]);
        assert.equal(await owns(store, a1, 't_a', now - DAY), true);
        assert.equal(await owns(store, a1, 't_b', now - DAY), false);
        assert.equal(await owns(store, responseHash('openai', 'resp_unknown'), 't_a', now - DAY), false);
        // the same id from another provider is another object
        assert.equal(await owns(store, responseHash('other', 'resp_a1'), 't_a', now - DAY), false);
      }));

    it('treats a record older than `since` as gone', () =>
      withStore(async (store) => {
        const now = Date.now();
        const old = responseHash('openai', 'resp_old');
        await store.responseOwners.put([{ responseHash: old, tenantId: 't_a', createdAt: now - 31 * DAY }]);
        assert.equal(await owns(store, old, 't_a', now - 30 * DAY), false);
        assert.equal(await owns(store, old, 't_a', now - 32 * DAY), true);
      }));

    it('lets a later record of the same id replace the earlier one, within a batch and across batches', () =>
      withStore(async (store) => {
        const now = Date.now();
        const h = responseHash('openai', 'resp_reissued');
        await store.responseOwners.put([
          { responseHash: h, tenantId: 't_a', createdAt: now - 2 },
          { responseHash: h, tenantId: 't_b', createdAt: now - 1 },
        ]);
        assert.equal(await owns(store, h, 't_b', now - DAY), true);
        assert.equal(await owns(store, h, 't_a', now - DAY), false);
        await store.responseOwners.put([{ responseHash: h, tenantId: 't_a', createdAt: now }]);
        assert.equal(await owns(store, h, 't_a', now - DAY), true);
        assert.equal(await owns(store, h, 't_b', now - DAY), false);
      }));

    it('writes a large batch in one call and takes an empty one', () =>
      withStore(async (store) => {
        const now = Date.now();
        await store.responseOwners.put([]);
        const records = Array.from({ length: 1500 }, (_, i) => ({ responseHash: responseHash('openai', `resp_${i}`), tenantId: i % 2 === 0 ? 't_a' : 't_b', createdAt: now }));
        await store.responseOwners.put(records);
        assert.equal(await owns(store, responseHash('openai', 'resp_1498'), 't_a', now - DAY), true);
        assert.equal(await owns(store, responseHash('openai', 'resp_1499'), 't_b', now - DAY), true);
        assert.equal(await owns(store, responseHash('openai', 'resp_1499'), 't_a', now - DAY), false);
      }));

    it('deletes only the records created before the cut-off, and says how many', () =>
      withStore(async (store) => {
        const now = Date.now();
        const old1 = responseHash('openai', 'resp_old1');
        const old2 = responseHash('openai', 'resp_old2');
        const fresh = responseHash('openai', 'resp_fresh');
        await store.responseOwners.put([
          { responseHash: old1, tenantId: 't_a', createdAt: now - 40 * DAY },
          { responseHash: old2, tenantId: 't_b', createdAt: now - 31 * DAY },
          { responseHash: fresh, tenantId: 't_a', createdAt: now - DAY },
        ]);
        assert.equal(await store.responseOwners.deleteBefore(now - 30 * DAY), 2);
        assert.equal(await store.responseOwners.deleteBefore(now - 30 * DAY), 0);
        // gone even for a reader that would still accept its age
        assert.equal(await owns(store, old1, 't_a', 0), false);
        assert.equal(await owns(store, old2, 't_b', 0), false);
        assert.equal(await owns(store, fresh, 't_a', now - 30 * DAY), true);
      }));

    it('answers a list of hashes in one call with exactly those recorded for the tenant within `since`', () =>
      withStore(async (store) => {
        const now = Date.now();
        const own = ['resp_own', 'rs_own', 'msg_own', 'fc_own'].map((id) => responseHash('openai', id));
        const foreign = responseHash('openai', 'rs_foreign');
        const expired = responseHash('openai', 'rs_expired');
        const unknown = responseHash('openai', 'rs_unknown');
        await store.responseOwners.put([
          ...own.map((h) => ({ responseHash: h, tenantId: 't_a', createdAt: now })),
          { responseHash: foreign, tenantId: 't_b', createdAt: now },
          { responseHash: expired, tenantId: 't_a', createdAt: now - 31 * DAY },
        ]);
        const asked = [foreign, ...own, unknown, expired, own[0] as string];
        const owned = await store.responseOwners.ownedOf(asked, 't_a', now - 30 * DAY);
        assert.deepEqual([...owned].sort(), [...own].sort());
        // and the other tenant sees only its own
        assert.deepEqual([...await store.responseOwners.ownedOf(asked, 't_b', now - 30 * DAY)], [foreign]);
        // an empty list is an empty answer
        assert.equal((await store.responseOwners.ownedOf([], 't_a', 0)).size, 0);
        // a tenant id or hash shaped like SQL is only a value (the list is one bound parameter)
        assert.equal((await store.responseOwners.ownedOf(["x') OR 1=1 --", ...own], "t_a' OR '1'='1", 0)).size, 0);
      }));

    it('answers a list longer than any statement parameter limit (70 000 hashes) in one call', () =>
      withStore(async (store) => {
        const now = Date.now();
        const hashes = Array.from({ length: 70_000 }, (_, i) => responseHash('openai', `rs_many_${i}`));
        await store.responseOwners.put(hashes.filter((_, i) => i % 7 === 0).map((h) => ({ responseHash: h, tenantId: 't_a', createdAt: now })));
        const owned = await store.responseOwners.ownedOf(hashes, 't_a', now - DAY);
        assert.equal(owned.size, 10_000);
        assert.ok(owned.has(hashes[69_993] as string));
        assert.ok(!owned.has(hashes[69_999] as string));
      }));

    it('shows a record written by one store to another on the same database (another replica)', () =>
      withStore(async (store, f) => {
        const other = await f.open();
        const now = Date.now();
        const h = responseHash('openai', 'resp_shared');
        await store.responseOwners.put([{ responseHash: h, tenantId: 't_a', createdAt: now }]);
        assert.equal(await owns(other, h, 't_a', now - DAY), true);
        assert.equal(await owns(other, h, 't_b', now - DAY), false);
        assert.deepEqual([...await other.responseOwners.ownedOf([h, responseHash('openai', 'rs_elsewhere')], 't_a', now - DAY)], [h]);
      }));
  });
}

contract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keywarden-owners-'));
  const url = `sqlite:${join(dir, 'keywarden.db')}`;
  const opened: Store[] = [];
  return {
    async open() {
      const s = openSqliteStore(url);
      opened.push(s);
      return s;
    },
    async dispose() {
      await Promise.allSettled(opened.map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

const RUN_SCHEMA = `kw_test_owners_${randomBytes(5).toString('hex')}`;
let schemaCount = 0;
const adminPool = DATABASE_URL ? new pg.Pool({ connectionString: DATABASE_URL, max: 2 }) : undefined;
after(async () => {
  await adminPool?.end();
});

contract('postgres', async () => {
  const url = DATABASE_URL as string;
  const schema = `${RUN_SCHEMA}_${++schemaCount}`;
  const opened: Store[] = [];
  return {
    async open() {
      const s = await createPostgresStore(url, { schema, poolSize: 4 });
      opened.push(s);
      return s;
    },
    async dispose() {
      await Promise.allSettled(opened.map((s) => s.close()));
      await adminPool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}, SKIP_POSTGRES ? { skip: SKIP_POSTGRES } : {});
