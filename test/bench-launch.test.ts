/** Starting the bench's targets: a port taken meanwhile, a failure's message, whose listener it is; roll-drops' waits. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, describe, it } from 'node:test';
import { findExecutable } from '../scripts/bench/commands.js';
import { launch, portTaken, startFailure } from '../scripts/bench/launch.js';
import { listeningInodes, listensAlone } from '../scripts/bench/listener.js';
import { liveStartTicks, processTree, readCpuTimes } from '../scripts/bench/proc-stats.js';
import { waitForCount } from '../scripts/bench/roll-wait.js';
import { stopAndCheck } from '../scripts/bench/run-rounds.js';
import type { TargetSpec } from '../scripts/bench/targets.js';
import { freePort, isAlive, pollUntil, Service } from './helpers/service.js';

const ctx = { plan: { pinned: false, service: [], load: [], reason: 'not pinned' } };
const cluster: TargetSpec = {
  id: 'reuseport-1',
  label: 'reuseport ×1',
  kind: 'cluster',
  workers: 1,
  balance: 'reuseport',
};

/**
 * A listener of this process: a foreign program on the bench's port. Plain, or with SO_REUSEPORT,
 * which the kernel lets a reusePort server of the same user bind beside.
 */
async function holdPort(reusePort = false): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforeign'));
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', reusePort }, resolve));
  after(() => server.close());
  return { server, port: (server.address() as AddressInfo).port };
}

/** The ports to try: the taken one first, then a free one. */
const takenThenFree = (taken: number) => {
  let calls = 0;
  return () => (calls++ === 0 ? Promise.resolve(taken) : freePort());
};

describe('starting a target', () => {
  it('pure: a taken port in Node or nginx words; the output once in the failure', () => {
    assert.ok(portTaken('{"code":"EADDRINUSE","msg":"cannot bind"}'));
    assert.ok(portTaken('bind() to 127.0.0.1:80 failed (98: Address already in use)'));
    assert.ok(!portTaken('DRAIN_TIMEOUT_MS must be an integer'));
    const logs = '{"msg":"bad"}\nstderr line';
    const helper = `service exited (2) before 1× "worker ready"; logs:\n{"msg":"bad"}`;
    assert.equal(startFailure('x', helper, logs), `x: service exited (2) before 1× "worker ready"\n${logs}`);
    assert.equal(startFailure('x', 'not ready within 5 ms', ''), 'x: not ready within 5 ms');
  });

  it("pure: a binary's bytes in the output (pm2=/usr/bin/false) come out printable and capped", () => {
    const elf = readFileSync('/bin/sh').toString('utf8');
    const output = `/usr/bin/false:1\n${elf}\n^\n\nSyntaxError: Invalid or unexpected token\n`;
    const message = startFailure('pm2-runtime -i 2', 'service exited (1) before 2 listening', output);
    assert.doesNotMatch(message, /[^\P{Cc}\t\n]/u);
    assert.ok(message.length < 5_000, `${message.length} characters`);
    assert.match(message, /^pm2-runtime -i 2: service exited \(1\) before 2 listening\n/);
    assert.match(message, /\nSyntaxError: Invalid or unexpected token\n$/);
    assert.equal(startFailure('x', 'm', 'a\tb\u001b[31mc'), 'x: m\na\tb\ufffd[31mc');
  });

  it('a configuration the service refuses fails with its log once', async () => {
    const spec = { ...cluster, env: { DRAIN_TIMEOUT_MS: 'bad' } };
    await assert.rejects(launch(spec, ctx), (err: Error) => {
      assert.equal(err.message.split('DRAIN_TIMEOUT_MS must be').length - 1, 1, err.message);
      return /^reuseport ×1: service exited \(2\)/.test(err.message);
    });
  });

  it('a cluster is ready once every worker listens, so its ready time and its first run count them all', async () => {
    const target = await launch({ ...cluster, id: 'reuseport-3', label: 'reuseport ×3', workers: 3 }, ctx);
    try {
      // With reuseport each worker has a listening socket of its own.
      const port = Number(new URL(target.url).port);
      const listening = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((t) =>
        listeningInodes(readFileSync(t, 'utf8'), port),
      );
      assert.equal(listening.length, 3);
    } finally {
      assert.equal((await target.stop()).code, 0);
    }
  });

  it('a port taken before the service binds it costs a retry on another port, not the round', async () => {
    const { port } = await holdPort();
    const target = await launch(cluster, ctx, takenThenFree(port));
    try {
      assert.notEqual(new URL(target.url).port, String(port));
      assert.equal((await fetch(target.url)).status, 200);
    } finally {
      assert.equal((await target.stop()).code, 0);
    }
  });

  it('the minimal cluster does not share a port with a foreign SO_REUSEPORT listener: it moves to another', async () => {
    const { port } = await holdPort(true);
    const spec: TargetSpec = { id: 'minimal-1', label: 'minimal reuseport ×1', kind: 'minimal', workers: 1 };
    const target = await launch(spec, ctx, takenThenFree(port));
    try {
      assert.notEqual(new URL(target.url).port, String(port));
      assert.match(await (await fetch(target.url)).text(), /^Hello, Docker world from /);
    } finally {
      assert.equal((await target.stop()).code, 0);
    }
  });

  it('nginx is ready on its own listener only, never on a foreign one', {
    skip: !findExecutable('nginx') && 'nginx is not installed',
    timeout: 30_000,
  }, async () => {
    const { port } = await holdPort();
    const nginx = findExecutable('nginx');
    const spec: TargetSpec = { id: 'nginx-1', label: 'nginx ×1', kind: 'nginx', workers: 1 };
    const target = await launch(spec, { ...ctx, nginx }, takenThenFree(port));
    try {
      assert.notEqual(new URL(target.url).port, String(port));
      assert.match(await (await fetch(target.url)).text(), /^Hello, Docker world from /);
    } finally {
      await target.stop();
    }
  });

  it("whose listener: /proc/net/tcp's LISTEN sockets on a port, and whether one process holds them all", async () => {
    const table = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0',
      '   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0',
      '   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0',
    ].join('\n');
    assert.deepEqual(listeningInodes(table, 8080), ['111']);
    const { port } = await holdPort();
    assert.equal(listensAlone(process.pid, port), true);
    const other = spawn('sleep', ['5']);
    after(() => other.kill());
    assert.equal(listensAlone(other.pid as number, port), false);
  });
});

