import { createHash } from 'node:crypto';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import type { NormalisedRequest } from '../providers/types.js';
import type { ResponseOwnerRecord, ResponseOwnerRepository } from '../store/types.js';

/*
 * Ownership of provider-stored responses (OWASP API1, broken object-level authorisation).
 *
 * Every tenant calls the provider with the operator's one key, so the provider keeps every
 * tenant's stored Responses answers under the same account: any `resp_…` id, sent as
 * `previous_response_id`, would continue (and so read) that conversation, whoever it belongs to;
 * and any output item id (`rs_…` reasoning, `msg_…`, `fc_…`, …) replayed as an input item's `id`
 * makes the provider pull in what it stored for that item. Code interpreter answers also hand out
 * container ids (`cntr_…`, on `code_interpreter_call` items and `container_file_citation`
 * annotations): named again as a `code_interpreter` tool's `container`, one runs code in that
 * container and reads the files it holds. The gateway therefore records which tenant each
 * response id, output item id, container id and annotation file id was relayed to, and refuses a
 * request naming one that was not relayed to the caller's own tenant.
 *
 * All kinds share one table and one hash (`responseHash(provider, id)`): a binding says only
 * "this provider id was relayed to this tenant", the same fact for every kind; provider ids are
 * unique across kinds (distinct prefixes), so they cannot collide; and one table lets a request's
 * `previous_response_id`, item ids, annotation ids and container be checked in one store read,
 * written in the same batches and pruned by the same retention job (items live upstream as long
 * as their response; a container expires upstream after minutes of idleness, long before).
 *
 * Read path: an in-memory map of recent ids first (the tenant's very next request, on this
 * replica, finds its id there even before the write lands), then the store (ids relayed by
 * other replicas, or before a restart). Write path: off the request, coalesced into one store
 * transaction per event-loop turn (under load, a batch), retried when the store fails.
 */

export interface ResponseOwnersOptions {
  repo: ResponseOwnerRepository;
  logger: Logger;
  /** How long an id stays owned (`tenants.response_owner_retention`). */
  retentionMs: number;
  /** Recent ids (responses and output items) held in memory for the fast path (default 30 000); older ones are read from the store. */
  memoryEntries?: number;
  /**
   * How long an id not found waits before the store is read once more (default 200 ms): another
   * replica may have relayed it a moment ago and its write may still be landing. Only refusals
   * (and such races) wait; an id found in memory or in the store does not.
   */
  missRecheckMs?: number;
  /** Most records waiting for the store (default 100 000); beyond it the oldest are dropped, with a log line. */
  maxPending?: number;
  /** How often expired records are deleted from the store (default daily; the first run comes a few seconds after start). */
  pruneIntervalMs?: number;
  now?: () => number;
}

/** What the ownership stage reads of a validated request. */
export interface OwnershipInput {
  /** The provider the request goes to (its config id): ids are only meaningful per provider. */
  target: { id: string };
  request: Pick<NormalisedRequest, 'endpoint' | 'body'>;
}

/** What the record stage hands over: the tenant, the provider and the ids its answer carried. */
export interface OwnedAnswer {
  principal: { tenantId: string } | undefined;
  provider: string | null;
  responseId: string | null;
  /**
   * The answer's output item ids, with the container ids and annotation file ids its items carry
   * (recorded even when the response id is not: see the adapter).
   */
  outputItemIds?: readonly string[];
}

export interface ResponseOwners {
  /**
   * The ownership stage (after validation, before admission): undefined at once when the request
   * names no provider id (no `previous_response_id`, no input item with an `id`, no annotation
   * with a file or container id, no code interpreter container by id); otherwise resolves when
   * every id is the tenant's and rejects with `request_object_not_owned` (param naming the first
   * that is not) when one is not (unknown, expired or another tenant's alike).
   */
  check(tenantId: string, input: OwnershipInput): Promise<void> | undefined;
  /** Binds the ids an answer carried to its tenant: in memory at once, in the store shortly after. */
  remember(answer: OwnedAnswer): void;
  /** Deletes the store's records past retention; returns how many. */
  prune(): Promise<number>;
  /** Writes every pending record. */
  flush(): Promise<void>;
  /** Stops the prune timer and writes what is pending. */
  close(): Promise<void>;
}

/**
 * The hash a response id is kept under: SHA-256 over the provider id and the response id, so
 * the same id from two providers never matches, and the store holds no usable id.
 */
export function responseHash(provider: string, responseId: string): string {
  return createHash('sha256').update(`${provider.length}:${provider}:${responseId}`, 'utf8').digest('hex');
}

/** What a refusal says is missing, by the kind of id: never whether it exists, never the id. */
type IdKind = 'previous response' | 'input item' | 'container' | 'file';

/** One answer for "not yours", "unknown" and "expired": nothing tells whether the id exists (and the id is never named). */
function notOwned(first: NamedId | undefined): GatewayError {
  const { param, kind } = first ?? { param: PREVIOUS_RESPONSE, kind: 'previous response' };
  return new GatewayError('request_object_not_owned', `${kind} not found`, { param });
}

