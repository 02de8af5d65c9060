/** Continuous load from undici lanes, counting every request that did not get a full greeting. */
import { Agent, request } from 'undici';
import { greetingPidIn } from './greeting.js';
import { takeSentAt, trackedRequest } from './sent-at.js';

export interface LoadOptions {
  readonly concurrency?: number;
  /** A new TCP connection per request, as `ab` without -k does. */
  readonly newConnections?: boolean;
  /** Safety bound: lanes stop by themselves after this long. */
  readonly maxMs?: number;
}

export class Load {
  ok = 0;
  failed = 0;
  /** When the last full greeting came back (performance.now()). */
  lastOkAt = 0;
  readonly errors: string[] = [];
  /**
   * Each failed request's error, when it was started (its connect, for a new connection, came
   * right after), when its head was sent (performance.now(); undefined: never) and when it failed.
   */
  readonly failures: {
    readonly startedAt: number;
    readonly sentAt: number | undefined;
    readonly failedAt: number;
    readonly error: string;
  }[] = [];
  readonly pids = new Map<number, number>();
  #running = true;
  #waiters: { target: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  readonly #lanes: Promise<void>[] = [];
  readonly #agent: Agent;

  constructor(url: string, options: LoadOptions = {}) {
    const concurrency = options.concurrency ?? 4;
    const deadline = Date.now() + (options.maxMs ?? 60_000);
    // Bounded timeouts: a request the service lost must fail the test, not hang it.
    this.#agent = new Agent({
      connections: concurrency,
      keepAliveTimeout: 1_000,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const reset = options.newConnections ?? false;
    for (let i = 0; i < concurrency; i++) {
      this.#lanes.push(
        (async () => {
          while (this.#running && Date.now() < deadline) await this.#one(url, reset);
        })(),
      );
    }
    // Lanes past their safety bound: nothing will meet a waiter any more.
    Promise.all(this.#lanes).then(() => this.#rejectWaiters('the load stopped'));
  }

  async #one(url: string, reset: boolean): Promise<void> {
    const { id, headers } = trackedRequest();
    const startedAt = performance.now();
    const fail = (error: string): void => {
      this.failed++;
      this.errors.push(error);
      this.failures.push({ startedAt, sentAt: takeSentAt(id), failedAt: performance.now(), error });
    };
    try {
      const res = await request(url, { dispatcher: this.#agent, reset, headers });
      const text = await res.body.text();
      const pid = greetingPidIn(text);
      if (res.statusCode === 200 && pid !== undefined) {
        this.ok++;
        this.lastOkAt = performance.now();
        this.#waiters = this.#waiters.filter((w) => {
          if (this.ok < w.target) return true;
          w.resolve();
          return false;
        });
        this.pids.set(pid, (this.pids.get(pid) ?? 0) + 1);
      } else {
        fail(`HTTP ${res.statusCode} ${text.slice(0, 40)}`);
      }
    } catch (err) {
      fail(String((err as NodeJS.ErrnoException).code ?? err));
    } finally {
      takeSentAt(id);
    }
  }

  /**
   * Resolves once `n` more requests have succeeded (so a fault happens under real load); rejects
   * with the summary if that takes longer than `ms` or the load stops first.
   */
  waitForOk(n: number, ms = 20_000): Promise<void> {
    const target = this.ok + n;
    return new Promise((resolve, reject) => {
      const waiter = {
        target,
        resolve: (): void => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error): void => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${n} requests did not succeed within ${ms} ms: ${this.summary()}`));
      }, ms).unref();
      this.#waiters.push(waiter);
    });
  }

  #rejectWaiters(why: string): void {
    for (const w of this.#waiters)
      w.reject(new Error(`${why} before enough requests succeeded: ${this.summary()}`));
    this.#waiters = [];
  }

  async stop(): Promise<this> {
    if (!this.#running) return this;
    this.#running = false;
    await Promise.all(this.#lanes);
    this.#rejectWaiters('the load was stopped');
    await this.#agent.close();
    return this;
  }

  summary(): string {
    return `${this.ok} ok, ${this.failed} failed${this.errors.length ? ` (${[...new Set(this.errors)].join(', ')})` : ''}`;
  }
}

/** One GET on a fresh connection; returns the greeting's worker pid. */
export async function greetingPid(url: string): Promise<number> {
  const res = await request(url, { reset: true });
  const text = await res.body.text();
  const pid = greetingPidIn(text);
  if (res.statusCode !== 200 || pid === undefined)
    throw new Error(`unexpected reply ${res.statusCode}: ${text}`);
  return pid;
}
