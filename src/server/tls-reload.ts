import { createHash, X509Certificate } from 'node:crypto';
import type { Server } from 'node:http';
import type { Logger } from '../log/logger.js';
import { crlRollbackProblems } from '../auth/crl.js';
import { applyServerTls, type HttpServerTls } from './http-server.js';

/*
 * TLS material reloaded while the gateway runs (a new CRL, a rotated server certificate): on
 * SIGHUP and on a periodic check, each TLS listener's files are read and its key resolved through
 * the same function as at start-up, and applied to new handshakes only when their bytes changed.
 * A reload that fails keeps the material in use: a bad file never takes a listener down, and a
 * CRL older than the one in use (a rollback that would un-revoke certificates) is refused.
 */

export type TlsListenerName = 'public' | 'admin';
/** What asked for a reload: the SIGHUP handler, the periodic check, or a direct call. */
export type TlsReloadTrigger = 'signal' | 'interval' | 'call';
/** `reloaded`: new material in use; `unchanged`: same bytes, nothing done; `failed`: the old material stays. */
export type TlsReloadResult = 'reloaded' | 'unchanged' | 'failed';

/** The parts of the material whose change is reported (`changed` of `tls_reloaded`). */
const PARTS = ['cert', 'key', 'client_ca', 'crl'] as const;
type Part = (typeof PARTS)[number];

/** One TLS listener as the reloader sees it. */
export interface TlsListenerSource {
  listener: TlsListenerName;
  /** The config path, which every problem and log line names. */
  path: 'listen.public_tls' | 'listen.admin_tls';
  server: Server;
  /** The material the server was started with, and the warnings its loading gave (already logged). */
  initial: HttpServerTls;
  initialWarnings: readonly string[];
  /** Loads the material as at start-up (throws listing every problem); CRL conditions come as warnings. */
  load(onWarning: (message: string) => void): Promise<HttpServerTls>;
  /** Milliseconds between periodic checks; 0 for none. */
  intervalMs: number;
}

export interface TlsReloadOutcome {
  listener: TlsListenerName;
  result: TlsReloadResult;
  /** The parts that changed (`reloaded` only). */
  changed: readonly Part[];
  /** Each problem, naming its config path (`failed` only). */
  problems: readonly string[];
}

export interface TlsReloaderOptions {
  listeners: readonly TlsListenerSource[];
  logger: Logger;
  /** Counts each check's result (keywarden_tls_reloads_total). */
  onResult?: (listener: TlsListenerName, result: TlsReloadResult) => void;
}

export interface TlsReloader {
  /** Checks every listener now; never rejects (a failure is an outcome, logged). */
  reload(trigger: TlsReloadTrigger): Promise<readonly TlsReloadOutcome[]>;
  /** Starts the periodic checks of listeners with an interval. */
  start(): void;
  /** Stops them; a check under way finishes but schedules no other. */
  stop(): void;
}

/** SHA-256 per part: compared to tell what changed, never logged (one of them covers the key). */
function digests(tls: HttpServerTls): Record<Part, string> {
  const hash = (parts: readonly string[] | undefined): string => {
    const h = createHash('sha256');
    // length-prefixed, so two CRL lists that concatenate alike still differ
    for (const part of parts ?? []) h.update(`${Buffer.byteLength(part)}:`).update(part);
    return `${parts === undefined ? 'none' : 'some'}:${h.digest('hex')}`;
  };
  return { cert: hash([tls.cert]), key: hash([tls.key]), client_ca: hash(tls.clientCa === undefined ? undefined : [tls.clientCa]), crl: hash(tls.crl) };
}

/** The config path a problem line starts with (`listen.public_tls.crl: …` → `listen.public_tls.crl`). */
function problemPath(line: string, fallback: string): string {
  return /^(listen\.(?:public|admin)_tls(?:\.[a-z_]+(?:\[\d+\])?)?):/.exec(line)?.[1] ?? fallback;
}

/** Public facts about the leaf certificate for the log: its SHA-256 fingerprint and end of validity. */
function certificateFacts(cert: string): { cert_fingerprint?: string; cert_not_after?: string } {
  try {
    const x509 = new X509Certificate(cert);
    return { cert_fingerprint: createHash('sha256').update(x509.raw).digest('hex'), cert_not_after: new Date(x509.validTo).toISOString() };
  } catch {
    return {};
  }
}

/**
 * Creates the reloader of the gateway's TLS listeners. Checks run one at a time: a SIGHUP during
 * a periodic check waits for it, and SIGHUPs that arrive meanwhile share one check.
 *
 * @example
 * const reloader = createTlsReloader({ listeners: [publicSource], logger });
 * reloader.start();
 * process.on('SIGHUP', () => void reloader.reload('signal'));
 */
