/**
 * The IPC protocol between the primary and its workers, defined once. Every message is a
 * plain object with a `type`; anything else on the channel (node:cluster's own internal
 * messages, a library's) is ignored by the guards below.
 */

/** Environment variables that carry the primary's parsed config and the slot to a worker. */
export const WORKER_CONFIG_ENV = 'MYSERVICE_WORKER_CONFIG';
export const WORKER_SLOT_ENV = 'MYSERVICE_WORKER_SLOT';
/**
 * Set ("1") for a worker that takes over its slot's listening socket instead of opening one: it
 * waits for the primary's `listener` message (a roll's replacement, see primary.ts).
 */
export const WORKER_LISTENER_ENV = 'MYSERVICE_WORKER_LISTENER';

/** A listening socket passed over the IPC channel as a message's native handle. */
export interface NativeHandle {
  close(): void;
}

/** True for the handle a `ready` or `listener` message carries; false when none came. */
export const isNativeHandle = (h: unknown): h is NativeHandle =>
  typeof h === 'object' && h !== null && typeof (h as { close?: unknown }).close === 'function';

/** The signals the primary acts on, and so the ones every worker leaves to it. */
export const CONTROL_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const;
export type ControlSignal = (typeof CONTROL_SIGNALS)[number];

/** What a worker measures about itself, sent when the primary collects metrics. */
export interface WorkerStats {
  readonly requests: number;
  /** Connections accepted and closed at once, unanswered: past MAX_CONNECTIONS (or the open-files or memory limit). */
  readonly droppedConnections: number;
  /**
   * Connections closed for pipelining too deep: a read of more than MAX_HEADS_PER_READ request
   * lines, or more than MAX_WAITING_SCRAPES scrapes waiting for their answers.
   */
  readonly pipeliningFloods: number;
  /** Connections it takes before it drops new ones: MAX_CONNECTIONS, or what its limits hold. */
  readonly maxConnections: number;
  /** Responses by status class, index 0 = 1xx … 4 = 5xx. */
  readonly responses: readonly number[];
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly loopDelayP50Seconds: number;
  readonly loopDelayP99Seconds: number;
}

export type WorkerMessage =
  /**
   * Listening and able to serve. With reuseport the worker's listening socket comes with it, as
   * the message's handle: the primary keeps a copy for the slot's next worker.
   */
  | { readonly type: 'ready' }
  /**
   * A worker forked with WORKER_LISTENER_ENV asks for its slot's listening socket once it can
   * take the answer: a message that came before its handler would be lost, and its socket with it.
   */
  | { readonly type: 'need-listener' }
  /**
   * The event loop is turning; sent every HEARTBEAT_INTERVAL_MS, with the responses so far, so a
   * worker that dies (killed at the drain deadline, crashed, hung) loses at most one interval's.
   */
  | { readonly type: 'heartbeat'; readonly responses: readonly number[] }
  /**
   * The worker cannot serve (bind failed): before any worker has served, the primary stops
   * (exit 3); after, it is one failed boot, retried with back-off.
   */
  | { readonly type: 'fatal'; readonly code: string; readonly message: string }
  | { readonly type: 'stats'; readonly requestId: number; readonly stats: WorkerStats }
  /** A client asked this worker for /metrics; the primary aggregates every worker's. */
  | { readonly type: 'metrics-request'; readonly requestId: number };

export type PrimaryMessage =
  /**
   * Stop accepting, finish in-flight requests, exit 0. delayMs: keep serving (readiness 503) first.
   * serviceStops: /readyz answers 503 from now on; otherwise only this worker leaves (a roll, a
   * scale-down), the service stays ready and so does its answer.
   */
  | { readonly type: 'drain'; readonly delayMs: number; readonly serviceStops: boolean }
  /**
   * The answer to need-listener: the slot's listening socket as the message's handle, to accept on
   * rather than open one; without a handle (the socket is gone), open one.
   */
  | { readonly type: 'listener' }
  | { readonly type: 'collect-stats'; readonly requestId: number }
  | { readonly type: 'metrics-response'; readonly requestId: number; readonly text: string | null }
  /** The connections each worker now takes: the worker count changed, and with it each one's share of a memory limit. */
  | { readonly type: 'connection-limit'; readonly maxConnections: number };

type Tagged = { readonly type: string } & Readonly<Record<string, unknown>>;

function tagged(value: unknown): value is Tagged {
  return (
    typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
  );
}

const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isMeasure = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;
/** Responses by status class: five counts. */
const isClassCounts = (v: unknown): boolean => Array.isArray(v) && v.length === 5 && v.every(isCount);

function isStats(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return (
    isCount(s.requests) &&
    isCount(s.droppedConnections) &&
    isCount(s.pipeliningFloods) &&
    isCount(s.maxConnections) &&
    isClassCounts(s.responses) &&
    isMeasure(s.rssBytes) &&
    isMeasure(s.heapUsedBytes) &&
    isMeasure(s.loopDelayP50Seconds) &&
    isMeasure(s.loopDelayP99Seconds)
  );
}

/**
 * True for a message a worker sent under this protocol, its fields included: the primary reads
 * them without further checks, and an exception there would end it with every worker.
 */
export function isWorkerMessage(value: unknown): value is WorkerMessage {
  if (!tagged(value)) return false;
  switch (value.type) {
    case 'ready':
    case 'need-listener':
      return true;
    case 'heartbeat':
      return isClassCounts(value.responses);
    case 'fatal':
      return typeof value.code === 'string' && typeof value.message === 'string';
    case 'stats':
      return isCount(value.requestId) && isStats(value.stats);
    case 'metrics-request':
      return isCount(value.requestId);
    default:
      return false;
  }
}

/** True for a message the primary sent under this protocol, its fields included. */
export function isPrimaryMessage(value: unknown): value is PrimaryMessage {
  if (!tagged(value)) return false;
  switch (value.type) {
    case 'drain':
      return isCount(value.delayMs) && typeof value.serviceStops === 'boolean';
    case 'listener':
      return true;
    case 'collect-stats':
      return isCount(value.requestId);
    case 'metrics-response':
      return isCount(value.requestId) && (value.text === null || typeof value.text === 'string');
    case 'connection-limit':
      return isCount(value.maxConnections) && (value.maxConnections as number) >= 1;
    default:
      return false;
  }
}
