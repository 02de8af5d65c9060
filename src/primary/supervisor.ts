/**
 * The supervisor's decisions, as one state machine with no I/O: events go in (a worker is
 * ready, exited, a signal came, time passed), actions come out (spawn, drain, kill, log,
 * exit). primary.ts performs the actions; tests drive this with a fake clock.
 */
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import type { Level } from '../log.js';
import type { ControlSignal } from '../protocol.js';

export type WorkerState = 'starting' | 'listening' | 'stopping' | 'dead';
export type StopReason = 'shutdown' | 'roll' | 'scale' | 'hung' | 'boot-timeout' | 'give-up';
export type RestartCause = 'crash' | 'hung' | 'boot' | 'roll' | 'scale';
export type Phase = 'idle' | 'running' | 'stopping' | 'exited';

export interface SupervisorOptions {
  readonly workers: number;
  readonly bootTimeoutMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly shutdownDelayMs: number;
  readonly crashLoopLimit: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly resetAfterMs: number };
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
    }
  | { readonly type: 'signal'; readonly signal: ControlSignal }
  | { readonly type: 'tick' };

export type Action =
  | { readonly type: 'spawn'; readonly id: number; readonly slot: number }
  | { readonly type: 'drain'; readonly id: number; readonly delayMs: number }
  | { readonly type: 'kill'; readonly id: number }
  | {
      readonly type: 'log';
      readonly level: Level;
      readonly msg: string;
      readonly fields: Record<string, unknown>;
    }
  | { readonly type: 'exit'; readonly code: ExitCodeValue };

interface WorkerRecord {
  readonly id: number;
  readonly slot: number;
  pid: number | undefined;
  state: WorkerState;
  readonly spawnedAt: number;
  readyAt: number | undefined;
  lastBeat: number;
  stopReason: StopReason | undefined;
  stopDeadline: number | undefined;
  killSent: boolean;
}

interface Slot {
  failures: number;
  respawnAt: number | undefined;
}

interface Roll {
  queue: number[];
  current: { slot: number; newId: number; oldId: number | undefined } | undefined;
}

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
}

export class Supervisor {
  #phase: Phase = 'idle';
  #target: number;
  #nextId = 1;
  #exitCode: ExitCodeValue = ExitCode.ok;
  #bootFailures = 0;
  #everReady = false;
  #roll: Roll | undefined;
  #rollAgain = false;
  readonly #workers = new Map<number, WorkerRecord>();
  readonly #slots: Slot[] = [];
  readonly #restarts: Record<RestartCause, number> = { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 };
  #actions: Action[] = [];
  private readonly options: SupervisorOptions;
  private readonly now: () => number;

