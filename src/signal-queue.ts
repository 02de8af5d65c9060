/**
 * The control signals, caught from main.ts's first line, before the rest of the service loads.
 * As PID 1 in a container a signal with no handler of its own is dropped (Node's default SIGTERM
 * handling included), so a `docker stop` during start-up, while the configuration is read and the
 * port probed, waited out Docker's 10 s and ended in SIGKILL. Signals that come before the
 * supervisor runs wait here; a worker forwards them nowhere, since they are the primary's.
 */
import { CONTROL_SIGNALS, type ControlSignal } from './protocol.js';

export class SignalQueue {
  readonly #queued: ControlSignal[] = [];
  #target: ((signal: ControlSignal) => void) | undefined;

  /** Starts catching every control signal. */
  constructor() {
    // Never removed: Node stops watching a signal with its last listener, and a signal pending
    // in libuv at that moment would be lost.
    for (const signal of CONTROL_SIGNALS)
      process.on(signal, () => {
        if (this.#target) this.#target(signal);
        else this.#queued.push(signal);
      });
  }

  /** Hands every signal to `target` from now on, those that came before first, in order. */
  forward(target: (signal: ControlSignal) => void): void {
    this.#target = target;
    for (const signal of this.#queued.splice(0)) target(signal);
  }
}
