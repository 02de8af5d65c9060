import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { parseConfig } from '../src/config.js';
import { connectionLimit, connectionMemory, MIN_CONNECTIONS } from '../src/connection-limit.js';
import { memoryLimit } from '../src/memory-limit.js';
import { openFilesLimit } from '../src/open-files.js';
import { fileTree } from './helpers/file-tree.js';
import { memoryCgroupsForSuite } from './helpers/memory-cgroup.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { pollUntil, startService } from './helpers/service.js';

const MiB = 1024 * 1024;
const http = parseConfig({}).http;

describe('connectionLimit: MAX_CONNECTIONS, or what the open-files and memory limits hold', () => {
  it('is MAX_CONNECTIONS, with no warning, where no limit is known or each holds it', () => {
    assert.deepEqual(connectionLimit(http, { workers: 2 }), { maxConnections: 10_000, warnings: [] });
    assert.deepEqual(connectionLimit(http, { workers: 2, openFiles: 20_000, memoryBytes: 4096 * MiB }), {
      maxConnections: 10_000,
      warnings: [],
    });
  });

  it('under an open-files limit: that limit less 64 spare descriptors', () => {
    const limit = connectionLimit(http, { workers: 2, openFiles: 128 });
    assert.equal(limit.maxConnections, 64);
    assert.deepEqual(connectionLimit(http, { workers: 2, openFiles: 10_064 }), {
      maxConnections: 10_000,
      warnings: [],
    });
    assert.equal(connectionLimit(http, { workers: 2, openFiles: 10_063 }).maxConnections, 9_999);
    // Fewer descriptors than the spares: still one connection, never none or a negative limit.
    assert.equal(connectionLimit(http, { workers: 2, openFiles: 50 }).maxConnections, 1);
    assert.match(limit.warnings.join('\n'), /open-files limit of 128 .* each worker takes 64 connections/);
  });

  it("under a memory limit: each worker's share, less the primary's and its own memory, over the most a connection can hold", () => {
    // (384 MiB - 48 MiB primary) / 2 workers - 64 MiB each = 104 MiB, over 20 KiB + 2 x 16 KiB.
    assert.equal(connectionMemory(16_384), 52 * 1024);
    const limit = connectionLimit(http, { workers: 2, memoryBytes: 384 * MiB });
    assert.equal(limit.maxConnections, 2_048);
    assert.match(
      limit.warnings.join('\n'),
      /memory limit of 384 MiB can hold for 2 workers: a connection can hold up to 52 KiB with a request head of MAX_HEADER_SIZE=16384 bytes begun, so each worker takes 2048/,
    );
    // More workers share it; a smaller MAX_HEADER_SIZE makes each connection's worst case smaller.
    assert.equal(connectionLimit(http, { workers: 4, memoryBytes: 384 * MiB }).maxConnections, 393);
    assert.equal(
      connectionLimit({ ...http, maxHeaderSize: 4_096 }, { workers: 2, memoryBytes: 384 * MiB })
        .maxConnections,
      3_803,
    );
    // A limit that leaves no room still lets each worker take a few: 100, as the README says.
    assert.equal(MIN_CONNECTIONS, 100);
    assert.equal(connectionLimit(http, { workers: 2, memoryBytes: 128 * MiB }).maxConnections, 100);
    // A MAX_CONNECTIONS the share holds exactly is not cut, and not warned of.
    assert.deepEqual(
      connectionLimit({ ...http, maxConnections: 2_048 }, { workers: 2, memoryBytes: 384 * MiB }),
      { maxConnections: 2_048, warnings: [] },
    );
    // The tighter of the two wins, and only a limit that cuts MAX_CONNECTIONS is warned of.
    const both = connectionLimit(http, { workers: 2, openFiles: 1_088, memoryBytes: 384 * MiB });
    assert.equal(both.maxConnections, 1_024);
    assert.equal(both.warnings.length, 1);
  });
});

describe('openFilesLimit', () => {
  it('is the soft limit, the one that refuses a descriptor, not the hard one', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units     \n' +
      'Max processes             63704                63704                processes \n' +
      'Max open files            4096                 524288               files     \n';
    assert.equal(openFilesLimit(limits), 4096);
    assert.equal(
      openFilesLimit('Max open files            unlimited            1048576              files\n'),
      undefined,
    );
  });
});

