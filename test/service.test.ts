import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import type { Balance } from '../src/config.js';
import { ExitCode } from '../src/exit-codes.js';
import { healthcheckHost } from '../src/healthcheck.js';
import { greetingPidIn } from './helpers/greeting.js';
import { greetingPid } from './helpers/load.js';
import { RawConnection } from './helpers/raw-http.js';
import {
  freePort,
  isAlive,
  type LogLine,
  MAIN,
  pollUntil,
  type Service,
  servicesStoppedAfterEach,
} from './helpers/service.js';

const start = servicesStoppedAfterEach();
const run = promisify(execFile);

describe('exit codes', () => {
  it("are the README's numbers, which scripts and orchestrators match on", () => {
    assert.deepEqual(
      { ...ExitCode },
      { ok: 0, internal: 1, config: 2, bind: 3, crashLoop: 4, forcedStop: 5 },
    );
  });
});

/** The port's listening sockets by inode, with their backlogs (ss's Send-Q for a listener). */
function listeningSockets(port: number): { inode: number; backlog: number }[] {
  const stdout = execFileSync('ss', ['-ltneH', `sport = :${port}`], { encoding: 'utf8' });
  return stdout
    .trim()
    .split('\n')
    .map((line) => ({
      inode: Number(/\bino:(\d+)/.exec(line)?.[1]),
      backlog: Number(line.trim().split(/\s+/)[2]),
    }))
    .sort((a, b) => a.inode - b.inode);
}

/** A connection that got one greeting and stays open, idle; the pid that answered. */
async function keptAlive(port: number): Promise<{ connection: RawConnection; pid: number | undefined }> {
  const connection = await RawConnection.open(port);
  connection.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n');
  return { connection, pid: greetingPidIn((await connection.reply()).body) };
}

/** The descriptors of `pid` that refer to one of these sockets. */
function socketFds(pid: number, sockets: readonly { inode: number }[]): string[] {
  const names = new Set(sockets.map((s) => `socket:[${s.inode}]`));
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return names.has(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      return false; // closed meanwhile
    }
  });
}

for (const balance of ['reuseport', 'round-robin'] as Balance[]) {
  describe(`BALANCE=${balance}`, () => {
    it('WORKERS=3: 60 new connections are answered by exactly 3 worker pids, never the primary', async () => {
      const service = await start({ env: { WORKERS: '3', BALANCE: balance } });
      const pids = new Set<number>();
      for (let i = 0; i < 60; i++) pids.add(await greetingPid(service.url));
      assert.equal(pids.size, 3, `pids: ${[...pids]}`);
      assert.ok(!pids.has(service.pid), 'the primary answered');
      assert.deepEqual([...pids].sort(), service.liveWorkerPids().sort());
    });

    it("listens with the kernel's largest accept queue (net.core.somaxconn), not Node's 511", async () => {
      const service = await start({ env: { WORKERS: '2', BALANCE: balance } });
      const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
      const backlogs = listeningSockets(service.port).map((s) => s.backlog);
      // reuseport: one socket per worker; round-robin: the primary's one.
      assert.deepEqual(backlogs, balance === 'reuseport' ? [somaxconn, somaxconn] : [somaxconn]);
    });

    it('a worker killed with SIGKILL is replaced and the service keeps answering', async () => {
      const service = await start({ env: { WORKERS: '2', BALANCE: balance } });
      const [victim] = service.liveWorkerPids();
      process.kill(victim as number, 'SIGKILL');
      await service.waitForMsgCount('worker ready', 1);
      const exit = service.logs.find((l) => l.msg === 'worker exited unexpectedly');
      assert.equal(exit?.workerPid, victim);
      assert.equal(exit?.signal, 'SIGKILL');
      const pids = new Set<number>();
      for (let i = 0; i < 30; i++) pids.add(await greetingPid(service.url));
      assert.ok(!pids.has(victim as number));
      assert.equal(service.liveWorkerPids().length, 2);
    });
  });
}

/**
 * SIGTTOU, with the worker it drains held by a request still arriving: its slot's listening socket
 * is closed while the worker lives on, not at its exit.
 */
async function scaleDownWhileHeld(service: Service): Promise<void> {
  service.signal('SIGTTOU');
  const draining = await service.waitForLog((l) => l.msg === 'worker draining');
  await pollUntil(() => listeningSockets(service.port).length === 1, 'one listener left');
  assert.ok(isAlive(draining.pid), 'the socket closed only when its worker exited');
}

