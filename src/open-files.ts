/**
 * How many connections a worker can hold under its open-files limit (RLIMIT_NOFILE, which Node
 * raises to the hard limit at start): each connection holds a descriptor. Past the limit libuv
 * accepts and closes whatever waits in the listen queue (its EMFILE fallback), uncounted and
 * unlogged; kept below it, node:http drops what is past maxConnections itself.
 */
import { readOrUndefined } from './read-file.js';

/** Descriptors a worker needs beside its connections: stdio, IPC, epoll, libuv's pipes, its listener. */
export const SPARE_DESCRIPTORS = 64;

export interface ConnectionLimit {
  /** MAX_CONNECTIONS, or fewer where the open-files limit cannot hold that many. */
  readonly maxConnections: number;
  /** Why it is fewer than MAX_CONNECTIONS, for a warning at start. */
  readonly warning?: string;
}

/** Pure: the soft "Max open files" of a /proc/<pid>/limits text; undefined when unlimited or unreadable. */
export function openFilesLimit(limits: string | undefined): number | undefined {
  const soft = limits && /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : undefined;
}

/** Pure: the connections a worker takes under `openFiles`, and a warning when that is below MAX_CONNECTIONS. */
export function connectionLimit(maxConnections: number, openFiles: number | undefined): ConnectionLimit {
  if (openFiles === undefined || maxConnections + SPARE_DESCRIPTORS <= openFiles) return { maxConnections };
  const fit = Math.max(1, openFiles - SPARE_DESCRIPTORS);
  return {
    maxConnections: fit,
    warning:
      `MAX_CONNECTIONS=${maxConnections} is more than the open-files limit of ${openFiles} can hold: ` +
      `each worker takes ${fit} connections and drops more, as past MAX_CONNECTIONS; raise the limit ` +
      '(ulimit -n, docker run --ulimit nofile=N:N) or lower MAX_CONNECTIONS',
  };
}

/** The connection limit of this process, from the real /proc/self/limits. */
export function ownConnectionLimit(maxConnections: number): ConnectionLimit {
  return connectionLimit(maxConnections, openFilesLimit(readOrUndefined('/proc/self/limits')));
}
