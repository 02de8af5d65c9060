import { isIPv6 } from 'node:net';
import type { Level } from './log.js';

/** How connections reach workers: see the README's "BALANCE" section. */
export type Balance = 'reuseport' | 'round-robin';

/** Per-worker limits on what a client may send and hold: see the README's "Hostile input". */
export interface HttpLimits {
  /** From a connection's first byte (or its opening) to the end of a request's headers. */
  readonly headersTimeoutMs: number;
  /** The whole request, body included; also how long a response may wait on a client not reading. */
  readonly requestTimeoutMs: number;
  /** Idle time allowed between requests on a kept-alive connection; 0 turns keep-alive off. */
  readonly keepAliveTimeoutMs: number;
  /** Request line plus headers, in bytes; past it: 431. */
  readonly maxHeaderSize: number;
  /** Open connections per worker; past it a new connection is accepted and closed unanswered. */
  readonly maxConnections: number;
  /** Request body a worker reads and drops; past it: 413 and close. */
  readonly maxBodyBytes: number;
}

export interface Config {
  readonly port: number;
  /** undefined: every interface, IPv4 and IPv6. */
  readonly host: string | undefined;
  /** 'auto' is resolved by cpu-count.ts in the primary. */
  readonly workers: number | 'auto';
  readonly workersFrom: 'WORKERS' | 'WEB_CONCURRENCY' | 'default';
  readonly balance: Balance;
  readonly logLevel: Level;
  readonly metrics: boolean;
  readonly shutdownDelayMs: number;
  readonly drainTimeoutMs: number;
  readonly bootTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly crashLoopLimit: number;
  readonly http: HttpLimits;
}

export const MAX_WORKERS = 1024;

/** A configuration variable the service cannot accept. */
export class ConfigError extends Error {
  readonly code = 'ERR_MYSERVICE_CONFIG';
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

/** An unset or empty variable means the default (Compose passes `${VAR}` through as ""). */
function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function integer(env: Env, name: string, min: number, max: number, fallback: number, unit = ''): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}${unit}, got "${env[name]}"`);
  }
  return n;
}

function oneOf<T extends string>(env: Env, name: string, accepted: readonly T[], fallback: T): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const found = accepted.find((a) => a === value.toLowerCase());
  if (found === undefined) {
    const list = accepted.map((a) => `"${a}"`).join(', ');
    throw new ConfigError(`${name} must be one of ${list}, got "${env[name]}"`);
  }
  return found;
}

function workerCount(env: Env): Pick<Config, 'workers' | 'workersFrom'> {
  const name = raw(env, 'WORKERS') !== undefined ? 'WORKERS' : 'WEB_CONCURRENCY';
  const value = raw(env, name);
  if (value === undefined) return { workers: 'auto', workersFrom: 'default' };
  if (value.toLowerCase() === 'auto') return { workers: 'auto', workersFrom: name };
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_WORKERS) {
    throw new ConfigError(
      `${name} must be "auto" or an integer from 1 to ${MAX_WORKERS}, got "${env[name]}"`,
    );
  }
  return { workers: n, workersFrom: name };
}

const BROADCAST = '255.255.255.255 is the broadcast address, which no client can connect to';
const DECIMAL_PART = /^\d{1,10}$/;
const HEX_PART = /^0x[0-9a-f]*$/i;

/**
 * Why a numeric HOST (dot-separated parts) cannot be bound ('' for no IPv4 address at all), or
 * undefined when it can. getaddrinfo takes inet_aton's numeric forms ("0" and "127.1" too), which
 * read a leading zero as octal and 0x as hexadecimal: "127.0.0.010" binds 127.0.0.8 and
 * "0x7f.1" 127.0.0.1, so such a part is refused rather than bound somewhere unexpected.
 */
function numericHostProblem(labels: readonly string[]): string | undefined {
  if (labels.some((l) => HEX_PART.test(l))) {
    return 'a part of an IPv4 address is hexadecimal, which getaddrinfo reads as a number (0x10 is 16)';
  }
  if (labels.some((l) => l.length > 1 && l[0] === '0')) {
    return 'a part of an IPv4 address has a leading zero, which getaddrinfo reads as octal (010 is 8)';
  }
  const parts = labels.map(Number);
  const last = parts.pop() ?? 0;
  if (parts.length > 3 || parts.some((p) => p > 255) || last >= 256 ** (4 - parts.length)) {
    return '';
  }
  // Linux binds a TCP socket to the limited broadcast address, and no client can reach it.
  if (parts.reduce((sum, p, i) => sum + p * 256 ** (3 - i), last) === 256 ** 4 - 1) return BROADCAST;
  return undefined;
}

/** The same for an IPv6 literal: the broadcast address mapped into IPv6 binds it too. */
function ipv6Problem(address: string): string | undefined {
  if (!isIPv6(address)) return '';
  // The URL parser writes every spelling of an address the same way; a zone (%lo) it refuses,
  // and it does not change the address bound.
  const [bare = ''] = address.split('%');
  return new URL(`http://[${bare}]`).hostname === '[::ffff:ffff:ffff]' ? BROADCAST : undefined;
}

