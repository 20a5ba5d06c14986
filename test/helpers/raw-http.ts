import { connect } from 'node:net';

/** What came back on one raw connection. */
export interface RawExchange {
  /** Every status line the server sent on the connection, in order. */
  statuses: number[];
  /** The raw bytes read, as latin1 text. */
  text: string;
  /** True when the server closed the connection before the client gave up. */
  closedByServer: boolean;
}

/**
 * Writes `bytes` on one new connection to `baseUrl` and reads everything until the server closes
 * it or it stays quiet for `idleMs`: for requests no HTTP client would send (smuggling, bad framing).
 */
export function rawExchange(baseUrl: string, bytes: string, idleMs = 400): Promise<RawExchange> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let closedByServer = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ statuses: [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])), text, closedByServer });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, idleMs);
    };
    socket.on('connect', () => {
      socket.write(bytes);
      arm();
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      arm();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closedByServer = !done;
      finish();
    });
  });
}