  /** `now` is the clock (Date.now in the primary, a fake one in tests). */
  constructor(options: SupervisorOptions, now: () => number) {
    this.options = options;
    this.now = now;
    this.#target = options.workers;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Feeds one event; returns what to do, in order. */
  handle(event: SupervisorEvent): Action[] {
    this.#actions = [];
    switch (event.type) {
      case 'start':
        this.#start();
        break;
      case 'spawned': {
        const w = this.#workers.get(event.id);
        if (w) w.pid = event.pid;
        break;
      }
      case 'ready':
        this.#onReady(event.id);
        break;
      case 'heartbeat': {
        const w = this.#workers.get(event.id);
        if (w) w.lastBeat = this.now();
        break;
      }
      case 'fatal':
        this.#onFatal(event.id, event.code, event.message);
        break;
      case 'exit':
        this.#onExit(event.id, event.code, event.signal);
        break;
      case 'signal':
        this.#onSignal(event.signal);
        break;
      case 'tick':
        this.#onTick();
        break;
    }
    return this.#actions;
  }

  /** When the next timed decision is due (boot, heartbeat or drain timeout, a delayed respawn). */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (t: number | undefined): void => {
      if (t !== undefined && (next === undefined || t < next)) next = t;
    };
    for (const w of this.#workers.values()) {
      if (w.killSent) continue;
      if (w.state === 'starting') consider(w.spawnedAt + this.options.bootTimeoutMs);
      else if (w.state === 'listening') consider(w.lastBeat + this.options.heartbeatTimeoutMs);
      else if (w.state === 'stopping') consider(w.stopDeadline);
    }
    if (this.#phase === 'running') for (const s of this.#slots.slice(0, this.#target)) consider(s.respawnAt);
    return next;
  }

  snapshot(): SupervisorSnapshot {
    return {
      phase: this.#phase,
      configured: this.#target,
      workers: [...this.#workers.values()].map(({ id, slot, pid, state }) => ({ id, slot, pid, state })),
      restarts: { ...this.#restarts },
    };
  }

  #log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    this.#actions.push({ type: 'log', level, msg, fields });
  }

  #fields(w: WorkerRecord): Record<string, unknown> {
    return { slot: w.slot, workerPid: w.pid };
  }

  #start(): void {
    if (this.#phase !== 'idle') return;
    this.#phase = 'running';
    for (let slot = 0; slot < this.#target; slot++) this.#spawnWorker(slot);
  }

  #spawnWorker(slot: number): number {
    const id = this.#nextId++;
    const now = this.now();
    this.#slots[slot] ??= { failures: 0, respawnAt: undefined };
    this.#workers.set(id, {
      id,
      slot,
      pid: undefined,
      state: 'starting',
      spawnedAt: now,
      readyAt: undefined,
      lastBeat: now,
      stopReason: undefined,
      stopDeadline: undefined,
      killSent: false,
    });
    this.#actions.push({ type: 'spawn', id, slot });
    return id;
  }

  #drainWorker(w: WorkerRecord, reason: StopReason, delayMs = 0): void {
    if (w.state === 'stopping' || w.state === 'dead') return;
    w.state = 'stopping';
    w.stopReason = reason;
    w.stopDeadline = this.now() + delayMs + this.options.drainTimeoutMs;
    this.#actions.push({ type: 'drain', id: w.id, delayMs });
  }

  #killWorker(w: WorkerRecord, reason: StopReason): void {
    if (w.killSent) return;
    w.killSent = true;
    if (w.state !== 'stopping') w.stopReason = reason;
    w.state = 'stopping';
    this.#actions.push({ type: 'kill', id: w.id });
  }

  #onReady(id: number): void {
    const w = this.#workers.get(id);
    if (w?.state !== 'starting') return;
    w.state = 'listening';
    w.readyAt = this.now();
    w.lastBeat = w.readyAt;
    this.#bootFailures = 0;
    this.#everReady = true;
    this.#log('info', 'worker ready', { ...this.#fields(w), bootMs: w.readyAt - w.spawnedAt });
    const current = this.#roll?.current;
    if (current?.newId === id) {
      const old = current.oldId === undefined ? undefined : this.#workers.get(current.oldId);
      if (old) this.#drainWorker(old, 'roll');
      else this.#advanceRoll(true);
    }
    if (this.#phase === 'stopping') this.#drainWorker(w, 'shutdown');
  }

  #onFatal(id: number, code: string, message: string): void {
    // Before any worker has listened, a bind error fails every worker alike: stop, as gunicorn does
    // on WORKER_BOOT_ERROR. Once one has, the address is bindable and this is one failed boot: its
    // exit is handled like any other (back-off respawn, crash-loop limit).
    if (!this.#everReady) {
      this.#giveUp(ExitCode.bind, `worker cannot serve: ${message}`, { code });
      return;
    }
    const w = this.#workers.get(id);
    this.#log('error', `worker cannot serve: ${message}`, { ...(w ? this.#fields(w) : {}), code });
  }

  #onExit(id: number, code: number | null, signal: string | null): void {
    const w = this.#workers.get(id);
    if (!w) return;
    this.#workers.delete(id);
    w.state = 'dead';
    const exit = { ...this.#fields(w), code, signal };

    if (this.#phase === 'stopping') {
      this.#log(code === 0 ? 'info' : 'warn', 'worker stopped', exit);
      if (this.#workers.size === 0) this.#exit();
      return;
    }

    const current = this.#roll?.current;
    if (current?.oldId === id) {
      current.oldId = undefined;
      const replacement = this.#workers.get(current.newId);
      if (w.stopReason === 'roll') this.#log('info', 'worker replaced', { ...exit, reason: 'roll' });
      else
        this.#log('warn', 'worker exited during its rolling restart', {
          ...exit,
          replacement: replacement?.state,
        });
      // 'starting': its ready advances the roll; 'stopping' (being killed): its exit aborts it.
      if (!replacement || replacement.state === 'listening') this.#advanceRoll(true);
      return;
    }
    if (this.#isPlannedStop(w)) {
      this.#log(code === 0 ? 'info' : 'warn', 'worker stopped', { ...exit, reason: w.stopReason });
      return;
    }

    const now = this.now();
    const booted = w.readyAt !== undefined;
    const cause: RestartCause = !booted ? 'boot' : w.stopReason === 'hung' ? 'hung' : 'crash';
    if (!booted) {
      this.#bootFailures++;
      if (this.#bootFailures >= this.options.crashLoopLimit) {
        this.#giveUp(
          ExitCode.crashLoop,
          `${this.#bootFailures} workers in a row failed before becoming ready; giving up`,
          { ...exit, lastCause: w.stopReason ?? 'exited' },
        );
        return;
      }
    }
    if (current?.newId === id) {
      this.#roll = undefined;
      this.#rollAgain = false;
      const old = current.oldId === undefined ? undefined : this.#workers.get(current.oldId);
      if (old?.state === 'listening') {
        this.#log(
          'error',
          'rolling restart aborted: the new worker failed to start; the old one keeps serving',
          exit,
        );
        return;
      }
      // The old worker is gone or draining (a drain cannot be undone): the slot needs a new one.
      this.#log('error', 'rolling restart aborted: the new worker failed and the old one is not serving', {
        ...exit,
        cause,
      });
    }
    const slot = this.#slots[w.slot];
    if (!slot || w.slot >= this.#target) return;
    if (slot.respawnAt !== undefined || this.#isSlotFilled(w.slot)) {
      this.#log('warn', 'worker exited unexpectedly; its slot is already being refilled', { ...exit, cause });
      return;
    }
    if (booted && now - (w.readyAt ?? now) >= this.options.backoff.resetAfterMs) slot.failures = 0;
    const { initialMs, maxMs } = this.options.backoff;
    const delayMs = Math.min(initialMs * 2 ** slot.failures, maxMs);
    slot.failures++;
    slot.respawnAt = now + delayMs;
    this.#restarts[cause]++;
    this.#log('warn', 'worker exited unexpectedly', { ...exit, cause, restartInMs: delayMs });
  }

  /** True for a worker the supervisor itself asked to go away for good (a roll, scaling down). */
  #isPlannedStop(w: WorkerRecord): boolean {
    return w.stopReason === 'roll' || w.stopReason === 'scale';
  }

  /** True when the slot has a worker that serves or is about to. */
  #isSlotFilled(slot: number): boolean {
    for (const w of this.#workers.values())
      if (w.slot === slot && (w.state === 'starting' || w.state === 'listening')) return true;
    return false;
  }

  #onSignal(signal: ControlSignal): void {
    if (this.#phase === 'exited') return;
    if (signal === 'SIGTERM' || signal === 'SIGINT') {
      if (this.#phase === 'stopping') {
        this.#log('warn', `second ${signal}: stopping now`, { workers: this.#workers.size });
        this.#forceStop();
      } else {
        this.#stop(signal);
      }
      return;
    }
    if (this.#phase !== 'running') return;
    if (signal === 'SIGHUP') {
      if (this.#roll) {
        this.#rollAgain = true;
        this.#log('info', 'SIGHUP during a rolling restart: one more roll scheduled');
      } else {
        this.#startRoll();
      }
    } else if (signal === 'SIGTTIN') {
      this.#target++;
      this.#slots[this.#target - 1] = { failures: 0, respawnAt: undefined };
      this.#restarts.scale++;
      this.#log('info', 'SIGTTIN: adding a worker', { workers: this.#target });
      this.#spawnWorker(this.#target - 1);
    } else if (signal === 'SIGTTOU') {
      if (this.#target <= 1) {
        this.#log('warn', 'SIGTTOU ignored: at least one worker must run', { workers: this.#target });
        return;
      }
      this.#target--;
      const slot = this.#target;
      const s = this.#slots[slot];
      if (s) s.respawnAt = undefined;
      if (this.#roll) {
        this.#roll.queue = this.#roll.queue.filter((q) => q !== slot);
        if (this.#roll.current?.slot === slot) this.#roll.current = undefined;
      }
      this.#restarts.scale++;
      this.#log('info', 'SIGTTOU: removing a worker', { workers: this.#target });
      for (const w of this.#workers.values()) {
        if (w.slot !== slot) continue;
        this.#drainWorker(w, 'scale');
        // One already stopping (a roll's old worker, a hung one being killed) now goes for good too.
        w.stopReason = 'scale';
      }
      if (this.#roll && !this.#roll.current) this.#advanceRoll(false);
    }
  }

  #startRoll(): void {
    const slots = [
      ...new Set([...this.#workers.values()].filter((w) => w.state === 'listening').map((w) => w.slot)),
    ];
    this.#roll = { queue: slots.sort((a, b) => a - b), current: undefined };
    this.#log('info', 'rolling restart started', { workers: slots.length });
    this.#advanceRoll(false);
  }

  /** Replaces the next slot's worker; `slotDone` when the current slot has just finished. */
  #advanceRoll(slotDone: boolean): void {
    const roll = this.#roll;
    if (!roll) return;
    if (slotDone) roll.current = undefined;
    while (!roll.current) {
      const slot = roll.queue.shift();
      if (slot === undefined) {
        this.#roll = undefined;
        this.#log('info', 'rolling restart complete', { workers: this.#target });
        if (this.#rollAgain) {
          this.#rollAgain = false;
          this.#startRoll();
        }
        return;
      }
      const old = [...this.#workers.values()].find((w) => w.slot === slot && w.state === 'listening');
      if (!old) continue; // The slot is restarting after a crash: its next worker is new anyway.
      this.#restarts.roll++;
      roll.current = { slot, oldId: old.id, newId: this.#spawnWorker(slot) };
    }
  }

  #onTick(): void {
    const now = this.now();
    for (const w of this.#workers.values()) {
      if (w.killSent) continue;
      if (w.state === 'starting' && now >= w.spawnedAt + this.options.bootTimeoutMs) {
        this.#log('error', 'worker did not become ready in time; killing it', {
          ...this.#fields(w),
          bootTimeoutMs: this.options.bootTimeoutMs,
        });
        this.#killWorker(w, 'boot-timeout');
      } else if (w.state === 'listening' && now >= w.lastBeat + this.options.heartbeatTimeoutMs) {
        this.#log('error', 'worker is hung (no heartbeat); killing it', {
          ...this.#fields(w),
          silentMs: now - w.lastBeat,
        });
        this.#killWorker(w, 'hung');
      } else if (w.state === 'stopping' && w.stopDeadline !== undefined && now >= w.stopDeadline) {
        this.#log('warn', 'worker did not finish draining in time; killing it', {
          ...this.#fields(w),
          reason: w.stopReason,
        });
        if (this.#phase === 'stopping') this.#exitCode = this.#exitCode || ExitCode.forcedStop;
        this.#killWorker(w, w.stopReason ?? 'shutdown');
      }
    }
    if (this.#phase !== 'running') return;
    this.#slots.forEach((s, slot) => {
      if (slot < this.#target && s.respawnAt !== undefined && now >= s.respawnAt) {
        s.respawnAt = undefined;
        this.#spawnWorker(slot);
      }
    });
  }

  #stop(signal: ControlSignal): void {
    this.#phase = 'stopping';
    this.#roll = undefined;
    this.#log('info', `${signal}: shutting down`, {
      workers: this.#workers.size,
      shutdownDelayMs: this.options.shutdownDelayMs,
      drainTimeoutMs: this.options.drainTimeoutMs,
    });
    for (const w of this.#workers.values()) {
      if (w.state === 'starting') this.#killWorker(w, 'shutdown');
      else this.#drainWorker(w, 'shutdown', this.options.shutdownDelayMs);
    }
    if (this.#workers.size === 0) this.#exit();
  }

  #forceStop(): void {
    this.#exitCode = this.#exitCode || ExitCode.forcedStop;
    for (const w of this.#workers.values()) this.#killWorker(w, 'shutdown');
    if (this.#workers.size === 0) this.#exit();
  }

  #giveUp(code: ExitCodeValue, msg: string, fields: Record<string, unknown>): void {
    if (this.#phase === 'stopping' || this.#phase === 'exited') return;
    this.#log('fatal', msg, { ...fields, exitCode: code });
    this.#exitCode = code;
    this.#phase = 'stopping';
    this.#roll = undefined;
    for (const w of this.#workers.values()) {
      if (w.state === 'listening') this.#drainWorker(w, 'give-up');
      else this.#killWorker(w, 'give-up');
    }
    if (this.#workers.size === 0) this.#exit();
  }

  #exit(): void {
    this.#phase = 'exited';
    this.#log(this.#exitCode === 0 ? 'info' : 'error', 'primary exiting', { exitCode: this.#exitCode });
    this.#actions.push({ type: 'exit', code: this.#exitCode });
  }
}
