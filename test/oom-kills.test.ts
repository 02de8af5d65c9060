import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { oomKillCount } from '../src/primary/oom-kills.js';
import { fileTree } from './helpers/file-tree.js';
import { memoryCgroupsForSuite } from './helpers/memory-cgroup.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { startService } from './helpers/service.js';

const V1 = {
  '/proc/self/cgroup': '9:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n',
  '/proc/self/mountinfo': [
    '40 31 0:35 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory',
    '41 31 0:36 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct',
  ].join('\n'),
};
/** /metrics's OOM kills and restarts by crash, as the replacement worker answers them. */
async function killsAndCrashes(url: string): Promise<[number, number]> {
  const scrape = parseExposition(await (await request(`${url}/metrics`)).body.text());
  return [
    total(scrape, 'myservice_worker_oom_kills_total'),
    total(scrape, 'myservice_worker_restarts_total', { cause: 'crash' }),
  ];
}

const V2 = {
  '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
  '/proc/self/mountinfo': '30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
};

describe('oomKillCount over fixture trees', () => {
  it('reads "oom_kill N" from memory.oom_control (v1) or memory.events (v2) of the process\'s own cgroup', () => {
    assert.equal(
      oomKillCount(
        fileTree({
          ...V1,
          '/sys/fs/cgroup/memory/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n',
        }),
      ),
      3,
    );
    assert.equal(
      oomKillCount(
        fileTree({
          ...V2,
          '/sys/fs/cgroup/kubepods/pod1/ctr/memory.events':
            'low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n',
        }),
      ),
      2,
    );
  });

  it('is undefined where it cannot be read: no file, no oom_kill line (older kernels), no mount, no /proc', () => {
    assert.equal(oomKillCount(fileTree(V1)), undefined);
    // v2 also counts "oom" (the limit was hit, a kill or not): only "oom_kill" is read.
    const events = '/sys/fs/cgroup/kubepods/pod1/ctr/memory.events';
    assert.equal(oomKillCount(fileTree({ ...V2, [events]: 'low 0\nhigh 0\nmax 9\noom 5\noom_kill 2\n' })), 2);
    assert.equal(oomKillCount(fileTree({ ...V2, [events]: 'low 0\nhigh 0\nmax 9\noom 5\n' })), undefined);
    assert.equal(
      oomKillCount(fileTree({ ...V1, '/sys/fs/cgroup/memory/memory.oom_control': 'oom_kill_disable 0\n' })),
      undefined,
    );
    assert.equal(oomKillCount(fileTree({ ...V2, '/proc/self/mountinfo': '' })), undefined);
    assert.equal(oomKillCount(fileTree({})), undefined);
  });
});

describe("a worker killed by the memory cgroup's OOM killer (docker run --memory)", () => {
  const memoryCgroup = memoryCgroupsForSuite();

  it('is logged with oomKilled: true, and replaced', async (t) => {
    const made = memoryCgroup(t, 'oom', 192 * 1024 * 1024);
    if (!made) return;
    const fixture = new URL('fixtures/grow-in-worker.js', import.meta.url).href;
    const service = await startService({
      env: { WORKERS: '1', NODE_OPTIONS: `--import=${fixture}` },
      wrap: made.wrap,
    });
    try {
      const [victim] = service.liveWorkerPids() as [number];
      process.kill(victim, 'SIGUSR2');
      const exit = await service.waitForLog(
        (l) => l.msg === 'worker exited unexpectedly',
        'the OOM kill',
        30_000,
      );
      assert.equal(exit.workerPid, victim, service.dump());
      assert.deepEqual([exit.signal, exit.oomKilled, exit.cause], ['SIGKILL', true, 'crash']);
      await service.waitForLog((l) => l.msg === 'worker ready' && l.workerPid !== victim, 'its replacement');
      assert.deepEqual(await killsAndCrashes(service.url), [1, 1]);
    } finally {
      assert.equal((await service.stop()).code, 0);
    }
  });

  it('a worker killed by SIGKILL from elsewhere is not said to be an OOM kill', async () => {
    const service = await startService({ env: { WORKERS: '1' } });
    try {
      const [victim] = service.liveWorkerPids() as [number];
      process.kill(victim, 'SIGKILL');
      const exit = await service.waitForLog((l) => l.msg === 'worker exited unexpectedly');
      assert.equal(exit.signal, 'SIGKILL');
      assert.equal(exit.oomKilled, undefined);
      await service.waitForLog((l) => l.msg === 'worker ready' && l.workerPid !== victim, 'its replacement');
      assert.deepEqual(await killsAndCrashes(service.url), [0, 1]);
    } finally {
      assert.equal((await service.stop()).code, 0);
    }
  });
});
