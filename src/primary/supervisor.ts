/**
 * The supervisor's decisions, as one state machine with no I/O: events go in (a worker is
 * ready, exited, a signal came, time passed), actions come out (spawn, drain, kill, log,
 * exit). primary.ts performs the actions; tests drive this with a fake clock. Its parts:
 * worker-table.ts keeps each worker's state and deadlines, rolling-restart.ts plans SIGHUP's roll,
 * respawn-schedule.ts keeps each slot's back-off, pause-watch.ts notices the primary's own pauses,
 * supervisor-events.ts defines what goes in and out; what a worker's exit means, scaling and
 * shutdown are here.
 */
import { MAX_WORKERS } from '../config.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import type { Level } from '../log.js';
import type { ControlSignal } from '../protocol.js';
import { PauseWatch } from './pause-watch.js';
import { RespawnSchedule } from './respawn-schedule.js';
import { RollingRestart } from './rolling-restart.js';
import type {
  Action,
  Phase,
  RestartCause,
  SupervisorEvent,
  SupervisorOptions,
  SupervisorSnapshot,
} from './supervisor-events.js';
import { type WorkerRecord, WorkerTable, workerFields } from './worker-table.js';

/**
 * Signals that end a worker that does not handle them. Workers ignore them, but one sent to the
 * whole process group reaches a new worker before it can: that worker did not fail to boot.
 */
const INTERRUPTS: ReadonlySet<string> = new Set(['SIGHUP', 'SIGINT', 'SIGTERM']);

/**
 * The stop signal that started a stop, repeated within this, is that signal sent twice (to the
 * process and to its group, as GNU timeout does), not a second request that should hurry.
 */
export const REPEATED_STOP_MS = 100;

export class Supervisor {
  #phase: Phase = 'idle';
  #target: number;
  #exitCode: ExitCodeValue = ExitCode.ok;
  #bootFailures = 0;
  #everReady = false;
  /** The signal that started the stop, and when. */
  #stopSignal: { readonly signal: ControlSignal; readonly at: number } | undefined;
  readonly #roll: RollingRestart;
  readonly #workers: WorkerTable;
  readonly #respawns: RespawnSchedule;
  readonly #pauses: PauseWatch;
  readonly #restarts: Record<RestartCause, number> = { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 };
  #oomKills = 0;
  /** The memory cgroup's OOM kills accounted for: at start, plus those matched to an exit since. */
  #oomKillsMatched: number | undefined;
  #actions: Action[] = [];
  private readonly options: SupervisorOptions;
  private readonly now: () => number;