describe("BALANCE=reuseport: each slot's listening socket", () => {
  it("SIGHUP rolls hand each slot's listening socket to its replacement (no listener closes); a killed worker's slot opens a new one", async () => {
    const service = await start({ env: { WORKERS: '2', BALANCE: 'reuseport' } });
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    const first = listeningSockets(service.port);
    assert.equal(first.length, 2);
    const before = new Set(service.liveWorkerPids());
    for (let roll = 0; roll < 3; roll++) {
      service.signal('SIGHUP');
      await service.waitForMsgCount('rolling restart complete', 1);
    }
    assert.ok(
      service.liveWorkerPids().every((pid) => !before.has(pid)),
      'every worker was replaced',
    );
    // The same sockets, with the backlog they were opened with.
    assert.deepEqual(listeningSockets(service.port), first);
    assert.deepEqual(
      first.map((s) => s.backlog),
      [somaxconn, somaxconn],
    );
    // The primary keeps one copy of each, not one per worker the socket has had.
    assert.equal(socketFds(service.pid, first).length, 2);
    // A killed worker's socket closes, so its queue moves to the others at once.
    const [victim] = service.liveWorkerPids();
    process.kill(victim as number, 'SIGKILL');
    await service.waitForMsgCount('worker ready', 1);
    const now = listeningSockets(service.port);
    assert.equal(now.length, 2);
    assert.equal(now.filter((s) => first.some((f) => f.inode === s.inode)).length, 1);
    assert.equal(socketFds(service.pid, now).length, 2);
  });

  it("SIGTTOU: the removed worker's socket closes as it drains, not when it exits, so its queue moves at once", async () => {
    const service = await start({ env: { WORKERS: '2', BALANCE: 'reuseport' } });
    // A connection on each worker with a request still arriving holds the draining one, after it
    // closes its listener, until the request ends (or DRAIN_TIMEOUT_MS, 10 s).
    const byPid = new Map<number | undefined, RawConnection>();
    const opened: RawConnection[] = [];
    for (let i = 0; i < 40 && byPid.size < 2; i++) {
      const { connection, pid } = await keptAlive(service.port);
      opened.push(connection);
      byPid.set(pid, connection);
    }
    try {
      assert.equal(byPid.size, 2, 'a connection on each worker');
      for (const connection of byPid.values())
        connection.write('POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nab');
      await scaleDownWhileHeld(service);
    } finally {
      for (const c of opened) c.socket.destroy();
    }
  });

  it("a worker's listening socket that reaches the primary after the worker stopped is not kept: no socket is left that nobody accepts on", async () => {
    const fixture = new URL('fixtures/late-ready.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '1', BALANCE: 'reuseport', NODE_OPTIONS: `--import=${fixture}`, LATE_READY_FORKS: '2' },
    });
    // The second worker listens, but its ready comes only after its exit: SIGTTOU removes it
    // while it is still starting, as far as the primary knows.
    service.signal('SIGTTIN');
    await pollUntil(() => listeningSockets(service.port).length === 2, 'the second worker listening');
    service.signal('SIGTTOU');
    await service.waitForMsgCount('worker stopped', 1);
    assert.equal(listeningSockets(service.port).length, 1, service.dump());
    assert.equal(socketFds(service.pid, listeningSockets(service.port)).length, 1);
  });

  it("a worker's listening socket that reaches the primary after the worker was told to drain, while it still drains, is closed at once, not kept until its exit", async () => {
    const fixture = new URL('fixtures/late-ready.js', import.meta.url).href;
    const service = await start({
      env: {
        WORKERS: '1',
        BALANCE: 'reuseport',
        DRAIN_TIMEOUT_MS: '60000',
        NODE_OPTIONS: `--import=${fixture}`,
        LATE_READY_FORKS: '2',
        LATE_READY_UNTIL: 'drain',
      },
    });
    const [first] = service.liveWorkerPids();
    // The second worker listens, but its ready comes only once SIGTTOU has told it to drain.
    service.signal('SIGTTIN');
    await pollUntil(() => listeningSockets(service.port).length === 2, 'the second worker listening');
    // A connection on it with a request still arriving holds it, draining, after it closes its
    // own copy of the socket.
    const opened: RawConnection[] = [];
    try {
      let held: RawConnection | undefined;
      for (let i = 0; i < 40 && !held; i++) {
        const { connection, pid } = await keptAlive(service.port);
        opened.push(connection);
        if (pid !== first) held = connection;
      }
      assert.ok(held, 'a connection on the second worker');
      held.write('POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nab');
      await scaleDownWhileHeld(service);
    } finally {
      for (const c of opened) c.socket.destroy();
    }
  });
});

describe('the greeting', () => {
  it('GET / answers the exact greeting with its headers; HEAD the same headers, no body', async () => {
    const service = await start({ env: { WORKERS: '1' } });
    const [worker] = service.liveWorkerPids();
    const expected = `Hello, Docker world from ${hostname()} (pid ${worker}).\n`;
    const get = await request(service.url);
    assert.equal(get.statusCode, 200);
    assert.equal(get.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(get.headers['content-length'], String(Buffer.byteLength(expected)));
    assert.equal(await get.body.text(), expected);
    const head = await request(service.url, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(expected)));
    assert.equal(await head.body.text(), '');
  });
});