/**
 * Why HOST is no address nor hostname ('' when it is neither), or undefined for an address or a
 * name of RFC 1123 labels, underscores allowed since Compose service names may have them. A value
 * neither an address nor a name reached listen() and failed there as a port error (exit 3).
 */
function hostnameProblem(value: string): string | undefined {
  // Numeric parts only: an address, which takes no trailing dot (getaddrinfo would look it up as
  // a name). "0x7f.0x1" would pass for a name below, and getaddrinfo reads it as an address.
  const numeric = value.split('.');
  if (numeric.every((label) => DECIMAL_PART.test(label) || HEX_PART.test(label))) {
    return numericHostProblem(numeric);
  }
  // A name: its last label is never all digits (RFC 1123 §2.1), so "127.0.0.1." is no name either.
  const name = value.endsWith('.') ? value.slice(0, -1) : value;
  const labels = name.split('.');
  const valid =
    name.length <= 253 &&
    !/^\d+$/.test(labels.at(-1) ?? '') &&
    labels.every((l) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l));
  return valid ? undefined : '';
}

function hostOf(env: Env): string | undefined {
  const value = raw(env, 'HOST');
  if (value === undefined) return undefined;
  // Brackets only around an IPv6 literal ("[::1]"), and a colon only in one; anything else must
  // be an IPv4 address or a hostname, which listen() resolves.
  const unwrapped = /^\[(.*)\]$/.exec(value)?.[1] ?? value;
  const literal = unwrapped.includes(':') || unwrapped !== value;
  const problem = literal ? ipv6Problem(unwrapped) : hostnameProblem(unwrapped);
  if (problem !== undefined) {
    const why = problem === '' ? '' : `: ${problem}`;
    throw new ConfigError(`HOST must be an IP address or a hostname, got "${env.HOST}"${why}`);
  }
  return unwrapped;
}

/** What the command line asks for: the service takes no option but Docker's health check. */
export interface Mode {
  readonly healthcheck: boolean;
  readonly help: boolean;
}

/** The variables parseConfig reads, in the README's order; --help lists them. */
export const VARIABLES = [
  'PORT',
  'HOST',
  'WORKERS',
  'WEB_CONCURRENCY',
  'BALANCE',
  'SHUTDOWN_DELAY_MS',
  'DRAIN_TIMEOUT_MS',
  'BOOT_TIMEOUT_MS',
  'CRASH_LOOP_LIMIT',
  'HEARTBEAT_INTERVAL_MS',
  'HEARTBEAT_TIMEOUT_MS',
  'HEADERS_TIMEOUT_MS',
  'REQUEST_TIMEOUT_MS',
  'KEEP_ALIVE_TIMEOUT_MS',
  'MAX_HEADER_SIZE',
  'MAX_CONNECTIONS',
  'MAX_BODY_BYTES',
  'METRICS',
  'LOG_LEVEL',
] as const;

export const USAGE = `Usage: npm start   (node dist/src/main.js [--healthcheck], where node is 26)
  --healthcheck   ask /readyz on PORT and exit 0 if ready, else 1 (Docker's HEALTHCHECK)
  --help          this text
Configuration is by environment variable (README.md, Configuration):
  ${VARIABLES.join(', ')}
`;

/**
 * Parses the arguments after the script; anything but `--healthcheck` or `--help` is refused, so
 * that `npm start -- --port 8080` does not start a service on another port than the user meant.
 */
export function parseArguments(args: readonly string[]): Mode {
  const unknown = args.find((a) => a !== '--healthcheck' && a !== '--help' && a !== '-h');
  if (unknown !== undefined) {
    throw new ConfigError(
      `unknown argument "${unknown}": the only options are --healthcheck and --help; configuration is by environment variable (PORT=8080, WORKERS=4…)`,
    );
  }
  return {
    healthcheck: args.includes('--healthcheck'),
    help: args.includes('--help') || args.includes('-h'),
  };
}

const MINUTE = 60_000;

/** A value another variable's limit depends on, said to be the default when the user set none. */
function limitValue(env: Env, name: string, value: number): string {
  return raw(env, name) === undefined ? `${value}, the default` : String(value);
}

/**
 * Reads variables, noting each invalid one and going on with its default, so that one start
 * reports every mistake instead of one per try.
 */
class Reader {
  readonly problems: string[] = [];
  readonly env: Env;
  readonly #invalid = new Set<string>();

  constructor(env: Env) {
    this.env = env;
  }

