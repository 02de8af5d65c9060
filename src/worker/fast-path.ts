/**
 * The greeting's hot path on raw sockets. node:http spends about a third of a worker's time on a
 * kept-alive request in its parser bindings and stream objects (IncomingMessage, ServerResponse),
 * which a fixed greeting does not need. A plain `GET /` is answered here with prebuilt bytes,
 * identical to what node:http sends. At the first chunk that is anything else (another path or
 * method, a body, Expect, Upgrade, a request split over two reads, pipelining, anything
 * malformed; not up to 4 bytes of line ends left after an answer, skipped as node:http skips them)
 * the connection goes to node:http with that chunk put back, so every error, limit and
 * timeout is still node:http's, except that the headers timeout of a connection not answered yet
 * still counts from its opening, and that a read holding more than MAX_HEADS_PER_READ request
 * lines is never parsed.
 */
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpLimits } from '../config.js';
import { endWithReply, endWithTimeout } from './connections.js';
import { tooManyPipelined } from './replies.js';
import { type FastRequest, recognizeGreetingRequest } from './request-head.js';
import type { RequestStats } from './request-stats.js';

/** node:http's socket, with the response it is writing (or about to write) attached. */
export type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

export interface FastPathOptions {
  readonly limits: HttpLimits;
  readonly stats: RequestStats;
  /** The greeting's body and header pairs, as node:http would send them. */
  readonly body: string;
  readonly headers: readonly string[];
  /** True while every response must close its connection (draining, or keep-alive off). */
  readonly closesConnection: () => boolean;
  /** The reply for a connection that sent no request within the headers timeout. */
  readonly timeoutReply: string;
}

/**
 * node:http keeps an idle connection this long past its keep-alive timeout, so that a client
 * timing its reuse by the advertised `Keep-Alive: timeout` does not race the close.
 */
export const KEEP_ALIVE_BUFFER_MS = 1_000;

/**
 * Requests one read may hold for node:http, counted by their request lines. Its parser answers
 * every request of a read before the event loop turns, holding each one's request and response
 * objects until written, and only then pauses a client that does not read: a read of 64 KiB holds
 * some 2,400 `GET /`, and 1,000 connections flooding so got both workers of a 384 MiB cgroup
 * OOM-killed. No browser or proxy pipelines this deep.
 */
export const MAX_HEADS_PER_READ = 64;

const VERSION = Buffer.from(' HTTP/1.');

/**
 * Bytes of line ends (CR or LF) skipped after each answer: an extra CRLF or two that a client
 * ends a request with, in one read or split. RFC 9112 (2.2) asks a server to ignore at least one
 * such empty line before a request line, as llhttp does.
 */
const STRAY_LINE_END_BYTES = 4;

/** Whether `chunk` is only line ends, and no more than `most` bytes of them. */
function isStrayLineEnds(chunk: Buffer, most: number): boolean {
  if (chunk.length > most) return false;
  for (const byte of chunk) if (byte !== 0x0d && byte !== 0x0a) return false;
  return true;
}

/**
 * Whether `chunk` holds more than MAX_HEADS_PER_READ request lines: " HTTP/1.x" and the line end.
 * Not blank lines, which a body has too (every chunked one ends in one, a form has one per part).
 */
function floods(chunk: Buffer): boolean {
  let heads = 0;
  for (let at = chunk.indexOf(VERSION); at !== -1; at = chunk.indexOf(VERSION, at + VERSION.length)) {
    const end = at + VERSION.length + 1;
    if (chunk[end] === 0x0d && chunk[end + 1] === 0x0a && ++heads > MAX_HEADS_PER_READ) return true;
  }
  return false;
}

/**
 * Puts a check in front of node:http's reading of `socket`, just handed to it: a read that
 * floods is not parsed but refused (refuseFlood), and nothing after it is read. The price:
 * node:http reads the socket through JavaScript instead of straight into its parser, about 1.3x
 * the CPU per request it serves (measured on /healthz); the greeting's fast path reads through
 * JavaScript anyway.
 */
function guardPipelining(socket: Socket, stats: RequestStats): void {
  const listeners = socket.listeners('data') as ((chunk: Buffer) => void)[];
  const nodeOnData = listeners.at(-1);
  if (nodeOnData === undefined) return;
  socket.removeListener('data', nodeOnData);
  let cut = false;
  // Adding a 'data' listener makes node:http stop reading the socket in C++ (its unconsume).
  socket.on('data', (chunk: Buffer) => {
    if (cut) return;
    if (!floods(chunk)) {
      nodeOnData(chunk);
      return;
    }
    cut = true;
    refuseFlood(socket, stats);
  });
  // A paused net.Socket still reads ahead into JS up to its high-water mark. When node:http pauses
  // a client that does not read its answers, what it sends next must wait in the kernel, as it
  // does for a socket node:http reads in C++: stop the handle, and read nothing ahead. Flowing,
  // each read is handed on as it comes, so the mark changes nothing else.
  (socket as unknown as { _readableState: { highWaterMark: number } })._readableState.highWaterMark = 0;
  socket.on('pause', () => {
    const handle = (socket as unknown as { _handle?: ReadingHandle | null })._handle;
    if (handle?.reading) {
      handle.reading = false;
      handle.readStop();
    }
  });
}