const PREVIOUS_RESPONSE = 'previous_response_id';

/** One provider id a request names, with where it sits (the refusal's `param`). */
interface NamedId {
  param: string;
  kind: IdKind;
  hash: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The provider ids a Responses request names, in request order: `previous_response_id`; for each
 * input item, its `id`, then the `container_id` and `file_id` of each annotation on its content
 * parts (output text of a replayed assistant message); then the `container` of each
 * `code_interpreter` tool given by id (the `{type: 'auto'}` form creates a new container and
 * names none). Absent or null names nothing; any string, even empty, is checked.
 *
 * The count is bounded by validation, which already ran: input items by `max_messages`, and
 * annotations and tools by the body size limit (`max_body_bytes`), so this walk costs no more
 * than the parse before it; an id named many times (every citation of one container) is hashed once.
 */
function namedIds(provider: string, body: Record<string, unknown>): NamedId[] {
  const ids: NamedId[] = [];
  const hashes = new Map<string, string>();
  const add = (param: string, kind: IdKind, id: string): void => {
    let hash = hashes.get(id);
    if (hash === undefined) {
      hash = responseHash(provider, id);
      hashes.set(id, hash);
    }
    ids.push({ param, kind, hash });
  };
  const previous = body[PREVIOUS_RESPONSE];
  if (typeof previous === 'string') add(PREVIOUS_RESPONSE, 'previous response', previous);
  const input = body['input'];
  if (Array.isArray(input)) {
    for (let i = 0; i < input.length; i++) {
      const item: unknown = input[i];
      if (!isObject(item)) continue;
      const id = item['id'];
      if (typeof id === 'string') add(`input[${i}].id`, 'input item', id);
      const content = item['content'];
      if (Array.isArray(content)) addAnnotationIds(add, `input[${i}].content`, content);
    }
  }
  const tools = body['tools'];
  if (Array.isArray(tools)) {
    for (let i = 0; i < tools.length; i++) {
      const tool: unknown = tools[i];
      if (isObject(tool) && tool['type'] === 'code_interpreter' && typeof tool['container'] === 'string') {
        add(`tools[${i}].container`, 'container', tool['container']);
      }
    }
  }
  return ids;
}

/**
 * The ids on the annotations of content parts (the schema allows annotations only on an assistant
 * message's `output_text`): a `container_file_citation` names a container and a file in it, a
 * `file_citation` or `file_path` a file. Whether the provider resolves them on input is not
 * documented; they are checked all the same (fail closed), and an answer's annotations were
 * bound when it was relayed, so replaying it as it came passes.
 */
function addAnnotationIds(add: (param: string, kind: IdKind, id: string) => void, path: string, content: readonly unknown[]): void {
  for (let j = 0; j < content.length; j++) {
    const part: unknown = content[j];
    if (!isObject(part)) continue;
    const annotations = part['annotations'];
    if (!Array.isArray(annotations)) continue;
    for (let k = 0; k < annotations.length; k++) {
      const annotation: unknown = annotations[k];
      if (!isObject(annotation)) continue;
      const at = `${path}[${j}].annotations[${k}]`;
      const container = annotation['container_id'];
      if (typeof container === 'string') add(`${at}.container_id`, 'container', container);
      const file = annotation['file_id'];
      if (typeof file === 'string') add(`${at}.file_id`, 'file', file);
    }
  }
}

/**
 * Creates the response-ownership stage and its write-behind recorder.
 *
 * @example
 * const owners = createResponseOwners({ repo: store.responseOwners, logger, retentionMs: 30 * 86_400_000 });
 * await owners.check(principal.tenantId, prepared); // throws request_object_not_owned
 * owners.remember(ctx);                              // after the answer was relayed
 */
export function createResponseOwners(options: ResponseOwnersOptions): ResponseOwners {
  const { repo, logger, retentionMs } = options;
  if (!Number.isFinite(retentionMs) || retentionMs <= 0) throw new Error('response owner retention must be a positive duration');
  const memoryEntries = options.memoryEntries ?? 30_000;
  const missRecheckMs = options.missRecheckMs ?? 200;
  const maxPending = options.maxPending ?? 100_000;
  const pruneIntervalMs = options.pruneIntervalMs ?? 86_400_000;
  const now = options.now ?? Date.now;

  // insertion-ordered: the first entry is the oldest, evicted first
  const recent = new Map<string, { tenantId: string; createdAt: number }>();
  let pending: ResponseOwnerRecord[] = [];
  let scheduled = false;
  let writing: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;
  let closed = false;

  async function writeOnce(): Promise<void> {
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    try {
      await repo.put(batch);
      failures = 0;
    } catch (err) {
      // kept ahead of newer records and retried; the ids stay usable on this replica meanwhile
      pending = batch.concat(pending);
      trimPending();
      failures += 1;
      if (failures === 1 || failures % 50 === 0) logger.error({ event: 'response_owner_write_failed', err, pending: pending.length }, 'response ownership could not be written; will retry');
      if (!closed && retryTimer === undefined) {
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          schedule();
        }, 1000);
        retryTimer.unref();
      }
      throw err;
    }
  }

  function flush(): Promise<void> {
    // one write at a time, in order, so a later owner of a re-issued id is written last
    const next = (writing ?? Promise.resolve()).then(writeOnce, writeOnce);
    writing = next.catch(() => undefined);
    return next;
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    // the next turn of the event loop: whatever else was answered meanwhile goes in the same transaction
    setImmediate(() => {
      scheduled = false;
      flush().catch(() => undefined);
    });
  }

  function trimPending(): void {
    if (pending.length <= maxPending) return;
    const dropped = pending.length - maxPending;
    pending = pending.slice(dropped);
    logger.error({ event: 'response_owner_records_dropped', dropped }, 'response ownership records were dropped while the store was failing; those responses cannot be chained on from other replicas');
  }

  /** The hashes of `wanted` the store holds for the tenant: one query for all of them. */
  async function inStore(wanted: readonly string[], tenantId: string, since: number): Promise<ReadonlySet<string>> {
    try {
      return await repo.ownedOf(wanted, tenantId, since);
    } catch (err) {
      // fail closed: an ownership that cannot be checked is not granted
      logger.error({ event: 'response_owner_read_failed', err }, 'response ownership could not be read');
      throw new GatewayError('service_unavailable', 'the provider ids the request names (previous response, input items, container) could not be checked; retry shortly');
    }
  }

  async function verify(tenantId: string, ids: readonly NamedId[]): Promise<void> {
    const since = now() - retentionMs;
    // only a positive answer is taken from memory: another tenant's entry (or none) goes to the
    // store like an unknown id, so both take the same path and the same time
    let missing = new Set<string>();
    for (const { hash } of ids) {
      const hit = recent.get(hash);
      if (hit === undefined || hit.tenantId !== tenantId || hit.createdAt < since) missing.add(hash);
    }
    if (missing.size === 0) return;
    for (const hash of await inStore([...missing], tenantId, since)) missing.delete(hash);
    if (missing.size === 0) return;
    await new Promise((resolve) => setTimeout(resolve, missRecheckMs));
    // re-read only what is still missing: another replica's write may have landed meanwhile
    const found = await inStore([...missing], tenantId, since);
    missing = new Set([...missing].filter((hash) => !found.has(hash)));
    if (missing.size === 0) return;
    // the first id, in request order, that is not the tenant's
    const first = ids.find(({ hash }) => missing.has(hash));
    throw notOwned(first);
  }

  async function prune(): Promise<number> {
    const before = now() - retentionMs;
    for (const [hash, entry] of recent) if (entry.createdAt < before) recent.delete(hash);
    return repo.deleteBefore(before);
  }

  let pruning: Promise<void> | undefined;
  const runPrune = (): void => {
    pruning ??= prune().then((deleted) => {
      if (deleted > 0) logger.info({ event: 'response_owner_retention', deleted }, 'expired response ownership records deleted');
    }, (err: unknown) => {
      logger.error({ event: 'response_owner_retention_failed', err }, 'expired response ownership records could not be deleted; the job runs again later');
    }).finally(() => {
      pruning = undefined;
    });
  };
  const firstPrune = setTimeout(runPrune, 5000);
  firstPrune.unref();
  const pruneTimer = setInterval(runPrune, pruneIntervalMs);
  pruneTimer.unref();

  return {
    check(tenantId, input) {
      const { request } = input;
      if (request.endpoint !== 'responses') return undefined;
      const ids = namedIds(input.target.id, request.body);
      // a request that names no provider id costs no promise and no store read
      if (ids.length === 0) return undefined;
      return verify(tenantId, ids);
    },

    remember(answer) {
      const { principal, provider, responseId, outputItemIds } = answer;
      if (principal === undefined || provider === null) return;
      const ids = responseId === null ? [] : [responseId];
      if (outputItemIds !== undefined) ids.push(...outputItemIds);
      if (ids.length === 0) return;
      const createdAt = now();
      for (const id of ids) {
        const hash = responseHash(provider, id);
        recent.delete(hash);
        recent.set(hash, { tenantId: principal.tenantId, createdAt });
        pending.push({ responseHash: hash, tenantId: principal.tenantId, createdAt });
      }
      while (recent.size > memoryEntries) {
        const oldest = recent.keys().next();
        if (oldest.done) break;
        recent.delete(oldest.value);
      }
      trimPending();
      schedule();
    },

    prune,
    flush,

    async close() {
      closed = true;
      clearTimeout(firstPrune);
      clearInterval(pruneTimer);
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      await pruning;
      // a failed last write is already logged; closing goes on (the ids are lost, so chains on them are refused: fail closed)
      await flush().catch(() => undefined);
    },
  };
}
