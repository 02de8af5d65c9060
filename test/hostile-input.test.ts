/**
 * Issue 7's evidence: whatever a client sends, a worker answers correctly or closes the
 * connection, never crashes, and the service keeps serving everyone else.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { parseConfig } from '../src/config.js';
import { watchConnections } from '../src/worker/connections.js';
import { type FuzzCase, fuzzCase, fuzzSeed } from './helpers/fuzz.js';
import { GREETING, pidOfGreeting } from './helpers/greeting.js';
import { closeInProcess, listenInProcess } from './helpers/in-process.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { RawConnection, type RawReply } from './helpers/raw-http.js';
import { isAlive, type Service, startService } from './helpers/service.js';

const DEFAULTS = parseConfig({}).http;
const LIMIT = DEFAULTS.maxBodyBytes;
/** A deliberate close comes at once; timeouts in these cases are seconds away. */
const CLOSE_MS = 1_000;

const services = new Set<Service>();
async function start(env: Record<string, string>): Promise<Service> {
  const service = await startService({ env });
  services.add(service);
  return service;
}
/** Stops the service and checks that neither the primary nor any worker is left. */
async function stop(service: Service | undefined): Promise<void> {
  if (!service) return;
  services.delete(service);
  const pids = [service.pid, ...service.liveWorkerPids()];
  await service.stop();
  for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} left`);
}
after(async () => {
  for (const service of [...services]) await stop(service);
});

async function greet(url: string): Promise<number> {
  const res = await request(url, { reset: true });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, text);
  return pidOfGreeting(text);
}

/** What every response must look like: our headers, no banner, no detail in an error body. */
function assertSafe(reply: RawReply, head = false): void {
  const h = reply.headers;
  assert.deepEqual(h.get('x-content-type-options'), ['nosniff']);
  for (const banner of ['server', 'x-powered-by', 'x-aspnet-version', 'via'])
    assert.equal(h.get(banner), undefined, `${banner} header`);
  assert.deepEqual(h.get('content-type'), ['text/plain; charset=utf-8']);
  // RFC 9110 §6.6.1: a 2xx, 3xx or 4xx from a server with a clock carries Date, once.
  assert.match(String(h.get('date')), /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  // The reader cuts the body at Content-Length, so this checks that there is exactly one. Its
  // value is checked by what follows the body: the exact body, then a clean close or a next reply.
  if (!head) assert.deepEqual(h.get('content-length'), [String(reply.body.length)]);
  if (reply.status >= 400) {
    // The whole body is the reason phrase: no stack, path, version or echo of the request.
    assert.equal(reply.body, `${reply.reason}\n`);
    assert.ok(reply.body.length < 40 && /^[A-Za-z -]+\n$/.test(reply.body), reply.body);
  }
}

/**
 * A /metrics source that holds its answer until the test gives it: `asked` resolves when the
 * server asks for the text, `answer` hands it over.
 */
function pendingScrape(): {
  metrics: () => Promise<string | null>;
  asked: Promise<void>;
  answer: (text: string) => void;
} {
  let answer: (text: string) => void = () => assert.fail('/metrics was not asked');
  let markAsked = (): void => {};
  const asked = new Promise<void>((resolve) => {
    markAsked = resolve;
  });
  const metrics = (): Promise<string | null> =>
    new Promise((resolve) => {
      answer = resolve;
      markAsked();
    });
  return { metrics, asked, answer: (text) => answer(text) };
}

interface Case {
  readonly name: string;
  /** The bytes sent, one char per byte. */
  readonly send: string;
  /** The expected status, or 'no reply': the connection closes unanswered. */
  readonly status: number | 'no reply';
  /** The server closes right after the reply; otherwise the connection serves another request. */
  readonly close?: boolean;
  readonly head?: boolean;
  readonly body?: string | RegExp;
  readonly headers?: Readonly<Record<string, string>>;
  /** 1xx responses expected before the final one. */
  readonly interim?: readonly number[];
  /** Also run against the compiled service. */
  readonly real?: boolean;
}

const crlf = (lines: readonly string[], body = ''): string => `${lines.join('\r\n')}\r\n\r\n${body}`;
const get = (...headers: string[]): string => crlf(['GET / HTTP/1.1', 'Host: test', ...headers]);
const chunked = (body: string): string => get('Transfer-Encoding: chunked') + body;
const bad = (group: string, rows: readonly (readonly [string, string])[], real = ''): Case[] =>
  rows.map(([what, send]) => ({
    name: `${group}: ${what} → 400 and close`,
    send,
    status: 400,
    close: true,
    real: what === real,
  }));

const CASES: readonly Case[] = [
  { name: 'GET / → 200, the greeting', send: get(), status: 200, body: GREETING, real: true },
  {
    name: 'HEAD / → 200, the same headers, no body',
    send: crlf(['HEAD / HTTP/1.1', 'Host: test']),
    head: true,
    status: 200,
    body: '',
  },
  {
    name: 'GET /?query → 200, the greeting',
    send: crlf(['GET /?a=1&b=%zz HTTP/1.1', 'Host: test']),
    status: 200,
    body: GREETING,
  },
  ...['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND'].map((method) => ({
    name: `${method} / → 405 with Allow: GET, HEAD`,
    send: crlf([`${method} / HTTP/1.1`, 'Host: test', 'Content-Length: 0']),
    status: 405,
    headers: { allow: 'GET, HEAD' },
    real: method === 'POST',
  })),
  ...['/healthz', '/readyz'].map((path) => ({
    name: `POST ${path} → 405 with Allow: GET, HEAD (a probe is read-only too)`,
    send: crlf([`POST ${path} HTTP/1.1`, 'Host: test', 'Content-Length: 0']),
    status: 405,
    headers: { allow: 'GET, HEAD' },
  })),
  ...['/nope', '/index.html', '/%2e%2e/%2e%2e/etc/passwd', '/..%00', '//', '/healthz/', '*'].map(
    (target) => ({
      name: `GET ${target} → 404, a short plain body`,
      send: crlf([`GET ${target} HTTP/1.1`, 'Host: test']),
      status: 404,
      body: 'Not Found\n',
      real: target === '/nope',
    }),
  ),
  {
    name: `GET / with a ${LIMIT}-byte body (the limit) → 200`,
    send: get(`Content-Length: ${LIMIT}`) + 'b'.repeat(LIMIT),
    status: 200,
    body: GREETING,
  },
  {
    name: 'GET / with a chunked body within the limit → 200',
    send: chunked(`10\r\n${'b'.repeat(16)}\r\n0\r\n\r\n`),
    status: 200,
    body: GREETING,
  },
  {
    name: `GET / with a ${LIMIT + 1}-byte body → 413 and close`,
    send: get(`Content-Length: ${LIMIT + 1}`) + 'b'.repeat(LIMIT + 1),
    status: 413,
    close: true,
    real: true,
  },
  {
    name: 'GET / declaring a 1 TB body → 413 and close, without reading it',
    send: `${get('Content-Length: 1000000000000')}bbbb`,
    status: 413,
    close: true,
  },
  {
    name: 'a chunked body past the limit → 413 and close',
    send: chunked(`400\r\n${'b'.repeat(1024)}\r\n1\r\nb\r\n0\r\n\r\n`),
    status: 413,
    close: true,
    real: true,
  },
  {
    name: "chunk extensions past llhttp's 16 KiB cap → 413 and close, as node:http answers them",
    send: chunked(`1;${'x'.repeat(20_000)}\r\nb\r\n0\r\n\r\n`),
    status: 413,
    close: true,
  },
  {
    name: 'POST / with a small body → 405',
    send: crlf(['POST / HTTP/1.1', 'Host: test', 'Content-Length: 5'], 'hello'),
    status: 405,
    headers: { allow: 'GET, HEAD' },
  },
  {
    name: 'Expect: 100-continue past the limit → 413 and close, no 100 Continue',
    send: get('Expect: 100-continue', 'Content-Length: 5000'),
    status: 413,
    close: true,
  },
  {
    name: 'Expect: 100-continue within the limit → 100 Continue, then 200',
    send: `${get('Expect: 100-continue', 'Content-Length: 4')}body`,
    status: 200,
    interim: [100],
    body: GREETING,
  },
  { name: 'an unknown Expect → 417 and close', send: get('Expect: teapot'), status: 417, close: true },
  ...bad('malformed request line', [
    ['HTTP/0.9 "GET /"', 'GET /\r\n\r\n'],
    ['HTTP/2.0 in an HTTP/1 request line', crlf(['GET / HTTP/2.0', 'Host: test'])],
    ['unknown version HTTP/1.7', crlf(['GET / HTTP/1.7', 'Host: test'])],
    ['version without a minor', crlf(['GET / HTTP/1', 'Host: test'])],
    ['lower-case method', crlf(['get / HTTP/1.1', 'Host: test'])],
    ['method with a symbol', crlf(['G@T / HTTP/1.1', 'Host: test'])],
    ['unknown method', crlf(['FROB / HTTP/1.1', 'Host: test'])],
    ['space inside the target', crlf(['GET /a b HTTP/1.1', 'Host: test'])],
    ['control character in the target', crlf(['GET /\x01 HTTP/1.1', 'Host: test'])],
    ['raw UTF-8 in the target', crlf(['GET /\xc3\xa9 HTTP/1.1', 'Host: test'])],
    ['bare LF line ends', 'GET / HTTP/1.1\nHost: test\n\n'],
    ['bare CR line ends', 'GET / HTTP/1.1\rHost: test\r\r'],
    ['a TLS ClientHello', '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x8a\x1f\x00\x00\x00\x00\r\n\r\n'],
    ['the HTTP/2 connection preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['binary garbage', '\x00\xff\x13\x37\xde\xad\xbe\xef\r\n\r\n'],
  ]),
  ...bad('bad header syntax', [
    ['a line without a colon', get('X-Broken header')],
    ['space before the colon', get('X-A : b')],
    ['obs-fold continuation line', get('X-A: b', ' c')],
    ['NUL in a value', get('X-A: b\0c')],
    ['CR inside a value', get('X-A: b\rc')],
    ['"(" in a name', get('X(A): b')],
    ['an empty name', get(': b')],
  ]),
  ...bad('invalid chunked encoding', [
    ['non-hex chunk size', chunked('zz\r\nabc\r\n0\r\n\r\n')],
    ['chunk size past 64 bits', chunked('fffffffffffffffffffff\r\n')],
    ['chunk longer than its size', chunked('3\r\nabcX\r\n0\r\n\r\n')],
    ['a trailer line without a colon', chunked('0\r\nX\r\n\r\n')],
    ['Transfer-Encoding: gzip (chunked not last)', get('Transfer-Encoding: gzip')],
    ['Transfer-Encoding: chunked, identity', get('Transfer-Encoding: chunked, identity')],
    [
      'chunked in two Transfer-Encoding headers',
      `${get('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked')}0\r\n\r\n`,
    ],
  ]),
  ...bad(
    'request smuggling',
    [
      [
        'Content-Length with Transfer-Encoding',
        `${get('Content-Length: 3', 'Transfer-Encoding: chunked')}0\r\n\r\n`,
      ],
      [
        'Transfer-Encoding with Content-Length',
        `${get('Transfer-Encoding: chunked', 'Content-Length: 3')}0\r\n\r\n`,
      ],
      ['two different Content-Length', `${get('Content-Length: 3', 'Content-Length: 4')}abcd`],
      ['two equal Content-Length', `${get('Content-Length: 3', 'Content-Length: 3')}abc`],
      ['a Content-Length list', `${get('Content-Length: 1, 1')}a`],
      ['a negative Content-Length', get('Content-Length: -1')],
      ['Content-Length "+1"', `${get('Content-Length: +1')}a`],
      ['a non-numeric Content-Length', get('Content-Length: abc')],
      ['a Content-Length past 2^64', get('Content-Length: 99999999999999999999999')],
    ],
    'Content-Length with Transfer-Encoding',
  ),
  {
    name: 'HTTP/1.1 without Host → 400 and close',
    send: 'GET / HTTP/1.1\r\n\r\n',
    status: 400,
    close: true,
    real: true,
  },
  ...bad(
    'Host',
    [
      ['two Host lines', crlf(['GET / HTTP/1.1', 'Host: a', 'Host: evil.example'])],
      ['two Host lines in HTTP/1.0', crlf(['GET / HTTP/1.0', 'Host: a', 'Host: a'])],
      ['two Host lines on another path', crlf(['GET /healthz HTTP/1.1', 'host: a', 'HOST: a'])],
      ['a space inside the value', crlf(['GET / HTTP/1.1', 'Host: a b'])],
      ['a path and userinfo in the value', crlf(['GET / HTTP/1.1', 'Host: a/../x@y'])],
      ['a port that is not digits', crlf(['GET / HTTP/1.1', 'Host: a:b'])],
      ['an unclosed IP literal', crlf(['GET / HTTP/1.0', 'Host: [::1'])],
      ['an IP literal that is no IPv6 address', crlf(['GET / HTTP/1.1', 'Host: [1.2.3.4]:80'])],
      ['a byte past ASCII', crlf(['GET /nope HTTP/1.1', 'Host: caf\xe9'])],
      // Latin-1 decodes 0xA0 as U+00A0, which String#trim strips: not whitespace in HTTP.
      ['no-break space bytes (0xA0) around the value', crlf(['GET / HTTP/1.1', 'Host: \xa0evil\xa0'])],
      // Refused at the head, the request's body is not read: the error llhttp then finds in it
      // adds nothing to the answer already sent.
      [
        'an invalid value and an invalid chunked body in the same write (one 400, nothing after it)',
        `${crlf(['POST / HTTP/1.1', 'Host: a b', 'Transfer-Encoding: chunked'])}zz\r\n`,
      ],
      [
        'an invalid value with Expect: 100-continue (no 100 Continue)',
        crlf(['GET / HTTP/1.1', 'Host: a b', 'Expect: 100-continue', 'Content-Length: 4']),
      ],
    ],
    'two Host lines',
  ),
  ...[
    ['an IPv6 literal and a port', 'Host: [::1]:5000'],
    ["RFC 3986's IPvFuture literal", 'Host: [v1.fe80::a+en1]'],
    ['an IPvFuture literal with a capital V (case-insensitive in RFC 3986)', 'Host: [V1.x]'],
    ['tabs and spaces around the value', 'Host:\t test \t'],
    ['an IPv4 address', 'Host: 127.0.0.1'],
    ['a percent-encoded name, sub-delims and an empty port', "Host: my_host-1.%41!$&'()*+,;=:"],
    ['an empty value (the service has one default authority)', 'Host:'],
  ].map(([what, line]) => ({
    name: `Host with ${what} → 200`,
    send: crlf(['GET / HTTP/1.1', line as string]),
    status: 200,
    body: GREETING,
  })),
  {
    name: 'HTTP/1.0 with Transfer-Encoding (faulty framing) → 400 and close; a pipelined request is not served',
    send: `${crlf(['GET / HTTP/1.0', 'Connection: keep-alive', 'Transfer-Encoding: chunked'])}0\r\n\r\n${get()}`,
    status: 400,
    close: true,
    real: true,
  },
  ...(
    [
      ['GET http://a/', 200, GREETING],
      ['GET http://a/?x', 200, GREETING],
      ['GET HTTPS://A:443?x', 200, GREETING],
      ['GET http://[::1]:5000/healthz', 200, 'ok\n'],
      ['GET http://a/nope', 404, 'Not Found\n'],
      ['GET ftp://a/', 404, 'Not Found\n'],
    ] as const
  ).map(([line, status, body]) => ({
    name: `absolute-form ${line} → ${status}`,
    send: crlf([`${line} HTTP/1.1`, 'Host: test']),
    status,
    body,
    real: line === 'GET http://a/',
  })),
  {
    name: 'absolute-form HEAD http://a/ → 200, the same headers, no body',
    send: crlf(['HEAD http://a/ HTTP/1.1', 'Host: test']),
    head: true,
    status: 200,
    body: '',
  },
  ...bad('a fragment in the target (no request-target has one)', [
    ['origin-form', crlf(['GET /#x HTTP/1.1', 'Host: test'])],
    ['after a query', crlf(['GET /?a#x HTTP/1.1', 'Host: test'])],
    ['on a probe', crlf(['GET /healthz#x HTTP/1.1', 'Host: test'])],
    ['absolute-form', crlf(['GET http://a/#x HTTP/1.1', 'Host: test'])],
  ]),
  ...bad('absolute-form', [
    ['an empty host', crlf(['GET http:/// HTTP/1.1', 'Host: test'])],
    ['a port and no host', crlf(['GET http://:80/ HTTP/1.1', 'Host: test'])],
    ['userinfo', crlf(['GET http://u@a/ HTTP/1.1', 'Host: test'])],
    ['a port that is not digits', crlf(['GET http://a:b/ HTTP/1.1', 'Host: test'])],
    ['an IP literal that is no IPv6 address', crlf(['GET http://[1::2::3]/ HTTP/1.1', 'Host: test'])],
    [
      'userinfo with Expect: 100-continue (no 100 Continue)',
      crlf(['GET http://u@a/ HTTP/1.1', 'Host: test', 'Expect: 100-continue', 'Content-Length: 4']),
    ],
  ]),
  {
    name: 'HTTP/1.0 without Host → 200, then close (no keep-alive asked)',
    send: 'GET / HTTP/1.0\r\n\r\n',
    status: 200,
    close: true,
    body: GREETING,
  },
  {
    name: 'a 20 kB header → 431 and close',
    send: get(`X-Big: ${'a'.repeat(20_000)}`),
    status: 431,
    close: true,
    real: true,
  },
  {
    name: 'a 20 kB request target → 431 and close',
    send: crlf([`GET /${'a'.repeat(20_000)} HTTP/1.1`, 'Host: test']),
    status: 431,
    close: true,
  },
  {
    name: '400 small headers adding up to 24 kB → 431 and close',
    send: get(...Array.from({ length: 400 }, (_, i) => `X-H-${i}: ${'v'.repeat(50)}`)),
    status: 431,
    close: true,
  },
  // MAX_HEADER_SIZE counts as node:http does: the target, names and values, not separators or line ends.
  {
    name: '900 short headers: a 19.8 kB head whose target, names and values make 16,209 bytes (the limit is 16,384) → 200',
    send: get(...Array.from({ length: 900 }, (_, i) => `X${String(i).padStart(3, '0')}: ${'v'.repeat(14)}`)),
    status: 200,
    body: GREETING,
  },
  {
    name: '920 of them: target, names and values make 16,569 bytes → 431 and close',
    send: get(...Array.from({ length: 920 }, (_, i) => `X${String(i).padStart(3, '0')}: ${'v'.repeat(14)}`)),
    status: 431,
    close: true,
  },
  // The limit itself is refused: the most a head may count is MAX_HEADER_SIZE - 1.
  {
    name: 'a target, Host name and value counting 16,383 bytes → 200',
    send: crlf([`GET /?${'a'.repeat(16_383 - 8 - 2)} HTTP/1.1`, 'Host: test']),
    status: 200,
    body: GREETING,
  },
  {
    name: 'the same counting 16,384 bytes, the limit → 431 and close',
    send: crlf([`GET /?${'a'.repeat(16_384 - 8 - 2)} HTTP/1.1`, 'Host: test']),
    status: 431,
    close: true,
  },
  {
    name: 'Host and 999 more header lines (1,000 in all, 6 kB) → 200',
    send: get(...Array.from({ length: 999 }, () => 'a: b')),
    status: 200,
    body: GREETING,
  },
  {
    name: '1,001 header lines, 6 kB → 431 and close: node:http takes at most 1,000',
    send: get(...Array.from({ length: 1_000 }, () => 'a: b')),
    status: 431,
    close: true,
  },
  {
    name: 'CONNECT → closed without a reply (nothing is proxied)',
    send: crlf(['CONNECT example.com:443 HTTP/1.1', 'Host: example.com:443']),
    status: 'no reply',
  },
  // After an upgrade request llhttp parses nothing more of what came with it: a request pipelined
  // behind one went unanswered on a connection said to be kept alive.
  // llhttp reads Proxy-Connection as Connection for this.
  ...['Connection', 'Proxy-Connection'].flatMap((header) =>
    ['', ' with a request pipelined behind it'].map(
      (pipelined): Case => ({
        name: `Upgrade: websocket, ${header}: Upgrade${pipelined} → served as a plain request (no upgrade handler) that closes its connection`,
        send:
          get(`${header}: Upgrade`, 'Upgrade: websocket', 'Sec-WebSocket-Version: 13') +
          (pipelined ? get() : ''),
        status: 200,
        body: GREETING,
        close: true,
      }),
    ),
  ),
  {
    name: 'an Upgrade header without upgrade in Connection is no upgrade: served, kept alive',
    send: get('Upgrade: websocket') + get(),
    status: 200,
    body: GREETING,
  },
];

async function check(port: number, c: Case): Promise<void> {
  const conn = await RawConnection.open(port);
  try {
    conn.write(c.send);
    if (c.status === 'no reply') {
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the connection stayed open');
      assert.equal(conn.received, '');
      return;
    }
    const reply = await conn.reply({ head: c.head ?? false });
    assert.equal(reply.status, c.status, `${reply.status} ${reply.reason}: ${reply.body}`);
    assert.deepEqual(reply.interim, c.interim ?? []);
    assertSafe(reply, c.head);
    if (typeof c.body === 'string') assert.equal(reply.body, c.body);
    else if (c.body) assert.match(reply.body, c.body);
    for (const [name, value] of Object.entries(c.headers ?? {}))
      assert.deepEqual(reply.headers.get(name), [value]);
    if (c.close) {
      assert.deepEqual(reply.headers.get('connection'), ['close']);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the server did not close the connection');
      assert.equal(conn.unread, '', 'bytes after the reply');
    } else {
      assert.deepEqual(reply.headers.get('connection'), ['keep-alive']);
      conn.write(get());
      assert.equal((await conn.reply()).status, 200, 'the kept-alive connection serves the next request');
    }
  } finally {
    conn.destroy();
  }
}

describe('hostile input: the greeting server in this process, default limits', () => {
  let server: Server | undefined;
  let port = 0;
  before(async () => ({ server, port } = await listenInProcess({ limits: DEFAULTS })));
  after(() => closeInProcess(server));

  for (const c of CASES) it(c.name, () => check(port, c));

  it('KEEP_ALIVE_TIMEOUT_MS=0 turns keep-alive off: every response closes its connection', async () => {
    const { server: noKeepAlive, port: p } = await listenInProcess({
      limits: { ...DEFAULTS, keepAliveTimeoutMs: 0 },
    });
    try {
      await check(p, { name: 'GET /', send: get(), status: 200, close: true, body: GREETING });
      await check(p, {
        name: '404',
        send: crlf(['GET /x HTTP/1.1', 'Host: test']),
        status: 404,
        close: true,
      });
    } finally {
      await closeInProcess(noKeepAlive);
    }
  });

  it('a bad request after one whose answer is still pending: the 400 comes after that answer, then the close', async () => {
    const scrape = pendingScrape();
    const { server: withMetrics, port: p } = await listenInProcess({
      limits: DEFAULTS,
      metrics: scrape.metrics,
    });
    const conn = await RawConnection.open(p);
    try {
      const parseError = once(withMetrics, 'clientError');
      conn.write(
        crlf(['GET /metrics HTTP/1.1', 'Host: test']) + crlf(['GET /x HTTP/1.1', 'Host: test', 'Bad Header']),
      );
      // The second request's parse error happens while /metrics waits for its text.
      await parseError;
      scrape.answer('metric 1\n');
      const first = await conn.reply();
      assert.equal(first.status, 200, `${first.status} ${first.reason}: ${first.body}`);
      assert.equal(first.body, 'metric 1\n');
      const second = await conn.reply();
      assert.equal(second.status, 400);
      assertSafe(second);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the server did not close the connection');
      assert.equal(conn.unread, '', 'bytes after the 400');
    } finally {
      conn.destroy();
      await closeInProcess(withMetrics);
    }
  });

  it('a client that half-closes after asking /metrics (printf … | nc -N) gets the answer, then the close', async () => {
    const scrape = pendingScrape();
    const { server: withMetrics, port: p } = await listenInProcess({
      limits: DEFAULTS,
      metrics: scrape.metrics,
    });
    const accepted = once(withMetrics, 'connection') as Promise<[Socket]>;
    const conn = await RawConnection.open(p);
    try {
      const [serverSide] = await accepted;
      conn.write(crlf(['GET /metrics HTTP/1.1', 'Host: test']));
      await scrape.asked;
      const finRead = once(serverSide, 'end');
      conn.socket.end();
      // The answer is still being gathered when the server reads the client's FIN.
      await finRead;
      scrape.answer('metric 1\n');
      const reply = await conn.reply();
      assert.equal(reply.status, 200, `${reply.status} ${reply.reason}: ${reply.body}`);
      assert.equal(reply.body, 'metric 1\n');
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the server did not close the connection');
    } finally {
      conn.destroy();
      await closeInProcess(withMetrics);
    }
  });

  /**
   * Opens a connection to `port`, waits 90% of the headers timeout, then trickles a request head:
   * node:http's own clock starts at the first byte, which would give the 408 only after 1.9 times
   * the timeout. Resolves with the 408 and when it came, from the opening.
   */
  async function trickleAfterWait(port: number, headersMs: number): Promise<number> {
    const conn = await RawConnection.open(port);
    let drip: NodeJS.Timeout | undefined;
    try {
      await new Promise((resolve) => setTimeout(resolve, 0.9 * headersMs));
      conn.write('GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ');
      drip = setInterval(() => conn.write('a'), 100);
      const reply = await conn.reply({ ms: 3 * headersMs });
      const elapsed = performance.now() - conn.openedAt;
      assert.equal(reply.status, 408);
      assertSafe(reply);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the server did not close the connection');
      return elapsed;
    } finally {
      clearInterval(drip);
      conn.destroy();
    }
  }
  const HEADERS_MS = 1_000;
  const inTime = (elapsed: number) =>
    assert.ok(
      // node:http's own clock counts from the first byte, sent at 0.9 times the limit: its 408
      // comes at 1.9 times the limit at the earliest. Below that, the rest is room for a busy machine.
      elapsed >= HEADERS_MS - 20 && elapsed < 1.8 * HEADERS_MS,
      `408 after ${Math.round(elapsed)} ms`,
    );

  it('HEADERS_TIMEOUT_MS counts from the opening also after the fast path hands over: a client that waits, then trickles its headers, gets 408 in time; one answered in time is kept', async () => {
    const { server: slow, port: p } = await listenInProcess({
      limits: { ...DEFAULTS, headersTimeoutMs: HEADERS_MS },
    });
    // Handed over at once and answered by node:http: its deadline passes before the other's.
    const served = await RawConnection.open(p);
    try {
      served.write(crlf(['GET /nope HTTP/1.1', 'Host: test']));
      assert.equal((await served.reply()).status, 404);
      inTime(await trickleAfterWait(p, HEADERS_MS));
      served.write(get());
      assert.equal((await served.reply()).status, 200, 'the answered connection was cut');
    } finally {
      served.destroy();
      await closeInProcess(slow);
    }
  });

  it('HEADERS_TIMEOUT_MS counts from the opening with keep-alive off too (connections go to node:http at once)', async () => {
    const limits = { ...DEFAULTS, headersTimeoutMs: HEADERS_MS, keepAliveTimeoutMs: 0 };
    const { server: slow, port: p } = await listenInProcess({ limits });
    try {
      inTime(await trickleAfterWait(p, HEADERS_MS));
    } finally {
      await closeInProcess(slow);
    }
  });
});

describe('hostile input: the compiled service (WORKERS=2), default limits', () => {
  let service: Service | undefined;
  before(async () => {
    service = await start({ WORKERS: '2' });
  });
  after(() => stop(service));

  for (const c of CASES.filter((c) => c.real)) it(c.name, () => check(service?.port ?? 0, c));

  it('a Host of 60,000 spaces and one bad byte gets its 400 at once: the check does not backtrack', async () => {
    const large = await start({ WORKERS: '1', MAX_HEADER_SIZE: String(1024 * 1024) });
    const conn = await RawConnection.open(large.port);
    try {
      // One read of the fast path. A regular expression that backtracked on the spaces took about
      // 6 s on it, with the worker's event loop blocked all that time.
      conn.write(crlf(['GET / HTTP/1.1', `Host:${' '.repeat(60_000)}@`]));
      assert.equal((await conn.reply({ ms: 3_000 })).status, 400);
    } finally {
      conn.destroy();
      await stop(large);
    }
  });
});

describe('slow and idle clients, with timeouts set small through the environment', () => {
  const HEADERS_MS = 500;
  const REQUEST_MS = 1_000;
  const KEEP_ALIVE_MS = 500;
  /** Node checks timeouts every HEADERS_TIMEOUT_MS/4 and keeps an idle socket 1 s past its keep-alive timeout. */
  const SLACK_MS = 2_000;
  let service: Service | undefined;
  before(async () => {
    service = await start({
      WORKERS: '2',
      HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      REQUEST_TIMEOUT_MS: String(REQUEST_MS),
      KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_MS),
    });
  });
  after(() => stop(service));

  /** Writes one byte every 50 ms until the connection closes. */
  function trickle(conn: RawConnection): { stop: () => number } {
    let sent = 0;
    const timer = setInterval(() => {
      conn.write('a');
      sent++;
    }, 50);
    return {
      stop: () => {
        clearInterval(timer);
        return sent;
      },
    };
  }

  it(`slowloris: a client trickling header bytes is cut after HEADERS_TIMEOUT_MS (${HEADERS_MS} ms) with 408, while others are served`, async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    conn.write('GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ');
    const drip = trickle(conn);
    try {
      await greet(s.url);
      const reply = await conn.reply({ ms: HEADERS_MS + SLACK_MS });
      assert.equal(reply.status, 408);
      assertSafe(reply);
      await conn.closed;
      const sent = drip.stop();
      const elapsed = (conn.closedAt ?? 0) - conn.openedAt;
      assert.ok(elapsed >= HEADERS_MS - 20 && elapsed < HEADERS_MS + SLACK_MS, `closed after ${elapsed} ms`);
      assert.ok(sent >= 5, `only ${sent} bytes trickled: the cut did not come during the trickle`);
    } finally {
      drip.stop();
      conn.destroy();
    }
  });

  it(`an HTTP/0.9 client (\`GET /\`, a line end, then waiting) gets 408 after HEADERS_TIMEOUT_MS, not 400 at once: llhttp judges that request line only when the head ends`, async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    try {
      conn.write('GET /\r\n');
      const reply = await conn.reply({ ms: HEADERS_MS + SLACK_MS });
      const elapsed = performance.now() - conn.openedAt;
      assert.equal(reply.status, 408);
      assertSafe(reply);
      assert.ok(elapsed >= HEADERS_MS - 20, `408 after ${Math.round(elapsed)} ms`);
      assert.ok(await conn.closedWithin(CLOSE_MS), 'the server did not close the connection');
    } finally {
      conn.destroy();
    }
  });

  it(`a request timeout bounds the whole request: a body trickled after quick headers is cut after REQUEST_TIMEOUT_MS (${REQUEST_MS} ms) with 408`, async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    conn.write(get('Content-Length: 500'));
    const drip = trickle(conn);
    try {
      const reply = await conn.reply({ ms: REQUEST_MS + SLACK_MS });
      assert.equal(reply.status, 408);
      assertSafe(reply);
      await conn.closed;
      const elapsed = (conn.closedAt ?? 0) - conn.openedAt;
      // Past HEADERS_TIMEOUT_MS: it is the request timeout, not the headers timeout, that cut it.
      assert.ok(elapsed >= REQUEST_MS - 20 && elapsed < REQUEST_MS + SLACK_MS, `closed after ${elapsed} ms`);
    } finally {
      drip.stop();
      conn.destroy();
    }
  });

  it(`an idle kept-alive connection is closed after KEEP_ALIVE_TIMEOUT_MS (${KEEP_ALIVE_MS} ms, plus Node's 1 s buffer)`, async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    try {
      // From before the request: the server's idle clock starts later, so a test process that
      // runs late after the reply cannot make a timely close look early.
      const sentAt = performance.now();
      conn.write(get());
      const reply = await conn.reply();
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.headers.get('connection'), ['keep-alive']);
      await conn.closed;
      const idle = (conn.closedAt ?? 0) - sentAt;
      assert.ok(
        idle >= KEEP_ALIVE_MS + 1_000 - 20 && idle < KEEP_ALIVE_MS + 1_000 + SLACK_MS,
        `closed after ${idle} ms idle`,
      );
      assert.equal(conn.unread, '');
    } finally {
      conn.destroy();
    }
  });

  it(`line ends alone after a response node:http gave keep no connection alive: closed within KEEP_ALIVE_TIMEOUT_MS (+1 s) + HEADERS_TIMEOUT_MS`, async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    let drip: NodeJS.Timeout | undefined;
    try {
      // A probe is node:http's to answer; the fast path's own connections time out on their own.
      conn.write(crlf(['GET /healthz HTTP/1.1', 'Host: test']));
      const reply = await conn.reply();
      assert.equal(reply.status, 200);
      const repliedAt = performance.now();
      // llhttp skips line ends between requests: each restarts the socket's idle timer and
      // begins no request, so no headers timeout starts either.
      drip = setInterval(() => conn.write('\r\n'), KEEP_ALIVE_MS / 2);
      const limitMs = KEEP_ALIVE_MS + 1_000 + HEADERS_MS;
      // Unchecked, the connection stays open as long as the line ends come: the wait's bound is no timing asserted.
      assert.ok(await conn.closedWithin(limitMs + SLACK_MS + 3_000), 'the connection is still open');
      const idle = (conn.closedAt ?? 0) - repliedAt;
      assert.ok(idle >= limitMs - 20, `closed ${Math.round(idle)} ms after the reply`);
      assert.equal(conn.unread, '');
    } finally {
      clearInterval(drip);
      conn.destroy();
    }
  });

  it("a kept-alive connection whose next request starts late in node:http's idle limit and takes most of the headers timeout is still answered", async () => {
    // Its own service: timeouts long enough to tell the bound from node:http's idle limit alone
    // (keep-alive 1 s and its 1 s buffer: 2 s) with margins a busy machine cannot eat up.
    const keepAliveMs = 1_000;
    const headersMs = 3_000;
    const own = await start({
      WORKERS: '1',
      HEADERS_TIMEOUT_MS: String(headersMs),
      REQUEST_TIMEOUT_MS: String(2 * headersMs),
      KEEP_ALIVE_TIMEOUT_MS: String(keepAliveMs),
    });
    const conn = await RawConnection.open(own.port);
    try {
      conn.write(crlf(['GET /healthz HTTP/1.1', 'Host: test']));
      assert.equal((await conn.reply()).status, 200);
      // 800 ms inside the idle limit, then a head that takes 2 s: done 1.2 s after that limit,
      // which a bound of the limit alone cuts, and 1.8 s before the bound (1 + 1 + 3 s). Its bytes
      // come every 250 ms, since node:http's idle timer still runs while a head arrives.
      await new Promise((resolve) => setTimeout(resolve, keepAliveMs + 1_000 - 800));
      conn.write('GET /healthz HTTP/1.1\r\nHost: test\r\n');
      for (let i = 0; i < 8; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        conn.write('X-Slow: a\r\n');
      }
      conn.write('\r\n');
      assert.equal((await conn.reply()).status, 200);
    } finally {
      conn.destroy();
      await stop(own);
    }
  });

  it('a request pipelined behind a finished response is not cut at the idle bound while its body still comes', async () => {
    // The idle bound is 200 ms + 1 s + 300 ms; the body takes 2.4 s, well within REQUEST_TIMEOUT_MS.
    const own = await start({
      WORKERS: '1',
      KEEP_ALIVE_TIMEOUT_MS: '200',
      HEADERS_TIMEOUT_MS: '300',
      REQUEST_TIMEOUT_MS: '10000',
    });
    const conn = await RawConnection.open(own.port);
    try {
      conn.write(
        `${crlf(['GET /healthz HTTP/1.1', 'Host: test'])}${crlf(['POST / HTTP/1.1', 'Host: test', 'Content-Length: 8'])}`,
      );
      assert.equal((await conn.reply()).status, 200);
      // One byte every 300 ms: node:http's own timers see a request in progress.
      for (let i = 0; i < 8; i++) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        conn.write('x');
      }
      assert.equal((await conn.reply()).status, 405);
    } finally {
      conn.destroy();
      await stop(own);
    }
  });

  it('a client that pipelines requests and never reads the responses is cut after REQUEST_TIMEOUT_MS of stalled output', async () => {
    const s = service as Service;
    const conn = await RawConnection.open(s.port);
    conn.socket.pause();
    // Padded so that no read (64 KiB) holds MAX_HEADS_PER_READ of them: this is the stall limit's case.
    const requests = Buffer.from(get(`X-Pad: ${'p'.repeat(1_100)}`).repeat(50), 'latin1');
    // Keep writing until the server gives up: a pending write is what reports the reset here.
    const pump = (): void => {
      while (!conn.isClosed && conn.socket.write(requests));
    };
    conn.socket.on('drain', pump);
    pump();
    try {
      // Filling the socket buffers takes about 0.5 s here (1 s with both cores busy), then the
      // stall is seen within a check (125 ms) and cut REQUEST_TIMEOUT_MS later. Unchecked, the
      // connection would stay open for good: the wait's bound is no timing asserted.
      assert.ok(await conn.closedWithin(REQUEST_MS + 6_000), 'the connection is still open');
      const elapsed = (conn.closedAt ?? 0) - conn.openedAt;
      assert.ok(elapsed >= REQUEST_MS - 20, `closed after ${elapsed} ms`);
      await greet(s.url);
    } finally {
      conn.destroy();
    }
  });

  it('8 scrapes pipelined in one write are all answered; a 9th ahead of their answers cuts the connection, counted in /metrics', async () => {
    const s = service as Service;
    const scrape = crlf(['GET /metrics HTTP/1.1', 'Host: test']);
    const floods = async (): Promise<number> =>
      total(
        parseExposition(await (await request(`${s.url}/metrics`)).body.text()),
        'myservice_pipelining_floods_total',
      );
    const before = await floods();
    const eight = await RawConnection.open(s.port);
    try {
      eight.write(scrape.repeat(8));
      for (let i = 0; i < 8; i++) assert.equal((await eight.reply()).status, 200);
    } finally {
      eight.destroy();
    }
    const nine = await RawConnection.open(s.port);
    try {
      nine.write(scrape.repeat(9));
      assert.ok(await nine.closedWithin(REQUEST_MS), 'the connection is still open');
      assert.ok(!/^HTTP\/1\.1 200/m.test(nine.received), 'a scrape was answered before the cut');
    } finally {
      nine.destroy();
    }
    assert.equal((await floods()) - before, 1);
  });

  it('a client that pipelines scrapes and never reads is cut at once; the workers keep serving', async () => {
    const s = service as Service;
    const workers = s.liveWorkerPids().sort();
    const conn = await RawConnection.open(s.port);
    conn.socket.pause();
    // A scrape's response holds no bytes until the primary's text comes, so node:http's own
    // brake on pipelining never engaged: the parser took requests until the worker was killed as hung.
    // Padded so that no read holds MAX_HEADS_PER_READ of them: this is the scrapes' own limit.
    const scrapes = Buffer.from(
      crlf(['GET /metrics HTTP/1.1', 'Host: test', `X-Pad: ${'p'.repeat(1_100)}`]).repeat(50),
      'latin1',
    );
    const pump = (): void => {
      while (!conn.isClosed && conn.socket.write(scrapes));
    };
    conn.socket.on('drain', pump);
    pump();
    try {
      assert.ok(await conn.closedWithin(REQUEST_MS), 'the connection is still open');
      await greet(s.url);
      assert.deepEqual(s.liveWorkerPids().sort(), workers);
      assert.equal(s.logs.filter((l) => l.level >= 50).length, 0, s.dump());
    } finally {
      conn.destroy();
    }
  });
});

