/** The primary: forks workers and performs what the supervisor decides. It never serves a request. */
import type { SendHandle } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.js';
import { ownConnectionLimit } from '../connection-limit.js';
import { detectOwnCpuLimit } from '../cpu-count.js';
import { ExitCode } from '../exit-codes.js';
import { errorFields, log } from '../log.js';
import {
  isNativeHandle,
  isWorkerMessage,
  type NativeHandle,
  type PrimaryMessage,
  WORKER_CONFIG_ENV,
  WORKER_LISTENER_ENV,
  WORKER_SLOT_ENV,
  type WorkerStats,
} from '../protocol.js';
import { readOrUndefined } from '../read-file.js';
import type { SignalQueue } from '../signal-queue.js';
import { ResponseTotals, renderMetrics, type WorkerSample } from './metrics.js';
import { enableRequestMigration } from './migrate-req.js';
import { oomKillCount } from './oom-kills.js';
import { Supervisor } from './supervisor.js';
import { type Action, DEFAULT_BACKOFF, type SupervisorEvent } from './supervisor-events.js';

const STATS_TIMEOUT_MS = 1_000;

/**
 * Workers that boot at once, per CPU the process may use. A boot is only partly CPU-bound: on 2
 * CPUs, 32 workers were all ready after 3.1 s booting 1 per CPU at a time, 2.0 s at 4, 1.9 s all at
 * once; 256 all at once ran past BOOT_TIMEOUT_MS (exit 4), 4 per CPU were ready after 24 s.
 */
const BOOTS_PER_CPU = 4;

interface StatsCollection {
  readonly answers: Map<Worker, WorkerStats>;
  /** Resolves the collection once every asked worker has answered or exited. */
  readonly settle: () => void;
}

/** The supervisor's clock: monotonic, whole milliseconds (logged as durations). */
const monotonicNow = (): number => Math.round(performance.now());

/**
 * Runs this process as the primary until the supervisor decides to exit. `signals` has caught the
 * control signals since the process started; those that came before are acted on once the
 * workers are started.
 */
