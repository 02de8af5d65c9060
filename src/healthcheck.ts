/** `node dist/src/main.js --healthcheck`: Docker's HEALTHCHECK without curl. Exit 0 when /readyz says 200. */
import { request } from 'node:http';
import type { Config } from './config.js';

const TIMEOUT_MS = 2_000;

/** Asks the local service's /readyz; resolves to the exit code Docker expects (0 healthy, 1 not). */
export function runHealthcheck(config: Config): Promise<number> {
  // A wildcard bind answers on loopback; a specific HOST only on that address.
  const host =
    config.host === undefined || config.host === '0.0.0.0' || config.host === '::'
      ? '127.0.0.1'
      : config.host;
  return new Promise((resolve) => {
    const req = request({ host, port: config.port, path: '/readyz', agent: false }, (res) => {
      clearTimeout(deadline);
      res.resume();
      process.stdout.write(`readyz: ${res.statusCode}\n`);
      resolve(res.statusCode === 200 ? 0 : 1);
    });
    // One deadline for the whole answer (the socket timeout would restart with every byte).
    const deadline = setTimeout(
      () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)),
      TIMEOUT_MS,
    );
    req.on('error', (err) => {
      clearTimeout(deadline);
      process.stdout.write(`readyz: ${err.message}\n`);
      resolve(1);
    });
    req.end();
  });
}
