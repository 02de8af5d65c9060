/**
 * With BALANCE=reuseport every worker binds with SO_REUSEPORT, which the kernel grants beside any
 * other SO_REUSEPORT listener of the same user: a second instance on the same port would start and
 * take part of the first one's connections. A plain bind, closed at once, finds any listener there.
 */
import { createServer } from 'node:net';

/** The error a plain listen on host:port gets now (EADDRINUSE, EADDRNOTAVAIL…), or undefined. */
export async function probeListen(host: string | undefined, port: number): Promise<Error | undefined> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, resolve);
    });
  } catch (err) {
    return err as Error;
  }
  await new Promise((resolve) => server.close(resolve));
  return undefined;
}
