/**
 * How many processes the memory cgroup's OOM killer has killed: a worker killed by SIGKILL that
 * the primary did not send is often one of them (docker run --memory, Kubernetes limits.memory),
 * and the exit alone does not say so. cgroup v2 counts them in memory.events, v1 in
 * memory.oom_control, both as "oom_kill N".
 */
import { join } from 'node:path';
import { memoryCgroup } from '../cgroup-paths.js';
import type { ReadFile } from '../read-file.js';

/** Pure: the OOM kills counted for this process's memory cgroup, undefined where none can be read. */
export function oomKillCount(read: ReadFile): number | undefined {
  const where = memoryCgroup(read);
  if (!where) return undefined;
  const file = where.v2 ? 'memory.events' : 'memory.oom_control';
  const count = read(join(where.dir, file))?.match(/^oom_kill (\d+)$/m)?.[1];
  return count === undefined ? undefined : Number(count);
}
