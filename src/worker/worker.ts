/** Inside a cluster worker: serve the greeting, report readiness and heartbeats, drain on request. */
import type { SendHandle } from 'node:child_process';
import cluster from 'node:cluster';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { bindFailure } from '../bind-failure.js';
import type { Config } from '../config.js';
import { ExitCode } from '../exit-codes.js';
import { errorFields, log } from '../log.js';
import { isNativeHandle, isPrimaryMessage, type WorkerMessage } from '../protocol.js';
import { closeGracefully } from './connections.js';
import { RequestStats } from './request-stats.js';
import { createGreetingServer, LISTEN_BACKLOG, type Readiness } from './server.js';

const METRICS_TIMEOUT_MS = 2_000;

/** `handle`: a listening socket's native handle, passed over the IPC channel. */
function send(message: WorkerMessage, handle?: object): void {
  // A send fails (EPIPE) when the primary died before this worker read its channel's end, as
  // after a SIGKILL while the worker was stopped. Without a callback that error is uncaught and
  // logged as fatal; the 'disconnect' handler below ends the worker once the end is read.
  if (process.connected) process.send?.(message, handle as SendHandle, undefined, ignoreSendError);
}

function ignoreSendError(): void {}

/**
 * The listening socket's native handle: what node:cluster itself passes between processes.
 * Sending the net.Server instead would make the primary accept on it.
 */
function nativeHandle(server: Server): object | undefined {
  const handle = (server as unknown as { _handle?: unknown })._handle;
  return typeof handle === 'object' && handle !== null ? handle : undefined;
}

/** Runs this process as worker `slot` of the cluster. */
export function runWorker(config: Config, slot: number, inheritListener: boolean): void {
  let readiness: Readiness = 'starting';
  const stats = new RequestStats();
  const pendingMetrics = new Map<number, (text: string | null) => void>();
  let nextRequestId = 1;

  process.on('uncaughtException', (err) => {
    log('fatal', 'uncaught exception in worker; exiting so the primary replaces it', {
      slot,
      ...errorFields(err),
    });
    process.exit(ExitCode.internal);
  });
  // A worker without its primary must not keep serving as an orphan.
  process.on('disconnect', () => process.exit(ExitCode.ok));

  /** Scrapes that come while one waits for the primary share its answer: one IPC round trip. */
  let waitingForText: Promise<string | null> | undefined;
  const askPrimary = (): Promise<string | null> =>
    new Promise<string | null>((resolve) => {
      const requestId = nextRequestId++;
      const timer = setTimeout(() => {
        pendingMetrics.delete(requestId);
        resolve(null);
      }, METRICS_TIMEOUT_MS);
      pendingMetrics.set(requestId, (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      send({ type: 'metrics-request', requestId });
    });
  const metrics = config.metrics
    ? () =>
        (waitingForText ??= askPrimary().finally(() => {
          waitingForText = undefined;
        }))
    : undefined;

  const server = createGreetingServer({
    hostname: hostname(),
    pid: process.pid,
    // maxConnections is the primary's: MAX_CONNECTIONS, or less where its limits cannot hold it.
    limits: config.http,
    stats,
    readiness: () => readiness,
    metrics,
  });

  server.on('error', (err: NodeJS.ErrnoException) => {
    if (readiness === 'starting') {
      send({
        type: 'fatal',
        code: err.code ?? 'UNKNOWN',
        message: bindFailure(err, config.host, config.port),
      });
      process.exit(ExitCode.bind);
    }
    throw err;
  });

  let heartbeat: NodeJS.Timeout | undefined;
  server.on('listening', () => {
    readiness = 'ready';
    stats.watchEventLoop();
    send({ type: 'ready' }, config.balance === 'reuseport' ? nativeHandle(server) : undefined);
    heartbeat = setInterval(
      () => send({ type: 'heartbeat', responses: [...stats.responses] }),
      config.heartbeatIntervalMs,
    );
  });

  let draining = false;
  function drain(delayMs: number, serviceStops: boolean): void {
    if (draining) {
      // Leaving for a roll or a scale-down when the whole service stops: /readyz now says so.
      if (serviceStops && readiness !== 'draining') {
        readiness = 'draining';
        log('info', 'worker draining as the service stops', { slot });
      }
      return;
    }
    draining = true;
    readiness = serviceStops ? 'draining' : 'retiring';
    log('info', 'worker draining', { slot, delayMs, serviceStops });
    // SHUTDOWN_DELAY_MS: the listener keeps serving (readiness 503) before it closes.
    setTimeout(() => {
      closeGracefully(server, config.drainTimeoutMs, () => {
        clearInterval(heartbeat);
        // The final counts, so the primary's response totals keep what this worker served after
        // the last scrape (requestId 0: no collection is waiting for it).
        send({ type: 'stats', requestId: 0, stats: stats.snapshot() });
        // Not process.exit() yet: with BALANCE=round-robin the primary may have handed this worker a
        // connection it has not read. disconnect() makes a round trip to the primary first, so such
        // connections are handed back and served elsewhere; 'disconnect' above then exits.
        if (cluster.worker && process.connected) cluster.worker.disconnect();
        else process.exit(ExitCode.ok);
      });
    }, delayMs).unref();
  }

  process.on('message', (message: unknown, handle: unknown) => {
    if (!isPrimaryMessage(message)) return;
    switch (message.type) {
      case 'drain':
        drain(message.delayMs, message.serviceStops);
        break;
      case 'listener': {
        const socket = isNativeHandle(handle) ? handle : undefined;
        if (server.listening || readiness !== 'starting') {
          // Not asked for (already listening): this process's copy must not keep the socket open.
          socket?.close();
        } else if (socket) {
          // Positional: node:net reads no backlog from an options object with a handle.
          server.listen(socket, LISTEN_BACKLOG);
        } else {
          listen();
        }
        break;
      }
      case 'collect-stats':
        send({ type: 'stats', requestId: message.requestId, stats: stats.snapshot() });
        break;
      case 'metrics-response':
        pendingMetrics.get(message.requestId)?.(message.text);
        pendingMetrics.delete(message.requestId);
        break;
      case 'connection-limit':
        // Connections already open stay; only new ones past the limit are dropped.
        server.maxConnections = message.maxConnections;
        break;
    }
  });

  function listen(): void {
    const { port, host } = config;
    if (config.balance === 'reuseport') {
      // Each slot has a SO_REUSEPORT socket and the kernel spreads connections: the primary is
      // out of the data path. exclusive keeps node:cluster from sharing a handle through the primary.
      server.listen({ port, host, reusePort: true, exclusive: true, backlog: LISTEN_BACKLOG });
    } else {
      server.listen({ port, host, backlog: LISTEN_BACKLOG });
    }
  }
  // A roll's replacement accepts on its old worker's socket: a new one would join the port's
  // group and the old one close, and Linux can drop a connection whose handshake ends on a
  // listener as it closes (even with tcp_migrate_req).
  if (inheritListener) send({ type: 'need-listener' });
  else listen();
}
