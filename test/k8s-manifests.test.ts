/**
 * The Kubernetes manifests in scripts/deploy/k8s, checked offline (no cluster runs here): YAML as
 * kubectl reads it, the Kubernetes API schema, unknown fields, and the invariants that tie the
 * manifests to the service: its config parser, its probes and port, its shutdown timings and its
 * CPU detection.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IService } from 'kubernetes-models/v1/Service';
import { type Config, parseConfig, VARIABLES } from '../src/config.js';
import {
  bytes,
  loadManifests,
  MANIFEST_DIR,
  type Manifest,
  milliCpu,
  parseManifests,
  workersUnder,
} from './helpers/k8s-manifests.js';
import { KNOWN_KINDS, unknownFields } from './helpers/k8s-schema.js';

/** The shortest pause (preStop sleep + SHUTDOWN_DELAY_MS) that outlasts endpoint propagation. */
const MIN_PAUSE_MS = 3_000;
/** Slack between the primary's last deadline and the kubelet's SIGKILL. */
const GRACE_MARGIN_MS = 2_000;

const { manifests, problems } = loadManifests(MANIFEST_DIR);
const kindOf = (m: Manifest): string => `${m.doc.apiVersion} ${m.doc.kind}`;
const objects = manifests.filter((m) => m.doc.kind !== 'Kustomization');

