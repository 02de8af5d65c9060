/** What the bench settles before measuring (the default configuration, output files, tools) and how it reports it. */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { renderSvg } from '../scripts/bench/chart-svg.js';
import { removeScratchDir, run } from '../scripts/bench/commands.js';
import { findCompared } from '../scripts/bench/compare-tools.js';
import { launch } from '../scripts/bench/launch.js';
import { failedRequests, type LoadResult, NO_FAILURES } from '../scripts/bench/load-output.js';
import { measure, type RunSample } from '../scripts/bench/measure.js';
import { OptionError } from '../scripts/bench/options.js';
import { type OutputFiles, prepareOutputs, writeWhole } from '../scripts/bench/output-files.js';
import { processTree } from '../scripts/bench/proc-stats.js';
import {
  profiles as buildProfiles,
  findTools,
  missingTools,
  type Profile,
} from '../scripts/bench/profiles.js';
import type { BenchReport } from '../scripts/bench/report.js';
import { renderText } from '../scripts/bench/report-text.js';
import { comparisons, ratios, type Summary, summarize } from '../scripts/bench/summary.js';
import {
  defaultTargetId,
  type RunningTarget,
  serviceDefaultWorkers,
  type TargetSpec,
  targetSpecs,
} from '../scripts/bench/targets.js';
import { summaryOf } from './helpers/bench-summary.js';

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
  summaries: targetSpecs([2], []).map((t) =>
    summaryOf(t.id, 'ab', { requestsPerSecond: 1000, p50Ms: 1, p99Ms: 2, cpuMicrosPerRequest: 100 }),
  ),
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

  it("the run's warnings (oversubscription, shared cores, a quota) are in the text report", () => {
    const base = report('reuseport-2', 2);
    const warned = {
      ...base,
      meta: { ...base.meta, warnings: ['WORKERS=8 on 4 service CPUs: more workers'] },
    };
    assert.match(renderText(warned), /^warning: WORKERS=8 on 4 service CPUs: more workers$/m);
    assert.doesNotMatch(renderText(base), /^warning:/m);
  });

  it('alternatives meet reuseport with as many workers, whichever is the default', () => {
    const pairs = comparisons(targetSpecs([1, 2, 4], ['pm2', 'metrics-off'])).map((p) => p.join(' vs '));
    assert.ok(pairs.includes('reuseport-4 vs pm2-4'), pairs.join(', '));
    assert.ok(pairs.includes('reuseport-4 vs metrics-off-4'), pairs.join(', '));
  });
});

describe('the text report and the chart', () => {
  const MiB = 1_048_576;
  const base = report('reuseport-2', 2);
  const summaries = [
    summaryOf('single', 'ab', {
      requestsPerSecond: 1000,
      cpuMicrosPerRequest: 100,
      peakRssWorkerBytes: 30 * MiB,
    }),
    summaryOf('reuseport-2', 'ab', {
      requestsPerSecond: 1500,
      cpuMicrosPerRequest: 120,
      peakRssPrimaryBytes: 50 * MiB,
      peakRssWorkerBytes: 100 * MiB,
    }),
    summaryOf('round-robin-2', 'ab', { requestsPerSecond: 750, cpuMicrosPerRequest: 240 }),
  ];
  const shown: BenchReport = { ...base, summaries, ratios: ratios(summaries, comparisons(base.targets)) };

  it('each row: its own RSS columns, and its req/s and CPU against the single process', () => {
    const text = renderText(shown);
    assert.match(
      text,
      /^reuseport ×2 \(default\)\s+1,500\s+—\s+—\s+0\s+0\s+120\.0\s+—\s+50\.0\s+100\.0\s+—\s+1\s+1\.50x\s+1\.20x$/m,
    );
    assert.match(text, /^reuseport ×2 \(default\) vs round-robin ×2\s+2\.00x\s+0\.50x$/m);
  });

  it('the chart: req/s and CPU µs/req panels, bars scaled to the largest value in each', () => {
    const svg = renderSvg(shown);
    const widths = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => m[1]);
    // 260 px is the longest bar: 1,500 req/s, and 240 µs.
    assert.deepEqual(widths, ['173.3', '260.0', '130.0', '108.3', '130.0', '260.0']);
    const labels = [...svg.matchAll(/>([\d.,]+)<\/text>/g)].map((m) => m[1]);
    assert.deepEqual(labels, ['1,000', '1,500', '750', '100.0', '120.0', '240.0']);
  });
});

