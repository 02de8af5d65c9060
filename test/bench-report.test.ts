/** What the bench settles before measuring (the default configuration, output files, tools) and how it reports it. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { findCompared } from '../scripts/bench/compare-tools.js';
import { NO_FAILURES } from '../scripts/bench/load-output.js';
import { OptionError } from '../scripts/bench/options.js';
import { prepareOutputs } from '../scripts/bench/output-files.js';
import { profiles as buildProfiles, missingTools } from '../scripts/bench/profiles.js';
import type { BenchReport } from '../scripts/bench/report.js';
import { renderText } from '../scripts/bench/report-text.js';
import { comparisons } from '../scripts/bench/summary.js';
import { defaultTargetId, serviceDefaultWorkers, targetSpecs } from '../scripts/bench/targets.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-report-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** /proc and /sys of a 16-CPU host whose cgroup v2 limit is `cpuMax` (or none). */
const host =
  (cpuMax?: string) =>
  (path: string): string | undefined =>
    ({
      '/proc/self/cgroup': '0::/bench\n',
      '/proc/self/mountinfo': '30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      ...(cpuMax ? { '/sys/fs/cgroup/bench/cpu.max': cpuMax } : {}),
    })[path];

const report = (defaultTarget: string | undefined, defaultWorkers: number): BenchReport => ({
  schema: 1,
  meta: {
    date: '2025-01-01T00:00:00.000Z',
    command: 'bench',
    quick: true,
    rounds: 1,
    host: 'h',
    cpuModel: 'cpu',
    cpus: 2,
    kernel: '6',
    node: 'v26',
    cpuPlan: { pinned: true, service: '0', load: '1', reason: 'CPUs given on the command line' },
    tools: {},
    defaultTarget,
    defaultWorkers,
    skipped: [],
  },
  profiles: [{ id: 'ab', command: 'ab -c 4 -n 500' }],
  targets: targetSpecs([2], []).map((s) => ({ ...s, readyMs: 1 })),
  summaries: targetSpecs([2], []).map((t) => ({
    target: t.id,
    profile: 'ab',
    runs: 1,
    errors: 0,
    requestsPerSecond: 1000,
    p50Ms: 1,
    p99Ms: 2,
    cpuMicrosPerRequest: 100,
    failed: 0,
    failures: NO_FAILURES,
    lengthMismatches: 0,
    peakRssPrimaryBytes: undefined,
    peakRssWorkerBytes: undefined,
    imbalance: undefined,
  })),
  ratios: [],
  scaling: [],
  samples: [],
});

describe('the default configuration', () => {
  it('is what WORKERS=auto starts on the service CPUs: affinity and cgroup quota, by the service rule', () => {
    assert.equal(serviceDefaultWorkers([0], host(), 16), 1);
    assert.equal(serviceDefaultWorkers([0, 1, 2, 3], host(), 16), 4);
    assert.equal(serviceDefaultWorkers([0, 1, 2, 3], host('150000 100000\n'), 16), 2);
  });

  it('--workers 2 on 1 service CPU: no row is the default, and the report says it was not measured', () => {
    // The bench used to take the largest WORKERS value: reuseport-2, which the service would not start.
    assert.equal(defaultTargetId([2], serviceDefaultWorkers([0], host(), 2)), undefined);
    assert.equal(defaultTargetId([1, 2], 1), 'reuseport-1');
    const text = renderText(report(undefined, 1));
    assert.match(text, /^reuseport ×2 {2}/m);
    assert.doesNotMatch(text, /\(default\)/);
    assert.match(
      text,
      /default not measured: WORKERS=auto starts 1 worker on the service's CPUs \(add 1 to --workers\)/,
    );
    assert.match(renderText(report('reuseport-2', 2)), /reuseport ×2 \(default\)/);
  });

  it('alternatives meet reuseport with as many workers, whichever is the default', () => {
    const pairs = comparisons(targetSpecs([1, 2, 4], ['pm2', 'metrics-off'])).map((p) => p.join(' vs '));
    assert.ok(pairs.includes('reuseport-4 vs pm2-4'), pairs.join(', '));
    assert.ok(pairs.includes('reuseport-4 vs metrics-off-4'), pairs.join(', '));
  });
});

describe('before measuring', () => {
  const rejects = async (options: { out?: string; json?: string }, message: RegExp) =>
    assert.rejects(
      prepareOutputs({ quick: false, out: options.out, json: options.json }),
      (err) => err instanceof OptionError && message.test(err.message),
    );

  it('output paths: created when missing, refused with the option named when they cannot be written', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    await rejects({ out: join(file, 'out') }, /^--out: cannot write .*a-file\/out\/bench\.json: .*ENOTDIR/);
    await rejects({ out: join(dir, 'ok'), json: dir }, /^--json: cannot write .* is not a regular file/);
    const files = await prepareOutputs({ quick: false, out: join(dir, 'new', 'deeper'), json: undefined });
    assert.deepEqual(files, {
      json: join(dir, 'new/deeper/bench.json'),
      svg: join(dir, 'new/deeper/bench.svg'),
    });
  });

  it('a comparison asked for whose binary is missing is an error, not a skipped row', () => {
    const none = () => undefined;
    assert.throws(
      () => findCompared([{ tool: 'nginx', path: undefined }], none),
      (err) =>
        err instanceof OptionError &&
        /^--compare nginx: nginx is not on PATH.*apt-get install nginx/.test(err.message),
    );
    assert.throws(
      () => findCompared([{ tool: 'pm2', path: '/opt/pm2-runtime' }], none),
      (err) =>
        err instanceof OptionError &&
        /^--compare pm2: \/opt\/pm2-runtime is not an executable file/.test(err.message),
    );
    const found = findCompared(
      [
        { tool: 'minimal', path: undefined },
        { tool: 'nginx', path: undefined },
      ],
      () => '/x/nginx',
    );
    assert.deepEqual([...found.keys()], ['minimal', 'nginx']);
  });

  it('a missing load generator names the profiles left out and its own package', () => {
    const all = buildProfiles({
      abRequests: 500,
      abConcurrency: 4,
      wrkSeconds: 1,
      wrkConnections: 50,
      wrkThreads: 1,
    });
    assert.deepEqual(missingTools({ ab: '/usr/bin/ab', wrk: undefined }, all), [
      'wrk -t 1 -c 50 -d 1s: wrk not found (Debian/Ubuntu: apt-get install wrk)',
    ]);
    assert.match(
      missingTools({ ab: undefined, wrk: '/usr/bin/wrk' }, all)[0] ?? '',
      /ab not found \(Debian\/Ubuntu: apt-get install apache2-utils\)$/,
    );
  });
});