export function runPrimary(config: Config, signals: SignalQueue): void {
  const started = Date.now();
  const cpu = detectOwnCpuLimit();
  const count = config.workers === 'auto' ? cpu.workers : config.workers;
  const workersReason = config.workers === 'auto' ? cpu.reason : `${config.workersFrom}=${count}`;
  log('info', `starting ${count} worker${count === 1 ? '' : 's'}: ${workersReason}`, {
    workers: count,
    workersReason,
    config,
    node: process.version,
  });
  if (cpu.problem) {
    // Counted from CPUs alone, the workers may outnumber what a quota lets run.
    log('warn', `could not read the CPU quota, so WORKERS=auto counted CPUs only: ${cpu.problem}`, {
      workers: cpu.workers,
    });
  }
  /**
   * The connections each worker takes with `workers` sharing this process's limits; each warning
   * logged once. A memory limit's share changes with the worker count (SIGTTIN, SIGTTOU): the
   * workers that run are told, and new ones get it at fork.
   */
  const warned = new Set<string>();
  const limitFor = (workers: number): number => {
    const limit = ownConnectionLimit(config.http, workers);
    for (const warning of limit.warnings) {
      if (warned.has(warning)) continue;
      warned.add(warning);
      log('warn', warning, { maxConnections: limit.maxConnections, workers });
    }
    return limit.maxConnections;
  };
  let limitShared = { workers: count, maxConnections: limitFor(count) };
  const bootConcurrency = cpu.workers * BOOTS_PER_CPU;
  if (count > cpu.workers) {
    const batches = count > bootConcurrency ? `; ${bootConcurrency} boot at a time` : '';
    log(
      'warn',
      `${config.workersFrom}=${count} is more than the ${cpu.workers} WORKERS=auto starts here (${cpu.reason}): ` +
        `the extra ones add memory and CPU per request, not throughput${batches}`,
      { workers: count, cpus: cpu.workers },
    );
  }
  if (config.balance === 'reuseport') enableRequestMigration();

  // Must be set before the first fork; SCHED_NONE leaves accepting to the workers' own sockets.
  cluster.schedulingPolicy = config.balance === 'round-robin' ? cluster.SCHED_RR : cluster.SCHED_NONE;

  const supervisor = new Supervisor(
    {
      workers: count,
      bootTimeoutMs: config.bootTimeoutMs,
      bootConcurrency,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      drainTimeoutMs: config.drainTimeoutMs,
      shutdownDelayMs: config.shutdownDelayMs,
      crashLoopLimit: config.crashLoopLimit,
      backoff: DEFAULT_BACKOFF,
      oomKillsAtStart: oomKillCount(readOrUndefined),
    },
    monotonicNow,
  );
  const handles = new Map<number, Worker>();
  const slots = new Map<Worker, number>();
  /** Workers told to drain: they close their IPC channel as they leave. */
  const leaving = new Set<Worker>();
  /**
   * With reuseport, a copy of each slot's listening socket, which its worker sends when ready. A
   * roll's replacement takes it over, so a roll closes no listener: Linux can reset a connection
   * whose handshake ends on a listener as it closes, tcp_migrate_req or not (README, Rolling
   * restarts). Released as soon as no worker of the slot that stays is left, so that a crashed or
   * draining worker's queue moves to the others at once.
   */
  const listeners = new Map<number, NativeHandle>();
  function releaseListener(slot: number): void {
    for (const [w, s] of slots) if (s === slot && !leaving.has(w)) return;
    listeners.get(slot)?.close();
    listeners.delete(slot);
  }

  /**
   * Sends one of the primary's messages. A worker told to drain closes its channel as it leaves,
   * and what is sent to it before the primary has read that (a scrape's collect-stats) fails with
   * EPIPE: expected, so said at debug. Any other failure is the worker's 'error', as Node's own
   * messages' failures are.
   */
  function sendTo(worker: Worker, message: PrimaryMessage, handle?: NativeHandle): void {
    if (!worker.isConnected()) return;
    worker.send(message, handle as SendHandle, (err: Error | null) => {
      if (!err) return;
      if (leaving.has(worker) && (err as NodeJS.ErrnoException).code === 'EPIPE') {
        log('debug', 'a message to a leaving worker was not delivered', {
          slot: slots.get(worker),
          workerPid: worker.process.pid,
          type: message.type,
          code: 'EPIPE',
        });
        return;
      }
      worker.emit('error', err);
    });
  }
  let timer: NodeJS.Timeout | undefined;
  let nextStatsId = 1;
  /** Stats collections in progress: who has yet to answer, and what has come back. */
  const pendingStats = new Map<number, StatsCollection>();
  const responseTotals = new ResponseTotals();

  function dispatch(event: SupervisorEvent): void {
    const actions = supervisor.handle(event);
    // Before the actions: a worker SIGTTIN spawns must start with the new figure.
    shareLimits(supervisor.configured);
    perform(actions);
    clearTimeout(timer);
    // The tick is judged after this turn's I/O is read: a primary stopped alone (SIGSTOP) runs its
    // overdue timer first, before the heartbeats that queued meanwhile, which a short stop (not
    // taken for a pause) would otherwise leave unread when it judges them.
    const delay = Math.max(0, supervisor.nextTick() - monotonicNow());
    timer = setTimeout(() => setImmediate(() => dispatch({ type: 'tick' })), delay);
  }

  function perform(actions: readonly Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'spawn':
          spawnWorker(action.id, action.slot);
          break;
        case 'drain': {
          const w = handles.get(action.id);
          if (w) {
            leaving.add(w);
            sendTo(w, { type: 'drain', delayMs: action.delayMs, serviceStops: action.serviceStops });
            releaseListener(slots.get(w) ?? -1);
          }
          break;
        }
        case 'kill':
          killWorker(action.id);
          break;
        case 'log':
          log(action.level, action.msg, action.fields);
          break;
        case 'exit':
          process.exit(action.code);
      }
    }
  }

  function shareLimits(workers: number): void {
    if (workers === limitShared.workers) return;
    const maxConnections = limitFor(workers);
    const changed = maxConnections !== limitShared.maxConnections;
    limitShared = { workers, maxConnections };
    if (!changed) return;
    for (const worker of handles.values()) sendTo(worker, { type: 'connection-limit', maxConnections });
  }

  function spawnWorker(id: number, slot: number): void {
    let worker: Worker;
    try {
      worker = cluster.fork({
        [WORKER_CONFIG_ENV]: JSON.stringify({
          ...config,
          http: { ...config.http, maxConnections: limitShared.maxConnections },
        }),
        [WORKER_SLOT_ENV]: String(slot),
        [WORKER_LISTENER_ENV]: listeners.has(slot) ? '1' : '',
      });
    } catch (err) {
      // Node throws the spawn errors it does not emit (E2BIG, ENOMEM): a failed boot as well, told
      // after this event's actions, as an emitted one is.
      log('error', 'worker could not be started', { slot, ...errorFields(err) });
      process.nextTick(() => dispatch({ type: 'exit', id, code: null, signal: null }));
      return;
    }
    handles.set(id, worker);
    slots.set(worker, slot);
    responseTotals.add(id);
    worker.on('message', (message: unknown, handle: unknown) => {
      if (!isWorkerMessage(message)) return;
      switch (message.type) {
        case 'ready':
          if (isNativeHandle(handle)) {
            // Read after the worker was told to drain, or after its exit: a copy kept now would
            // hold a socket that no worker accepts on.
            if (!slots.has(worker) || leaving.has(worker)) {
              handle.close();
            } else {
              const previous = listeners.get(slot);
              listeners.set(slot, handle);
              // The same socket, through the copy the worker was given: one copy is enough.
              previous?.close();
            }
          }
          dispatch({ type: 'ready', id });
          break;
        case 'need-listener':
          // Without a copy (its worker is gone, which released it), the worker opens a socket.
          sendTo(worker, { type: 'listener' }, listeners.get(slot));
          break;
        case 'heartbeat':
          responseTotals.record(id, message.responses);
          dispatch({ type: 'heartbeat', id });
          break;
        case 'fatal':
          dispatch({ type: 'fatal', id, code: message.code, message: message.message });
          break;
        case 'stats': {
          log('debug', 'worker stats received', {
            slot,
            workerPid: worker.process.pid,
            requestId: message.requestId,
          });
          responseTotals.record(id, message.stats.responses);
          const collection = pendingStats.get(message.requestId);
          collection?.answers.set(worker, message.stats);
          collection?.settle();
          break;
        }
        case 'metrics-request':
          log('debug', 'worker asked for the metrics text', {
            slot,
            workerPid: worker.process.pid,
            requestId: message.requestId,
          });
          sharedMetrics().then(
            (text) => sendTo(worker, { type: 'metrics-response', requestId: message.requestId, text }),
            (err: unknown) => {
              log('error', 'metrics collection failed', errorFields(err));
              sendTo(worker, { type: 'metrics-response', requestId: message.requestId, text: null });
            },
          );
          break;
      }
    });
    let gone = false;
    const onGone = (code: number | null, signal: string | null): void => {
      if (gone) return;
      gone = true;
      handles.delete(id);
      slots.delete(worker);
      leaving.delete(worker);
      releaseListener(slot);
      responseTotals.retire(id);
      for (const collection of pendingStats.values()) collection.settle();
      // Read only for a SIGKILL: the OOM killer sends nothing else.
      const oomKills = signal === 'SIGKILL' ? oomKillCount(readOrUndefined) : undefined;
      dispatch({ type: 'exit', id, code, signal, oomKills });
    };
    // 'exit', not 'disconnect': the slot is free only once the process is gone.
    worker.on('exit', onGone);
    // Messages queued for a worker that is then killed (hung) all fail with EPIPE: say it once.
    let ipcErrorLogged = false;
    worker.on('error', (err) => {
      // A fork that failed (EAGAIN past a pids limit, EMFILE) has no pid and never exits: it is a
      // worker that failed before it was ready.
      if (worker.process.pid === undefined) {
        log('error', 'worker could not be started', { slot, ...errorFields(err) });
        // Node forgets it only on an exit or a disconnect, and after EMFILE neither comes.
        if (cluster.workers) delete cluster.workers[worker.id];
        onGone(null, null);
        return;
      }
      if (ipcErrorLogged) return;
      ipcErrorLogged = true;
      log('warn', 'worker IPC error (further ones from this worker not logged)', {
        slot,
        ...errorFields(err),
      });
    });
    // No pid: the fork failed, and its 'error' event follows.
    if (worker.process.pid !== undefined) dispatch({ type: 'spawned', id, pid: worker.process.pid });
  }

  function killWorker(id: number): void {
    // One already gone is left alone (ESRCH): its 'exit' event is on its way.
    handles.get(id)?.process.kill('SIGKILL');
  }

  let collecting: Promise<string> | undefined;
  /**
   * Scrapes that come while a collection runs share it: each collection asks every worker, so a
   * burst of scrapes on the public port would otherwise cost a burst times the workers.
   */
  function sharedMetrics(): Promise<string> {
    collecting ??= collectMetrics().finally(() => {
      collecting = undefined;
    });
    return collecting;
  }

  /** Asks every live worker for its stats; a worker that does not answer in time is left out. */
  async function collectMetrics(): Promise<string> {
    const requestId = nextStatsId++;
    const answers = new Map<Worker, WorkerStats>();
    const asked = [...handles.values()].filter((w) => w.isConnected());
    // Slots as they are now: one that answers and exits before the others have is still shown.
    const askedSlots = new Map(asked.map((w) => [w, slots.get(w) ?? -1]));
    // A worker leaves `slots` when it exits: it will not answer.
    const awaited = (): Worker[] => asked.filter((w) => !answers.has(w) && slots.has(w));
    await new Promise<void>((resolve) => {
      const timeout = setTimeout(() => {
        log('warn', 'workers did not answer a scrape in time: their series are left out of it', {
          workerPids: awaited().map((w) => w.process.pid),
          timeoutMs: STATS_TIMEOUT_MS,
        });
        resolve();
      }, STATS_TIMEOUT_MS);
      const settle = (): void => {
        if (awaited().length > 0) return;
        clearTimeout(timeout);
        resolve();
      };
      pendingStats.set(requestId, { answers, settle });
      for (const w of asked) sendTo(w, { type: 'collect-stats', requestId });
      settle();
    });
    pendingStats.delete(requestId);
    const samples: WorkerSample[] = [...answers].map(([w, stats]) => ({
      slot: askedSlots.get(w) ?? -1,
      pid: w.process.pid ?? 0,
      stats,
    }));
    return renderMetrics({
      supervisor: supervisor.snapshot(),
      workers: samples,
      responses: responseTotals.counts(),
      primaryStartSeconds: started / 1000,
      primaryRssBytes: process.memoryUsage.rss(),
    });
  }

  process.on('uncaughtException', (err) => {
    log('fatal', 'uncaught exception in the primary', errorFields(err));
    // A worker learns of its primary's end on its event loop: a hung or stopped one would stay,
    // holding the port, outside a container.
    for (const worker of handles.values()) worker.process.kill('SIGKILL');
    process.exit(ExitCode.internal);
  });
  dispatch({ type: 'start' });
  // After the start: a roll or a scaling signal needs workers, and a stop kills the starting ones.
  signals.forward((signal) => {
    // Sent to the whole process group (a shell job's), SIGTTIN and SIGTTOU stop a worker still in
    // Node's own start-up, before it can ignore them: continue every worker (the others ignore it).
    if (signal === 'SIGTTIN' || signal === 'SIGTTOU')
      for (const worker of handles.values()) worker.process.kill('SIGCONT');
    dispatch({ type: 'signal', signal });
  });
}
