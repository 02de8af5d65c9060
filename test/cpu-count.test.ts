import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { detectCpuLimit } from '../src/cpu-count.js';
import { parseCpuList } from '../src/cpu-list.js';
import { fileTree } from './helpers/file-tree.js';
import { startService } from './helpers/service.js';

const status = (list: string): string =>
  `Name:\tnode\nCpus_allowed:\tff\nCpus_allowed_list:\t${list}\nVoluntary_ctxt_switches:\t3\n`;

const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset',
].join('\n');

/** Inside a Docker container on a v1 host: the container's cgroup is bind-mounted as the mount's root. */
const V1_DOCKER_MOUNTS =
  '1290 1281 0:29 /docker/0123abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cpu rw,cpu,cpuacct';

const V2_MOUNTS = '30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate';

describe('parseCpuList', () => {
  it('reads ranges and single CPUs, sorted and distinct', () => {
    assert.deepEqual(parseCpuList('0-3,8,10-11'), [0, 1, 2, 3, 8, 10, 11]);
    assert.deepEqual(parseCpuList('0'), [0]);
    assert.deepEqual(parseCpuList('0-1\n'), [0, 1]);
    assert.deepEqual(parseCpuList('4,0-1,1'), [0, 1, 4]);
  });

  it('is undefined for text that is not a list, names no CPU, or a range no kernel has', () => {
    for (const text of ['3-1', '0,3-1', 'x', '0-', '0,,1', '', '\n', '0-99999999'])
      assert.equal(parseCpuList(text), undefined, text);
  });
});

