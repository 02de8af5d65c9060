/** The benchmark's quick mode works end to end: a table, valid JSON, every configuration, no failures. No timings asserted. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run } from '../scripts/bench/commands.js';
import { rollsPrerequisiteMissing } from '../scripts/bench/drop-root.js';
import { readProcessGroup } from '../scripts/bench/proc-stats.js';
import { findTools } from '../scripts/bench/profiles.js';
import type { BenchReport } from '../scripts/bench/report.js';
import { isAlive, Service } from './helpers/service.js';

const BENCH = join(dirname(fileURLToPath(import.meta.url)), '../scripts/bench.js');
const BURST = join(dirname(fileURLToPath(import.meta.url)), '../scripts/accept-burst.js');
const ROLLS = join(dirname(fileURLToPath(import.meta.url)), '../scripts/roll-drops.js');
/** The committed reference results, a bench.json that is always there. */
const REFERENCE = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/results/bench.json');
const MINIMAL = join(dirname(fileURLToPath(import.meta.url)), '../scripts/bench/minimal-cluster.js');

/**
 * Runs node with `args` in a process group of its own, so whatever it starts, orphaned or not,
 * stays findable by pgid; the group is SIGKILLed after the test (ESRCH when it passed).
 */
function spawnGroup(args: readonly string[], env: Readonly<Record<string, string>> = {}) {
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  const pgid = child.pid as number;
  after(() => {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {}
  });
  let text = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, pgid, stderr: () => text, exited };
}

// minimal-2: the hand-written reusePort cluster, which must start, answer and stop like the others.
const EXPECTED = ['single', 'reuseport-1', 'round-robin-1', 'reuseport-2', 'round-robin-2', 'minimal-2'];

const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'));
after(() => rm(dir, { recursive: true, force: true }));

