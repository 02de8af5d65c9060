/**
 * Each worker slot's restart back-off, and the respawns that wait for their time or for a turn to
 * boot. Part of the supervisor's state machine: no I/O, times come from its clock.
 */
import type { SupervisorOptions } from './supervisor-events.js';

interface Slot {
  failures: number;
  respawnAt: number | undefined;
  /** Since when a worker has served in this slot without a failure, across rolls. */
  goodSince: number | undefined;
}

function freshSlot(): Slot {
  return { failures: 0, respawnAt: undefined, goodSince: undefined };
}

export class RespawnSchedule {
  readonly #slots: Slot[] = [];
  readonly #backoff: SupervisorOptions['backoff'];

  constructor(backoff: SupervisorOptions['backoff']) {
    this.#backoff = backoff;
  }

  #slot(slot: number): Slot {
    this.#slots[slot] ??= freshSlot();
    return this.#slots[slot];
  }

  /** A slot that scaling up adds starts with no failures, even one used before. */
  reset(slot: number): void {
    this.#slots[slot] = freshSlot();
  }

  /** Queues a start in `slot` at `at` (now, for a slot waiting for its turn to boot). */
  queue(slot: number, at: number): void {
    this.#slot(slot).respawnAt = at;
  }

  cancel(slot: number): void {
    const s = this.#slots[slot];
    if (s) s.respawnAt = undefined;
  }

  isQueued(slot: number): boolean {
    return this.#slots[slot]?.respawnAt !== undefined;
  }

  /** A worker became ready in `slot` at `at`: its good service counts from the first such. */
  served(slot: number, at: number): void {
    this.#slot(slot).goodSince ??= at;
  }

  /** A new worker killed by a signal before it was ready failed nothing: retried soon, no growth. */
  retry(slot: number, now: number): number {
    this.queue(slot, now + this.#backoff.initialMs);
    return this.#backoff.initialMs;
  }

  /**
   * A worker in `slot` failed: queues its respawn after a delay that doubles with each failure,
   * up to the maximum, and starts over once the slot has served well for resetAfterMs. Returns it.
   */
  backOff(slot: number, now: number): number {
    const delayMs = this.failed(slot, now);
    this.#slot(slot).respawnAt = now + delayMs;
    return delayMs;
  }

  /**
   * A worker in `slot` failed where another worker already takes its place (a roll's replacement,
   * a respawn queued): the failure counts toward the back-off, no start is queued. Returns the
   * delay this failure earns.
   */
  failed(slot: number, now: number): number {
    const { initialMs, maxMs, resetAfterMs } = this.#backoff;
    const s = this.#slot(slot);
    if (s.goodSince !== undefined && now - s.goodSince >= resetAfterMs) s.failures = 0;
    s.goodSince = undefined;
    const delayMs = Math.min(initialMs * 2 ** s.failures, maxMs);
    s.failures++;
    return delayMs;
  }

  /** The earliest queued start among the first `count` slots (those configured). */
  nextDue(count: number): number | undefined {
    let next: number | undefined;
    // Slots are made on first use, so the array can have holes.
    for (const s of this.#slots.slice(0, count)) {
      const at = s?.respawnAt;
      if (at !== undefined && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /** Takes the lowest of the first `count` slots whose start is due at `now`, if one is. */
  takeDue(count: number, now: number): number | undefined {
    for (const [slot, s] of this.#slots.slice(0, count).entries()) {
      if (s?.respawnAt !== undefined && now >= s.respawnAt) {
        s.respawnAt = undefined;
        return slot;
      }
    }
    return undefined;
  }
}