describe('memoryLimit over fixture trees', () => {
  const V1 = {
    '/proc/self/cgroup': '9:memory:/docker/abc\n0::/\n',
    '/proc/self/mountinfo': '40 31 0:35 /docker /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory',
  };
  const V2 = {
    '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
    '/proc/self/mountinfo': '30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
  };
  it("is the tightest limit of the process's memory cgroup and those above it, up to the mount", () => {
    const v1 = '/sys/fs/cgroup/memory';
    assert.equal(
      memoryLimit(fileTree({ ...V1, [`${v1}/abc/memory.limit_in_bytes`]: '402653184\n' })),
      384 * MiB,
    );
    // A parent's limit binds too (here the mount's root, the /docker cgroup).
    assert.equal(
      memoryLimit(
        fileTree({
          ...V1,
          [`${v1}/abc/memory.limit_in_bytes`]: '9223372036854771712\n',
          [`${v1}/memory.limit_in_bytes`]: '268435456\n',
        }),
      ),
      256 * MiB,
    );
    const v2 = '/sys/fs/cgroup/kubepods/pod1';
    assert.equal(
      memoryLimit(
        fileTree({ ...V2, [`${v2}/ctr/memory.max`]: 'max\n', [`${v2}/memory.max`]: '536870912\n' }),
      ),
      512 * MiB,
    );
    assert.equal(
      memoryLimit(
        fileTree({ ...V2, [`${v2}/ctr/memory.max`]: '402653184\n', [`${v2}/memory.max`]: '536870912\n' }),
      ),
      384 * MiB,
    );
    // Nothing above the mount point is a cgroup: a file there is not read.
    assert.equal(
      memoryLimit(
        fileTree({
          ...V1,
          [`${v1}/abc/memory.limit_in_bytes`]: '402653184\n',
          '/sys/fs/cgroup/memory.limit_in_bytes': '1048576\n',
        }),
      ),
      384 * MiB,
    );
    // A mount of a cgroup below the process's own (root /docker/abc/sub) does not show it.
    assert.equal(
      memoryLimit(
        fileTree({
          ...V1,
          '/proc/self/mountinfo': [
            '40 31 0:35 /docker /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory',
            '41 31 0:35 /docker/abc/sub /sub ro - cgroup cgroup rw,memory',
          ].join('\n'),
          [`${v1}/abc/memory.limit_in_bytes`]: '402653184\n',
        }),
      ),
      384 * MiB,
    );
  });

  it("is undefined where there is none (v2's max, v1's page-counter maximum) or it cannot be read", () => {
    assert.equal(
      memoryLimit(
        fileTree({ ...V1, '/sys/fs/cgroup/memory/abc/memory.limit_in_bytes': '9223372036854771712' }),
      ),
      undefined,
    );
    assert.equal(
      memoryLimit(fileTree({ ...V2, '/sys/fs/cgroup/kubepods/pod1/ctr/memory.max': 'max' })),
      undefined,
    );
    assert.equal(memoryLimit(fileTree(V2)), undefined);
    assert.equal(memoryLimit(fileTree({})), undefined);
  });
});

/** Scrapes until `workers` workers each report taking `expected` connections: one scrape a round trip. */
async function shares(url: string, workers: number, expected: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  let seen: number[] = [];
  while (!(seen.length === workers && seen.every((v) => v === expected))) {
    assert.ok(performance.now() < deadline, `${workers} workers taking ${expected} each: saw ${seen}`);
    const text = await request(`${url}/metrics`).then((res) => res.body.text());
    seen = parseExposition(text)
      .filter((sample) => sample.name === 'myservice_worker_max_connections')
      .map((sample) => sample.value);
  }
}

