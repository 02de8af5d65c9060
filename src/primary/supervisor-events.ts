/**
 * What goes into the supervisor (events) and what comes out (actions), with its options: the
 * vocabulary primary.ts and the tests share with the state machine in supervisor.ts.
 */
import type { ExitCodeValue } from '../exit-codes.js';
import type { Level } from '../log.js';
import type { ControlSignal } from '../protocol.js';

export type WorkerState = 'starting' | 'listening' | 'stopping' | 'dead';
export type StopReason = 'shutdown' | 'roll' | 'scale' | 'hung' | 'boot-timeout' | 'give-up';
export type RestartCause = 'crash' | 'hung' | 'boot' | 'roll' | 'scale';
export type Phase = 'idle' | 'running' | 'stopping' | 'exited';

export interface SupervisorOptions {
  readonly workers: number;
  readonly bootTimeoutMs: number;
  /**
   * At most this many workers boot at once; the others wait their turn. A boot is mostly
   * CPU-bound: many more at once than there are CPUs only make each one slower, past
   * bootTimeoutMs with enough of them.
   */
  readonly bootConcurrency: number;
  readonly heartbeatTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly shutdownDelayMs: number;
  readonly crashLoopLimit: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly resetAfterMs: number };
  /** The memory cgroup's OOM-kill count at start (oom_kill), when it can be read. */
  readonly oomKillsAtStart?: number | undefined;
}

/** Restart back-off: 100 ms doubling to 10 s per slot, forgotten after 10 s of good service. */
export const DEFAULT_BACKOFF = { initialMs: 100, maxMs: 10_000, resetAfterMs: 10_000 } as const;

export type SupervisorEvent =
  | { readonly type: 'start' }
  | { readonly type: 'spawned'; readonly id: number; readonly pid: number }
  | { readonly type: 'ready'; readonly id: number }
  | { readonly type: 'heartbeat'; readonly id: number }
  | { readonly type: 'fatal'; readonly id: number; readonly code: string; readonly message: string }
  | {
      readonly type: 'exit';
      readonly id: number;
      readonly code: number | null;
      readonly signal: string | null;
      /** For a SIGKILL: the memory cgroup's OOM-kill count as the exit was seen, when it can be read. */
      readonly oomKills?: number | undefined;
    }
  | { readonly type: 'signal'; readonly signal: ControlSignal }
  /** Time passed: the primary's timer, set for Supervisor.nextTick(). */
  | { readonly type: 'tick' };

export type Action =
  | { readonly type: 'spawn'; readonly id: number; readonly slot: number }
  /** serviceStops: the whole service is stopping (not one worker of a roll or a scale-down). */
  | { readonly type: 'drain'; readonly id: number; readonly delayMs: number; readonly serviceStops: boolean }
  | { readonly type: 'kill'; readonly id: number }
  | {
      readonly type: 'log';
      readonly level: Level;
      readonly msg: string;
      readonly fields: Record<string, unknown>;
    }
  | { readonly type: 'exit'; readonly code: ExitCodeValue };

export interface SupervisorSnapshot {
  readonly phase: Phase;
  readonly configured: number;
  readonly workers: readonly {
    readonly id: number;
    readonly slot: number;
    readonly pid: number | undefined;
    readonly state: WorkerState;
  }[];
  readonly restarts: Readonly<Record<RestartCause, number>>;
  /** Worker exits taken for the memory cgroup's OOM killer; most also count in restarts. */
  readonly oomKills: number;
}
