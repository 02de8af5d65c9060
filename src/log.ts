import { hostname } from 'node:os';

/** pino's numeric levels, so `pino-pretty` renders these lines unchanged. */
const levels = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type Level = keyof typeof levels;

const host = hostname();
let threshold: number = levels.info;
/**
 * Set once a write to stdout fails (its reader went away: EPIPE; a full disk: ENOSPC). Node
 * destroys the stream then, so lines are dropped from there on; the service goes on.
 */
let stdoutBroken = false;

// Without a listener, a failed write to stdout is an uncaught exception: a log shipper that exits,
// or `| head`, would stop every process of the service at its next log line.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (stdoutBroken) return;
  stdoutBroken = true;
  // stderr may be gone too: nothing is left to report that to.
  process.stderr.on('error', () => {});
  process.stderr.write(
    `${JSON.stringify({
      level: levels.error,
      time: Date.now(),
      pid: process.pid,
      hostname: host,
      code: err.code,
      msg: 'stdout failed: log lines are dropped from now on; the service keeps running',
    })}\n`,
  );
});

/** Sets the lowest level that is written (LOG_LEVEL). */
export function setLogLevel(level: Level): void {
  threshold = levels[level];
}

/**
 * Writes one JSON object per line to stdout. Writes to pipes and files are synchronous on
 * Linux, so a line logged just before process.exit() is not lost.
 */
export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  const value = levels[level];
  if (value < threshold || stdoutBroken) return;
  const line = JSON.stringify({
    level: value,
    time: Date.now(),
    pid: process.pid,
    hostname: host,
    ...fields,
    msg,
  });
  process.stdout.write(`${line}\n`);
}

/** The fields pino uses for an Error, stack included. */
export function errorFields(error: unknown): Record<string, unknown> {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      err: { type: error.name, message: error.message, stack: error.stack, ...(code ? { code } : {}) },
    };
  }
  return { err: { type: typeof error, message: String(error) } };
}
