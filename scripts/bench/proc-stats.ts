/** What the kernel knows about the server's processes: CPU time, context switches, peak RSS, children (Linux /proc). */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every mainstream Linux build). */
export const CLOCK_TICKS_PER_SECOND = readClockTicks();

function readClockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    // The process exited between listing and reading: it simply is not there any more.
    return undefined;
  }
}

/** Fields of /proc/<pid>/stat after the command name, which may itself contain spaces and ')'. */
function statFields(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/**
 * One reading of a process's CPU time: from /proc/<pid>/stat in clock ticks (10 ms), which count
 * exited threads and reaped children too, and per thread in nanoseconds from schedstat.
 */
export interface CpuReading {
  /** Field 22, ticks after boot: tells a reused pid from the process that had it before. */
  readonly startTicks: number;
  /** utime + stime (fields 14, 15): the process itself, every thread. */
  readonly own: number;
  /** cutime + cstime (fields 16, 17): the children it has waited for, with theirs. */
  readonly reaped: number;
  /** State Z: exited, not yet waited for; its own time is still readable here. */
  readonly zombie: boolean;
  /**
   * Nanoseconds on a CPU of each live thread (first field of /proc/<pid>/task/<tid>/schedstat);
   * absent where the kernel has no schedstat (CONFIG_SCHED_INFO). A thread that exited is
   * missing here but still in `own`.
   */
  readonly threadNanos?: ReadonlyMap<number, number>;
}

/** utime, stime (every thread: libuv's pool and V8's GC threads count too), cutime, cstime; undefined once reaped. */
export function readCpuTimes(pid: number): CpuReading | undefined {
  const f = statFields(pid);
  if (!f) return undefined;
  const n = (i: number) => Number(f[i]);
  const threadNanos = readThreadNanos(pid);
  return {
    startTicks: n(19),
    own: n(11) + n(12),
    reaped: n(13) + n(14),
    zombie: f[0] === 'Z',
    ...(threadNanos ? { threadNanos } : {}),
  };
}

function readThreadNanos(pid: number): Map<number, number> | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const nanos = new Map<number, number>();
  for (const tid of tids) {
    const text = readText(`/proc/${pid}/task/${tid}/schedstat`);
    if (text === undefined) return undefined;
    nanos.set(Number(tid), Number(text.split(' ')[0]));
  }
  return nanos;
}

/**
 * The CPU readings of pid's whole tree at one moment. A child reaped between reading its parent
 * and reading it would be in neither (or, read in the other order, in both), so the tree is read
 * again until no parent's reaped time moved while it was being read.
 */
export function readTreeCpu(
  pid: number,
  tree: (pid: number) => number[] = processTree,
  read: (pid: number) => CpuReading | undefined = readCpuTimes,
): Map<number, CpuReading> {
  for (let attempt = 1; ; attempt++) {
    const readings = new Map<number, CpuReading>();
    for (const p of tree(pid)) {
      const r = read(p);
      if (r) readings.set(p, r);
    }
    const settled = [...readings].every(([p, r]) => read(p)?.reaped === r.reaped);
    if (settled || attempt === 5) return readings;
  }
}

/**
 * When a live process started (field 22, ticks after boot), undefined once it exited (a zombie
 * too): with its pid, it names the process, not whichever one takes the pid next.
 */
export function liveStartTicks(pid: number): number | undefined {
  const f = statFields(pid);
  return f && f[0] !== 'Z' ? Number(f[19]) : undefined;
}

/** The process group of pid (field 5 of proc(5)), undefined where the process is gone. */
export function readProcessGroup(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields ? Number(fields[2]) : undefined;
}

/** Numeric fields of /proc/<pid>/status (units dropped), undefined where the process is gone. */
function readStatusNumbers(pid: number, keys: readonly string[]): number[] | undefined {
  const text = readText(`/proc/${pid}/status`);
  if (text === undefined) return undefined;
  const values: number[] = [];
  for (const key of keys) {
    const match = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
    if (!match) return undefined;
    values.push(Number(match[1]));
  }
  return values;
}

/** Peak resident set size (VmHWM) in bytes. */
export function readPeakRssBytes(pid: number): number | undefined {
  const kb = readStatusNumbers(pid, ['VmHWM'])?.[0];
  return kb === undefined ? undefined : kb * 1024;
}

/**
 * Context switches of the process's main thread, voluntary and not: for Node, the event loop
 * going to sleep in epoll and being woken, or being preempted. /proc/<pid>/status counts the
 * main thread only, which is the one that serves requests.
 */
export function readContextSwitches(pid: number): number | undefined {
  const counts = readStatusNumbers(pid, ['voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches']);
  return counts === undefined ? undefined : (counts[0] as number) + (counts[1] as number);
}

/**
 * Resets VmHWM to the current RSS so the next reading is the peak of one run, not of the
 * process's life ("5" in clear_refs, Linux ≥ 4.0, proc(5)). False where we may not write it.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Direct children; /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN, else scan every ppid. */
function children(pid: number): number[] {
  const fromTasks = childrenFromTasks(pid);
  if (fromTasks) return fromTasks;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    if (Number(statFields(Number(name))?.[1]) === pid) found.push(Number(name));
  }
  return found;
}

function childrenFromTasks(pid: number): number[] | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const tid of tasks) {
    const text = readText(`/proc/${pid}/task/${tid}/children`);
    if (text === undefined) return undefined;
    for (const child of text.split(' ')) if (child.trim() !== '') found.push(Number(child));
  }
  return found;
}

/** The process and all its descendants, parents first. */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...children(tree[i] as number));
  return tree;
}
