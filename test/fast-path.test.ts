/**
 * The greeting's fast path: which requests it takes, that its bytes are node:http's, and that
 * a connection moves to node:http intact at the first request it does not take.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { parseConfig } from '../src/config.js';
import { closeGracefully } from '../src/worker/connections.js';
import { MAX_HEADS_PER_READ } from '../src/worker/fast-path.js';
import { recognizeGreetingRequest } from '../src/worker/request-head.js';
import type { RequestStats } from '../src/worker/request-stats.js';
import type { Readiness } from '../src/worker/server.js';
import { mulberry32 } from './helpers/fuzz.js';
import { listenInProcess } from './helpers/in-process.js';
import { RawConnection } from './helpers/raw-http.js';
import { pollUntil } from './helpers/service.js';

const GREETING = 'Hello, Docker world from test-host (pid 4242).\n';
const CLOSE_MS = 1_000;

describe('which request heads the fast path takes', () => {
  const taken: [string, string, 'keep-alive' | 'close'][] = [
    [
      'curl',
      'GET / HTTP/1.1\r\nHost: localhost:5000\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n',
      'keep-alive',
    ],
    [
      'ab',
      'GET / HTTP/1.0\r\nHost: 127.0.0.1:5000\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n',
      'close',
    ],
    [
      'ab -k',
      'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n',
      'keep-alive',
    ],
    ['wrk', 'GET / HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n\r\n', 'keep-alive'],
    ['a query', 'GET /?name=docker&x=%20 HTTP/1.1\r\nHost: h\r\n\r\n', 'keep-alive'],
    ['Connection: close', 'GET / HTTP/1.1\r\nhost: h\r\nconnection:  Close \r\n\r\n', 'close'],
    ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\n\r\n', 'close'],
    ['an IPv6 Host with a port', 'GET / HTTP/1.1\r\nHost: \t[::1]:5000 \r\n\r\n', 'keep-alive'],
    ['an empty Host', 'GET / HTTP/1.1\r\nHost:\r\n\r\n', 'keep-alive'],
  ];
  for (const [name, head, kind] of taken) {
    it(`takes ${name} (${kind})`, () => assert.equal(recognizeGreetingRequest(head), kind));
  }

  const left: [string, string][] = [
    ['HEAD', 'HEAD / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['POST', 'POST / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['another path', 'GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['an absolute-form target', 'GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a fragment', 'GET /#x HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['two Hosts in HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n'],
    ['a space inside Host', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n'],
    ['a path and userinfo in Host', 'GET / HTTP/1.1\r\nHost: a/../x@y\r\n\r\n'],
    ['a Host port that is not digits', 'GET / HTTP/1.0\r\nHost: a:b\r\n\r\n'],
    ['a Host IP literal that is no IPv6 address', 'GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n'],
    ['Content-Length', 'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n'],
    ['Transfer-Encoding', 'GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['Expect', 'GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n'],
    ['Upgrade', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n'],
    [
      'Proxy-Connection, which llhttp reads as Connection',
      'GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n',
    ],
    ['more than 100 header lines', `GET / HTTP/1.1\r\nHost: h\r\n${'a: b\r\n'.repeat(100)}\r\n`],
    ['two Connection headers', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nConnection: close\r\n\r\n'],
    ['a Connection list', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: h\r\n\r\n'],
    ['HTTP/0.9', 'GET /\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n'],
    ['a folded header', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n'],
    ['a bare LF', 'GET / HTTP/1.1\nHost: h\n\n'],
    ['a byte past ASCII', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: \xe9\r\n\r\n'],
    ['a control character', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n'],
    ['an incomplete head', 'GET / HTTP/1.1\r\nHost: h\r\n'],
    ['two pipelined requests', 'GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['bytes after the head', 'GET / HTTP/1.1\r\nHost: h\r\n\r\nx'],
  ];
  for (const [name, head] of left) {
    it(`leaves ${name} to node:http`, () => assert.equal(recognizeGreetingRequest(head), undefined));
  }
});

describe('the fast path agrees with node:http on every head it takes (differential fuzz)', () => {
  const SEEDS = [
    'GET / HTTP/1.1\r\nHost: localhost:5000\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n',
    'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n',
    'GET /?a=b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
  ];
  const BYTES = [
    ' ',
    '\t',
    ':',
    ',',
    '\r',
    '\n',
    '\0',
    '\x7f',
    '\xe9',
    '/',
    '?',
    '#',
    '%',
    'a',
    'K',
    '1',
    '-',
  ];
  const LINES = [
    'Connection: close',
    'connection: keep-alive',
    'Connection: Keep-Alive , close',
    'Proxy-Connection: close',
    'Content-Length: 0',
    'Transfer-Encoding: chunked',
    'Host: other',
    'Expect: 100-continue',
    'Upgrade: h2c',
    'X-A:',
    'X-A:  spaced  ',
  ];
  /** Case i is a seed head with 1 to 3 mutations: a byte replaced, inserted or dropped, or a line added. */
  function mutated(i: number): string {
    const rng = mulberry32(0x5eed + i);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
    let head = pick(SEEDS);
    for (let n = 1 + Math.floor(rng() * 3); n > 0; n--) {
      const at = 4 + Math.floor(rng() * (head.length - 8));
      const op = Math.floor(rng() * 4);
      if (op === 0) head = head.slice(0, at) + pick(BYTES) + head.slice(at + 1);
      else if (op === 1) head = head.slice(0, at) + pick(BYTES) + head.slice(at);
      else if (op === 2) head = head.slice(0, at) + head.slice(at + 1);
      else head = head.replace('\r\n', `\r\n${pick(LINES)}\r\n`);
    }
    return head;
  }

  it('2,000 mutated heads: each one taken is a GET of / that node:http keeps or closes alike', async (t) => {
    // node:http with the greeting server's parser settings, reporting what it parsed.
    const plain = createServer({ requireHostHeader: false, insecureHTTPParser: false }, (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      const body = `${req.method} ${path} ${req.httpVersion} ${req.headers.host !== undefined}`;
      // A length, as the greeting has: without one, HTTP/1.0 could not be kept alive.
      res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    servers.push(plain);
    plain.listen(0, '127.0.0.1');
    await once(plain, 'listening');
    const port = (plain.address() as AddressInfo).port;
    let taken = 0;
    for (let i = 0; i < 2_000; i++) {
      const head = mutated(i);
      const kind = recognizeGreetingRequest(head);
      if (kind === undefined) continue;
      taken++;
      const conn = await RawConnection.open(port);
      try {
        conn.write(head);
        const reply = await conn.reply();
        const version = /^GET \/(?:\?\S*)? HTTP\/1\.0\r\n/.test(head) ? '1.0' : '1.1';
        const label = `case ${i}: ${JSON.stringify(head)}`;
        assert.equal(reply.status, 200, label);
        assert.equal(reply.body, `GET / ${version} ${version === '1.1' || /\r\nhost:/i.test(head)}`, label);
        assert.equal(reply.headers.get('connection')?.[0], kind, label);
        // Nothing was left over after the head: the next request on the connection is read as sent.
        if (kind === 'close') assert.ok(await conn.closedWithin(CLOSE_MS), label);
        else {
          conn.write('GET /next HTTP/1.1\r\nHost: h\r\n\r\n');
          assert.equal((await conn.reply()).body, 'GET /next 1.1 true', label);
        }
      } finally {
        conn.destroy();
      }
    }
    t.diagnostic(`${taken} of 2000 mutated heads taken by the fast path`);
    assert.ok(taken > 200, `only ${taken} heads taken: the mutations no longer exercise the fast path`);
  });
});