describe('more workers than CPUs', () => {
  it('WORKERS=9 on one CPU (taskset): a warning names both counts, and at most 4 workers boot at once', async () => {
    // The first CPU this process may use: CPU 0 need not be one of them.
    const allowed = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    // A short heartbeat timeout makes the primary tick often (every quarter of it): a slot waiting
    // its turn must not pass for a tick that came late.
    const env = { WORKERS: '9', HEARTBEAT_INTERVAL_MS: '200', HEARTBEAT_TIMEOUT_MS: '2000' };
    const service = await start({ env, wrap: `exec taskset -c ${allowed} "$0" "$@"` });
    const warning = service.logs.find((l) => l.level === 40 && /^WORKERS=9 is more than/.test(l.msg));
    assert.ok(warning, service.dump());
    assert.match(warning.msg, /the 1 WORKERS=auto starts here \(affinity \d+ = 1 CPUs.*; 4 boot at a time$/);
    // Each worker's boot is [spawned, ready): the ready line's time less its bootMs, and its time.
    const boots = service.logs
      .filter((l) => l.msg === 'worker ready')
      .map((l) => ({ from: (l.time as number) - (l.bootMs as number), to: l.time as number }));
    assert.equal(boots.length, 9);
    // All at once, 9 boots overlap: a fork takes far less than a boot. A boot that ends as the next
    // starts is not an overlap; its end (Date.now) and bootMs (the supervisor's clock) round apart
    // by up to a millisecond, so that is the tolerance.
    const overlapping = boots.map(
      ({ from }) => boots.filter((b) => b.from <= from && b.to - 1 > from).length,
    );
    assert.ok(Math.max(...overlapping) <= 4, `boots overlapping: ${overlapping}`);
    assert.equal(service.liveWorkerPids().length, 9);
    assert.ok(!service.logs.some((l) => /did not run/.test(l.msg)), service.dump());
  });
});

describe('net.ipv4.tcp_migrate_req (reuseport)', () => {
  it('already 1: the service says so and sets nothing', async (t) => {
    const sysctl = '/proc/sys/net/ipv4/tcp_migrate_req';
    let was: string;
    try {
      was = readFileSync(sysctl, 'utf8');
      writeFileSync(sysctl, '1');
    } catch (err) {
      t.skip(
        `${sysctl} cannot be set here (${(err as NodeJS.ErrnoException).code}): not root, or Linux < 5.14`,
      );
      return;
    }
    t.after(() => writeFileSync(sysctl, was));
    const service = await start({ env: { WORKERS: '1', BALANCE: 'reuseport' } });
    const lines = service.logs.filter((l) => l.msg.includes('tcp_migrate_req'));
    assert.deepEqual(
      lines.map((l) => l.msg),
      ['net.ipv4.tcp_migrate_req=1: queued connections move to another worker when one stops'],
    );
  });

  it('0 where it may be set (a network namespace of its own, as root): the service sets it to 1 and says so', async (t) => {
    // A new network namespace starts with tcp_migrate_req=0, and leaves the host's alone.
    try {
      execFileSync('unshare', ['-n', 'true'], { stdio: 'ignore' });
    } catch {
      t.skip('no network namespace can be made here (unshare -n): not root');
      return;
    }
    const service = await start({
      env: { WORKERS: '1', BALANCE: 'reuseport' },
      wrap: `exec unshare -n /bin/sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"`,
    });
    const lines = service.logs.filter((l) => l.msg.includes('tcp_migrate_req'));
    assert.deepEqual(
      lines.map((l) => l.msg),
      [
        'set net.ipv4.tcp_migrate_req=1 in this network namespace: queued connections move to another worker when one stops',
      ],
    );
    const set = execFileSync(
      'nsenter',
      ['-t', String(service.pid), '-n', 'cat', '/proc/sys/net/ipv4/tcp_migrate_req'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(set.trim(), '1');
  });
});

describe('start-up errors', () => {
  it('an invalid WORKERS exits 2 with one line naming the variable, before any worker', async () => {
    const service = await start({ env: { WORKERS: 'abc' } });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.config);
    assert.equal(service.logs.length, 1, service.dump());
    assert.equal(service.logs[0]?.msg, 'WORKERS must be "auto" or an integer from 1 to 1024, got "abc"');
  });

  it('two instances started together on one port: one serves, the other exits 3, whatever each HOST (BALANCE=reuseport)', async () => {
    const port = await freePort();
    // The port probe alone let both through when they started together (5 of 5 tries); a lock
    // named for host:port did for two spellings of one address, or a wildcard beside an address.
    const pairs = [
      ['127.0.0.1', '127.0.0.1'],
      ['127.0.0.1', '127.1'],
      ['localhost', '127.0.0.1'],
      ['0.0.0.0', '127.0.0.1'],
    ];
    for (const hosts of pairs) {
      const pair = await Promise.all(
        hosts.map((HOST) => start({ port, env: { WORKERS: '1', BALANCE: 'reuseport', HOST }, ready: 0 })),
      );
      const outcomes = await Promise.all(
        pair.map((s) =>
          Promise.race([
            s.exited.then(({ code }) => String(code)),
            s
              .waitForLog((l) => l.msg === 'worker ready')
              .then(
                () => 'ready',
                () => 'exited',
              ),
          ]),
        ),
      );
      assert.deepEqual(
        outcomes.sort(),
        [String(ExitCode.bind), 'ready'],
        pair.map((s) => s.dump()).join('\n'),
      );
      const refused = pair.find((s) => s.proc.exitCode === ExitCode.bind);
      assert.ok(
        refused?.logs.some((l) => /another instance of myservice/.test(l.msg)),
        refused?.dump() ?? 'none exited 3',
      );
      for (const s of pair) await s.stop();
    }
  });

  it("a process holding the port's start lock (BALANCE=reuseport) gets exit 3 and a message naming the lock", async () => {
    const port = await freePort();
    const lock = createServer().listen({ path: `\0myservice:${port}` });
    await once(lock, 'listening');
    try {
      const service = await start({ port, env: { WORKERS: '1', BALANCE: 'reuseport' }, ready: 0 });
      const { code } = await service.exited;
      assert.equal(code, ExitCode.bind, service.dump());
      assert.ok(
        service.logs.some((l) =>
          l.msg.includes(`another process holds its lock, the abstract unix socket @myservice:${port}`),
        ),
        service.dump(),
      );
    } finally {
      lock.close();
    }
  });

  /** A node on PATH older than 26, outside node_modules (the system's), or undefined. */
  const olderNode = (): string | undefined => {
    for (const dir of (process.env.PATH ?? '').split(':')) {
      if (dir === '' || dir.includes('node_modules')) continue;
      try {
        const version = execFileSync(`${dir}/node`, ['--version'], { encoding: 'utf8' });
        if (Number(/^v(\d+)/.exec(version)?.[1]) < 26) return `${dir}/node`;
      } catch {}
    }
    return undefined;
  };
  it("run by a Node older than 26 (a bare `node` may be the system's) exits 2 naming the Node it needs, not a SyntaxError", {
    skip: !olderNode() && 'no Node older than 26 on PATH',
  }, async () => {
    const node = olderNode() as string;
    const result = await run(node, [MAIN], { env: { PORT: '1' } }).catch(
      (err: { code: number; stdout: string }) => err,
    );
    assert.equal('code' in result ? result.code : 0, ExitCode.config);
    assert.match(result.stdout, /"msg":"myservice needs Node\.js 26 or later, and this is v\d+/);
  });

  it("started as a worker of another program's cluster (PM2's cluster mode: NODE_UNIQUE_ID set) exits 2 saying so, not with a TypeError", async () => {
    const service = await start({ env: { NODE_UNIQUE_ID: '1' } });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.config, service.dump());
    assert.equal(service.logs.length, 1, service.dump());
    assert.match(
      service.logs[0]?.msg ?? '',
      /^myservice was started as a node:cluster worker of another program/,
    );
  });

  it('an argument (npm start -- --port 8080) exits 2 naming it and the variables, before any worker', async () => {
    const service = await start({ args: ['--port', '8080'] });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.config);
    assert.equal(service.logs.length, 1, service.dump());
    assert.match(
      service.logs[0]?.msg ?? '',
      /^unknown argument "--port": .*environment variable \(PORT=8080/,
    );
  });

  for (const [balance, holderReusePort] of [
    ['reuseport', false],
    ['round-robin', false],
    // SO_REUSEPORT lets a second listener of the same user share the port: it must not.
    ['reuseport', true],
    ['round-robin', true],
  ] as [Balance, boolean][]) {
    const held = holderReusePort ? 'by a SO_REUSEPORT listener of the same user' : 'by a plain listener';
    // A service that shares the port runs until stopped: the timeout turns that into a failure.
    it(`a port held ${held} exits 3, reported once, with no respawn loop (${balance})`, {
      timeout: 15_000,
    }, async () => {
      const holder = createServer().listen({
        port: await freePort(),
        host: '127.0.0.1',
        reusePort: holderReusePort,
      });
      await once(holder, 'listening');
      const port = (holder.address() as { port: number }).port;
      try {
        const service = await start({ port, env: { WORKERS: '2', BALANCE: balance }, ready: 0 });
        const { code } = await service.exited;
        assert.equal(code, ExitCode.bind, service.dump());
        const fatal = service.logs.filter((l) => l.level === 60);
        assert.equal(fatal.length, 1, service.dump());
        assert.match(
          fatal[0]?.msg ?? '',
          new RegExp(
            `EADDRINUSE.*${port}.*; something else listens on port ${port} \\(another program, or another instance of this service\\): stop it, or set another PORT$`,
          ),
        );
        assert.ok(service.logs.filter((l) => l.msg === 'worker ready').length === 0);
      } finally {
        holder.close();
      }
    });
  }
});

it('round-robin refused a port on every interface: the message names the port and the interfaces, not "null"', {
  timeout: 15_000,
}, async () => {
  // node:cluster writes this failure as "bind EADDRINUSE null:<port>" when no HOST is set.
  const holder = createServer().listen({ port: await freePort(), host: '::' });
  await once(holder, 'listening');
  const port = (holder.address() as { port: number }).port;
  try {
    const service = await start({ port, env: { WORKERS: '1', BALANCE: 'round-robin', HOST: '' }, ready: 0 });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.bind, service.dump());
    const fatal = service.logs.filter((l) => l.level === 60);
    assert.equal(fatal.length, 1, service.dump());
    assert.equal(
      fatal[0]?.msg,
      `worker cannot serve: bind EADDRINUSE (address already in use): port ${port} on every interface; something else listens on port ${port} (another program, or another instance of this service): stop it, or set another PORT`,
    );
  } finally {
    holder.close();
  }
});

/**
 * Runs the service in a process group of its own within the test's session, as a shell job: the
 * kernel stops a process there on SIGTTIN or SIGTTOU (in an orphaned group, such as a container's
 * or a new session's, it would not).
 */
const IN_OWN_GROUP = `exec perl -e 'setpgrp(0, 0); exec @ARGV' "$0" "$@"`;

/**
 * True once a forked worker runs Node (cluster's NODE_UNIQUE_ID is in its environment): still in
 * Node's own start-up, before it can ignore a signal.
 */
function runsWorkerNode(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').includes('NODE_UNIQUE_ID=');
  } catch {
    return false;
  }
}

