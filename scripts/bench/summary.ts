/** Medians over rounds per configuration and profile, and the ratios the targets are stated in. */
import { type Failures, failedRequests, NO_FAILURES } from './load-output.js';
import type { RunSample } from './measure.js';
import type { ProfileId } from './profiles.js';
import type { TargetSpec } from './targets.js';

export interface Summary {
  readonly target: string;
  readonly profile: ProfileId;
  /** Rounds whose figures count, and rounds in error (see RunSample.error), left out of the medians. */
  readonly runs: number;
  readonly errors: number;
  readonly requestsPerSecond: number | undefined;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly cpuMicrosPerRequest: number | undefined;
  /** Context switches of the servers' event loops per request (absent from reports before it). */
  readonly contextSwitchesPerRequest?: number | undefined;
  /**
   * Summed over rounds, those in error included: failures are rare events, a median would hide
   * them. Each failed request once (failedRequests), never more than were made.
   */
  readonly failed: number;
  /** By cause, as the tools reported them: one request may count under several. */
  readonly failures: Failures;
  readonly lengthMismatches: number;
  /** The highest over rounds. */
  readonly peakRssPrimaryBytes: number | undefined;
  readonly peakRssWorkerBytes: number | undefined;
  /** Median of the busiest worker's share × workers (1 = even). */
  readonly imbalance: number | undefined;
}

/** The median of the defined values; undefined when there are none. */
export function median(values: readonly (number | undefined)[]): number | undefined {
  const sorted = values
    .filter((v): v is number => v !== undefined && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function maxOf(values: readonly (number | undefined)[]): number | undefined {
  const defined = values.filter((v): v is number => v !== undefined);
  return defined.length ? Math.max(...defined) : undefined;
}

function sumFailures(all: readonly Failures[]): Failures {
  const total = { ...NO_FAILURES };
  for (const f of all) for (const key of Object.keys(total) as (keyof Failures)[]) total[key] += f[key];
  return total;
}

/** Pure: one summary per target and profile that has samples. */
export function summarize(samples: readonly RunSample[]): Summary[] {
  const groups = new Map<string, RunSample[]>();
  for (const s of samples) {
    const key = `${s.target}\u0000${s.profile}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as RunSample;
    const ok = group.filter((s) => s.load && !s.error);
    const loads = ok.map((s) => s.load).filter((l) => l !== undefined);
    // A run in error still tells how many of its requests failed.
    const everyLoad = group.map((s) => s.load).filter((l) => l !== undefined);
    const failures = sumFailures(everyLoad.map((l) => l.failures));
    const rss = (role: 'primary' | 'worker') =>
      maxOf(group.flatMap((s) => s.processes.filter((p) => p.role === role).map((p) => p.peakRssBytes)));
    return {
      target: first.target,
      profile: first.profile,
      runs: ok.length,
      errors: group.length - ok.length,
      requestsPerSecond: median(loads.map((l) => l.requestsPerSecond)),
      p50Ms: median(loads.map((l) => l.p50Ms)),
      p99Ms: median(loads.map((l) => l.p99Ms)),
      cpuMicrosPerRequest: median(ok.map((s) => s.cpuMicrosPerRequest)),
      contextSwitchesPerRequest: median(ok.map((s) => s.contextSwitchesPerRequest)),
      failed: everyLoad.reduce((sum, l) => sum + failedRequests(l), 0),
      failures,
      lengthMismatches: everyLoad.reduce((sum, l) => sum + l.lengthMismatches, 0),
      peakRssPrimaryBytes: rss('primary'),
      peakRssWorkerBytes: rss('worker'),
      imbalance: median(ok.map((s) => s.imbalance)),
    };
  });
}

export interface Ratio {
  readonly profile: ProfileId;
  readonly target: string;
  readonly baseline: string;
  /** target ÷ baseline: above 1 is faster. */
  readonly requestsPerSecond: number | undefined;
  /** target ÷ baseline: below 1 is cheaper. */
  readonly cpuMicrosPerRequest: number | undefined;
}

function divide(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

/**
 * The comparisons worth printing: each configuration against the single process, the two BALANCE
 * modes against each other, and each alternative against reuseport with as many workers (the
 * default configuration when that is the default's count; the table marks it only then).
 */
export function comparisons(specs: readonly TargetSpec[]): [string, string][] {
  const pairs: [string, string][] = [];
  const has = (id: string) => specs.some((s) => s.id === id);
  // A cluster spec with its own environment (METRICS=off) is a variant of reuseport, not a mode.
  for (const s of specs)
    if (s.kind === 'cluster' && !s.env && s.balance === 'reuseport' && has(`round-robin-${s.workers}`))
      pairs.push([s.id, `round-robin-${s.workers}`]);
  for (const s of specs) {
    const alternative = s.kind === 'pm2' || s.kind === 'minimal' || s.kind === 'nginx';
    const reuseport = `reuseport-${s.workers}`;
    if ((alternative || (s.kind === 'cluster' && s.env)) && has(reuseport)) pairs.push([reuseport, s.id]);
  }
  for (const s of specs) if (s.id !== 'single') pairs.push([s.id, 'single']);
  return pairs;
}

/** Ratios of medians for every profile and pair. */
export function ratios(summaries: readonly Summary[], pairs: readonly [string, string][]): Ratio[] {
  const find = (target: string, profile: ProfileId) =>
    summaries.find((s) => s.target === target && s.profile === profile);
  const profiles = [...new Set(summaries.map((s) => s.profile))];
  return pairs.flatMap(([target, baseline]) =>
    profiles.flatMap((profile) => {
      const a = find(target, profile);
      const b = find(baseline, profile);
      if (!a || !b) return [];
      return [
        {
          profile,
          target,
          baseline,
          requestsPerSecond: divide(a.requestsPerSecond, b.requestsPerSecond),
          cpuMicrosPerRequest: divide(a.cpuMicrosPerRequest, b.cpuMicrosPerRequest),
        },
      ];
    }),
  );
}

export interface Scaling {
  readonly profile: ProfileId;
  readonly workers: number;
  readonly requestsPerSecond: number | undefined;
  /** req/s ÷ (workers × req/s of one worker); the target at 8 workers is ≥ 0.85. */
  readonly efficiency: number | undefined;
}

/** Throughput of reuseport ×k against k times reuseport ×1. */
export function scaling(summaries: readonly Summary[], workerCounts: readonly number[]): Scaling[] {
  const profiles = [...new Set(summaries.map((s) => s.profile))];
  return profiles.flatMap((profile) => {
    const rps = (k: number) =>
      summaries.find((s) => s.target === `reuseport-${k}` && s.profile === profile)?.requestsPerSecond;
    const one = rps(1);
    return workerCounts.map((workers) => ({
      profile,
      workers,
      requestsPerSecond: rps(workers),
      efficiency: divide(rps(workers), one === undefined ? undefined : one * workers),
    }));
  });
}