const tools = findTools();
test('npm run bench -- --quick', {
  skip: !tools.ab && !tools.wrk && 'neither ab nor wrk is installed',
  // 12 s here when idle, 22 s beside 4 busy loops: room for a machine that loses CPU to others.
  timeout: 100_000,
}, async (t) => {
  const { code, stdout, stderr } = await run([
    process.execPath,
    BENCH,
    '--quick',
    // Where the kernel has no schedstat the bench counts CPU in /proc's 10 ms ticks: 500 kept-alive
    // requests took less than one on a fast machine and read as 0 µs each. 5,000 span several.
    '--requests',
    '5000',
    '--workers',
    '1,2',
    '--compare',
    'minimal',
    '--out',
    dir,
  ]);
  assert.equal(code, 0, `bench exited with ${code}\n${stderr}\n${stdout}`);

  assert.match(
    stdout,
    /^configuration\s+req\/s\s+p50 ms\s+p99 ms\s+failed\s+length\s+CPU µs\/req\s+switches\/req/m,
  );
  const report = JSON.parse(await readFile(join(dir, 'bench.json'), 'utf8')) as BenchReport;
  assert.deepEqual(
    report.targets.map((s) => s.id),
    EXPECTED,
  );
  const expectedProfiles = [...(tools.ab ? ['ab', 'ab-k'] : []), ...(tools.wrk ? ['wrk'] : [])];
  assert.deepEqual(
    report.profiles.map((p) => p.id),
    expectedProfiles,
  );
  for (const target of EXPECTED) {
    for (const profile of expectedProfiles) {
      const s = report.summaries.find((x) => x.target === target && x.profile === profile);
      assert.ok(s, `no summary for ${target} × ${profile}`);
      assert.equal(s.runs, 1, `${target} × ${profile}: the load generator failed`);
      assert.ok((s.requestsPerSecond ?? 0) > 0, `${target} × ${profile}: no requests`);
      // A unit check, not a timing: a request costs microseconds to milliseconds of CPU, never less.
      const cpu = s.cpuMicrosPerRequest ?? 0;
      assert.ok(cpu >= 1 && cpu < 100_000, `${target} × ${profile}: ${cpu} µs of CPU per request`);
      // Every request wakes some server's event loop at least once per connection it opens.
      const switches = s.contextSwitchesPerRequest ?? 0;
      assert.ok(switches > 0 && switches < 100, `${target} × ${profile}: ${switches} switches/request`);
      // The single process has no primary: its one process is the one that serves.
      assert.equal(s.peakRssPrimaryBytes === undefined, target === 'single', `${target} × ${profile}`);
      assert.ok((s.peakRssWorkerBytes ?? 0) > 0, `${target} × ${profile}`);
      const { connect, receive, exceptions, non2xx } = s.failures;
      assert.deepEqual(
        { connect, receive, exceptions, non2xx },
        { connect: 0, receive: 0, exceptions: 0, non2xx: 0 },
        `${target} × ${profile}`,
      );
    }
  }
  const svg = await readFile(join(dir, 'bench.svg'), 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);

  // Every server process the bench measured is gone: it stopped what it started.
  const pids = new Set(report.samples.flatMap((s) => s.processes.map((p) => p.pid)));
  assert.ok(pids.size >= 1 + 2 + 3 + 2 + 3 + 3, `pids seen: ${[...pids]}`);
  for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} left running`);
  t.diagnostic(report.meta.skipped.join('; ') || 'nothing skipped');
});

test('--report reprints a saved run and draws its chart into a folder that does not exist yet', {
  skip: !tools.ab && !tools.wrk && 'neither ab nor wrk is installed',
}, async () => {
  const saved = join(dir, 'bench.json');
  const out = join(dir, 'redrawn', 'deeper');
  const { code, stdout, stderr } = await run([process.execPath, BENCH, '--report', saved, '--out', out]);
  assert.equal(code, 0, `bench --report exited with ${code}\n${stderr}`);
  assert.match(stdout, /^configuration\s+req\/s/m);
  const original = await readFile(join(dir, 'bench.svg'), 'utf8');
  assert.equal(await readFile(join(out, 'bench.svg'), 'utf8'), original);
});

test('--report and CPU lists the bench cannot use: one line naming the problem, exit 2', async () => {
  const notJson = join(dir, 'not-a-report.json');
  await writeFile(notJson, '{"schema":2}\n');
  const schemaOnly = join(dir, 'schema-only.json');
  await writeFile(schemaOnly, '{"schema":1}\n');
  for (const [args, message] of [
    [['--report', join(dir, 'missing.json')], /^--report: cannot read .*missing\.json: ENOENT/],
    [['--report', notJson], /^--report: .*not-a-report\.json is not a bench\.json/],
    [['--report', schemaOnly], /^--report: .*schema-only\.json is not a bench\.json \(schema 1\): no "meta"/],
    [
      ['--report', REFERENCE, '--out', join(notJson, 'out')],
      /^--out: cannot write .*not-a-report\.json\/out\/bench\.svg: ENOTDIR/,
    ],
    [['--service-cpus', '4096', '--load-cpus', '4097'], /^--service-cpus: CPUs 4096 are not among/],
    // Found before measuring, not after a whole run whose results the error would then lose.
    [
      ['--quick', '--out', join(notJson, 'out')],
      /^--out: cannot write .*not-a-report\.json\/out\/bench\.json: ENOTDIR/,
    ],
    [['--quick', '--json', dir], /^--json: cannot write .* is not a regular file/],
    [
      ['--quick', '--compare', 'nginx=/nonexistent/nginx'],
      /^--compare nginx: \/nonexistent\/nginx is not an executable file/,
    ],
  ] as const) {
    const { code, stderr } = await run([process.execPath, BENCH, ...args]);
    assert.equal(code, 2, stderr);
    assert.match(stderr, message);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

/** The processes of process group `pgid`, each with its argv, from /proc. */
async function processGroup(pgid: number): Promise<{ pid: number; argv: string[] }[]> {
  const found: { pid: number; argv: string[] }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (readProcessGroup(Number(entry)) !== pgid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    found.push({ pid: Number(entry), argv: cmdline.split('\0').filter(Boolean) });
  }
  return found;
}

// ab is the first measured load run, so the next one's start is refused; wrk is the last, so
// the round's line would follow it.
for (const tool of ['ab', 'wrk'] as const) {
  test(`SIGTERM in the middle of a measured ${tool} run stops the bench with 130, leaves no server or load generator behind, and does not report the run it cut short`, {
    skip: !tools[tool] && `${tool} is not installed`,
    timeout: 30_000,
  }, async () => {
    // Its own process group: whatever the bench starts, orphaned or not, stays findable by pgid.
    // 5,000 requests and 5 s: the measured runs (not the warm-up's 200 ab requests; --quick warms
    // up with ab only) last long enough to be caught.
    const out = join(dir, `interrupted-${tool}`);
    const args = ['--quick', '--workers', '1', '--requests', '5000', '--seconds', '5', '--out', out];
    const { child: bench, pgid, stderr, exited } = spawnGroup([BENCH, ...args]);
    // No event says "the load generator is running"; /proc does.
    const measured = (argv: string[]) =>
      argv.some((a) => a.endsWith(`/${tool}`)) &&
      (tool === 'wrk' || (argv.includes('5000') && !argv.includes('-k')));
    while (!(await processGroup(pgid)).some((p) => measured(p.argv))) {
      assert.equal(bench.exitCode, null, `the bench ended before its first measured ${tool}\n${stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    process.kill(pgid, 'SIGTERM');
    assert.equal(await exited, 130, stderr());
    assert.deepEqual(await processGroup(pgid), []);
    const signalAt = stderr().indexOf('SIGTERM: stopping');
    assert.ok(signalAt >= 0, stderr());
    // The killed run is the stop's doing, not a failure of the server or of the load generator.
    assert.doesNotMatch(stderr().slice(signalAt), /error|exited/, stderr());
  });
}

