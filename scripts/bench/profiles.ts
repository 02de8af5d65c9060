/** The load profiles: the post's `ab` run, the same with keep-alive, and many kept-alive connections. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SPARE_DESCRIPTORS } from '../../src/open-files.js';
import { findExecutable, run, scratchDir } from './commands.js';
import { type CpuPlan, pinPrefix } from './cpu-plan.js';
import { type LoadResult, parseAb, parseWrk } from './load-output.js';
import { printable } from './printable.js';

export type ProfileId = 'ab' | 'ab-k' | 'wrk';
export const PROFILE_IDS: readonly ProfileId[] = ['ab', 'ab-k', 'wrk'];

export interface LoadSettings {
  /** Requests per ab run (the post used 10,000). */
  readonly abRequests: number;
  readonly abConcurrency: number;
  readonly wrkSeconds: number;
  readonly wrkConnections: number;
  readonly wrkThreads: number;
}

export interface Profile {
  readonly id: ProfileId;
  readonly tool: 'ab' | 'wrk';
  /** The command as a user would type it, without the pinning prefix or URL. */
  readonly command: string;
  readonly argv: (url: string, csvPath: string) => string[];
}

/** How far past the run's end wrk's --timeout lies. */
const WRK_TIMEOUT_MARGIN_S = 10;

/**
 * wrk's threads for `connections`: at most `most`, and a divisor of `connections`, since wrk gives
 * each thread connections / threads and drops the remainder (-t8 -c50 opens 48).
 */
export function wrkThreadsFor(connections: number, most: number): number {
  let threads = Math.max(1, Math.min(most, connections));
  while (connections % threads !== 0) threads--;
  return threads;
}

/** ab's concurrency in every ab profile: the post's `ab -c 4`. */
export const AB_CONCURRENCY = 4;

/** The three profiles for these settings. */
export function profiles(s: LoadSettings): Profile[] {
  const ab = (keepAlive: boolean): string[] => [
    ...(keepAlive ? ['-k'] : []),
    '-c',
    String(s.abConcurrency),
    '-n',
    String(s.abRequests),
  ];
  // wrk counts an answer slower than its --timeout (2 s by default) as a "timeout" and leaves it
  // out of its latencies: an overloaded server's p99 would lose its slowest answers. Past the
  // run's end, every answer is measured.
  const wrk = [
    '-t',
    String(s.wrkThreads),
    '-c',
    String(s.wrkConnections),
    '-d',
    `${s.wrkSeconds}s`,
    '--timeout',
    `${s.wrkSeconds + WRK_TIMEOUT_MARGIN_S}s`,
  ];
  return [
    {
      id: 'ab',
      tool: 'ab',
      command: `ab ${ab(false).join(' ')}`,
      // -r: a receive error is counted, not fatal; -q: no progress lines.
      argv: (url, csv) => ['ab', '-q', '-r', '-e', csv, ...ab(false), url],
    },
    {
      id: 'ab-k',
      tool: 'ab',
      command: `ab ${ab(true).join(' ')}`,
      argv: (url, csv) => ['ab', '-q', '-r', '-e', csv, ...ab(true), url],
    },
    {
      id: 'wrk',
      tool: 'wrk',
      command: `wrk ${wrk.join(' ')}`,
      argv: (url) => ['wrk', ...wrk, '--latency', url],
    },
  ];
}

export type Tools = Readonly<Record<'ab' | 'wrk', string | undefined>>;

/** Where ab and wrk are, or undefined for each one that is missing. */
export function findTools(): Tools {
  return { ab: findExecutable('ab'), wrk: findExecutable('wrk') };
}

const PACKAGES: Readonly<Record<'ab' | 'wrk', string>> = { ab: 'apache2-utils', wrk: 'wrk' };

/** One line per missing load generator: the profiles left out, and the Debian/Ubuntu package that has it. */
export function missingTools(tools: Tools, all: readonly Profile[]): string[] {
  return (['ab', 'wrk'] as const)
    .filter((tool) => !tools[tool])
    .map((tool) => {
      const commands = all.filter((p) => p.tool === tool).map((p) => p.command);
      return `${commands.join(', ')}: ${tool} not found (Debian/Ubuntu: apt-get install ${PACKAGES[tool]})`;
    });
}

/** One directory for ab's CSV per bench process. */
let csvDir: string | undefined;

/** Runs one profile against url on the load generator's CPUs; rejects when the tool fails. */
export async function runProfile(
  profile: Profile,
  url: string,
  tools: Tools,
  plan: CpuPlan,
): Promise<LoadResult> {
  const executable = tools[profile.tool];
  if (!executable) throw new Error(`${profile.tool} is not installed`);
  csvDir ??= scratchDir('bench-ab-');
  const csv = join(csvDir, 'percentiles.csv');
  const [, ...args] = profile.argv(url, csv);
  const result = await run([...pinPrefix(plan, 'load'), executable, ...args]);
  if (result.code !== 0) {
    throw new Error(
      `${profile.command} exited with ${result.code}: ${printable((result.stderr || result.stdout).trim())}`,
    );
  }
  return profile.tool === 'ab'
    ? parseAb(result.stdout, await readFile(csv, 'utf8'))
    : parseWrk(result.stdout);
}

/**
 * Pure: why wrk's connections cannot all be opened under this open-files limit (the bench's,
 * which Node raised to the hard limit and every server and wrk inherit), or undefined. wrk holds
 * one descriptor per connection and so does the single-process server; a connection over the
 * limit counts as a failed request, which is not the server's doing.
 */
export function descriptorProblem(
  connections: number,
  openFilesLimit: number | undefined,
): string | undefined {
  if (openFilesLimit === undefined || connections + SPARE_DESCRIPTORS <= openFilesLimit) return undefined;
  return `--connections ${connections} needs about ${connections + SPARE_DESCRIPTORS} open files in wrk and in the single process, and the limit here is ${openFilesLimit}: raise the hard limit (ulimit -Hn; docker run --ulimit nofile=N:N) or use fewer connections`;
}
