import { once } from 'node:events';
import * as net from 'node:net';

/**
 * A TCP relay in front of a server (Redis here), so a test can make the server go away and come
 * back on the same address: `down()` closes the listener and every relayed connection, `up()`
 * listens again on the same port. `hold()` stops passing the server's answers on (they wait in
 * the relay) until `release()`, so a test can keep a call pending for as long as it needs.
 * `url` is the target's URL with the relay's host and port.
 */
export async function startTcpProxy(targetUrl: string) {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const answers = new Set<net.Socket>();
  let holding = false;
  const proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(server);
    answers.add(server);
    client.on('error', () => {});
    server.on('error', () => {});
    client.on('close', () => server.destroy());
    server.on('close', () => {
      answers.delete(server);
      client.destroy();
    });
    client.pipe(server).pipe(client);
    if (holding) server.pause();
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const port = (proxy.address() as net.AddressInfo).port;
  const via = new URL(targetUrl);
  via.hostname = '127.0.0.1';
  via.port = String(port);
  const down = () => {
    proxy.close();
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    url: via.toString(),
    down,
    async up(): Promise<void> {
      proxy.listen(port, '127.0.0.1');
      await once(proxy, 'listening');
    },
    close: down,
    hold(): void {
      holding = true;
      for (const s of answers) s.pause();
    },
    release(): void {
      holding = false;
      for (const s of answers) s.resume();
    },
  };
}