describe('stopping a target after its runs', () => {
  /** A target whose process is `sh` with a `sleep` child, stopped as `stop` says. */
  const fakeTarget = (stop: (sh: number) => { code: number | null; signal: NodeJS.Signals | null }) => {
    const sh = spawn('/bin/sh', ['-c', 'sleep 60 & wait'], { stdio: 'ignore' });
    const pid = sh.pid as number;
    return {
      spec: cluster,
      pid,
      url: 'http://127.0.0.1:1/',
      readyMs: 0,
      metricsUrl: undefined,
      exitStatus: () => undefined,
      stop: async () => stop(pid),
    };
  };

  it('a stop that fails is a problem; a process that outlives its parent is reported and killed', async (t) => {
    const problems: string[] = [];
    const target = fakeTarget((sh) => {
      process.kill(sh, 'SIGKILL'); // its sleep lives on, as a worker would whose primary died
      return { code: 5, signal: null };
    });
    await pollUntil(() => processTree(target.pid).length === 2, 'sh and its sleep');
    const [, sleep] = processTree(target.pid) as [number, number];
    t.after(() => {
      if (isAlive(sleep)) process.kill(sleep, 'SIGKILL');
    });
    await stopAndCheck(target, problems);
    assert.deepEqual(problems, [
      'reuseport ×1 exited with 5 on SIGTERM',
      `reuseport ×1: pid ${sleep} outlived its parent; killed`,
    ]);
    await pollUntil(() => !isAlive(sleep), 'the sleep killed');
  });

  it('a leftover is named by its pid and start time, so a pid another process took is not it; a zombie is gone', async (t) => {
    // sleep 60 never reaps its child, which stays a zombie: pid 1 in a container may do the same.
    const parent = spawn('/bin/sh', ['-c', 'sleep 0 & exec sleep 60'], { stdio: 'ignore' });
    t.after(() => parent.kill('SIGKILL'));
    const pid = parent.pid as number;
    await pollUntil(() => {
      const child = processTree(pid)[1];
      return child !== undefined && readCpuTimes(child)?.zombie === true;
    }, 'a zombie child');
    const zombie = processTree(pid)[1] as number;
    assert.equal(liveStartTicks(zombie), undefined);
    assert.equal(liveStartTicks(pid), readCpuTimes(pid)?.startTicks);
    assert.notEqual(liveStartTicks(pid), undefined);
  });
});

describe("roll-drops' waits on the service log", () => {
  /** A stand-in service printing these log lines, then exiting or not. */
  const fake = (msgs: readonly string[], exit: boolean): Service => {
    const lines = msgs.map((msg) => JSON.stringify({ level: 30, msg, pid: 1 }));
    const code = `console.log(${JSON.stringify(lines.join('\n'))});${exit ? 'process.exit(1)' : 'setTimeout(() => {}, 10_000)'}`;
    const service = new Service(
      spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] }),
      0,
    );
    after(() => service.stop());
    return service;
  };

  it('rejects when the service exits, when a roll is aborted, and at its deadline, instead of hanging', async () => {
    await assert.rejects(
      waitForCount(fake(['worker ready'], true), 'worker ready', 2, 10_000),
      /service exited \(1\)/,
    );
    const aborted = fake(['rolling restart aborted: the new worker failed to start'], false);
    await assert.rejects(
      waitForCount(aborted, 'rolling restart complete', 1, 10_000),
      /^Error: rolling restart aborted/,
    );
    const silent = fake([], false);
    await assert.rejects(
      waitForCount(silent, 'rolling restart complete', 1, 200),
      /no 1× "rolling restart complete" within 200 ms/,
    );
    await silent.stop();
    assert.equal(isAlive(silent.pid), false);
    await waitForCount(fake(['worker ready', 'worker ready'], false), 'worker ready', 2, 10_000);
  });
});
