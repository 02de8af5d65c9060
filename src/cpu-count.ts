/**
 * How many workers `WORKERS=auto` means: the CPUs this process may really use, from the
 * affinity mask and the cgroup CPU quota. os.cpus() counts the host's CPUs and
 * os.availableParallelism() ignores a cgroup v1 quota (it said 2 under --cpus 0.5 here).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join, relative } from 'node:path';

/** Reads a file's text, or undefined when it does not exist or cannot be read. */
export type ReadFile = (path: string) => string | undefined;

export interface CpuLimit {
  /** Workers to start: min(affinity, ceil(quota)), at least 1. */
  readonly workers: number;
  readonly affinity: number | undefined;
  /** The tightest CPU quota in CPUs (1.5 for --cpus 1.5), undefined when unlimited. */
  readonly quota: number | undefined;
  /** Human-readable reasoning for the start-up log. */
  readonly reason: string;
}

/** Counts the CPUs in a list such as "0-3,8,10-11" (Cpus_allowed_list, cpuset.cpus). */
export function countCpuList(list: string): number | undefined {
  let count = 0;
  for (const part of list.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last < first) return undefined;
    count += last - first + 1;
  }
  return count > 0 ? count : undefined;
}

function affinityOf(read: ReadFile): { count: number; list: string } | undefined {
  const status = read('/proc/self/status');
  const list = status && /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (!list) return undefined;
  const count = countCpuList(list);
  return count === undefined ? undefined : { count, list };
}

interface Mount {
  readonly root: string;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly superOptions: readonly string[];
}

/** Parses /proc/self/mountinfo (proc(5)): fields 4 and 5, then fstype and super options after " - ". */
function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const [fsType, , options] = right.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (!root || !mountPoint || !fsType) continue;
    mounts.push({
      root: unescapeOctal(root),
      mountPoint: unescapeOctal(mountPoint),
      fsType,
      superOptions: (options ?? '').split(','),
    });
  }
  return mounts;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeOctal(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * The directory of this process's cgroup inside the mount, or the mount point when it is not below
 * it; undefined for a path that leaves its cgroup namespace ("/../x"), whose limits no mount here
 * shows (the namespace root's do not govern it).
 */
function cgroupDir(mount: Mount, cgroupPath: string): string | undefined {
  if (cgroupPath.split('/').includes('..')) return undefined;
  const rel = relative(mount.root, cgroupPath);
  return rel === '..' || rel.startsWith('../') ? mount.mountPoint : join(mount.mountPoint, rel);
}

interface Quota {
  readonly cpus: number;
  readonly text: string;
}

/** Walks from dir up to the mount point; the tightest limit on the way wins. */
function tightestQuota(
  dir: string,
  top: string,
  readOne: (dir: string) => Quota | undefined,
): Quota | undefined {
  let best: Quota | undefined;
  for (let d = dir; ; d = dirname(d)) {
    const q = readOne(d);
    if (q && (!best || q.cpus < best.cpus)) best = q;
    if (d === top || !d.startsWith(top) || d === dirname(d)) break;
  }
  return best;
}

function v2Quota(read: ReadFile, dir: string): Quota | undefined {
  const text = read(join(dir, 'cpu.max'))?.trim();
  const m = text ? /^(\d+|max)\s+(\d+)$/.exec(text) : null;
  if (!m || m[1] === 'max' || Number(m[2]) === 0) return undefined;
  const cpus = Number(m[1]) / Number(m[2]);
  return { cpus, text: `cgroup v2 cpu.max ${m[1]}/${m[2]} = ${round(cpus)} CPUs` };
}

function v1Quota(read: ReadFile, dir: string): Quota | undefined {
  const quota = Number(read(join(dir, 'cpu.cfs_quota_us'))?.trim());
  const period = Number(read(join(dir, 'cpu.cfs_period_us'))?.trim());
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0) return undefined;
  const cpus = quota / period;
  return { cpus, text: `cgroup v1 cpu.cfs_quota_us ${quota}/${period} = ${round(cpus)} CPUs` };
}

/** Two decimals, or every one where two would hide a fraction: 1.001 CPUs make 2 workers, not "1". */
function round(n: number): number {
  const rounded = Math.round(n * 100) / 100;
  return Number.isInteger(rounded) && !Number.isInteger(n) ? n : rounded;
}

function quotaOf(read: ReadFile): Quota | undefined {
  const cgroups = read('/proc/self/cgroup');
  const mountinfo = read('/proc/self/mountinfo');
  if (!cgroups || !mountinfo) return undefined;
  const mounts = parseMountinfo(mountinfo);
  let best: Quota | undefined;
  for (const line of cgroups.split('\n')) {
    // hierarchy-ID:controller-list:cgroup-path (cgroups(7)); v2 is "0::/path". Not trimmed: a
    // directory name may end in a space.
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.replace(/\r$/, ''));
    if (!m) continue;
    const [, id, controllers = '', path = '/'] = m;
    let q: Quota | undefined;
    if (id === '0' && controllers === '') {
      const mount = mounts.find((mt) => mt.fsType === 'cgroup2');
      const dir = mount && cgroupDir(mount, path);
      if (mount && dir) q = tightestQuota(dir, mount.mountPoint, (d) => v2Quota(read, d));
    } else if (controllers.split(',').includes('cpu')) {
      const mount = mounts.find((mt) => mt.fsType === 'cgroup' && mt.superOptions.includes('cpu'));
      const dir = mount && cgroupDir(mount, path);
      if (mount && dir) q = tightestQuota(dir, mount.mountPoint, (d) => v1Quota(read, d));
    }
    if (q && (!best || q.cpus < best.cpus)) best = q;
  }
  return best;
}

/** Pure: the worker count from the files a Linux process sees, read through `read`. */
export function detectCpuLimit(read: ReadFile, hostCpus: number): CpuLimit {
  const affinity = affinityOf(read);
  const quota = quotaOf(read);
  const parts: string[] = [];
  let workers = Math.max(1, hostCpus);
  if (affinity) {
    workers = Math.min(workers, affinity.count);
    parts.push(`affinity ${affinity.list} = ${affinity.count} CPUs`);
  } else {
    parts.push(`${hostCpus} CPUs available`);
  }
  if (quota) {
    // Ceil, not floor: --cpus 1.5 pays for one and a half CPUs, and two workers can use all of it.
    workers = Math.min(workers, Math.ceil(quota.cpus - 1e-9));
    parts.push(quota.text);
  } else {
    parts.push('no CPU quota');
  }
  workers = Math.max(1, workers);
  return {
    workers,
    affinity: affinity?.count,
    quota: quota?.cpus,
    reason: `${parts.join('; ')} → ${workers} worker${workers === 1 ? '' : 's'}`,
  };
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The CPU limit of this process, from the real /proc and /sys. */
export function detectOwnCpuLimit(): CpuLimit {
  // The host's count, not availableParallelism(): newer libuv floors a cgroup quota into it,
  // which would undo the ceil rule above.
  return detectCpuLimit(readOrUndefined, cpus().length || availableParallelism());
}
