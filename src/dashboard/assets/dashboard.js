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

  const $ = (id) => document.getElementById(id);
  let tenantNames = new Map();
  let adminRows = [];
  let loading = 0;

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

  /** Runs one panel's load; a 401 anywhere signs out, anything else stays in its panel. */
  async function guarded(id, work) {
    try {
      await work();
    } catch (err) {
      if (err instanceof SignedOut) throw err;
      showError(id, err);
    }
  }

  async function refresh() {
    if (!token()) return signOut('');
    const mine = ++loading;
    const since = encodeURIComponent(rangeQuery());
    $('updated').textContent = 'Loading…';
    try {
      await loadWho();
      // each answer is shown only if no newer refresh (or a sign-out) has started meanwhile
      const current = () => mine === loading;
      try {
        const tenants = await api('admin/tenants');
        tenantNames = new Map(tenants.data.map((t) => [t.id, t.name]));
      } catch (err) {
        if (err instanceof SignedOut) throw err;
        tenantNames = new Map(); // tenant ids are shown instead of names
      }
      await Promise.all([
        guarded('panel-usage', async () => {
          try {
            const usage = (await api('admin/usage?since=' + since)).data;
            if (current()) renderUsage(usage);
          } catch (err) {
            if (err instanceof SignedOut) throw err;
            if (!current()) return;
            showError('panel-usage', err);
            showError('panel-errors', err);
          }
        }),
        guarded('panel-alerts', async () => {
          const page = (action) => api('admin/audit?order=desc&limit=' + MAX_ALERTS + '&since=' + since + '&action=' + encodeURIComponent(action));
          const [anomalies, quota] = await Promise.all([page('anomaly.'), page('quota.')]);
          const rows = anomalies.data.concat(quota.data).sort((a, b) => b.seq - a.seq).slice(0, MAX_ALERTS);
          if (current()) renderAlerts(rows);
        }),
        guarded('panel-admin', async () => {
          const rows = (await api('admin/audit?order=desc&limit=' + MAX_ADMIN_CALLS + '&since=' + since + '&action=admin.call')).data;
          if (!current()) return;
          adminRows = rows;
          renderAdminCalls();
        }),
      ]);
      if (mine === loading) $('updated').textContent = 'Updated ' + when(new Date().toISOString());
    } catch (err) {
      if (mine !== loading) return; // a newer refresh or a sign-out has taken over
      if (err instanceof SignedOut) signOut(err.message);
      else $('updated').textContent = 'Could not load (' + err.message + ').';
    }
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
    await refresh();
  }

  function start() {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    $('refresh').addEventListener('click', refresh);
    $('range').addEventListener('change', refresh);
    $('changes-only').addEventListener('change', renderAdminCalls);
    if (token()) {
      $('sign-in').hidden = true;
      $('board').hidden = false;
      $('who').hidden = false;
      refresh();
    } else {
      signOut('');
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
