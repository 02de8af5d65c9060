/**
 * A replayable generator of hostile HTTP/1.1 requests: valid requests mutated at random, random
 * bytes, huge values and bad encodings. Case i of seed s is the same bytes on every run.
 */

/** mulberry32 (Tommy Ettinger): a 32-bit state PRNG, plenty for fuzzing and trivial to replay. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** FUZZ_SEED if set (an integer from 0 to 2^32-1), else a random seed. */
export function fuzzSeed(env: string | undefined): number {
  if (env === undefined || env.trim() === '') return Math.floor(Math.random() * 2 ** 32);
  const n = /^\d+$/.test(env.trim()) ? Number(env.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n >= 2 ** 32) {
    throw new Error(`FUZZ_SEED must be an integer from 0 to 4294967295, got "${env}"`);
  }
  return n;
}

class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(this.int(256));
    return s;
  }
}

const TEMPLATES: readonly string[] = [
  'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n',
  'HEAD / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\n\r\n',
  'GET /?q=%E2%82%AC&x=1 HTTP/1.1\r\nHost: x\r\nCookie: a=b; c=d\r\nAccept-Encoding: gzip\r\n\r\n',
  'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n',
  'GET /readyz HTTP/1.0\r\n\r\n',
  'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"hello":"x"}',
  'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: v\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody',
  'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
  'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n',
  'DELETE / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
];

const TOKENS: readonly string[] = [
  '\r',
  '\n',
  '\r\n',
  '\r\n\r\n',
  '\0',
  ' ',
  '\t',
  ':',
  ';',
  ',',
  '"',
  '%',
  '%zz',
  '%00',
  '%%',
  '\x7f',
  '\xff\xfe',
  '\xc0\xaf',
  '\xed\xa0\x80',
  '\xe2\x82',
  '\xf4\x90\x80\x80',
  '../',
  '*',
  '?',
  '#',
  'HTTP/1.1',
];

const HEADER_LINES: readonly ((r: Rng) => string)[] = [
  (r) =>
    `Content-Length: ${r.pick(['0', '1', '5', '-1', '+3', '1, 1', '0x10', ' 7 ', '99999999999999999999', String(r.int(5000))])}`,
  (r) =>
    `Transfer-Encoding: ${r.pick(['chunked', 'gzip', 'chunked, chunked', 'identity', 'gzip, chunked', 'chunked ', 'x\0', 'CHUNKED'])}`,
  (r) => `Host: ${r.pick(['', 'a b', 'x:99999', '[::1', 'x\0y', 'h'.repeat(r.int(3000))])}`,
  (r) => `Expect: ${r.pick(['100-continue', '100-continue, foo', 'foo', ''])}`,
  (r) => `Connection: ${r.pick(['close', 'keep-alive', 'upgrade', 'close, keep-alive', r.bytes(8)])}`,
  (r) => `X-Huge: ${'a'.repeat(r.int(40_000))}`,
  (r) => `${r.bytes(1 + r.int(12))}: ${r.bytes(r.int(40))}`,
  (r) => Array.from({ length: r.int(300) }, (_, i) => `X-Many-${i}: ${r.bytes(4)}`).join('\r\n'),
];

function mutate(r: Rng, s: string): string {
  const at = r.int(s.length + 1);
  switch (r.int(10)) {
    case 0:
      return s.slice(0, at) + String.fromCharCode(r.int(256)) + s.slice(at + 1);
    case 1:
      return s.slice(0, at) + r.bytes(1 + r.int(16)) + s.slice(at);
    case 2:
      return s.slice(0, at) + r.pick(TOKENS) + s.slice(at);
    case 3:
      return s.slice(0, at) + s.slice(at + 1 + r.int(20));
    case 4: {
      const len = 1 + r.int(40);
      return s.slice(0, at + len) + s.slice(at, at + len) + s.slice(at + len);
    }
    case 5:
      return s.slice(0, at);
    case 6: {
      const eol = s.indexOf('\r\n');
      return eol === -1 ? s : `${s.slice(0, eol + 2)}${r.pick(HEADER_LINES)(r)}\r\n${s.slice(eol + 2)}`;
    }
    case 7: {
      const path = `/${r.pick(['a', '%', '\xe9', '\0', ' ']).repeat(r.int(30_000))}`;
      return s.replace(/ \/[^ ]*/, () => ` ${path}`);
    }
    case 8: {
      const version = r.pick(['HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/1.', 'HTTP/11', '']);
      return s.replace(/HTTP\/1\.[01]/, () => version);
    }
    default: {
      if (r.chance(0.5)) return s.replaceAll('\r\n', r.pick(['\n', '\r', '\r\r\n', '\n\r']));
      const method = r.bytes(1 + r.int(8));
      return s.replace(/^[A-Z]+/, () => method);
    }
  }
}

export interface FuzzCase {
  readonly index: number;
  /** The request bytes, one char per byte (latin1). */
  readonly bytes: string;
  /** Where the bytes are split into separate writes. */
  readonly splits: readonly number[];
  /** Half-close after writing (most cases); otherwise the server's timeouts must end it. */
  readonly end: boolean;
}

/** Case `index` of the run seeded with `seed`: independent of every other case. */
export function fuzzCase(seed: number, index: number): FuzzCase {
  const r = new Rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  let bytes: string;
  const kind = r.next();
  if (kind < 0.08) bytes = r.bytes(1 + r.int(512));
  else if (kind < 0.1) bytes = r.bytes(16_000 + r.int(50_000));
  else {
    bytes = r.pick(TEMPLATES);
    for (let i = r.int(4); i > 0; i--) bytes = mutate(r, bytes);
  }
  const splits = Array.from({ length: r.int(3) }, () => r.int(bytes.length + 1)).sort((a, b) => a - b);
  return { index, bytes, splits, end: r.chance(0.97) };
}
