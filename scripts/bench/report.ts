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
  /** What makes some figures mean less than they seem (absent in older reports). */
  readonly warnings?: readonly string[];
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

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * Pure: why a parsed JSON value is not a report --report can draw, or undefined. Checks what the
 * table and the chart read first; a file that passes but is broken deeper fails when drawn.
 */
export function notABenchReport(value: unknown): string | undefined {
  if (!isObject(value)) return 'not a JSON object';
  if (value.schema !== 1) return `schema ${JSON.stringify(value.schema)}`;
  const meta = value.meta;
  if (!isObject(meta)) return 'no "meta" object';
  if (typeof meta.date !== 'string' || typeof meta.rounds !== 'number' || !Array.isArray(meta.skipped))
    return 'its "meta" lacks the date, rounds or skipped';
  if (!isObject(meta.cpuPlan)) return 'no "meta.cpuPlan" object';
  for (const list of ['profiles', 'targets', 'summaries', 'ratios', 'scaling', 'samples'])
    if (!Array.isArray(value[list])) return `no "${list}" list`;
  return undefined;
}
