/**
 * The greeting HTTP server. It knows nothing about node:cluster: a test (or the benchmark's
 * single-process baseline) starts it alone in one process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpLimits } from '../config.js';
import { cutStalledConnections } from './connections.js';
import { type HttpSocket, isValidHost, serveGreetingsFast } from './fast-path.js';
import type { RequestStats } from './request-stats.js';

export type Readiness = 'starting' | 'ready' | 'draining';

/**
 * The accept queue asked of listen(): the kernel caps it at net.core.somaxconn (4096 by default
 * since Linux 5.4), so this is the most the host allows. With Node's default, 511, clients that
 * connect while the workers are busy overflow the queue sooner: `npm run bench:burst`.
 */
export const LISTEN_BACKLOG = 65_535;

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
  /**
   * The body as a string, not a Buffer: res.end(string) joins it to the header block in one
   * write, where a Buffer goes out as a two-chunk writev (measured: 20–28% less server CPU per
   * keep-alive request).
   */
  readonly body: string;
  readonly headers: readonly string[];
  readonly closing: readonly string[];
}

/** `close`: the reply always ends its connection (the request may have left unread bytes behind). */
function canned(status: number, text: string, extra: readonly string[] = [], close = false): Canned {
  const headers = [
    'Content-Type',
    TEXT,
    'Content-Length',
    String(Buffer.byteLength(text)),
    ...COMMON,
    ...extra,
  ];
  const closing = [...headers, 'Connection', 'close'];
  return { status, body: text, headers: close ? closing : headers, closing };
}

const noStore = ['Cache-Control', 'no-store'];
const notFound = canned(404, 'Not Found\n');
const methodNotAllowed = canned(405, 'Method Not Allowed\n', ['Allow', ALLOW]);
const payloadTooLarge = canned(413, 'Payload Too Large\n', [], true);
const badRequestReply = canned(400, 'Bad Request\n', [], true);
const expectationFailed = canned(417, 'Expectation Failed\n', [], true);
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

/**
 * The scheme and authority of an absolute-form target (RFC 9112 §3.2.2), which a server must
 * accept; the authority ends at the path, the query or a fragment.
 */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)/i;

/**
 * The path an origin-form or absolute-form target names, without its query; undefined for an
 * `http` or `https` target whose authority is invalid or has no host (RFC 9110 §4.2.1). Other
 * targets (`*`, other schemes) come back whole and are not found.
 */
function targetPath(url: string): string | undefined {
  let target = url;
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    const absolute = ABSOLUTE_FORM.exec(target);
    if (absolute !== null) {
      const authority = absolute[1] as string;
      if (authority === '' || authority[0] === ':' || !isValidHost(authority)) return undefined;
      target = target.slice(absolute[0].length);
      if (target.charCodeAt(0) !== 0x2f) target = `/${target}`;
    }
  }
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * The path a request asks for, or undefined for one to refuse with 400 whatever it asks, before
 * reading any body: not HTTP/1 (llhttp accepts `GET /` as HTTP/0.9 and `HTTP/2.0` request
 * lines); HTTP/1.1 without Host, or any request with more than one Host line or an invalid one
 * (RFC 9112 §3.2: node:http keeps the first Host and checks none); HTTP/1.0 with
 * Transfer-Encoding, whose framing must be treated as faulty (RFC 9112 §6.1); an absolute-form
 * target with a bad authority.
 */
function requestPath(req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor !== 1) return undefined;
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return undefined;
  const raw = req.rawHeaders;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== undefined) return undefined;
      host = raw[i + 1] as string;
    }
  }
  const hostValid = host === undefined ? req.httpVersionMinor !== 1 : isValidHost(host.trim());
  return hostValid ? targetPath(req.url ?? '/') : undefined;
}

/** Builds the greeting server with its limits applied; the caller listens. */
export function createGreetingServer(options: GreetingServerOptions): Server {
  const { limits, stats, readiness } = options;
  const greeting = canned(200, `Hello, Docker world from ${options.hostname} (pid ${options.pid}).\n`);
  // KEEP_ALIVE_TIMEOUT_MS=0 turns keep-alive off (as nginx's keepalive_timeout 0): Node would
  // instead keep an idle connection open with no timeout at all.
  const keepAlive = limits.keepAliveTimeoutMs > 0;

  /** While draining, every response closes its connection so kept-alive clients move on. */
  const closesConnection = (): boolean => !keepAlive || readiness() === 'draining';

  function send(res: ServerResponse, reply: Canned, count = true): void {
    res.writeHead(reply.status, (closesConnection() ? reply.closing : reply.headers) as string[]);
    res.end(reply.body);
    if (count) stats.countResponse(reply.status);
  }

  function route(req: IncomingMessage, res: ServerResponse, path: string): void {
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
        res.writeHead(200, [
          'Content-Type',
          'text/plain; version=0.0.4; charset=utf-8',
          'Content-Length',
          String(Buffer.byteLength(text)),
          ...COMMON,
          ...noStore,
          ...(closesConnection() ? ['Connection', 'close'] : []),
        ]);
        // A string like every other body here, so Node's write path sees one body type.
        res.end(text);
      },
      () => send(res, metricsUnavailable, false),
    );
  }

  const declaresTooMuch = (req: IncomingMessage): boolean =>
    Number(req.headers['content-length'] ?? 0) > limits.maxBodyBytes;

  function refuseBody(res: ServerResponse): void {
    stats.requests++;
    send(res, payloadTooLarge);
  }

  /**
   * A greeting needs no body: take up to maxBodyBytes and drop it, refuse more with 413. The 413
   * closes the connection: Node would otherwise read the rest of an unbounded body to reuse it.
   */
  function withBody(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (declaresTooMuch(req)) {
      refuseBody(res);
      return;
    }
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limits.maxBodyBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        refuseBody(res);
      }
    };
    const onEnd = (): void => route(req, res, path);
    req.on('data', onData);
    req.on('end', onEnd);
  }

  /** `path` from requestPath(): undefined gets 400 here, not Node's, so it carries our headers. */
  function answer(req: IncomingMessage, res: ServerResponse, path: string | undefined): void {
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
  serveGreetingsFast(server, {
    limits,
    stats,
    body: greeting.body,
    headers: greeting.headers,
    closesConnection,
    timeoutReply: clientErrors.ERR_HTTP_REQUEST_TIMEOUT as string,
  });
  cutStalledConnections(server, checkEveryMs, limits.requestTimeoutMs);

  // Node would send 100 Continue by itself, inviting a body we are about to refuse.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (declaresTooMuch(req)) {
      refuseBody(res);
      return;
    }
    // Only HTTP/1.1 gets here; a request to refuse gets its 400 without a 100 first.
    const path = requestPath(req);
    if (path !== undefined) res.writeContinue();
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
  (server as Server & { dropMaxConnection: boolean }).dropMaxConnection = true;
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
      stats.countResponse(Number(reply.slice(9, 12)));
      socket.end(reply);
    }
    socket.destroySoon();
  }
  return server;
}
