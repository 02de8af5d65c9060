/** Renders the Prometheus text exposition format (0.0.4) from every worker's stats and the supervisor's. */
import type { WorkerStats } from '../protocol.js';
import type { RestartCause, SupervisorSnapshot } from './supervisor-events.js';

export interface WorkerSample {
  readonly slot: number;
  readonly pid: number;
  readonly stats: WorkerStats;
}

export interface MetricsInput {
  readonly supervisor: SupervisorSnapshot;
  readonly workers: readonly WorkerSample[];
  /** Responses by status class over every worker since start, from ResponseTotals. */
  readonly responses: readonly number[];
  readonly primaryStartSeconds: number;
  readonly primaryRssBytes: number;
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const CAUSES: readonly RestartCause[] = ['crash', 'hung', 'boot', 'roll', 'scale'];

/**
 * The service's responses by status class, kept by the primary across worker lifetimes. A sum
 * over the workers running now would fall whenever one exits, and Prometheus reads any fall of a
 * counter as a reset. So an exited worker's last reported counts stay in the total; what it
 * served after its last report is lost with it. Keyed by the supervisor's worker id (one per fork).
 */
export class ResponseTotals {
  readonly #exited = CLASSES.map(() => 0);
  readonly #live = new Map<number, readonly number[]>();

  /** A worker was forked: it has served nothing yet. */
  add(id: number): void {
    this.#live.set(id, []);
  }

  /** A worker's latest counts (they only grow); ignored once it has exited. */
  record(id: number, responses: readonly number[]): void {
    if (this.#live.has(id)) this.#live.set(id, responses);
  }

  /** A worker exited: its last reported counts join the exited workers' total. */
  retire(id: number): void {
    const last = this.#live.get(id);
    this.#live.delete(id);
    last?.forEach((n, i) => {
      this.#exited[i] = (this.#exited[i] ?? 0) + n;
    });
  }

  /** Responses by class over every worker, live and exited: never less than an earlier call gave. */
  counts(): number[] {
    return this.#exited.map((n, i) => {
      let sum = n;
      for (const live of this.#live.values()) sum += live[i] ?? 0;
      return sum;
    });
  }
}

class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: readonly [string, number][]): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.#lines.push(`${name}${labels} ${formatValue(value)}`);
  }

  toString(): string {
    return `${this.#lines.join('\n')}\n`;
  }
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}

function workerLabels(w: WorkerSample, extra = ''): string {
  return `{slot="${w.slot}",pid="${w.pid}"${extra}}`;
}

/** Pure: the /metrics body. The same input gives the same text, whichever worker asked. */
export function renderMetrics(input: MetricsInput): string {
  const out = new Exposition();
  const workers = [...input.workers].sort((a, b) => a.slot - b.slot || a.pid - b.pid);
  out.family(
    'myservice_http_requests_total',
    'counter',
    'Requests answered by each worker, refusals after parsing included (probes and scrapes, GET or HEAD, and what the HTTP parser refused in a request head with 400, 408 or 431 excluded).',
    workers.map((w) => [workerLabels(w), w.stats.requests]),
  );
  out.family(
    'myservice_connections_dropped_total',
    'counter',
    'Connections each worker accepted and closed at once, unanswered: past MAX_CONNECTIONS, or past what the open-files or memory limit can hold.',
    workers.map((w) => [workerLabels(w), w.stats.droppedConnections]),
  );
  out.family(
    'myservice_pipelining_floods_total',
    'counter',
    'Connections each worker closed for pipelining too deep: a read holding more than 64 request lines (answered 429 unless a response was under way), or more than 8 scrapes waiting for their answers.',
    workers.map((w) => [workerLabels(w), w.stats.pipeliningFloods]),
  );
  out.family(
    'myservice_worker_max_connections',
    'gauge',
    'Connections each worker takes before it drops new ones: MAX_CONNECTIONS, or less where the open-files or memory limit cannot hold that many (a memory limit is shared by the workers configured).',
    workers.map((w) => [workerLabels(w), w.stats.maxConnections]),
  );
  out.family(
    'myservice_http_responses_total',
    'counter',
    'Responses by status class since the primary started, exited workers included (up to their last report).',
    CLASSES.map((c, i) => [`{code="${c}"}`, input.responses[i] ?? 0]),
  );
  out.family(
    'myservice_worker_restarts_total',
    'counter',
    'Workers replaced since start, by cause (crash, hung, boot failure, rolling restart); scale: workers added by SIGTTIN or removed by SIGTTOU.',
    CAUSES.map((c) => [`{cause="${c}"}`, input.supervisor.restarts[c]]),
  );
  out.family(
    'myservice_worker_oom_kills_total',
    'counter',
    "Worker exits taken for the memory cgroup's OOM killer since start (docker run --memory, a Kubernetes memory limit); most also count as a restart by crash or boot, not those of a worker draining or stopping.",
    [['', input.supervisor.oomKills]],
  );
  out.family('myservice_workers_configured', 'gauge', 'Workers the primary aims to run.', [
    ['', input.supervisor.configured],
  ]);
  out.family('myservice_workers', 'gauge', 'Worker processes by state.', [
    ...(['starting', 'listening', 'stopping'] as const).map((state): [string, number] => [
      `{state="${state}"}`,
      input.supervisor.workers.filter((w) => w.state === state).length,
    ]),
  ]);
  out.family(
    'myservice_worker_resident_memory_bytes',
    'gauge',
    'Resident set size of each worker.',
    workers.map((w) => [workerLabels(w), w.stats.rssBytes]),
  );
  out.family(
    'myservice_worker_heap_used_bytes',
    'gauge',
    'V8 heap in use by each worker.',
    workers.map((w) => [workerLabels(w), w.stats.heapUsedBytes]),
  );
  out.family(
    'myservice_worker_event_loop_delay_seconds',
    'gauge',
    'Event-loop delay percentiles of each worker since it started: how late its 20 ms sampling timer fired (perf_hooks.monitorEventLoopDelay).',
    workers.flatMap((w): [string, number][] => [
      [workerLabels(w, ',quantile="0.5"'), w.stats.loopDelayP50Seconds],
      [workerLabels(w, ',quantile="0.99"'), w.stats.loopDelayP99Seconds],
    ]),
  );
  out.family('process_start_time_seconds', 'gauge', 'Start time of the primary since the Unix epoch.', [
    ['', input.primaryStartSeconds],
  ]);
  out.family('process_resident_memory_bytes', 'gauge', 'Resident set size of the primary.', [
    ['', input.primaryRssBytes],
  ]);
  return out.toString();
}