/**
 * 429 and close, where nothing is being answered on the connection: a client pipelining deeper than
 * MAX_HEADS_PER_READ learns why. With a response under way a reply would be cut into it: closed.
 */
function refuseFlood(socket: Socket, stats: RequestStats): void {
  stats.pipeliningFloods++;
  if ((socket as HttpSocket)._httpMessage || socket.writableLength > 0) socket.destroy();
  else endWithReply(socket, stats, 429, tooManyPipelined);
}

/** libuv's stream handle behind a net.Socket, as net.Socket itself drives it. */
interface ReadingHandle {
  reading: boolean;
  readStop(): number;
}

/** Prebuilt greeting responses, rebuilt when the second in their Date header changes. */
class GreetingBytes {
  #second = -1;
  #keepAlive = Buffer.alloc(0);
  #close = Buffer.alloc(0);
  readonly #body: string;
  readonly #head: string;
  readonly #keepAliveHeaders: string;

  constructor(body: string, headers: readonly string[], keepAliveTimeoutMs: number) {
    this.#body = body;
    let head = 'HTTP/1.1 200 OK\r\n';
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.#head = head;
    // node:http's own Keep-Alive header: whole seconds, rounded down.
    this.#keepAliveHeaders = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n`;
  }

  get(kind: FastRequest): Buffer {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.#second) {
      this.#second = second;
      const head = `${this.#head}Date: ${new Date(second * 1000).toUTCString()}\r\n`;
      this.#keepAlive = Buffer.from(`${head}${this.#keepAliveHeaders}\r\n${this.#body}`);
      this.#close = Buffer.from(`${head}Connection: close\r\n\r\n${this.#body}`);
    }
    return kind === 'close' ? this.#close : this.#keepAlive;
  }
}

/**
 * Puts the fast path in front of `server`'s own connection handling. Must run before anything
 * else listens for 'connection' on it; node:http still receives every connection it is handed,
 * through the listener it registered itself (the documented way to inject a connection). Until
 * then the fast path must be the socket's only 'data' listener: another would see the chunk it
 * hands over twice.
 */
