/** Entry point: the primary or a worker, by node:cluster's role; `--healthcheck` for Docker. */
import cluster from 'node:cluster';
import { type Config, ConfigError, parseConfig } from './config.js';
import { ExitCode } from './exit-codes.js';
import { errorFields, log, setLogLevel } from './log.js';
import { CONTROL_SIGNALS, WORKER_CONFIG_ENV, WORKER_SLOT_ENV } from './protocol.js';

async function main(): Promise<void> {
  if (cluster.isWorker) {
    // Signals are the primary's to act on. One sent to the whole process group (Ctrl-C, a closed
    // terminal, systemd's control-group stop, kill -- -PGID) reaches the workers too: acting on it
    // here as well would skip SHUTDOWN_DELAY_MS on SIGTERM and kill every worker at once on SIGHUP.
    // First thing, before the worker's modules load: until then, the signal would end the worker.
    for (const signal of CONTROL_SIGNALS) process.on(signal, () => {});
    const { runWorker } = await import('./worker/worker.js');
    // The primary parsed and validated the environment once; workers take its result.
    const config = JSON.parse(process.env[WORKER_CONFIG_ENV] ?? '{}') as Config;
    setLogLevel(config.logLevel);
    runWorker(config, Number(process.env[WORKER_SLOT_ENV] ?? 0));
    return;
  }
  const healthcheck = process.argv.includes('--healthcheck');
  let config: Config;
  try {
    config = parseConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log('fatal', err.message, { code: err.code });
    // Docker reserves a health check's exit code 2: unhealthy is 1, whatever the reason.
    process.exit(healthcheck ? 1 : ExitCode.config);
  }
  setLogLevel(config.logLevel);
  if (healthcheck) {
    const { runHealthcheck } = await import('./healthcheck.js');
    process.exit(await runHealthcheck(config));
  }
  if (config.balance === 'reuseport') {
    // Round-robin needs no probe: its primary binds without SO_REUSEPORT itself.
    const { probeListen } = await import('./primary/port-probe.js');
    const err = await probeListen(config.host, config.port);
    if (err) {
      const { code } = err as NodeJS.ErrnoException;
      log('fatal', `cannot serve: ${err.message}`, { code, exitCode: ExitCode.bind });
      process.exit(ExitCode.bind);
    }
  }
  const { runPrimary } = await import('./primary/primary.js');
  runPrimary(config);
}

main().catch((err: unknown) => {
  log('fatal', 'failed to start', errorFields(err));
  process.exit(ExitCode.internal);
});