describe('signals sent to the whole process group act once, through the primary', () => {
  it('SIGHUP to the group: one rolling restart, no worker killed by the signal', {
    timeout: 15_000,
  }, async () => {
    const service = await start({ env: { WORKERS: '2' }, detached: true });
    const before = service.liveWorkerPids();
    process.kill(-service.pid, 'SIGHUP');
    await service.waitForLog((l) => l.msg === 'rolling restart complete');
    const after = service.liveWorkerPids();
    assert.equal(after.length, 2, service.dump());
    for (const pid of after) assert.ok(!before.includes(pid), `pid ${pid} was not replaced`);
    const exits = service.logs.filter((l) => typeof l.workerPid === 'number' && l.code !== undefined);
    assert.deepEqual(
      exits.map((l) => [l.code, l.signal ?? null]),
      before.map(() => [0, null]),
      service.dump(),
    );
  });

  it('SIGHUP to the group twice, the second while a new worker boots: two whole rolls, none aborted', {
    timeout: 20_000,
  }, async () => {
    const service = await start({ env: { WORKERS: '2' }, detached: true });
    const before = service.liveWorkerPids();
    process.kill(-service.pid, 'SIGHUP');
    // The next group signal as soon as the new worker exists: it finds the worker starting.
    await pollUntil(() => service.childPids().length >= 3, 'a third worker');
    process.kill(-service.pid, 'SIGHUP');
    const rolls = () => service.logs.filter((l) => l.msg === 'rolling restart complete').length;
    await service.waitForLog((l) => /rolling restart aborted/.test(l.msg) || rolls() === 2, 'two rolls');
    assert.equal(service.logs.filter((l) => /rolling restart aborted/.test(l.msg)).length, 0, service.dump());
    const after = service.liveWorkerPids();
    assert.equal(after.length, 2, service.dump());
    for (const pid of after) assert.ok(!before.includes(pid), `pid ${pid} was not replaced`);
  });

  it('SIGTTIN to the group while a new worker starts: the worker it stopped is continued, not killed as a failed boot', {
    timeout: 30_000,
  }, async () => {
    const service = await start({
      env: { WORKERS: '1', BOOT_TIMEOUT_MS: '3000' },
      wrap: IN_OWN_GROUP,
    });
    const [first] = service.liveWorkerPids();
    const isReady = (l: LogLine) => l.msg === 'worker ready';
    const readyBefore = service.logs.filter(isReady).length;
    process.kill(-service.pid, 'SIGTTIN');
    // The new worker once it runs Node. Between the fork and that exec the signal would stop it
    // where the primary waits for the exec (README: Signals).
    await pollUntil(
      () => service.childPids().some((pid) => pid !== first && runsWorkerNode(pid)),
      'a new worker',
    );
    process.kill(-service.pid, 'SIGTTIN');
    // Counted from before the first signal: that worker may be ready before the second is sent.
    await service.waitForLog(
      () => service.logs.filter(isReady).length >= readyBefore + 2,
      'two workers ready',
    );
    assert.equal(service.logs.filter((l) => /did not become ready/.test(l.msg)).length, 0, service.dump());
    assert.equal(service.liveWorkerPids().length, 3, service.dump());
  });

  it("SIGTTOU to the group while a crashed worker's replacement starts: the replacement is continued and serves", {
    timeout: 30_000,
  }, async () => {
    const service = await start({
      env: { WORKERS: '3', BOOT_TIMEOUT_MS: '3000' },
      wrap: IN_OWN_GROUP,
    });
    const before = new Set(service.childPids());
    const slot0 = service.logs.find((l) => l.msg === 'worker ready' && l.slot === 0)?.workerPid as number;
    process.kill(slot0, 'SIGKILL');
    await pollUntil(
      () => service.childPids().some((pid) => !before.has(pid) && runsWorkerNode(pid)),
      'a replacement',
    );
    const replacement = service.childPids().find((pid) => !before.has(pid)) as number;
    // Slot 2 goes; the replacement, in slot 0, must not stay stopped by the signal.
    process.kill(-service.pid, 'SIGTTOU');
    await service.waitForLog(
      (l) => l.msg === 'worker ready' && l.workerPid === replacement,
      'the replacement ready',
      10_000,
    );
    assert.equal(service.logs.filter((l) => /did not become ready/.test(l.msg)).length, 0, service.dump());
  });

  it('control signals caught before the supervisor runs are handed to it in the order they came, then each as it comes', async () => {
    // At WORKERS=1, SIGTTOU then SIGTTIN during start-up must leave 2 workers, not 1. In a process
    // of its own: the queue catches SIGTERM and SIGINT for good. Neither signal-number order nor
    // its reverse.
    const queue = new URL('../src/signal-queue.js', import.meta.url).href;
    const script = `
      import { SignalQueue } from ${JSON.stringify(queue)};
      const signals = new SignalQueue();
      // Signal handlers keep no process alive while it waits for one.
      const alive = setInterval(() => {}, 1_000);
      for (const signal of ['SIGTTOU', 'SIGHUP', 'SIGTTIN']) {
        // Added after the queue's own listener: called once the queue has seen the signal.
        const seen = new Promise((resolve) => process.once(signal, resolve));
        process.kill(process.pid, signal);
        await seen;
      }
      const got = [];
      signals.forward((signal) => got.push(signal));
      const seen = new Promise((resolve) => process.once('SIGHUP', resolve));
      process.kill(process.pid, 'SIGHUP');
      await seen;
      clearInterval(alive);
      process.stdout.write(JSON.stringify(got));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), ['SIGTTOU', 'SIGHUP', 'SIGTTIN', 'SIGHUP']);
  });

  it('signals are caught from the start: a SIGTERM before the first log line stops the service, exit 0', async () => {
    // As PID 1 in a container, a signal with no handler is dropped: a `docker stop` during
    // start-up waited out its 10 s. The kernel's mask of caught signals shows the handlers.
    const service = await start({ env: { WORKERS: '2' }, ready: 0 });
    const catches = (signo: number) => {
      const mask = /SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${service.pid}/status`, 'utf8'))?.[1];
      return ((BigInt(`0x${mask ?? 0}`) >> BigInt(signo - 1)) & 1n) === 1n;
    };
    await pollUntil(() => catches(1 /* SIGHUP: Node catches SIGTERM itself */), 'SIGHUP caught');
    assert.equal(service.logs.length, 0, 'the primary logged before it caught the control signals');
    service.proc.kill('SIGTERM');
    const { code, signal } = await service.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, service.dump());
    assert.ok(
      service.logs.some((l) => l.msg === 'SIGTERM: shutting down'),
      service.dump(),
    );
  });

  it('the primary and each worker catch the control signals before launch.js and its imports load', async () => {
    const fixture = new URL('fixtures/signals-at-launch.js', import.meta.url).href;
    const service = await start({ env: { WORKERS: '2', NODE_OPTIONS: `--import=${fixture}` } });
    const loads = service.logs.filter((l) => l.msg === 'fixture: launch.js loads');
    assert.deepEqual(
      loads.map((l) => [l.role, l.sighupListeners]).sort(),
      [
        ['primary', 1],
        ['worker', 1],
        ['worker', 1],
      ],
      service.dump(),
    );
  });

  it('a SIGTERM that comes while the port is probed, before the supervisor runs, is kept and acted on: exit 0', async () => {
    const fixture = new URL('fixtures/sigterm-at-probe.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '2', BALANCE: 'reuseport', NODE_OPTIONS: `--import=${fixture}` },
      ready: 0,
    });
    const { code, signal } = await service.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, service.dump());
    assert.ok(
      service.logs.some((l) => l.msg === 'SIGTERM: shutting down'),
      service.dump(),
    );
  });

  it('SIGTERM to the group: /readyz is 503 while SHUTDOWN_DELAY_MS runs, each worker waits it, then exit 0', {
    timeout: 15_000,
  }, async () => {
    const service = await start({ env: { WORKERS: '2', SHUTDOWN_DELAY_MS: '1000' }, detached: true });
    const signalled = performance.now();
    process.kill(-service.pid, 'SIGTERM');
    await service.waitForMsgCount('worker draining', 2);
    const ready = await request(`${service.url}/readyz`);
    assert.equal(ready.statusCode, 503);
    await ready.body.text();
    const draining = service.logs.filter((l) => l.msg === 'worker draining');
    assert.deepEqual(
      draining.map((l) => l.delayMs),
      [1000, 1000],
    );
    const { code } = await service.exited;
    assert.equal(code, 0);
    // A lower bound: the delay was waited, not only announced.
    assert.ok(performance.now() - signalled >= 1000, 'stopped before SHUTDOWN_DELAY_MS');
  });
});

