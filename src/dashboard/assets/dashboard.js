// keywarden dashboard: plain browser JavaScript, no framework, no build step.
//
// Security rules of this file (the page's CSP backs them up):
// - the admin token lives in this tab's sessionStorage only; it is sent as `Authorization:
//   Bearer` to the admin API on this listener and never put in a URL, a cookie or the DOM;
// - everything shown is data from the API, rendered with textContent / createElement only,
//   never as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'keywarden.admin_token';
  const MAX_ALERTS = 100;
  const MAX_ADMIN_CALLS = 50;
  // auto-refresh periods (seconds) the address may ask for: `?refresh=N` (see docs/dashboard.md)
  const MIN_AUTO_SECONDS = 1;
  const MAX_AUTO_SECONDS = 3600;

  const $ = (id) => document.getElementById(id);
  let tenantNames = new Map();
  let adminRows = [];
  let loading = 0;
  /** The refresh now running (a promise), so that two never run at once. */
  let inFlight = null;
  /** Another refresh was asked for while one was running: run it right after. */
  let again = false;
  let announceAgain = false;
  /** The auto-refresh timer, when one is set. */
  let timer = 0;
  /** When the last refresh (ok or not) ended, in ms: the next automatic one is a period after it. */
  let lastDone = 0;
  /** When the last refresh that loaded every panel ended (a Date), for "Updated HH:MM:SS". */
  let lastOk = null;

  /** A refused call (401): the token is not (or no longer) valid. */
  class SignedOut extends Error {}
  /** A route this token's role or scope may not use (403 / 404). */
  class NotAvailable extends Error {}

  // ── the token ────────────────────────────────────────────────────────────────────────
  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    loading++; // answers still on their way are dropped, not shown
    stopTimer(); // auto-refresh waits for the next sign-in
    lastOk = null;
    tenantNames = new Map();
    adminRows = [];
    for (const body of document.querySelectorAll('.panel-body')) body.replaceChildren();
    $('who-text').textContent = '';
    $('updated').textContent = '';
    $('who').hidden = true;
    $('board').hidden = true;
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = message || '';
    $('token').focus();
  }

  /** GET of an admin API route (relative to this page, so it stays on this listener). */
  async function api(path, presented) {
    const res = await fetch(path, {
      headers: { authorization: 'Bearer ' + (presented || token() || '') },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    });
    if (res.status === 401) throw new SignedOut('The admin token was refused (mistyped, expired or revoked). Sign in again.');
    if (res.status === 429) throw new SignedOut('Too many refused tokens from this address: wait a minute, then sign in again.');
    if (res.status === 403 || res.status === 404) throw new NotAvailable('not available to your role');
    if (!res.ok) throw new Error('the admin API answered ' + res.status);
    return res.json();
  }

  // ── rendering helpers (text only) ────────────────────────────────────────────────────
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const num = (n) => intFormat.format(Number(n) || 0);
  function usd(n) {
    const v = Number(n) || 0;
    return '$' + (v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(6) : v.toFixed(2));
  }
  function percent(part, whole) {
    return whole > 0 ? (100 * part / whole).toFixed(1) + '%' : '–';
  }
  function when(iso) {
    return typeof iso === 'string' ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace('Z', ' UTC') : '';
  }
  function tenantName(id) {
    return typeof id === 'string' ? (tenantNames.get(id) || id) : '–';
  }
  function valueText(v) {
    if (v === null || v === undefined) return '–';
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }

  /**
   * A table: `columns` are [heading, className]; each row is a list of cells, a cell either a
   * value or { text, className }.
   */
  function table(columns, rows, footer) {
    const t = el('table');
    const head = el('tr');
    for (const [heading, className] of columns) head.append(el('th', heading, className));
    t.append(el('thead'));
    t.tHead.append(head);
    const body = el('tbody');
    const addRow = (cells, rowClass) => {
      const tr = el('tr', null, rowClass);
      cells.forEach((cell, i) => {
        const isObj = cell !== null && typeof cell === 'object';
        const cls = [columns[i] && columns[i][1], isObj ? cell.className : ''].filter(Boolean).join(' ');
        tr.append(el('td', isObj ? cell.text : cell, cls));
      });
      body.append(tr);
    };
    for (const cells of rows) addRow(cells);
    if (footer) addRow(footer, 'total');
    t.append(body);
    return t;
  }

  function panel(id) {
    return document.querySelector('#' + id + ' .panel-body');
  }
  function show(id, ...nodes) {
    if (token()) panel(id).replaceChildren(...nodes);
  }
  function showError(id, err) {
    if (err instanceof NotAvailable) show(id, el('p', 'Not available to your role.', 'unavailable'));
    else show(id, el('p', 'Could not load this panel (' + (err && err.message ? err.message : 'network error') + ').', 'error'));
  }

  // ── panels ───────────────────────────────────────────────────────────────────────────
  function renderUsage(rows) {
    if (rows.length === 0) {
      show('panel-usage', el('p', 'No requests in this range.', 'empty'));
      show('panel-errors', el('p', 'No requests in this range.', 'empty'));
      return;
    }
    const total = { requests: 0, errors: 0, input: 0, output: 0, cost: 0 };
    const cells = rows.map((r) => {
      total.requests += r.requests; total.errors += r.errors; total.input += r.input_tokens; total.output += r.output_tokens; total.cost += r.cost_usd;
      return [r.tenant, r.model === null ? '(none)' : r.model, num(r.requests), { text: num(r.errors), className: r.errors > 0 ? 'bad' : '' },
        num(r.input_tokens), num(r.output_tokens), usd(r.cost_usd)];
    });
    show('panel-usage', table(
      [['Tenant'], ['Model', 'wrap'], ['Requests', 'num'], ['Errors', 'num'], ['Input tokens', 'num'], ['Output tokens', 'num'], ['Cost', 'num']],
      cells,
      ['Total', '', num(total.requests), num(total.errors), num(total.input), num(total.output), usd(total.cost)],
    ));

    const failing = rows.filter((r) => r.errors > 0).sort((a, b) => b.errors / b.requests - a.errors / a.requests || b.errors - a.errors);
    if (failing.length === 0) {
      show('panel-errors', el('p', 'No errors in this range (' + num(total.requests) + ' requests).', 'empty'));
      return;
    }
    show('panel-errors', table(
      [['Tenant'], ['Model', 'wrap'], ['Errors', 'num'], ['Requests', 'num'], ['Error rate', 'num']],
      failing.map((r) => [r.tenant, r.model === null ? '(none)' : r.model, { text: num(r.errors), className: 'bad' }, num(r.requests), percent(r.errors, r.requests)]),
    ));
  }

  const ALERT_FIELDS_SHOWN_ELSEWHERE = new Set(['tenant', 'key', 'client']);
  function renderAlerts(rows) {
    if (rows.length === 0) {
      show('panel-alerts', el('p', 'No alerts in this range.', 'empty'));
      return;
    }
    show('panel-alerts', table(
      [['Time'], ['Kind'], ['Tenant'], ['Key'], ['Values', 'wrap']],
      rows.map((r) => {
        const d = r.details || {};
        const values = Object.keys(d).filter((k) => !ALERT_FIELDS_SHOWN_ELSEWHERE.has(k)).map((k) => k + ' = ' + valueText(d[k])).join(', ');
        return [when(r.ts), r.action, tenantName(d.tenant), valueText(d.key), values];
      }),
    ));
  }

  function renderAdminCalls() {
    const changesOnly = $('changes-only').checked;
    const rows = adminRows.filter((r) => !changesOnly || (r.details && r.details.method !== 'GET'));
    if (rows.length === 0) {
      show('panel-admin', el('p', changesOnly ? 'No changes among the latest admin calls in this range.' : 'No admin calls visible to your token in this range.', 'empty'));
      return;
    }
    show('panel-admin', table(
      [['Time'], ['Who'], ['Call', 'wrap'], ['Status', 'num'], ['Result']],
      rows.map((r) => {
        const d = r.details || {};
        return [when(r.ts), r.actor, valueText(d.method) + ' ' + (r.target === null ? '(no such route)' : r.target), valueText(d.status),
          { text: r.outcome === 'success' ? 'ok' : (d.code ? String(d.code) : 'refused'), className: r.outcome === 'success' ? '' : 'bad' }];
      }),
    ));
  }

  // ── loading ──────────────────────────────────────────────────────────────────────────
  function rangeQuery() {
    const range = $('range').value;
    return ['1h', '24h', '7d'].includes(range) ? range : '24h';
  }

  async function loadWho(presented) {
    const who = await api('admin/whoami', presented);
    const scope = who.tenants === null ? 'all tenants' : (who.tenants.length === 0 ? 'no tenants' : 'tenants: ' + who.tenants.join(', '));
    $('who-text').textContent = who.owner + ' · ' + who.role + ' · ' + scope;
    return who;
  }

  // ── refreshing ───────────────────────────────────────────────────────────────────────
  function twoDigits(n) {
    return String(n).padStart(2, '0');
  }
  /** HH:MM:SS in the browser's local time. */
  function clock(date) {
    return twoDigits(date.getHours()) + ':' + twoDigits(date.getMinutes()) + ':' + twoDigits(date.getSeconds());
  }
  function lastUpdated() {
    return lastOk ? ' Last updated ' + clock(lastOk) + '.' : '';
  }

  /**
   * Loads every panel once. A 401 (or 429) anywhere signs out; any other failure stays in its
   * panel, and the status line says the page is not fully up to date.
   */
  async function load(announce) {
    if (!token()) return signOut('');
    const mine = ++loading;
    const since = encodeURIComponent(rangeQuery());
    // an automatic refresh keeps "Updated …" on screen while it runs; one you asked for says so
    if (announce || !lastOk) $('updated').textContent = 'Loading…';
    // each answer is shown only if no newer refresh (or a sign-out) has started meanwhile
    const current = () => mine === loading;
    let failed = false;
    const guarded = async (ids, work) => {
      try {
        await work();
      } catch (err) {
        if (err instanceof SignedOut) throw err;
        if (!(err instanceof NotAvailable)) failed = true;
        if (current()) for (const id of ids) showError(id, err);
      }
    };
    try {
      await loadWho();
      try {
        const tenants = await api('admin/tenants');
        tenantNames = new Map(tenants.data.map((t) => [t.id, t.name]));
      } catch (err) {
        if (err instanceof SignedOut) throw err;
        tenantNames = new Map(); // tenant ids are shown instead of names
      }
      await Promise.all([
        guarded(['panel-usage', 'panel-errors'], async () => {
          const usage = (await api('admin/usage?since=' + since)).data;
          if (current()) renderUsage(usage);
        }),
        guarded(['panel-alerts'], async () => {
          const page = (action) => api('admin/audit?order=desc&limit=' + MAX_ALERTS + '&since=' + since + '&action=' + encodeURIComponent(action));
          const [anomalies, quota] = await Promise.all([page('anomaly.'), page('quota.')]);
          const rows = anomalies.data.concat(quota.data).sort((a, b) => b.seq - a.seq).slice(0, MAX_ALERTS);
          if (current()) renderAlerts(rows);
        }),
        guarded(['panel-admin'], async () => {
          const rows = (await api('admin/audit?order=desc&limit=' + MAX_ADMIN_CALLS + '&since=' + since + '&action=admin.call')).data;
          if (!current()) return;
          adminRows = rows;
          renderAdminCalls();
        }),
      ]);
      if (!current()) return;
      if (failed) {
        $('updated').textContent = 'Some panels could not load.' + lastUpdated();
      } else {
        lastOk = new Date();
        $('updated').textContent = 'Updated ' + clock(lastOk);
      }
    } catch (err) {
      if (!current()) return; // a sign-out has taken over
      if (err instanceof SignedOut) signOut(err.message);
      else $('updated').textContent = 'Could not load (' + (err && err.message ? err.message : 'network error') + ').' + lastUpdated();
    }
  }

  /**
   * Refreshes the page, one refresh at a time: asked while one runs (a click, a new range), it
   * runs once more right after, so the newest choice is what ends up shown. When it ends, the
   * next automatic refresh is set a full period later, whatever the outcome: a failing API is
   * retried at the period, never in a tight loop.
   */
  function refresh(announce) {
    if (inFlight) {
      again = true;
      announceAgain = announceAgain || Boolean(announce);
      return inFlight;
    }
    stopTimer();
    inFlight = (async () => {
      try {
        await load(announce);
        while (again && token()) {
          const announceNext = announceAgain;
          again = false;
          announceAgain = false;
          await load(announceNext);
        }
      } finally {
        again = false;
        announceAgain = false;
        inFlight = null;
        lastDone = Date.now();
        schedule();
      }
    })();
    return inFlight;
  }

  // ── auto-refresh ─────────────────────────────────────────────────────────────────────
  /** The chosen period in seconds, or 0 for off. */
  function autoSeconds() {
    const seconds = Number($('auto-refresh').value);
    return Number.isInteger(seconds) && seconds >= MIN_AUTO_SECONDS && seconds <= MAX_AUTO_SECONDS ? seconds : 0;
  }

  function stopTimer() {
    if (timer) clearTimeout(timer);
    timer = 0;
  }

  function hidden() {
    return document.visibilityState === 'hidden';
  }

  /**
   * Sets the next automatic refresh a period after the last one ended (at once if that is past
   * already). None while auto-refresh is off, while signed out, while a refresh runs (it sets
   * the next one when it ends) or while the tab is hidden (its return sets it).
   */
  function schedule() {
    stopTimer();
    const seconds = autoSeconds();
    if (!seconds || !token() || inFlight || hidden()) return;
    const wait = Math.max(0, lastDone + seconds * 1000 - Date.now());
    timer = setTimeout(() => {
      timer = 0;
      if (!hidden()) refresh(false);
    }, wait);
  }

  function onVisibility() {
    // hidden: nothing is fetched for a tab nobody looks at; back: refresh if a period has passed
    if (hidden()) stopTimer();
    else schedule();
  }

  /**
   * The period the address asks for (`?refresh=off` or `?refresh=N`, whole seconds from
   * MIN_AUTO_SECONDS to MAX_AUTO_SECONDS), else null. A period the menu lacks is added to it.
   */
  function periodFromAddress() {
    const asked = new URLSearchParams(location.search).get('refresh');
    if (asked === null) return null;
    if (asked === 'off') return 'off';
    if (!/^[0-9]{1,4}$/.test(asked)) return null;
    const seconds = Number(asked);
    if (seconds < MIN_AUTO_SECONDS || seconds > MAX_AUTO_SECONDS) return null;
    const menu = $('auto-refresh');
    if (![...menu.options].some((o) => o.value === String(seconds))) {
      const option = el('option', 'Every ' + seconds + ' s');
      option.value = String(seconds);
      menu.append(option);
    }
    return String(seconds);
  }

  /** A period chosen in the menu goes into the address (not the history), so a reload keeps it. */
  function onPeriodChosen() {
    const url = new URL(location.href);
    if (autoSeconds()) url.searchParams.set('refresh', String(autoSeconds()));
    else url.searchParams.delete('refresh');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    schedule();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $('token');
    const presented = input.value.trim();
    input.value = ''; // the token does not stay in the page
    if (!presented) {
      $('sign-in-error').textContent = 'Paste an admin token first.';
      return;
    }
    $('sign-in-error').textContent = '';
    try {
      await loadWho(presented);
    } catch (err) {
      $('sign-in-error').textContent = err instanceof SignedOut ? err.message : 'Could not reach the admin API (' + err.message + ').';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, presented);
    $('sign-in').hidden = true;
    $('board').hidden = false;
    $('who').hidden = false;
    await refresh(true);
  }

  function start() {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    $('refresh').addEventListener('click', () => refresh(true));
    $('range').addEventListener('change', () => refresh(true));
    $('changes-only').addEventListener('change', renderAdminCalls);
    const period = periodFromAddress();
    if (period !== null) $('auto-refresh').value = period;
    $('auto-refresh').addEventListener('change', onPeriodChosen);
    document.addEventListener('visibilitychange', onVisibility);
    if (token()) {
      $('sign-in').hidden = true;
      $('board').hidden = false;
      $('who').hidden = false;
      refresh(true);
    } else {
      signOut('');
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
