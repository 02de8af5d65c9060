import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError, parseArguments, parseConfig, USAGE, VARIABLES } from '../src/config.js';

describe('parseConfig', () => {
  it('has the documented defaults (the README configuration table), every one of them', () => {
    const c = parseConfig({}, 'linux');
    assert.deepEqual(c, {
      port: 5000,
      host: undefined,
      workers: 'auto',
      workersFrom: 'default',
      balance: 'reuseport',
      logLevel: 'info',
      metrics: true,
      shutdownDelayMs: 0,
      drainTimeoutMs: 8000,
      bootTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
      heartbeatTimeoutMs: 10_000,
      crashLoopLimit: 5,
      http: {
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 30_000,
        keepAliveTimeoutMs: 5000,
        maxHeaderSize: 16_384,
        maxConnections: 10_000,
        maxBodyBytes: 1024,
      },
    });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.http));
  });

  it('takes the words in any case, ignores spaces around a value, and an empty or blank one means the default', () => {
    const c = parseConfig(
      { WORKERS: 'AUTO', BALANCE: 'Round-Robin', METRICS: 'OFF', LOG_LEVEL: 'Warn' },
      'linux',
    );
    assert.deepEqual([c.workers, c.balance, c.metrics, c.logLevel], ['auto', 'round-robin', false, 'warn']);
    assert.equal(parseConfig({ WORKERS: ' 2 ' }).workers, 2);
    const blank = parseConfig({ PORT: '   ', BALANCE: '', DRAIN_TIMEOUT_MS: '\t' }, 'linux');
    assert.deepEqual([blank.port, blank.balance, blank.drainTimeoutMs], [5000, 'reuseport', 8000]);
  });

  it('takes a request timeout equal to the headers timeout', () => {
    const c = parseConfig({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '5000' });
    assert.deepEqual([c.http.headersTimeoutMs, c.http.requestTimeoutMs], [5000, 5000]);
  });

  it('defaults BALANCE to round-robin off Linux', () => {
    assert.equal(parseConfig({}, 'darwin').balance, 'round-robin');
  });

  it('reads WORKERS, then WEB_CONCURRENCY', () => {
    assert.deepEqual(pick(parseConfig({ WORKERS: '3' })), { workers: 3, workersFrom: 'WORKERS' });
    assert.deepEqual(pick(parseConfig({ WEB_CONCURRENCY: '4' })), {
      workers: 4,
      workersFrom: 'WEB_CONCURRENCY',
    });
    assert.deepEqual(pick(parseConfig({ WORKERS: 'auto', WEB_CONCURRENCY: '4' })), {
      workers: 'auto',
      workersFrom: 'WORKERS',
    });
    assert.deepEqual(pick(parseConfig({ WORKERS: '', WEB_CONCURRENCY: '2' })), {
      workers: 2,
      workersFrom: 'WEB_CONCURRENCY',
    });
  });

  it('takes a heartbeat timeout of exactly twice the interval', () => {
    const c = parseConfig({ HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '2000' });
    assert.deepEqual([c.heartbeatIntervalMs, c.heartbeatTimeoutMs], [1000, 2000]);
  });

  it('unwraps a bracketed IPv6 HOST', () => {
    assert.equal(parseConfig({ HOST: '[::1]' }).host, '::1');
    assert.equal(parseConfig({ HOST: '::1' }).host, '::1');
    assert.equal(parseConfig({ HOST: 'fe80::1%lo' }).host, 'fe80::1%lo');
    assert.equal(parseConfig({ HOST: 'my-host.internal' }).host, 'my-host.internal');
    assert.equal(parseConfig({ HOST: '0.0.0.0' }).host, '0.0.0.0');
    for (const host of [
      '0',
      '127.1',
      '10.1.65535',
      '255.255.255.254',
      'localhost.',
      'my_service',
      'a-b.c1',
      `${'a'.repeat(63)}.b`,
      '0xcafe.example',
      '::ffff:127.0.0.1',
      '::ffff:255.255.255.254',
    ]) {
      assert.equal(parseConfig({ HOST: host }).host, host);
    }
  });

  const errors: [Record<string, string>, string][] = [
    [{ WORKERS: 'abc' }, 'WORKERS must be "auto" or an integer from 1 to 1024, got "abc"'],
    [{ WORKERS: '0' }, 'WORKERS must be "auto" or an integer from 1 to 1024, got "0"'],
    [{ WORKERS: '1025' }, 'WORKERS must be "auto" or an integer from 1 to 1024, got "1025"'],
    [{ WORKERS: '2.5' }, 'WORKERS must be "auto" or an integer from 1 to 1024, got "2.5"'],
    [{ WEB_CONCURRENCY: '-1' }, 'WEB_CONCURRENCY must be "auto" or an integer from 1 to 1024, got "-1"'],
    [{ PORT: '0' }, 'PORT must be an integer from 1 to 65535, got "0"'],
    [{ PORT: '70000' }, 'PORT must be an integer from 1 to 65535, got "70000"'],
    [{ PORT: '50x' }, 'PORT must be an integer from 1 to 65535, got "50x"'],
    // Decimal digits only: Number() would read these as 5000, 1000, 80 and 8080.
    ...['0x1388', '1e3', '+80', '8080.0'].map((port): [Record<string, string>, string] => [
      { PORT: port },
      `PORT must be an integer from 1 to 65535, got "${port}"`,
    ]),
    ...['+2', '0x2', '2e0'].map((workers): [Record<string, string>, string] => [
      { WORKERS: workers },
      `WORKERS must be "auto" or an integer from 1 to 1024, got "${workers}"`,
    ]),
    [{ BALANCE: 'random' }, 'BALANCE must be one of "reuseport", "round-robin", got "random"'],
    [{ HOST: 'not a host' }, 'HOST must be an IP address or a hostname, got "not a host"'],
    [{ HOST: '[::1' }, 'HOST must be an IP address or a hostname, got "[::1"'],
    [{ HOST: '::1]' }, 'HOST must be an IP address or a hostname, got "::1]"'],
    [{ HOST: '[localhost]' }, 'HOST must be an IP address or a hostname, got "[localhost]"'],
    [{ HOST: 'local:host' }, 'HOST must be an IP address or a hostname, got "local:host"'],
    [{ HOST: 'local%host' }, 'HOST must be an IP address or a hostname, got "local%host"'],
    ...[
      '-foo',
      'foo-',
      '..',
      'a..b',
      '.a',
      '1.2.3.4.5',
      '127.0.0.1.',
      '256.1.1.1',
      '1.2.3.256',
      '127.16777216',
      `${'a'.repeat(64)}.b`,
    ].map((host): [Record<string, string>, string] => [
      { HOST: host },
      `HOST must be an IP address or a hostname, got "${host}"`,
    ]),
    [
      { HOST: '127.0.0.010' },
      'HOST must be an IP address or a hostname, got "127.0.0.010": a part of an IPv4 address has a leading zero, which getaddrinfo reads as octal (010 is 8)',
    ],
    [
      { HOST: '0127.1' },
      'HOST must be an IP address or a hostname, got "0127.1": a part of an IPv4 address has a leading zero, which getaddrinfo reads as octal (010 is 8)',
    ],
    // getaddrinfo would bind these (0x7f.0x1 is 127.0.0.1, 0xffffffff the broadcast address).
    ...['0x7f.0x1', '0xffffffff', '0xff.0xff.0xff.0xff', '127.0.0.0x1', '0X7F.1', '0x'].map(
      (host): [Record<string, string>, string] => [
        { HOST: host },
        `HOST must be an IP address or a hostname, got "${host}": a part of an IPv4 address is hexadecimal, which getaddrinfo reads as a number (0x10 is 16)`,
      ],
    ),
    ...[
      '255.255.255.255',
      '4294967295',
      '255.16777215',
      '::ffff:255.255.255.255',
      '[::ffff:255.255.255.255]',
      '0:0:0:0:0:FFFF:ffff:ffff',
      '::ffff:255.255.255.255%lo',
      '[::ffff:255.255.255.255%1]',
    ].map((host): [Record<string, string>, string] => [
      { HOST: host },
      `HOST must be an IP address or a hostname, got "${host}": 255.255.255.255 is the broadcast address, which no client can connect to`,
    ]),
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL must be one of "debug", "info", "warn", "error", "fatal", got "loud"'],
    [
      { DRAIN_TIMEOUT_MS: '5s' },
      'DRAIN_TIMEOUT_MS must be an integer from 100 to 600000 (milliseconds), got "5s"',
    ],
    [
      { HEADERS_TIMEOUT_MS: '60000' },
      'HEADERS_TIMEOUT_MS must be an integer from 100 to 20000 (milliseconds), got "60000"',
    ],
    [
      { HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000' },
      'REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS (5000), got "1000"',
    ],
    [
      { HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '1999' },
      'HEARTBEAT_TIMEOUT_MS must be at least twice HEARTBEAT_INTERVAL_MS (1000), got "1999"',
    ],
    [
      { REQUEST_TIMEOUT_MS: '5000' },
      'REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS (10000, the default), got "5000"',
    ],
    [
      { HEARTBEAT_TIMEOUT_MS: '1500' },
      'HEARTBEAT_TIMEOUT_MS must be at least twice HEARTBEAT_INTERVAL_MS (1000, the default), got "1500"',
    ],
    [
      { HEARTBEAT_INTERVAL_MS: '5001' },
      'HEARTBEAT_INTERVAL_MS must be at most half of HEARTBEAT_TIMEOUT_MS (10000, the default), got "5001"',
    ],
    [
      { HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: ' 1000 ' },
      'REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS (5000), got " 1000 "',
    ],
  ];
  for (const [env, message] of errors) {
    it(`rejects ${JSON.stringify(env)}`, () => {
      assert.throws(
        () => parseConfig(env),
        (err: unknown) =>
          err instanceof ConfigError && err.message === message && err.code === 'ERR_MYSERVICE_CONFIG',
      );
    });
  }
});

