/**
 * SIGHUP's rolling restart: one slot at a time, a new worker starts beside the old one, and only
 * once it is ready does the old one drain, so no slot stops serving while its worker is replaced.
 * Part of the supervisor's state machine: no I/O, everything goes through the host.
 */
import type { Level } from '../log.js';
import type { RestartCause } from './supervisor-events.js';
import type { WorkerRecord, WorkerTable } from './worker-table.js';

export interface RollHost {
  readonly workers: WorkerTable;
  /** Starts the replacement worker in `slot` and returns its id. */
  spawnReplacement(slot: number): number;
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  /** How many workers are configured now. */
  configured(): number;
}

interface Step {
  readonly slot: number;
  /** The replacement; undefined while the step waits for `booting`. */
  newId: number | undefined;
  oldId: number | undefined;
  /**
   * A worker that was starting when the roll began: it may have loaded the code from before the
   * SIGHUP, so the step waits until it is ready and then replaces it.
   */
  booting?: number | undefined;
}

export class RollingRestart {
  readonly #host: RollHost;
  /** Slots still to replace; undefined when no roll is running. */
  #queue: number[] | undefined;
  #step: Step | undefined;
  #again = false;
  /** Workers replaced by this roll so far. */
  #replaced = 0;
  /**
   * The workers serving or starting when the roll began, which may run the code from before the
   * SIGHUP; a worker forked since (a crash's refill) runs the code as it is now, and is left be.
   */
  #stale = new Set<number>();

  constructor(host: RollHost) {
    this.#host = host;
  }

  /** SIGHUP: starts a roll, or schedules one more after the one running. */
  request(): void {
    if (this.#queue) {
      const scheduled = this.#again ? 'already scheduled' : 'scheduled';
      this.#again = true;
      this.#host.log('info', `SIGHUP during a rolling restart: one more roll ${scheduled}`);
    } else {
      this.#start();
    }
  }

  /** Forgets the roll: the service is stopping. */
  cancel(): void {
    this.#queue = undefined;
    this.#step = undefined;
  }

  /**
   * A worker became ready: a replacement's old worker now drains (or the roll goes on if it is
   * gone). True when the roll replaced a worker: the old one was still serving, to drain. One that
   * exited first, or is being killed as hung, is counted by its own cause when it exits.
   */
  onReady(id: number): boolean {
    const step = this.#step;
    if (step !== undefined && step.booting === id) {
      step.booting = undefined;
      step.oldId = id;
      step.newId = this.#host.spawnReplacement(step.slot);
      return false;
    }
    if (step?.newId !== id) return false;
    const old = this.#oldWorker(step);
    if (!old) {
      this.#advance(true);
      return false;
    }
    // Being killed: its exit moves the roll on (onOldExit), as the replacement now listens.
    if (old.state !== 'listening') return false;
    this.#host.workers.drain(old, 'roll');
    this.#replaced++;
    return true;
  }

