/** The terminal report: one table per profile, then the ratios and the scaling of reuseport workers. */
import { DASH, fixed, int, mebibytes, renderTable, times } from './format.js';
import { MOSTLY_FAILED } from './load-output.js';
import type { BenchReport } from './report.js';
import type { Ratio, Summary } from './summary.js';

const PROFILE_TITLES: Readonly<Record<string, string>> = {
  ab: 'a new TCP connection per request, as in the post',
  'ab-k': 'keep-alive, 4 connections',
  wrk: 'keep-alive, many connections',
};

/** The configuration's label, marked when it is what the service does by default. */
function labelOf(report: BenchReport, id: string): string {
  const label = report.targets.find((t) => t.id === id)?.label ?? id;
  return id === report.meta.defaultTarget ? `${label} (default)` : label;
}

function profileTable(report: BenchReport, profile: string): string {
  const rows = report.targets
    .map((t) => ({ t, s: report.summaries.find((s) => s.target === t.id && s.profile === profile) }))
    .filter((r): r is { t: (typeof r)['t']; s: Summary } => r.s !== undefined);
  const vsSingle = (id: string) =>
    report.ratios.find((r) => r.profile === profile && r.target === id && r.baseline === 'single');
  return renderTable(
    [
      { title: 'configuration', left: true, value: (r) => labelOf(report, r.t.id) },
      { title: 'req/s', value: (r) => (r.s.runs ? int(r.s.requestsPerSecond) : 'error') },
      { title: 'p50 ms', value: (r) => fixed(r.s.p50Ms, 2) },
      { title: 'p99 ms', value: (r) => fixed(r.s.p99Ms, 2) },
      {
        title: 'failed',
        value: (r) =>
          `${r.s.failed}${r.s.errors ? ` +${r.s.errors} run${r.s.errors === 1 ? '' : 's'} in error` : ''}`,
      },
      { title: 'length', value: (r) => String(r.s.lengthMismatches) },
      { title: 'CPU µs/req', value: (r) => fixed(r.s.cpuMicrosPerRequest, 1) },
      { title: 'switches/req', value: (r) => fixed(r.s.contextSwitchesPerRequest, 2) },
      { title: 'RSS MiB primary', value: (r) => mebibytes(r.s.peakRssPrimaryBytes) },
      { title: 'RSS MiB worker', value: (r) => mebibytes(r.s.peakRssWorkerBytes) },
      { title: 'spread', value: (r) => fixed(r.s.imbalance, 2) },
      { title: 'ready ms', value: (r) => int(r.t.readyMs) },
      { title: 'req/s ×single', value: (r) => times(vsSingle(r.t.id)?.requestsPerSecond) },
      { title: 'CPU ×single', value: (r) => times(vsSingle(r.t.id)?.cpuMicrosPerRequest) },
    ],
    rows,
  );
}

/** Runs of this profile whose serving processes changed: their CPU and spread need a word. */
function changeNotes(report: BenchReport, profile: string): string[] {
  return report.samples.flatMap((s) => {
    const c = s.profile === profile ? s.workersChanged : undefined;
    if (!c) return [];
    const pids = (list: readonly number[]) => (list.length ? list.join(', ') : 'none');
    const passing = c.passing ? '; one started and exited within it' : '';
    const lost = c.exited.length > 0 || c.passing ? ", switches/req and the exited ones' peak RSS" : '';
    return [
      `note: round ${s.round}, ${labelOf(report, s.target)}: workers changed during the run (exited: ${pids(c.exited)}; started: ${pids(c.started)}${passing}); CPU counts the exited ones, spread${lost} left out`,
    ];
  });
}

