/**
 * Kubernetes API schema checks without a cluster, on kubernetes-models (validators generated from
 * the Kubernetes OpenAPI spec). The spec does not forbid unknown fields, yet the API server does
 * (kubectl's default `--validate=strict`): a misspelt or misplaced field would pass the schema and
 * be rejected, or silently ignored by an older kubectl. unknownFields() finds those fields by
 * watching which keys the generated validator reads.
 */

import { validate as validateDeployment } from 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment';
import { validate as validateHpa } from 'kubernetes-models/_schemas/IoK8sApiAutoscalingV2HorizontalPodAutoscaler';
import { validate as validateService } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Service';
import { validate as validatePdb } from 'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';

interface KnownKind {
  /** Throws the schema's errors, worded by kubernetes-models ("data/spec/... must be integer"). */
  readonly validate: (doc: object) => void;
  /** The same generated validator, called directly so that its reads can be watched. */
  readonly schema: (data: unknown) => boolean;
}

/** The kinds these manifests may contain, by `apiVersion kind`. */
export const KNOWN_KINDS: ReadonlyMap<string, KnownKind> = new Map([
  [
    'apps/v1 Deployment',
    { validate: (doc) => new Deployment(doc as Deployment).validate(), schema: validateDeployment },
  ],
  ['v1 Service', { validate: (doc) => new Service(doc as Service).validate(), schema: validateService }],
  [
    'policy/v1 PodDisruptionBudget',
    {
      validate: (doc) => new PodDisruptionBudget(doc as PodDisruptionBudget).validate(),
      schema: validatePdb,
    },
  ],
  [
    'autoscaling/v2 HorizontalPodAutoscaler',
    {
      validate: (doc) => new HorizontalPodAutoscaler(doc as HorizontalPodAutoscaler).validate(),
      schema: validateHpa,
    },
  ],
]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Paths of the fields in `doc` that `schema` never looked at. An object the validator read no key
 * of is skipped (free-form in the schema); one it enumerated (a map such as labels) is all known.
 */
export function unknownFields(schema: (data: unknown) => boolean, doc: unknown): string[] {
  const read = new WeakMap<object, Set<string> | 'all'>();
  const proxies = new WeakMap<object, unknown>();
  const note = (target: object, key: string | symbol): void => {
    const keys = read.get(target);
    if (keys === 'all' || typeof key === 'symbol') return;
    if (keys) keys.add(key);
    else read.set(target, new Set([key]));
  };
  const watch = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    let proxy = proxies.get(value);
    if (proxy === undefined) {
      proxy = new Proxy(value, {
        get(target, key, receiver) {
          note(target, key);
          return watch(Reflect.get(target, key, receiver));
        },
        has(target, key) {
          note(target, key);
          return Reflect.has(target, key);
        },
        ownKeys(target) {
          read.set(target, 'all');
          return Reflect.ownKeys(target);
        },
      });
      proxies.set(value, proxy);
    }
    return proxy;
  };
  schema(watch(doc));

  const unknown: string[] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) walk(item, `${path}[${i}]`);
      return;
    }
    if (!isObject(value)) return;
    const keys = read.get(value);
    if (keys === undefined) return;
    for (const [key, child] of Object.entries(value)) {
      if (keys !== 'all' && !keys.has(key)) unknown.push(`${path}.${key}`);
      else walk(child, `${path}.${key}`);
    }
  };
  walk(doc, '');
  return unknown;
}