/**
 * A PATH whose `ab` stands for the real one: it sleeps until it is killed, ignoring SIGTERM, SIGINT
 * and SIGHUP when `stubborn` (as a load generator that does not stop at once would), so that the
 * bench is seen in the middle of a load run, or of its cleanup.
 */
async function pathWithSleepingAb(name: string, stubborn: boolean): Promise<string> {
  const bin = join(dir, name);
  await mkdir(bin);
  const trap = stubborn ? "trap '' TERM INT HUP\n" : '';
  await writeFile(join(bin, 'ab'), `#!/bin/sh\n${trap}exec sleep 30\n`, { mode: 0o755 });
  return `${bin}:${process.env.PATH ?? ''}`;
}

/** The bench with the sleeping ab, in a process group and temporary folder of its own. */
async function benchWithSleepingAb(name: string, stubborn: boolean) {
  const tmp = join(dir, `${name}-tmp`);
  await mkdir(tmp);
  const env = { PATH: await pathWithSleepingAb(name, stubborn), TMPDIR: tmp };
  const out = join(dir, `${name}-out`);
  const bench = spawnGroup([BENCH, '--quick', '--workers', '1', '--out', out], env);
  const sleepingAb = (argv: string[]) => argv.join(' ') === 'sleep 30';
  while (!(await processGroup(bench.pgid)).some((p) => sleepingAb(p.argv))) {
    assert.equal(bench.child.exitCode, null, `the bench ended before its first ab\n${bench.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { ...bench, tmp };
}

test('SIGHUP (the terminal hung up) stops the bench as SIGTERM does: 130, nothing left running, no scratch dir', {
  timeout: 30_000,
}, async () => {
  const { child, pgid, stderr, exited, tmp } = await benchWithSleepingAb('hangup', false);
  child.kill('SIGHUP');
  assert.equal(await exited, 130, stderr());
  assert.deepEqual(await processGroup(pgid), []);
  assert.deepEqual(await readdir(tmp), [], 'scratch directories left');
});

test('a second signal during the cleanup kills what is left instead of aborting it: 130, nothing left', {
  timeout: 30_000,
}, async () => {
  const { child, pgid, stderr, exited, tmp } = await benchWithSleepingAb('again', true);
  child.kill('SIGINT');
  // The bench passes SIGTERM on: the server stops, the stubborn ab does not. Once the server is
  // gone, the bench is waiting for ab in its cleanup, and a second Ctrl-C comes.
  const server = (argv: string[]) => argv.some((a) => a.endsWith('single-process.js'));
  while ((await processGroup(pgid)).some((p) => server(p.argv))) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(child.exitCode, null, `the bench did not wait for ab\n${stderr()}`);
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr());
  assert.deepEqual(await processGroup(pgid), []);
  assert.deepEqual(await readdir(tmp), [], 'scratch directories left');
});

test('--quick with neither ab nor wrk: exit 1, and no empty result folder left behind', async () => {
  const tmp = join(dir, 'no-tools-tmp');
  await mkdir(tmp);
  const empty = join(dir, 'no-tools-bin');
  await mkdir(empty);
  const bench = spawnGroup([BENCH, '--quick'], { PATH: empty, TMPDIR: tmp });
  assert.equal(await bench.exited, 1, bench.stderr());
  assert.match(bench.stderr(), /neither ab nor wrk is installed/);
  assert.deepEqual(await readdir(tmp), []);
});

test('an ab that fails from its first run, warm-up included, costs only its own runs: wrk still measures every configuration, exit 1', {
  skip: !tools.wrk && 'wrk is not installed',
  timeout: 60_000,
}, async () => {
  const bin = join(dir, 'failing-ab-bin');
  await mkdir(bin);
  await writeFile(join(bin, 'ab'), '#!/bin/sh\necho "ab stand-in: broken" >&2\nexit 1\n', { mode: 0o755 });
  const out = join(dir, 'failing-ab-out');
  const bench = spawnGroup([BENCH, '--quick', '--workers', '1', '--out', out], {
    PATH: `${bin}:${process.env.PATH ?? ''}`,
  });
  assert.equal(await bench.exited, 1, bench.stderr());
  const report = JSON.parse(await readFile(join(out, 'bench.json'), 'utf8')) as BenchReport;
  for (const target of ['single', 'reuseport-1', 'round-robin-1']) {
    const wrk = report.samples.find((s) => s.target === target && s.profile === 'wrk');
    assert.ok(wrk?.load && wrk.error === undefined, `${target}: wrk ${wrk?.error ?? 'not run'}`);
    const ab = report.samples.find((s) => s.target === target && s.profile === 'ab');
    assert.match(ab?.error ?? 'not run', /^ab .* exited with 1: ab stand-in: broken$/, target);
  }
  assert.ok(
    report.meta.skipped.some((l) => /^round 1: single process: warm-up ab: /.test(l)),
    report.meta.skipped.join('\n'),
  );
});

test('SIGTERM to bench:rolls stops its run in the namespace and the service: 130, nothing left', {
  skip: rollsPrerequisiteMissing(process.execPath, ROLLS) ?? false,
  timeout: 30_000,
}, async () => {
  const { child, pgid, stderr, exited } = spawnGroup([ROLLS, '--rolls', '50', '--rounds', '1']);
  // The service's workers are forked with the primary's argv: three processes once both run.
  const service = (argv: string[]) => argv.some((a) => a.endsWith('/src/main.js'));
  while ((await processGroup(pgid)).filter((p) => service(p.argv)).length < 3) {
    assert.equal(child.exitCode, null, `bench:rolls ended before its service ran\n${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  child.kill('SIGTERM');
  assert.equal(await exited, 130, stderr());
  assert.deepEqual(await processGroup(pgid), []);
});

test("npm run bench:burst: clients that connect while the workers are stopped are all answered afterwards; the service's queue holds them all, Node's default backlog does not", async (t) => {
  // Past the minimal cluster's two queues of 512 (Node's backlog of 511), within the kernel's maximum.
  const CLIENTS = 1_200;
  const { code, stdout, stderr } = await run([
    process.execPath,
    BURST,
    '--connections',
    String(CLIENTS),
    '--rounds',
    '1',
  ]);
  assert.equal(code, 0, `bench:burst exited with ${code}\n${stderr}`);
  // Columns: queued in the pause, answered, failed, last answer ms. Only the counts are checked.
  const rows = stdout.split('\n').filter((line) => /^(service|minimal)/.test(line));
  assert.equal(rows.length, 2, stdout);
  const queued: number[] = [];
  for (const row of rows) {
    const [inPause, answered, failed] = row
      .trim()
      .split(/\s{2,}/)
      .slice(1);
    assert.deepEqual([answered, failed], [String(CLIENTS), '0'], row);
    queued.push(Number(inPause));
  }
  const [service, minimal] = queued as [number, number];
  assert.ok(minimal <= 2 * 512, `the minimal cluster queued ${minimal}`);
  const somaxconn = Number(await readFile('/proc/sys/net/core/somaxconn', 'utf8'));
  if (somaxconn < CLIENTS)
    t.diagnostic(`net.core.somaxconn is ${somaxconn}: the service's queue is not checked`);
  else assert.equal(service, CLIENTS, stdout);
});

/** The state letter of /proc/<pid>/stat (T: stopped), or undefined once it is gone. */
async function processState(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

test('Ctrl-C while bench:burst has the workers stopped: they are continued and stopped, exit 130', {
  timeout: 30_000,
}, async () => {
  const { child: burst, pgid, stderr, exited } = spawnGroup([BURST, '--connections', '20', '--rounds', '1']);
  // The burst's SIGSTOP window is 500 ms; /proc shows it.
  const stopped = async () => {
    for (const p of await processGroup(pgid)) if ((await processState(p.pid)) === 'T') return true;
    return false;
  };
  while (!(await stopped())) {
    assert.equal(burst.exitCode, null, `bench:burst ended before it stopped a worker\n${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  process.kill(pgid, 'SIGINT');
  assert.equal(await exited, 130, stderr());
  assert.deepEqual(await processGroup(pgid), []);
});

test('the minimal cluster exits 1 at once when its workers cannot listen, instead of waiting to be stopped', async () => {
  // A plain listener (no SO_REUSEPORT) on the port: every reusePort bind to it fails.
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  after(() => holder.close());
  const { port } = holder.address() as AddressInfo;
  const minimal = new Service(
    spawn(process.execPath, [MINIMAL], {
      env: { PATH: process.env.PATH ?? '', WORKERS: '2', PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
    port,
  );
  const { code } = await minimal.exited;
  const stderr = minimal.stderr.join('');
  assert.equal(code, 1, stderr);
  assert.match(stderr, /worker \d+ exited with 1 before SIGTERM/);
});
