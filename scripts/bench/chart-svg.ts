/** A dependency-free SVG chart: req/s and server CPU µs per request, per configuration and profile. */
import { fixed, int } from './format.js';
import type { BenchReport } from './report.js';
import type { TargetKind, TargetSpec } from './targets.js';

const WIDTH = 1000;
const LABEL_W = 150;
const PANEL_W = (WIDTH - 40) / 2;
const BAR_MAX = PANEL_W - LABEL_W - 70;
const ROW_H = 18;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

function color(spec: TargetSpec): string {
  const byKind: Record<TargetKind, string> = {
    single: '#7f7f7f',
    cluster: spec.balance === 'round-robin' ? '#e07b24' : '#2463b5',
    pm2: '#8e5bbf',
    minimal: '#7fa7d9',
    nginx: '#2f9e44',
  };
  return byKind[spec.kind];
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] ?? c);
}

interface Bar {
  readonly spec: TargetSpec;
  readonly label: string;
  readonly value: number | undefined;
}

function panel(x: number, y: number, title: string, bars: readonly Bar[], digits: number): string {
  const max = Math.max(...bars.map((b) => b.value ?? 0), Number.MIN_VALUE);
  const parts = [
    `<text x="${x}" y="${y + 12}" font-size="12" font-weight="600" ${FONT}>${escapeXml(title)}</text>`,
  ];
  bars.forEach((bar, i) => {
    const rowY = y + 20 + i * ROW_H;
    const w = bar.value === undefined ? 0 : Math.max(1, (bar.value / max) * BAR_MAX);
    const label = bar.value === undefined ? 'n/a' : digits === 0 ? int(bar.value) : fixed(bar.value, digits);
    parts.push(
      `<text x="${x + LABEL_W - 6}" y="${rowY + 12}" font-size="11" text-anchor="end" ${FONT}>${escapeXml(bar.label)}</text>`,
      `<rect x="${x + LABEL_W}" y="${rowY + 2}" width="${w.toFixed(1)}" height="${ROW_H - 5}" fill="${color(bar.spec)}"/>`,
      `<text x="${(x + LABEL_W + w + 4).toFixed(1)}" y="${rowY + 12}" font-size="11" ${FONT}>${label}</text>`,
    );
  });
  return parts.join('\n');
}

/** The chart as a standalone SVG document. */
export function renderSvg(report: BenchReport): string {
  const m = report.meta;
  const targets = report.targets;
  const blockH = 20 + 20 + targets.length * ROW_H + 18;
  const top = 62;
  const height = top + report.profiles.length * blockH + 10;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img">`,
    `<title>myservice benchmark: requests per second and server CPU per request by configuration</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="20" y="24" font-size="16" font-weight="700" ${FONT}>myservice benchmark: medians of ${m.rounds} interleaved round${m.rounds === 1 ? '' : 's'}</text>`,
    `<text x="20" y="44" font-size="11" fill="#555" ${FONT}>${escapeXml(
      `${m.cpus} × ${m.cpuModel}, Node ${m.node}; service CPUs ${m.cpuPlan.service}, load CPUs ${m.cpuPlan.load}` +
        ` (${m.cpuPlan.pinned ? 'pinned' : 'not pinned'}); ${m.date.slice(0, 10)}`,
    )}</text>`,
  ];
  report.profiles.forEach((profile, i) => {
    const y = top + i * blockH;
    const bars = (pick: 'requestsPerSecond' | 'cpuMicrosPerRequest'): Bar[] =>
      targets.map((spec) => ({
        spec,
        label: spec.id === m.defaultTarget ? `${spec.label} (default)` : spec.label,
        value: report.summaries.find((s) => s.target === spec.id && s.profile === profile.id)?.[pick],
      }));
    parts.push(
      `<text x="20" y="${y + 12}" font-size="13" font-weight="700" ${FONT}>${escapeXml(profile.command)}</text>`,
      panel(20, y + 18, 'requests per second (higher is better)', bars('requestsPerSecond'), 0),
      panel(
        20 + PANEL_W + 20,
        y + 18,
        'server CPU µs per request (lower is better)',
        bars('cpuMicrosPerRequest'),
        1,
      ),
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