  /** `read()`'s value, or `fallback` once its ConfigError about `name` is noted. */
  valid<T>(name: string, read: () => T, fallback: T): T {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.problems.push(err.message);
      this.#invalid.add(name);
      return fallback;
    }
  }

  integer(name: string, min: number, max: number, fallback: number, unit = ''): number {
    return this.valid(name, () => integer(this.env, name, min, max, fallback, unit), fallback);
  }

  oneOf<T extends string>(name: string, accepted: readonly T[], fallback: T): T {
    return this.valid(name, () => oneOf(this.env, name, accepted, fallback), fallback);
  }

  /** A limit between two variables, checked only when both are valid: the message quotes them. */
  relation(names: readonly string[], problem: () => string | undefined): void {
    if (names.some((name) => this.#invalid.has(name))) return;
    const found = problem();
    if (found !== undefined) this.problems.push(found);
  }
}

/** Parses and validates the environment once; every error names the variable and the value. */
export function parseConfig(env: Env = process.env, platform: NodeJS.Platform = process.platform): Config {
  const read = new Reader(env);
  const ms = ' (milliseconds)';
  // In the README's order (VARIABLES), the order problems are reported in; limits between two
  // variables last.
  const config: Config = {
    port: read.integer('PORT', 1, 65_535, 5000),
    host: read.valid('HOST', () => hostOf(env), undefined),
    ...read.valid('WORKERS', () => workerCount(env), { workers: 'auto', workersFrom: 'default' }),
    balance: read.oneOf<Balance>(
      'BALANCE',
      ['reuseport', 'round-robin'],
      platform === 'linux' ? 'reuseport' : 'round-robin',
    ),
    shutdownDelayMs: read.integer('SHUTDOWN_DELAY_MS', 0, MINUTE, 0, ms),
    drainTimeoutMs: read.integer('DRAIN_TIMEOUT_MS', 100, 10 * MINUTE, 8_000, ms),
    bootTimeoutMs: read.integer('BOOT_TIMEOUT_MS', 1, 10 * MINUTE, 10_000, ms),
    crashLoopLimit: read.integer('CRASH_LOOP_LIMIT', 1, 1000, 5),
    heartbeatIntervalMs: read.integer('HEARTBEAT_INTERVAL_MS', 50, MINUTE, 1_000, ms),
    heartbeatTimeoutMs: read.integer('HEARTBEAT_TIMEOUT_MS', 100, 10 * MINUTE, 10_000, ms),
    http: {
      headersTimeoutMs: read.integer('HEADERS_TIMEOUT_MS', 100, 20_000, 10_000, ms),
      requestTimeoutMs: read.integer('REQUEST_TIMEOUT_MS', 100, 10 * MINUTE, 30_000, ms),
      keepAliveTimeoutMs: read.integer('KEEP_ALIVE_TIMEOUT_MS', 0, 10 * MINUTE, 5_000, ms),
      maxHeaderSize: read.integer('MAX_HEADER_SIZE', 1024, 1024 * 1024, 16 * 1024, ' (bytes)'),
      maxConnections: read.integer('MAX_CONNECTIONS', 1, 1_000_000, 10_000),
      maxBodyBytes: read.integer('MAX_BODY_BYTES', 0, 1024 * 1024, 1024, ' (bytes)'),
    },
    metrics: read.oneOf('METRICS', ['on', 'off'], 'on') === 'on',
    logLevel: read.oneOf<Level>('LOG_LEVEL', ['debug', 'info', 'warn', 'error', 'fatal'], 'info'),
  };
  const { heartbeatIntervalMs, heartbeatTimeoutMs } = config;
  // Twice at least: a timeout just above the interval killed busy, healthy workers whose heartbeat
  // came a few milliseconds late (under wrk, 1001 against 1000: one in three runs).
  read.relation(['HEARTBEAT_INTERVAL_MS', 'HEARTBEAT_TIMEOUT_MS'], () => {
    if (heartbeatTimeoutMs >= 2 * heartbeatIntervalMs) return undefined;
    // Name the value the user gave, not a default they never set.
    return raw(env, 'HEARTBEAT_TIMEOUT_MS') === undefined
      ? `HEARTBEAT_INTERVAL_MS must be at most half of HEARTBEAT_TIMEOUT_MS (${heartbeatTimeoutMs}, the default), got "${env.HEARTBEAT_INTERVAL_MS}"`
      : `HEARTBEAT_TIMEOUT_MS must be at least twice HEARTBEAT_INTERVAL_MS (${limitValue(env, 'HEARTBEAT_INTERVAL_MS', heartbeatIntervalMs)}), got "${env.HEARTBEAT_TIMEOUT_MS}"`;
  });
  const { headersTimeoutMs, requestTimeoutMs } = config.http;
  // HEADERS_TIMEOUT_MS's maximum is below REQUEST_TIMEOUT_MS's default: only a given value can fail.
  read.relation(['HEADERS_TIMEOUT_MS', 'REQUEST_TIMEOUT_MS'], () =>
    requestTimeoutMs >= headersTimeoutMs
      ? undefined
      : `REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS (${limitValue(env, 'HEADERS_TIMEOUT_MS', headersTimeoutMs)}), got "${env.REQUEST_TIMEOUT_MS}"`,
  );
  if (read.problems.length > 0) throw new ConfigError(read.problems.join('; '));
  return Object.freeze({ ...config, http: Object.freeze(config.http) });
}
