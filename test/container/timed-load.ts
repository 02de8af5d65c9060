/**
 * Continuous load that remembers when each request started and who answered it, so a test can
 * judge the requests sent before a fault apart from those sent after, and count the
 * (hostname, pid) pairs behind a load balancer.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';

const GREETING = /^Hello, Docker world from (.+) \(pid (\d+)\)\.\n$/;

export interface Outcome {
  /** performance.now() when the request was started. */
  readonly startedAt: number;
  readonly ok: boolean;
  readonly hostname?: string;
  readonly pid?: number;
  readonly error?: string;
}

export interface TimedLoadOptions {
  readonly concurrency?: number;
  /** A new TCP connection per request (`Connection: close`), as `ab` without -k does. */
  readonly newConnections?: boolean;
  /** Safety bound: lanes stop by themselves after this long. */
  readonly maxMs?: number;
}

export class TimedLoad {
  readonly outcomes: Outcome[] = [];
  #ok = 0;
  #running = true;
  #waiters: { target: number; resolve: () => void }[] = [];
  readonly #outcomeWaiters: (() => void)[] = [];
  readonly #lanes: Promise<void>[] = [];
  readonly #agent: Agent;

  constructor(url: string, options: TimedLoadOptions = {}) {
    const concurrency = options.concurrency ?? 4;
    const deadline = performance.now() + (options.maxMs ?? 120_000);
    // Keep-alive shorter than the service's 5 s, as a well-behaved client's is.
    this.#agent = new Agent({ connections: concurrency, keepAliveTimeout: 1_000, pipelining: 1 });
    const reset = options.newConnections ?? false;
    for (let i = 0; i < concurrency; i++) {
      this.#lanes.push(
        (async () => {
          while (this.#running && performance.now() < deadline) await this.#one(url, reset);
        })(),
      );
    }
  }

  async #one(url: string, reset: boolean): Promise<void> {
    const startedAt = performance.now();
    let outcome: Outcome;
    try {
      const res = await request(url, { dispatcher: this.#agent, reset });
      const text = await res.body.text();
      const m = GREETING.exec(text);
      outcome =
        res.statusCode === 200 && m
          ? { startedAt, ok: true, hostname: m[1] as string, pid: Number(m[2]) }
          : { startedAt, ok: false, error: `HTTP ${res.statusCode} ${text.slice(0, 60).trim()}` };
    } catch (err) {
      outcome = { startedAt, ok: false, error: String((err as NodeJS.ErrnoException).code ?? err) };
    }
    this.outcomes.push(outcome);
    for (const resolve of this.#outcomeWaiters.splice(0)) resolve();
    if (outcome.ok) {
      this.#ok++;
      this.#waiters = this.#waiters.filter((w) => {
        if (this.#ok < w.target) return true;
        w.resolve();
        return false;
      });
    }
  }

  /** Resolves once `n` more requests have succeeded (so a fault happens under real load). */
  waitForOk(n: number): Promise<void> {
    const target = this.#ok + n;
    return new Promise((resolve) => this.#waiters.push({ target, resolve }));
  }

  #next(): Promise<void> {
    return new Promise((resolve) => this.#outcomeWaiters.push(resolve));
  }

  /** Resolves once an answer satisfies `test`, or rejects after `ms`. */
  async waitFor(test: (o: Outcome) => boolean, ms: number, what: string): Promise<void> {
    const deadline = performance.now() + ms;
    for (let seen = 0; ; ) {
      for (; seen < this.outcomes.length; seen++) if (test(this.outcomes[seen] as Outcome)) return;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms: ${this.summary()}`);
      // Every request ends in an outcome, so wait for the next one, or for the deadline.
      await Promise.race([this.#next(), delay(left)]);
    }
  }

  async stop(): Promise<this> {
    this.#running = false;
    await Promise.all(this.#lanes);
    for (const w of this.#waiters) w.resolve();
    for (const resolve of this.#outcomeWaiters.splice(0)) resolve();
    await this.#agent.close();
    return this;
  }

  get ok(): number {
    return this.#ok;
  }

  get failures(): Outcome[] {
    return this.outcomes.filter((o) => !o.ok);
  }

  /** Distinct `hostname pid` pairs that answered. */
  pairs(): Set<string> {
    return new Set(this.outcomes.filter((o) => o.ok).map((o) => `${o.hostname} ${o.pid}`));
  }

  summary(): string {
    const failed = this.failures;
    const reasons = [...new Set(failed.map((o) => o.error))].join(', ');
    return `${this.#ok} ok, ${failed.length} failed${reasons ? ` (${reasons})` : ''}`;
  }
}
