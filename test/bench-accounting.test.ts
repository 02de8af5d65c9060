/** The bench's CPU accounting: processes that exit during a run still count, through their parent's cutime; the rest in nanoseconds. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it, type TestContext } from 'node:test';
import { accountCpu, losesSwitches, workerChange } from '../scripts/bench/cpu-account.js';
import { CLOCK_TICKS_PER_SECOND, type CpuReading, readTreeCpu } from '../scripts/bench/proc-stats.js';

const reading = (own: number, reaped = 0, startTicks = 1, zombie = false): CpuReading => ({
  startTicks,
  own,
  reaped,
  zombie,
});

/** A reading with its threads' schedstat nanoseconds, by tid. */
const threaded = (own: number, threads: Record<number, number>, reaped = 0): CpuReading => ({
  ...reading(own, reaped),
  threadNanos: new Map(Object.entries(threads).map(([tid, ns]) => [Number(tid), ns])),
});

describe('readTreeCpu', () => {
  it('reads the tree again when a child was reaped while it was being read: its time is counted once', () => {
    // Primary 10 and worker 11 (20 ticks). Between reading 10 and reading 11, 11 exits and 10
    // reaps it: the first pass has 11 in neither place; 10's reaped time moved, so it reads again.
    let reaped = false;
    const read = (pid: number): CpuReading | undefined => {
      if (pid === 10) {
        const r = reading(100, reaped ? 20 : 0);
        reaped = true; // the reap happens right after the primary's first reading
        return r;
      }
      return reaped ? undefined : reading(20);
    };
    const tree = () => (reaped ? [10] : [10, 11]);
    const readings = readTreeCpu(10, tree, read);
    const total = [...readings.values()].reduce((sum, r) => sum + r.own + r.reaped, 0);
    assert.equal(total, 120);
  });
});

describe('CPU of a process tree between two readings', () => {
  // Primary 10, workers 11 and 12. During the run: 12 spends 25 ticks, exits and is reaped (its
  // 40 + 25 move to 10's reaped time), 13 starts, spends 30 and is reaped, 14 starts and spends 5.
  const before = new Map([
    [10, reading(100)],
    [11, reading(50)],
    [12, reading(40)],
  ]);
  const after = new Map([
    [10, reading(110, 65 + 30)],
    [11, reading(80)],
    [14, reading(5, 0, 7)],
  ]);

  it('counts workers that exited during the run, and only their time after the first reading', () => {
    const cpu = accountCpu(before, after, 100);
    // 10 + 30 + 25 + 30 + 5 ticks. Own time alone, as the bench counted before, was 45.
    assert.equal(cpu.total, 1);
    assert.equal(cpu.exited, 0.55);
    assert.deepEqual(
      [...cpu.own],
      [
        [10, 0.1],
        [11, 0.3],
        [14, 0.05],
      ],
    );
    assert.deepEqual(workerChange(10, before, after), { exited: [12], started: [14], passing: false });
  });

  it('a zombie counts once, from its own reading: its parent has not received its time yet', () => {
    const zombie = new Map([
      [10, reading(110)],
      [11, reading(80)],
      [12, reading(65, 0, 1, true)],
    ]);
    const cpu = accountCpu(before, zombie, 100);
    assert.equal(cpu.total, 0.65);
    assert.equal(cpu.exited, 0);
    assert.deepEqual(workerChange(10, before, zombie), { exited: [12], started: [], passing: false });
  });

  it('a pid taken by another process is a new process; a worker that came and went is noticed', () => {
    const reused = new Map([
      [10, reading(100)],
      [11, reading(50)],
      [12, reading(3, 0, 99)],
    ]);
    // 12's first process (40 ticks at the start) was reaped by 10 after 2 more ticks.
    reused.set(10, reading(100, 42));
    assert.equal(accountCpu(before, reused, 100).total, 0.05);
    assert.deepEqual(workerChange(10, before, reused), { exited: [12], started: [12], passing: false });
    const passing = new Map([...before, [10, reading(100, 30)]]);
    assert.deepEqual(workerChange(10, before, passing), { exited: [], started: [], passing: true });
    assert.equal(workerChange(10, before, before), undefined);
  });

  it('switches per request are left out when a worker exited or came and went (its switches left with it), not when one only started', () => {
    const started = new Map([...before, [14, reading(5, 0, 77)]]);
    const exited = new Map([
      [10, reading(100, 45)],
      [11, reading(50)],
    ]);
    const passing = new Map([...before, [10, reading(100, 30)]]);
    assert.deepEqual(
      [before, started, exited, passing].map((after) => losesSwitches(workerChange(10, before, after))),
      [false, false, true, true],
    );
  });

  it("a worker gone by the end that had reaped children of its own: its whole time at the start, theirs included, is not the run's", () => {
    // 12 had 40 ticks of its own and 10 of a child it had reaped; it spends 5 more, exits and is
    // reaped by 10, whose reaped time grows by 12's whole life: 40 + 10 + 5.
    const start = new Map([
      [10, reading(100)],
      [12, reading(40, 10)],
    ]);
    const cpu = accountCpu(start, new Map([[10, reading(100, 55)]]), 100);
    assert.ok(Math.abs(cpu.total - 0.05) < 1e-12, `${cpu.total}`);
    assert.ok(Math.abs(cpu.exited - 0.05) < 1e-12, `${cpu.exited}`);
  });

  it('on a real tree: a child that burns CPU and is reaped between the readings is counted', async () => {
    // sh waits for a line, runs a child that burns 300 ms of its own CPU time (not of the wall
    // clock, which a loaded machine stretches) and reaps it, says so, then sleeps.
    const burn =
      'const u = () => { const c = process.cpuUsage(); return c.user + c.system; }; while (u() < 300000);';
    const busy = `${process.execPath} -e "${burn}"`;
    const sh = spawn('/bin/sh', ['-c', `read go; ${busy}; echo done; exec sleep 30`], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      await once(sh, 'spawn');
      const first = readTreeCpu(sh.pid as number);
      sh.stdin.write('go\n');
      await once(sh.stdout, 'data');
      const second = readTreeCpu(sh.pid as number);
      const cpu = accountCpu(first, second, CLOCK_TICKS_PER_SECOND);
      assert.ok(cpu.total >= 0.2 && cpu.exited >= 0.2, `total ${cpu.total} s, exited ${cpu.exited} s`);
      assert.equal(workerChange(sh.pid as number, first, second)?.passing, true);
    } finally {
      sh.kill('SIGKILL');
    }
  });
});