  /**
   * `now` is a monotonic clock in milliseconds (performance.now in the primary, a fake one in
   * tests): a wall clock stepped back by NTP would push every deadline out by the step.
   */
  constructor(options: SupervisorOptions, now: () => number) {
    this.options = options;
    this.now = now;
    this.#target = options.workers;
    this.#oomKillsMatched = options.oomKillsAtStart;
    this.#workers = new WorkerTable(options, now, (action) => this.#actions.push(action));
    this.#respawns = new RespawnSchedule(options.backoff);
    // A quarter of the heartbeat timeout: a worker is declared hung only after a silence of
    // HEARTBEAT_TIMEOUT_MS, at least twice its interval, so a pause of the primary that could
    // cause that makes the primary at least this late.
    this.#pauses = new PauseWatch(options.heartbeatTimeoutMs / 4);
    this.#roll = new RollingRestart({
      workers: this.#workers,
      spawnReplacement: (slot) => this.#workers.spawn(slot),
      log: (level, msg, fields) => this.#log(level, msg, fields),
      configured: () => this.#target,
    });
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Feeds one event; returns what to do, in order. */
  handle(event: SupervisorEvent): Action[] {
    this.#actions = [];
    const pausedMs = this.#pauses.observe(this.now());
    if (pausedMs !== undefined) this.#resumeAfterPause(pausedMs);
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
        this.#onExit(event.id, event.code, event.signal, event.oomKills);
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

  /** When the primary must tick next, asked after each event (see PauseWatch.nextTick). */
  nextTick(): number {
    return this.#pauses.nextTick(this.nextDeadline());
  }

  /** When the next timed decision is due (boot, heartbeat or drain timeout, a delayed respawn). */
  nextDeadline(): number | undefined {
    const next = this.#workers.nextDeadline();
    // A slot waiting for a boot to finish is due at that worker's ready or exit, not at a time.
    if (this.#phase !== 'running' || !this.#canBoot()) return next;
    const respawn = this.#respawns.nextDue(this.#target);
    return respawn === undefined || (next !== undefined && next <= respawn) ? next : respawn;
  }

  snapshot(): SupervisorSnapshot {
    return {
      phase: this.#phase,
      configured: this.#target,
      workers: [...this.#workers.values()].map(({ id, slot, pid, state }) => ({ id, slot, pid, state })),
      restarts: { ...this.#restarts },
      oomKills: this.#oomKills,
    };
  }

  #log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    this.#actions.push({ type: 'log', level, msg, fields });
  }

  #start(): void {
    if (this.#phase !== 'idle') return;
    this.#phase = 'running';
    for (let slot = 0; slot < this.#target; slot++) this.#fill(slot);
  }

  /** Starts a worker in `slot` now, or once fewer than bootConcurrency workers are booting. */
  #fill(slot: number): void {
    if (this.#canBoot()) this.#workers.spawn(slot);
    else this.#respawns.queue(slot, this.now());
  }

  #canBoot(): boolean {
    return this.#workers.count('starting') < this.options.bootConcurrency;
  }

  #onReady(id: number): void {
    const w = this.#workers.get(id);
    if (w?.state !== 'starting') return;
    w.state = 'listening';
    w.readyAt = this.now();
    w.lastBeat = w.readyAt;
    this.#bootFailures = 0;
    this.#everReady = true;
    this.#log('info', 'worker ready', { ...workerFields(w), bootMs: w.readyAt - w.spawnedAt });
    this.#respawns.served(w.slot, w.readyAt);
    // Counted once the new worker holds the slot: an aborted roll replaced nobody.
    if (this.#roll.onReady(id)) this.#restarts.roll++;
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
    this.#log('error', `worker cannot serve: ${message}`, { ...(w ? workerFields(w) : {}), code });
  }

  /**
   * Whether an OOM kill the cgroup counted is not yet matched to a worker's exit: each SIGKILL
   * the primary did not send takes one. One taken per exit, not the whole increase, so two
   * workers killed before either exit is seen are both told; a kill of another process in the
   * cgroup (a `docker exec` shell) can still be matched to the next worker killed from outside.
   */
  #takeOomKill(count: number | undefined): boolean {
    if (count === undefined || this.#oomKillsMatched === undefined) return false;
    if (count <= this.#oomKillsMatched) return false;
    this.#oomKillsMatched++;
    return true;
  }

  #onExit(id: number, code: number | null, signal: string | null, oomKills: number | undefined): void {
    const w = this.#workers.remove(id);
    if (!w) return;
    const oomKilled = signal === 'SIGKILL' && !w.killSent && this.#takeOomKill(oomKills);
    if (oomKilled) this.#oomKills++;
    const exit = { ...workerFields(w), code, signal, ...(oomKilled ? { oomKilled } : {}) };

    if (this.#phase === 'stopping') {
      if (code === 0 || w.killSent) {
        this.#log(code === 0 ? 'info' : 'warn', 'worker stopped', exit);
      } else {
        // Crashed, or killed from outside, while it drained: the requests it held are lost, so the
        // stop was not clean.
        this.#exitCode = this.#exitCode || ExitCode.forcedStop;
        this.#log('error', 'worker exited while draining; its open requests are lost', exit);
      }
      if (this.#workers.size === 0) this.#exit();
      return;
    }
    this.#roll.onBootingExit(w.id);

    const booted = w.readyAt !== undefined;
    const cause: RestartCause = !booted ? 'boot' : w.stopReason === 'hung' ? 'hung' : 'crash';
    if (this.#roll.onOldExit(w, exit)) {
      // Crashed or hung while its replacement started: the roll's new worker refills the slot, and
      // the failure counts, toward the slot's back-off too.
      if (w.stopReason !== 'roll') {
        this.#restarts[cause]++;
        this.#respawns.failed(w.slot, this.now());
      }
      return;
    }
    if (this.#isPlannedStop(w)) {
      this.#log(code === 0 ? 'info' : 'warn', 'worker stopped', { ...exit, reason: w.stopReason });
      return;
    }

    const now = this.now();
    const interrupted = !booted && w.stopReason === undefined && INTERRUPTS.has(signal ?? '');
    if (this.#roll.onNewExit(id, exit, { booted, interrupted, cause })) return;
    if (!booted && !interrupted) {
      this.#bootFailures++;
      // Giving up drains the workers that still serve: only when none does (a bad release met by
      // SIGTTIN or a crash's respawn must not stop a service that still serves, as with a roll).
      const serving = this.#workers.count('listening');
      if (this.#bootFailures >= this.options.crashLoopLimit && serving === 0) {
        this.#giveUp(
          ExitCode.crashLoop,
          `${this.#bootFailures} workers in a row failed before becoming ready; giving up`,
          { ...exit, lastCause: w.stopReason ?? 'exited' },
        );
        return;
      }
      if (this.#bootFailures === this.options.crashLoopLimit)
        this.#log(
          'error',
          `${this.#bootFailures} workers in a row failed before becoming ready; ${serving} still serve, so the service goes on, retrying with back-off`,
          { ...exit, lastCause: w.stopReason ?? 'exited' },
        );
    }
    if (w.slot >= this.#target) return;
    if (this.#respawns.isQueued(w.slot) || this.#workers.isSlotFilled(w.slot)) {
      // A failure all the same (a roll's old worker killed as hung after its replacement failed):
      // counted by its cause, whichever of the two exits came first.
      if (!interrupted) {
        this.#restarts[cause]++;
        this.#respawns.failed(w.slot, now);
      }
      this.#log('warn', 'worker exited unexpectedly; its slot is already being refilled', { ...exit, cause });
      return;
    }
    if (interrupted) {
      // Not a failure: no back-off growth, no restart counted.
      this.#log('warn', 'new worker killed by a signal before it was ready; starting another', {
        ...exit,
        restartInMs: this.#respawns.retry(w.slot, now),
      });
      return;
    }
    const delayMs = this.#respawns.backOff(w.slot, now);
    this.#restarts[cause]++;
    this.#log('warn', 'worker exited unexpectedly', { ...exit, cause, restartInMs: delayMs });
  }

  /** True for a worker the supervisor itself asked to go away for good (a roll, scaling down). */
  #isPlannedStop(w: WorkerRecord): boolean {
    return w.stopReason === 'roll' || w.stopReason === 'scale';
  }

  #onSignal(signal: ControlSignal): void {
    if (this.#phase === 'exited') return;
    if (signal === 'SIGTERM' || signal === 'SIGINT') {
      if (this.#phase === 'stopping') {
        const first = this.#stopSignal;
        if (first?.signal === signal && this.now() - first.at < REPEATED_STOP_MS) {
          this.#log('info', `${signal} again within ${REPEATED_STOP_MS} ms: taken as the same one`);
          return;
        }
        // No first signal: the supervisor itself is stopping (giving up), and the operator hurries it.
        const msg = !first
          ? `${signal} while giving up: stopping now`
          : first.signal === signal
            ? `second ${signal}: stopping now`
            : `${signal} after ${first.signal}: stopping now`;
        this.#log('warn', msg, { workers: this.#workers.size });
        this.#forceStop();
      } else {
        this.#stopSignal = { signal, at: this.now() };
        this.#stop(signal);
      }
      return;
    }
    if (this.#phase === 'stopping') {
      this.#log('info', `${signal} ignored: the service is stopping`);
      return;
    }
    if (this.#phase !== 'running') return;
    if (signal === 'SIGHUP') {
      this.#roll.request();
    } else if (signal === 'SIGTTIN') {
      if (this.#target >= MAX_WORKERS) {
        this.#log('warn', `SIGTTIN ignored: ${MAX_WORKERS} workers is the most, as for WORKERS`, {
          workers: this.#target,
        });
        return;
      }
      this.#target++;
      this.#respawns.reset(this.#target - 1);
      this.#restarts.scale++;
      this.#log('info', 'SIGTTIN: adding a worker', { workers: this.#target });
      this.#fill(this.#target - 1);
    } else if (signal === 'SIGTTOU') {
      if (this.#target <= 1) {
        this.#log('warn', 'SIGTTOU ignored: at least one worker must run', { workers: this.#target });
        return;
      }
      this.#target--;
      const slot = this.#target;
      this.#respawns.cancel(slot);
      this.#restarts.scale++;
      this.#log('info', 'SIGTTOU: removing a worker', { workers: this.#target });
      for (const w of this.#workers.values()) {
        if (w.slot !== slot) continue;
        this.#workers.drain(w, 'scale');
        // One already stopping (a roll's old worker, a hung one being killed) now goes for good too.
        w.stopReason = 'scale';
      }
      this.#roll.dropSlot(slot);
    }
  }

  /** The workers configured: the start count, as SIGTTIN and SIGTTOU changed it. */
  get configured(): number {
    return this.#target;
  }

  /** How often the primary must tick at least, and how late an event may come (see PauseWatch). */
  get watchMs(): number {
    return this.#pauses.watchMs;
  }

  #onTick(): void {
    const now = this.now();
    for (const [w, overdue] of this.#workers.overdue(now)) {
      if (overdue === 'boot') {
        this.#log('error', 'worker did not become ready in time; killing it', {
          ...workerFields(w),
          bootTimeoutMs: this.options.bootTimeoutMs,
        });
        this.#workers.kill(w, 'boot-timeout');
      } else if (overdue === 'heartbeat') {
        this.#log('error', 'worker is hung (no heartbeat); killing it', {
          ...workerFields(w),
          silentMs: now - w.lastBeat,
        });
        this.#workers.kill(w, 'hung');
      } else {
        this.#log('warn', 'worker did not finish draining in time; killing it', {
          ...workerFields(w),
          reason: w.stopReason,
        });
        if (this.#phase === 'stopping') this.#exitCode = this.#exitCode || ExitCode.forcedStop;
        this.#workers.kill(w, w.stopReason ?? 'shutdown');
      }
    }
    if (this.#phase !== 'running') return;
    while (this.#canBoot()) {
      const slot = this.#respawns.takeDue(this.#target, now);
      if (slot === undefined) break;
      this.#workers.spawn(slot);
    }
  }

  /**
   * The primary did not run for at most `gapMs`, so it saw nothing of that time: no worker's
   * deadline may count it. A frozen worker's next heartbeat is still to come, so each serving
   * worker gets a new window.
   */
  #resumeAfterPause(gapMs: number): void {
    const now = this.now();
    this.#log('warn', 'the primary did not run for a while; worker deadlines are moved past it', {
      gapMs,
    });
    for (const w of this.#workers.values()) {
      if (w.state === 'listening') w.lastBeat = now;
      else if (w.state === 'starting') w.bootDeadline += gapMs;
      else if (w.stopDeadline !== undefined) w.stopDeadline += gapMs;
    }
  }

  #stop(signal: ControlSignal): void {
    this.#phase = 'stopping';
    this.#roll.cancel();
    this.#log('info', `${signal}: shutting down`, {
      workers: this.#workers.size,
      shutdownDelayMs: this.options.shutdownDelayMs,
      drainTimeoutMs: this.options.drainTimeoutMs,
    });
    for (const w of this.#workers.values()) {
      if (w.state === 'starting') this.#workers.kill(w, 'shutdown');
      else this.#workers.drain(w, 'shutdown', this.options.shutdownDelayMs);
    }
    if (this.#workers.size === 0) this.#exit();
  }

  #forceStop(): void {
    this.#exitCode = this.#exitCode || ExitCode.forcedStop;
    for (const w of this.#workers.values()) this.#workers.kill(w, 'shutdown');
    if (this.#workers.size === 0) this.#exit();
  }

  #giveUp(code: ExitCodeValue, msg: string, fields: Record<string, unknown>): void {
    if (this.#phase === 'stopping' || this.#phase === 'exited') return;
    this.#log('fatal', msg, { ...fields, exitCode: code });
    this.#exitCode = code;
    this.#phase = 'stopping';
    this.#roll.cancel();
    for (const w of this.#workers.values()) {
      if (w.state === 'listening') this.#workers.drain(w, 'give-up');
      else this.#workers.kill(w, 'give-up');
    }
    if (this.#workers.size === 0) this.#exit();
  }

  #exit(): void {
    this.#phase = 'exited';
    this.#log(this.#exitCode === 0 ? 'info' : 'error', 'primary exiting', { exitCode: this.#exitCode });
    this.#actions.push({ type: 'exit', code: this.#exitCode });
  }
}
