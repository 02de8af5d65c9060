import { type ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { WorkerStats } from '../protocol.js';

/** Counters the request handler bumps: plain integers, so the hot path pays an increment. */
export class RequestStats {
  requests = 0;
  /** Responses by status class: index 0 = 1xx … 4 = 5xx. */
  readonly responses = [0, 0, 0, 0, 0];
  #loopDelay: ELDHistogram | undefined;

  countResponse(status: number): void {
    const index = Math.floor(status / 100) - 1;
    if (index >= 0 && index < 5) this.responses[index] = (this.responses[index] ?? 0) + 1;
  }

  /** Starts sampling event-loop delay (perf_hooks, 20 ms resolution: cheap enough to leave on). */
  watchEventLoop(): void {
    this.#loopDelay ??= monitorEventLoopDelay({ resolution: 20 });
    this.#loopDelay.enable();
  }

  snapshot(): WorkerStats {
    const memory = process.memoryUsage();
    const h = this.#loopDelay;
    return {
      requests: this.requests,
      responses: [...this.responses],
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      loopDelayP50Seconds: h && h.count > 0 ? h.percentile(50) / 1e9 : 0,
      loopDelayP99Seconds: h && h.count > 0 ? h.percentile(99) / 1e9 : 0,
    };
  }
}
