/**
 * `npm run bench:burst`: how many new clients can wait to be accepted while every worker is busy.
 * Stops the workers (SIGSTOP, as a long pause would), opens N connections, counts the handshakes
 * the kernel completed within PAUSE_MS, resumes the workers and times the last answer. Compares
 * the service (listen backlog: the kernel's maximum, net.core.somaxconn) with the minimal cluster
 * (Node's default backlog, 511). A client whose handshake did not fit in the accept queue is not
 * refused: its SYN is dropped and retried after about a second.
 *
 *   node dist/scripts/accept-burst.js [--connections 2000] [--workers 2] [--rounds 3]
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { BURST_USAGE, parseBurstOptions } from './bench/burst-options.js';
import type { CpuPlan } from './bench/cpu-plan.js';
import { renderTable } from './bench/format.js';
import { launch } from './bench/launch.js';
import { parseOrExit } from './bench/options.js';
import { processTree } from './bench/proc-stats.js';
import { isStopping, stopOnSignals, tolerateClosedOutput } from './bench/stop-signals.js';
import { median } from './bench/summary.js';
import type { TargetSpec } from './bench/targets.js';

const PAUSE_MS = 500;
const SETTLE_MS = 15_000;

/** Workers the burst has stopped now: an interrupted run must continue them, or they stay stopped. */
let stoppedWorkers: readonly number[] = [];

function continueWorkers(): void {
  const pids = stoppedWorkers;
  stoppedWorkers = [];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

interface Burst {
  /** Handshakes completed while the workers were stopped. */
  readonly queued: number;
  readonly answered: number;
  readonly failed: number;
  /** From the first connect to the last greeting. */
  readonly lastAnswerMs: number;
}

/** N clients connect at once and each sends one request; resolves once every one settled. */
async function burst(port: number, connections: number, workers: readonly number[]): Promise<Burst> {
  stoppedWorkers = workers;
  for (const pid of workers) process.kill(pid, 'SIGSTOP');
  const start = performance.now();
  let connected = 0;
  let answered = 0;
  let failed = 0;
  let lastAnswerMs = 0;
  const settled = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`clients still waiting after ${SETTLE_MS} ms`)),
      SETTLE_MS,
    );
    const settle = (): void => {
      if (answered + failed < connections) return;
      clearTimeout(timer);
      resolve();
    };
    for (let i = 0; i < connections; i++) {
      const socket = connect({ port, host: '127.0.0.1' });
      let text = '';
      socket.setEncoding('latin1');
      socket.on('connect', () => {
        connected++;
        socket.write('GET / HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n');
      });
      socket.on('data', (chunk: string) => {
        text += chunk;
      });
      socket.on('close', () => {
        if (text.startsWith('HTTP/1.1 200 ')) {
          answered++;
          lastAnswerMs = performance.now() - start;
        } else failed++;
        settle();
      });
      socket.on('error', () => {});
    }
  });
  await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
  const queued = connected;
  continueWorkers();
  await settled;
  return { queued, answered, failed, lastAnswerMs };
}

async function main(): Promise<void> {
  const { help, connections, workers, rounds } = parseOrExit(parseBurstOptions, BURST_USAGE);
  if (help) {
    process.stdout.write(BURST_USAGE);
    return;
  }
  const plan: CpuPlan = { pinned: false, service: [], load: [], reason: 'not pinned' };
  const specs: TargetSpec[] = [
    {
      id: `reuseport-${workers}`,
      label: `service, reuseport ×${workers}`,
      kind: 'cluster',
      workers,
      balance: 'reuseport',
    },
    {
      id: `minimal-${workers}`,
      label: `minimal reuseport ×${workers} (backlog 511)`,
      kind: 'minimal',
      workers,
    },
  ];
  const results = new Map<string, Burst[]>(specs.map((s) => [s.id, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const spec of specs) {
      const target = await launch(spec, { plan });
      try {
        const serving = processTree(target.pid).filter((pid) => pid !== target.pid);
        const result = await burst(Number(new URL(target.url).port), connections, serving);
        results.get(spec.id)?.push(result);
        process.stderr.write(`round ${round}, ${spec.label}: ${JSON.stringify(result)}\n`);
      } finally {
        await target.stop();
      }
    }
  }
  const somaxconn = readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim();
  process.stdout.write(
    `\n${connections} clients connect while ${workers} workers are stopped for ${PAUSE_MS} ms ` +
      `(net.core.somaxconn ${somaxconn}); medians of ${rounds} rounds\n`,
  );
  const med = (id: string, pick: (b: Burst) => number) =>
    String(Math.round(median((results.get(id) ?? []).map(pick)) ?? 0));
  process.stdout.write(
    `${renderTable(
      [
        { title: 'server', left: true, value: (s: TargetSpec) => s.label },
        { title: 'queued in the pause', value: (s: TargetSpec) => med(s.id, (b) => b.queued) },
        { title: 'answered', value: (s: TargetSpec) => med(s.id, (b) => b.answered) },
        { title: 'failed', value: (s: TargetSpec) => med(s.id, (b) => b.failed) },
        { title: 'last answer ms', value: (s: TargetSpec) => med(s.id, (b) => b.lastAnswerMs) },
      ],
      specs,
    )}\n`,
  );
}

tolerateClosedOutput();
// A stop signal continues the stopped workers first: a stopped process handles no SIGTERM.
stopOnSignals(continueWorkers);
// Once stopping, what fails in the rounds (a refused start, a stopped server) is expected: the handler exits.
await main().catch((err: unknown) => {
  if (!isStopping()) throw err;
});
