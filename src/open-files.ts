/**
 * The open-files limit (RLIMIT_NOFILE, which Node raises to the hard limit at start): each
 * connection holds a descriptor, and so does each of wrk's in the bench.
 */

/** Descriptors a worker needs beside its connections: stdio, IPC, epoll, libuv's pipes, its listener. */
export const SPARE_DESCRIPTORS = 64;

/** Pure: the soft "Max open files" of a /proc/<pid>/limits text; undefined when unlimited or unreadable. */
export function openFilesLimit(limits: string | undefined): number | undefined {
  const soft = limits && /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : undefined;
}
