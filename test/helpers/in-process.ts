/** The greeting server alone in the test's own process, on a free port: no cluster, no primary. */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type HttpLimits, parseConfig } from '../../src/config.js';
import { RequestStats } from '../../src/worker/request-stats.js';
import { createGreetingServer, type Readiness } from '../../src/worker/server.js';

export interface InProcessOptions {
  /** The defaults' when left out. */
  readonly limits?: HttpLimits;
  /** The primary's side of /metrics; without it, /metrics is 404. */
  readonly metrics?: () => Promise<string | null>;
  readonly readiness?: () => Readiness;
  /** test-host when left out. */
  readonly hostname?: string;
}

export interface InProcess {
  readonly server: Server;
  readonly port: number;
  readonly stats: RequestStats;
}

/** Starts a greeting server for pid 4242 on 127.0.0.1. */
export async function listenInProcess(options: InProcessOptions = {}): Promise<InProcess> {
  const stats = new RequestStats();
  const server = createGreetingServer({
    hostname: options.hostname ?? 'test-host',
    pid: 4242,
    limits: options.limits ?? parseConfig({}).http,
    stats,
    readiness: options.readiness ?? (() => 'ready'),
    metrics: options.metrics,
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, stats };
}

/** Closes the server and every connection it still has. */
export async function closeInProcess(server: Server | undefined): Promise<void> {
  if (!server?.listening) return;
  server.close();
  server.closeAllConnections();
  await once(server, 'close');
}