describe('detectCpuLimit over fixture trees', () => {
  it('cgroup v1 with a 1.5-CPU quota: ceil gives 2 workers', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-15'),
        '/proc/self/cgroup': '12:cpu,cpuacct:/\n3:cpuset:/\n',
        '/proc/self/mountinfo': V1_MOUNTS,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '150000\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      }),
      16,
    );
    assert.equal(limit.workers, 2);
    assert.equal(limit.quota, 1.5);
    assert.equal(
      limit.reason,
      'affinity 0-15 = 16 CPUs; cgroup v1 cpu.cfs_quota_us 150000/100000 = 1.5 CPUs → 2 workers',
    );
  });

  it('cgroup v1 inside Docker: the mount root is the container cgroup, --cpus 0.5 gives 1', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-1'),
        '/proc/self/cgroup': '4:cpu,cpuacct:/docker/0123abcd\n',
        '/proc/self/mountinfo': V1_DOCKER_MOUNTS,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '50000',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
      }),
      2,
    );
    assert.equal(limit.workers, 1);
    assert.match(limit.reason, /0\.5 CPUs → 1 worker$/);
  });

  it('cgroup v2 paths are read as they are: a trailing space, a directory named "..slice", one outside the namespace', () => {
    const v2 = (cgroup: string, files: Record<string, string>) =>
      detectCpuLimit(
        fileTree({
          '/proc/self/status': status('0-7'),
          '/proc/self/cgroup': `0::${cgroup}\n`,
          '/proc/self/mountinfo': V2_MOUNTS,
          ...files,
        }),
        8,
      ).workers;
    assert.equal(v2('/a /d ', { '/sys/fs/cgroup/a /d /cpu.max': '100000 100000\n' }), 1);
    assert.equal(v2('/..slice/x', { '/sys/fs/cgroup/..slice/x/cpu.max': '100000 100000\n' }), 1);
    // Moved out of its cgroup namespace: the namespace root's half CPU does not govern it.
    assert.equal(v2('/../other', { '/sys/fs/cgroup/cpu.max': '50000 100000\n' }), 8);
  });

  it('a mount point with a space in its name (escaped as \\040 in mountinfo) is found', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-7'),
        '/proc/self/cgroup': '0::/app\n',
        '/proc/self/mountinfo': '30 23 0:27 / /mnt/cgroup\\040v2 rw - cgroup2 cgroup2 rw',
        '/mnt/cgroup v2/app/cpu.max': '200000 100000\n',
      }),
      8,
    );
    assert.equal(limit.workers, 2);
  });

  // The log line says a fraction that two decimals would hide: 1.001 CPUs, not "1", give 2 workers.
  for (const [max, cpus] of [
    ['120000', '1.2'],
    ['100100', '1.001'],
  ]) {
    it(`any fraction of a CPU counts as a worker (ceil): ${cpus} CPUs give 2, and the reason says ${cpus}`, () => {
      const limit = detectCpuLimit(
        fileTree({
          '/proc/self/status': status('0-7'),
          '/proc/self/cgroup': '0::/app\n',
          '/proc/self/mountinfo': V2_MOUNTS,
          '/sys/fs/cgroup/app/cpu.max': `${max} 100000\n`,
        }),
        8,
      );
      assert.equal(limit.workers, 2);
      assert.equal(
        limit.reason,
        `affinity 0-7 = 8 CPUs; cgroup v2 cpu.max ${max}/100000 = ${cpus} CPUs → 2 workers`,
      );
    });
  }

  it('both hierarchies mounted (hybrid): the tighter quota wins, whichever is listed last', () => {
    const hybrid = (v1: string, v2: string) =>
      detectCpuLimit(
        fileTree({
          '/proc/self/status': status('0-7'),
          '/proc/self/cgroup': '12:cpu,cpuacct:/\n0::/app\n',
          '/proc/self/mountinfo': `${V1_MOUNTS}\n30 23 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`,
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': v1,
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
          '/sys/fs/cgroup/unified/app/cpu.max': v2,
        }),
        8,
      ).workers;
    assert.equal(hybrid('100000', '400000 100000'), 1);
    assert.equal(hybrid('400000', '100000 100000'), 1);
  });

  it('cgroup v1 unlimited (-1) leaves the affinity count', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-3'),
        '/proc/self/cgroup': '4:cpu,cpuacct:/\n',
        '/proc/self/mountinfo': V1_MOUNTS,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
      }),
      8,
    );
    assert.equal(limit.workers, 4);
    assert.equal(limit.quota, undefined);
    assert.equal(limit.reason, 'affinity 0-3 = 4 CPUs; no CPU quota → 4 workers');
  });

  it('cgroup v2: the tightest cpu.max among the cgroup and its ancestors wins', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-31'),
        '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000\n',
        '/sys/fs/cgroup/kubepods/pod1/cpu.max': '250000 100000\n',
        '/sys/fs/cgroup/kubepods/cpu.max': '800000 100000\n',
      }),
      32,
    );
    assert.equal(limit.workers, 3);
    assert.equal(
      limit.reason,
      'affinity 0-31 = 32 CPUs; cgroup v2 cpu.max 250000/100000 = 2.5 CPUs → 3 workers',
    );
  });

  it("a parent's quota tighter than the process's own cgroup's wins (a pod's limit over its container's), v2 and v1", () => {
    const v2 = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-31'),
        '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': '400000 100000\n',
        '/sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n',
        '/sys/fs/cgroup/kubepods/cpu.max': '800000 100000\n',
      }),
      32,
    );
    assert.equal(v2.workers, 2);
    assert.equal(v2.quota, 1.5);
    const v1 = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-15'),
        '/proc/self/cgroup': '12:cpu,cpuacct:/kubepods/ctr\n',
        '/proc/self/mountinfo': V1_MOUNTS,
        '/sys/fs/cgroup/cpu,cpuacct/kubepods/ctr/cpu.cfs_quota_us': '300000\n',
        '/sys/fs/cgroup/cpu,cpuacct/kubepods/ctr/cpu.cfs_period_us': '100000\n',
        '/sys/fs/cgroup/cpu,cpuacct/kubepods/cpu.cfs_quota_us': '50000\n',
        '/sys/fs/cgroup/cpu,cpuacct/kubepods/cpu.cfs_period_us': '100000\n',
      }),
      16,
    );
    assert.equal(v1.workers, 1);
    assert.equal(v1.quota, 0.5);
  });

  it('cgroup v2 unlimited (max) everywhere', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-7'),
        '/proc/self/cgroup': '0::/user.slice\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/user.slice/cpu.max': 'max 100000',
      }),
      8,
    );
    assert.equal(limit.workers, 8);
  });

  it('affinity tighter than the quota wins (--cpuset-cpus 0 with --cpus 2)', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0'),
        '/proc/self/cgroup': '0::/\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/cpu.max': '200000 100000',
      }),
      4,
    );
    assert.equal(limit.workers, 1);
    assert.equal(limit.affinity, 1);
  });

  it('a tiny quota still gives one worker; nothing readable gives the host count', () => {
    const tiny = detectCpuLimit(
      fileTree({
        '/proc/self/cgroup': '0::/\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/cpu.max': '1000 100000',
      }),
      4,
    );
    assert.equal(tiny.workers, 1);
    assert.equal(detectCpuLimit(fileTree({}), 6).workers, 6);
    assert.equal(detectCpuLimit(fileTree({}), 6).reason, '6 CPUs available; no CPU quota → 6 workers');
  });

  it("the mount that shows the process's own cgroup is read, not the first one listed (another part of the tree bound before it)", () => {
    // v1: a sibling cgroup bound at /mnt/sibling before the controller's root.
    const v1 = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-1'),
        '/proc/self/cgroup': '4:cpu:/half\n',
        '/proc/self/mountinfo': [
          '40 23 0:29 /free /mnt/sibling rw - cgroup cgroup rw,cpu',
          '41 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu',
        ].join('\n'),
        '/mnt/sibling/cpu.cfs_quota_us': '-1',
        '/mnt/sibling/cpu.cfs_period_us': '100000',
        '/sys/fs/cgroup/cpu/half/cpu.cfs_quota_us': '50000',
        '/sys/fs/cgroup/cpu/half/cpu.cfs_period_us': '100000',
      }),
      2,
    );
    assert.equal(
      v1.reason,
      'affinity 0-1 = 2 CPUs; cgroup v1 cpu.cfs_quota_us 50000/100000 = 0.5 CPUs → 1 worker',
    );
    // v2 in a cgroup namespace, with the host's tree bound first (a monitoring agent's
    // -v /sys/fs/cgroup:/host/sys/fs/cgroup): its root leaves the namespace.
    const v2 = detectCpuLimit(
      fileTree({
        '/proc/self/status': status('0-7'),
        '/proc/self/cgroup': '0::/\n',
        '/proc/self/mountinfo': [
          '700 650 0:27 /../../.. /host/sys/fs/cgroup ro - cgroup2 cgroup2 rw',
          '710 650 0:27 / /sys/fs/cgroup ro - cgroup2 cgroup rw',
        ].join('\n'),
        '/host/sys/fs/cgroup/cpu.max': 'max 100000',
        '/sys/fs/cgroup/cpu.max': '50000 100000',
      }),
      8,
    );
    assert.equal(v2.workers, 1);
    assert.equal(v2.problem, undefined);
  });

  it('a quota that cannot be read is unknown, not absent: the reason says so and `problem` says why', () => {
    const v1 = (files: Record<string, string>, cgroup = '4:cpu,cpuacct:/\n', mounts = V1_MOUNTS) =>
      detectCpuLimit(
        fileTree({
          '/proc/self/status': status('0-3'),
          '/proc/self/cgroup': cgroup,
          '/proc/self/mountinfo': mounts,
          ...files,
        }),
        4,
      );
    const Q = '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us';
    const P = '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us';
    const garbage = v1({ [Q]: 'garbage\n', [P]: '100000' });
    assert.equal(garbage.reason, 'affinity 0-3 = 4 CPUs; CPU quota unknown → 4 workers');
    assert.equal(garbage.problem, `${Q} reads "garbage"`);
    assert.equal(v1({ [Q]: '50000', [P]: '' }).problem, `${P} reads ""`);
    assert.equal(v1({ [Q]: '50000' }).problem, `${P} cannot be read`);
    // The cpu controller is in /proc/self/cgroup, but no mount shows it (not mounted in this namespace).
    assert.equal(
      v1({}, '4:cpu,cpuacct:/app\n0::/app\n', '30 23 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw')
        .problem,
      'no cgroup v1 cpu mount shows cpu,cpuacct:/app',
    );
    assert.equal(v1({}, '0::/app\n', V1_MOUNTS).problem, 'no cgroup2 mount shows 0::/app');
    assert.equal(
      v1({}, '0::/../other\n', V2_MOUNTS).problem,
      '0::/../other is outside this cgroup namespace',
    );
    assert.equal(v1({ '/proc/self/mountinfo': '' }, '0::/\n', '').workers, 4);
    assert.equal(
      detectCpuLimit(fileTree({ '/proc/self/cgroup': '0::/\n' }), 4).problem,
      '/proc/self/mountinfo cannot be read',
    );
    const v2 = v1({ '/sys/fs/cgroup/app/cpu.max': '50000 0' }, '0::/app\n', V2_MOUNTS);
    assert.equal(v2.problem, '/sys/fs/cgroup/app/cpu.max reads "50000 0"');
    // What is not a problem: no cpu.max (the root, or cpu not enabled below it), no cpu
    // controller on v1 while v2 has no mount (it carries no cpu), no /proc/self/cgroup (no cgroups).
    assert.equal(v1({}, '0::/\n', V2_MOUNTS).problem, undefined);
    assert.equal(v1({ [Q]: '-1', [P]: '100000' }, '4:cpu,cpuacct:/\n0::/\n', V1_MOUNTS).problem, undefined);
    assert.equal(detectCpuLimit(fileTree({}), 4).problem, undefined);
  });

  it('an exact integer quota is not rounded up (--cpus 2 → 2)', () => {
    const limit = detectCpuLimit(
      fileTree({
        '/proc/self/cgroup': '0::/\n',
        '/proc/self/mountinfo': V2_MOUNTS,
        '/sys/fs/cgroup/cpu.max': '200000 100000',
      }),
      16,
    );
    assert.equal(limit.workers, 2);
  });
});