describe('CPU in nanoseconds where a process kept its threads', () => {
  it('counts from schedstat, finer than the 10 ms ticks of /proc/<pid>/stat', () => {
    // 4.5 ms in all: 10's ticks say 10 ms (one tick boundary crossed), 11's say 0.
    const before = new Map([
      [10, threaded(100, { 10: 1_000_000_000, 20: 5_000_000 })],
      [11, threaded(50, { 11: 500_000_000 })],
    ]);
    const after = new Map([
      [10, threaded(101, { 10: 1_003_000_000, 20: 5_500_000 })],
      [11, threaded(50, { 11: 501_000_000 })],
    ]);
    const cpu = accountCpu(before, after, 100);
    assert.equal(cpu.nanosecondsOnly, true);
    assert.ok(Math.abs(cpu.total - 0.0045) < 1e-12, `${cpu.total}`);
    assert.ok(Math.abs((cpu.own.get(10) ?? 0) - 0.0035) < 1e-12, `${cpu.own.get(10)}`);
  });

  it('falls back to ticks for a process whose threads changed, or whose time is not all its own or not all in its threads', () => {
    const before = new Map([
      [10, threaded(100, { 10: 1_000_000_000 })],
      [11, threaded(50, { 11: 500_000_000 })],
    ]);
    // 11 started a thread: its 2 ticks count, 10's 3 ms in nanoseconds.
    const newThread = new Map([
      [10, threaded(100, { 10: 1_003_000_000 })],
      [11, threaded(52, { 11: 510_000_000, 12: 1_000_000 })],
    ]);
    const cpu = accountCpu(before, newThread, 100);
    assert.equal(cpu.nanosecondsOnly, false);
    // From here on 11 stays as it was and only 10 differs.
    const with10 = (r: CpuReading) => new Map([...before, [10, r]]);
    assert.ok(Math.abs(cpu.total - 0.023) < 1e-12, `${cpu.total}`);
    // 10 reaped a child that came and went: its 3 ticks are known in ticks only.
    const passing = with10(threaded(100, { 10: 1_003_000_000 }, 3));
    const withChild = accountCpu(before, passing, 100);
    assert.equal(withChild.nanosecondsOnly, false);
    assert.ok(Math.abs(withChild.total - 0.033) < 1e-12, `${withChild.total}`);
    // The same threads at both readings, but 5 ticks against 3 ms: a thread came and went between
    // them, and its time is in the ticks alone.
    const cameAndWent = with10(threaded(105, { 10: 1_003_000_000 }));
    const lostThread = accountCpu(before, cameAndWent, 100);
    assert.equal(lostThread.nanosecondsOnly, false);
    assert.ok(Math.abs(lostThread.total - 0.05) < 1e-12, `${lostThread.total}`);
    // Up to 2 ticks over is the truncation of utime and stime in each reading, not a lost thread.
    const truncated = with10(threaded(101, { 10: 1_000_000_001 }));
    assert.equal(accountCpu(before, truncated, 100).nanosecondsOnly, true);
    // Exactly 2 ticks over is past what truncation explains: the ticks count.
    const twoOver = accountCpu(before, with10(threaded(102, { 10: 1_000_000_000 })), 100);
    assert.equal(twoOver.nanosecondsOnly, false);
    assert.ok(Math.abs(twoOver.total - 0.02) < 1e-12, `${twoOver.total}`);
    // A thread that exited between the readings is missing from the second list: its time is in
    // the ticks alone, even when the threads still there account for the ticks within 2.
    const twoThreads = new Map([[10, threaded(100, { 10: 1_000_000_000, 20: 5_000_000 })]]);
    const threadGone = accountCpu(twoThreads, new Map([[10, threaded(101, { 10: 1_003_000_000 })]]), 100);
    assert.equal(threadGone.nanosecondsOnly, false);
    assert.ok(Math.abs(threadGone.total - 0.01) < 1e-12, `${threadGone.total}`);
    // No schedstat at all (a kernel without CONFIG_SCHED_INFO): ticks, as before.
    const plain = new Map([[10, reading(100)]]);
    assert.equal(accountCpu(plain, new Map([[10, reading(103)]]), 100).nanosecondsOnly, false);
  });

  /**
   * A child that at each line reports its own CPU time so far (getrusage: every thread, those
   * gone included), in microseconds. At "burn" it first burns 25 ms of it; at "thread" it first
   * runs a worker thread that burns 100 ms of its own and exits. Each reading of its tree
   * follows a report, so the two windows differ only by where they start and end in the same few
   * syscalls.
   */
  async function cpuChild(t: TestContext): Promise<{ pid: number; ask: (line: string) => Promise<number> }> {
    const script =
      'const u = () => { const c = process.cpuUsage(); return c.user + c.system; };' +
      'const thread = "const u = () => { const c = process.threadCpuUsage(); return c.user + c.system; };' +
      ' const s = u(); while (u() - s < 100000);";' +
      'const say = () => process.stdout.write(u() + "\\n");' +
      'process.stdin.setEncoding("utf8").on("data", (line) => {' +
      ' if (line.startsWith("burn")) { const s = u(); while (u() - s < 25000); }' +
      ' if (line.startsWith("thread")) new (require("node:worker_threads").Worker)(thread, { eval: true }).on("exit", say);' +
      ' else say(); });';
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    await once(child, 'spawn');
    const ask = async (line: string): Promise<number> => {
      child.stdin.write(`${line}\n`);
      const [said] = await once(child.stdout, 'data');
      return Number(said) / 1e6;
    };
    return { pid: child.pid as number, ask };
  }

  it('on a real process: 25 ms of CPU reads as 25 ms, not as the 20 or 30 that ticks would say', async (t) => {
    const { pid, ask } = await cpuChild(t);
    const start = await ask('now');
    const first = readTreeCpu(pid);
    const measured = (await ask('burn')) - start;
    const cpu = accountCpu(first, readTreeCpu(pid), CLOCK_TICKS_PER_SECOND);
    assert.equal(cpu.nanosecondsOnly, true, 'the child kept its threads');
    assert.ok(Math.abs(cpu.total - measured) < 0.003, `read ${cpu.total} s, child measured ${measured} s`);
  });

  it('on a real process: a thread that came and went between the readings is counted, in ticks', async (t) => {
    const { pid, ask } = await cpuChild(t);
    const start = await ask('now');
    const first = readTreeCpu(pid);
    const measured = (await ask('thread')) - start;
    const second = readTreeCpu(pid);
    assert.deepEqual(
      [...(second.get(pid)?.threadNanos?.keys() ?? [])],
      [...(first.get(pid)?.threadNanos?.keys() ?? [])],
      'the same threads at both readings: the worker thread came and went between them',
    );
    const cpu = accountCpu(first, second, CLOCK_TICKS_PER_SECOND);
    assert.equal(cpu.nanosecondsOnly, false, 'its time is in the ticks alone');
    // Ticks: each reading truncates utime and stime, under 2 ticks in all; and the windows' ends.
    assert.ok(
      Math.abs(cpu.total - measured) < 2 / CLOCK_TICKS_PER_SECOND + 0.003,
      `read ${cpu.total} s, child measured ${measured} s`,
    );
  });
});
