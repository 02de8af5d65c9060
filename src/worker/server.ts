/**
 * The greeting HTTP server. It knows nothing about node:cluster: a test (or the benchmark's
 * single-process baseline) starts it alone in one process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpLimits } from '../config.js';
import { endWithTimeout, watchConnections } from './connections.js';
import { type HttpSocket, KEEP_ALIVE_BUFFER_MS, serveGreetingsFast } from './fast-path.js';
import {
  alive,
  badRequest,
  badRequestReply,
  type Canned,
  COMMON,
  canned,
  clientErrors,
  expectationFailed,
  greetingText,
  methodNotAllowed,
  metricsUnavailable,
  noStore,
  notFound,
  notReady,
  payloadTooLarge,
  ready,
  withDate,
} from './replies.js';
import type { RequestStats } from './request-stats.js';
import { requestPath } from './request-target.js';

/**
 * 'retiring': this worker drains while the service goes on (a roll, a scale-down), so /readyz
 * still answers 200; 'draining': the service stops, and /readyz answers 503.
 */
export type Readiness = 'starting' | 'ready' | 'retiring' | 'draining';

/**
 * The accept queue asked of listen(): the kernel caps it at net.core.somaxconn (4096 by default
 * since Linux 5.4), so this is the most the host allows. With Node's default, 511, clients that
 * connect while the workers are busy overflow the queue sooner: `npm run bench:burst`.
 */
export const LISTEN_BACKLOG = 65_535;

/** Scrapes one connection may pipeline ahead of their answers; no Prometheus client pipelines. */
const MAX_WAITING_SCRAPES = 8;

export interface GreetingServerOptions {
  readonly hostname: string;
  readonly pid: number;
  readonly limits: HttpLimits;
  readonly stats: RequestStats;
  readonly readiness: () => Readiness;
  /** The aggregated Prometheus text for /metrics; undefined when metrics are off. */
  readonly metrics?: (() => Promise<string | null>) | undefined;
}

