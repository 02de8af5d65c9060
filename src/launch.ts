/** The primary or a worker, by node:cluster's role; `--healthcheck` for Docker. Run by main.ts. */
import cluster from 'node:cluster';
import { bindFailure } from './bind-failure.js';
import { type Config, ConfigError, parseArguments, parseConfig, USAGE } from './config.js';
import { ExitCode } from './exit-codes.js';
import { errorFields, log, setLogLevel } from './log.js';
import { WORKER_CONFIG_ENV, WORKER_LISTENER_ENV, WORKER_SLOT_ENV } from './protocol.js';
import type { SignalQueue } from './signal-queue.js';

async function main(signals: SignalQueue): Promise<void> {
  if (cluster.isWorker && process.env[WORKER_CONFIG_ENV] === undefined) {
    // A worker of another program's cluster (PM2's cluster mode forks its apps so): no config
    // comes, and a worker cannot fork workers of its own.
    log(
      'fatal',
      "myservice was started as a node:cluster worker of another program (NODE_UNIQUE_ID is set, as PM2's cluster mode does); it runs its own cluster: start it directly, or under PM2 in fork mode, with WORKERS for the count",
    );
    process.exit(ExitCode.config);
  }
  if (cluster.isWorker) {
    // Signals are the primary's to act on. One sent to the whole process group (Ctrl-C, a closed
    // terminal, systemd's control-group stop, kill -- -PGID) reaches the workers too: acting on it
    // here as well would skip SHUTDOWN_DELAY_MS on SIGTERM and kill every worker at once on SIGHUP.
    // Caught since main.ts's first line, and dropped.
    signals.forward(() => {});
    const { runWorker } = await import('./worker/worker.js');
    // The primary parsed and validated the environment once; workers take its result.
    const config = JSON.parse(process.env[WORKER_CONFIG_ENV] ?? '{}') as Config;
    setLogLevel(config.logLevel);
    runWorker(config, Number(process.env[WORKER_SLOT_ENV] ?? 0), process.env[WORKER_LISTENER_ENV] === '1');
    return;
  }
  const args = process.argv.slice(2);
  // Docker reserves a health check's exit code 2: unhealthy is 1, whatever the reason.
  const configExitCode = args.includes('--healthcheck') ? 1 : ExitCode.config;
  const mode = loadOrExit(() => parseArguments(args), configExitCode);
  if (mode.help) {
    process.stdout.write(USAGE);
    process.exit(ExitCode.ok);
  }
  if (mode.healthcheck) {
    // A control signal ends the check, as unhealthy.
    signals.forward(() => process.exit(1));
    const config = loadConfig(1);
    const { runHealthcheck } = await import('./healthcheck.js');
    process.exit(await runHealthcheck(config));
  }
  // Signals caught during start-up are acted on once the supervisor runs.
  const config = loadConfig(ExitCode.config);
  if (config.balance === 'reuseport') {
    // Round-robin needs no probe: its primary binds without SO_REUSEPORT itself.
    const { probeListen } = await import('./primary/port-probe.js');
    const err = await probeListen(config.host, config.port);
    if (err) {
      const { code } = err as NodeJS.ErrnoException;
      log('fatal', `cannot serve: ${bindFailure(err, config.host, config.port)}`, {
        code,
        exitCode: ExitCode.bind,
      });
      process.exit(ExitCode.bind);
    }
  }
  const { runPrimary } = await import('./primary/primary.js');
  runPrimary(config, signals);
}

/** The validated configuration; on an invalid one, logs what is wrong and exits with `exitCode`. */
function loadConfig(exitCode: number): Config {
  const config = loadOrExit(() => parseConfig(), exitCode);
  setLogLevel(config.logLevel);
  return config;
}

/** `parse()`'s result; on a ConfigError, logs it and exits with `exitCode`. */
function loadOrExit<T>(parse: () => T, exitCode: number): T {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log('fatal', err.message, { code: err.code });
    process.exit(exitCode);
  }
}

/** Runs this process's role; `signals` has caught the control signals since main.ts's first line. */
export async function launch(signals: SignalQueue): Promise<void> {
  try {
    await main(signals);
  } catch (err) {
    log('fatal', 'failed to start', errorFields(err));
    process.exit(ExitCode.internal);
  }
}
