/** Reading the Kubernetes manifests as kubectl and the kubelet do, for test/k8s-manifests.test.ts. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { type CpuLimit, detectCpuLimit } from '../../src/cpu-count.js';

/** scripts/deploy/k8s, seen from dist/test/helpers (npm test) or from the repo root (a scratch build). */
export const MANIFEST_DIR = [
  join(dirname(fileURLToPath(import.meta.url)), '../../../scripts/deploy/k8s'),
  join(process.cwd(), 'scripts/deploy/k8s'),
].find((d) => existsSync(d));

export interface Manifest {
  readonly file: string;
  readonly doc: Record<string, unknown>;
}

/** Every document of every YAML file in `dir`, and whatever kept one from parsing cleanly. */
export function loadManifests(dir: string | undefined): { manifests: Manifest[]; problems: string[] } {
  const manifests: Manifest[] = [];
  const problems: string[] = [];
  if (dir === undefined) return { manifests, problems: ['scripts/deploy/k8s not found'] };
  for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    manifests.push(...parseManifests(readFileSync(join(dir, file), 'utf8'), file, problems));
  }
  return { manifests, problems };
}

/** Parses a multi-document YAML text; errors and warnings (duplicate keys among them) go to `problems`. */
export function parseManifests(text: string, file: string, problems: string[]): Manifest[] {
  const manifests: Manifest[] = [];
  // YAML 1.1, as kubectl's parser (go-yaml v2) reads it: there `on`, `yes` and `no` are booleans.
  for (const parsed of parseAllDocuments(text, { version: '1.1' })) {
    for (const e of [...parsed.errors, ...parsed.warnings]) problems.push(`${file}: ${e.message}`);
    const doc: unknown = parsed.toJS();
    if (doc === null) continue;
    if (typeof doc !== 'object' || Array.isArray(doc)) problems.push(`${file}: a document is not a mapping`);
    else manifests.push({ file, doc: doc as Record<string, unknown> });
  }
  return manifests;
}

/** Millicores of a CPU quantity ("2", 2, "1500m", "0.5"), rounded up as the kubelet does; NaN if unread. */
export function milliCpu(q: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(String(q));
  if (!m) return Number.NaN;
  return m[2] === 'm' ? Number(m[1]) : Math.ceil(Number(m[1]) * 1000);
}

const SUFFIX: Readonly<Record<string, number>> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  k: 1e3,
  M: 1e6,
  G: 1e9,
};

/** Bytes of a memory quantity ("384Mi", "1G", 1048576); NaN if missing or in a form not read here. */
export function bytes(q: string | number | undefined): number {
  const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(String(q));
  if (!m) return Number.NaN;
  return Number(m[1]) * (m[2] === undefined ? 1 : (SUFFIX[m[2]] ?? Number.NaN));
}

/** The kubelet's CFS period; it writes limits.cpu as quota = millicores × period / 1000. */
export const CFS_PERIOD_US = 100_000;

/**
 * What src/cpu-count.ts decides in a container with this limits.cpu on a 16-CPU node: the files a
 * container sees under cgroup v2 (its own cgroup namespace) or v1, with the kubelet's quota.
 */
export function workersUnder(limitCpu: string, version: 'v1' | 'v2'): CpuLimit {
  const quota = String((milliCpu(limitCpu) * CFS_PERIOD_US) / 1000);
  const files: Record<string, string> = {
    '/proc/self/status': 'Name:\tnode\nCpus_allowed_list:\t0-15\n',
    ...(version === 'v2'
      ? {
          '/proc/self/cgroup': '0::/\n',
          '/proc/self/mountinfo': '30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate',
          '/sys/fs/cgroup/cpu.max': `${quota} ${CFS_PERIOD_US}\n`,
        }
      : {
          '/proc/self/cgroup': '12:cpu,cpuacct:/\n',
          '/proc/self/mountinfo': '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': `${quota}\n`,
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': `${CFS_PERIOD_US}\n`,
        }),
  };
  return detectCpuLimit((path) => files[path], 16);
}
