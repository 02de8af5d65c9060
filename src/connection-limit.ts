/**
 * How many connections each worker takes: MAX_CONNECTIONS, or fewer where the process's limits
 * cannot hold that many. Past maxConnections node:http closes a new connection at once, counted;
 * past the open-files limit libuv would accept and close it unlogged, and past the memory limit
 * the OOM killer would take the whole worker with every connection it serves.
 */
import type { HttpLimits } from './config.js';
import { ownMemoryLimit } from './memory-limit.js';
import { openFilesLimit, SPARE_DESCRIPTORS } from './open-files.js';
import { readOrUndefined } from './read-file.js';

const MiB = 1024 * 1024;
/** The primary's memory and each worker's own beside its connections (measured: 53 and 93 MB RSS under load, the node binary's pages among them). */
export const PRIMARY_MEMORY = 48 * MiB;
export const WORKER_MEMORY = 64 * MiB;
/**
 * The most a connection can hold in a worker: node:http's parser, socket and stream state (18 KB
 * measured with a head begun and unfinished), plus the head itself, held about 1.4 times
 * (measured with 4,000- and 15,000-byte heads, 3,000 connections).
 */
export function connectionMemory(maxHeaderSize: number): number {
  return 20 * 1024 + 2 * maxHeaderSize;
}
/** Taken whatever the memory limit says: a limit this tight leaves the service no room anyway. */
export const MIN_CONNECTIONS = 100;

export interface ConnectionLimit {
  /** MAX_CONNECTIONS, or fewer where the open-files or memory limit cannot hold that many. */
  readonly maxConnections: number;
  /** Why it is fewer than MAX_CONNECTIONS, for a warning at start. */
  readonly warnings: readonly string[];
}

export interface ProcessLimits {
  /** The soft open-files limit, which every worker inherits; undefined when unlimited or unknown. */
  readonly openFiles?: number | undefined;
  /** The cgroup memory limit shared by the primary and every worker; undefined when none. */
  readonly memoryBytes?: number | undefined;
  readonly workers: number;
}

/** Pure: the connections each worker takes under `limits`, and a warning for each limit that cuts MAX_CONNECTIONS. */
export function connectionLimit(http: HttpLimits, limits: ProcessLimits): ConnectionLimit {
  const asked = http.maxConnections;
  let maxConnections = asked;
  const warnings: string[] = [];
  const { openFiles, memoryBytes, workers } = limits;
  if (openFiles !== undefined && asked + SPARE_DESCRIPTORS > openFiles) {
    maxConnections = Math.max(1, openFiles - SPARE_DESCRIPTORS);
    warnings.push(
      `MAX_CONNECTIONS=${asked} is more than the open-files limit of ${openFiles} can hold: ` +
        `each worker takes ${maxConnections} connections and drops more, as past MAX_CONNECTIONS; raise the limit ` +
        '(ulimit -n, docker run --ulimit nofile=N:N) or lower MAX_CONNECTIONS',
    );
  }
  if (memoryBytes !== undefined) {
    const perConnection = connectionMemory(http.maxHeaderSize);
    const share = (memoryBytes - PRIMARY_MEMORY) / workers - WORKER_MEMORY;
    const fit = Math.max(MIN_CONNECTIONS, Math.floor(share / perConnection));
    if (fit < maxConnections) {
      maxConnections = fit;
      warnings.push(
        `MAX_CONNECTIONS=${asked} is more than a memory limit of ${Math.floor(memoryBytes / MiB)} MiB can hold ` +
          `for ${workers} worker${workers === 1 ? '' : 's'}: a connection can hold up to ${Math.ceil(perConnection / 1024)} KiB ` +
          `with a request head of MAX_HEADER_SIZE=${http.maxHeaderSize} bytes begun, so each worker takes ${fit} ` +
          'connections and drops more, as past MAX_CONNECTIONS, rather than be OOM-killed; raise the limit ' +
          '(docker run --memory) or lower MAX_CONNECTIONS or MAX_HEADER_SIZE',
      );
    }
  }
  return { maxConnections, warnings };
}

/** The connection limit of a worker of this process with `workers` in all, from the real /proc and cgroup files. */
export function ownConnectionLimit(http: HttpLimits, workers: number): ConnectionLimit {
  return connectionLimit(http, {
    openFiles: openFilesLimit(readOrUndefined('/proc/self/limits')),
    memoryBytes: ownMemoryLimit(),
    workers,
  });
}