  /**
   * A worker the roll waits for exited before it was ready: its slot is the supervisor's to refill,
   * with a worker forked after the SIGHUP, and the roll goes on with the next slot.
   */
  onBootingExit(id: number): void {
    if (this.#step === undefined || this.#step.booting !== id) return;
    this.#advance(true);
  }

  /** True when `w`, which exited, was the worker being replaced; its exit is then handled here. */
  onOldExit(w: WorkerRecord, exit: Record<string, unknown>): boolean {
    const step = this.#step;
    if (step?.oldId !== w.id) return false;
    step.oldId = undefined;
    // Set with oldId: a step waits for a booting worker before either.
    const replacement = step.newId === undefined ? undefined : this.#host.workers.get(step.newId);
    if (w.stopReason === 'roll') {
      // Replaced all the same, but whatever it was still serving is lost: not an info line.
      const clean = exit.code === 0 && !w.killSent;
      this.#host.log(clean ? 'info' : 'warn', 'worker replaced', { ...exit, reason: 'roll' });
    } else
      this.#host.log('warn', 'worker exited during its rolling restart', {
        ...exit,
        replacement: replacement?.state,
      });
    // 'starting': its ready advances the roll; 'stopping' (being killed): its exit ends the step.
    if (replacement?.state === 'listening') this.#advance(true);
    return true;
  }

  /**
   * The worker `id` exited, not stopped by the supervisor. If it was the step's replacement, the
   * roll stops there: a new worker that fails to start, or exits before the roll has moved on
   * (while its old worker drains), is most likely a bad release, which must not replace the old
   * workers still serving in the slots not reached. Returns true when the roll has dealt with
   * the slot; false when the slot is the supervisor's to refill, as outside a roll.
   */
  onNewExit(
    id: number,
    exit: Record<string, unknown>,
    how: { readonly booted: boolean; readonly interrupted: boolean; readonly cause: RestartCause },
  ): boolean {
    const step = this.#step;
    if (step?.newId !== id) return false;
    const old = this.#oldWorker(step);
    if (how.interrupted) {
      // A group signal in Node's own start-up is no failed boot: another starts at once.
      this.#host.log('warn', 'new worker killed by a signal before it was ready; starting another', exit);
      step.newId = this.#host.spawnReplacement(step.slot);
      return true;
    }
    // A queued SIGHUP goes too: another roll would meet the same release.
    this.cancel();
    this.#again = false;
    if (how.booted) {
      // Its old worker drains already (a drain cannot be undone): a crash, refilled with back-off.
      this.#host.log('error', 'rolling restart aborted: the new worker exited before the roll moved on', {
        ...exit,
        cause: how.cause,
      });
      return false;
    }
    // Failing while the old one serves says nothing of the service's health: the old worker keeps
    // the slot, and the failure does not count toward the crash-loop limit.
    if (old?.state === 'listening') {
      this.#host.log(
        'error',
        'rolling restart aborted: the new worker failed to start; the old one keeps serving',
        exit,
      );
      return true;
    }
    // The old worker is gone or draining (a drain cannot be undone): the slot needs a new one.
    this.#host.log('error', 'rolling restart aborted: the new worker failed and the old one is not serving', {
      ...exit,
      cause: how.cause,
    });
    return false;
  }

  /** SIGTTOU removed `slot`: it is not replaced, and the roll goes on with the next one. */
  dropSlot(slot: number): void {
    if (!this.#queue) return;
    this.#queue = this.#queue.filter((q) => q !== slot);
    if (this.#step?.slot === slot) this.#step = undefined;
    if (!this.#step) this.#advance(false);
  }

  /** The worker the step replaces, while it has not exited. */
  #oldWorker(step: Step): WorkerRecord | undefined {
    return step.oldId === undefined ? undefined : this.#host.workers.get(step.oldId);
  }

  #start(): void {
    const slots = new Set<number>();
    this.#stale = new Set();
    for (const w of this.#host.workers.values()) {
      if (w.state !== 'listening' && w.state !== 'starting') continue;
      slots.add(w.slot);
      this.#stale.add(w.id);
    }
    this.#replaced = 0;
    this.#queue = [...slots].sort((a, b) => a - b);
    this.#host.log('info', 'rolling restart started', { signal: 'SIGHUP', workers: slots.size });
    this.#advance(false);
  }

  /** Replaces the next slot's worker; `stepDone` when the current slot has just finished. */
  #advance(stepDone: boolean): void {
    const queue = this.#queue;
    if (!queue) return;
    if (stepDone) this.#step = undefined;
    while (!this.#step) {
      const slot = queue.shift();
      if (slot === undefined) {
        this.cancel();
        this.#host.log('info', 'rolling restart complete', {
          workers: this.#host.configured(),
          replaced: this.#replaced,
        });
        if (this.#again) {
          this.#again = false;
          this.#start();
        }
        return;
      }
      // At most one worker serves or starts in a slot the roll reaches: its replacements are done.
      const old = this.#host.workers.inSlot(slot, 'listening');
      const booting = this.#host.workers.inSlot(slot, 'starting');
      if (old && this.#stale.has(old.id)) {
        this.#step = { slot, oldId: old.id, newId: this.#host.spawnReplacement(slot) };
      } else if (booting && this.#stale.has(booting.id)) {
        this.#step = { slot, oldId: undefined, newId: undefined, booting: booting.id };
      }
      // Otherwise the slot's worker was forked after the SIGHUP (a crash's refill): it is left be.
    }
  }
}