describe('before measuring', () => {
  const rejects = async (options: { out?: string; json?: string }, message: RegExp) =>
    assert.rejects(
      prepareOutputs({ quick: false, out: options.out, json: options.json }),
      (err) => err instanceof OptionError && message.test(err.message),
    );

  it('output paths: created when missing, refused with the option named when they cannot be written', {
    timeout: 10_000,
  }, async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    await rejects({ out: join(file, 'out') }, /^--out: cannot write .*a-file\/out\/bench\.json: .*ENOTDIR/);
    await rejects({ out: join(dir, 'ok'), json: dir }, /^--json: cannot write .* is not a regular file/);
    // Neither exists yet: every path can be written, but the chart would take the JSON's place.
    await rejects(
      { out: join(dir, 'same'), json: join(dir, 'same') },
      /^--json: .*same is a folder of the chart \(.*same\/bench\.svg\)/,
    );
    await rejects(
      { out: join(dir, 'o2'), json: join(dir, 'o2', 'bench.svg') },
      /^--json: .*o2\/bench\.svg is the chart /,
    );
    // Node's own recursive mkdir never returns for these (it makes the parent and retries).
    await rejects(
      { out: '/proc/no-such-folder/out' },
      /^--out: cannot write \/proc\/no-such-folder\/out\/bench\.json: ENOENT/,
    );
    // A folder that exists but takes no new file, which access(W_OK) does not tell root.
    await rejects({ json: '/proc/b.json' }, /^--json: cannot write \/proc\/b\.json: ENOENT/);
    symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling'));
    await rejects(
      { json: join(dir, 'dangling/x/b.json') },
      /^--json: cannot write .*dangling\/x\/b\.json: ENOENT/,
    );
    const files = await prepareOutputs({ quick: false, out: join(dir, 'new', 'deeper'), json: undefined });
    assert.deepEqual(files, {
      json: join(dir, 'new/deeper/bench.json'),
      svg: join(dir, 'new/deeper/bench.svg'),
    });
  });

  it("a plain run writes into the project's git-ignored bench-results/, wherever it is started from", async (t) => {
    const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');
    const folder = join(repo, 'bench-results');
    const existed = existsSync(folder);
    const cwd = process.cwd();
    process.chdir(dir);
    let files: OutputFiles;
    try {
      files = await prepareOutputs({ quick: false, out: undefined, json: undefined });
    } finally {
      process.chdir(cwd);
      if (!existed) rmSync(folder, { recursive: true, force: true });
    }
    // The committed reference results in scripts/results are not overwritten by a plain run.
    assert.deepEqual(files, { json: join(folder, 'bench.json'), svg: join(folder, 'bench.svg') });
    const ignored = await run(['git', '-C', repo, 'check-ignore', '--quiet', files.json]);
    if (ignored.code === 128) t.diagnostic(`not a git checkout: ${ignored.stderr.trim()}`);
    else assert.equal(ignored.code, 0, `${files.json} is not ignored by git`);
  });

  it('a report is replaced whole, never rewritten in place; a failed write leaves no partial file', async () => {
    const folder = join(dir, 'whole');
    mkdirSync(folder);
    const file = join(folder, 'bench.json');
    const chart = join(folder, 'bench.svg');
    await writeWhole([
      [file, 'first report\n'],
      [chart, 'first chart\n'],
    ]);
    // A reader of the old report (or a write cut short by a signal) must never see a mix: the
    // new one goes to a new file that replaces the old by a rename.
    const oldReader = openSync(file, 'r');
    await writeWhole([
      [file, 'second report\n'],
      [chart, 'second chart\n'],
    ]);
    assert.equal(readFileSync(oldReader, 'utf8'), 'first report\n');
    assert.equal(readFileSync(file, 'utf8'), 'second report\n');
    assert.equal(readFileSync(chart, 'utf8'), 'second chart\n');
    // The rename fails (a folder in the report's place): the error is the caller's, and the
    // temporary files are gone.
    const blocked = join(folder, 'blocked');
    mkdirSync(join(blocked, 'inside'), { recursive: true });
    await assert.rejects(writeWhole([[blocked, 'third\n']]), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.deepEqual(readdirSync(folder).sort(), ['bench.json', 'bench.svg', 'blocked']);
  });

  it('a stop signal during the write (the bench exits 130) leaves the previous report and no temporary file', async () => {
    const folder = join(dir, 'stopped');
    mkdirSync(folder);
    const file = join(folder, 'bench.json');
    writeFileSync(file, 'previous report\n');
    // A process that exits as the bench's stop handler does, once its temporary file exists.
    const child = join(dir, 'stopped-writer.mjs');
    const module = new URL('../scripts/bench/output-files.js', import.meta.url).href;
    writeFileSync(
      child,
      `import { existsSync } from 'node:fs';
const { writeWhole } = await import(${JSON.stringify(module)});
const partial = ${JSON.stringify(join(folder, '.bench.json.'))} + process.pid + '.partial';
void writeWhole([[${JSON.stringify(file)}, 'x'.repeat(64 * 1024 * 1024)]]);
const poll = () => (existsSync(partial) ? process.exit(130) : setImmediate(poll));
poll();
`,
    );
    const { code, stderr } = await run([process.execPath, child]);
    assert.equal(code, 130, stderr);
    assert.deepEqual(readdirSync(folder), ['bench.json']);
    assert.equal(readFileSync(file, 'utf8'), 'previous report\n');
  });

  it('--json alone takes the chart beside it, named after it; --quick alone a temporary folder', async () => {
    const json = join(dir, 'runs', 'x.json');
    assert.deepEqual(await prepareOutputs({ quick: false, out: undefined, json }), {
      json,
      svg: join(dir, 'runs', 'x.svg'),
    });
    assert.deepEqual(await prepareOutputs({ quick: true, out: join(dir, 'o'), json }), {
      json,
      svg: join(dir, 'o', 'bench.svg'),
    });
    const quick = await prepareOutputs({ quick: true, out: undefined, json: undefined });
    const temporary = quick.temporaryDir ?? '';
    assert.ok(temporary.startsWith(tmpdir()), JSON.stringify(quick));
    assert.equal(quick.json, join(temporary, 'bench.json'));
    await removeScratchDir(temporary);
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
      'wrk -t 1 -c 50 -d 1s --timeout 11s: wrk not found (Debian/Ubuntu: apt-get install wrk)',
    ]);
    assert.match(
      missingTools({ ab: undefined, wrk: '/usr/bin/wrk' }, all)[0] ?? '',
      /ab not found \(Debian\/Ubuntu: apt-get install apache2-utils\)$/,
    );
  });
});

