/**
 * With BALANCE=reuseport every worker binds with SO_REUSEPORT, which the kernel grants beside any
 * other SO_REUSEPORT listener of the same user: a second instance on the same port would start and
 * take part of the first one's connections. A plain bind, closed at once, finds any listener there.
 */
import { createServer, type ListenOptions, type Server } from 'node:net';

/**
 * The error a plain listen on host:port gets now (EADDRINUSE, EADDRNOTAVAIL…), or undefined. The
 * probe closes before the workers bind, so two instances started together could both pass it:
 * first each takes a lock named for host:port, an abstract unix socket (per network namespace,
 * like the port; it needs no writable file), held while the process lives.
 */
export async function probeListen(host: string | undefined, port: number): Promise<Error | undefined> {
  const lock = createServer();
  try {
    await listen(lock, { path: `\0myservice:${host ?? '*'}:${port}` });
  } catch {
    return Object.assign(new Error(`another instance of myservice is starting or serving on port ${port}`), {
      code: 'EADDRINUSE',
    });
  }
  lock.unref();
  const server = createServer();
  try {
    await listen(server, { host, port });
  } catch (err) {
    return err as Error;
  }
  await new Promise((resolve) => server.close(resolve));
  return undefined;
}

function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, resolve);
  });
}
