/**
 * Whose socket listens on a port (Linux /proc): a server that says nothing when it is ready
 * (nginx) is ready once its own listener is there, not when any connect succeeds, which a
 * foreign program on a port taken after freePort() would also answer.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { processTree } from './proc-stats.js';

const LISTEN = '0A';

/** Pure: the socket inodes in LISTEN state on `port`, any address, from /proc/net/tcp or tcp6 text. */
export function listeningInodes(table: string, port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes: string[] = [];
  // Columns (proc(5)): sl, local_address, rem_address, st, tx:rx queue, tr:when, retrnsmt, uid, timeout, inode.
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[1]?.split(':')[1] === hexPort && cols[3] === LISTEN && cols[9] !== undefined)
      inodes.push(cols[9]);
  }
  return inodes;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** Socket inodes open in pid's process (ESRCH/EACCES: none). */
function socketInodes(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  return fds.flatMap((fd) => {
    try {
      return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? [];
    } catch {
      return []; // closed since the listing
    }
  });
}

/** True when something listens on `port` and every listener there belongs to pid or its descendants. */
export function listensAlone(pid: number, port: number): boolean {
  const listening = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((t) => listeningInodes(readOr(t, ''), port));
  if (listening.length === 0) return false;
  const ours = new Set(processTree(pid).flatMap(socketInodes));
  return listening.every((inode) => ours.has(inode));
}
