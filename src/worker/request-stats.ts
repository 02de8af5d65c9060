import { type ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { WorkerStats } from '../protocol.js';

/** How often the event-loop delay timer ticks, in milliseconds (50 wake-ups a second: cheap enough to leave on). */
export const LOOP_DELAY_RESOLUTION_MS = 20;

/**
 * The delay beyond the resolution: the histogram holds the time between two ticks of its
 * repeating libuv timer (`ELDHistogram::OnInterval` → `RecordDelta` in Node's src/node_perf.cc),
 * so an idle loop records the resolution itself. libuv's millisecond loop clock can fire a tick a
 * little early, hence the clamp.
 */
function delaySeconds(intervalNs: number): number {
  return Math.max(0, intervalNs - LOOP_DELAY_RESOLUTION_MS * 1e6) / 1e9;
}

/** Counters the request handler bumps: plain integers, so the hot path pays an increment. */
export class RequestStats {
  requests = 0;
  droppedConnections = 0;
  /** Connections closed for pipelining too deep (a flooding read, too many scrapes waiting). */
  pipeliningFloods = 0;
  /** The server whose maxConnections is reported: read at each snapshot, as the primary may change it. */
  limitOf: { readonly maxConnections: number } | undefined;
  /** Responses by status class: index 0 = 1xx … 4 = 5xx. */
  readonly responses = [0, 0, 0, 0, 0];
  #loopDelay: ELDHistogram | undefined;

  countResponse(status: number): void {
    const index = Math.floor(status / 100) - 1;
    if (index >= 0 && index < 5) this.responses[index] = (this.responses[index] ?? 0) + 1;
  }

  /** Starts sampling event-loop delay (perf_hooks.monitorEventLoopDelay). */
  watchEventLoop(): void {
    this.#loopDelay ??= monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
    this.#loopDelay.enable();
  }

  snapshot(): WorkerStats {
    const memory = process.memoryUsage();
    const h = this.#loopDelay;
    return {
      requests: this.requests,
      droppedConnections: this.droppedConnections,
      pipeliningFloods: this.pipeliningFloods,
      maxConnections: this.limitOf?.maxConnections ?? 0,
      responses: [...this.responses],
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      // Percentiles commute with subtracting a constant, so these are the delay's own percentiles.
      loopDelayP50Seconds: h && h.count > 0 ? delaySeconds(h.percentile(50)) : 0,
      loopDelayP99Seconds: h && h.count > 0 ? delaySeconds(h.percentile(99)) : 0,
    };
  }
}
