/** Connection bookkeeping the greeting server needs beyond Node's: stalled output, timed-out heads, graceful close. */
import type { Server } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import type { HttpSocket } from './fast-path.js';
import { withDate } from './replies.js';
import type { RequestStats } from './request-stats.js';

/** How long an idle connection may still send one last request after draining starts. */
const IDLE_GRACE_MS = 500;

/**
 * While draining, how long output may wait on a client without moving: as an idle connection, it
 * would otherwise hold its worker until the drain deadline and its kill (exit 5).
 */
const DRAIN_STALL_MS = 2 * IDLE_GRACE_MS;

export interface WatchedConnections {
  /** Every connection the server accepted that is not closed yet. */
  readonly open: ReadonlySet<Socket>;
  /** node:http finished a response on `socket`: its next request must come within the idle limit. */
  responseFinished(socket: Socket): void;
  /** A request came on `socket` (its head is read). */
  requestCame(socket: Socket): void;
}

/**
 * Destroys connections whose output has waited on the client without moving for `stallLimitMs`,
 * or DRAIN_STALL_MS once the listener is closed, checked every `checkEveryMs`. Node's headers
 * and request timeouts only cover reading a request: a client that pipelines requests and never
 * reads the responses pauses the parser (backpressure) and would hold its connection forever,
 * and `destroySoon()` after an error reply waits for a flush that never comes. A slow reader's
 * output moves, and is left alone. Also closes a connection node:http keeps alive that sends no
 * request within `idleLimitMs` of its last response (see idleSince).
 */
export function watchConnections(
  server: Server,
  checkEveryMs: number,
  stallLimitMs: number,
  idleLimitMs: number,
): WatchedConnections {
  const open = new Set<Socket>();
  /**
   * Sockets whose output was found waiting on the client: since when (performance.now()), and
   * where that output stood then (see progressOf).
   */
  const stalled = new Map<Socket, { since: number; progress: string }>();
  /**
   * Connections node:http keeps alive after a response, since when. Its keep-alive timeout is the
   * socket's idle timer, which any byte restarts, and bytes that begin no request (llhttp skips
   * line ends between requests) start no headers timeout either: a client sending a line end every
   * few seconds would hold its connection for good. `idleLimitMs` is as long as a client could
   * take that starts its next request within the keep-alive timeout and sends its head within
   * the headers timeout.
   */
  const idleSince = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.on('close', () => {
      open.delete(socket);
      stalled.delete(socket);
      idleSince.delete(socket);
    });
  });
  const check = (): void => {
    const now = performance.now();
    for (const [socket, since] of idleSince) {
      // A response attached: a pipelined request is being answered.
      if (now - since >= idleLimitMs && !(socket as HttpSocket)._httpMessage) socket.destroy();
    }
    // The listener is closed once the worker drains (closeGracefully).
    const limitMs = server.listening ? stallLimitMs : Math.min(stallLimitMs, DRAIN_STALL_MS);
    for (const socket of open) {
      if (socket.writableLength === 0) {
        stalled.delete(socket);
        continue;
      }
      const progress = progressOf(socket);
      const seen = stalled.get(socket);
      if (seen === undefined || progress !== seen.progress) stalled.set(socket, { since: now, progress });
      else if (now - seen.since >= limitMs) socket.destroy();
    }
  };
  let timer: NodeJS.Timeout | undefined;
  server.on('listening', () => {
    clearInterval(timer);
    timer = setInterval(check, checkEveryMs).unref();
  });
  server.on('close', () => clearInterval(timer));
  return {
    open,
    responseFinished: (socket) => {
      if (!socket.destroyed) idleSince.set(socket, performance.now());
    },
    requestCame: (socket) => {
      idleSince.delete(socket);
    },
  };
}

/**
 * Where a socket's output stands: the writes finished (bytesWritten counts those still waiting
 * too), and what libuv has left of the one in progress, which moves as the kernel takes bytes
 * even while a single large write, or a batch of replies written together, is not done.
 */
function progressOf(socket: Socket): string {
  const handle = (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle;
  return `${socket.bytesWritten - socket.writableLength}:${handle?.writeQueueSize ?? 0}`;
}

/**
 * Stops accepting and calls `onClosed` once every connection is gone. In-flight requests finish
 * (their responses carry `Connection: close` while draining). Idle connections, kept alive
 * between requests or not yet sent one, get IDLE_GRACE_MS to send a request before they are
 * closed: a client may be sending on one right now, and closing it at once would fail that
 * request. With a drain deadline below twice that, they get half the deadline instead, so an idle
 * connection alone never makes a worker miss it.
 */
export function closeGracefully(server: Server, drainTimeoutMs: number, onClosed: () => void): void {
  // net.Server's close, not http.Server's: since Node 19 that one also destroys every idle
  // connection at once, which under load reset requests already on the wire.
  NetServer.prototype.close.call(server, () => onClosed());
  const graceMs = Math.min(IDLE_GRACE_MS, Math.floor(drainTimeoutMs / 2));
  setTimeout(() => server.closeIdleConnections(), graceMs).unref();
}

/** A connection whose time ran out: count its 408, send it, and close once it is flushed. */
export function endWithTimeout(socket: Socket, stats: RequestStats, reply: string): void {
  endWithReply(socket, stats, 408, reply);
}

/** Sends a raw reply (replies.ts), counted, then closes the connection once it is written. */
export function endWithReply(socket: Socket, stats: RequestStats, status: number, reply: string): void {
  stats.countResponse(status);
  socket.end(withDate(reply));
  socket.destroySoon();
}
