/** Which CPUs the service and the load generator get, so they do not compete for the same cores. */
import { execFileSync } from 'node:child_process';
import { affinityList, parseCpuList } from '../../src/cpu-list.js';
import { readOrUndefined } from '../../src/read-file.js';

export interface CpuPlan {
  /** False on machines too small to split (under 4 CPUs) or without taskset. */
  readonly pinned: boolean;
  readonly service: readonly number[];
  readonly load: readonly number[];
  readonly reason: string;
}

/** Formats CPUs the way taskset -c reads them, ranges collapsed. */
export function formatCpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && (cpus[j + 1] as number) === (cpus[j] as number) + 1) j++;
    parts.push(i === j ? String(cpus[i]) : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** The CPUs this process may run on (its affinity mask, which taskset/cpusets narrow). */
export function allowedCpus(): number[] {
  const list = affinityList(readOrUndefined);
  return (list && parseCpuList(list)) || [0];
}

export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The hardware threads of each CPU's core (sysfs core_cpus_list, the older thread_siblings_list),
 * for the CPUs where it can be read; a CPU missing from the map is a core of its own.
 */
export type CoreSiblings = ReadonlyMap<number, readonly number[]>;

/** The core siblings of these CPUs, from the real sysfs. */
export function readCoreSiblings(cpus: readonly number[]): CoreSiblings {
  const siblings = new Map<number, readonly number[]>();
  for (const cpu of cpus) {
    const dir = `/sys/devices/system/cpu/cpu${cpu}/topology`;
    // An older kernel has only the second; a container may hide both.
    const list = readOrUndefined(`${dir}/core_cpus_list`) ?? readOrUndefined(`${dir}/thread_siblings_list`);
    const cpusOfCore = list && parseCpuList(list);
    if (cpusOfCore) siblings.set(cpu, cpusOfCore);
  }
  return siblings;
}

/** Pure: the allowed CPUs grouped by core, each group sorted, the groups by their first CPU. */
function coresOf(allowed: readonly number[], siblings: CoreSiblings): number[][] {
  const byFirst = new Map<number, number[]>();
  for (const cpu of allowed) {
    const first = Math.min(cpu, ...(siblings.get(cpu) ?? []).filter((c) => allowed.includes(c)));
    byFirst.set(first, [...(byFirst.get(first) ?? []), cpu]);
  }
  return [...byFirst.entries()].sort(([a], [b]) => a - b).map(([, cpus]) => cpus);
}

export interface PlanInput {
  readonly allowed: readonly number[];
  readonly taskset: boolean;
  /** Absent: every CPU a core of its own. */
  readonly siblings?: CoreSiblings | undefined;
  readonly serviceOverride?: readonly number[] | undefined;
  readonly loadOverride?: readonly number[] | undefined;
}

const CPU_OPTIONS = '--service-cpus and --load-cpus';
const TASKSET_PACKAGE = 'Debian/Ubuntu: apt-get install util-linux';

/**
 * Pure: splits the allowed CPUs in two halves (the service gets the first), or leaves both
 * unpinned below 4 CPUs, where a 1-CPU side would measure the split rather than the server.
 * CPU lists given without taskset throw.
 */
export function planCpus(input: PlanInput): CpuPlan {
  const { allowed } = input;
  if (input.serviceOverride && input.loadOverride) {
    // Unpinned, the run would not measure what the CPU lists asked for.
    if (!input.taskset)
      throw new Error(`${CPU_OPTIONS} need taskset, which was not found (${TASKSET_PACKAGE})`);
    return {
      pinned: true,
      service: input.serviceOverride,
      load: input.loadOverride,
      reason: 'CPUs given on the command line',
    };
  }
  if (!input.taskset) {
    return { pinned: false, service: allowed, load: allowed, reason: 'taskset not found: not pinned' };
  }
  if (allowed.length < 4) {
    return {
      pinned: false,
      service: allowed,
      load: allowed,
      reason: `${allowed.length} CPUs: too few to give the load generator its own, not pinned`,
    };
  }
  // By core, not by CPU number: on a machine with two threads per core, CPU n and n + N/2 are
  // often one core's, and a split by number would put the service and the load generator on
  // every core together.
  const cores = coresOf(allowed, input.siblings ?? new Map());
  if (cores.length >= 2 && cores.length < allowed.length) {
    const service: number[] = [];
    let taken = 0;
    while (taken < cores.length - 1 && service.length < allowed.length / 2)
      service.push(...(cores[taken++] ?? []));
    return {
      pinned: true,
      service: service.sort((x, y) => x - y),
      load: cores
        .slice(taken)
        .flat()
        .sort((x, y) => x - y),
      reason: `${allowed.length} CPUs on ${cores.length} cores split in halves, the threads of a core on one side`,
    };
  }
  const half = Math.ceil(allowed.length / 2);
  return {
    pinned: true,
    service: allowed.slice(0, half),
    load: allowed.slice(half),
    reason: `${allowed.length} CPUs split in halves`,
  };
}

/** Pure: when the service's and the load generator's CPUs share a core, which ones, as a warning. */
export function sharedCoreWarning(plan: CpuPlan, siblings: CoreSiblings): string | undefined {
  if (!plan.pinned) return undefined;
  const pairs: string[] = [];
  for (const cpu of plan.service) {
    const shared = (siblings.get(cpu) ?? []).filter((c) => plan.load.includes(c));
    if (shared.length > 0) pairs.push(`${cpu} with ${formatCpuList(shared)}`);
  }
  if (pairs.length === 0) return undefined;
  return `the service's and the load generator's CPUs share cores (CPU ${pairs.join(', ')}): the load generator competes with the service on them`;
}

/**
 * Pure: what a CPU quota on the bench's own cgroup, which the service and the load generator
 * inherit, does to a pinned plan: pinning keeps them on different CPUs, not from sharing the quota.
 */
export function quotaWarning(plan: CpuPlan, quotaCpus: number | undefined): string | undefined {
  if (!plan.pinned || quotaCpus === undefined) return undefined;
  const cpus = new Set([...plan.service, ...plan.load]).size;
  if (quotaCpus >= cpus) return undefined;
  return `a CPU quota of ${quotaCpus} CPUs covers the service and the load generator together (${cpus} CPUs pinned): they compete for it, pinned apart or not; run the bench outside the quota for figures of each side's CPUs`;
}

/** argv prefix that runs a command on these CPUs, or nothing when not pinned. */
export function pinPrefix(plan: CpuPlan, side: 'service' | 'load'): string[] {
  return plan.pinned ? ['taskset', '-c', formatCpuList(plan[side])] : [];
}

/** Pure: WORKERS values above the service's CPUs, as a warning: those rows measure oversubscription. */
export function oversubscriptionWarning(plan: CpuPlan, workerCounts: readonly number[]): string | undefined {
  const over = workerCounts.filter((n) => n > plan.service.length);
  if (over.length === 0) return undefined;
  const cpus = `${plan.service.length} service CPU${plan.service.length === 1 ? '' : 's'}`;
  return `WORKERS=${over.join(',')} on ${cpus}: more workers than CPUs measure oversubscription, not scaling`;
}
