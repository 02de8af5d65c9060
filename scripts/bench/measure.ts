/** One load run against a running target, bracketed by /proc and /metrics readings. */
import { hostname } from 'node:os';
import { greetingText } from '../../src/worker/replies.js';
import { accountCpu, losesSwitches, type WorkerChange, workerChange } from './cpu-account.js';
import type { CpuPlan } from './cpu-plan.js';
import { type LoadResult, unusableRun, withUnexplainedLength } from './load-output.js';
import {
  CLOCK_TICKS_PER_SECOND,
  readContextSwitches,
  readPeakRssBytes,
  readTreeCpu,
  resetPeakRss,
} from './proc-stats.js';
import { type Profile, type ProfileId, runProfile, type Tools } from './profiles.js';
import { countDeltas, imbalance, readRequestCounts, type WorkerCount } from './request-spread.js';
import { hasPrimary, type RunningTarget } from './targets.js';

export interface ProcessSample {
  readonly pid: number;
  readonly role: 'primary' | 'worker';
  /** Its own CPU time during the run; 0 for one that exited (see RunSample.exitedCpuSeconds). */
  readonly cpuSeconds: number;
  /** Gone (waited for) by the end of the run. */
  readonly exited?: true;
  /** Of the main thread (the event loop) during the run. */
  readonly contextSwitches: number;
  /** VmHWM during this run when it could be reset first, else since the process started. */
  readonly peakRssBytes: number | undefined;
}

export interface RunSample {
  readonly round: number;
  readonly target: string;
  readonly profile: ProfileId;
  /** What the tool reported, kept even when the run is in error. */
  readonly load?: LoadResult;
  /**
   * Why the run is left out of the medians: the tool failed, the server exited, or nearly every
   * request failed (see unusableRun).
   */
  readonly error?: string;
  /** utime+stime of every process of the target during the run, those that exited included, as far as readable. */
  readonly cpuSeconds: number;
  /** The part of cpuSeconds spent by processes that exited during the run. */
  readonly exitedCpuSeconds?: number;
  /**
   * Set when some of cpuSeconds is known in /proc's 10 ms ticks only: a process exited, started or
   * changed threads during the run (one that came and went too), or the kernel has no schedstat.
   * Otherwise it is nanoseconds.
   */
  readonly cpuInTicks?: true;
  readonly cpuMicrosPerRequest: number | undefined;
  /** Of every process's main thread, per request: how often the event loops slept and woke. */
  readonly contextSwitchesPerRequest: number | undefined;
  readonly processes: readonly ProcessSample[];
  readonly peakRssReset: boolean;
  /** Serving processes that exited or started during the run: its spread is left out. */
  readonly workersChanged?: WorkerChange;
  /** Requests per worker during the run (our service, when its workers stayed the same). */
  readonly spread?: readonly WorkerCount[];
  readonly imbalance?: number | undefined;
}

/**
 * Pure: the greeting's length from each serving process, which ab's Length failures are told apart
 * by (a pid of another number of digits). Not the primary's: it never answers.
 */
export function greetingLengths(processes: readonly ProcessSample[], host: string): number[] {
  return processes
    .filter((p) => p.role === 'worker')
    .map((p) => Buffer.byteLength(greetingText(host, p.pid)));
}

/** Runs `profile` once against `target` and measures what the server spent on it. */
export async function measure(
  round: number,
  target: RunningTarget,
  profile: Profile,
  tools: Tools,
  plan: CpuPlan,
): Promise<RunSample> {
  // A server that died in an earlier run or the warm-up would only collect refused connections.
  const gone = target.exitStatus();
  if (gone !== undefined) {
    return {
      round,
      target: target.spec.id,
      profile: profile.id,
      error: `the server had exited before the run (${gone})`,
      cpuSeconds: 0,
      cpuMicrosPerRequest: undefined,
      contextSwitchesPerRequest: undefined,
      processes: [],
      peakRssReset: false,
    };
  }
  // /metrics is read outside the CPU bracket: collecting it costs the primary and every worker.
  // A reading that fails costs the run its spread only, not its other figures.
  const countsBefore = await readRequestCounts(target.metricsUrl);
  const cpuBefore = readTreeCpu(target.pid);
  const pids = [...cpuBefore.keys()];
  const switchesBefore = new Map(pids.map((pid) => [pid, readContextSwitches(pid) ?? 0]));
  const peakRssReset = pids.map(resetPeakRss).every(Boolean);

  let load: LoadResult | undefined;
  let toolError: string | undefined;
  try {
    load = await runProfile(profile, target.url, tools, plan);
  } catch (err) {
    toolError = (err as Error).message;
  }

  const cpuAfter = readTreeCpu(target.pid);
  // The root gone (or a zombie whose exit Node has not handled yet) took its CPU time, and its
  // workers', out of reach: the CPU per request cannot be measured.
  const root = cpuAfter.get(target.pid);
  const serverExit =
    target.exitStatus() ?? (root === undefined || root.zombie ? 'status not known yet' : undefined);
  const cpu = accountCpu(cpuBefore, cpuAfter, CLOCK_TICKS_PER_SECOND);
  const changed = workerChange(target.pid, cpuBefore, cpuAfter);
  // A process that appeared during the run (a replaced worker) counts from zero.
  const grown = (now: number | undefined, before: number | undefined): number =>
    Math.max(0, (now ?? before ?? 0) - (before ?? 0));
  const processes: ProcessSample[] = [...new Set([...pids, ...cpuAfter.keys()])].map((pid) => ({
    pid,
    role: pid === target.pid && hasPrimary(target.spec) ? 'primary' : 'worker',
    cpuSeconds: cpu.own.get(pid) ?? 0,
    ...(cpuAfter.has(pid) ? {} : { exited: true as const }),
    contextSwitches: grown(readContextSwitches(pid), switchesBefore.get(pid)),
    peakRssBytes: readPeakRssBytes(pid),
  }));
  // A server gone has no /metrics to read; the run is in error anyway.
  const countsAfter = serverExit === undefined ? await readRequestCounts(target.metricsUrl) : undefined;
  let error = toolError;
  if (load) {
    load = withUnexplainedLength(load, greetingLengths(processes, hostname()));
    error = unusableRun(load, serverExit);
  } else if (serverExit !== undefined) {
    error = `the server exited during the run (${serverExit}); ${toolError}`;
  }

  const cpuSeconds = cpu.total;
  const contextSwitches = processes.reduce((sum, p) => sum + p.contextSwitches, 0);
  const perRequest = (total: number): number | undefined =>
    serverExit === undefined && load && load.requests > 0 ? total / load.requests : undefined;
  const switchesLost = losesSwitches(changed);
  const spread = countsBefore && countsAfter && !changed ? countDeltas(countsBefore, countsAfter) : undefined;
  return {
    round,
    target: target.spec.id,
    profile: profile.id,
    ...(load ? { load } : {}),
    ...(error !== undefined ? { error } : {}),
    cpuSeconds,
    ...(cpu.exited > 0 ? { exitedCpuSeconds: cpu.exited } : {}),
    ...(cpu.nanosecondsOnly ? {} : { cpuInTicks: true as const }),
    cpuMicrosPerRequest: perRequest(cpuSeconds * 1e6),
    contextSwitchesPerRequest: switchesLost ? undefined : perRequest(contextSwitches),
    processes,
    peakRssReset,
    ...(changed ? { workersChanged: changed } : {}),
    ...(spread ? { spread, imbalance: imbalance(spread) } : {}),
  };
}