describe('a memory limit too small for MAX_CONNECTIONS (docker run --memory)', () => {
  const memoryCgroup = memoryCgroupsForSuite();

  it("SIGTTIN and SIGTTOU change every worker's share, the running workers' too; each figure is warned of once", async (t) => {
    const made = memoryCgroup(t, 'share', 384 * MiB);
    if (!made) return;
    const service = await startService({ env: { WORKERS: '2' }, wrap: made.wrap });
    try {
      // (384 - 48) / 2 - 64 = 104 MiB, or (384 - 48) / 3 - 64 = 48 MiB, over 52 KiB a connection.
      await shares(service.url, 2, 2_048);
      service.signal('SIGTTIN');
      await shares(service.url, 3, 945);
      service.signal('SIGTTOU');
      await shares(service.url, 2, 2_048);
      const warnings = (workers: number): number =>
        service.logs.filter((l) => l.level === 40 && l.msg.includes(`can hold for ${workers} workers`))
          .length;
      assert.deepEqual([warnings(2), warnings(3)], [1, 1], service.dump());
    } finally {
      assert.equal((await service.stop()).code, 0);
    }
  });

  it('a worker left alone by SIGTTOU takes the connections of its larger share, not only reports them', async (t) => {
    const made = memoryCgroup(t, 'takes', 192 * MiB);
    if (!made) return;
    const service = await startService({ env: { WORKERS: '2' }, wrap: made.wrap });
    const sockets: Socket[] = [];
    try {
      // (192 - 48) / 2 - 64 = 8 MiB: 157 connections each; alone, 80 MiB: 1,575.
      await shares(service.url, 2, 157);
      service.signal('SIGTTOU');
      await shares(service.url, 1, 1_575);
      let answered = 0;
      for (let i = 0; i < 400; i++) {
        const socket = connect(service.port, '127.0.0.1', () =>
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
        );
        socket.on('error', () => {});
        sockets.push(socket);
        // A dropped connection closes unanswered.
        const greeted = await new Promise<boolean>((resolve) => {
          socket.once('data', () => resolve(true));
          socket.once('close', () => resolve(false));
        });
        if (greeted) answered++;
      }
      assert.equal(answered, 400);
    } finally {
      for (const s of sockets) s.destroy();
      assert.equal((await service.stop()).code, 0);
    }
  });

  it('a client opening connections with big unfinished heads gets the extra ones dropped, not the worker OOM-killed', async (t) => {
    const made = memoryCgroup(t, 'heads', 192 * MiB);
    if (!made) return;
    // Unfinished heads stay open for HEADERS_TIMEOUT_MS: the attack is over long before.
    const service = await startService({
      env: { WORKERS: '1', HEADERS_TIMEOUT_MS: '20000' },
      wrap: made.wrap,
    });
    const sockets: Socket[] = [];
    try {
      // (192 MiB - 48 MiB primary - 64 MiB worker) / 52 KiB per connection.
      const held = 1_575;
      const warning = service.logs.find((l) => l.level === 40 && /memory limit of 192 MiB/.test(l.msg));
      assert.equal(warning?.maxConnections, held, service.dump());
      const [worker] = service.liveWorkerPids() as [number];

      // Each connection holds about 18 KB + 1.4 x its head in node:http. Unclamped, 4,500 of them
      // took the cgroup to 173 MiB, and 6,000 got the worker OOM-killed.
      const attack = 6_000;
      const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(16_000)}`;
      const closed: Promise<unknown>[] = [];
      for (let i = 0; i < attack; i++) {
        // A dropped connection may be reset before its 'connect' is seen: either will do.
        const socket = connect(service.port, '127.0.0.1', () => socket.write(head));
        socket.on('error', () => {});
        sockets.push(socket);
        closed.push(new Promise((resolve) => socket.once('close', resolve)));
        await new Promise((resolve) => socket.once('connect', resolve).once('close', resolve));
      }
      // The worker has read every head it took: no byte waits in a receive queue of its sockets.
      const waiting = (): number[] =>
        execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${service.port} )`], {
          encoding: 'utf8',
        })
          .split('\n')
          .filter(Boolean)
          .map((line) => Number(line.trim().split(/\s+/)[0]));
      const exited = (): boolean => service.logs.some((l) => l.msg === 'worker exited unexpectedly');
      let queues: number[] = [];
      await pollUntil(
        () => {
          queues = waiting();
          return exited() || (queues.length > 0 && queues.every((q) => q === 0));
        },
        'the worker exiting, or holding connections with each head read',
        30_000,
      );
      assert.ok(!exited(), service.dump());
      assert.deepEqual(service.liveWorkerPids(), [worker]);
      assert.equal(queues.length, held);

      for (const s of sockets) s.destroy();
      await Promise.all(closed);
      const scrape = await request(`${service.url}/metrics`);
      const dropped = total(parseExposition(await scrape.body.text()), 'myservice_connections_dropped_total');
      assert.equal(dropped, attack - held);
      const greeting = await request(service.url);
      assert.equal(greeting.statusCode, 200);
      await greeting.body.text();
    } finally {
      for (const s of sockets) s.destroy();
      assert.equal((await service.stop()).code, 0);
    }
  });
});
