/**
 * With BALANCE=reuseport every worker binds with SO_REUSEPORT, which the kernel grants beside any
 * other SO_REUSEPORT listener of the same user: a second instance on the same port would start and
 * take part of the first one's connections. A plain bind, closed at once, finds any listener there.
 */
import { createServer, type ListenOptions, type Server } from 'node:net';

/**
 * The error a plain listen on host:port gets now (EADDRINUSE, EADDRNOTAVAIL…), or undefined. The
 * probe closes before the workers bind, so two instances started together could both pass it:
 * first each takes a lock named for the port, an abstract unix socket (per network namespace,
 * like the port; it needs no writable file), held while the process lives. For the port, not
 * host:port: 127.0.0.1 and 127.1, or 0.0.0.0 and 127.0.0.1, are different names for listeners that
 * share or shadow each other's connections. Held while running, the lock also covers a moment when
 * every worker is down (a crash), when the probe alone would find the port free. Any local
 * process may take that name: the message says so rather than blame an instance that may not exist.
 */
export async function probeListen(host: string | undefined, port: number): Promise<Error | undefined> {
  const lock = createServer();
  try {
    await listen(lock, { path: `\0myservice:${port}` });
    lock.unref();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      return Object.assign(
        new Error(
          `another instance of myservice is starting or serving on port ${port} (one per port in a network namespace, whatever its HOST), or another process holds its lock, the abstract unix socket @myservice:${port}`,
        ),
        { code: 'EADDRINUSE' },
      );
    }
    // No lock to be had here: the probe alone still finds an instance that already listens.
  }
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