export function createTlsReloader(options: TlsReloaderOptions): TlsReloader {
  const { logger } = options;
  const states = options.listeners.map((source) => ({
    source,
    digest: digests(source.initial),
    // the CRLs in use: a reloaded CRL older than these is refused
    crl: source.initial.crl ?? [],
    // the warnings last logged: a periodic check repeats none of them, but logs a new one (a CRL that expired since)
    warnings: new Set(source.initialWarnings),
  }));
  type State = (typeof states)[number];
  let chain: Promise<unknown> = Promise.resolve();
  let queuedAll: Promise<readonly TlsReloadOutcome[]> | undefined;
  const timers = new Map<State, NodeJS.Timeout>();
  let running = false;

  /** Runs `task` after every check before it. */
  function serial<T>(task: () => Promise<T>): Promise<T> {
    const next = chain.then(task);
    chain = next.catch(() => undefined);
    return next;
  }

  function logWarnings(state: State, warnings: readonly string[], onlyNew: boolean): void {
    for (const warning of warnings) {
      if (!onlyNew || !state.warnings.has(warning)) logger.warn({ event: 'tls_crl_warning', listener: state.source.listener }, warning);
    }
    state.warnings = new Set(warnings);
  }

  async function check(state: State, trigger: TlsReloadTrigger): Promise<TlsReloadOutcome> {
    const { source } = state;
    const warnings: string[] = [];
    const outcome = (result: TlsReloadResult, changed: readonly Part[] = [], problems: readonly string[] = []): TlsReloadOutcome => {
      options.onResult?.(source.listener, result);
      return { listener: source.listener, result, changed, problems };
    };
    const fail = (problems: readonly string[], restartFails = true): TlsReloadOutcome => {
      // the problems name config paths and files (the loader's messages never hold key material)
      logger.warn({ event: 'tls_reload_failed', listener: source.listener, trigger, path: problemPath(problems[0] ?? '', source.path), problems },
        `${source.path}: the TLS material could not be reloaded; the material in use is kept${restartFails ? ' (a restart would fail until this is fixed)' : ''}`);
      return outcome('failed', [], problems);
    };
    let loaded: HttpServerTls;
    try {
      loaded = await source.load((message) => warnings.push(message));
    } catch (err) {
      const message = err instanceof Error ? err.message : '';
      return fail(message === '' ? [`${source.path}: could not be loaded`] : message.split('\n'));
    }
    const next = digests(loaded);
    const changed = PARTS.filter((part) => next[part] !== state.digest[part]);
    if (changed.length === 0) {
      // quiet when nothing changed, except for a CRL condition not reported yet
      logWarnings(state, warnings, true);
      if (trigger === 'signal') logger.info({ event: 'tls_reload_unchanged', listener: source.listener, trigger }, `${source.path}: the TLS material has not changed`);
      return outcome('unchanged');
    }
    if (changed.includes('crl')) {
      // a start has nothing to compare with: only a reload can tell an older CRL from the one in use
      const rollbacks = crlRollbackProblems(state.crl, loaded.crl ?? [], loaded.clientCa ?? '', source.path);
      if (rollbacks.length > 0) return fail(rollbacks, false);
    }
    let retired: number;
    try {
      // new client-certificate trust ends the reuse of connections verified under the old one
      retired = applyServerTls(source.server, loaded, { retireConnections: changed.includes('client_ca') || changed.includes('crl') });
    } catch {
      return fail([`${source.path}: the certificate, key or client CA bundle could not be used`]);
    }
    state.digest = next;
    state.crl = loaded.crl ?? [];
    logger.info({ event: 'tls_reloaded', listener: source.listener, trigger, changed, connections_retired: retired, ...certificateFacts(loaded.cert) },
      `${source.path}: new TLS material is used for new connections`);
    logWarnings(state, warnings, false);
    return outcome('reloaded', changed);
  }

  function checkAll(trigger: TlsReloadTrigger): Promise<readonly TlsReloadOutcome[]> {
    // one queued check serves every request made before it starts (a burst of SIGHUPs)
    if (queuedAll) return queuedAll;
    const queued = serial(async () => {
      queuedAll = undefined;
      const outcomes: TlsReloadOutcome[] = [];
      for (const state of states) outcomes.push(await check(state, trigger));
      return outcomes;
    });
    queuedAll = queued;
    return queued;
  }

  function schedule(state: State): void {
    if (!running || state.source.intervalMs <= 0) return;
    const timer = setTimeout(() => {
      void serial(() => check(state, 'interval')).then(() => schedule(state), () => schedule(state));
    }, state.source.intervalMs);
    // the periodic check never keeps the process alive
    timer.unref();
    timers.set(state, timer);
  }

  return {
    reload: (trigger) => checkAll(trigger),
    start() {
      if (running) return;
      running = true;
      for (const state of states) schedule(state);
    },
    stop() {
      running = false;
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
    },
  };
}
