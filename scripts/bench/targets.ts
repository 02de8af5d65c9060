/** The servers the bench compares: what each one is, and the handle of one that is running. */
import type { Balance } from '../../src/config.js';
import { detectCpuLimit, type ReadFile } from '../../src/cpu-count.js';
import { formatCpuList } from './cpu-plan.js';

export type TargetKind = 'single' | 'cluster' | 'pm2' | 'minimal' | 'nginx';

export interface TargetSpec {
  /** Stable key in the JSON: "single", "reuseport-2", "round-robin-1", "pm2-2", "minimal-2", "nginx-2". */
  readonly id: string;
  /** What the table prints. */
  readonly label: string;
  readonly kind: TargetKind;
  /** Serving processes. */
  readonly workers: number;
  readonly balance?: Balance;
  /** Extra environment for our service (the metrics-off comparison). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface RunningTarget {
  readonly spec: TargetSpec;
  /** The process the bench started: the primary, the master, or the single server. */
  readonly pid: number;
  readonly url: string;
  /** Milliseconds from spawn until every serving process answers. */
  readonly readyMs: number;
  /** GET /metrics of our service, for the spread of requests over workers. */
  readonly metricsUrl: string | undefined;
  /** How it exited ("1", "SIGKILL") when it has, without being stopped or not; undefined while it runs. */
  exitStatus(): string | undefined;
  /** SIGTERM, wait for the exit (SIGKILL past a timeout); the exit status. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** True when the root process supervises others rather than serving requests itself. */
export function hasPrimary(spec: TargetSpec): boolean {
  return spec.kind !== 'single';
}

/** 1..N up to 4 workers; beyond that powers of two and N, which is what a scaling curve needs. */
export function defaultWorkerCounts(serviceCpus: number): number[] {
  const n = Math.max(2, serviceCpus);
  if (n <= 4) return Array.from({ length: n }, (_, i) => i + 1);
  const counts: number[] = [];
  for (let k = 1; k < n; k *= 2) counts.push(k);
  return [...counts, n];
}

/**
 * What WORKERS=auto starts on `serviceCpus`: the service's own rule (src/cpu-count.ts) with the
 * affinity taskset gives it; the cgroup quota, which it inherits from the bench, is read as is.
 */
export function serviceDefaultWorkers(
  serviceCpus: readonly number[],
  read: ReadFile,
  hostCpus: number,
): number {
  const affinity = `Cpus_allowed_list:\t${formatCpuList(serviceCpus)}\n`;
  return detectCpuLimit((path) => (path === '/proc/self/status' ? affinity : read(path)), hostCpus).workers;
}

/** The default configuration's id when it is among the measured ones, else undefined. */
export function defaultTargetId(workerCounts: readonly number[], defaultWorkers: number): string | undefined {
  return workerCounts.includes(defaultWorkers) ? `reuseport-${defaultWorkers}` : undefined;
}

export type CompareTool = 'pm2' | 'nginx' | 'minimal' | 'metrics-off';

/** Every configuration of one run, in the order of the first round. */
export function targetSpecs(workerCounts: readonly number[], compare: readonly CompareTool[]): TargetSpec[] {
  const specs: TargetSpec[] = [{ id: 'single', label: 'single process', kind: 'single', workers: 1 }];
  for (const workers of workerCounts) {
    for (const balance of ['reuseport', 'round-robin'] as const) {
      specs.push({
        id: `${balance}-${workers}`,
        label: `${balance} ×${workers}`,
        kind: 'cluster',
        workers,
        balance,
      });
    }
  }
  // The alternatives run as many processes as our largest configuration.
  const most = Math.max(...workerCounts);
  if (compare.includes('pm2')) {
    specs.push({ id: `pm2-${most}`, label: `pm2-runtime -i ${most}`, kind: 'pm2', workers: most });
  }
  if (compare.includes('minimal')) {
    specs.push({
      id: `minimal-${most}`,
      label: `minimal reuseport ×${most}`,
      kind: 'minimal',
      workers: most,
    });
  }
  if (compare.includes('metrics-off')) {
    // The default configuration with /metrics off: what the metrics cost on the request path.
    specs.push({
      id: `metrics-off-${most}`,
      label: `reuseport ×${most} METRICS=off`,
      kind: 'cluster',
      workers: most,
      balance: 'reuseport',
      env: { METRICS: 'off' },
    });
  }
  if (compare.includes('nginx')) {
    specs.push({ id: `nginx-${most}`, label: `nginx ×${most}`, kind: 'nginx', workers: most });
  }
  return specs;
}