describe('--healthcheck (Docker HEALTHCHECK)', () => {
  const healthcheck = async (port: number, env: Record<string, string> = {}) => {
    const result = await run(process.execPath, [MAIN, '--healthcheck'], {
      env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', ...env },
    }).catch((err: { code: number; stdout: string }) => err);
    return { code: 'code' in result ? result.code : 0, stdout: result.stdout };
  };

  it('asks loopback for a wildcard HOST in every spelling, and a specific HOST itself', () => {
    for (const wildcard of [undefined, '0.0.0.0', '0', '::', '::0', '0:0:0:0:0:0:0:0'])
      assert.equal(healthcheckHost(wildcard), '127.0.0.1', String(wildcard));
    for (const specific of ['127.0.0.2', '::1', 'localhost', '0.0.0.1', '1.2.3.4.5'])
      assert.equal(healthcheckHost(specific), specific);
  });

  it('exits 0 when /readyz answers 200, 1 when nothing listens', async () => {
    const service = await start({ env: { WORKERS: '1' } });
    assert.deepEqual(await healthcheck(service.port).then((r) => [r.code, r.stdout]), [0, 'readyz: 200\n']);
    const closed = await healthcheck(await freePort());
    assert.equal(closed.code, 1);
    assert.match(closed.stdout, /ECONNREFUSED/);
  });

  it('exits 0 for a HOST that is an IPv6 address with a zone (::1%lo), which makes no Host header', async () => {
    const service = await start({ env: { WORKERS: '1', HOST: '::1%lo' } });
    const { code, stdout } = await healthcheck(service.port, { HOST: '::1%lo' });
    assert.deepEqual([code, stdout], [0, 'readyz: 200\n']);
  });

  it('exits 1 while /readyz answers 503: a stopping service is not healthy', async () => {
    const service = await start({ env: { WORKERS: '1', SHUTDOWN_DELAY_MS: '5000' } });
    service.signal('SIGTERM');
    await service.waitForMsgCount('worker draining', 1);
    const { code, stdout } = await healthcheck(service.port);
    assert.deepEqual([code, stdout], [1, 'readyz: 503\n']);
    // Hurry the stop past SHUTDOWN_DELAY_MS. Not SIGTERM again: within REPEATED_STOP_MS (100 ms)
    // of the first it is taken as that one sent twice, and a fast machine runs the check in less.
    service.signal('SIGINT');
    assert.equal((await service.exited).code, ExitCode.forcedStop);
  });

  it('gives up after 2 s in all, even on an answer that trickles in a byte at a time', {
    timeout: 10_000,
  }, async (t) => {
    // 38 bytes at one per 100 ms: whole after 3.8 s, so a timeout that restarts with each byte passes.
    const reply = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    const sockets: Socket[] = [];
    const trickle = createServer((socket) => {
      sockets.push(socket);
      let i = 0;
      const timer = setInterval(() => {
        if (i < reply.length) socket.write(reply[i++] as string);
      }, 100);
      socket.on('close', () => clearInterval(timer));
      socket.on('error', () => clearInterval(timer));
    }).listen(0, '127.0.0.1');
    await once(trickle, 'listening');
    // Destroyed, not waited for: a check that failed this test may have left its connection open.
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      trickle.close();
    });
    const { code, stdout } = await healthcheck((trickle.address() as { port: number }).port);
    assert.equal(code, 1, stdout);
    assert.match(stdout, /no answer within 2000 ms/);
  });

  it('a control signal while the check waits for its answer ends it as unhealthy (1)', async (t) => {
    // Takes the connection and never answers: the check is waiting when the signal comes.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const check = spawn(process.execPath, [MAIN, '--healthcheck'], {
      env: { PATH: process.env.PATH ?? '', PORT: String((silent.address() as { port: number }).port) },
      stdio: 'ignore',
    });
    const exited = once(check, 'exit');
    await once(silent, 'connection');
    check.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.deepEqual({ code, signal }, { code: 1, signal: null });
  });

  it('an invalid configuration is unhealthy (1), not 2, which Docker reserves', async () => {
    // A healthy service on the port: only the configuration can make the check fail.
    const service = await start({ env: { WORKERS: '1' } });
    const { code, stdout } = await healthcheck(service.port, { HEADERS_TIMEOUT_MS: '5' });
    assert.equal(code, 1);
    assert.match(stdout, /HEADERS_TIMEOUT_MS must be/);
  });

  it('an unknown argument beside --healthcheck is unhealthy (1) too', async () => {
    const result = await run(process.execPath, [MAIN, '--healthcheck', '--verbose'], {
      env: { PATH: process.env.PATH ?? '' },
    }).catch((err: { code: number; stdout: string }) => err);
    assert.equal('code' in result ? result.code : 0, 1);
    const line = JSON.parse(result.stdout) as { msg: string };
    assert.match(line.msg, /^unknown argument "--verbose"/);
  });
});

