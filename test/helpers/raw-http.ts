/**
 * A raw TCP client for requests no HTTP library would send, and a strict reader of the
 * HTTP/1.1 responses that come back (bytes are handled as latin1, one char per byte).
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

export interface RawReply {
  readonly status: number;
  readonly reason: string;
  /** Lower-case names; a repeated header keeps every value. */
  readonly headers: ReadonlyMap<string, readonly string[]>;
  readonly body: string;
  /** Status codes of the 1xx interim responses that came first. */
  readonly interim: readonly number[];
}

const STATUS_LINE = /^HTTP\/1\.1 (\d{3}) ([^\r\n]*)$/;

/**
 * Reads one response starting at `from`: undefined while it is incomplete. Throws on bytes
 * that are not an HTTP/1.1 response. A response without Content-Length ends at the close.
 */
export function parseReply(
  text: string,
  from: number,
  head: boolean,
  closed: boolean,
): { reply: RawReply; end: number } | undefined {
  const interim: number[] = [];
  let at = from;
  for (;;) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd === -1) {
      if (closed || !'HTTP/1.1 '.startsWith(text.slice(at, at + 9))) {
        throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(text.slice(at, at + 200))}`);
      }
      return undefined;
    }
    const [statusLine = '', ...lines] = text.slice(at, headEnd).split('\r\n');
    const match = STATUS_LINE.exec(statusLine);
    if (!match) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
    const status = Number(match[1]);
    const headers = new Map<string, string[]>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    at = headEnd + 4;
    if (status < 200) {
      interim.push(status);
      continue;
    }
    const length = headers.get('content-length')?.[0];
    let end: number;
    if (head || status === 204 || status === 304) end = at;
    else if (length !== undefined) end = at + Number(length);
    else if (closed) end = text.length;
    else return undefined;
    if (end > text.length) return undefined;
    return { reply: { status, reason: match[2] ?? '', headers, body: text.slice(at, end), interim }, end };
  }
}

/** One raw connection to 127.0.0.1: write anything, read responses, observe the close. */
export class RawConnection {
  readonly socket: Socket;
  /**
   * performance.now() when connecting began: never after the server accepted, so a lifetime
   * measured from it is never shorter than the server's own (a batch of opens can run the
   * 'connect' callbacks well after the accepts).
   */
  readonly openedAt: number;
  /** performance.now() when it closed; undefined while open. */
  closedAt: number | undefined;
  /** The socket error that ended it (ECONNRESET, EPIPE), if any. */
  error: string | undefined;
  readonly closed: Promise<void>;
  #text = '';
  #offset = 0;
  #wake: (() => void)[] = [];

  static async open(port: number): Promise<RawConnection> {
    const connectingAt = performance.now();
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    await once(socket, 'connect');
    return new RawConnection(socket, connectingAt);
  }

  constructor(socket: Socket, connectingAt: number) {
    this.socket = socket;
    this.openedAt = connectingAt;
    socket.on('data', (chunk: Buffer) => {
      this.#text += chunk.toString('latin1');
      this.#notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err.code ?? err.message;
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedAt = performance.now();
        this.#notify();
        resolve();
      }),
    );
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  /** Everything received so far. */
  get received(): string {
    return this.#text;
  }

  /** Bytes received after the last response that reply() returned. */
  get unread(): string {
    return this.#text.slice(this.#offset);
  }

  write(data: string | Buffer): void {
    if (this.isClosed || this.socket.writableEnded) return;
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next complete response; rejects if the connection closes first or none comes within `ms`. */
  async reply(options: { head?: boolean; ms?: number } = {}): Promise<RawReply> {
    const deadline = performance.now() + (options.ms ?? 3_000);
    for (;;) {
      const parsed = parseReply(this.#text, this.#offset, options.head ?? false, this.isClosed);
      if (parsed) {
        this.#offset = parsed.end;
        return parsed.reply;
      }
      if (this.isClosed) {
        throw new Error(
          `closed (${this.error ?? 'FIN'}) before a complete response: ${JSON.stringify(this.unread)}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(
          `no complete response within ${options.ms ?? 3_000} ms: ${JSON.stringify(this.unread)}`,
        );
      await this.#next(left);
    }
  }

  /** True once the connection has closed; false if it is still open after `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (!this.isClosed) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await this.#next(left);
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves on the next data or close, or after `ms`. */
  #next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }
}
