/**
 * The supervisor's record of every worker process (Puma's worker handle, in spirit): its slot, its
 * state and the deadline that state carries. It turns spawn, drain and kill into actions;
 * supervisor.ts decides when.
 */
import type { Action, StopReason, SupervisorOptions, WorkerState } from './supervisor-events.js';

/** Whether a worker stopped for `reason` leaves with the whole service (its /readyz then 503). */
function stopsService(reason: StopReason | undefined): boolean {
  return reason === 'shutdown' || reason === 'give-up';
}

export interface WorkerRecord {
  readonly id: number;
  readonly slot: number;
  pid: number | undefined;
  state: WorkerState;
  /** When it was forked. */
  readonly spawnedAt: number;
  /** When it must be ready; moved on by a pause of the primary, which it must not count. */
  bootDeadline: number;
  readyAt: number | undefined;
  lastBeat: number;
  stopReason: StopReason | undefined;
  stopDeadline: number | undefined;
  killSent: boolean;
}

/** Which of its deadlines a worker missed: becoming ready, a heartbeat, or finishing its drain. */
export type Overdue = 'boot' | 'heartbeat' | 'drain';

type Timeouts = Pick<SupervisorOptions, 'bootTimeoutMs' | 'heartbeatTimeoutMs' | 'drainTimeoutMs'>;

/** The fields that name a worker in a log line. */
export function workerFields(w: WorkerRecord): Record<string, unknown> {
  return { slot: w.slot, workerPid: w.pid };
}

export class WorkerTable {
  readonly #workers = new Map<number, WorkerRecord>();
  #nextId = 1;
  readonly #timeouts: Timeouts;
  readonly #now: () => number;
  readonly #emit: (action: Action) => void;

  /** `emit` receives the spawn, drain and kill actions this table decides on. */
  constructor(timeouts: Timeouts, now: () => number, emit: (action: Action) => void) {
    this.#timeouts = timeouts;
    this.#now = now;
    this.#emit = emit;
  }

  get size(): number {
    return this.#workers.size;
  }

  get(id: number): WorkerRecord | undefined {
    return this.#workers.get(id);
  }

  values(): MapIterator<WorkerRecord> {
    return this.#workers.values();
  }

  /** Forgets a worker whose process exited and returns its last record. */
  remove(id: number): WorkerRecord | undefined {
    const w = this.#workers.get(id);
    if (!w) return undefined;
    this.#workers.delete(id);
    w.state = 'dead';
    return w;
  }

  /** Starts a new worker in `slot`; returns its id. */
  spawn(slot: number): number {
    const id = this.#nextId++;
    const now = this.#now();
    this.#workers.set(id, {
      id,
      slot,
      pid: undefined,
      state: 'starting',
      spawnedAt: now,
      bootDeadline: now + this.#timeouts.bootTimeoutMs,
      readyAt: undefined,
      lastBeat: now,
      stopReason: undefined,
      stopDeadline: undefined,
      killSent: false,
    });
    this.#emit({ type: 'spawn', id, slot });
    return id;
  }

  /** Asks a worker to finish its requests and exit, `delayMs` from now; once only. */
  drain(w: WorkerRecord, reason: StopReason, delayMs = 0): void {
    if (w.state === 'dead') return;
    if (w.state === 'stopping') {
      // Leaving already, for a roll or a scale-down, as the whole service stops: it keeps its
      // reason and deadline, and is told, so that its /readyz turns 503 like every other's.
      if (stopsService(reason) && !stopsService(w.stopReason) && !w.killSent)
        this.#emit({ type: 'drain', id: w.id, delayMs: 0, serviceStops: true });
      return;
    }
    w.state = 'stopping';
    w.stopReason = reason;
    w.stopDeadline = this.#now() + delayMs + this.#timeouts.drainTimeoutMs;
    this.#emit({ type: 'drain', id: w.id, delayMs, serviceStops: stopsService(reason) });
  }

  /** SIGKILLs a worker; a draining one keeps the reason it was draining for. */
  kill(w: WorkerRecord, reason: StopReason): void {
    if (w.killSent) return;
    w.killSent = true;
    if (w.state !== 'stopping') w.stopReason = reason;
    w.state = 'stopping';
    this.#emit({ type: 'kill', id: w.id });
  }

  /** A worker in `slot` that is in `state` ('listening': the one serving there), if one is. */
  inSlot(slot: number, state: WorkerState): WorkerRecord | undefined {
    for (const w of this.#workers.values()) if (w.slot === slot && w.state === state) return w;
    return undefined;
  }

  /** How many workers are in `state` ('starting': booting, 'listening': serving). */
  count(state: WorkerState): number {
    let n = 0;
    for (const w of this.#workers.values()) if (w.state === state) n++;
    return n;
  }

  /** True when the slot has a worker that serves or is about to. */
  isSlotFilled(slot: number): boolean {
    for (const w of this.#workers.values())
      if (w.slot === slot && (w.state === 'starting' || w.state === 'listening')) return true;
    return false;
  }

  /** The earliest deadline of any worker not already being killed. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const w of this.#workers.values()) {
      const due = this.#deadline(w);
      if (due !== undefined && (next === undefined || due < next)) next = due;
    }
    return next;
  }

  /**
   * The workers whose deadline has passed at `now`, with the deadline each missed. The caller's
   * `now`, so that what it logs of the wait (silentMs) is what was judged.
   */
  overdue(now: number): [WorkerRecord, Overdue][] {
    const late: [WorkerRecord, Overdue][] = [];
    for (const w of this.#workers.values()) {
      const due = this.#deadline(w);
      if (due === undefined || now < due) continue;
      late.push([w, w.state === 'starting' ? 'boot' : w.state === 'listening' ? 'heartbeat' : 'drain']);
    }
    return late;
  }

  #deadline(w: WorkerRecord): number | undefined {
    if (w.killSent) return undefined;
    if (w.state === 'starting') return w.bootDeadline;
    if (w.state === 'listening') return w.lastBeat + this.#timeouts.heartbeatTimeoutMs;
    if (w.state === 'stopping') return w.stopDeadline;
    return undefined;
  }
}
