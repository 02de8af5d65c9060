/** Issue 3's evidence: each fault happens under continuous load, and failed requests are counted. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import type { Balance } from '../src/config.js';
import { ExitCode } from '../src/exit-codes.js';
import { greetingPid, Load } from './helpers/load.js';
import { isAlive, type Service, servicesStoppedAfterEach } from './helpers/service.js';

const loads: Load[] = [];
function load(...args: ConstructorParameters<typeof Load>): Load {
  const l = new Load(...args);
  loads.push(l);
  return l;
}
// Registered first, so it runs first: the load stops before the services do.
afterEach(async () => {
  for (const l of loads.splice(0)) await l.stop();
});
const start = servicesStoppedAfterEach();

/** Waits until no process with this pid exists; a non-child's death has no event to await. */
async function waitForDeath(pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

/**
 * A new cgroup of the pids controller (what `docker run --pids-limit` sets), or why none can be
 * made here (then the test skips): cgroup v1's hierarchy, or v2's where pids is delegated.
 */
function makePidsCgroup(): { dir: string } | { skip: string } {
  const base = existsSync('/sys/fs/cgroup/pids') ? '/sys/fs/cgroup/pids' : '/sys/fs/cgroup';
  if (!existsSync(`${base}/cgroup.procs`)) return { skip: 'no cgroup hierarchy mounted' };
  if (base === '/sys/fs/cgroup' && !readFileSync(`${base}/cgroup.subtree_control`, 'utf8').includes('pids'))
    return { skip: 'the cgroup v2 pids controller is not delegated here' };
  const dir = `${base}/myservice-test-${process.pid}-pids`;
  try {
    mkdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
      return { skip: `cannot create ${dir} (${code})` };
    throw err;
  }
  return { dir };
}

describe('fault tolerance under load', () => {
  it('1. SIGKILL one of two workers: no more requests fail than were in flight (4); replaced after 100 ms back-off', async (t) => {
    const service = await start({ env: { WORKERS: '2' } });
    const traffic = load(service.url, { concurrency: 4 });
    await traffic.waitForOk(200);
    const [victim] = service.liveWorkerPids();
    const killedAt = Date.now();
    process.kill(victim as number, 'SIGKILL');
    const ready = await service.waitForLog((l) => l.msg === 'worker ready' && (l.time as number) > killedAt);
    t.diagnostic(`back to 2 workers ${(ready.time as number) - killedAt} ms after the kill`);
    assert.equal(service.logs.find((l) => l.msg === 'worker exited unexpectedly')?.restartInMs, 100);
    // A lower bound: the back-off was waited, not only announced.
    assert.ok((ready.time as number) - killedAt >= 100, 'replaced before the 100 ms back-off');
    await traffic.waitForOk(200);
    await traffic.stop();
    t.diagnostic(traffic.summary());
    assert.ok(traffic.failed <= 4, `at most the 4 in-flight requests fail: ${traffic.summary()}`);
    assert.equal(service.liveWorkerPids().length, 2);
  });

  it('2a. an unbindable HOST exits 3 at once: a bind error is never retried', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine. Nothing is sent to it.
    const service = await start({ env: { WORKERS: '2', HOST: '192.0.2.1' }, ready: 0 });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.bind, service.dump());
    assert.match(
      service.logs.find((l) => l.level === 60)?.msg ?? '',
      /EADDRNOTAVAIL.*; HOST=192\.0\.2\.1 is no address of this machine/,
    );
    assert.equal(service.logs.filter((l) => l.msg === 'worker exited unexpectedly').length, 0);
  });

  it('2b. workers that never become ready: exit 4 after CRASH_LOOP_LIMIT boot failures, forks bounded', async () => {
    const service = await start({
      env: { WORKERS: '2', BOOT_TIMEOUT_MS: '1', CRASH_LOOP_LIMIT: '4' },
      ready: 0,
    });
    const { code } = await service.exited;
    assert.equal(code, ExitCode.crashLoop, service.dump());
    const failures = service.logs.filter((l) => l.msg === 'worker did not become ready in time; killing it');
    assert.ok(failures.length >= 4 && failures.length <= 2 + 4, `boot failures: ${failures.length}`);
    assert.ok(service.logs.some((l) => l.level === 60 && /4 workers in a row failed/.test(l.msg)));
  });

  it('2c. SIGTTIN while the release on disk is broken: the new slot keeps failing, the serving workers keep serving', async (t) => {
    const marker = join(await mkdtemp(join(tmpdir(), 'bad-release-')), 'bad');
    t.after(() => rm(dirname(marker), { recursive: true }));
    const fixture = new URL('fixtures/bad-release.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '2', NODE_OPTIONS: `--import=${fixture}`, BAD_RELEASE_MARKER: marker },
    });
    const serving = service.liveWorkerPids().sort();
    const traffic = load(service.url, { concurrency: 2 });
    await traffic.waitForOk(20);
    await writeFile(marker, '');
    service.signal('SIGTTIN');
    // CRASH_LOOP_LIMIT (5) boot failures: the primary gave up there, draining the two that served.
    await service.waitForLog((l) =>
      /^5 workers in a row failed before becoming ready; 2 still serve/.test(l.msg),
    );
    await traffic.waitForOk(20);
    await traffic.stop();
    assert.equal(traffic.failed, 0, traffic.summary());
    assert.deepEqual(
      service
        .liveWorkerPids()
        .filter((pid) => serving.includes(pid))
        .sort(),
      serving,
    );
    assert.deepEqual(await service.stop(), { code: 0, signal: null });
  });

  it('2d. a fork that fails (the pids limit reached: EAGAIN) is a failed boot, retried until the limit is raised; SIGTERM exits 0', async (t) => {
    const cgroup = makePidsCgroup();
    if ('skip' in cgroup) {
      t.skip(cgroup.skip);
      return;
    }
    const { dir } = cgroup;
    // Join the cgroup first, then exec node: the primary and its workers count toward the limit.
    const service = await start({
      env: { WORKERS: '1' },
      wrap: `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`,
    });
    t.after(async () => {
      await service.stop();
      rmdirSync(dir);
    });
    const traffic = load(service.url, { concurrency: 2 });
    await traffic.waitForOk(20);
    // No task more: the next fork fails, and a fork that fails never exits.
    writeFileSync(`${dir}/pids.max`, readFileSync(`${dir}/pids.current`, 'utf8'));
    service.signal('SIGTTIN');
    await service.waitForLog((l) => /EAGAIN/.test(JSON.stringify(l.err)), 'a fork failing with EAGAIN');
    writeFileSync(`${dir}/pids.max`, 'max');
    await service.waitForMsgCount('worker ready', 1);
    await traffic.stop();
    assert.equal(traffic.failed, 0, traffic.summary());
    assert.equal(service.liveWorkerPids().length, 2, service.dump());
    assert.deepEqual(await service.stop(), { code: 0, signal: null });
  });

  it('2e. a fork that throws (E2BIG, ENOMEM: injected) is a failed boot too: the primary keeps serving and retries', async (t) => {
    const marker = join(await mkdtemp(join(tmpdir(), 'fork-throws-')), 'throw');
    t.after(() => rm(dirname(marker), { recursive: true, force: true }));
    const fixture = new URL('fixtures/fork-throws.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '1', NODE_OPTIONS: `--import=${fixture}`, FORK_THROWS_MARKER: marker },
    });
    const traffic = load(service.url, { concurrency: 2 });
    await traffic.waitForOk(20);
    await writeFile(marker, '');
    service.signal('SIGTTIN');
    await service.waitForMsgCount('worker could not be started', 2);
    await rm(marker);
    await service.waitForMsgCount('worker ready', 1);
    await traffic.stop();
    assert.equal(traffic.failed, 0, traffic.summary());
    assert.equal(service.liveWorkerPids().length, 2, service.dump());
    assert.deepEqual(await service.stop(), { code: 0, signal: null });
  });

  it('2f. an uncaught exception in the primary exits 1 and takes every worker with it, a stopped one too', async () => {
    const fixture = new URL('fixtures/primary-throws.js', import.meta.url).href;
    const service = await start({ env: { WORKERS: '2', NODE_OPTIONS: `--import=${fixture}` } });
    const [stopped, running] = service.liveWorkerPids() as [number, number];
    // A stopped worker never reads that its IPC channel closed: only a kill ends it.
    process.kill(stopped, 'SIGSTOP');
    service.signal('SIGUSR2');
    assert.equal((await service.exited).code, ExitCode.internal);
    const fatal = service.logs.find((l) => l.msg === 'uncaught exception in the primary');
    assert.match(String((fatal?.err as { message?: string } | undefined)?.message), /injected/);
    assert.deepEqual([await waitForDeath(stopped), await waitForDeath(running)], [true, true]);
  });

  it('3. SIGSTOP a worker: killed after the heartbeat timeout and replaced', async (t) => {
    const service = await start({
      env: { WORKERS: '2', HEARTBEAT_INTERVAL_MS: '100', HEARTBEAT_TIMEOUT_MS: '1000' },
    });
    const traffic = load(service.url, { concurrency: 4, newConnections: true });
    await traffic.waitForOk(100);
    const [victim] = service.liveWorkerPids();
    const stoppedAt = Date.now();
    process.kill(victim as number, 'SIGSTOP');
    const hung = await service.waitForLog((l) => l.msg === 'worker is hung (no heartbeat); killing it');
    assert.equal(hung.workerPid, victim);
    await service.waitForLog((l) => l.msg === 'worker ready' && (l.time as number) > stoppedAt);
    t.diagnostic(`killed ${(hung.time as number) - stoppedAt} ms after SIGSTOP (timeout 1000 ms)`);
    // Not before its time, by the primary's own count of the silence (no timing of the test's).
    assert.ok((hung.silentMs as number) >= 1000, `killed after ${hung.silentMs} ms of silence`);
    await traffic.waitForOk(100);
    await traffic.stop();
    t.diagnostic(traffic.summary());
    assert.ok(traffic.failed <= 4, traffic.summary());
    assert.equal(await waitForDeath(victim as number), true);
  });

  /**
   * After a stop of the primary: once it has judged the time it missed (its first log line about
   * it since `from`) and answered a scrape, traffic still flows, nothing failed, the same workers serve.
   */
  async function assertNoWorkerKilled(
    t: TestContext,
    service: Service,
    traffic: Load,
    workers: number[],
    from: number,
  ) {
    await service.waitForLog(
      (l) =>
        service.logs.indexOf(l) >= from &&
        (l.msg.startsWith('the primary did not run for a while') || /hung/.test(l.msg)),
      'the primary judging the time it missed',
    );
    // The primary's answer to a scrape comes after that turn's decisions.
    await (await request(`${service.url}/metrics`)).body.text();
    await traffic.waitForOk(50);
    await traffic.stop();
    t.diagnostic(traffic.summary());
    assert.equal(traffic.failed, 0, traffic.summary());
    assert.deepEqual(service.liveWorkerPids().sort(), workers, service.dump());
    assert.ok(!service.logs.some((l) => /hung/.test(l.msg)), service.dump());
  }

  it('3b. the primary itself stopped past the heartbeat timeout (docker pause, SIGSTOP): no worker is killed when it continues', async (t) => {
    const service = await start({
      env: { WORKERS: '2', HEARTBEAT_INTERVAL_MS: '100', HEARTBEAT_TIMEOUT_MS: '1000' },
    });
    const traffic = load(service.url, { concurrency: 2 });
    await traffic.waitForOk(50);
    const workers = service.liveWorkerPids().sort();
    service.signal('SIGSTOP');
    // Nothing to await while the primary is stopped: the workers' heartbeats queue in the pipes.
    await delay(1_500);
    const from = service.logs.length;
    service.signal('SIGCONT');
    await assertNoWorkerKilled(t, service, traffic, workers, from);
  });

  it('3c. every process of the service stopped past the heartbeat timeout (docker pause freezes the container): none is killed when they continue', async (t) => {
    const service = await start({
      env: { WORKERS: '2', HEARTBEAT_INTERVAL_MS: '100', HEARTBEAT_TIMEOUT_MS: '1000' },
      detached: true,
    });
    const traffic = load(service.url, { concurrency: 2 });
    await traffic.waitForOk(50);
    const workers = service.liveWorkerPids().sort();
    process.kill(-service.pid, 'SIGSTOP');
    // The pause itself is the fault: frozen workers send no heartbeat, so none queues meanwhile.
    await delay(1_500);
    const from = service.logs.length;
    process.kill(-service.pid, 'SIGCONT');
    await assertNoWorkerKilled(t, service, traffic, workers, from);
  });

  it('3d. the wall clock stepped back an hour during a drain: the drain deadline still comes on time (exit 5)', async (t) => {
    const fixture = new URL('fixtures/clock-step.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '1', DRAIN_TIMEOUT_MS: '1000', NODE_OPTIONS: `--import=${fixture}` },
    });
    const [worker] = service.liveWorkerPids() as [number];
    // A stopped worker cannot finish draining: only the deadline ends the stop.
    process.kill(worker, 'SIGSTOP');
    t.after(() => {
      if (isAlive(worker)) process.kill(worker, 'SIGKILL');
    });
    service.signal('SIGTERM');
    // With the step counted, the deadline would come an hour late.
    await service.waitForLog(
      (l) => l.msg === 'worker did not finish draining in time; killing it',
      'the drain deadline',
      10_000,
    );
    const { code } = await service.exited;
    assert.equal(code, ExitCode.forcedStop, service.dump());
    assert.equal(await waitForDeath(worker), true);
  });

  for (const newConnections of [true, false]) {
    it(`4. SIGTERM under load (${newConnections ? 'new connection per request' : 'keep-alive'}): every request sent or started in the first 800 ms of SHUTDOWN_DELAY_MS (1 s) gets a full response, exit 0 after the delay`, async (t) => {
      const service = await start({ env: { WORKERS: '2', SHUTDOWN_DELAY_MS: '1000' } });
      const traffic = load(service.url, { concurrency: 4, newConnections });
      await traffic.waitForOk(200);
      const signalAt = performance.now();
      service.signal('SIGTERM');
      const { code } = await service.exited;
      const exitedAt = performance.now();
      await traffic.stop();
      assert.equal(code, 0, service.dump());
      assert.ok(
        exitedAt - signalAt >= 1_000,
        `exited ${Math.round(exitedAt - signalAt)} ms after the signal`,
      );
      // Requests that reach a listener after it closes (1 s after the signal) may be refused. One
      // sent, or started (a refused connect sends nothing), in the first 800 ms may not fail,
      // whatever the workers do while they drain: 200 ms is the margin for a connect that comes
      // late after its start, on a busy machine.
      const early = (f: (typeof traffic.failures)[number]) => (f.sentAt ?? f.startedAt) < signalAt + 800;
      const lost = traffic.failures.filter(early);
      assert.ok(traffic.lastOkAt > signalAt + 800, 'requests were answered through the delay');
      t.diagnostic(`${traffic.summary()}; failures sent in the first 800 ms: ${lost.length}`);
      assert.deepEqual(lost, [], traffic.summary());
    });
  }

  for (const balance of ['reuseport', 'round-robin'] as Balance[]) {
    it(`5. ten SIGHUP rolling restarts under load (${balance}): zero failed requests, every pid changes`, async (t) => {
      // The service turns net.ipv4.tcp_migrate_req on where it can (as root), and no run turns it
      // off again: start from 0, or a service that no longer sets it would pass on a machine an
      // earlier run left at 1.
      const sysctl = '/proc/sys/net/ipv4/tcp_migrate_req';
      let migrateWas: string | undefined;
      if (balance === 'reuseport') {
        try {
          migrateWas = readFileSync(sysctl, 'utf8');
          writeFileSync(sysctl, '0');
          t.after(() => writeFileSync(sysctl, migrateWas as string));
        } catch {
          migrateWas = undefined; // not Linux ≥ 5.14, or not root: the service says so and rolls on
        }
      }
      const service = await start({ env: { WORKERS: '2', BALANCE: balance } });
      if (migrateWas !== undefined)
        assert.ok(
          service.logs.some((l) => l.msg.startsWith('set net.ipv4.tcp_migrate_req=1')),
          service.dump(),
        );
      const before = new Set(service.liveWorkerPids());
      const traffic = load(service.url, { concurrency: 4, newConnections: true });
      await traffic.waitForOk(100);
      for (let i = 0; i < 10; i++) {
        service.signal('SIGHUP');
        await service.waitForMsgCount('rolling restart complete', 1);
        await traffic.waitForOk(20);
      }
      await traffic.stop();
      t.diagnostic(traffic.summary());
      assert.equal(traffic.failed, 0, traffic.summary());
      const after = service.liveWorkerPids();
      assert.equal(after.length, 2);
      for (const pid of after) assert.ok(!before.has(pid), `pid ${pid} survived the rolls`);
      assert.equal(service.logs.filter((l) => l.msg === 'worker replaced').length, 20);
    });
  }

  it("6. SIGTTIN ×2 then SIGTTOU ×3: the worker count follows, never below 1, no failed request beyond one lost to the kernel's close race (checked where tcp_migrate_req is on)", async (t) => {
    const service = await start({ env: { WORKERS: '2' } });
    const traffic = load(service.url, { concurrency: 4, newConnections: true });
    await traffic.waitForOk(50);
    const counts: number[] = [];
    for (const signal of ['SIGTTIN', 'SIGTTIN'] as const) {
      service.signal(signal);
      await service.waitForMsgCount('worker ready', 1);
      counts.push(service.liveWorkerPids().length);
    }
    const closesFrom = performance.now();
    for (let i = 0; i < 3; i++) {
      service.signal('SIGTTOU');
      await service.waitForMsgCount('worker stopped', 1);
      counts.push(service.liveWorkerPids().length);
    }
    const closesTo = performance.now();
    service.signal('SIGTTOU');
    await service.waitForLog((l) => l.msg === 'SIGTTOU ignored: at least one worker must run');
    await traffic.waitForOk(50);
    await traffic.stop();
    assert.deepEqual(counts, [3, 4, 3, 2, 1]);
    // Each SIGTTOU closes a listening socket. Linux can lose a connection whose handshake ends on
    // it as it closes, even with tcp_migrate_req=1 (README, Rolling restarts: up to 12 in 1,000
    // scale-downs measured), so one connection reset or closed while they happen is let pass;
    // anything else fails. Without the migration they lost 0 to 7 connections a run.
    const raced = traffic.failures.filter(
      (f) =>
        (f.error === 'ECONNRESET' || f.error === 'UND_ERR_SOCKET') &&
        f.failedAt >= closesFrom &&
        f.failedAt <= closesTo,
    );
    t.diagnostic(`${traffic.summary()}; ${raced.length} reset as a listener closed`);
    // Only where the migration is on (as root, Linux ≥ 5.14): the service logs which.
    const migrates = service.logs.some((l) => /^(set )?net\.ipv4\.tcp_migrate_req=1/.test(l.msg));
    if (migrates) assert.ok(traffic.failed === raced.length && raced.length <= 1, traffic.summary());
    else t.diagnostic('tcp_migrate_req is off here: the failed requests are not checked');
    assert.equal(new Set([await greetingPid(service.url), await greetingPid(service.url)]).size, 1);
  });

  it('7. the primary killed with SIGKILL: no worker survives to serve traffic', async () => {
    const service = await start({ env: { WORKERS: '2' } });
    const workers = service.liveWorkerPids();
    service.signal('SIGKILL');
    await service.exited;
    for (const pid of workers)
      assert.equal(await waitForDeath(pid), true, `worker ${pid} outlived its primary`);
    await assert.rejects(greetingPid(service.url), /ECONNREFUSED/);
  });

  it('7b. the primary SIGKILLed while its worker is busy: the worker exits quietly once its heartbeat fails on the closed channel (EPIPE), with no false fatal line', async () => {
    const fixture = new URL('fixtures/busy-until-orphaned.js', import.meta.url).href;
    const service = await start({
      env: { WORKERS: '1', HEARTBEAT_INTERVAL_MS: '50', NODE_OPTIONS: `--import=${fixture}` },
    });
    const [worker] = service.liveWorkerPids() as [number];
    // stdout ends when its last writer, the worker, has exited.
    const stdoutEnded = new Promise((resolve) => service.proc.stdout?.once('end', resolve));
    const busy = service.waitForLog((l) => l.msg === 'fixture: busy', 'the worker busy');
    process.kill(worker, 'SIGUSR2');
    await busy;
    service.signal('SIGKILL');
    await service.exited;
    await stdoutEnded;
    assert.equal(await waitForDeath(worker), true, `worker ${worker} outlived its primary`);
    assert.deepEqual(
      service.logs.filter((l) => l.level >= 50),
      [],
      'a worker that lost its primary logged an error as if the primary would replace it',
    );
  });
});