interface InProcess {
  readonly server: Server;
  readonly port: number;
  readonly stats: RequestStats;
  /** Requests node:http parsed (the fast path's never reach its 'request' event). */
  parsedByNode: number;
  /** What the server's readiness callback answers; 'draining' as after a stop signal. */
  readiness: Readiness;
}

const servers: Server[] = [];
after(() => {
  for (const server of servers) {
    server.close();
    server.closeAllConnections();
  }
});

async function listen(env: Record<string, string> = {}, hostname = 'test-host'): Promise<InProcess> {
  let readiness: Readiness = 'ready';
  const { server, port, stats } = await listenInProcess({
    limits: parseConfig(env).http,
    readiness: () => readiness,
    hostname,
  });
  servers.push(server);
  const state: InProcess = {
    server,
    port,
    stats,
    parsedByNode: 0,
    get readiness() {
      return readiness;
    },
    set readiness(value) {
      readiness = value;
    },
  };
  server.on('request', () => state.parsedByNode++);
  return state;
}

/** One response's raw text from a fresh connection, with its Date value blanked. */
async function exchange(port: number, head: string): Promise<string> {
  const conn = await RawConnection.open(port);
  try {
    conn.write(Buffer.from(head, 'latin1'));
    await conn.reply();
    return conn.received.replace(/\r\nDate: [^\r]+\r\n/, '\r\nDate: *\r\n');
  } finally {
    conn.destroy();
  }
}

