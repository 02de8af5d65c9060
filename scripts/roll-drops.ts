/**
 * Measures what net.ipv4.tcp_migrate_req changes for BALANCE=reuseport: requests that fail
 * while SIGHUP rolls the workers under load, with the sysctl at 0 and at 1. Each setting runs
 * in a fresh network namespace (unshare -n, root needed) as an unprivileged user, so the
 * service cannot set the sysctl itself and the host's value is left alone.
 *
 *   node dist/scripts/roll-drops.js [--rolls 10] [--rounds 3]
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { median } from './bench/summary.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const PORT = 5000;

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
  const service = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: { msg: string; count: number; resolve: () => void }[] = [];
  let buffer = '';
  service.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) lines.push((JSON.parse(line) as { msg: string }).msg);
    for (const w of waiters.splice(0)) {
      if (lines.filter((m) => m === w.msg).length >= w.count) w.resolve();
      else waiters.push(w);
    }
  });
  const seen = (msg: string, count: number): Promise<void> =>
    new Promise((resolve) => waiters.push({ msg, count, resolve }));

  await seen('worker ready', 2);
  const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  const result = { ok: 0, failed: 0, errors: {} as Record<string, number> };
  let running = true;
  const lanes = Array.from({ length: 4 }, async () => {
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
  });
  for (let i = 1; i <= rolls; i++) {
    service.kill('SIGHUP');
    await seen('rolling restart complete', i);
  }
  running = false;
  await Promise.all(lanes);
  await agent.close();
  service.kill('SIGTERM');
  await once(service, 'exit');
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
      const run = spawnSync('unshare', ['-n', 'sh', '-c', script, process.execPath, SELF], {
        encoding: 'utf8',
      });
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
