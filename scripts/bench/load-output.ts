/** Pure parsers for what ab and wrk print, so they can be tested against captured output. */

/** Requests that did not get a proper answer, by cause. */
export interface Failures {
  /** ab "Connect", wrk "connect": the TCP connection failed. */
  readonly connect: number;
  /** ab "Receive", wrk "read"/"write": the connection broke mid-request. */
  readonly receive: number;
  /** ab "Exceptions": an error event on a socket, after which ab reads it (a Receive error, mostly). */
  readonly exceptions: number;
  /**
   * wrk "timeout": an answer that came later than wrk's --timeout (wrk 4.1 counts nothing for a
   * request never answered). The bench sets that past the run's end (profiles.ts): 0 in its runs.
   */
  readonly timeout: number;
  /** Status outside 2xx (ab) or outside 2xx/3xx (wrk). */
  readonly non2xx: number;
  /**
   * ab "Length" failures that no pid can explain, beyond the Receive errors and non-2xx replies
   * (see withUnexplainedLength): ab also counts a connection closed without a reply, or a reply
   * cut short, as Length.
   */
  readonly length: number;
}

export interface LoadResult {
  /** What the tool reports: ab's "Complete requests" include its failed ones, wrk's answers do not. */
  readonly requests: number;
  /** Requests made, failed ones included: ab's complete requests, wrk's answers plus its socket errors. */
  readonly attempted: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly failures: Failures;
  /**
   * ab's "Length" failures: a body of another length than the first one. A greeting from a pid
   * with another number of digits is one, so they are reported apart from the failures.
   */
  readonly lengthMismatches: number;
  /** ab's "Document Length": the body bytes of the first reply, which it measured the others against. */
  readonly firstBodyBytes?: number;
}

export const NO_FAILURES: Failures = {
  connect: 0,
  receive: 0,
  exceptions: 0,
  timeout: 0,
  non2xx: 0,
  length: 0,
};

/**
 * The requests that failed, each counted once, never more than were made. ab counts one broken
 * request under up to three causes: an error event on its socket (Exceptions) makes it read the
 * socket, the read fails (Receive), and the bytes it got differ from the first reply's (Length).
 * So Exceptions count only beyond the Receive errors (Length likewise, see withUnexplainedLength),
 * and what is left uncertain is capped by the requests made, among which ab counts its failed ones.
 */
export function failedRequests(load: Pick<LoadResult, 'failures' | 'attempted'>): number {
  const f = load.failures;
  const exceptions = Math.max(0, f.exceptions - f.receive);
  return Math.min(load.attempted, f.connect + f.receive + exceptions + f.timeout + f.non2xx + f.length);
}

/** A run in which at least this share of the requests failed measured the failures, not the server. */
export const MOSTLY_FAILED = 0.9;

/**
 * Why a run's figures must stay out of the medians, or undefined. ab reports a rate even when
 * every request failed, and a server that died mid-run took its CPU time with it.
 */
export function unusableRun(load: LoadResult, serverExit: string | undefined): string | undefined {
  if (serverExit !== undefined) return `the server exited during the run (${serverExit})`;
  if (load.attempted === 0) return 'no request was made';
  const failed = failedRequests(load);
  return failed >= MOSTLY_FAILED * load.attempted
    ? `${failed} of ${load.attempted} requests failed`
    : undefined;
}

/**
 * Counts ab's Length mismatches as failures when every greeting of the run had the same length
 * (`greetingBytes`, one per serving process): then a mismatch is a reply that was missing, cut
 * short or not a greeting. ab measures each reply against the first one, so when that first one
 * was the odd one out, the replies that matched it are the odd ones. ab counts a reply that broke
 * mid-receive as Receive and Length, and one with another status and another length as Non-2xx
 * and Length: only what is left beyond those is added, a lower bound, since a non-2xx reply of a
 * greeting's length is no mismatch.
 */