/** Builds the greeting server with its limits applied; the caller listens. */
export function createGreetingServer(options: GreetingServerOptions): Server {
  const { limits, stats, readiness } = options;
  const greeting = canned(200, greetingText(options.hostname, options.pid));
  // KEEP_ALIVE_TIMEOUT_MS=0 turns keep-alive off (as nginx's keepalive_timeout 0): Node would
  // instead keep an idle connection open with no timeout at all.
  const keepAlive = limits.keepAliveTimeoutMs > 0;

  /** While draining, every response closes its connection so kept-alive clients move on. */
  const closesConnection = (): boolean => {
    const state = readiness();
    return !keepAlive || state === 'draining' || state === 'retiring';
  };

  /**
   * After a request it reads as an upgrade (Upgrade, and upgrade in Connection), llhttp parses
   * nothing more of what came in the same read: with no upgrade handler, a request pipelined
   * behind it would never be answered, on a connection said to be kept alive. Its reply closes
   * the connection, which tells a client to send such requests again on another. The cost: a
   * client that offers h2c on every request (curl --http2 on http://) gets no connection reuse.
   * llhttp reads Proxy-Connection as Connection here.
   */
  const closesAfter = (req: IncomingMessage): boolean =>
    closesConnection() ||
    (req.headers.upgrade !== undefined &&
      /(?:^|,)\s*upgrade\s*(?:,|$)/i.test(
        `${req.headers.connection ?? ''},${req.headers['proxy-connection'] ?? ''}`,
      ));

  function send(res: ServerResponse, reply: Canned, count = true): void {
    res.writeHead(reply.status, (closesAfter(res.req) ? reply.closing : reply.headers) as string[]);
    res.end(reply.body);
    if (count) stats.countResponse(reply.status);
  }

  type Answer = (req: IncomingMessage, res: ServerResponse) => void;
  /** Probes and the scrape: their GET and HEAD are not requests to the service, so not counted. */
  const probes = new Map<string, Answer>([
    ['/healthz', (_req, res) => send(res, alive, false)],
    [
      '/readyz',
      (_req, res) => {
        const state = readiness();
        send(res, state === 'ready' || state === 'retiring' ? ready : notReady[state], false);
      },
    ],
  ]);
  const { metrics } = options;
  if (metrics) probes.set('/metrics', (req, res) => scrape(req, res, metrics));

  const readable = (req: IncomingMessage): boolean => req.method === 'GET' || req.method === 'HEAD';
  /** A probe's GET or HEAD: no request to the service, and none of its responses counted. */
  const isProbe = (req: IncomingMessage, path: string | undefined): boolean =>
    path !== undefined && readable(req) && probes.has(path);

  function route(req: IncomingMessage, res: ServerResponse, path: string): void {
    const probe = probes.get(path);
    if (readable(req) && probe) {
      probe(req, res);
      return;
    }
    // Every other answer is to a request, counted: the greeting, a method refused on a path that
    // exists (a probe's included: a POST is no probe), an unknown path.
    stats.requests++;
    send(res, path !== '/' && !probe ? notFound : readable(req) ? greeting : methodNotAllowed);
  }

  /** Scrapes each connection has waiting for their text. */
  const waitingScrapes = new WeakMap<Socket, number>();

  /**
   * node:http stops reading a client that pipelines requests once the responses it holds for it
   * pass the socket's high-water mark, but a scrape's response holds nothing until its text
   * comes from the primary: a client pipelining scrapes without reading would have the parser
   * take request after request, without bound. Past MAX_WAITING_SCRAPES it is cut.
   */
  function scrape(req: IncomingMessage, res: ServerResponse, metrics: () => Promise<string | null>): void {
    const socket = req.socket;
    const waiting = waitingScrapes.get(socket) ?? 0;
    if (waiting >= MAX_WAITING_SCRAPES) {
      stats.pipeliningFloods++;
      socket.destroy();
      return;
    }
    waitingScrapes.set(socket, waiting + 1);
    const done = (): void => {
      waitingScrapes.set(socket, (waitingScrapes.get(socket) ?? 1) - 1);
    };
    metrics().then(
      (text) => {
        done();
        if (text === null) {
          send(res, metricsUnavailable, false);
          return;
        }
        res.writeHead(200, [
          'Content-Type',
          'text/plain; version=0.0.4; charset=utf-8',
          'Content-Length',
          String(Buffer.byteLength(text)),
          ...COMMON,
          ...noStore,
          ...(closesAfter(req) ? ['Connection', 'close'] : []),
        ]);
        // A string like every other body here, so Node's write path sees one body type.
        res.end(text);
      },
      () => {
        done();
        send(res, metricsUnavailable, false);
      },
    );
  }

  const declaresTooMuch = (req: IncomingMessage): boolean =>
    Number(req.headers['content-length'] ?? 0) > limits.maxBodyBytes;

  /** A probe's 413 is counted no more than its 200 would be. */
  function refuseBody(res: ServerResponse, path: string | undefined): void {
    const probe = isProbe(res.req, path);
    if (!probe) stats.requests++;
    send(res, payloadTooLarge, !probe);
  }

  /**
   * A greeting needs no body: take up to maxBodyBytes and drop it, refuse more with 413. The 413
   * closes the connection: Node would otherwise read the rest of an unbounded body to reuse it.
   */
  function withBody(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (declaresTooMuch(req)) {
      refuseBody(res, path);
      return;
    }
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limits.maxBodyBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        refuseBody(res, path);
      }
    };
    const onEnd = (): void => route(req, res, path);
    req.on('data', onData);
    req.on('end', onEnd);
  }

  /** `path` from requestPath(): undefined gets 400 here, not Node's, so it carries our headers. */
  function answer(req: IncomingMessage, res: ServerResponse, path: string | undefined): void {
    const socket = req.socket;
    connections.requestCame(socket);
    res.once('finish', () => connections.responseFinished(socket));
    const h = req.headers;
    if (path === undefined) {
      stats.requests++;
      send(res, badRequestReply);
    } else if (
      h['transfer-encoding'] !== undefined ||
      (h['content-length'] !== undefined && h['content-length'] !== '0')
    ) {
      withBody(req, res, path);
    } else {
      route(req, res, path);
    }
  }

  // Node checks both timeouts on this interval (default 30 s, which would let a slow client hold
  // a connection long past HEADERS_TIMEOUT_MS); stalled output is checked on it too.
  const checkEveryMs = Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)));
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderSize,
      connectionsCheckingInterval: checkEveryMs,
      requireHostHeader: false,
      insecureHTTPParser: false,
      noDelay: true,
    },
    (req, res) => answer(req, res, requestPath(req)),
  );
  // A client that half-closes after its request (`printf … | nc -N`) still gets the answer: by
  // default node:http aborts a request whose answer is pending (/metrics) at the client's FIN.
  // Undocumented, kept in Node for userland servers; a hostile-input test pins it.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  serveGreetingsFast(server, {
    limits,
    stats,
    body: greeting.body,
    headers: greeting.headers,
    closesConnection,
    timeoutReply: clientErrors.ERR_HTTP_REQUEST_TIMEOUT as string,
  });
  const connections = watchConnections(
    server,
    checkEveryMs,
    limits.requestTimeoutMs,
    limits.keepAliveTimeoutMs + KEEP_ALIVE_BUFFER_MS + limits.headersTimeoutMs,
  );
  const open = connections.open;
  // Draining closes idle connections after a grace; node:http's idle list leaves out a connection
  // in the middle of a request head, which would otherwise hold the drain until the headers
  // timeout (10 s by default, past the 8 s drain deadline: one slow client forced every stop).
  // Past the grace it gets the headers timeout's 408. One with a whole head has its response
  // attached, and finishes.
  //
  // node:http also counts as idle a connection whose reply is ended but still waits in the worker
  // for a slow reader, and destroys it, reply and all. Such a connection is hidden from it and
  // closed once the reply has gone.
  const closeIdle = server.closeIdleConnections.bind(server);
  const stillWriting = { finished: false } as ServerResponse;
  const awaited = new WeakSet<ServerResponse>();
  server.closeIdleConnections = () => {
    const flushing: [HttpSocket, ServerResponse][] = [];
    for (const socket of open as Set<HttpSocket>) {
      const res = socket._httpMessage;
      if (res?.writableEnded && !res.writableFinished) flushing.push([socket, res]);
    }
    for (const [socket] of flushing) socket._httpMessage = stillWriting;
    try {
      closeIdle();
    } finally {
      for (const [socket, res] of flushing) socket._httpMessage = res;
    }
    for (const [, res] of flushing) {
      if (awaited.has(res)) continue;
      awaited.add(res);
      // After node:http's own 'finish' listener, which hands the connection on or leaves it idle.
      res.once('finish', () => server.closeIdleConnections());
    }
    for (const socket of open) {
      if ((socket as HttpSocket)._httpMessage || !socket.writable) continue;
      if (socket.bytesRead > 0)
        endWithTimeout(socket, stats, clientErrors.ERR_HTTP_REQUEST_TIMEOUT as string);
      else socket.destroySoon();
    }
  };

  // Node would send 100 Continue by itself, inviting a body we are about to refuse.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const path = requestPath(req);
    if (declaresTooMuch(req)) {
      refuseBody(res, path);
      return;
    }
    // Only HTTP/1.1 gets here; a request to refuse gets its 400 without a 100 first.
    if (path !== undefined) {
      res.writeContinue();
      if (!isProbe(req, path)) stats.countResponse(100);
    }
    answer(req, res, path);
  });
  // Node's own 417 carries none of our headers.
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    send(res, expectationFailed);
  });

  // Beyond maxConnections Node closes each new connection at once, unanswered. In cluster
  // round-robin mode a worker would instead refuse it and the primary hand it to the next worker,
  // which with every worker full is an endless IPC ping-pong at full CPU (internal/cluster/child.js
  // onconnection); dropMaxConnection makes the worker accept and close it, as under reuseport.
  server.maxConnections = limits.maxConnections;
  stats.limitOf = server;
  (server as Server & { dropMaxConnection: boolean }).dropMaxConnection = true;
  server.on('drop', () => {
    stats.droppedConnections++;
  });
  /** Sockets given an error reply, or waiting to be: llhttp repeats its error at every later read. */
  const refused = new WeakSet<Socket>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (refused.has(socket)) return;
    refused.add(socket);
    if (err.code === 'ECONNRESET') socket.destroy();
    else refuse(socket as HttpSocket, clientErrors[err.code ?? ''] || badRequest);
  });

  /**
   * Sends `reply` for an error found before a request exists, and closes. Responses to requests
   * read before the error go first (RFC 9112 §9.3.2): /metrics may still be waiting for its text,
   * and node:http holds later responses until the one attached to the socket finishes.
   */
  function refuse(socket: HttpSocket, reply: string): void {
    const inFlight = socket._httpMessage;
    if (inFlight?.req.complete) {
      inFlight.once('finish', () => refuse(socket, reply));
      return;
    }
    // Otherwise the error is in the request being read: answer it unless its response has started.
    if (socket.writable && !inFlight?.headersSent) {
      // A request whose head was read and whose body was not (invalid chunking, too slow) was
      // routed, so it counts as one, as its 413 for too much body would; a probe's, as neither.
      const probe = inFlight ? isProbe(inFlight.req, requestPath(inFlight.req)) : false;
      if (inFlight && !probe) stats.requests++;
      if (!probe) stats.countResponse(Number(reply.slice(9, 12)));
      socket.end(withDate(reply));
    }
    socket.destroySoon();
  }
  return server;
}
