/**
 * Ctrl-C, SIGTERM and SIGHUP (the terminal hung up) for every bench script: stop the processes
 * it started, then exit 130. The listeners stay (process.on, not once): without one, a repeated
 * signal takes Node's default action and kills the script halfway through its cleanup, leaving
 * servers on their ports and scratch directories behind. A repeated signal means "now" instead:
 * what still runs is killed, and the cleanup finishes.
 */
import { killChildren, stopChildren } from './commands.js';

/** Ctrl-C, kill's default, and the hangup a closed terminal sends to its foreground processes. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The exit status after any of them (the shell's for Ctrl-C), once everything started is gone. */
export const INTERRUPTED_EXIT_CODE = 130;

let stopping = false;

/** True once a stop signal came: what fails afterwards (a refused start, a stopped server) is the stop. */
export function isStopping(): boolean {
  return stopping;
}

/** Installs the handlers; `beforeStopping` runs first (bench:burst continues the workers it froze). */
export function stopOnSignals(beforeStopping: () => void = () => {}): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      killChildren();
      return;
    }
    stopping = true;
    beforeStopping();
    process.stderr.write(`${signal}: stopping every process started (a second signal kills them now)\n`);
    void stopChildren().finally(() => process.exit(INTERRUPTED_EXIT_CODE));
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
}

/**
 * A reader that stops early (`| head`) closes the pipe, and a terminal that hung up fails every
 * write (EIO): neither may crash a script before it has stopped its servers or written its files.
 */
export function tolerateClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'EIO') throw err;
    });
  }
}