describe('stalled output', () => {
  it('is output that stops moving: a client that reads nothing is cut at the limit, a slow one that keeps reading is not', async () => {
    const server = createServer();
    const limitMs = 1_500;
    watchConnections(server, 100, limitMs, 60_000);
    // More than the kernel's buffers on both sides hold, so the worker keeps output waiting.
    const payload = Buffer.alloc(32 * 1024 * 1024, 'x');
    const accepted: Socket[] = [];
    server.on('connection', (socket: Socket) => {
      accepted.push(socket);
      socket.write(payload);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const open = async () => {
      const connection = await RawConnection.open(port);
      connection.socket.pause();
      return connection;
    };
    const [deaf, slow] = [await open(), await open()];
    try {
      const [deafSide, slowSide] = accepted as [Socket, Socket];
      const deafClosed = once(deafSide, 'close');
      // The slow client takes a chunk every 20 ms (about 3 MB/s) for twice the limit: the worker's
      // output moves each time the kernel wants more, some 1.3 MB apart, never a limit apart.
      const until = performance.now() + 2 * limitMs;
      while (performance.now() < until && !slow.isClosed) {
        const chunk = once(slow.socket, 'data');
        slow.socket.resume();
        await Promise.race([chunk, slow.closed]);
        slow.socket.pause();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(slowSide.destroyed, false, 'the slow reader was cut');
      assert.ok(slowSide.writableLength > 0, 'its output no longer waited: the test proved nothing');
      // Cut by now: the limit and a check after its output stopped.
      await deafClosed;
    } finally {
      deaf.destroy();
      slow.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('an idle flood: 2,000 connections that never send a byte', () => {
  const HEADERS_MS = 3_000;
  const FLOOD = 2_000;
  let service: Service | undefined;
  before(async () => {
    service = await start({
      WORKERS: '2',
      HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      REQUEST_TIMEOUT_MS: String(HEADERS_MS),
    });
  });
  after(() => stop(service));

  it('new clients still get the greeting; every idle socket is cut with 408 after HEADERS_TIMEOUT_MS', async (t) => {
    const s = service as Service;
    const flood: RawConnection[] = [];
    try {
      const openStart = performance.now();
      while (flood.length < FLOOD) {
        flood.push(...(await Promise.all(Array.from({ length: 200 }, () => RawConnection.open(s.port)))));
      }
      t.diagnostic(`${FLOOD} idle connections open in ${Math.round(performance.now() - openStart)} ms`);
      let slowest = 0;
      for (let i = 0; i < 20; i++) {
        const began = performance.now();
        await greet(s.url);
        slowest = Math.max(slowest, performance.now() - began);
      }
      const stillOpen = flood.filter((c) => !c.isClosed).length;
      t.diagnostic(
        `20 greetings while ${stillOpen} idle sockets were open; slowest ${Math.round(slowest)} ms`,
      );
      assert.ok(stillOpen > FLOOD / 2, `only ${stillOpen} idle sockets were still open`);
      await Promise.all(flood.map((c) => c.closed));
      for (const c of flood) {
        const lifetime = (c.closedAt ?? 0) - c.openedAt;
        assert.ok(
          lifetime >= HEADERS_MS - 20 && lifetime < HEADERS_MS + 3_000,
          `an idle socket lived ${lifetime} ms`,
        );
        assert.match(c.received, /^HTTP\/1\.1 408 Request Timeout\r\n/);
      }
      // Each 408 is a response, counted as one.
      const scrape = await request(`${s.url}/metrics`);
      const text = await scrape.body.text();
      assert.equal(total(parseExposition(text), 'myservice_http_responses_total', { code: '4xx' }), FLOOD);
      await greet(s.url);
    } finally {
      for (const c of flood) c.destroy();
    }
  });
});

for (const balance of ['reuseport', 'round-robin']) {
  describe(`MAX_CONNECTIONS per worker (BALANCE=${balance})`, () => {
    const MAX = 20;
    let service: Service | undefined;
    before(async () => {
      service = await start({
        WORKERS: '2',
        BALANCE: balance,
        MAX_CONNECTIONS: String(MAX),
        HEADERS_TIMEOUT_MS: '20000',
      });
    });
    after(() => stop(service));

    it(`each worker holds at most ${MAX}; a connection past that is accepted and closed unanswered; served again once some close`, async (t) => {
      const s = service as Service;
      const conns: RawConnection[] = [];
      try {
        for (let i = 0; i < 5; i++)
          conns.push(...(await Promise.all(Array.from({ length: 20 }, () => RawConnection.open(s.port)))));
        const refused = conns.length - 2 * MAX;
        // Refused ones close at once; the kept ones would wait for the 20 s headers timeout.
        await new Promise<void>((resolve, reject) => {
          let closed = 0;
          const guard = setTimeout(
            () => reject(new Error(`only ${closed} of ${refused} extra connections were closed`)),
            5_000,
          );
          for (const c of conns)
            c.closed.then(() => {
              if (++closed === refused) {
                clearTimeout(guard);
                resolve();
              }
            });
        });
        const open = conns.filter((c) => !c.isClosed);
        assert.equal(open.length, 2 * MAX);
        for (const c of conns.filter((c) => c.isClosed))
          assert.equal(c.received, '', 'a refused connection got bytes');

        const error = await request(s.url, { reset: true }).then(
          (res) => assert.fail(`a client past the limit got HTTP ${res.statusCode}`),
          (err: NodeJS.ErrnoException) => err.code,
        );
        t.diagnostic(`a client past the limit sees: ${error}`);
        assert.ok(error === 'UND_ERR_SOCKET' || error === 'ECONNRESET', String(error));
        const raw = await RawConnection.open(s.port);
        raw.write(get());
        assert.ok(await raw.closedWithin(CLOSE_MS), 'a raw connection past the limit stayed open');
        assert.equal(raw.received, '');

        for (const c of open) c.destroy();
        let served = false;
        let attempts = 0;
        for (; attempts < 50 && !served; attempts++)
          served = await greet(s.url).then(
            () => true,
            () => false,
          );
        assert.ok(served, 'not served after the idle connections closed');
        // Every connection closed unanswered is counted: the extra ones, undici's, the raw one,
        // and any attempt made before the workers saw the idle ones close.
        const text = (await request(`${s.url}/metrics`, { reset: true }).then((res) =>
          res.body.text(),
        )) as string;
        const dropped = total(parseExposition(text), 'myservice_connections_dropped_total');
        assert.ok(
          dropped >= refused + 2 && dropped <= refused + 2 + attempts,
          `dropped ${dropped} of ${refused} + 2`,
        );
      } finally {
        for (const c of conns) c.destroy();
      }
    });
  });
}

describe('an open-files limit too small for MAX_CONNECTIONS', () => {
  const LIMIT = 128;
  it(`warns at start; each worker takes what the limit holds (${LIMIT} less 64 spare) and drops the rest, counted, as past MAX_CONNECTIONS`, async () => {
    // Soft and hard: Node raises the soft limit to the hard one as it starts.
    const s = await startService({ env: { WORKERS: '1' }, wrap: `ulimit -n ${LIMIT} && exec "$0" "$@"` });
    services.add(s);
    const conns: RawConnection[] = [];
    try {
      const warning = s.logs.find(
        (l) => l.level === 40 && l.msg.startsWith('MAX_CONNECTIONS=10000 is more than'),
      );
      assert.equal(warning?.maxConnections, LIMIT - 64, s.dump());
      const extra = 16;
      for (let i = 0; i < LIMIT - 64 + extra; i++) conns.push(await RawConnection.open(s.port));
      // libuv's fallback at EMFILE also closes what waits, so count what the worker says it dropped.
      const closedWithin = await Promise.all(conns.map((c) => c.closedWithin(CLOSE_MS)));
      assert.equal(closedWithin.filter(Boolean).length, extra);
      for (const c of conns) c.destroy();
      let text = '';
      for (let attempt = 0; attempt < 50 && !text; attempt++)
        text = await request(`${s.url}/metrics`, { reset: true }).then(
          (res) => res.body.text(),
          () => '',
        );
      assert.ok(text, 'no scrape answered after the idle connections closed');
      assert.ok(total(parseExposition(text), 'myservice_connections_dropped_total') >= extra);
      await greet(s.url);
    } finally {
      for (const c of conns) c.destroy();
      await stop(s);
    }
  });
});

const SEED = fuzzSeed(process.env.FUZZ_SEED);
const FUZZ_CASES = Number(process.env.FUZZ_CASES || 3_000);
if (!Number.isSafeInteger(FUZZ_CASES) || FUZZ_CASES < 1) {
  throw new Error(`FUZZ_CASES must be a positive integer, got "${process.env.FUZZ_CASES}"`);
}
const ALLOWED = new Set([100, 200, 400, 404, 405, 408, 413, 417, 431, 503]);
const LEAK =
  /node:|\.[cm]?js\b|\/src\/|\/work\/|\bat \S+ \(|Error\b|\bv\d+\.\d+\.\d+|^server:|^x-powered-by:/im;

/** Sends one fuzz case: the first status (or 'closed'), and what was wrong with the answer, if anything. */
async function sendFuzz(port: number, c: FuzzCase): Promise<{ outcome: string; problem?: string }> {
  const conn = await RawConnection.open(port);
  try {
    let from = 0;
    for (const at of [...c.splits, c.bytes.length]) {
      conn.write(c.bytes.slice(from, at));
      from = at;
      // Let each piece leave as its own segment, so the parser meets it split.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (c.end) conn.socket.end();
    if (!(await conn.closedWithin(c.end ? 3_000 : 6_000))) {
      return { outcome: 'open', problem: 'the server left the connection open' };
    }
    const text = conn.received;
    const statuses = [...text.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
    const outcome = statuses.length === 0 ? 'closed unanswered' : String(statuses[0]);
    const finals = statuses.filter((s) => s >= 200).length;
    const nosniff = text.match(/^X-Content-Type-Options: nosniff\r$/gm)?.length ?? 0;
    const odd = statuses.find((s) => !ALLOWED.has(s));
    const leak = LEAK.exec(text);
    let problem: string | undefined;
    if (text !== '' && !text.startsWith('HTTP/1.1 '))
      problem = `not HTTP/1.1: ${JSON.stringify(text.slice(0, 80))}`;
    else if (odd !== undefined) problem = `unexpected status ${odd}`;
    else if (nosniff !== finals) problem = `${finals} responses but ${nosniff} nosniff headers`;
    else if (leak) problem = `leaked ${JSON.stringify(leak[0])}`;
    return problem ? { outcome, problem } : { outcome };
  } finally {
    conn.destroy();
  }
}

describe('fuzz: mutated requests against the compiled service (WORKERS=2)', () => {
  let service: Service | undefined;
  before(async () => {
    service = await start({
      WORKERS: '2',
      HEADERS_TIMEOUT_MS: '500',
      REQUEST_TIMEOUT_MS: '1000',
      KEEP_ALIVE_TIMEOUT_MS: '500',
    });
  });
  after(() => stop(service));

  it(`${FUZZ_CASES} mutated requests (FUZZ_SEED=${SEED}): no worker exits, every answer is a clean HTTP/1.1 response or a close`, async (t) => {
    const s = service as Service;
    const replay = `replay with FUZZ_SEED=${SEED}`;
    t.diagnostic(`FUZZ_SEED=${SEED} FUZZ_CASES=${FUZZ_CASES} (${replay})`);
    const before = s.liveWorkerPids().sort();
    const began = performance.now();
    const failures: string[] = [];
    const outcomes = new Map<string, number>();
    let next = 0;
    const lane = async (): Promise<void> => {
      for (let i = next++; i < FUZZ_CASES; i = next++) {
        const c = fuzzCase(SEED, i);
        const { outcome, problem } = await sendFuzz(s.port, c).catch((err: Error) => ({
          outcome: 'client error',
          problem: `client error: ${err.message}`,
        }));
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (problem)
          failures.push(`case ${i} (${replay}): ${problem}; sent ${JSON.stringify(c.bytes.slice(0, 160))}`);
      }
    };
    await Promise.all(Array.from({ length: 48 }, lane));
    const summary = [...outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o}: ${n}`);
    t.diagnostic(
      `${FUZZ_CASES} cases in ${Math.round(performance.now() - began)} ms; first answers: ${summary.join(', ')}`,
    );
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failing cases`);
    const trouble = s.logs.filter((l) => l.level >= 40 || /exit|uncaught/.test(l.msg));
    assert.deepEqual(trouble, [], `worker trouble (${replay})`);
    assert.deepEqual(s.liveWorkerPids().sort(), before, replay);
    for (let i = 0; i < 10; i++) assert.ok(before.includes(await greet(s.url)), replay);
  });
});

describe('an uncaught exception in a worker', () => {
  const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'throw-in-worker.js');
  let service: Service | undefined;
  before(async () => {
    service = await start({ WORKERS: '2', NODE_OPTIONS: `--import=${pathToFileURL(fixture).href}` });
  });
  after(() => stop(service));

  it('is logged as one JSON line with the stack; the worker exits 1 and is replaced; the service keeps serving', async () => {
    const s = service as Service;
    const [victim = 0, other = 0] = s.liveWorkerPids();
    process.kill(victim, 'SIGUSR2');
    const exit = await s.waitForLog((l) => l.msg === 'worker exited unexpectedly' && l.workerPid === victim);
    assert.equal(exit.code, 1);
    assert.equal(exit.cause, 'crash');
    const fatal = s.logs.filter((l) => l.pid === victim && l.level === 60);
    assert.equal(fatal.length, 1, s.dump());
    assert.equal(fatal[0]?.msg, 'uncaught exception in worker; exiting so the primary replaces it');
    const err = fatal[0]?.err as { message: string; stack: string };
    assert.equal(err.message, 'fixture: thrown from a timer in a worker');
    assert.match(err.stack, /^Error: fixture: thrown from a timer in a worker\n\s+at .*throw-in-worker\.js/);
    assert.equal(s.stderr.join(''), '', 'nothing but the JSON line');
    assert.ok(
      s.logs.every((l) => l.level > 0),
      'every stdout line is JSON',
    );
    await s.waitForLog((l) => l.msg === 'worker ready' && l.workerPid !== victim && l.workerPid !== other);
    const live = s.liveWorkerPids();
    assert.equal(live.length, 2);
    assert.ok(!live.includes(victim));
    for (let i = 0; i < 10; i++) assert.ok(live.includes(await greet(s.url)));
  });
});
