/**
 * CPU time of a process tree between two readings, processes that exited meanwhile included.
 * When a process is waited for, the kernel adds its utime+stime, and the time of the children it
 * had waited for, to its parent's cutime+cstime (getrusage(2), RUSAGE_CHILDREN): nothing is lost
 * as long as the parent that reaps it is in the tree, which a worker's primary is.
 *
 * Those fields count in clock ticks (10 ms), a few percent of a short run's figure. A process
 * whose threads were the same at both readings, and whose ticks say no more, is counted in
 * nanoseconds from its threads' schedstat instead, which sums to the same time (utime+stime is
 * scaled to it).
 */
import type { CpuReading } from './proc-stats.js';

export interface CpuAccount {
  /** CPU seconds the tree spent between the readings. */
  readonly total: number;
  /** Own CPU seconds in that time of each process still there at the end (zombies included). */
  readonly own: ReadonlyMap<number, number>;
  /** The part of `total` spent by processes that were waited for in between. */
  readonly exited: number;
  /** Whether every process's own time came from schedstat's nanoseconds rather than ticks. */
  readonly nanosecondsOnly: boolean;
}

const all = (r: CpuReading): number => r.own + r.reaped;

/**
 * Pure: Σ over the processes at the end of (own + reaped) minus the same at the start, minus
 * what a process gone by the end had spent by the start: its parent's reaped time now holds its
 * whole life, and only the part after the first reading is the run's. A zombie counts as there:
 * its parent has not received its time yet. A pid whose start time changed is another process.
 */
export function accountCpu(
  before: ReadonlyMap<number, CpuReading>,
  after: ReadonlyMap<number, CpuReading>,
  ticksPerSecond: number,
): CpuAccount {
  const same = (pid: number): CpuReading | undefined => {
    const b = before.get(pid);
    return b && b.startTicks === after.get(pid)?.startTicks ? b : undefined;
  };
  let ticks = 0;
  let ownTicks = 0;
  let ownSeconds = 0;
  let nanosecondsOnly = true;
  const own = new Map<number, number>();
  for (const [pid, a] of after) {
    const b = same(pid);
    ticks += all(a) - (b ? all(b) : 0);
    if (a.reaped !== (b?.reaped ?? 0)) nanosecondsOnly = false;
    const mine = a.own - (b?.own ?? 0);
    ownTicks += mine;
    let precise = b ? nanosBetween(b, a) : undefined;
    // A thread that started and exited between the readings is in neither list of threads, only
    // in the ticks, which each reading truncates by under 2: more than that over is time it took.
    if (precise !== undefined && mine - precise * ticksPerSecond >= 2) precise = undefined;
    if (precise === undefined) nanosecondsOnly = false;
    const seconds = precise ?? mine / ticksPerSecond;
    ownSeconds += seconds;
    own.set(pid, seconds);
  }
  for (const [pid, b] of before) {
    if (same(pid)) continue;
    ticks -= all(b);
    nanosecondsOnly = false;
  }
  // Reaped time and what exited processes had spent by the start are known in ticks only.
  const exitedTicks = ticks - ownTicks;
  // Below 0 only if a process was reaped outside the tree (its primary died mid-run).
  const total = Math.max(0, ownSeconds + exitedTicks / ticksPerSecond);
  return { total, own, exited: Math.max(0, exitedTicks) / ticksPerSecond, nanosecondsOnly };
}

/** Seconds a process's threads ran between two readings, if both list the same threads. */
function nanosBetween(before: CpuReading, after: CpuReading): number | undefined {
  const b = before.threadNanos;
  const a = after.threadNanos;
  if (!b || !a || b.size !== a.size) return undefined;
  let nanos = 0;
  for (const [tid, ns] of a) {
    const start = b.get(tid);
    if (start === undefined) return undefined;
    nanos += ns - start;
  }
  return nanos / 1e9;
}

export interface WorkerChange {
  readonly exited: readonly number[];
  readonly started: readonly number[];
  /** A process reaped a child in neither reading: one that started and exited within the run. */
  readonly passing: boolean;
}

/**
 * Pure: whether a run's context switches are short of its requests' — a process gone by the end
 * (or come and gone) took its switches with it. One that started counts from zero: nothing lost.
 */
export function losesSwitches(change: WorkerChange | undefined): boolean {
  return change !== undefined && (change.exited.length > 0 || change.passing);
}

/**
 * Pure: the processes below `root` that exited or started between the readings, or undefined if
 * none did. A worker that came and went in between is in neither reading, but its parent's
 * reaped time grew.
 */
export function workerChange(
  root: number,
  before: ReadonlyMap<number, CpuReading>,
  after: ReadonlyMap<number, CpuReading>,
): WorkerChange | undefined {
  const workers = (readings: ReadonlyMap<number, CpuReading>): string[] =>
    [...readings].filter(([pid, r]) => pid !== root && !r.zombie).map(([pid, r]) => `${pid}:${r.startTicks}`);
  const was = workers(before);
  const is = workers(after);
  const pidOf = (key: string) => Number(key.split(':')[0]);
  const exited = was.filter((k) => !is.includes(k)).map(pidOf);
  const started = is.filter((k) => !was.includes(k)).map(pidOf);
  const passing =
    exited.length === 0 &&
    [...after].some(([pid, a]) => {
      const b = before.get(pid);
      return b?.startTicks === a.startTicks && a.reaped > b.reaped;
    });
  return exited.length || started.length || passing ? { exited, started, passing } : undefined;
}
