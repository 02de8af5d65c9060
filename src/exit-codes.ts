/** Exit codes of the primary; documented in the README's "Operating" section. */
export const ExitCode = {
  ok: 0,
  /** Unexpected internal error (a bug): an uncaught exception in the primary. */
  internal: 1,
  /** A configuration variable is invalid; nothing was started. */
  config: 2,
  /** The address or port cannot be bound (in use, not on this machine, not permitted). */
  bind: 3,
  /** Workers kept failing before they became ready (crash loop); see CRASH_LOOP_LIMIT. */
  crashLoop: 4,
  /**
   * Shutdown was not clean: workers had to be killed (DRAIN_TIMEOUT_MS passed, a second stop
   * signal came) or one died while it drained.
   */
  forcedStop: 5,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
