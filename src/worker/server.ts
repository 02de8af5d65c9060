/**
 * The greeting HTTP server. It knows nothing about node:cluster: a test (or the benchmark's
 * single-process baseline) starts it alone in one process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpLimits } from '../config.js';
import type { RequestStats } from './request-stats.js';

export type Readiness = 'starting' | 'ready' | 'draining';

export interface GreetingServerOptions {
  readonly hostname: string;
  readonly pid: number;
  readonly limits: HttpLimits;
  readonly stats: RequestStats;
  readonly readiness: () => Readiness;
  /** The aggregated Prometheus text for /metrics; undefined when metrics are off. */
  readonly metrics?: (() => Promise<string | null>) | undefined;
}

const TEXT = 'text/plain; charset=utf-8';
const ALLOW = 'GET, HEAD';

/** Headers every response carries, beside Node's own Date, Connection and Keep-Alive. */
const COMMON = ['X-Content-Type-Options', 'nosniff'];

/** Prebuilt responses: the body and its headers are computed once per worker, never per request. */
interface Canned {
  readonly status: number;
  readonly body: Buffer;
  readonly headers: readonly string[];
  readonly closing: readonly string[];
}

function canned(status: number, text: string, extra: readonly string[] = []): Canned {
  const body = Buffer.from(text);
  const headers = ['Content-Type', TEXT, 'Content-Length', String(body.length), ...COMMON, ...extra];
  return { status, body, headers, closing: [...headers, 'Connection', 'close'] };
}

const noStore = ['Cache-Control', 'no-store'];
const notFound = canned(404, 'Not Found\n');
const methodNotAllowed = canned(405, 'Method Not Allowed\n', ['Allow', ALLOW]);
const payloadTooLarge = canned(413, 'Payload Too Large\n');
const alive = canned(200, 'ok\n', noStore);
const ready = canned(200, 'ready\n', noStore);
const notReady = {
  starting: canned(503, 'starting\n', noStore),
  draining: canned(503, 'draining\n', noStore),
};
const metricsUnavailable = canned(503, 'metrics unavailable\n', noStore);

