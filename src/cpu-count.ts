/**
 * How many workers `WORKERS=auto` means: the CPUs this process may really use, from the
 * affinity mask and the cgroup CPU quota. os.cpus() counts the host's CPUs and
 * os.availableParallelism() ignores a cgroup v1 quota (it said 2 under --cpus 0.5 here).
 */
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { locate, parseCgroupLines, parseMountinfo, upToMount } from './cgroup-paths.js';
import { affinityList, parseCpuList } from './cpu-list.js';
import { type ReadFile, readOrUndefined } from './read-file.js';

export type { ReadFile } from './read-file.js';

export interface CpuLimit {
  /** Workers to start: min(affinity, ceil(quota)), at least 1. */
  readonly workers: number;
  readonly affinity: number | undefined;
  /** The tightest CPU quota in CPUs (1.5 for --cpus 1.5), undefined when unlimited. */
  readonly quota: number | undefined;
  /** Why a CPU quota could not be read (a file that does not parse, no mount that shows the cgroup). */
  readonly problem?: string;
  /** Human-readable reasoning for the start-up log. */
  readonly reason: string;
}

function affinityOf(read: ReadFile): { count: number; list: string } | undefined {
  const list = affinityList(read);
  const cpus = list === undefined ? undefined : parseCpuList(list);
  return list && cpus ? { count: cpus.length, list } : undefined;
}

interface Quota {
  readonly cpus: number;
  readonly text: string;
}

/** A quota file that exists but does not read as one: the limit is unknown, not absent. */
type Problems = string[];

/** Walks from dir up to the mount point; the tightest limit on the way wins. */
function tightestQuota(
  dir: string,
  top: string,
  readOne: (dir: string) => Quota | undefined,
): Quota | undefined {
  let best: Quota | undefined;
  for (const d of upToMount(dir, top)) {
    const q = readOne(d);
    if (q && (!best || q.cpus < best.cpus)) best = q;
  }
  return best;
}

/** No cpu.max is no limit: the root cgroup has none, nor one whose parent does not enable cpu. */
function v2Quota(read: ReadFile, dir: string, problems: Problems): Quota | undefined {
  const path = join(dir, 'cpu.max');
  const text = read(path)?.trim();
  if (text === undefined) return undefined;
  const m = /^(\d+|max)\s+(\d+)$/.exec(text);
  if (!m || Number(m[2]) === 0) {
    problems.push(`${path} reads "${text}"`);
    return undefined;
  }
  if (m[1] === 'max') return undefined;
  const cpus = Number(m[1]) / Number(m[2]);
  return { cpus, text: `cgroup v2 cpu.max ${m[1]}/${m[2]} = ${round(cpus)} CPUs` };
}

/** No cpu.cfs_quota_us is no limit: a kernel without CFS bandwidth control enforces none. */
function v1Quota(read: ReadFile, dir: string, problems: Problems): Quota | undefined {
  const quotaPath = join(dir, 'cpu.cfs_quota_us');
  const quotaText = read(quotaPath)?.trim();
  if (quotaText === undefined || quotaText === '-1') return undefined;
  const periodPath = join(dir, 'cpu.cfs_period_us');
  const periodText = read(periodPath)?.trim();
  const quota = /^\d+$/.test(quotaText) ? Number(quotaText) : Number.NaN;
  const period = periodText !== undefined && /^\d+$/.test(periodText) ? Number(periodText) : Number.NaN;
  if (!(quota > 0)) problems.push(`${quotaPath} reads "${quotaText}"`);
  else if (!(period > 0))
    problems.push(`${periodPath} ${periodText === undefined ? 'cannot be read' : `reads "${periodText}"`}`);
  if (!(quota > 0 && period > 0)) return undefined;
  const cpus = quota / period;
  return { cpus, text: `cgroup v1 cpu.cfs_quota_us ${quota}/${period} = ${round(cpus)} CPUs` };
}

/** Two decimals, or every one where two would hide a fraction: 1.001 CPUs make 2 workers, not "1". */
function round(n: number): number {
  const rounded = Math.round(n * 100) / 100;
  return Number.isInteger(rounded) && !Number.isInteger(n) ? n : rounded;
}

interface QuotaReading {
  readonly quota?: Quota | undefined;
  /** Why a quota that may be there could not be read; empty when what was read is the whole answer. */
  readonly problems: readonly string[];
}

function quotaOf(read: ReadFile): QuotaReading {
  const cgroups = read('/proc/self/cgroup');
  // No cgroups at all (not Linux, or a kernel without them): nothing can limit the CPU this way.
  if (cgroups === undefined) return { problems: [] };
  const mountinfo = read('/proc/self/mountinfo');
  if (mountinfo === undefined) return { problems: ['/proc/self/mountinfo cannot be read'] };
  const mounts = parseMountinfo(mountinfo);
  const lines = parseCgroupLines(cgroups);
  // The cpu controller is on v1 when a v1 hierarchy lists it, else on v2 (or on none).
  const cpuOnV1 = lines.some((l) => !l.v2 && l.controllers.includes('cpu'));
  const problems: Problems = [];
  let best: Quota | undefined;
  for (const line of lines) {
    if (!line.v2 && !line.controllers.includes('cpu')) continue;
    const carriesCpu = line.v2 !== cpuOnV1;
    const name = `${line.v2 ? '0:' : line.controllers.join(',')}:${line.path}`;
    const where = locate(mounts, line, 'cpu');
    if (typeof where === 'string') {
      if (carriesCpu)
        problems.push(
          where === 'no mount'
            ? `no ${line.v2 ? 'cgroup2' : 'cgroup v1 cpu'} mount shows ${name}`
            : `${name} is outside this cgroup namespace`,
        );
      continue;
    }
    const { dir, mountPoint } = where;
    const q = line.v2
      ? tightestQuota(dir, mountPoint, (d) => v2Quota(read, d, problems))
      : tightestQuota(dir, mountPoint, (d) => v1Quota(read, d, problems));
    if (q && (!best || q.cpus < best.cpus)) best = q;
  }
  return { quota: best, problems };
}

/** Pure: the worker count from the files a Linux process sees, read through `read`. */
export function detectCpuLimit(read: ReadFile, hostCpus: number): CpuLimit {
  const affinity = affinityOf(read);
  const { quota, problems } = quotaOf(read);
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
    parts.push(problems.length > 0 ? 'CPU quota unknown' : 'no CPU quota');
  }
  workers = Math.max(1, workers);
  return {
    workers,
    affinity: affinity?.count,
    quota: quota?.cpus,
    ...(problems.length > 0 ? { problem: problems.join('; ') } : {}),
    reason: `${parts.join('; ')} → ${workers} worker${workers === 1 ? '' : 's'}`,
  };
}

/** The CPU limit of this process, from the real /proc and /sys. */
export function detectOwnCpuLimit(): CpuLimit {
  // The host's count, not availableParallelism(): newer libuv floors a cgroup quota into it,
  // which would undo the ceil rule above.
  return detectCpuLimit(readOrUndefined, cpus().length || availableParallelism());
}
