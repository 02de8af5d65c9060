import { NO_FAILURES } from '../../scripts/bench/load-output.js';
import type { ProfileId } from '../../scripts/bench/profiles.js';
import type { Summary } from '../../scripts/bench/summary.js';

/** A bench summary of one configuration and profile with no failures; `figures` sets the rest. */
export function summaryOf(target: string, profile: ProfileId, figures: Partial<Summary> = {}): Summary {
  return {
    target,
    profile,
    runs: 1,
    errors: 0,
    requestsPerSecond: undefined,
    p50Ms: undefined,
    p99Ms: undefined,
    cpuMicrosPerRequest: undefined,
    failed: 0,
    failures: NO_FAILURES,
    lengthMismatches: 0,
    peakRssPrimaryBytes: undefined,
    peakRssWorkerBytes: undefined,
    imbalance: undefined,
    ...figures,
  };
}
