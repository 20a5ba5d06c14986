/**
 * The floors of the benchmark.
 *
 * HTTP mode: a bare pass-through with node:http in and undici out, the same two libraries under
 * the gateway, and nothing else (no authentication, validation, quotas, logging or records). Its
 * CPU per request, measured in the same run as the gateway's, shows how much of the gateway's
 * cost is the HTTP relay itself.
 *
 * TCP mode (`--tcp`): a byte relay, one upstream connection per client connection, no HTTP at
 * all. At concurrency 1 it shows what the extra process in the path costs on this machine by
 * itself (two more hops between processes, each a wake-up), before any HTTP is parsed.
 *
 *   node dist/bench/passthrough.js UPSTREAM_ORIGIN PROVIDER_KEY [--tcp]   (prints "passthrough listening on URL")
 */
import { createServer } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { Pool } from 'undici';

const [upstream, providerKey, mode] = process.argv.slice(2);
if (!upstream || !providerKey || (mode !== undefined && mode !== '--tcp')) {
  process.stderr.write('usage: passthrough.js UPSTREAM_ORIGIN PROVIDER_KEY [--tcp]\n');
  process.exit(2);
}
if (mode === '--tcp') relayBytes(new URL(upstream));
else relayHttp(upstream, providerKey);

function listening(server: TcpServer): void {
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    process.stdout.write(`passthrough listening on http://127.0.0.1:${port}\n`);
  });
}

function relayBytes(target: URL): void {
  const server = createTcpServer({ noDelay: true }, (client) => {
    const upstreamSocket = connect({ host: target.hostname, port: Number(target.port), noDelay: true });
    client.pipe(upstreamSocket).on('error', () => client.destroy());
    upstreamSocket.pipe(client).on('error', () => upstreamSocket.destroy());
    client.on('error', () => upstreamSocket.destroy());
    upstreamSocket.on('error', () => client.destroy());
    client.on('close', () => upstreamSocket.destroy());
    upstreamSocket.on('close', () => client.destroy());
  });
  listening(server);
  process.on('SIGTERM', () => {
    server.close();
    process.exit(0);
  });
}

function relayHttp(upstream: string, providerKey: string): void {
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
  listening(server);
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    void pool.close().then(() => process.exit(0));
  });
}