const request = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n';
/**
 * A request big enough that a read (64 KiB at most) holds fewer than MAX_HEADS_PER_READ of them,
 * however a client's writes come together: past that, a read is a flood and not parsed.
 */
const paddedRequest = `GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ${'p'.repeat(1_100)}\r\n\r\n`;

/** A connection whose client reads nothing, and the server's side of it. */
async function openNotReading(s: InProcess): Promise<{ conn: RawConnection; serverSide: Socket }> {
  const accepted = new Promise<Socket>((resolve) => s.server.once('connection', resolve));
  const conn = await RawConnection.open(s.port);
  const serverSide = await accepted;
  conn.socket.pause();
  return { conn, serverSide };
}

/**
 * Sends one request per read, each answered on the fast path, until a reply waits in the worker
 * past the socket's high-water mark (write() said so) or `most` were answered; how many were.
 */
async function fillUntilBackedUp(conn: RawConnection, serverSide: Socket, most = 64): Promise<number> {
  let answered = 0;
  while (!serverSide.writableNeedDrain && answered < most) {
    const read = once(serverSide, 'data');
    conn.write(request);
    await read;
    answered++;
  }
  assert.ok(serverSide.writableNeedDrain, `${answered} replies never backed up`);
  return answered;
}

/** A greeting of 512 KiB: the kernel's socket buffers fill in a few replies. */
const BIG = 512 * 1024;
/** The length of each reply's body under a BIG hostname. */
const BIG_BODY = BIG + GREETING.length - 'test-host'.length;

/**
 * A service with a BIG greeting and a connection whose client stopped reading, filled until a reply
 * waits in the worker (fillUntilBackedUp); the caller destroys conn.
 */
