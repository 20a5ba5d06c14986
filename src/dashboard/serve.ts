import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { PublicAccess } from '../admin/app.js';

/**
 * The headers of every dashboard response. The page, script and style sheet come from this
 * listener only, the script may call this listener only (the admin API), and nothing inline
 * runs: an HTML payload that reached the page as data could not execute, load or send anything.
 */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
});

const FILES = [
  { route: '/dashboard', file: 'index.html', type: 'text/html; charset=utf-8' },
  { route: '/dashboard/dashboard.js', file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  { route: '/dashboard/dashboard.css', file: 'dashboard.css', type: 'text/css; charset=utf-8' },
  // declared by the page, so the browser does not ask for /favicon.ico (a refused, audited admin call)
  { route: '/dashboard/favicon.svg', file: 'favicon.svg', type: 'image/svg+xml' },
] as const;

/**
 * The folder of the static files: `./assets` beside this module when it runs from the source
 * tree, else the source tree's `src/dashboard/assets` (compiled code runs from
 * `dist/src/dashboard/`, and tsc copies no assets).
 */
function assetsDir(): string {
  for (const relative of ['./assets/', '../../../src/dashboard/assets/']) {
    const dir = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error('dashboard: src/dashboard/assets/index.html was not found beside the installed code');
}

/**
 * Registers the dashboard on the admin app: `GET /dashboard` (the page), `/dashboard/` (a
 * redirect to it), `/dashboard/dashboard.js`, `/dashboard/dashboard.css` and `/dashboard/favicon.svg`. The files are read
 * once, here, at start-up. They hold no data and no secret, so these routes are public
 * (`{ public: true }`): the page asks for an admin token and sends it only to the admin API.
 *
 * @example
 * registerDashboard(app); // in createAdminApp, beside the /admin routes
 */
export function registerDashboard(app: FastifyInstance): void {
  const dir = assetsDir();
  const access: PublicAccess = { public: true };
  const send = (reply: FastifyReply) => reply.headers(DASHBOARD_HEADERS);
  for (const { route, file, type } of FILES) {
    const body = readFileSync(`${dir}${file}`);
    app.get(route, { config: { access } }, async (_request, reply) => send(reply).header('content-type', type).send(body));
  }
  app.get('/dashboard/', { config: { access } }, async (_request, reply) => send(reply).redirect('../dashboard', 308));
}