function ratioTable(report: BenchReport): string {
  const label = (id: string) => labelOf(report, id);
  const pairs = [
    ...new Set(report.ratios.filter((r) => r.baseline !== 'single').map((r) => `${r.target}|${r.baseline}`)),
  ];
  const find = (pair: string, profile: string): Ratio | undefined =>
    report.ratios.find((r) => `${r.target}|${r.baseline}` === pair && r.profile === profile);
  return renderTable(
    [
      {
        title: 'comparison (ratio of medians)',
        left: true,
        value: (pair: string) => {
          const [a, b] = pair.split('|');
          return `${label(a ?? '')} vs ${label(b ?? '')}`;
        },
      },
      ...report.profiles.flatMap((p) => [
        { title: `${p.id} req/s`, value: (pair: string) => times(find(pair, p.id)?.requestsPerSecond) },
        { title: `${p.id} CPU/req`, value: (pair: string) => times(find(pair, p.id)?.cpuMicrosPerRequest) },
      ]),
    ],
    pairs,
  );
}

function scalingTable(report: BenchReport): string {
  const counts = [...new Set(report.scaling.map((s) => s.workers))];
  return renderTable(
    [
      { title: 'reuseport workers', value: (k: number) => String(k) },
      ...report.profiles.map((p) => ({
        title: `${p.id} req/s (efficiency)`,
        value: (k: number) => {
          const s = report.scaling.find((x) => x.profile === p.id && x.workers === k);
          return s?.requestsPerSecond === undefined
            ? DASH
            : `${int(s.requestsPerSecond)} (${fixed(s.efficiency, 2)})`;
        },
      })),
    ],
    counts,
  );
}

/** The whole terminal report. */
export function renderText(report: BenchReport): string {
  const m = report.meta;
  const out: string[] = [
    `myservice benchmark: ${m.quick ? 'quick smoke run' : 'full run'}, medians of ${m.rounds} interleaved round${m.rounds === 1 ? '' : 's'}`,
    `machine: ${m.host}, ${m.cpuModel}, ${m.cpus} CPUs, Linux ${m.kernel}, Node ${m.node}`,
    `CPUs: service ${m.cpuPlan.service}, load generator ${m.cpuPlan.load} (${m.cpuPlan.pinned ? 'pinned with taskset' : 'not pinned'}: ${m.cpuPlan.reason})`,
  ];
  if (m.defaultWorkers !== undefined && m.defaultTarget === undefined) {
    out.push(
      `default not measured: WORKERS=auto starts ${m.defaultWorkers} worker${m.defaultWorkers === 1 ? '' : 's'} on the service's CPUs (add ${m.defaultWorkers} to --workers); no row is the default`,
    );
  }
  for (const skipped of m.skipped) out.push(`skipped: ${skipped}`);
  for (const warning of m.warnings ?? []) out.push(`warning: ${warning}`);
  for (const p of report.profiles) {
    out.push('', `${p.command}  (${PROFILE_TITLES[p.id] ?? p.id})`, profileTable(report, p.id));
    out.push(...changeNotes(report, p.id));
  }
  if (report.ratios.some((r) => r.baseline !== 'single')) out.push('', ratioTable(report));
  if (report.scaling.length > report.profiles.length) out.push('', scalingTable(report));
  out.push(
    '',
    'failed = connect + receive + exceptions + timeouts + non-2xx, and length = ab "Length" failures, are',
    'summed over all rounds (the other columns are medians). A Length failure is a reply of another length:',
    'a greeting from a pid with another number of digits, or a reply missing or cut short; when every pid',
    'that served has as many digits, it counts as failed too (see the README). ab counts one broken request',
    'under several causes: failed counts it once, and never more than the requests made. A run in error',
    `(the tool failed, the server exited, or ${MOSTLY_FAILED * 100}% of its requests or more failed) is left out of the`,
    'medians and ratios; its failures are still counted. CPU = user+sys of every server process per request,',
    'those that exited during the run included; switches = context switches of their event-loop threads per',
    'request (a loop that sleeps and is woken for each request costs more CPU per request than one that finds',
    'several waiting); spread = busiest worker share × workers (1.00 = even); RSS = peak (VmHWM).',
  );
  const errors = report.samples.filter((s) => s.error);
  for (const e of errors) out.push(`error in round ${e.round}, ${e.target}, ${e.profile}: ${e.error}`);
  return out.join('\n');
}