async function backedUp(
  env: Record<string, string> = {},
  most?: number,
): Promise<{ s: InProcess; conn: RawConnection; serverSide: Socket; answered: number }> {
  const s = await listen(env, 'h'.repeat(BIG));
  const { conn, serverSide } = await openNotReading(s);
  try {
    return { s, conn, serverSide, answered: await fillUntilBackedUp(conn, serverSide, most) };
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

describe('the fast path against node:http (in process)', () => {
  // A byte past ASCII in a header value: node:http takes it, the fast path does not.
  const toNode = 'X-Via: caf\xe9\r\n';
  const cases: [string, string][] = [
    ['HTTP/1.1', 'GET / HTTP/1.1\r\nHost: h\r\n'],
    ['HTTP/1.1, Connection: close', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n'],
    ['HTTP/1.0', 'GET / HTTP/1.0\r\n'],
    ['HTTP/1.0 keep-alive', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n'],
  ];
  for (const keepAliveMs of ['5000', '500', '65000']) {
    it(`sends node:http's exact bytes (KEEP_ALIVE_TIMEOUT_MS=${keepAliveMs})`, async () => {
      const s = await listen({ KEEP_ALIVE_TIMEOUT_MS: keepAliveMs });
      for (const [name, head] of cases) {
        const fast = await exchange(s.port, `${head}\r\n`);
        assert.equal(s.parsedByNode, 0, `${name}: not answered by the fast path`);
        const node = await exchange(s.port, `${head}${toNode}\r\n`);
        assert.equal(s.parsedByNode, 1, `${name}: not answered by node:http`);
        s.parsedByNode = 0;
        assert.ok(fast.endsWith(`\r\n\r\n${GREETING}`), fast);
        assert.equal(fast, node, name);
      }
      assert.equal(s.stats.requests, 2 * cases.length);
      assert.equal(s.stats.responses[1], 2 * cases.length);
    });
  }

  it('hands a kept-alive connection to node:http at its first other request, in order', async () => {
    const s = await listen();
    const conn = await RawConnection.open(s.port);
    try {
      const bodies: string[] = [];
      for (const path of ['/', '/', '/healthz', '/', '/nope', '/']) {
        conn.write(`GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`);
        bodies.push((await conn.reply()).body);
      }
      assert.deepEqual(bodies, [GREETING, GREETING, 'ok\n', GREETING, 'Not Found\n', GREETING]);
      // The first two on the fast path; from /healthz on, node:http has the connection.
      assert.equal(s.parsedByNode, 4);
    } finally {
      conn.destroy();
    }
  });

  it('a remembered head answers only its exact repeat: heads alike and of the same length are judged afresh', async () => {
    const s = await listen();
    // Same length each: a memory keyed on anything less than the whole head mixes them up.
    const heads: [string, string][] = [
      ['GET /?a HTTP/1.1\r\nHost: h\r\n\r\n', 'keep-alive'],
      ['GET /?a HTTP/1.1\r\nHost: h\r\n\r\n', 'keep-alive'],
      ['GET /a? HTTP/1.1\r\nHost: h\r\n\r\n', 'Not Found'],
      ['GET /?a HTTP/1.0\r\nHost: h\r\n\r\n', 'close'],
      ['GET /?a HTTP/1.1\r\nHost: h\r\n\r\n', 'keep-alive'],
    ];
    const answers: string[] = [];
    for (const [head] of heads) {
      const reply = await exchange(s.port, head);
      if (reply.endsWith('Not Found\n')) answers.push('Not Found');
      else if (reply.endsWith(GREETING)) answers.push(/\r\nConnection: (\S+)\r\n/.exec(reply)?.[1] ?? reply);
      else answers.push(reply);
    }
    assert.deepEqual(
      answers,
      heads.map(([, answer]) => answer),
    );
    assert.equal(s.parsedByNode, 1);
  });

  it(`a read holding more than ${MAX_HEADS_PER_READ} request lines is not parsed: 429 and close; ${MAX_HEADS_PER_READ} pipelined in one write are all answered`, async () => {
    assert.equal(MAX_HEADS_PER_READ, 64, "the README's figure");
    const s = await listen();
    /** Sends a flooding read on `conn`: the answer is a 429 and the close, and nothing is parsed. */
    const flood = async (conn: RawConnection, parsedBefore: number): Promise<void> => {
      conn.write(request.repeat(MAX_HEADS_PER_READ + 1));
      const reply = await conn.reply();
      assert.deepEqual([reply.status, reply.headers.get('connection')], [429, ['close']]);
      assert.ok(reply.headers.has('date'));
      assert.ok(await conn.closedWithin(3_000), 'still open after the 429');
      assert.equal(s.parsedByNode, parsedBefore);
    };
    const deep = await RawConnection.open(s.port);
    try {
      await flood(deep, 0);
    } finally {
      deep.destroy();
    }
    // Once node:http has the connection, every read is checked too.
    const later = await RawConnection.open(s.port);
    try {
      later.write('GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n');
      assert.equal((await later.reply()).body, 'ok\n');
      await flood(later, 1);
    } finally {
      later.destroy();
    }
    assert.equal(s.stats.responses[3], 2);
    // A write of many reads: the first is refused, and nothing after it is parsed or answered.
    const huge = await RawConnection.open(s.port);
    try {
      huge.write(request.repeat(10_000));
      assert.equal((await huge.reply()).status, 429);
      assert.ok(await huge.closedWithin(3_000), 'still open after the 429');
      assert.equal(huge.unread, '', 'more than one reply');
    } finally {
      huge.destroy();
    }
    assert.deepEqual([s.stats.responses[3], s.parsedByNode, s.stats.pipeliningFloods], [3, 1, 3]);
    const conn = await RawConnection.open(s.port);
    try {
      conn.write(request.repeat(MAX_HEADS_PER_READ));
      for (let i = 0; i < MAX_HEADS_PER_READ; i++) assert.equal((await conn.reply()).body, GREETING);
      assert.equal(s.parsedByNode, 1 + MAX_HEADS_PER_READ);
      assert.equal(s.stats.responses[3], 3);
    } finally {
      conn.destroy();
    }
  });

  it('a flooding read while replies wait on the client closes the connection: no 429 is cut into them', async () => {
    const { s, conn } = await backedUp();
    try {
      // node:http takes the next read, since replies wait in the worker: this one floods.
      conn.write(request.repeat(MAX_HEADS_PER_READ + 1));
      conn.socket.resume();
      assert.ok(await conn.closedWithin(5_000), 'not closed');
      assert.ok(!conn.received.includes('HTTP/1.1 429'), 'a 429 after the replies under way');
      assert.deepEqual([s.stats.responses[3], s.stats.pipeliningFloods], [0, 1]);
      assert.equal(s.parsedByNode, 0);
    } finally {
      conn.destroy();
    }
  });

  it('counts request lines, not blank lines: chunked bodies, bodies of blank lines and of logged request lines are no flood', async () => {
    const s = await listen({ MAX_BODY_BYTES: '65536' });
    const conn = await RawConnection.open(s.port);
    try {
      // Each chunked body ends in a blank line: 40 requests hold 80.
      const chunked =
        'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
      conn.write(chunked.repeat(40));
      for (let i = 0; i < 40; i++) assert.equal((await conn.reply()).status, 405);
      const blank = '\r\n\r\n'.repeat(MAX_HEADS_PER_READ + 1);
      conn.write(`POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${blank.length}\r\n\r\n${blank}`);
      assert.equal((await conn.reply()).status, 405);
      // An access log's lines name the version too, but end in a quote, not a line end.
      const logged = '"GET / HTTP/1.1" 200 40\n'.repeat(MAX_HEADS_PER_READ + 1);
      conn.write(`POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${logged.length}\r\n\r\n${logged}`);
      assert.equal((await conn.reply()).status, 405);
      assert.ok(!conn.isClosed);
    } finally {
      conn.destroy();
    }
  });

  it('a Connection: close greeting larger than the socket buffers arrives whole before the close', async () => {
    // More than the kernel's send buffer takes at once: the close must wait for the rest.
    const size = 4 * 1024 * 1024;
    const s = await listen({}, 'h'.repeat(size));
    const conn = await RawConnection.open(s.port);
    try {
      conn.write('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
      // Its error would quote megabytes of greeting: the start says enough.
      const reply = await conn.reply({ ms: 30_000 }).catch((err: Error) => {
        throw new Error(err.message.slice(0, 300));
      });
      assert.equal(reply.body.length, Number(reply.headers.get('content-length')?.[0]));
      assert.ok(reply.body.length > size);
      assert.equal(s.parsedByNode, 0);
      assert.ok(await conn.closedWithin(3_000));
    } finally {
      conn.destroy();
    }
  });

  it('leaves pipelined and split requests to node:http, which answers them in order', async () => {
    const s = await listen();
    const conn = await RawConnection.open(s.port);
    try {
      conn.write('GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n\r\n');
      assert.equal((await conn.reply()).body, GREETING);
      assert.equal((await conn.reply()).body, 'ok\n');
      // The server must read the first part on its own: wait for that read.
      const firstRead = new Promise((resolve) =>
        s.server.once('connection', (socket: Socket) => socket.once('data', resolve)),
      );
      const split = await RawConnection.open(s.port);
      try {
        split.write('GET / HTTP/1.1\r\nHo');
        await firstRead;
        split.write('st: h\r\n\r\n');
        assert.equal((await split.reply()).body, GREETING);
      } finally {
        split.destroy();
      }
      assert.equal(s.parsedByNode, 3);
    } finally {
      conn.destroy();
    }
  });

  it('stops reading from a client that sends requests and never reads the answers: unread bytes stay in the kernel, not in the worker; once it reads, every request is answered', async () => {
    const s = await listen();
    const { conn, serverSide } = await openNotReading(s);
    let sent = 0;
    try {
      // One request per write while the fast path has it, then in batches until the client's
      // own output backs up: the server has stopped reading.
      for (let i = 0; i < 2_000; i++) {
        conn.socket.write(paddedRequest);
        sent++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      const batch = paddedRequest.repeat(50);
      // Bounded: a server that kept reading would otherwise keep this loop going for ever.
      for (let i = 0; i < 10_000 && conn.socket.writableLength < 1024 * 1024; i++) {
        conn.socket.write(batch);
        sent += 50;
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.ok(conn.socket.writableLength >= 1024 * 1024, "the client's output never backed up");
      // The server reads no more: nothing is buffered for it in JS, the rest waits in the kernel.
      assert.ok(
        serverSide.readableLength < 4096,
        `${serverSide.readableLength} bytes buffered in the worker`,
      );
      assert.ok(s.parsedByNode > 0, 'node:http never took the connection over');
      // The client catches up: the worker reads again (node:http resumes the socket it paused).
      conn.socket.resume();
      await pollUntil(() => s.stats.requests === sent, `all ${sent} requests answered`, 30_000);
      await pollUntil(
        () => serverSide.writableLength === 0 && conn.socket.bytesRead === serverSide.bytesWritten,
        'every reply read',
        10_000,
      );
      assert.equal(conn.received.split('HTTP/1.1 200 OK\r\n').length - 1, sent);
    } finally {
      conn.destroy();
    }
  });

  it('hands a client that does not read its answers to node:http once replies back up in the worker', async () => {
    // A 512 KiB greeting fills the kernel's socket buffers in a few replies: at most the
    // server's send buffer and the client's receive buffer at their largest (sysctl).
    const largest = (name: string) =>
      Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
    const enough = Math.ceil((largest('tcp_wmem') + largest('tcp_rmem')) / BIG) + 4;
    // Until a reply is left waiting in the worker, and the fast path let go.
    const { s, conn, answered } = await backedUp({}, enough);
    try {
      assert.equal(s.parsedByNode, 0);
      // The next request is node:http's, which parses it and queues its reply behind the others.
      const parsed = once(s.server, 'request', { signal: AbortSignal.timeout(3_000) });
      conn.write(request);
      await parsed;
      assert.equal(s.parsedByNode, 1);
      conn.socket.resume();
      for (let i = 0; i <= answered; i++) {
        const reply = await conn.reply();
        assert.equal(reply.body.length, BIG_BODY, `reply ${i}`);
      }
      assert.equal(s.stats.requests, answered + 1);
    } finally {
      conn.destroy();
    }
  });

  it('keeps the keep-alive timeout of a connection whose replies backed up and that then goes idle: no 408 from node:http', async () => {
    const { s, conn, answered } = await backedUp({
      HEADERS_TIMEOUT_MS: '300',
      REQUEST_TIMEOUT_MS: '1000',
      KEEP_ALIVE_TIMEOUT_MS: '5000',
    });
    try {
      conn.socket.resume();
      for (let i = 0; i < answered; i++) await conn.reply();
      // Idle now, well past HEADERS_TIMEOUT_MS and node:http's checks of it, within keep-alive.
      assert.equal(await conn.closedWithin(1_500), false, `closed; unread: ${conn.unread.slice(0, 120)}`);
      assert.equal(conn.unread, '', 'bytes nobody asked for');
      conn.write(request);
      assert.equal((await conn.reply()).status, 200);
      assert.equal(s.stats.responses[3], 0, 'a 4xx was counted');
    } finally {
      conn.destroy();
    }
  });

  it('skips up to 4 bytes of line ends a client leaves after each request (RFC 9112 2.2), in one read or split: no unasked 408 at the headers timeout; more meet it', async () => {
    const s = await listen({
      HEADERS_TIMEOUT_MS: '300',
      REQUEST_TIMEOUT_MS: '1000',
      KEEP_ALIVE_TIMEOUT_MS: '5000',
    });
    /** A connection, and a write that waits until the worker has read it: one write, one read. */
    const open = async (): Promise<[RawConnection, (data: string) => Promise<void>]> => {
      const accepted = new Promise<Socket>((resolve) => s.server.once('connection', resolve));
      const conn = await RawConnection.open(s.port);
      const serverSide = await accepted;
      return [
        conn,
        async (data) => {
          const read = once(serverSide, 'data');
          conn.write(data);
          await read;
        },
      ];
    };
    const [conn, send] = await open();
    let five: RawConnection | undefined;
    try {
      for (const reads of [['\r\n'], ['\r\n\r\n'], ['\r', '\n', '\r\n']]) {
        await send(request);
        assert.equal((await conn.reply()).status, 200);
        for (const lineEnds of reads) await send(lineEnds);
      }
      // Idle now, well past HEADERS_TIMEOUT_MS and node:http's checks of it, within keep-alive.
      assert.equal(await conn.closedWithin(1_200), false, `closed; unread: ${conn.unread.slice(0, 120)}`);
      assert.equal(conn.unread, '', 'bytes nobody asked for');
      await send(request);
      assert.equal((await conn.reply()).status, 200);
      assert.equal(s.parsedByNode, 0, 'a line end was handed to node:http');
      assert.equal(s.stats.responses[3], 0, 'a 4xx was counted');
      // 4 bytes an answer: a client that keeps sending line ends and no request is cut.
      await send('\r\n');
      await send('\r\n');
      await send('\r\n');
      assert.equal((await conn.reply()).status, 408);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'not closed after its 408');
      // 5 bytes in one read are no stray end of a request: node:http's, and its 408.
      const [other, sendFive] = await open();
      five = other;
      await sendFive(request);
      assert.equal((await five.reply()).status, 200);
      await sendFive('\r\n\r\n\n');
      assert.equal((await five.reply()).status, 408);
    } finally {
      conn.destroy();
      five?.destroy();
    }
  });

  /** How a connection whose replies backed up goes on, and whether it closes once they are read. */
  const afterBackUp: [string, (conn: RawConnection, s: InProcess) => void, boolean][] = [
    ['the client goes quiet', () => {}, false],
    ['the client half-closes', (conn) => conn.socket.end(), true],
    [
      'the worker drains',
      (_conn, s) => {
        s.readiness = 'draining';
        s.server.closeIdleConnections();
      },
      true,
    ],
  ];
  for (const [name, then, closes] of afterBackUp) {
    it(`replies that back up are not cut at the keep-alive timeout when ${name}: unread replies are the stall limit's (REQUEST_TIMEOUT_MS)`, async () => {
      const { s, conn, serverSide, answered } = await backedUp({
        HEADERS_TIMEOUT_MS: '1000',
        REQUEST_TIMEOUT_MS: '8000',
        KEEP_ALIVE_TIMEOUT_MS: '200',
      });
      try {
        then(conn, s);
        // The socket timer (keep-alive timeout plus Node's 1 s buffer) fires after 2.4 s: Node lets
        // its first expiry pass while writes are still moving. The stall limit is 8 s. Seen from the
        // server's side: a client that does not read does not see the close either.
        const closed = once(serverSide, 'close', { signal: AbortSignal.timeout(3_500) }).then(
          () => true,
          () => false,
        );
        assert.equal(await closed, false, 'cut while its replies were still unread');
        conn.socket.resume();
        for (let i = 0; i < answered; i++) await conn.reply();
        assert.equal(s.stats.requests, answered);
        if (closes) assert.ok(await conn.closedWithin(CLOSE_MS), 'not closed once its replies were read');
      } finally {
        conn.destroy();
      }
    });
  }

  it('replies that still wait on a slow reader when the worker drains are sent before the connection closes, not dropped with it', async () => {
    const { s, conn, answered } = await backedUp();
    try {
      // The next request is node:http's; its reply is ended but waits behind the others.
      const parsed = once(s.server, 'request', { signal: AbortSignal.timeout(3_000) });
      conn.write(`GET / HTTP/1.1\r\nHost: h\r\n${toNode}\r\n`);
      const [, res] = (await parsed) as [unknown, ServerResponse];
      assert.ok(res.writableEnded && !res.writableFinished, 'its reply is not waiting in the worker');
      s.readiness = 'draining';
      s.server.closeIdleConnections();
      conn.socket.resume();
      for (let i = 0; i <= answered; i++) {
        const reply = await conn.reply();
        assert.equal(reply.body.length, BIG_BODY, `reply ${i}`);
      }
      assert.ok(await conn.closedWithin(CLOSE_MS), 'not closed once its replies were read');
    } finally {
      conn.destroy();
    }
  });

  it('while draining, a client that has stopped reading its replies is cut once its output stops moving: it does not hold the drain until the deadline', async () => {
    // Checks every 250 ms (HEADERS_TIMEOUT_MS / 4); outside a drain the stall limit is a minute.
    const { s, conn, serverSide } = await backedUp({
      HEADERS_TIMEOUT_MS: '1000',
      REQUEST_TIMEOUT_MS: '60000',
    });
    try {
      const drained = new Promise<void>((resolve) => closeGracefully(s.server, 60_000, resolve));
      // Within the drain grace and a few checks; the wait's bound is far below the minute.
      const cut = once(serverSide, 'close', { signal: AbortSignal.timeout(10_000) });
      await cut;
      await drained;
    } finally {
      conn.destroy();
    }
  });

  it('a drain gives idle connections 500 ms to send a last request (half the drain deadline when that is under 1 s), then closes them', async (t) => {
    for (const [drainMs, graceMs] of [
      [8_000, 500],
      [600, 300],
    ] as const) {
      const s = await listen();
      const idle = await RawConnection.open(s.port);
      try {
        idle.write(request);
        await idle.reply();
        s.readiness = 'draining';
        let closings = 0;
        const closeIdle = s.server.closeIdleConnections.bind(s.server);
        s.server.closeIdleConnections = () => {
          closings++;
          closeIdle();
        };
        // Only the grace's timer: node:http's own timers and the sockets run as usual.
        t.mock.timers.enable({ apis: ['setTimeout'] });
        closeGracefully(s.server, drainMs, () => {});
        t.mock.timers.tick(graceMs - 1);
        assert.equal(closings, 0, `DRAIN_TIMEOUT_MS=${drainMs}: idle connections closed before the grace`);
        t.mock.timers.tick(1);
        assert.equal(
          closings,
          1,
          `DRAIN_TIMEOUT_MS=${drainMs}: idle connections not closed after ${graceMs} ms`,
        );
        t.mock.timers.reset();
        assert.ok(await idle.closedWithin(CLOSE_MS), 'the idle connection stayed open');
      } finally {
        t.mock.timers.reset();
        idle.destroy();
      }
    }
  });

  it("while draining, a kept-alive connection's next greeting carries Connection: close, and the connection closes", async () => {
    const s = await listen();
    const conn = await RawConnection.open(s.port);
    try {
      conn.write(request);
      assert.deepEqual((await conn.reply()).headers.get('connection'), ['keep-alive']);
      s.readiness = 'draining';
      conn.write(request);
      const last = await conn.reply();
      assert.equal(last.body, GREETING);
      assert.deepEqual(last.headers.get('connection'), ['close']);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the connection stayed open while draining');
      // The fast path hands a draining connection to node:http, which closes it after its reply.
      assert.equal(s.parsedByNode, 1);
    } finally {
      conn.destroy();
    }
  });

  it('the Date header follows the clock, a new one each second', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-11-27T10:00:00.500Z') });
    const s = await listen();
    const conn = await RawConnection.open(s.port);
    try {
      const dates: string[] = [];
      for (const step of [0, 400, 200, 2_000]) {
        t.mock.timers.tick(step);
        conn.write(request);
        dates.push(...((await conn.reply()).headers.get('date') ?? []));
      }
      assert.deepEqual(dates, [
        'Fri, 27 Nov 2026 10:00:00 GMT',
        'Fri, 27 Nov 2026 10:00:00 GMT',
        'Fri, 27 Nov 2026 10:00:01 GMT',
        'Fri, 27 Nov 2026 10:00:03 GMT',
      ]);
      assert.equal(s.parsedByNode, 0);
    } finally {
      conn.destroy();
    }
  });

  it('closes a connection the client half-closed, and idle connections when asked to', async () => {
    const s = await listen();
    const halfClosed = await RawConnection.open(s.port);
    halfClosed.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
    assert.equal((await halfClosed.reply()).body, GREETING);
    halfClosed.socket.end();
    assert.ok(await halfClosed.closedWithin(CLOSE_MS), 'a half-closed connection stayed open');

    const served = await RawConnection.open(s.port);
    const silent = await RawConnection.open(s.port);
    try {
      served.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
      await served.reply();
      s.server.closeIdleConnections();
      assert.ok(await served.closedWithin(CLOSE_MS), 'an idle kept-alive connection stayed open');
      assert.ok(await silent.closedWithin(CLOSE_MS), 'a connection with no request yet stayed open');
      // Closed without a word: no unasked response (a 408) to either, and none counted.
      assert.deepEqual([served.unread, silent.received], ['', '']);
      assert.equal(s.stats.responses[3], 0);
      assert.equal(s.parsedByNode, 0);
    } finally {
      served.destroy();
      silent.destroy();
    }
  });
});
