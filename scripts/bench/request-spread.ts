/** How evenly a run's requests went to the workers, from the deltas of /metrics per-worker counters. */
import { get } from 'node:http';

export interface WorkerCount {
  readonly slot: number;
  readonly pid: number;
  readonly requests: number;
}

const LINE = /^myservice_http_requests_total\{slot="(\d+)",pid="(\d+)"\} (\d+)$/gm;

/** Pure: the per-worker request counters in a /metrics body. */
export function parseRequestCounts(text: string): WorkerCount[] {
  return [...text.matchAll(LINE)].map((m) => ({
    slot: Number(m[1]),
    pid: Number(m[2]),
    requests: Number(m[3]),
  }));
}

/** How long a /metrics reading may go without a byte: the primary answers within 2 s, or with a 503. */
const READ_TIMEOUT_MS = 10_000;

/**
 * GET /metrics on a connection of its own (agent: false), so no kept-alive socket outlives it.
 * Rejects on an answer cut short (which ends with 'error', never 'end') or one that stalls.
 */
export function fetchRequestCounts(url: string): Promise<WorkerCount[]> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: READ_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode === 200) resolve(parseRequestCounts(body));
        else reject(new Error(`GET ${url}: ${res.statusCode}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: nothing for ${READ_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

/** The counters, or undefined when they cannot be read: the run is measured without its spread. */
export function readRequestCounts(url: string | undefined): Promise<WorkerCount[] | undefined> {
  return url === undefined ? Promise.resolve(undefined) : fetchRequestCounts(url).catch(() => undefined);
}

/**
 * Requests each worker answered between two readings, by slot; undefined when the workers are
 * not the same ones in both: a worker gone by the second reading took its count with it, so
 * the deltas of the others would be a wrong spread.
 */
export function countDeltas(
  before: readonly WorkerCount[],
  after: readonly WorkerCount[],
): WorkerCount[] | undefined {
  const pids = (counts: readonly WorkerCount[]) => counts.map((c) => c.pid).sort((a, b) => a - b);
  if (pids(before).join() !== pids(after).join()) return undefined;
  return after
    .map((a) => ({
      ...a,
      requests: a.requests - (before.find((b) => b.pid === a.pid)?.requests ?? 0),
    }))
    .sort((a, b) => a.slot - b.slot);
}

/**
 * The busiest worker's share times the number of workers: 1.0 is perfectly even, 2.0 with two
 * workers means one worker took everything.
 */
export function imbalance(deltas: readonly WorkerCount[]): number | undefined {
  const total = deltas.reduce((sum, d) => sum + d.requests, 0);
  if (deltas.length === 0 || total === 0) return undefined;
  return (Math.max(...deltas.map((d) => d.requests)) / total) * deltas.length;
}
