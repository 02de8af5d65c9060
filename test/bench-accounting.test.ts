/** The bench's CPU accounting: processes that exit during a run still count, through their parent's cutime. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { accountCpu, workerChange } from '../scripts/bench/cpu-account.js';
import { CLOCK_TICKS_PER_SECOND, type CpuReading, readTreeCpu } from '../scripts/bench/proc-stats.js';

const reading = (own: number, reaped = 0, startTicks = 1, zombie = false): CpuReading => ({
  startTicks,
  own,
  reaped,
  zombie,
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