function only<T>(kind: string): T {
  const found = objects.filter((m) => m.doc.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind} expected, found ${found.length}`);
  return (found[0] as Manifest).doc as T;
}

const deployment = (): IDeployment => only<IDeployment>('Deployment');
const pod = (): NonNullable<NonNullable<IDeployment['spec']>['template']['spec']> => {
  const spec = deployment().spec?.template.spec;
  assert.ok(spec, 'Deployment has no pod spec');
  return spec;
};
const container = (): IContainer => {
  const c = pod().containers[0];
  assert.ok(c && pod().containers.length === 1, 'the pod runs exactly one container');
  return c;
};
/** The service's config as its own parser reads the container's env (defaults included). */
const config = (): Config => {
  const env: Record<string, string> = {};
  for (const v of container().env ?? []) {
    // valueFrom (ConfigMap, Secret, field refs) cannot be read offline; a YAML 1.1 `yes` is no string.
    assert.equal(typeof v.value, 'string', `${v.name}: a literal string value`);
    env[v.name] = v.value as string;
  }
  return parseConfig(env, 'linux');
};

/** The container port a probe or Service names, by number or by name. */
function portNumber(port: number | string): number {
  if (typeof port === 'number') return port;
  const named = container().ports?.find((p) => p.name === port);
  assert.ok(named, `no container port named "${port}"`);
  return named.containerPort;
}

function probe(name: 'startupProbe' | 'readinessProbe' | 'livenessProbe'): IProbe & { budgetMs: number } {
  const p = container()[name];
  assert.ok(p?.httpGet, `${name} must be an httpGet probe`);
  // Kubernetes defaults: periodSeconds 10, failureThreshold 3.
  const budgetMs =
    ((p.initialDelaySeconds ?? 0) + (p.periodSeconds ?? 10) * (p.failureThreshold ?? 3)) * 1000;
  return { ...p, budgetMs };
}

describe('Kubernetes manifests (scripts/deploy/k8s)', () => {
  it('every file parses as kubectl reads it (YAML 1.1), without duplicate keys', () => {
    assert.deepEqual(problems, []);
    assert.ok(manifests.length > 0, `no manifests found in ${MANIFEST_DIR}`);
  });

  it('holds one Deployment, Service, PodDisruptionBudget and HPA, all listed by the kustomization', () => {
    assert.deepEqual(objects.map(kindOf).sort(), [...KNOWN_KINDS.keys()].sort());
    const kustomizations = manifests.filter((m) => m.doc.kind === 'Kustomization');
    assert.equal(kustomizations.length, 1);
    const k = (kustomizations[0] as Manifest).doc;
    assert.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
    assert.deepEqual(
      [...((k.resources ?? []) as string[])].sort(),
      [...new Set(objects.map((m) => m.file))].sort(),
      'kustomization.yaml must list every manifest file, and only those',
    );
    for (const m of objects) {
      const meta = m.doc.metadata as { name?: string; namespace?: string } | undefined;
      assert.ok(meta?.name, `${m.file}: metadata.name`);
      assert.equal(meta.namespace, undefined, `${m.file}: leave the namespace to kubectl -n / kustomize`);
    }
  });

  it('every object passes the Kubernetes API schema', () => {
    for (const m of objects) {
      const kind = KNOWN_KINDS.get(kindOf(m));
      assert.ok(kind, `${m.file}: unexpected ${kindOf(m)}`);
      assert.doesNotThrow(() => kind.validate(m.doc), `${m.file}: ${kindOf(m)}`);
    }
  });

  it('no object has a field the API does not know (what kubectl --validate=strict rejects)', () => {
    for (const m of objects) {
      const kind = KNOWN_KINDS.get(kindOf(m));
      assert.ok(kind);
      assert.deepEqual(unknownFields(kind.schema, m.doc), [], `${m.file}: unknown fields`);
    }
  });

  it('the schema checks bite: a wrong type, a misspelt field and a misplaced field are all caught', () => {
    const kind = KNOWN_KINDS.get('apps/v1 Deployment');
    assert.ok(kind);
    const broken = structuredClone(deployment()) as IDeployment;
    const spec = broken.spec?.template.spec;
    const c = spec?.containers[0] as unknown as Record<string, unknown>;
    c.securityContext = { runAsUser: '1000' };
    assert.throws(() => kind.validate(broken), /runAsUser must be integer/);
    c.securityContext = {};
    c.readinesProbe = c.readinessProbe;
    (spec?.securityContext as Record<string, unknown>).capabilities = { drop: ['ALL'] };
    assert.deepEqual(unknownFields(kind.schema, broken).sort(), [
      '.spec.template.spec.containers[0].readinesProbe',
      '.spec.template.spec.securityContext.capabilities',
    ]);
  });

  it('the container environment is a valid service config of variables the service reads, with WORKERS=auto', () => {
    assert.doesNotThrow(config, 'the service would exit 2 (config error) in every pod');
    // The parser ignores names it does not know, as any process's environment has many: a
    // misspelt one (SHUTDOWN_DELAY) would leave its default in force without a word.
    const known: readonly string[] = VARIABLES;
    for (const { name } of container().env ?? [])
      assert.ok(known.includes(name), `${name} is no variable of the service`);
    assert.equal(config().workers, 'auto', 'the CPU limit is meant to set the worker count');
  });

  it('probes: readiness on /readyz, startup and liveness on /healthz, all at the service port', () => {
    assert.equal(probe('readinessProbe').httpGet?.path, '/readyz');
    // Never /readyz for liveness: a draining pod answers 503 there and would be restarted.
    assert.equal(probe('livenessProbe').httpGet?.path, '/healthz');
    assert.equal(probe('startupProbe').httpGet?.path, '/healthz');
    for (const name of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
      const get = probe(name).httpGet;
      assert.ok(get);
      assert.equal(portNumber(get.port), config().port, `${name} port`);
      assert.ok(get.scheme === undefined || get.scheme === 'HTTP', `${name}: the service speaks plain HTTP`);
    }
  });

  it('probe timing leaves worker failures to the supervisor', () => {
    const c = config();
    assert.ok(probe('startupProbe').budgetMs > c.bootTimeoutMs, 'startup probe must outlast BOOT_TIMEOUT_MS');
    const liveness = probe('livenessProbe').budgetMs;
    assert.ok(liveness > c.heartbeatTimeoutMs, 'liveness must outlast HEARTBEAT_TIMEOUT_MS');
    assert.ok(liveness > c.shutdownDelayMs + c.drainTimeoutMs, 'liveness must outlast a whole shutdown');
  });

  it('the Service and the Prometheus annotations reach the service port', () => {
    const service = only<IService>('Service');
    assert.ok((service.spec?.ports ?? []).length > 0, 'the Service has a port');
    for (const p of service.spec?.ports ?? []) {
      assert.equal(portNumber(p.targetPort ?? p.port), config().port, `Service port ${p.name}`);
    }
    const annotations = deployment().spec?.template.metadata?.annotations ?? {};
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(annotations['prometheus.io/port'], String(config().port));
    assert.equal(annotations['prometheus.io/path'], '/metrics');
  });

  it('shutdown: a pause for endpoint removal, then the drain, all inside terminationGracePeriodSeconds', () => {
    const c = config();
    const preStop = container().lifecycle?.preStop;
    // The image promises no shell or sleep binary, and the service has no shutdown endpoint.
    assert.ok(!preStop?.exec && !preStop?.httpGet && !preStop?.tcpSocket, 'preStop may only be `sleep`');
    const pauseMs = (preStop?.sleep?.seconds ?? 0) * 1000 + c.shutdownDelayMs;
    assert.ok(pauseMs >= MIN_PAUSE_MS, `pause ${pauseMs} ms is shorter than ${MIN_PAUSE_MS} ms`);
    const graceMs = (pod().terminationGracePeriodSeconds ?? 30) * 1000;
    assert.ok(
      graceMs >= pauseMs + c.drainTimeoutMs + GRACE_MARGIN_MS,
      `terminationGracePeriodSeconds ${graceMs / 1000} s < pause ${pauseMs} ms + DRAIN_TIMEOUT_MS ${c.drainTimeoutMs} ms + ${GRACE_MARGIN_MS} ms`,
    );
  });

  it('CPU and memory: requests and limits set, requests ≤ limits', () => {
    const { requests, limits } = container().resources ?? {};
    for (const [name, q] of Object.entries({ requests, limits })) {
      assert.ok(milliCpu(q?.cpu) > 0, `${name}.cpu "${q?.cpu}" missing or not read here`);
      assert.ok(bytes(q?.memory) > 0, `${name}.memory "${q?.memory}" missing or not read here`);
    }
    assert.ok(milliCpu(requests?.cpu) <= milliCpu(limits?.cpu), 'requests.cpu ≤ limits.cpu');
    assert.ok(bytes(requests?.memory) <= bytes(limits?.memory), 'requests.memory ≤ limits.memory');
  });

  it('limits.cpu gives the worker count the comments state, through src/cpu-count.ts', () => {
    const limit = String(container().resources?.limits?.cpu);
    const text = readFileSync(join(MANIFEST_DIR ?? '', 'deployment.yaml'), 'utf8');
    for (const version of ['v1', 'v2'] as const) {
      assert.equal(workersUnder(limit, version).workers, Math.ceil(milliCpu(limit) / 1000));
    }
    const logTail = workersUnder(limit, 'v2').reason.split('; ').at(-1) ?? '';
    assert.ok(text.includes(logTail), `deployment.yaml should quote the log line "${logTail}"`);
    const table = /limits\.cpu ((?:\S+ → \d+, )+\S+ → \d+) workers/.exec(text)?.[1];
    assert.ok(table, 'deployment.yaml should carry the "limits.cpu … → N workers" table');
    for (const pair of table.split(', ')) {
      const [cpu, workers] = pair.split(' → ');
      assert.equal(workersUnder(cpu ?? '', 'v2').workers, Number(workers), `limits.cpu ${cpu}`);
    }
  });

  it('securityContext: uid 1000, read-only root, no capabilities, RuntimeDefault seccomp', () => {
    const p = pod();
    assert.ok(!p.hostNetwork && !p.hostPID && !p.hostIPC, 'no host namespaces');
    assert.ok(!p.volumes?.some((v) => v.hostPath), 'no hostPath volumes');
    assert.equal(p.automountServiceAccountToken, false);
    for (const c of [...p.containers, ...(p.initContainers ?? [])]) {
      const own = c.securityContext ?? {};
      const podLevel = p.securityContext ?? {};
      assert.equal(own.runAsNonRoot ?? podLevel.runAsNonRoot, true, `${c.name}: runAsNonRoot`);
      // Numeric: the image's `USER node` is a name the kubelet cannot check against runAsNonRoot.
      assert.equal(own.runAsUser ?? podLevel.runAsUser, 1000, `${c.name}: runAsUser`);
      assert.equal((own.seccompProfile ?? podLevel.seccompProfile)?.type, 'RuntimeDefault');
      assert.equal(own.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation`);
      assert.equal(own.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
      assert.notEqual(own.privileged, true, `${c.name}: privileged`);
      assert.deepEqual(own.capabilities?.drop, ['ALL'], `${c.name}: drop ALL capabilities`);
      assert.deepEqual(own.capabilities?.add ?? [], [], `${c.name}: add no capabilities`);
      assert.ok(!c.ports?.some((port) => port.hostPort), `${c.name}: no hostPort`);
    }
  });

  it('labels and selectors agree across Deployment, Service, PDB, HPA and topology spread', () => {
    const d = deployment();
    const selector = d.spec?.selector.matchLabels ?? {};
    assert.ok(Object.keys(selector).length > 0 && !d.spec?.selector.matchExpressions, 'matchLabels only');
    const podLabels = d.spec?.template.metadata?.labels ?? {};
    const within = (labels: Record<string, string>) =>
      Object.entries(labels).every(([k, v]) => podLabels[k] === v);
    assert.ok(within(selector), "the Deployment's selector must match its pods");
    assert.deepEqual(only<IService>('Service').spec?.selector, selector, 'Service selector');
    const pdb = only<IPodDisruptionBudget>('PodDisruptionBudget').spec?.selector;
    assert.deepEqual(pdb?.matchLabels, selector, 'PDB selector');
    assert.equal(pdb?.matchExpressions, undefined);
    for (const t of pod().topologySpreadConstraints ?? []) {
      assert.ok(within(t.labelSelector?.matchLabels ?? {}), `topology spread on ${t.topologyKey}`);
    }
    const target = only<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler').spec?.scaleTargetRef;
    assert.deepEqual(target, { apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata?.name });
    for (const m of objects) {
      const labels = (m.doc.metadata as { labels?: Record<string, string> }).labels ?? {};
      assert.ok(
        Object.entries(selector).every(([k, v]) => labels[k] === v),
        `${m.file}: carries the app labels`,
      );
    }
  });

  it('scaling: the HPA owns replicas on CPU, rollouts and drains keep a pod serving', () => {
    const d = deployment();
    assert.equal(d.spec?.replicas, undefined, 'spec.replicas would reset the HPA on every apply');
    const hpa = only<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler').spec;
    assert.ok(hpa && (hpa.minReplicas ?? 1) >= 2 && hpa.maxReplicas >= (hpa.minReplicas ?? 1));
    assert.ok(
      hpa.metrics?.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu'),
      'scales on CPU',
    );
    assert.ok(milliCpu(container().resources?.requests?.cpu) > 0, 'CPU utilization is relative to requests');
    const pdb = only<IPodDisruptionBudget>('PodDisruptionBudget').spec;
    assert.ok(pdb);
    const budget = pdb.maxUnavailable ?? pdb.minAvailable;
    assert.ok(budget !== undefined && (pdb.maxUnavailable === undefined || pdb.minAvailable === undefined));
    if (pdb.maxUnavailable !== undefined) assert.ok(pdb.maxUnavailable === 1, 'one pod at a time');
    else assert.ok(Number(pdb.minAvailable) < (hpa.minReplicas ?? 1), 'minAvailable would block drains');
    const rolling = d.spec?.strategy?.rollingUpdate;
    assert.equal(rolling?.maxUnavailable, 0, 'a rollout starts a new pod before stopping an old one');
    assert.ok(Number(rolling?.maxSurge) >= 1);
    const image = container().image ?? '';
    assert.match(image, /:[\w.-]+$/, 'a fixed tag');
    assert.doesNotMatch(image, /:latest$/, 'a fixed tag, not :latest');
  });

  it('kubectl kustomize builds exactly these objects (skipped where kubectl is not installed)', (t) => {
    const built = spawnSync('kubectl', ['kustomize', MANIFEST_DIR ?? ''], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (built.error && (built.error as NodeJS.ErrnoException).code === 'ENOENT') {
      t.skip('kubectl is not installed here (the project does not install it)');
      return;
    }
    assert.equal(built.status, 0, built.stderr);
    const problems: string[] = [];
    const rendered = parseManifests(built.stdout, 'kubectl kustomize', problems);
    assert.deepEqual(problems, []);
    const byKind = (list: Manifest[]) =>
      [...list].sort((a, b) => kindOf(a).localeCompare(kindOf(b))).map((m) => m.doc);
    assert.deepEqual(byKind(rendered), byKind(objects));
  });
});
