/** The bench's pure parts: output parsers, CPU planning, spread and medians, against captured or fixed inputs. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { findExecutable, run } from '../scripts/bench/commands.js';
import {
  formatCpuList,
  oversubscriptionWarning,
  planCpus,
  quotaWarning,
  sharedCoreWarning,
} from '../scripts/bench/cpu-plan.js';
import { mebibytes } from '../scripts/bench/format.js';
import {
  failedRequests,
  type LoadResult,
  parseAb,
  parseWrk,
  unusableRun,
  withUnexplainedLength,
} from '../scripts/bench/load-output.js';
import { greetingLengths, type ProcessSample } from '../scripts/bench/measure.js';
import { OptionError, parseOptions } from '../scripts/bench/options.js';
import { readContextSwitches, readPeakRssBytes } from '../scripts/bench/proc-stats.js';
import {
  profiles as buildProfiles,
  descriptorProblem,
  findTools,
  type Profile,
  type ProfileId,
  wrkThreadsFor,
} from '../scripts/bench/profiles.js';
import {
  countDeltas,
  imbalance,
  parseRequestCounts,
  readRequestCounts,
} from '../scripts/bench/request-spread.js';
import { RollTally } from '../scripts/bench/roll-tally.js';
import { roundOrder } from '../scripts/bench/run-rounds.js';
import { comparisons, median, scaling } from '../scripts/bench/summary.js';
import { defaultWorkerCounts, targetSpecs } from '../scripts/bench/targets.js';
import { parseCpuList } from '../src/cpu-list.js';
import { openFilesLimit } from '../src/open-files.js';
import { summaryOf } from './helpers/bench-summary.js';

const AB_REPORT = `Server Hostname:        127.0.0.1
Document Length:        49 bytes

Concurrency Level:      4
Time taken for tests:   1.534 seconds
Complete requests:      10000
Failed requests:        4996
   (Connect: 1, Receive: 2, Length: 4990, Exceptions: 3)
Write errors:           4
Non-2xx responses:      5
Requests per second:    6521.33 [#/sec] (mean)
`;
const AB_CSV = 'Percentage served,Time in ms\n0,0.347\n50,0.834\n98,2.923\n99,3.456\n100,9.137\n';

const WRK_REPORT = `Running 5s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Latency Distribution
     50%  812.00us
     75%    1.29ms
     90%    5.10ms
     99%    1.02s${' '}
  123456 requests in 5.00s, 16.02MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 7
Requests/sec:  24691.20
Transfer/sec:      3.20MB
`;

describe('load generator output', () => {
  it('ab: counts, µs-resolution percentiles from -e, Length kept apart from failures', () => {
    const r = parseAb(AB_REPORT, AB_CSV);
    assert.equal(r.requests, 10000);
    assert.equal(r.seconds, 1.534);
    assert.equal(r.requestsPerSecond, 6521.33);
    assert.equal(r.p50Ms, 0.834);
    assert.equal(r.p99Ms, 3.456);
    assert.deepEqual(r.failures, { connect: 1, receive: 6, exceptions: 3, timeout: 0, non2xx: 5, length: 0 });
    assert.equal(r.lengthMismatches, 4990);
    // The 3 Exceptions came with Receive errors for the same requests (see the cases below).
    assert.equal(failedRequests(r), 12);
  });

  it('ab: a clean run has no breakdown line and no failures', () => {
    const clean = AB_REPORT.replace(/^Failed.*\n.*\n.*\n.*\n/m, 'Failed requests:        0\n');
    const r = parseAb(clean, AB_CSV);
    assert.equal(failedRequests(r), 0);
    assert.equal(r.lengthMismatches, 0);
  });

  it('wrk: units of its latency percentiles and socket errors', () => {
    const r = parseWrk(WRK_REPORT);
    assert.equal(r.requests, 123456);
    assert.equal(r.seconds, 5);
    assert.equal(r.requestsPerSecond, 24691.2);
    assert.equal(r.p50Ms, 0.812);
    assert.equal(r.p99Ms, 1020);
    assert.deepEqual(r.failures, { connect: 1, receive: 5, exceptions: 0, timeout: 4, non2xx: 7, length: 0 });
    // wrk's count is of answers: its connect, read and write errors are requests made on top of
    // them; a timeout is a late answer, among them.
    assert.equal(r.attempted, 123456 + 1 + 2 + 3);
    assert.equal(failedRequests(r), 17);
  });

  it("the greeting lengths that tell Length failures apart are the workers' alone: the primary never answers", () => {
    const process = (pid: number, role: 'primary' | 'worker'): ProcessSample => ({
      pid,
      role,
      cpuSeconds: 0,
      contextSwitches: 0,
      peakRssBytes: undefined,
    });
    // "Hello, Docker world from h (pid 12).\n" is 37 bytes; pid 7's greeting would be 36.
    assert.deepEqual(
      greetingLengths([process(7, 'primary'), process(12, 'worker'), process(13, 'worker')], 'h'),
      [37, 37],
    );
  });

  it('Length mismatches are failures when every greeting had one length, beyond Receive errors and non-2xx', () => {
    const r = parseAb(AB_REPORT, AB_CSV);
    assert.equal(r.firstBodyBytes, 49);
    // 6 of the 4990 are the replies that broke mid-receive or mid-write, and 5 the non-2xx
    // replies, which ab counts twice.
    assert.equal(withUnexplainedLength(r, [49, 49]).failures.length, 4979);
    assert.equal(failedRequests(withUnexplainedLength(r, [49])), 12 + 4979);
    // pid 999 answers with a body one byte shorter than pid 1000's: nothing can be told apart.
    assert.equal(withUnexplainedLength(r, [48, 49]).failures.length, 0);
    const clean = { ...r, lengthMismatches: 0 };
    assert.equal(withUnexplainedLength(clean, [49]), clean);
    // The first reply, 50 bytes, was no greeting: the 5010 replies that matched it are the odd ones.
    assert.equal(withUnexplainedLength(r, [50]).failures.length, 10000 - 4990 - 6 - 5);
  });

  const HELLO = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello';
  const UNAVAILABLE =
    'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close\r\n\r\nunavailable\n';

  /** Real `ab -c 1 -n 20` against a server that answers connection n (from 1) with answer(n), or closes it. */
  async function abAgainst(t: TestContext, answer: (n: number) => string | undefined): Promise<LoadResult> {
    let connections = 0;
    const server = createServer((socket) => {
      const reply = answer(++connections);
      socket.once('data', () => (reply === undefined ? socket.destroy() : socket.end(reply)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const dir = mkdtempSync(join(tmpdir(), 'bench-units-ab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const csv = join(dir, 'percentiles.csv');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const ab = await run([findTools().ab as string, '-q', '-r', '-e', csv, '-c', '1', '-n', '20', url]);
    t.diagnostic(ab.stdout);
    return parseAb(ab.stdout, readFileSync(csv, 'utf8'));
  }

  it('real ab counts a connection closed without a reply as Length, which one greeting length cannot explain', {
    skip: !findTools().ab && 'ab is not installed',
  }, async (t) => {
    // Every fifth connection is closed as soon as its request arrives; the others get 5 bytes.
    const r = await abAgainst(t, (n) => (n % 5 === 0 ? undefined : HELLO));
    assert.equal(r.lengthMismatches, 4);
    assert.equal(failedRequests(r), 0);
    assert.equal(failedRequests(withUnexplainedLength(r, [5])), 4);
  });

  for (const first of ['a greeting', 'a 503'] as const) {
    it(`real ab counts a 503 of another length as Non-2xx and Length, first reply ${first}: failed counts it once`, {
      skip: !findTools().ab && 'ab is not installed',
    }, async (t) => {
      // Every fifth connection gets the 503, from the first one on or not.
      const shift = first === 'a 503' ? 4 : 0;
      const r = await abAgainst(t, (n) => ((n + shift) % 5 === 0 ? UNAVAILABLE : HELLO));
      assert.equal(r.failures.non2xx, 4);
      // ab measures every reply against the first: after a 503, the 16 greetings are its Length.
      assert.equal(r.lengthMismatches, first === 'a 503' ? 16 : 4);
      assert.equal(failedRequests(withUnexplainedLength(r, [5])), 4);
    });
  }

  it("real wrk, as the bench runs it, measures answers slower than wrk's default 2 s timeout instead of dropping them", {
    skip: !findTools().wrk && 'wrk is not installed',
  }, async (t) => {
    // Every tenth request is answered after 2.5 s: soon all 4 connections wait on one, so about
    // one answer in 20 is slow. wrk's default --timeout counts those as "timeout" and leaves them
    // out of its percentiles, which then show only the fast ones.
    let requests = 0;
    const server = createHttpServer((_req, res) => {
      const slow = ++requests % 10 === 0;
      const timer = setTimeout(() => res.end('hello'), slow ? 2_500 : 0);
      res.on('close', () => clearTimeout(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const wrk = buildProfiles({
      abRequests: 4,
      abConcurrency: 4,
      wrkSeconds: 3,
      wrkConnections: 4,
      wrkThreads: 1,
    }).find((p) => p.id === 'wrk') as Profile;
    const [, ...args] = wrk.argv(url, '');
    const out = await run([findTools().wrk as string, ...args]);
    t.diagnostic(out.stdout);
    const r = parseWrk(out.stdout);
    assert.equal(r.failures.timeout, 0);
    assert.ok(r.p99Ms >= 2_500, `p99 ${r.p99Ms} ms`);
    assert.equal(failedRequests(r), 0);
  });

  it("the profiles: the post's ab, the same kept alive, and wrk with its timeout past the run's end", () => {
    const all = buildProfiles({
      abRequests: 10_000,
      abConcurrency: 4,
      wrkSeconds: 5,
      wrkConnections: 50,
      wrkThreads: 1,
    });
    assert.deepEqual(
      all.map((p) => [p.id, p.tool, p.command]),
      [
        ['ab', 'ab', 'ab -c 4 -n 10000'],
        ['ab-k', 'ab', 'ab -k -c 4 -n 10000'],
        ['wrk', 'wrk', 'wrk -t 1 -c 50 -d 5s --timeout 15s'],
      ],
    );
    const [ab, abKeepAlive, wrk] = all.map((p) => p.argv('http://127.0.0.1:1/', '/tmp/p.csv').join(' '));
    assert.doesNotMatch(ab ?? '', / -k /);
    assert.match(abKeepAlive ?? '', / -k .*http:\/\/127\.0\.0\.1:1\/$/);
    assert.match(wrk ?? '', / --latency http:\/\/127\.0\.0\.1:1\/$/);
  });

  it('wrk threads divide the connections (wrk drops the remainder), at most the CPUs given', () => {
    assert.deepEqual(
      [
        wrkThreadsFor(50, 8),
        wrkThreadsFor(256, 8),
        wrkThreadsFor(4, 8),
        wrkThreadsFor(7, 4),
        wrkThreadsFor(50, 1),
      ],
      [5, 8, 4, 1, 1],
    );
  });

  // Captured from ab 2.3 with -r: `-c 4 -n 30000` against the single process, SIGKILLed after
  // 0.7 s; `-n 2000` against the port afterwards; `-n 2000` against a server that resets every
  // fifth connection once its request came.
  const abFailures = (complete: number, breakdown: string) =>
    AB_REPORT.replace(/^Complete requests:.*$/m, `Complete requests:      ${complete}`)
      .replace(/^ {3}\(Connect.*$/m, `   (${breakdown})`)
      .replace(/^(Write errors|Non-2xx responses):.*\n/gm, '');

  it('ab counts one broken request as Receive, Length and Exceptions: failed counts it once', () => {
    const killed = withUnexplainedLength(
      parseAb(abFailures(30000, 'Connect: 0, Receive: 27820, Length: 27820, Exceptions: 14435'), AB_CSV),
      [49],
    );
    assert.equal(failedRequests(killed), 27820);
    const dead = parseAb(abFailures(2000, 'Connect: 0, Receive: 2000, Length: 0, Exceptions: 1005'), AB_CSV);
    assert.equal(failedRequests(withUnexplainedLength(dead, [])), 2000);
    const reset = withUnexplainedLength(
      parseAb(abFailures(2000, 'Connect: 0, Receive: 400, Length: 400, Exceptions: 400'), AB_CSV),
      [49],
    );
    assert.equal(failedRequests(reset), 400);
    // Whatever ab's causes add up to, no more requests fail than were made.
    const odd = parseAb(abFailures(100, 'Connect: 0, Receive: 10, Length: 0, Exceptions: 500'), AB_CSV);
    assert.equal(failedRequests(odd), 100);
  });

  it('a run is unusable when the server exited or nearly every request failed, whatever rate ab printed', () => {
    const run = (complete: number, receive: number) =>
      parseAb(abFailures(complete, `Connect: 0, Receive: ${receive}, Length: 0, Exceptions: 0`), AB_CSV);
    assert.equal(run(2000, 2000).requestsPerSecond, 6521.33);
    assert.equal(unusableRun(run(2000, 2000), undefined), '2000 of 2000 requests failed');
    assert.equal(unusableRun(run(2000, 1800), undefined), '1800 of 2000 requests failed');
    assert.equal(unusableRun(run(2000, 1799), undefined), undefined);
    assert.equal(unusableRun(run(2000, 0), 'SIGKILL'), 'the server exited during the run (SIGKILL)');
    const none = parseWrk(
      WRK_REPORT.replace(/^ {2}\d+ requests in/m, '  0 requests in').replace(/^ {2}Socket.*\n/m, ''),
    );
    assert.equal(unusableRun(none, undefined), 'no request was made');
  });

  it('names what is missing from an output it cannot read', () => {
    assert.throws(() => parseWrk('wrk: command failed'), /Requests\/sec|request count/);
  });
});

describe('CPU plan', () => {
  /** A CPU list these tests know to be one. */
  const listed = (text: string): number[] => parseCpuList(text) as number[];
  it('reads and writes kernel CPU lists', () => {
    assert.deepEqual(listed('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
    assert.equal(formatCpuList([0, 1, 2, 3, 8, 10, 11]), '0-3,8,10-11');
  });

  it('splits 16 CPUs in halves, leaves 2 unpinned, and pins nothing without taskset', () => {
    const cpus = Array.from({ length: 16 }, (_, i) => i);
    const big = planCpus({ allowed: cpus, taskset: true });
    assert.equal(big.pinned, true);
    assert.deepEqual([big.service, big.load], [cpus.slice(0, 8), cpus.slice(8)]);
    assert.equal(planCpus({ allowed: [0, 1], taskset: true }).pinned, false);
    // Halves from 4 CPUs; an odd count gives the service the larger one.
    assert.equal(planCpus({ allowed: [0, 1, 2], taskset: true }).pinned, false);
    const four = planCpus({ allowed: [0, 1, 2, 3], taskset: true });
    assert.deepEqual([four.pinned, four.service, four.load], [true, [0, 1], [2, 3]]);
    const five = planCpus({ allowed: [0, 1, 2, 3, 4], taskset: true });
    assert.deepEqual(
      [five.service, five.load],
      [
        [0, 1, 2],
        [3, 4],
      ],
    );
    assert.equal(planCpus({ allowed: cpus, taskset: false }).pinned, false);
    const given = planCpus({ allowed: cpus, taskset: true, serviceOverride: [2], loadOverride: [3] });
    assert.deepEqual([given.pinned, given.service, given.load], [true, [2], [3]]);
  });

  it('with two threads per core, splits by core: both threads of a core on one side, and no warning', () => {
    // A common 16-vCPU cloud layout: CPU n and n + 8 are the two threads of core n.
    const cpus = listed('0-15');
    const siblings = new Map(cpus.map((c) => [c, [c % 8, (c % 8) + 8]]));
    const plan = planCpus({ allowed: cpus, taskset: true, siblings });
    assert.deepEqual([plan.service, plan.load], [listed('0-3,8-11'), listed('4-7,12-15')]);
    assert.equal(plan.reason, '16 CPUs on 8 cores split in halves, the threads of a core on one side');
    assert.equal(sharedCoreWarning(plan, siblings), undefined);
    // Split by number, as before, the halves shared every core.
    const byNumber = planCpus({ allowed: cpus, taskset: true });
    assert.match(
      sharedCoreWarning(byNumber, siblings) ?? '',
      /^the service's and the load generator's CPUs share cores \(CPU 0 with 8, 1 with 9, .*7 with 15\): the load generator competes with the service on them$/,
    );
    // Adjacent siblings (0-1 one core), a CPU set that cuts a core in two, one thread per core.
    const adjacent = new Map(cpus.map((c) => [c, [c & ~1, c | 1]]));
    const four = planCpus({ allowed: [0, 1, 2, 3], taskset: true, siblings: adjacent });
    assert.deepEqual(
      [four.service, four.load],
      [
        [0, 1],
        [2, 3],
      ],
    );
    const cut = planCpus({ allowed: [1, 2, 3, 4, 5], taskset: true, siblings: adjacent });
    assert.deepEqual(
      [cut.service, cut.load],
      [
        [1, 2, 3],
        [4, 5],
      ],
    );
    const single = new Map(cpus.map((c) => [c, [c]]));
    assert.deepEqual(planCpus({ allowed: cpus, taskset: true, siblings: single }).service, listed('0-7'));
    // Four threads of one core cannot be split by core: by number, and the warning says why.
    const oneCore = new Map([0, 1, 2, 3].map((c) => [c, [0, 1, 2, 3]]));
    const plain = planCpus({ allowed: [0, 1, 2, 3], taskset: true, siblings: oneCore });
    assert.deepEqual(
      [plain.service, plain.load],
      [
        [0, 1],
        [2, 3],
      ],
    );
    assert.match(sharedCoreWarning(plain, oneCore) ?? '', /CPU 0 with 2-3, 1 with 2-3\)/);
    // CPUs given on the command line are taken as given, and warned about.
    const given = planCpus({
      allowed: cpus,
      taskset: true,
      siblings,
      serviceOverride: [0, 1],
      loadOverride: [8, 12],
    });
    assert.match(sharedCoreWarning(given, siblings) ?? '', /\(CPU 0 with 8\)/);
  });

  it('more WORKERS than service CPUs is warned about: those rows measure oversubscription', () => {
    const plan = planCpus({ allowed: listed('0-7'), taskset: true });
    assert.equal(
      oversubscriptionWarning(plan, [1, 2, 4, 8]),
      'WORKERS=8 on 4 service CPUs: more workers than CPUs measure oversubscription, not scaling',
    );
    assert.equal(oversubscriptionWarning(plan, [1, 2, 4]), undefined);
    const unpinned = planCpus({ allowed: [0, 1], taskset: true });
    assert.match(oversubscriptionWarning(unpinned, [1, 2, 3, 5]) ?? '', /^WORKERS=3,5 on 2 service CPUs:/);
  });

  it('a CPU quota below the CPUs pinned is said: service and load generator share it, pinned apart or not', () => {
    const pinned = planCpus({ allowed: listed('0-15'), taskset: true });
    assert.match(
      quotaWarning(pinned, 2) ?? '',
      /^a CPU quota of 2 CPUs covers the service and the load generator together \(16 CPUs pinned\)/,
    );
    assert.equal(quotaWarning(pinned, 16), undefined);
    assert.equal(quotaWarning(pinned, undefined), undefined);
    const unpinned = planCpus({ allowed: [0, 1], taskset: true });
    assert.equal(quotaWarning(unpinned, 1.5), undefined);
  });

  it('CPU lists given without taskset are an error, not an unpinned run', () => {
    assert.throws(
      () => planCpus({ allowed: [0, 1], taskset: false, serviceOverride: [0], loadOverride: [1] }),
      /--service-cpus and --load-cpus need taskset, which was not found \(.*apt-get install util-linux\)/,
    );
  });

  it('wrk connections that the open-files limit cannot hold are refused before measuring, not counted as failures', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 1024                 files     \n';
    assert.equal(openFilesLimit(limits), 1024);
    assert.equal(
      openFilesLimit('Max open files            unlimited            unlimited            files\n'),
      undefined,
    );
    assert.equal(openFilesLimit(undefined), undefined);
    assert.match(
      descriptorProblem(1024, 1024) ?? '',
      /^--connections 1024 needs about 1088 open files in wrk and in the single process, and the limit here is 1024: raise the hard limit/,
    );
    assert.equal(descriptorProblem(50, 1024), undefined);
    assert.equal(descriptorProblem(1024, undefined), undefined);
  });

  it('default WORKERS values: 1..N up to 4, then powers of two and N', () => {
    assert.deepEqual(defaultWorkerCounts(1), [1, 2]);
    assert.deepEqual(defaultWorkerCounts(2), [1, 2]);
    assert.deepEqual(defaultWorkerCounts(8), [1, 2, 4, 8]);
    assert.deepEqual(defaultWorkerCounts(12), [1, 2, 4, 8, 12]);
  });
});

describe('configurations', () => {
  it('--compare: each alternative runs as many processes as the largest WORKERS, and meets the default', () => {
    const options = parseOptions([
      '--workers',
      '1,2',
      '--compare',
      'pm2=/opt/pm2-runtime,minimal,nginx,metrics-off',
    ]);
    assert.deepEqual(options.compare, [
      { tool: 'pm2', path: '/opt/pm2-runtime' },
      { tool: 'minimal', path: undefined },
      { tool: 'nginx', path: undefined },
      { tool: 'metrics-off', path: undefined },
    ]);
    const specs = targetSpecs(
      options.workers ?? [],
      options.compare.map((c) => c.tool),
    );
    assert.deepEqual(
      specs.map((s) => `${s.id}:${s.kind}:${s.workers}`),
      [
        'single:single:1',
        'reuseport-1:cluster:1',
        'round-robin-1:cluster:1',
        'reuseport-2:cluster:2',
        'round-robin-2:cluster:2',
        'pm2-2:pm2:2',
        'minimal-2:minimal:2',
        'metrics-off-2:cluster:2',
        'nginx-2:nginx:2',
      ],
    );
    const pairs = comparisons(specs).map((p) => p.join(' vs '));
    for (const other of ['round-robin-2', 'pm2-2', 'minimal-2', 'metrics-off-2', 'nginx-2'])
      assert.ok(pairs.includes(`reuseport-2 vs ${other}`), `no reuseport-2 vs ${other} in ${pairs}`);
    assert.ok(!pairs.includes('metrics-off-2 vs round-robin-2'), pairs.join(', '));
    // Every row, alternatives included, has its ×single columns.
    for (const s of specs.filter((x) => x.id !== 'single'))
      assert.ok(pairs.includes(`${s.id} vs single`), `no ${s.id} vs single in ${pairs}`);
  });

  it('rejects what ab, taskset or the tools would fail on later, naming the option', () => {
    const rejects = (argv: string[], message: RegExp) =>
      assert.throws(
        () => parseOptions(argv),
        (err) => err instanceof OptionError && message.test(err.message),
        argv.join(' '),
      );
    rejects(['--requests', '3'], /--requests must be at least 4/);
    for (const list of ['1.5', '-1', '0x2', '1e1', '', '1,,2'])
      rejects([`--service-cpus=${list}`, '--load-cpus', '3'], /--service-cpus must be a CPU list/);
    rejects(['--service-cpus', '0-2', '--load-cpus', '2-3'], /must not share CPUs \(both have 2\)/);
    rejects(['--compare', 'pm2='], /pm2= needs a path/);
    rejects(['--compare', 'minimal=/x'], /minimal takes no path/);
    // --out "$DIR" with DIR unset: the current directory, unasked.
    for (const name of ['out', 'json', 'report'])
      rejects([`--${name}=`], new RegExp(`^--${name} needs a path, got ""$`));
    // One row each: the second would be dropped, or replace the first one's path, unseen.
    rejects(
      ['--compare', 'minimal,nginx,minimal'],
      /^--compare names minimal twice, got "minimal,nginx,minimal"$/,
    );
    rejects(['--compare', 'pm2=/a/pm2-runtime,pm2=/b/pm2-runtime'], /^--compare names pm2 twice/);
    rejects(['--report', 'a.json', '--quick', '--workers', '2'], /takes only --out, got --quick, --workers$/);
    // wrk would refuse, or drop connections (-t8 -c50 opens 48): another command than the one asked for.
    rejects(['--threads', '8', '--connections', '4'], /--threads must divide --connections \(4\)/);
    rejects(['--threads', '64'], /--threads must divide --connections \(50, the default\)/);
    rejects(['--threads', '8'], /--threads must divide --connections \(50, the default\)/);
    assert.equal(parseOptions(['--threads', '4', '--connections', '4']).threads, 4);
    assert.equal(parseOptions(['--threads', '5']).threads, 5);
    assert.equal(parseOptions(['--report', 'a.json', '--out', 'o']).report, 'a.json');
    assert.equal(parseOptions(['--requests', '4']).requests, 4);
    // Each bound is inclusive; rounds default to 3, and to 1 for the quick run.
    assert.equal(parseOptions(['--rounds', '100']).rounds, 100);
    rejects(['--rounds', '101'], /^--rounds must be an integer from 1 to 100, got "101"$/);
    rejects(['--rounds', '0'], /^--rounds must be an integer from 1 to 100, got "0"$/);
    assert.equal(parseOptions(['--seconds', '3600']).seconds, 3600);
    assert.equal(parseOptions([]).rounds, 3);
    assert.equal(parseOptions(['--quick']).rounds, 1);
    assert.equal(parseOptions(['--quick', '--rounds', '2']).rounds, 2);
    // Everything after the first "=" is the path.
    assert.deepEqual(parseOptions(['--compare', 'pm2=/opt/a=b/pm2-runtime']).compare, [
      { tool: 'pm2', path: '/opt/a=b/pm2-runtime' },
    ]);
    assert.deepEqual(parseOptions(['--service-cpus', '2,0-1', '--load-cpus', '3']).serviceCpus, [0, 1, 2]);
  });

  it('finds executables, not directories', () => {
    assert.equal(findExecutable('/tmp'), undefined);
    assert.equal(findExecutable('sh', '/tmp:/bin:/usr/bin')?.endsWith('/sh'), true);
  });

  it('--compare names what it takes when given something else', () => {
    assert.throws(
      () => parseOptions(['--compare', 'haproxy']),
      (err) =>
        err instanceof OptionError && /pm2, nginx .*minimal and metrics-off, got "haproxy"/.test(err.message),
    );
  });
});

describe('summaries', () => {
  it('a /metrics reading cut short or refused costs a run its spread only: it settles, as undefined', async (t) => {
    const METRICS = 'myservice_http_requests_total{slot="0",pid="7"} 12\n';
    const answers = [
      `HTTP/1.1 200 OK\r\nContent-Length: ${METRICS.length}\r\nConnection: close\r\n\r\n${METRICS}`,
      `HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n${METRICS.slice(0, 10)}`,
      'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    ];
    let n = 0;
    const server = createServer((socket) => {
      const answer = answers[n++] ?? '';
      socket.once('data', () => socket.end(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
    assert.deepEqual(await readRequestCounts(url), [{ slot: 0, pid: 7, requests: 12 }]);
    assert.equal(await readRequestCounts(url), undefined);
    assert.equal(await readRequestCounts(url), undefined);
    assert.equal(await readRequestCounts(undefined), undefined);
  });

  it('spread: per-worker deltas from two /metrics readings, 1.0 when even', () => {
    const metrics = (a: number, b: number) =>
      `# TYPE myservice_http_requests_total counter\nmyservice_http_requests_total{slot="1",pid="12"} ${b}\nmyservice_http_requests_total{slot="0",pid="11"} ${a}\n`;
    const deltas = countDeltas(parseRequestCounts(metrics(10, 20)), parseRequestCounts(metrics(60, 70)));
    assert.deepEqual(
      deltas?.map((d) => [d.slot, d.requests]),
      [
        [0, 50],
        [1, 50],
      ],
    );
    assert.equal(imbalance(deltas ?? []), 1);
    // Worker 12 was replaced by 13 in between: its requests left with it, so no spread is right.
    const replaced = parseRequestCounts(metrics(60, 70)).map((c) => (c.pid === 12 ? { ...c, pid: 13 } : c));
    assert.equal(countDeltas(parseRequestCounts(metrics(10, 20)), replaced), undefined);
    assert.equal(imbalance([{ slot: 0, pid: 1, requests: 0 }]), undefined);
  });

  it('context switches: of the main thread, voluntary and not; a process gone reads undefined', async () => {
    // The main thread's own counters, read just before and after: other threads (V8's, libuv's)
    // switch too, so a sum over every thread would land above the bracket.
    const mainThread = (): number =>
      [
        ...readFileSync(`/proc/${process.pid}/task/${process.pid}/status`, 'utf8').matchAll(
          /^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm,
        ),
      ].reduce((sum, m) => sum + Number(m[1]), 0);
    const before = mainThread();
    const read = readContextSwitches(process.pid) ?? Number.NaN;
    const after = mainThread();
    assert.ok(before <= read && read <= after, `${before} ≤ ${read} ≤ ${after}`);
    // The event loop blocks in epoll until a timer is due: that sleep is counted. One timer may not
    // block (it can be due at once when the loop's cached clock is behind), so wait for some.
    const deadline = Date.now() + 1_000;
    while ((readContextSwitches(process.pid) ?? 0) <= read && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok((readContextSwitches(process.pid) ?? 0) > read);
    assert.equal(readContextSwitches(2 ** 22 + 1), undefined);
  });

  it('scaling efficiency: req/s at k workers over k times one worker, per profile; unknown without one worker', () => {
    const summary = (target: string, profile: ProfileId, requestsPerSecond: number) =>
      summaryOf(target, profile, { runs: 3, requestsPerSecond });
    const rows = scaling(
      [
        summary('reuseport-1', 'wrk', 100),
        summary('reuseport-4', 'wrk', 340),
        summary('round-robin-4', 'wrk', 400),
        summary('reuseport-4', 'ab', 50),
      ],
      [1, 4],
    );
    assert.deepEqual(
      rows.map((r) => [r.profile, r.workers, r.requestsPerSecond, r.efficiency]),
      [
        ['wrk', 1, 100, 1],
        ['wrk', 4, 340, 0.85],
        ['ab', 1, undefined, undefined],
        ['ab', 4, 50, undefined],
      ],
    );
  });

  it("bench:rolls' tally: an error is a failed request too, counted once, and named by its code", () => {
    const tally = new RollTally();
    tally.answered(200);
    tally.answered(503);
    tally.failed(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    tally.failed(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    tally.failed('no code');
    assert.deepEqual(tally.result(), { ok: 1, failed: 4, errors: { ECONNRESET: 2, 'no code': 1 } });
  });

  it("peak RSS is read in bytes from VmHWM's kB (1024 bytes); a process gone reads undefined", () => {
    // The peak only grows (nothing resets it here), so the reading lies between two of its own.
    const vmHwm = () => Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
    const before = vmHwm();
    const bytes = readPeakRssBytes(process.pid) ?? Number.NaN;
    const after = vmHwm();
    assert.equal(bytes % 1024, 0, `${bytes}`);
    assert.ok(before * 1024 <= bytes && bytes <= after * 1024, `${before} kB ≤ ${bytes} B ≤ ${after} kB`);
    assert.equal(readPeakRssBytes(2 ** 22 + 1), undefined);
  });

  it('memory is shown in MiB (2^20 bytes)', () => {
    assert.deepEqual(
      [mebibytes(1_048_576), mebibytes(94 * 1_048_576), mebibytes(undefined)],
      ['1.0', '94.0', '—'],
    );
  });

  it('median ignores missing values; rounds rotate the order', () => {
    assert.equal(median([3, undefined, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), undefined);
    assert.deepEqual(roundOrder(['a', 'b', 'c'], 1), ['b', 'c', 'a']);
  });
});
