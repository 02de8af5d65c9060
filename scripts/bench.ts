/**
 * `npm run bench`: starts the service in every configuration (and a single-process baseline),
 * loads each with ab and wrk in interleaved rounds, and reports medians as a table, JSON and SVG.
 * See USAGE in bench/options.ts; the README explains the figures.
 */
import { readFile, realpath } from 'node:fs/promises';
import { cpus, hostname, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { detectCpuLimit } from '../src/cpu-count.js';
import { openFilesLimit } from '../src/open-files.js';
import { readOrUndefined } from '../src/read-file.js';
import { renderSvg } from './bench/chart-svg.js';
import { keepScratchDir, run, stopChildren } from './bench/commands.js';
import { findCompared } from './bench/compare-tools.js';
import {
  allowedCpus,
  type CoreSiblings,
  type CpuPlan,
  formatCpuList,
  hasTaskset,
  oversubscriptionWarning,
  planCpus,
  quotaWarning,
  readCoreSiblings,
  sharedCoreWarning,
} from './bench/cpu-plan.js';
import {
  type BenchOptions,
  DEFAULT_CONNECTIONS,
  OptionError,
  parseOptions,
  parseOrExit,
  USAGE,
} from './bench/options.js';
import { prepareFile, prepareOutputs, svgBeside, writeWhole } from './bench/output-files.js';
import {
  AB_CONCURRENCY,
  profiles as buildProfiles,
  descriptorProblem,
  findTools,
  type LoadSettings,
  missingTools,
  type Tools,
  wrkThreadsFor,
} from './bench/profiles.js';
import { type BenchReport, notABenchReport } from './bench/report.js';
import { renderText } from './bench/report-text.js';
import { runRounds } from './bench/run-rounds.js';
import {
  INTERRUPTED_EXIT_CODE,
  isStopping,
  stopOnSignals,
  tolerateClosedOutput,
} from './bench/stop-signals.js';
import { comparisons, median, ratios, scaling, summarize } from './bench/summary.js';
import { defaultTargetId, defaultWorkerCounts, serviceDefaultWorkers, targetSpecs } from './bench/targets.js';

/** "path (first line of its version output)", for the JSON: which binaries produced the figures. */
async function toolVersion(path: string | undefined, flag: string): Promise<string | undefined> {
  if (!path) return undefined;
  const result = await run([path, flag]).catch(() => undefined);
  const version = (result?.stdout || result?.stderr)?.split('\n')[0]?.trim();
  return version ? `${path} (${version})` : path;
}

/** pm2-runtime's version from its package.json (running it would start a daemon-less pm2 for nothing). */
async function pm2Version(runtime: string): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(join(dirname(await realpath(runtime)), '../package.json'), 'utf8'));
    return `${runtime} (pm2 ${pkg.version})`;
  } catch {
    return runtime;
  }
}

/** The CPU plan for the options; CPU lists it cannot honour are an OptionError. */
function cpuPlanFor(options: BenchOptions, allowed: readonly number[], siblings: CoreSiblings): CpuPlan {
  for (const [name, cpus] of [
    ['--service-cpus', options.serviceCpus],
    ['--load-cpus', options.loadCpus],
  ] as const) {
    const outside = cpus?.filter((cpu) => !allowed.includes(cpu)) ?? [];
    if (outside.length > 0) {
      throw new OptionError(
        `${name}: CPUs ${formatCpuList(outside)} are not among the ones this process may use (${formatCpuList(allowed)})`,
      );
    }
  }
  try {
    return planCpus({
      allowed,
      siblings,
      taskset: hasTaskset(),
      serviceOverride: options.serviceCpus,
      loadOverride: options.loadCpus,
    });
  } catch (err) {
    throw new OptionError((err as Error).message);
  }
}