export function withUnexplainedLength(load: LoadResult, greetingBytes: readonly number[]): LoadResult {
  const lengths = new Set(greetingBytes);
  if (load.lengthMismatches === 0 || lengths.size > 1) return load;
  const firstWasOdd =
    lengths.size === 1 && load.firstBodyBytes !== undefined && !lengths.has(load.firstBodyBytes);
  const odd = firstWasOdd ? load.attempted - load.lengthMismatches : load.lengthMismatches;
  const length = Math.max(0, odd - load.failures.receive - load.failures.non2xx);
  return { ...load, failures: { ...load.failures, length } };
}

function number(text: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(text);
  if (!match?.[1]) throw new Error(`no ${what} in the load generator's output:\n${text}`);
  return Number(match[1]);
}

function optional(text: string, pattern: RegExp): number {
  const match = pattern.exec(text);
  return match?.[1] ? Number(match[1]) : 0;
}

/** Latency percentile from `ab -e` CSV ("Percentage served,Time in ms" then "50,0.834"). */
function csvPercentile(csv: string, percent: number): number {
  const match = new RegExp(`^${percent},([\\d.]+)$`, 'm').exec(csv);
  if (!match?.[1]) throw new Error(`no ${percent}th percentile in ab's CSV:\n${csv.slice(0, 200)}`);
  return Number(match[1]);
}

/** ab's report plus its `-e` CSV, whose percentiles have µs resolution (the report's are whole ms). */
export function parseAb(report: string, csv: string): LoadResult {
  const breakdown = /\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)/.exec(report);
  const [connect, receive, length, exceptions] = breakdown ? breakdown.slice(1).map(Number) : [0, 0, 0, 0];
  const complete = number(report, /^Complete requests:\s+(\d+)/m, 'complete requests');
  const firstBody = /^Document Length:\s+(\d+) bytes/m.exec(report)?.[1];
  return {
    requests: complete,
    attempted: complete,
    seconds: number(report, /^Time taken for tests:\s+([\d.]+) seconds/m, 'time taken'),
    requestsPerSecond: number(report, /^Requests per second:\s+([\d.]+)/m, 'requests per second'),
    p50Ms: csvPercentile(csv, 50),
    p99Ms: csvPercentile(csv, 99),
    failures: {
      connect: connect ?? 0,
      // ab counts a failed write (EPIPE) apart from the breakdown.
      receive: (receive ?? 0) + optional(report, /^Write errors:\s+(\d+)/m),
      exceptions: exceptions ?? 0,
      timeout: 0,
      non2xx: optional(report, /^Non-2xx responses:\s+(\d+)/m),
      length: 0,
    },
    lengthMismatches: length ?? 0,
    ...(firstBody === undefined ? {} : { firstBodyBytes: Number(firstBody) }),
  };
}

const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** wrk prints "2.31ms", "812.00us", "1.02s" (padded to "1.02s " where a percentile ends its line). */
function duration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!match?.[1] || !match[2]) throw new Error(`not a wrk duration: "${text}"`);
  return Number(match[1]) * (UNIT_MS[match[2]] ?? Number.NaN);
}

function wrkPercentile(report: string, percent: number): number {
  const match = new RegExp(`^\\s+${percent}%\\s+(\\S+)[ \\t]*$`, 'm').exec(report);
  if (!match?.[1])
    throw new Error(`no ${percent}% latency in wrk's output (run it with --latency):\n${report}`);
  return duration(match[1]);
}

/** wrk's report, run with --latency. */
export function parseWrk(report: string): LoadResult {
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(report);
  const [connect = 0, read = 0, write = 0, timeout = 0] = errors ? errors.slice(1).map(Number) : [];
  const requests = number(report, /^\s*(\d+) requests in/m, 'request count');
  return {
    requests,
    // Not the timeouts: each is an answer, among the requests already.
    attempted: requests + connect + read + write,
    seconds: duration(/requests in ([\d.]+(?:us|ms|s|m)),/.exec(report)?.[1] ?? 'missing') / 1000,
    requestsPerSecond: number(report, /^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec'),
    p50Ms: wrkPercentile(report, 50),
    p99Ms: wrkPercentile(report, 99),
    failures: {
      connect,
      receive: read + write,
      exceptions: 0,
      timeout,
      non2xx: optional(report, /Non-2xx or 3xx responses: (\d+)/),
      length: 0,
    },
    lengthMismatches: 0,
  };
}
