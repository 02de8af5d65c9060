/** Kernel CPU lists ("0-3,8,10-11"), as Cpus_allowed_list, cpuset.cpus and sysfs topology print them. */
import type { ReadFile } from './read-file.js';

/** Far above any kernel's CPU count (NR_CPUS tops out at 8,192): a garbled file is not expanded. */
const MAX_CPU = 65_535;

/** The CPUs in a list, sorted and distinct; undefined when the text is not a list or names none. */
export function parseCpuList(text: string): number[] | undefined {
  const cpus = new Set<number>();
  for (const part of text.trim().split(',')) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) return undefined;
    const first = Number(match[1]);
    const last = Number(match[2] ?? match[1]);
    if (last < first || last > MAX_CPU) return undefined;
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return cpus.size > 0 ? [...cpus].sort((x, y) => x - y) : undefined;
}

/** This process's affinity mask (what taskset and cpusets narrow) as a list, from /proc/self/status. */
export function affinityList(read: ReadFile): string | undefined {
  const status = read('/proc/self/status');
  return (status && /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1]) || undefined;
}
