/**
 * The interleaved rounds: each round starts every configuration afresh, warms it up, runs every
 * profile, and stops it, so slow drifts of a shared machine spread over all configurations
 * instead of landing on one.
 */

import type { CpuPlan } from './cpu-plan.js';
import { fixed, int } from './format.js';
import { type LaunchContext, launch } from './launch.js';
import { measure, type RunSample } from './measure.js';
import { liveStartTicks, processTree } from './proc-stats.js';
import { type Profile, runProfile, type Tools } from './profiles.js';
import { isStopping } from './stop-signals.js';
import type { RunningTarget, TargetSpec } from './targets.js';

export interface RoundsInput {
  readonly specs: readonly TargetSpec[];
  readonly profiles: readonly Profile[];
  /** Warm-up loads run after each start, results discarded. */
  readonly warmUp: readonly Profile[];
  readonly tools: Tools;
  readonly plan: CpuPlan;
  readonly launch: LaunchContext;
  readonly rounds: number;
  readonly progress: (line: string) => void;
}

export interface RoundsOutput {
  readonly samples: RunSample[];
  readonly readyMs: Map<string, number[]>;
  /** Configurations that failed to start or stop cleanly, with why. */
  readonly problems: string[];
}

/** The order for round r: the configurations rotated by r, so none always runs first or last. */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const k = items.length ? round % items.length : 0;
  return [...items.slice(k), ...items.slice(0, k)];
}

const LEFTOVER_TIMEOUT_MS = 5_000;

interface ProcessId {
  readonly pid: number;
  readonly startTicks: number | undefined;
}

/**
 * Waits until none of the processes lives; they are not our children, so this polls. A pid
 * taken by another process, or left a zombie for its new parent to reap, is gone.
 */
async function waitForGone(processes: readonly ProcessId[]): Promise<number[]> {
  const deadline = Date.now() + LEFTOVER_TIMEOUT_MS;
  for (;;) {
    const alive = processes.filter(
      (p) => p.startTicks !== undefined && liveStartTicks(p.pid) === p.startTicks,
    );
    if (alive.length === 0 || Date.now() > deadline) return alive.map((p) => p.pid);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Stops a target and notes what went wrong: an exit before the stop or a failed one, and any process that outlived it (killed). */
export async function stopAndCheck(target: RunningTarget, problems: string[]): Promise<void> {
  const pids = processTree(target.pid).map((pid) => ({ pid, startTicks: liveStartTicks(pid) }));
  const died = target.exitStatus();
  const exit = await target.stop();
  if (died !== undefined) problems.push(`${target.spec.label} exited with ${died} before it was stopped`);
  else if (exit.code !== 0)
    problems.push(`${target.spec.label} exited with ${exit.code ?? exit.signal} on SIGTERM`);
  const left = await waitForGone(pids);
  for (const pid of left) {
    problems.push(`${target.spec.label}: pid ${pid} outlived its parent; killed`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

export async function runRounds(input: RoundsInput): Promise<RoundsOutput> {
  const out: RoundsOutput = { samples: [], readyMs: new Map(), problems: [] };
  for (let round = 0; round < input.rounds; round++) {
    for (const spec of roundOrder(input.specs, round)) {
      let target: RunningTarget;
      try {
        target = await launch(spec, input.launch);
      } catch (err) {
        out.problems.push(`round ${round + 1}: ${spec.label} did not start: ${(err as Error).message}`);
        continue;
      }
      out.readyMs.set(spec.id, [...(out.readyMs.get(spec.id) ?? []), target.readyMs]);
      try {
        // A warm-up that fails leaves the measured runs to say what works: one broken load
        // generator (or a server that died, which each run then reports) must not hide the others.
        for (const p of input.warmUp) {
          try {
            await runProfile(p, target.url, input.tools, input.plan);
          } catch (err) {
            out.problems.push(
              `round ${round + 1}: ${spec.label}: warm-up ${p.id}: ${(err as Error).message}`,
            );
          }
        }
        const line: string[] = [];
        for (const profile of input.profiles) {
          const sample = await measure(round + 1, target, profile, input.tools, input.plan);
          // A stop signal killed this run's load generator or server: its error is the stop's, not news.
          if (isStopping()) return out;
          out.samples.push(sample);
          line.push(
            sample.load && !sample.error
              ? `${profile.id} ${int(sample.load.requestsPerSecond)} req/s ${fixed(sample.cpuMicrosPerRequest, 0)} µs/req`
              : `${profile.id} error: ${sample.error?.split('\n')[0]}`,
          );
        }
        input.progress(`round ${round + 1}/${input.rounds} ${spec.label.padEnd(20)} ${line.join(', ')}`);
      } catch (err) {
        out.problems.push(`round ${round + 1}: ${spec.label}: ${(err as Error).message}`);
      } finally {
        await stopAndCheck(target, out.problems);
      }
    }
  }
  return out;
}
