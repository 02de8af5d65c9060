/** The bench's command line, validated once; each error names the option and the value given. */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { parseCpuList } from '../../src/cpu-list.js';
import { formatCpuList } from './cpu-plan.js';
import { AB_CONCURRENCY } from './profiles.js';
import type { CompareTool } from './targets.js';

export interface BenchOptions {
  readonly help: boolean;
  readonly quick: boolean;
  readonly rounds: number;
  readonly workers: readonly number[] | undefined;
  /** Alternatives to measure, each with an explicit path or found on PATH. */
  readonly compare: readonly { readonly tool: CompareTool; readonly path: string | undefined }[];
  readonly json: string | undefined;
  readonly out: string | undefined;
  readonly serviceCpus: readonly number[] | undefined;
  readonly loadCpus: readonly number[] | undefined;
  readonly requests: number | undefined;
  readonly seconds: number | undefined;
  readonly connections: number | undefined;
  readonly threads: number | undefined;
  /** A saved JSON report to render again (table and SVG) instead of measuring. */
  readonly report: string | undefined;
}

export const USAGE = `Usage: npm run bench -- [options]   (node dist/scripts/bench.js [options], where node is 26;
       in the bundle of npm run bench:bundle: myservice-bench/bench.sh [options])

  --quick                 a few-second smoke run: 1 round, short loads, results in a temp dir
  --rounds N              interleaved rounds, medians reported (default 3, quick 1)
  --workers 1,2,4,8       WORKERS values to compare (default 1..N, N = the service's CPUs, at least 2; past 4
                          powers of two and N; and what WORKERS=auto starts there, the "(default)" row, which is
                          only marked if measured)
  --compare pm2,nginx     also measure pm2-runtime -i N and nginx (found on PATH, or pm2=/path/to/pm2-runtime;
                          one that is not found is an error),
                          minimal: a hand-written node:cluster of N reusePort workers with no supervision,
                          and/or metrics-off: reuseport ×N with METRICS=off
  --out DIR               where bench.json and bench.svg go (default: bench-results/ in the project, git-ignored,
                          or in the bundle's folder; quick: a temp dir), created and checked before measuring; the reference results
                          in scripts/results are written only with --out scripts/results
  --json FILE             the JSON report's path (overrides --out for it; without --out, the SVG goes beside
                          it: x.json, x.svg)
  --service-cpus LIST     pin the servers to these CPUs (with --load-cpus; needs taskset; default: halves from 4 CPUs)
  --load-cpus LIST        pin ab and wrk to these CPUs
  --requests N            requests per ab run (default 10000, quick 500)
  --seconds N             duration of each wrk run (default 5, quick 1)
  --connections N         wrk connections (default 50), a multiple of --threads
  --threads N             wrk threads, a divisor of --connections (default: as many as the load
                          generator's CPUs when pinned, fewer where that does not divide, else 1)
  --report FILE           print the table of a saved bench.json and redraw its SVG beside it (x.json, x.svg) or
                          in --out; takes no other option
`;

/** wrk's connections when --connections is not given. */
export const DEFAULT_CONNECTIONS = 50;

/** A CLI option the bench cannot accept. */
export class OptionError extends Error {
  readonly code = 'ERR_BENCH_OPTION';
  override name = 'OptionError';
}

/** An integer option from 1 to max, undefined when not given. */
export function positive(name: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new OptionError(`--${name} must be an integer from 1 to ${max}, got "${value}"`);
  }
  return n;
}

function workerList(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const list = value.split(',').map((v) => positive('workers', v.trim(), 1024) as number);
  return [...new Set(list)].sort((a, b) => a - b);
}

function cpuList(name: string, value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const cpus = parseCpuList(value);
  if (!cpus) throw new OptionError(`--${name} must be a CPU list such as "0-3,8", got "${value}"`);
  return cpus;
}

function compareList(value: string | undefined): BenchOptions['compare'] {
  if (value === undefined || value === '') return [];
  const list = value.split(',').map((item): BenchOptions['compare'][number] => {
    // The path is all after the first "=": a folder name may hold another.
    const at = item.indexOf('=');
    const tool = at < 0 ? item : item.slice(0, at);
    const path = at < 0 ? undefined : item.slice(at + 1);
    const takesPath = tool === 'pm2' || tool === 'nginx';
    if (!takesPath && tool !== 'minimal' && tool !== 'metrics-off') {
      throw new OptionError(
        `--compare takes pm2, nginx (optionally tool=path), minimal and metrics-off, got "${item}"`,
      );
    }
    if (path !== undefined && (!takesPath || path === '')) {
      throw new OptionError(
        takesPath
          ? `--compare ${tool}= needs a path after "="`
          : `--compare ${tool} takes no path, got "${item}"`,
      );
    }
    return { tool, path };
  });
  // Each is one row: a second entry would be dropped, or replace the first one's path, unseen.
  const tools = list.map((c) => c.tool);
  const twice = tools.find((tool, i) => tools.indexOf(tool) !== i);
  if (twice !== undefined) throw new OptionError(`--compare names ${twice} twice, got "${value}"`);
  return list;
}