describe('detectCpuLimit in a real cgroup (what docker run --cpus does)', () => {
  // cgroup v2 where the unified hierarchy is mounted (Debian 12's default), else v1's cpu controller.
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const base = v2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/cpu';
  const made: string[] = [];
  let delegated = false;
  after(() => {
    for (const dir of made) {
      try {
        rmdirSync(dir);
      } catch (err) {
        console.error(`could not remove ${dir}: ${(err as Error).message}`);
      }
    }
    if (delegated) writeFileSync(`${base}/cgroup.subtree_control`, '-cpu');
  });

  /** A cgroup with this quota per 100 ms, or why none can be made here (then the test skips). */
  function makeCgroup(quota: number): { dir: string } | { skip: string } {
    if (v2 && !readFileSync(`${base}/cgroup.controllers`, 'utf8').split(/\s+/).includes('cpu')) {
      return { skip: 'the cgroup v2 cpu controller is not available here' };
    }
    const dir = `${base}/myservice-test-${process.pid}-${quota}`;
    try {
      mkdirSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        return { skip: `cannot create a cgroup under ${base} (${code}): needs root and a writable cgroup` };
      }
      throw err;
    }
    made.push(dir);
    if (v2) {
      // The child's cpu.max exists once the parent delegates the controller to its children. A
      // parent with processes of its own cannot (EBUSY: a container's cgroup namespace root).
      if (!existsSync(`${dir}/cpu.max`)) {
        try {
          writeFileSync(`${base}/cgroup.subtree_control`, '+cpu');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
          return { skip: `cannot delegate the cpu controller under ${base} (EBUSY: it holds processes)` };
        }
        delegated = true;
      }
      writeFileSync(`${dir}/cpu.max`, `${quota} 100000`);
    } else {
      writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
      writeFileSync(`${dir}/cpu.cfs_quota_us`, String(quota));
    }
    return { dir };
  }

  for (const [quota, workers] of [
    [50_000, 1],
    [150_000, 2],
  ] as const) {
    it(`quota ${quota}/100000 → ${workers} worker(s), logged with the reasoning`, async (t) => {
      const cgroup = makeCgroup(quota);
      if ('skip' in cgroup) {
        t.skip(cgroup.skip);
        return;
      }
      const { dir } = cgroup;
      // Join the cgroup first, then exec node: the primary starts inside the quota.
      const service = await startService({
        env: { WORKERS: 'auto' },
        ready: 0,
        wrap: `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`,
      });
      try {
        const start = await service.waitForLog((l) => l.msg.startsWith('starting'));
        assert.equal(start.workers, workers, service.dump());
        assert.match(
          String(start.workersReason),
          new RegExp(
            `${v2 ? 'cgroup v2 cpu.max' : 'cgroup v1 cpu.cfs_quota_us'} ${quota}/100000 = ${quota / 100_000} CPUs → ${workers} worker`,
          ),
        );
        await service.waitForMsgCount('worker ready', workers);
      } finally {
        assert.equal((await service.stop()).code, 0);
      }
    });
  }

  it("a quota the service cannot see (its controller unmounted in the service's mount namespace) is logged as unknown, with a warning", async (t) => {
    const cgroup = makeCgroup(60_000);
    if ('skip' in cgroup) {
      t.skip(cgroup.skip);
      return;
    }
    // A private mount namespace without the controller's mount: some LXC and nspawn setups.
    const hide = `unshare -m --propagation private sh -c 'umount ${base} && exec "$0" "$@"'`;
    try {
      execFileSync('sh', ['-c', `${hide} true`], { stdio: 'pipe' });
    } catch (err) {
      t.skip(
        `cannot unmount ${base} in a new mount namespace: ${String((err as { stderr?: unknown }).stderr).trim()}`,
      );
      return;
    }
    const service = await startService({
      env: { WORKERS: 'auto' },
      ready: 0,
      wrap: `echo $$ > ${cgroup.dir}/cgroup.procs && exec ${hide} "$0" "$@"`,
    });
    try {
      const start = await service.waitForLog((l) => l.msg.startsWith('starting'));
      assert.match(String(start.workersReason), /; CPU quota unknown → \d+ workers?$/, service.dump());
      const warning = await service.waitForLog((l) => l.msg.startsWith('could not read the CPU quota'));
      assert.equal(warning.level, 40);
      assert.match(warning.msg, /: no cgroup(2| v1 cpu) mount shows /);
      await service.waitForMsgCount('worker ready', start.workers as number);
    } finally {
      assert.equal((await service.stop()).code, 0);
    }
  });
});