async function main(options: BenchOptions): Promise<number> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const allowed = allowedCpus();
  const siblings = readCoreSiblings(allowed);
  const plan = cpuPlanFor(options, allowed, siblings);
  // The service's own WORKERS=auto rule on its CPUs: the default is measured unless --workers leaves it out.
  const defaultWorkers = serviceDefaultWorkers(plan.service, readOrUndefined, cpus().length);
  const workerCounts =
    options.workers ??
    [...new Set([...defaultWorkerCounts(plan.service.length), defaultWorkers])].sort((a, b) => a - b);
  const tools: Tools = findTools();
  const connections = options.connections ?? DEFAULT_CONNECTIONS;
  const settings: LoadSettings = {
    abRequests: options.requests ?? (options.quick ? 500 : 10_000),
    abConcurrency: AB_CONCURRENCY,
    wrkSeconds: options.seconds ?? (options.quick ? 1 : 5),
    wrkConnections: connections,
    // parseOptions refused an explicit --threads that does not divide the connections.
    wrkThreads: options.threads ?? wrkThreadsFor(connections, plan.pinned ? plan.load.length : 1),
  };
  const all = buildProfiles(settings);
  const skipped = missingTools(tools, all);
  const profiles = all.filter((p) => tools[p.tool]);
  const warm = buildProfiles({
    ...settings,
    abRequests: options.quick ? 200 : 2_000,
    wrkSeconds: 2,
  }).filter((p) => tools[p.tool] && (p.id === 'ab' || (p.id === 'wrk' && !options.quick)));
  const compared = findCompared(options.compare);
  const specs = targetSpecs(workerCounts, [...compared.keys()]);
  const defaultTarget = defaultTargetId(workerCounts, defaultWorkers);

  if (tools.wrk) {
    const problem = descriptorProblem(connections, openFilesLimit(readOrUndefined('/proc/self/limits')));
    if (problem) throw new OptionError(problem);
  }
  if (profiles.length === 0) {
    for (const s of skipped) log(`skipped: ${s}`);
    log('neither ab nor wrk is installed: nothing to measure');
    return 1;
  }
  // Before measuring: a path that cannot be written must not cost a whole run.
  const files = await prepareOutputs(options);

  log(
    `service CPUs ${formatCpuList(plan.service)}, load generator CPUs ${formatCpuList(plan.load)}: ${plan.reason}`,
  );
  const warnings = [
    quotaWarning(plan, detectCpuLimit(readOrUndefined, cpus().length).quota),
    sharedCoreWarning(plan, siblings),
    oversubscriptionWarning(plan, workerCounts),
  ].filter((w) => w !== undefined);
  for (const w of warnings) log(`warning: ${w}`);
  for (const s of skipped) log(`skipped: ${s}`);

  const started = new Date();
  const rounds = await runRounds({
    specs,
    profiles,
    warmUp: warm,
    tools,
    plan,
    launch: { plan, pm2Runtime: compared.get('pm2'), nginx: compared.get('nginx') },
    rounds: options.rounds,
    progress: log,
  });
  // Interrupted: the handler exits once every process is gone; a partial report must not replace a file.
  if (isStopping()) return INTERRUPTED_EXIT_CODE;
  const summaries = summarize(rounds.samples);
  const report: BenchReport = {
    schema: 1,
    meta: {
      date: started.toISOString(),
      command: ['bench', ...process.argv.slice(2)].join(' '),
      quick: options.quick,
      rounds: options.rounds,
      host: hostname(),
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown CPU',
      cpus: cpus().length,
      kernel: release(),
      node: process.version,
      cpuPlan: {
        pinned: plan.pinned,
        service: formatCpuList(plan.service),
        load: formatCpuList(plan.load),
        reason: plan.reason,
      },
      tools: {
        ab: await toolVersion(tools.ab, '-V'),
        wrk: await toolVersion(tools.wrk, '-v'),
        ...(compared.has('pm2') ? { pm2: await pm2Version(compared.get('pm2') as string) } : {}),
        ...(compared.has('nginx') ? { nginx: await toolVersion(compared.get('nginx'), '-v') } : {}),
      },
      defaultTarget,
      defaultWorkers,
      skipped: [...skipped, ...rounds.problems],
      warnings,
    },
    profiles: profiles.map((p) => ({ id: p.id, command: p.command })),
    targets: specs.map((s) => ({ ...s, readyMs: median(rounds.readyMs.get(s.id) ?? []) })),
    summaries,
    ratios: ratios(summaries, comparisons(specs)),
    scaling: scaling(summaries, workerCounts),
    samples: rounds.samples,
  };

  // The table first: it holds the results should the files fail after all (a full disk).
  process.stdout.write(`\n${renderText(report)}\n\n`);
  try {
    await writeWhole([
      [files.json, `${JSON.stringify(report, null, 2)}\n`],
      [files.svg, renderSvg(report)],
    ]);
  } catch (err) {
    log(`cannot write the report: ${(err as Error).message}`);
    return 1;
  }
  if (files.temporaryDir) keepScratchDir(files.temporaryDir);
  process.stdout.write(`JSON: ${files.json}\nSVG:  ${files.svg}\n`);
  const failedRuns = rounds.samples.filter((s) => s.error).length;
  return failedRuns > 0 || rounds.problems.length > 0 ? 1 : 0;
}

/**
 * --report: the table and chart of an earlier run, e.g. after changing how they are drawn. The
 * chart goes beside the JSON, named after it (scripts/results/bench.json → bench.svg), or into --out.
 */
async function rerender(options: BenchOptions & { report: string }): Promise<number> {
  let report: BenchReport;
  try {
    const parsed: unknown = JSON.parse(await readFile(options.report, 'utf8'));
    const problem = notABenchReport(parsed);
    if (problem !== undefined) {
      throw new OptionError(`--report: ${options.report} is not a bench.json (schema 1): ${problem}`);
    }
    report = parsed as BenchReport;
  } catch (err) {
    if (err instanceof OptionError) throw err;
    throw new OptionError(`--report: cannot read ${options.report}: ${(err as Error).message}`);
  }
  const svgPath =
    options.out === undefined ? svgBeside(resolve(options.report)) : resolve(join(options.out, 'bench.svg'));
  await prepareFile(svgPath, options.out === undefined ? '--report' : '--out');
  let text: string;
  let svg: string;
  try {
    text = renderText(report);
    svg = renderSvg(report);
  } catch (err) {
    // Past the checks above, but broken deeper (a hand-edited file, another version's).
    throw new OptionError(`--report: cannot draw ${options.report}: ${(err as Error).message}`);
  }
  try {
    await writeWhole([[svgPath, svg]]);
  } catch (err) {
    process.stderr.write(`cannot write ${svgPath}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`${text}\n\nSVG:  ${svgPath}\n`);
  return 0;
}

// The files must still be written when a reader stops early (`| head`) or the terminal hangs up.
tolerateClosedOutput();
const options = parseOrExit(parseOptions, USAGE);
try {
  if (options.help) {
    process.stdout.write(USAGE);
  } else if (options.report !== undefined) {
    process.exitCode = await rerender({ ...options, report: options.report });
  } else {
    // Ctrl-C, SIGTERM, SIGHUP: stop every server and load generator started, by pid, then exit 130.
    stopOnSignals();
    process.exitCode = await main(options);
  }
} catch (err) {
  if (err instanceof OptionError) {
    // What the options ask for, found wrong only once it is looked at (a file, the CPUs).
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 2;
  } else {
    // A bug mid-run: the servers it started must not outlive it, listening on their ports.
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    await stopChildren();
    process.exitCode = 1;
  }
}
