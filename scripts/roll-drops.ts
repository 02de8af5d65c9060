/**
 * Measures requests that fail while SIGHUP rolls the workers of BALANCE=reuseport under load,
 * with net.ipv4.tcp_migrate_req at 0 and at 1 (a roll hands each slot's socket to its
 * replacement and closes none, so the sysctl should change nothing). Each setting runs
 * in a fresh network namespace (unshare -n, root needed) as an unprivileged user, so the
 * service cannot set the sysctl itself and the host's value is left alone.
 *
 *   node dist/scripts/roll-drops.js [--rolls 10] [--rounds 3] [--scale]
 *
 * --scale adds a worker and removes one per cycle instead, which closes a listening socket: what
 * the sysctl is still for.
 *
 * A stop signal to the outer run reaches the inner one (unshare and sh exec it), which stops the
 * service: both stop what they started, as the bench does.
 */
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { Service } from '../test/helpers/service.js';
import { run, spawnTracked } from './bench/commands.js';
import { AS_NOBODY, rollsPrerequisiteMissing } from './bench/drop-root.js';
import { OptionError, parseOrExit } from './bench/options.js';
import { printable } from './bench/printable.js';
import { type RollResult, RollTally } from './bench/roll-tally.js';
import { waitForCount } from './bench/roll-wait.js';
import { parseRollsOptions, ROLLS_USAGE } from './bench/rolls-options.js';
import { isStopping, stopOnSignals, tolerateClosedOutput } from './bench/stop-signals.js';
import { median } from './bench/summary.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const PORT = 5000;
/** Deadlines: for the workers to get ready, for each roll, and for the whole run in its namespace. */
const READY_MS = 30_000;
const ROLL_MS = 60_000;
const runMs = (rolls: number): number => READY_MS + rolls * ROLL_MS + 30_000;

/** What one cycle does: a SIGHUP roll, or with --scale a worker added and then removed. */
function cycleName(scale: boolean): string {
  return scale ? 'scale-downs (SIGTTIN, then SIGTTOU)' : 'SIGHUP rolls';
}

/** Inside the namespace: start the service, load it with new connections, roll or scale it, count. */
async function measure(rolls: number, scale: boolean): Promise<RollResult> {
  const env = {
    PATH: process.env.PATH ?? '',
    PORT: String(PORT),
    HOST: '127.0.0.1',
    WORKERS: '2',
    BALANCE: 'reuseport',
  };
  // stderr piped, not inherited: a service that outlived us would hold the outer run's pipe open.
  // Tracked: a stop signal (the outer run's, or its deadline's) stops it before this process exits.
  const proc = spawnTracked(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const service = new Service(proc, PORT);
  let running = true;
  const lanes: Promise<void>[] = [];
  const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  const tally = new RollTally();
  try {
    await waitForCount(service, 'worker ready', 2, READY_MS);
    for (let lane = 0; lane < 4; lane++) {
      lanes.push(
        (async () => {
          while (running) {
            try {
              const res = await request(`http://127.0.0.1:${PORT}/`, { dispatcher: agent, reset: true });
              await res.body.text();
              tally.answered(res.statusCode);
            } catch (err) {
              tally.failed(err);
            }
          }
        })(),
      );
    }
    for (let i = 1; i <= rolls; i++) {
      if (scale) {
        service.signal('SIGTTIN');
        await waitForCount(service, 'worker ready', 2 + i, ROLL_MS);
        service.signal('SIGTTOU');
        await waitForCount(service, 'worker stopped', i, ROLL_MS);
      } else {
        service.signal('SIGHUP');
        await waitForCount(service, 'rolling restart complete', i, ROLL_MS);
      }
    }
  } finally {
    running = false;
    await Promise.all(lanes);
    await agent.close();
    await service.stop();
  }
  return tally.result();
}

/** A run in its namespace that failed or gave no result: exit 1, with what it printed. */
class RunFailed extends Error {}

/** One run in a fresh network namespace with tcp_migrate_req at `setting`: the inner run's counts. */
async function runInNamespace(setting: string, rolls: number, scale: boolean): Promise<RollResult> {
  // Run as nobody, so the service cannot change the sysctl.
  const script =
    `ip link set lo up && echo ${setting} > /proc/sys/net/ipv4/tcp_migrate_req && ` +
    `exec ${AS_NOBODY.join(' ')} "$0" "$1" --inside --rolls ${rolls}${scale ? ' --scale' : ''}`;
  // unshare (no --fork) and sh exec: the child's pid becomes the inner node's, so the SIGTERM of
  // the deadline or of a stop signal reaches it, and it stops the service.
  const inner = await run(['unshare', '-n', 'sh', '-c', script, process.execPath, SELF], {
    timeoutMs: runMs(rolls),
  });
  if (inner.timedOut)
    throw new RunFailed(
      `tcp_migrate_req=${setting}: no result within ${runMs(rolls)} ms; it printed:\n${printable(inner.stderr)}`,
    );
  if (inner.code !== 0)
    throw new RunFailed(
      `tcp_migrate_req=${setting}: the run failed; it printed:\n${printable(inner.stderr)}`,
    );
  return JSON.parse(inner.stdout.trim().split('\n').at(-1) ?? '{}') as RollResult;
}

async function main(): Promise<void> {
  const { help, rolls, rounds, scale, inside } = parseOrExit(parseRollsOptions, ROLLS_USAGE);
  if (help) {
    process.stdout.write(ROLLS_USAGE);
    return;
  }
  if (inside) {
    process.stdout.write(`${JSON.stringify(await measure(rolls, scale))}\n`);
    return;
  }
  const missing = rollsPrerequisiteMissing(process.execPath, SELF);
  if (missing !== undefined) throw new OptionError(missing);
  const rows: Record<string, RollResult[]> = { '0': [], '1': [] };
  for (let round = 0; round < rounds; round++) {
    for (const setting of ['0', '1']) {
      const result = await runInNamespace(setting, rolls, scale);
      rows[setting]?.push(result);
      process.stdout.write(
        `round ${round + 1} tcp_migrate_req=${setting}: ${result.ok} ok, ${result.failed} failed ${JSON.stringify(result.errors)}\n`,
      );
    }
  }
  process.stdout.write(
    `\n${rolls} ${cycleName(scale)} of 2 workers under 4 lanes of new-connection load (BALANCE=reuseport)\n`,
  );
  process.stdout.write('tcp_migrate_req | failed requests per run (median) | all runs\n');
  for (const [setting, results] of Object.entries(rows)) {
    const failed = results.map((r) => r.failed);
    process.stdout.write(
      `${setting.padEnd(15)} | ${String(median(failed)).padEnd(32)} | ${failed.join(', ')}\n`,
    );
  }
}

tolerateClosedOutput();
stopOnSignals();
// Once stopping, what fails in the runs (a refused start, a stopped service) is expected: the handler exits.
await main().catch((err: unknown) => {
  if (isStopping()) return;
  // What the machine lacks (exit 2, as a bad option) or a run that failed (1), as thrown above;
  // anything else is a defect here and keeps its stack.
  const ours = err instanceof OptionError || err instanceof RunFailed;
  process.stderr.write(
    `bench:rolls: ${ours ? err.message : err instanceof Error ? err.stack : String(err)}\n`,
  );
  process.exitCode = err instanceof OptionError ? 2 : 1;
});
