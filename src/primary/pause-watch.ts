/**
 * Tells when the primary itself did not run (`docker pause` froze the whole container, SIGSTOP, a
 * blocked event loop): the primary asks for a tick at least every watchMs, so an event that comes
 * more than watchMs after the tick that was due finds time the primary never saw.
 */
export class PauseWatch {
  readonly watchMs: number;
  /** When the primary's next tick is due, once it has asked (see nextTick). */
  #tickDue: number | undefined;
  /** When the last event came in: nextTick counts from there. */
  #handledAt = 0;

  constructor(watchMs: number) {
    this.watchMs = watchMs;
  }

  /**
   * Called as each event comes in. Whatever event comes first after a pause tells of it (the
   * heartbeats and exits that queued meanwhile may be read before the overdue timer runs): then it
   * returns the time since the last event, which is as long as the pause can have been.
   */
  observe(now: number): number | undefined {
    const due = this.#tickDue;
    this.#tickDue = undefined;
    const last = this.#handledAt;
    this.#handledAt = now;
    return due !== undefined && now - due > this.watchMs ? now - last : undefined;
  }

  /**
   * When the next tick is due, given the next deadline: at that deadline, and at least every
   * watchMs. Counted from the last event, not from now: a pause while the primary performed the
   * event's actions (a fork, a log write) then shows too. Never before the event: a deadline
   * already past (a slot waiting its turn to boot) is due at once, and its age is no lateness of
   * the primary's.
   */
  nextTick(deadline: number | undefined): number {
    const from = this.#handledAt;
    const due = Math.max(from, Math.min(deadline ?? Number.POSITIVE_INFINITY, from + this.watchMs));
    this.#tickDue = due;
    return due;
  }
}
