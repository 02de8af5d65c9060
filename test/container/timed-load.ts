/**
 * Continuous load that remembers when each request started and who answered it, so a test can
 * judge the requests sent before a fault apart from those sent after, and count the
 * (hostname, pid) pairs behind a load balancer.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { parseGreeting } from '../helpers/greeting.js';
import { takeSentAt, trackedRequest } from '../helpers/sent-at.js';

export interface Outcome {
  /** performance.now() when the request was started. */
  readonly startedAt: number;
  /** performance.now() when its head was sent; undefined: never sent. */
  readonly sentAt: number | undefined;
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
  /** Every lane has finished: no outcome will come. */
  #ended = false;
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
    Promise.all(this.#lanes).then(() => {
      this.#ended = true;
      for (const resolve of this.#outcomeWaiters.splice(0)) resolve();
    });
  }

  async #one(url: string, reset: boolean): Promise<void> {
    const startedAt = performance.now();
    const { id, headers } = trackedRequest();
    let outcome: Outcome;
    try {
      const res = await request(url, { dispatcher: this.#agent, reset, headers });
      const text = await res.body.text();
      const greeting = parseGreeting(text);
      const sentAt = takeSentAt(id);
      outcome =
        res.statusCode === 200 && greeting
          ? { startedAt, sentAt, ok: true, ...greeting }
          : { startedAt, sentAt, ok: false, error: `HTTP ${res.statusCode} ${text.slice(0, 60).trim()}` };
    } catch (err) {
      const sentAt = takeSentAt(id);
      outcome = { startedAt, sentAt, ok: false, error: String((err as NodeJS.ErrnoException).code ?? err) };
    }
    this.outcomes.push(outcome);
    if (outcome.ok) this.#ok++;
    for (const resolve of this.#outcomeWaiters.splice(0)) resolve();
  }

  /** Resolves once `n` more requests have succeeded (so a fault happens under real load); rejects as waitFor does. */
  waitForOk(n: number, ms = 60_000): Promise<void> {
    const target = this.#ok + n;
    return this.waitFor(() => this.#ok >= target, ms, `${n} more successful answers`);
  }

  #next(): Promise<void> {
    return new Promise((resolve) => this.#outcomeWaiters.push(resolve));
  }

  /** Resolves once an answer satisfies `test`; rejects after `ms`, or once the load has stopped. */
  async waitFor(test: (o: Outcome) => boolean, ms: number, what: string): Promise<void> {
    const deadline = performance.now() + ms;
    // One timer per wait, cancelled when it ends: it must not hold the test process open.
    const cancel = new AbortController();
    const expired = delay(ms, undefined, { signal: cancel.signal }).catch(() => {});
    try {
      for (let seen = 0; ; ) {
        for (; seen < this.outcomes.length; seen++) if (test(this.outcomes[seen] as Outcome)) return;
        if (performance.now() >= deadline) throw new Error(`no ${what} within ${ms} ms: ${this.summary()}`);
        if (this.#ended) throw new Error(`no ${what} before the load stopped: ${this.summary()}`);
        // Every request ends in an outcome, so wait for the next one, the load's end or the deadline.
        await Promise.race([this.#next(), expired]);
      }
    } finally {
      cancel.abort();
    }
  }

  async stop(): Promise<this> {
    this.#running = false;
    await Promise.all(this.#lanes);
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
