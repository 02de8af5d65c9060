/**
 * The memory limit over this process (docker run --memory, Kubernetes limits.memory): the
 * tightest of its memory cgroup's and those above it, as a pod's own limit also binds its
 * containers.
 */
import { join } from 'node:path';
import { memoryCgroup, upToMount } from './cgroup-paths.js';
import { type ReadFile, readOrUndefined } from './read-file.js';

/** Pure: the limit in bytes; undefined when there is none or it cannot be read. */
export function memoryLimit(read: ReadFile): number | undefined {
  const where = memoryCgroup(read);
  if (!where) return undefined;
  const file = where.v2 ? 'memory.max' : 'memory.limit_in_bytes';
  let tightest: number | undefined;
  for (const dir of upToMount(where.dir, where.mountPoint)) {
    const text = read(join(dir, file))?.trim();
    // v2 writes "max" for none; v1 its page counter's maximum, about 2^63.
    if (text === undefined || !/^\d+$/.test(text) || Number(text) >= 2 ** 62) continue;
    tightest = Math.min(tightest ?? Number.POSITIVE_INFINITY, Number(text));
  }
  return tightest;
}

/** The memory limit of this process, from the real /proc and cgroup files. */
export function ownMemoryLimit(): number | undefined {
  return memoryLimit(readOrUndefined);
}