describe('graceful stop', () => {
  it('SIGTERM during an in-flight request: the request completes, then exit 0', async (t) => {
    const service = await start({ env: { WORKERS: '1' } });
    // A kept-alive connection, idle once answered: its close marks the drain's idle grace.
    const idle = connect(service.port, '127.0.0.1');
    t.after(() => idle.destroy());
    const idleClosed = once(idle, 'close');
    idle.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(idle, 'data');
    const socket = connect(service.port, '127.0.0.1');
    const closed = once(socket, 'close');
    await once(socket, 'connect');
    // Half a request, waiting for the rest of the body.
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab');
    let reply = '';
    socket.setEncoding('utf8').on('data', (d: string) => {
      reply += d;
    });
    // Answered by the same worker after it: by then the worker has accepted this connection. A
    // connection still in the kernel's queue when the only listener closes is reset (a known
    // limit, not this test's subject): under load that happened once in 14 runs.
    await greetingPid(service.url);
    service.signal('SIGTERM');
    await service.waitForLog((l) => l.msg === 'worker draining');
    // The idle connection is closed once the grace is over; the one in a request is not.
    await idleClosed;
    socket.end('cd');
    await closed;
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.match(reply, /Hello, Docker world from/);
    assert.match(reply, /Connection: close/i);
    const { code } = await service.exited;
    assert.equal(code, 0);
  });

  for (const allowHalfOpen of [false, true]) {
    it(`a client in the middle of a request head at SIGTERM gets 408 after the idle grace: exit 0, not the drain deadline${allowHalfOpen ? ' (a client that keeps its own side open after the close)' : ''}`, async (t) => {
      const service = await start({ env: { WORKERS: '1' } });
      const socket = connect({ port: service.port, host: '127.0.0.1', allowHalfOpen });
      t.after(() => socket.destroy());
      await once(socket, 'connect');
      let reply = '';
      socket.setEncoding('utf8').on('data', (d: string) => {
        reply += d;
      });
      socket.write('GET / HTTP/1.1\r\nHo');
      // Answered by the same worker after it: by then the worker has read the half head.
      await greetingPid(service.url);
      service.signal('SIGTERM');
      // The server's close; a client that keeps its side open never closes on its own.
      await once(socket, 'end');
      assert.match(reply, /^HTTP\/1\.1 408 /);
      assert.deepEqual(await service.exited, { code: ExitCode.ok, signal: null }, service.dump());
      assert.ok(!service.logs.some((l) => /did not finish draining/.test(l.msg)), service.dump());
    });
  }

  it('an idle kept-alive connection with DRAIN_TIMEOUT_MS under the 500 ms idle grace: closed in time, exit 0', async () => {
    const service = await start({ env: { WORKERS: '1', DRAIN_TIMEOUT_MS: '200' } });
    const socket = connect(service.port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('utf8').on('data', (d: string) => {
      reply += d;
    });
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    while (!reply.includes('Hello, Docker world')) await once(socket, 'data');
    // Now idle and kept alive, as behind any proxy.
    service.signal('SIGTERM');
    await once(socket, 'close');
    const { code } = await service.exited;
    assert.equal(code, ExitCode.ok, service.dump());
    assert.ok(!service.logs.some((l) => /did not finish draining/.test(l.msg)), service.dump());
  });
});