describe('parseConfig with several invalid variables', () => {
  const problems = (env: Record<string, string>): string[] => {
    try {
      parseConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.message.split('; ');
      throw err;
    }
    return [];
  };

  it("reports each of them at once, in the README's order", () => {
    const env: Record<string, string> = {
      LOG_LEVEL: 'loud',
      MAX_BODY_BYTES: '-1',
      MAX_CONNECTIONS: '0',
      CRASH_LOOP_LIMIT: '0',
      HEARTBEAT_INTERVAL_MS: 'x',
      PORT: 'x',
      WORKERS: '-1',
    };
    const found = problems(env);
    assert.deepEqual(
      found.map((p) => p.split(' ')[0]),
      VARIABLES.filter((name) => name in env),
    );
    assert.equal(found[1], 'WORKERS must be "auto" or an integer from 1 to 1024, got "-1"');
  });

  it('adds a limit between two variables after them, and only when both are valid', () => {
    assert.deepEqual(problems({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000', PORT: '0' }), [
      'PORT must be an integer from 1 to 65535, got "0"',
      'REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS (5000), got "1000"',
    ]);
    // An invalid HEADERS_TIMEOUT_MS is not compared as its default of 10000.
    assert.deepEqual(problems({ HEADERS_TIMEOUT_MS: '5s', REQUEST_TIMEOUT_MS: '1000' }), [
      'HEADERS_TIMEOUT_MS must be an integer from 100 to 20000 (milliseconds), got "5s"',
    ]);
    assert.deepEqual(problems({ HEARTBEAT_INTERVAL_MS: 'x', HEARTBEAT_TIMEOUT_MS: '1500' }), [
      'HEARTBEAT_INTERVAL_MS must be an integer from 50 to 60000 (milliseconds), got "x"',
    ]);
  });
});

function pick(c: ReturnType<typeof parseConfig>): Pick<typeof c, 'workers' | 'workersFrom'> {
  return { workers: c.workers, workersFrom: c.workersFrom };
}

describe('parseArguments', () => {
  it('takes nothing, --healthcheck or --help', () => {
    assert.deepEqual(parseArguments([]), { healthcheck: false, help: false });
    assert.deepEqual(parseArguments(['--healthcheck']), { healthcheck: true, help: false });
    assert.deepEqual(parseArguments(['--help']), { healthcheck: false, help: true });
    assert.deepEqual(parseArguments(['-h']), { healthcheck: false, help: true });
  });

  it("--help lists every variable of the README's configuration table, and parseConfig reads each", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(
      readme.indexOf('| variable |'),
      readme.indexOf('\n\n', readme.indexOf('| variable |')),
    );
    const documented = [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.ok(documented.length > 10, `${documented.length} variables found in the README's table`);
    // In the table's order, which is the order parseConfig reports invalid variables in.
    assert.deepEqual([...VARIABLES], documented);
    for (const name of VARIABLES) assert.ok(USAGE.includes(name), name);
    // Each is read: an invalid value of it is refused, naming it.
    for (const name of VARIABLES) {
      assert.throws(
        () => parseConfig({ [name]: 'x y' }),
        (err: unknown) => err instanceof ConfigError && err.message.includes(name),
        name,
      );
    }
  });

  it("takes each integer variable's documented bounds and refuses one past either, naming it", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(
      readme.indexOf('| variable |'),
      readme.indexOf('\n\n', readme.indexOf('| variable |')),
    );
    const ranges = [
      ...table.matchAll(
        /^\| `([A-Z_]+)` \| [^|]+ \| (?:TCP port, )?(?:`auto` \(.*?\) or an integer from )?(\d+)(?:–| to )(\d+)\b/gm,
      ),
    ].map((m) => [m[1] as string, Number(m[2]), Number(m[3])] as const);
    // Every variable but those that take words, or a bound set by another variable.
    const notRanges = ['HOST', 'WEB_CONCURRENCY', 'BALANCE', 'REQUEST_TIMEOUT_MS', 'METRICS', 'LOG_LEVEL'];
    assert.deepEqual(
      ranges.map(([name]) => name),
      VARIABLES.filter((name) => !notRanges.includes(name)),
    );
    // What a bound needs of its neighbours: the heartbeat timeout is at least twice the interval.
    const beside: Record<string, Record<string, string>> = {
      HEARTBEAT_INTERVAL_MS: { HEARTBEAT_TIMEOUT_MS: '600000' },
      HEARTBEAT_TIMEOUT_MS: { HEARTBEAT_INTERVAL_MS: '50' },
    };
    for (const [name, min, max] of ranges) {
      for (const ok of [min, max])
        assert.doesNotThrow(() => parseConfig({ ...beside[name], [name]: String(ok) }), `${name}=${ok}`);
      for (const bad of [min - 1, max + 1]) {
        assert.throws(
          () => parseConfig({ ...beside[name], [name]: String(bad) }),
          (err: unknown) => err instanceof ConfigError && err.message.startsWith(`${name} must be`),
          `${name}=${bad}`,
        );
      }
    }
  });

  it('takes a host name of 253 characters, not 254 (RFC 1035)', () => {
    const name = `${'a.'.repeat(126)}a`;
    assert.equal(parseConfig({ HOST: name }).host, name);
    assert.throws(() => parseConfig({ HOST: `${name}b` }), ConfigError);
  });

  it('refuses anything else, naming it', () => {
    for (const args of [['--port', '8080'], ['8080'], ['--healthcheck', '-v'], ['--HEALTHCHECK']]) {
      assert.throws(
        () => parseArguments(args),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.startsWith(`unknown argument "${args.find((a) => a !== '--healthcheck')}"`),
      );
    }
  });
});