export function serveGreetingsFast(server: Server, options: FastPathOptions): void {
  const { limits, stats, closesConnection, timeoutReply } = options;
  const listeners = server.listeners('connection') as ((this: Server, socket: Socket) => void)[];
  const nodeListener = listeners[0];
  if (nodeListener === undefined || listeners.length > 1) {
    throw new Error('the greeting fast path must be installed on a fresh http.Server');
  }
  server.removeListener('connection', nodeListener);
  const handOverToNode = (socket: Socket): void => {
    nodeListener.call(server, socket);
    guardPipelining(socket, stats);
  };
  const bytes = new GreetingBytes(options.body, options.headers, limits.keepAliveTimeoutMs);
  /**
   * Connections the fast path owns, each with how to close it: they are idle between requests
   * (a client slow to read its responses is node:http's, below).
   */
  const owned = new Map<Socket, (now: boolean) => void>();
  // A client sends the same head request after request (same Host, User-Agent, Accept), so the
  // last head taken is remembered: a repeat costs one string comparison instead of two regexps.
  let lastHead: string | undefined;
  let lastKind: FastRequest | undefined;
  const recognize = (head: string): FastRequest | undefined => {
    if (head === lastHead) return lastKind;
    const kind = recognizeGreetingRequest(head);
    if (kind !== undefined) {
      lastHead = head;
      lastKind = kind;
    }
    return kind;
  };

  /**
   * node:http starts its headers clock afresh at a request's first byte (llhttp's
   * on_message_begin), so a connection handed over before any answer would get HEADERS_TIMEOUT_MS
   * from the byte that made the fast path let go, up to twice the limit from its opening. This
   * keeps the fast path's deadline, counted from the accept, until a request head is complete.
   */
  const keepHeadersDeadline = (socket: Socket, acceptedAt: number): void => {
    const left = (): number => limits.headersTimeoutMs - (performance.now() - acceptedAt);
    const expire = (): void => {
      // Timers start from the event loop's cached clock, as in onTimeout below: never cut early.
      const early = left();
      if (early > 0) {
        timer = setTimeout(expire, Math.ceil(early)).unref();
        return;
      }
      socket.off('close', stop);
      // A response attached or anything written: node:http has read a request head in time.
      if (!socket.writable || socket.bytesWritten > 0 || (socket as HttpSocket)._httpMessage) return;
      endWithTimeout(socket, stats, timeoutReply);
    };
    let timer = setTimeout(expire, Math.max(0, Math.ceil(left()))).unref();
    const stop = (): void => clearTimeout(timer);
    socket.once('close', stop);
  };

  server.on('connection', (socket: Socket) => {
    if (closesConnection()) {
      keepHeadersDeadline(socket, performance.now());
      handOverToNode(socket);
      return;
    }
    const acceptedAt = performance.now();
    let answered = false;
    let ending = false;
    /** A reply waits in the worker past the high-water mark: the next request goes to node:http. */
    let backedUp = false;
    /**
     * Stray line-end bytes still to skip after the last answer. Handed over, they would make
     * node:http take the idle connection for a new one that sent no request yet: an unasked 408
     * at the headers timeout. Only a few, so a client trickling line ends meets that timeout still.
     */
    let strayBytesLeft = 0;
    owned.set(socket, (now) => {
      ending = true;
      if (now) socket.destroy();
      else socket.destroySoon();
    });
    const onData = (chunk: Buffer): void => {
      if (ending) return;
      const kind =
        chunk.length < limits.maxHeaderSize && !closesConnection() && !backedUp
          ? recognize(chunk.toString('latin1'))
          : undefined;
      if (kind === undefined) {
        if (isStrayLineEnds(chunk, strayBytesLeft)) {
          strayBytesLeft -= chunk.length;
          return;
        }
        handOver(chunk);
        return;
      }
      stats.requests++;
      stats.countResponse(200);
      strayBytesLeft = STRAY_LINE_END_BYTES;
      if (!answered) {
        answered = true;
        socket.setTimeout(limits.keepAliveTimeoutMs + KEEP_ALIVE_BUFFER_MS);
      }
      if (kind === 'close') {
        ending = true;
        // As node:http does: closed once written, whether or not the client closes its side.
        // Written in full (the usual case), it is closed at once: the kernel still sends the
        // bytes, then FIN; destroySoon() would first make a shutdown round trip through libuv.
        socket.write(bytes.get(kind));
        if (socket.writableLength === 0) socket.destroy();
        else socket.destroySoon();
      } else if (!socket.write(bytes.get(kind))) {
        // A client that sends but does not read: pausing a net.Socket still fills its JS buffer,
        // where node:http's parser leaves unread bytes in the kernel, so it takes the next
        // request. Not before: handed over idle, the connection would get node:http's headers
        // timeout (an unasked 408) instead of the keep-alive timeout it was promised.
        backedUp = true;
      }
    };
    // Before a first request it is node:http's headers timeout (408); after one, its keep-alive timeout.
    const onTimeout = (): void => {
      if (answered || ending) {
        // Replies still waiting on the client are the stall limit's to judge (watchConnections),
        // as node:http's are, also on a connection that is closing (half-closed by the client,
        // `Connection: close`, draining): they were answered. The timer starts again with the
        // next write that completes.
        if (socket.writableLength > 0) return;
        socket.destroy();
        return;
      }
      // Socket timers start from the event loop's cached clock, which can be behind after a
      // burst of accepts: never cut a connection before its time.
      const early = limits.headersTimeoutMs - (performance.now() - acceptedAt);
      if (early > 0) {
        socket.setTimeout(Math.ceil(early));
        return;
      }
      ending = true;
      endWithTimeout(socket, stats, timeoutReply);
    };
    // allowHalfOpen (node:http's setting) leaves a socket open after the client's FIN: close it.
    const onEnd = (): void => {
      ending = true;
      socket.end();
    };
    // Reset or broken pipe: there is nothing left to answer.
    const onError = (): void => {
      socket.destroy();
    };
    const onClose = (): void => {
      owned.delete(socket);
    };
    function handOver(chunk: Buffer): void {
      if (!answered) keepHeadersDeadline(socket, acceptedAt);
      owned.delete(socket);
      socket.off('data', onData);
      socket.off('timeout', onTimeout);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.setTimeout(0);
      // Paused, unshift buffers the chunk; flowing, it would hand it at once to whatever 'data'
      // listener is left. node:http reads it first once the socket flows again.
      socket.pause();
      socket.unshift(chunk);
      handOverToNode(socket);
      socket.resume();
    }
    socket.setTimeout(limits.headersTimeoutMs);
    socket.on('data', onData);
    socket.on('timeout', onTimeout);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  });

  // node:http's close*Connections only know the connections it parses; the fast path's are
  // idle between requests, so both close them.
  const closeIdleInNode = server.closeIdleConnections.bind(server);
  const closeAllInNode = server.closeAllConnections.bind(server);
  const closeOwned = (now: boolean): void => {
    for (const close of owned.values()) close(now);
    owned.clear();
  };
  server.closeIdleConnections = () => {
    closeIdleInNode();
    closeOwned(false);
  };
  server.closeAllConnections = () => {
    closeAllInNode();
    closeOwned(true);
  };
}