export type OptionValues = Record<string, string | boolean | undefined>;

/** parseArgs, strict and without positionals; its errors (some of several lines) as one-line OptionErrors. */
export function parseStrict(argv: readonly string[], options: ParseArgsOptionsConfig): OptionValues {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false })
      .values as OptionValues;
  } catch (err) {
    throw new OptionError((err as Error).message.replace(/\s*\n\s*/g, ' '));
  }
}

/** A command line a script cannot take: the error on one line, then the usage, exit 2. */
export function parseOrExit<T>(parse: (argv: readonly string[]) => T, usage: string): T {
  try {
    return parse(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof OptionError)) throw err;
    process.stderr.write(`${err.message}\n\n${usage}`);
    process.exit(2);
  }
}

/** Parses argv (without node and the script). */
export function parseOptions(argv: readonly string[]): BenchOptions {
  const values = parseStrict(argv, {
    help: { type: 'boolean', short: 'h' },
    quick: { type: 'boolean' },
    rounds: { type: 'string' },
    workers: { type: 'string' },
    compare: { type: 'string' },
    json: { type: 'string' },
    out: { type: 'string' },
    'service-cpus': { type: 'string' },
    'load-cpus': { type: 'string' },
    requests: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string' },
    threads: { type: 'string' },
    report: { type: 'string' },
  });
  const str = (name: string) => values[name] as string | undefined;
  // An empty path (--out "$DIR" with DIR unset) would resolve to the current directory.
  const path = (name: string): string | undefined => {
    const value = str(name);
    if (value === '') throw new OptionError(`--${name} needs a path, got ""`);
    return value;
  };
  // --report draws a saved run: an option that shapes a measurement would be silently ignored.
  const measuring = Object.keys(values).filter((name) => !['help', 'report', 'out'].includes(name));
  if (values.report !== undefined && measuring.length > 0) {
    throw new OptionError(
      `--report redraws a saved run and takes only --out, got ${measuring.map((name) => `--${name}`).join(', ')}`,
    );
  }
  const quick = values.quick === true;
  const serviceCpus = cpuList('service-cpus', str('service-cpus'));
  const loadCpus = cpuList('load-cpus', str('load-cpus'));
  if ((serviceCpus === undefined) !== (loadCpus === undefined)) {
    throw new OptionError('--service-cpus and --load-cpus go together');
  }
  const shared = serviceCpus?.filter((cpu) => loadCpus?.includes(cpu)) ?? [];
  if (shared.length > 0) {
    throw new OptionError(
      `--service-cpus and --load-cpus must not share CPUs (both have ${formatCpuList(shared)}): pinning is there to keep them apart`,
    );
  }
  const requests = positive('requests', str('requests'), 10_000_000);
  if (requests !== undefined && requests < AB_CONCURRENCY) {
    throw new OptionError(
      `--requests must be at least ${AB_CONCURRENCY}, ab's concurrency, got "${str('requests')}"`,
    );
  }
  const connections = positive('connections', str('connections'), 100_000);
  const threads = positive('threads', str('threads'), 1024);
  // wrk gives each thread connections / threads and drops the remainder (-t8 -c50 opens 48), and
  // refuses fewer connections than threads: anything else would measure another command than asked.
  const wrkConnections = connections ?? DEFAULT_CONNECTIONS;
  if (threads !== undefined && wrkConnections % threads !== 0) {
    throw new OptionError(
      `--threads must divide --connections (${connections ?? `${DEFAULT_CONNECTIONS}, the default`}): wrk gives each thread as many connections and drops the rest, got "${threads}"`,
    );
  }
  return {
    help: values.help === true,
    quick,
    rounds: positive('rounds', str('rounds'), 100) ?? (quick ? 1 : 3),
    workers: workerList(str('workers')),
    compare: compareList(str('compare')),
    json: path('json'),
    out: path('out'),
    serviceCpus,
    loadCpus,
    requests,
    seconds: positive('seconds', str('seconds'), 3600),
    connections,
    threads,
    report: path('report'),
  };
}
