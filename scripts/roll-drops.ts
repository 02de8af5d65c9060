/**
 * Measures what net.ipv4.tcp_migrate_req changes for BALANCE=reuseport: requests that fail
 * while SIGHUP rolls the workers under load, with the sysctl at 0 and at 1. Each setting runs
 * in a fresh network namespace (unshare -n, root needed) as an unprivileged user, so the
 * service cannot set the sysctl itself and the host's value is left alone.
 *
 *   node dist/scripts/roll-drops.js [--rolls 10] [--rounds 3]
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { Service } from '../test/helpers/service.js';
import { waitForCount } from './bench/roll-wait.js';
import { median } from './bench/summary.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const PORT = 5000;
/** Deadlines: for the workers to get ready, for each roll, and for the whole run in its namespace. */
const READY_MS = 30_000;
const ROLL_MS = 60_000;
const runMs = (rolls: number): number => READY_MS + rolls * ROLL_MS + 30_000;

interface Result {
  readonly ok: number;
  readonly failed: number;
  readonly errors: Record<string, number>;
}

/** Inside the namespace: start the service, load it with new connections, roll it, count. */
async function measure(rolls: number): Promise<Result> {
  const env = {
    PATH: process.env.PATH ?? '',
    PORT: String(PORT),
    HOST: '127.0.0.1',
    WORKERS: '2',
    BALANCE: 'reuseport',
  };
  // stderr piped, not inherited: a service that outlived us would hold the outer spawnSync's pipe open.
  const proc = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const service = new Service(proc, PORT);
  // The outer run's deadline sends SIGTERM: stop the service first, or it would outlive this process.
  process.once('SIGTERM', () => {
    void service.stop(5_000).finally(() => process.exit(1));
  });
  let running = true;
  const lanes: Promise<void>[] = [];
  const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  const result = { ok: 0, failed: 0, errors: {} as Record<string, number> };
  try {
    await waitForCount(service, 'worker ready', 2, READY_MS);
    for (let lane = 0; lane < 4; lane++) {
      lanes.push(
        (async () => {
          while (running) {
            try {
              const res = await request(`http://127.0.0.1:${PORT}/`, { dispatcher: agent, reset: true });
              await res.body.text();
              if (res.statusCode === 200) result.ok++;
              else result.failed++;
            } catch (err) {
              result.failed++;
              const code = String((err as NodeJS.ErrnoException).code ?? err);
              result.errors[code] = (result.errors[code] ?? 0) + 1;
            }
          }
        })(),
      );
    }
    for (let i = 1; i <= rolls; i++) {
      service.signal('SIGHUP');
      await waitForCount(service, 'rolling restart complete', i, ROLL_MS);
    }
  } finally {
    running = false;
    await Promise.all(lanes);
    await agent.close();
    await service.stop();
  }
  return result;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rolls: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      inside: { type: 'boolean', default: false },
    },
  });
  const rolls = Number(values.rolls);
  const rounds = Number(values.rounds);
  if (![rolls, rounds].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error('--rolls and --rounds take positive integers');
  }
  if (values.inside) {
    process.stdout.write(`${JSON.stringify(await measure(rolls))}\n`);
    return;
  }
  const rows: Record<string, Result[]> = { '0': [], '1': [] };
  for (let round = 0; round < rounds; round++) {
    for (const setting of ['0', '1']) {
      // A fresh namespace per run; setpriv drops root so the service cannot change the sysctl.
      const script =
        `ip link set lo up && echo ${setting} > /proc/sys/net/ipv4/tcp_migrate_req && ` +
        `exec setpriv --reuid 65534 --regid 65534 --clear-groups "$0" "$1" --inside --rolls ${rolls}`;
      // unshare and sh exec: the timeout's SIGTERM reaches the inner node, which stops the service.
      const run = spawnSync('unshare', ['-n', 'sh', '-c', script, process.execPath, SELF], {
        encoding: 'utf8',
        timeout: runMs(rolls),
        killSignal: 'SIGTERM',
      });
      if (run.error && (run.error as NodeJS.ErrnoException).code === 'ETIMEDOUT')
        throw new Error(`tcp_migrate_req=${setting}: no result within ${runMs(rolls)} ms: ${run.stderr}`);
      if (run.status !== 0)
        throw new Error(`run failed (root and unshare needed): ${run.stderr || run.error}`);
      const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Result;
      rows[setting]?.push(result);
      process.stdout.write(
        `round ${round + 1} tcp_migrate_req=${setting}: ${result.ok} ok, ${result.failed} failed ${JSON.stringify(result.errors)}\n`,
      );
    }
  }
  process.stdout.write(
    `\n${rolls} SIGHUP rolls of 2 workers under 4 lanes of new-connection load (BALANCE=reuseport)\n`,
  );
  process.stdout.write('tcp_migrate_req | failed requests per run (median) | all runs\n');
  for (const [setting, results] of Object.entries(rows)) {
    const failed = results.map((r) => r.failed);
    process.stdout.write(
      `${setting.padEnd(15)} | ${String(median(failed)).padEnd(32)} | ${failed.join(', ')}\n`,
    );
  }
}

await main();