/** Raw replies for errors found before a request exists (parse errors, timeouts); no detail leaks. */
function rawReply(status: number, reason: string): string {
  const body = `${reason}\n`;
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${TEXT}\r\nContent-Length: ${body.length}\r\n` +
    `X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`
  );
}
const clientErrors: Readonly<Record<string, string>> = {
  HPE_HEADER_OVERFLOW: rawReply(431, 'Request Header Fields Too Large'),
  ERR_HTTP_REQUEST_TIMEOUT: rawReply(408, 'Request Timeout'),
};
const badRequest = rawReply(400, 'Bad Request');

/** A connection that has not finished a request yet may be about to send one: it gets this long. */
const FRESH_CONNECTION_GRACE_MS = 250;

interface ConnectionState {
  /** Sockets with a request being answered. */
  readonly busy: Set<Socket>;
  /** Sockets that completed at least one response. */
  readonly served: WeakSet<Socket>;
  readonly open: Set<Socket>;
}
const tracked = new WeakMap<Server, ConnectionState>();

/**
 * Stops accepting and closes the server once in-flight requests are answered. Idle kept-alive
 * connections close now; a connection that has sent nothing yet gets a short grace, since its
 * request may be on the wire (closing it would fail that request). `onClosed` runs when the
 * last connection is gone.
 */
export function closeGracefully(server: Server, onClosed: () => void): void {
  server.close(() => onClosed());
  const state = tracked.get(server);
  if (!state) {
    server.closeIdleConnections();
    return;
  }
  for (const socket of state.open) if (state.served.has(socket) && !state.busy.has(socket)) socket.destroy();
  setTimeout(() => server.closeIdleConnections(), FRESH_CONNECTION_GRACE_MS).unref();
}

/** Builds the greeting server with its limits applied; the caller listens. */
export function createGreetingServer(options: GreetingServerOptions): Server {
  const { limits, stats, readiness } = options;
  const greeting = canned(200, `Hello, Docker world from ${options.hostname} (pid ${options.pid}).\n`);

  function send(res: ServerResponse, reply: Canned, count = true): void {
    // While draining, every response closes its connection so kept-alive clients move on.
    const closing = readiness() === 'draining';
    res.writeHead(reply.status, (closing ? reply.closing : reply.headers) as string[]);
    res.end(reply.body);
    if (count) stats.countResponse(reply.status);
  }

  function route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const readable = req.method === 'GET' || req.method === 'HEAD';
    switch (path) {
      case '/':
        stats.requests++;
        send(res, readable ? greeting : methodNotAllowed);
        return;
      case '/healthz':
        send(res, readable ? alive : methodNotAllowed, false);
        return;
      case '/readyz': {
        const state = readiness();
        send(res, !readable ? methodNotAllowed : state === 'ready' ? ready : notReady[state], false);
        return;
      }
      case '/metrics':
        if (options.metrics) {
          if (readable) serveMetrics(res, options.metrics);
          else send(res, methodNotAllowed, false);
          return;
        }
        break;
    }
    stats.requests++;
    send(res, notFound);
  }

  function serveMetrics(res: ServerResponse, metrics: () => Promise<string | null>): void {
    metrics().then(
      (text) => {
        if (text === null) {
          send(res, metricsUnavailable, false);
          return;
        }
        const body = Buffer.from(text);
        res.writeHead(200, [
          'Content-Type',
          'text/plain; version=0.0.4; charset=utf-8',
          'Content-Length',
          String(body.length),
          ...COMMON,
          ...noStore,
          ...(readiness() === 'draining' ? ['Connection', 'close'] : []),
        ]);
        res.end(body);
      },
      () => send(res, metricsUnavailable, false),
    );
  }

  /** A greeting needs no body: take up to maxBodyBytes and drop it, refuse more with 413. */
  function withBody(req: IncomingMessage, res: ServerResponse): void {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limits.maxBodyBytes) {
      stats.requests++;
      send(res, payloadTooLarge);
      return;
    }
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limits.maxBodyBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        stats.requests++;
        send(res, payloadTooLarge);
        // Node would otherwise read the rest of an unbounded body to reuse the connection.
        res.on('finish', () => req.socket.destroy());
      }
    };
    const onEnd = (): void => route(req, res);
    req.on('data', onData);
    req.on('end', onEnd);
  }

  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderSize,
      // Node checks both timeouts on this interval (default 30 s, which would let a slow client
      // hold a connection long past HEADERS_TIMEOUT_MS).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      requireHostHeader: true,
      insecureHTTPParser: false,
      noDelay: true,
    },
    (req, res) => {
      const socket = req.socket;
      connections.busy.add(socket);
      res.on('finish', () => {
        connections.busy.delete(socket);
        connections.served.add(socket);
      });
      const h = req.headers;
      if (
        h['transfer-encoding'] !== undefined ||
        (h['content-length'] !== undefined && h['content-length'] !== '0')
      ) {
        withBody(req, res);
      } else {
        route(req, res);
      }
    },
  );
  const connections: ConnectionState = { busy: new Set(), served: new WeakSet(), open: new Set() };
  tracked.set(server, connections);
  server.on('connection', (socket: Socket) => {
    connections.open.add(socket);
    socket.on('close', () => {
      connections.open.delete(socket);
      connections.busy.delete(socket);
    });
  });
  server.maxConnections = limits.maxConnections;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Answer only when no response has started on this socket; otherwise just close it.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (socket.writable && !inFlight?.headersSent && err.code !== 'ECONNRESET') {
      const reply = (err.code && clientErrors[err.code]) || badRequest;
      stats.countResponse(Number(reply.slice(9, 12)));
      socket.end(reply);
    }
    socket.destroySoon();
  });
  return server;
}
