/** `node dist/src/main.js --healthcheck`: Docker's HEALTHCHECK without curl. Exit 0 when /readyz says 200. */
import { request } from 'node:http';
import { isIPv6 } from 'node:net';
import type { Config } from './config.js';

const TIMEOUT_MS = 2_000;

/**
 * Where to ask: a wildcard bind answers on loopback, a specific HOST only on that address. The
 * wildcard is recognised in every spelling listen() takes (`::0`, `0:0:0:0:0:0:0:0`, `0`), by the
 * address the URL parser makes of it.
 */
export function healthcheckHost(host: string | undefined): string {
  if (host === undefined) return '127.0.0.1';
  // A name the URL parser refuses (`1.2.3.4.5`) is no wildcard either.
  const hostname = URL.parse(`http://${isIPv6(host) ? `[${host}]` : host}/`)?.hostname;
  return hostname === '0.0.0.0' || hostname === '[::]' ? '127.0.0.1' : host;
}

/** Asks the local service's /readyz; resolves to the exit code Docker expects (0 healthy, 1 not). */
export function runHealthcheck(config: Config): Promise<number> {
  const host = healthcheckHost(config.host);
  return new Promise((resolve) => {
    // Host names the service, not the address asked: an IPv6 address with a zone (fe80::1%eth0)
    // makes no valid Host header, and the service would answer 400.
    const headers = { host: `localhost:${config.port}` };
    const req = request({ host, port: config.port, path: '/readyz', headers, agent: false }, (res) => {
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
