/**
 * The floor of the benchmark: a bare pass-through with node:http in and undici out, the same
 * two libraries under the gateway, and nothing else (no authentication, validation, quotas,
 * logging or records). Its CPU per request, measured in the same run as the gateway's, shows
 * how much of the gateway's cost is the HTTP relay itself.
 *
 *   node dist/bench/passthrough.js UPSTREAM_ORIGIN PROVIDER_KEY   (prints "passthrough listening on URL")
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [upstream, providerKey] = process.argv.slice(2);
if (!upstream || !providerKey) {
  process.stderr.write('usage: passthrough.js UPSTREAM_ORIGIN PROVIDER_KEY\n');
  process.exit(2);
}
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });

const server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    pool.request({
      method: 'POST', path: req.url ?? '/',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${providerKey}` },
      body: Buffer.concat(chunks),
    }).then((upstreamRes) => {
      const type = upstreamRes.headers['content-type'];
      res.writeHead(upstreamRes.statusCode, typeof type === 'string' ? { 'content-type': type } : {});
      upstreamRes.body.pipe(res);
    }, () => {
      res.writeHead(502).end();
    });
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`passthrough listening on http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.close().then(() => process.exit(0));
});
