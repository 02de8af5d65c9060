/** The IPC guards: a message passes only with every field the receiver reads, of the right type. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNativeHandle, isPrimaryMessage, isWorkerMessage } from '../src/protocol.js';

const stats = {
  requests: 3,
  droppedConnections: 0,
  pipeliningFloods: 0,
  maxConnections: 10_000,
  responses: [0, 3, 0, 0, 0],
  rssBytes: 1e8,
  heapUsedBytes: 1e7,
  loopDelayP50Seconds: 0,
  loopDelayP99Seconds: 0.002,
};

describe('isWorkerMessage', () => {
  it('takes every message a worker sends', () => {
    for (const m of [
      { type: 'ready' },
      { type: 'need-listener' },
      { type: 'heartbeat', responses: [0, 7, 0, 1, 0] },
      { type: 'fatal', code: 'EADDRINUSE', message: 'listen EADDRINUSE' },
      { type: 'stats', requestId: 0, stats },
      { type: 'metrics-request', requestId: 12 },
    ])
      assert.equal(isWorkerMessage(m), true, JSON.stringify(m));
  });

  it('refuses a known type without the fields the primary reads, and anything else', () => {
    for (const m of [
      { type: 'stats', requestId: 1 },
      { type: 'stats', requestId: 1, stats: { ...stats, responses: [1, 2] } },
      { type: 'stats', requestId: -1, stats },
      { type: 'stats', requestId: 1, stats: { ...stats, rssBytes: Number.NaN } },
      { type: 'stats', requestId: 1, stats: { ...stats, droppedConnections: undefined } },
      { type: 'stats', requestId: 1, stats: { ...stats, pipeliningFloods: 1.5 } },
      { type: 'stats', requestId: 1, stats: { ...stats, maxConnections: -1 } },
      // Every field is rendered as it came: one missing would be an `undefined` that breaks the whole scrape.
      { type: 'stats', requestId: 1, stats: { ...stats, requests: undefined } },
      { type: 'stats', requestId: 1, stats: { ...stats, heapUsedBytes: undefined } },
      { type: 'stats', requestId: 1, stats: { ...stats, loopDelayP99Seconds: undefined } },
      { type: 'stats', requestId: 1, stats: { ...stats, rssBytes: -1 } },
      { type: 'heartbeat' },
      { type: 'heartbeat', responses: [0, 1.5, 0, 0, 0] },
      { type: 'fatal', code: 'E' },
      { type: 'metrics-request', requestId: '1' },
      { type: 'drain', delayMs: 0, serviceStops: false },
      { type: 'listener' },
      { cmd: 'NODE_CLUSTER' },
      'ready',
      null,
    ])
      assert.equal(isWorkerMessage(m), false, JSON.stringify(m));
  });
});

describe('isPrimaryMessage', () => {
  it('takes every message the primary sends, and refuses them incomplete', () => {
    for (const m of [
      { type: 'drain', delayMs: 0, serviceStops: true },
      { type: 'listener' },
      { type: 'collect-stats', requestId: 3 },
      { type: 'metrics-response', requestId: 3, text: null },
      { type: 'metrics-response', requestId: 3, text: '# HELP …' },
      { type: 'connection-limit', maxConnections: 945 },
    ])
      assert.equal(isPrimaryMessage(m), true, JSON.stringify(m));
    for (const m of [
      { type: 'drain' },
      { type: 'drain', delayMs: 0 },
      { type: 'collect-stats' },
      { type: 'metrics-response', requestId: 3 },
      { type: 'connection-limit', maxConnections: 0 },
      { type: 'connection-limit', maxConnections: 1.5 },
      { type: 'connection-limit', maxConnections: Number.POSITIVE_INFINITY },
      { type: 'drain', delayMs: -1, serviceStops: true },
      { type: 'drain', delayMs: Number.POSITIVE_INFINITY, serviceStops: true },
      { type: 'heartbeat', responses: [0, 0, 0, 0, 0] },
      { type: 'need-listener' },
    ])
      assert.equal(isPrimaryMessage(m), false, JSON.stringify(m));
  });
});

describe('isNativeHandle', () => {
  it("takes a passed socket (what node:net's TCP handle offers) and refuses a message's missing handle", () => {
    assert.equal(isNativeHandle({ fd: 9, close() {} }), true);
    for (const h of [undefined, null, {}, { close: 1 }, 'handle', 9])
      assert.equal(isNativeHandle(h), false, String(h));
  });
});