describe('a run in error', () => {
  const sample = (round: number, rps: number, cpu: number | undefined, error?: string): RunSample => ({
    round,
    target: 'single',
    profile: 'ab',
    load: {
      requests: 1000,
      attempted: 1000,
      seconds: 1,
      requestsPerSecond: rps,
      p50Ms: 1,
      p99Ms: 2,
      failures: { ...NO_FAILURES, receive: error ? 950 : 0 },
      lengthMismatches: 0,
    },
    ...(error ? { error } : {}),
    cpuSeconds: 0,
    cpuMicrosPerRequest: cpu,
    contextSwitchesPerRequest: undefined,
    processes: [],
    peakRssReset: false,
  });

  it('is left out of the medians, and its failures are still counted', () => {
    const [s] = summarize([
      sample(1, 1000, 100),
      sample(2, 1200, 120),
      sample(3, 9000, 0, '950 of 1000 failed'),
    ]);
    assert.equal(s?.runs, 2);
    assert.equal(s?.errors, 1);
    assert.equal(s?.requestsPerSecond, 1100);
    assert.equal(s?.cpuMicrosPerRequest, 110);
    assert.equal(s?.failed, 950);
  });

  it('failures by cause and Length are summed over every round, errors included; spread is a median of the runs that count; peak RSS the highest', () => {
    const withFigures = (s: RunSample, rss: [number, number], spread: number, length: number): RunSample => ({
      ...s,
      load: { ...(s.load as LoadResult), lengthMismatches: length },
      processes: [
        { pid: 1, role: 'primary', cpuSeconds: 0, contextSwitches: 0, peakRssBytes: rss[0] },
        { pid: 2, role: 'worker', cpuSeconds: 0, contextSwitches: 0, peakRssBytes: rss[1] },
      ],
      imbalance: spread,
    });
    const [s] = summarize([
      withFigures(sample(1, 1000, 100), [50, 90], 1, 3),
      withFigures(sample(2, 1200, 120), [40, 110], 1.2, 0),
      withFigures(sample(3, 9000, 0, '950 of 1000 failed'), [30, 70], 2, 5),
    ]);
    assert.equal(s?.failures.receive, 950);
    assert.equal(s?.lengthMismatches, 8);
    assert.ok(Math.abs((s?.imbalance ?? 0) - 1.1) < 1e-12, `${s?.imbalance}`);
    assert.equal(s?.peakRssPrimaryBytes, 50);
    assert.equal(s?.peakRssWorkerBytes, 110);
  });

  it('alone: no figure in the table, the ratios or the chart, "—" for its CPU', () => {
    const summaries = summarize([sample(1, 9000, 0, 'the server exited during the run (SIGKILL)')]);
    const base = report(undefined, 1);
    const single = summaries[0] as Summary;
    const broken: BenchReport = {
      ...base,
      targets: base.targets.filter((t) => t.id === 'single'),
      summaries,
      ratios: [],
      samples: [sample(1, 9000, 0, 'the server exited during the run (SIGKILL)')],
    };
    assert.equal(single.requestsPerSecond, undefined);
    assert.equal(single.cpuMicrosPerRequest, undefined);
    const row = renderText(broken)
      .split('\n')
      .find((line) => line.startsWith('single process'));
    assert.match(row ?? '', /^single process\s+error\s+—\s+—\s+950 \+1 run in error\s+0\s+—/);
    assert.doesNotMatch(renderSvg(broken), />0\.0</);
    assert.match(renderSvg(broken), />n\/a</);
  });

  const plan = { pinned: false, service: [], load: [], reason: 'not pinned' };
  const [ab, abKeepAlive] = buildProfiles({
    abRequests: 30_000,
    abConcurrency: 4,
    wrkSeconds: 1,
    wrkConnections: 4,
    wrkThreads: 1,
  }) as [Profile, Profile];

  /** Starts `spec` and measures the ab profile on it, calling `during` as soon as ab runs. */
  async function abWhile(spec: TargetSpec, during: (target: RunningTarget) => void) {
    const target = await launch(spec, { plan });
    after(() => target.stop());
    const running = measure(1, target, ab, findTools(), plan);
    // ab is a child of this process: /proc shows it.
    const abRuns = () =>
      processTree(process.pid).some((pid) => {
        let argv: string[];
        try {
          argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        } catch {
          return false; // exited since the listing
        }
        return argv[0]?.endsWith('/ab') && argv.includes('30000');
      });
    // Polled: nothing tells this process when its grandchild execs.
    const deadline = performance.now() + 10_000;
    while (!abRuns()) {
      assert.ok(performance.now() < deadline, 'ab did not start within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    during(target);
    return { target, sample: await running };
  }

  it('a server killed during ab: the run is an error with no CPU figure, and the next run does not load it', {
    skip: !findTools().ab && 'ab is not installed',
    timeout: 30_000,
  }, async () => {
    const spec: TargetSpec = { id: 'single', label: 'single process', kind: 'single', workers: 1 };
    const { target, sample: killed } = await abWhile(spec, (t) => process.kill(t.pid, 'SIGKILL'));
    assert.match(killed.error ?? '', /^the server exited during the run \(SIGKILL\)$/);
    assert.equal(killed.cpuMicrosPerRequest, undefined);
    assert.ok(killed.load, 'what ab reported is kept');
    assert.ok(failedRequests(killed.load) <= killed.load.attempted, JSON.stringify(killed.load));
    const next = await measure(1, target, abKeepAlive, findTools(), plan);
    assert.equal(next.error, 'the server had exited before the run (SIGKILL)');
    assert.equal(next.load, undefined);
    const summaries = summarize([killed, next]);
    for (const s of summaries) {
      assert.equal(s.runs, 0);
      assert.equal(s.requestsPerSecond, undefined);
      assert.equal(s.cpuMicrosPerRequest, undefined);
      assert.ok(s.failed <= 30_000, `failed ${s.failed}`);
    }
  });

  it('a worker killed during ab: the run still counts, switches/req is left out, and the report says why', {
    skip: !findTools().ab && 'ab is not installed',
    timeout: 30_000,
  }, async () => {
    const spec = targetSpecs([2], []).find((t) => t.id === 'reuseport-2') as TargetSpec;
    let victim = 0;
    const { sample } = await abWhile(spec, (t) => {
      victim = processTree(t.pid).find((pid) => pid !== t.pid) as number;
      process.kill(victim, 'SIGKILL');
    });
    assert.equal(sample.error, undefined, JSON.stringify(sample.load));
    assert.ok(sample.workersChanged?.exited.includes(victim), JSON.stringify(sample.workersChanged));
    assert.ok((sample.cpuMicrosPerRequest ?? 0) > 0);
    assert.equal(sample.contextSwitchesPerRequest, undefined);
    const text = renderText({ ...report('reuseport-2', 2), samples: [sample] });
    assert.match(
      text,
      new RegExp(`exited: ${victim};.*spread, switches/req and the exited ones' peak RSS left out`),
    );
  });
});
