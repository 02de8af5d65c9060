/** A real memory cgroup for a test to start the service in (docker run --memory, without Docker). */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { after, type TestContext } from 'node:test';
import { setImmediate } from 'node:timers/promises';

const V2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
const BASE = V2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory';

export interface MemoryCgroup {
  readonly dir: string;
  /** A `wrap` for startService: the service starts inside the cgroup. */
  readonly wrap: string;
  /** Removes the cgroup once the processes in it are gone (an exited child can linger a moment). */
  remove(): Promise<void>;
}

/** A cgroup of `limitBytes` with no swap, or why none can be made here (a reason to skip). */
export function makeMemoryCgroup(name: string, limitBytes: number): MemoryCgroup | string {
  if (V2 && !readFileSync(`${BASE}/cgroup.subtree_control`, 'utf8').split(/\s+/).includes('memory'))
    return 'the cgroup v2 memory controller is not delegated here';
  const dir = `${BASE}/myservice-${name}-${process.pid}`;
  try {
    mkdirSync(dir);
  } catch (err) {
    return `cannot create a cgroup under ${BASE} (${(err as NodeJS.ErrnoException).code}): needs root and a writable cgroup`;
  }
  if (V2) {
    writeFileSync(`${dir}/memory.max`, String(limitBytes));
    if (existsSync(`${dir}/memory.swap.max`)) writeFileSync(`${dir}/memory.swap.max`, '0');
  } else {
    writeFileSync(`${dir}/memory.limit_in_bytes`, String(limitBytes));
    // Memory and swap together: on a host with swap the worker would swap rather than be killed.
    if (existsSync(`${dir}/memory.memsw.limit_in_bytes`))
      writeFileSync(`${dir}/memory.memsw.limit_in_bytes`, String(limitBytes));
  }
  return {
    dir,
    wrap: `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`,
    remove: async () => {
      if (!existsSync(dir)) return;
      const deadline = performance.now() + 5_000;
      while (readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() !== '' && performance.now() < deadline) {
        await setImmediate();
      }
      rmdirSync(dir);
    },
  };
}

/**
 * For a describe block: `make(t, name, limitBytes)` gives a memory cgroup, or skips the test with
 * the reason none can be made here (undefined); every cgroup made is removed after the block.
 */
export function memoryCgroupsForSuite(): (
  t: TestContext,
  name: string,
  limitBytes: number,
) => MemoryCgroup | undefined {
  const made: MemoryCgroup[] = [];
  after(async () => {
    for (const cgroup of made) await cgroup.remove();
  });
  return (t, name, limitBytes) => {
    const cgroup = makeMemoryCgroup(name, limitBytes);
    if (typeof cgroup === 'string') {
      t.skip(cgroup);
      return undefined;
    }
    made.push(cgroup);
    return cgroup;
  };
}
