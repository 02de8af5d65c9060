/**
 * With BALANCE=reuseport every worker binds with SO_REUSEPORT, which the kernel grants beside any
 * other SO_REUSEPORT listener of the same user: a second instance on the same port would start and
 * take part of the first one's connections. A plain bind, closed at once, finds any listener there.
 */
import { createHash } from 'node:crypto';
import { createServer, type ListenOptions, type Server } from 'node:net';

/**
 * The error a plain listen on host:port gets now (EADDRINUSE, EADDRNOTAVAIL…), or undefined. The
 * probe closes before the workers bind, so two instances started together could both pass it:
 * first each takes a lock named for host:port, an abstract unix socket (per network namespace,
 * like the port; it needs no writable file), held while the process lives.
 */
export async function probeListen(host: string | undefined, port: number): Promise<Error | undefined> {
  const lock = createServer();
  // A digest of the host keeps the name within a socket path's 108 bytes whatever HOST is.
  const name = createHash('sha256')
    .update(`${host ?? '*'}:${port}`)
    .digest('hex')
    .slice(0, 32);
  try {
    await listen(lock, { path: `\0myservice:${port}:${name}` });
    lock.unref();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      return Object.assign(
        new Error(`another instance of myservice is starting or serving on port ${port}`),
        {
          code: 'EADDRINUSE',
        },
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
