/** Everything one bench run produced, as written to JSON and rendered as text and SVG. */
import type { RunSample } from './measure.js';
import type { ProfileId } from './profiles.js';
import type { Ratio, Scaling, Summary } from './summary.js';
import type { TargetSpec } from './targets.js';

export interface BenchMeta {
  readonly date: string;
  readonly command: string;
  readonly quick: boolean;
  readonly rounds: number;
  readonly host: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly kernel: string;
  readonly node: string;
  readonly cpuPlan: {
    readonly pinned: boolean;
    readonly service: string;
    readonly load: string;
    readonly reason: string;
  };
  readonly tools: Readonly<Record<string, string | undefined>>;
  /**
   * The default configuration (what `docker run` gets: WORKERS=auto, BALANCE=reuseport) when it
   * was measured; absent when defaultWorkers was not among the WORKERS values.
   */
  readonly defaultTarget?: string | undefined;
  /** How many workers WORKERS=auto starts on the service's CPUs (absent in older reports). */
  readonly defaultWorkers?: number;
  readonly skipped: readonly string[];
}

export interface BenchReport {
  readonly schema: 1;
  readonly meta: BenchMeta;
  readonly profiles: readonly { readonly id: ProfileId; readonly command: string }[];
  readonly targets: readonly (TargetSpec & { readonly readyMs: number | undefined })[];
  readonly summaries: readonly Summary[];
  readonly ratios: readonly Ratio[];
  readonly scaling: readonly Scaling[];
  readonly samples: readonly RunSample[];
}
