/** Issue 6: health, readiness and metrics that see every worker. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { parseConfig } from '../src/config.js';
import { renderMetrics } from '../src/primary/metrics.js';
import { RequestStats } from '../src/worker/request-stats.js';
import { createGreetingServer, type Readiness } from '../src/worker/server.js';
import { greetingPid } from './helpers/load.js';
import { parseExposition, total } from './helpers/prometheus.js';
import { servicesStoppedAfterEach } from './helpers/service.js';

const start = servicesStoppedAfterEach();

async function get(url: string): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const res = await request(url, { reset: true });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

describe('health and readiness of one worker (in process)', () => {
  it('/healthz is 200 in every state; /readyz is 503 while starting or draining, 200 when ready', async () => {
    let state: Readiness = 'starting';
    const server = createGreetingServer({
      hostname: 'test',
      pid: process.pid,
      limits: parseConfig({}).http,
      stats: new RequestStats(),
      readiness: () => state,
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const expected: [Readiness, number, string][] = [
        ['starting', 503, 'starting\n'],
        ['ready', 200, 'ready\n'],
        ['draining', 503, 'draining\n'],
      ];
      for (const [s, status, body] of expected) {
        state = s;
        const ready = await get(`${base}/readyz`);
        assert.equal(ready.status, status, s);
        assert.equal(ready.text, body);
        assert.equal(ready.headers['cache-control'], 'no-store');
        const live = await get(`${base}/healthz`);
        assert.equal(live.status, 200);
        assert.equal(live.headers['cache-control'], 'no-store');
      }
      assert.equal((await get(`${base}/metrics`)).status, 404, 'no /metrics without an aggregator');
    } finally {
      server.close();
    }
  });
});

describe('metrics aggregated across workers', () => {
  it('the text parses strictly, per-worker counters sum to the requests sent, any worker gives the same totals', async () => {
    // Round-robin hands consecutive connections to alternating workers, so scrapes hit both.
    const service = await start({ env: { WORKERS: '2', BALANCE: 'round-robin' } });
    const sent = 57;
    const served = new Set<number>();
    for (let i = 0; i < sent; i++) served.add(await greetingPid(service.url));
    // Probes and scrapes are not counted as requests.
    await get(`${service.url}/healthz`);
    await get(`${service.url}/readyz`);
    const scrapes = [];
    for (let i = 0; i < 4; i++) scrapes.push(await get(`${service.url}/metrics`));
    for (const s of scrapes) {
      assert.equal(s.status, 200);
      assert.equal(s.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    }
    const parsed = scrapes.map((s) => parseExposition(s.text));
    const totals = parsed.map((p) => total(p, 'myservice_http_requests_total'));
    assert.deepEqual(totals, [sent, sent, sent, sent]);
    const perWorker = parsed[0]?.filter((s) => s.name === 'myservice_http_requests_total') ?? [];
    assert.deepEqual(perWorker.map((s) => Number(s.labels.pid)).sort(), [...served].sort());
    assert.ok(perWorker.every((s) => s.value > 0 && s.labels.slot !== undefined));
    assert.equal(total(parsed[0] ?? [], 'myservice_http_responses_total', { code: '2xx' }), sent);
    for (const p of parsed) {
      assert.equal(total(p, 'myservice_workers_configured'), 2);
      assert.equal(total(p, 'myservice_workers', { state: 'listening' }), 2);
      assert.equal(
        p.filter((s) => s.name === 'myservice_worker_resident_memory_bytes' && s.value > 1e6).length,
        2,
      );
      assert.equal(p.filter((s) => s.name === 'myservice_worker_event_loop_delay_seconds').length, 4);
      assert.ok(total(p, 'process_start_time_seconds') > 1.7e9);
    }
  });

  it('restart counters move after a worker is killed', async () => {
    const service = await start({ env: { WORKERS: '2' } });
    const before = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(before, 'myservice_worker_restarts_total'), 0);
    const [victim] = service.liveWorkerPids();
    process.kill(victim as number, 'SIGKILL');
    await service.waitForMsgCount('worker ready', 1);
    const after = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(after, 'myservice_worker_restarts_total', { cause: 'crash' }), 1);
    assert.ok(
      !after.some((s) => s.labels.pid === String(victim)),
      'the dead worker is gone from the metrics',
    );
  });

  it('METRICS=off: /metrics is 404', async () => {
    const service = await start({ env: { WORKERS: '1', METRICS: 'off' } });
    assert.equal((await get(`${service.url}/metrics`)).status, 404);
  });

  it('renderMetrics gives a valid exposition for a service with no worker', () => {
    const text = renderMetrics({
      supervisor: {
        phase: 'running',
        configured: 1,
        workers: [],
        restarts: { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 },
      },
      workers: [],
      primaryStartSeconds: 1,
      primaryRssBytes: 2,
    });
    assert.ok(parseExposition(text).length > 0);
  });
});

describe('readiness during shutdown', () => {
  it('after SIGTERM /readyz is 503 (greeting still served, Connection: close) until the listeners close, then exit 0', async () => {
    const service = await start({ env: { WORKERS: '2', SHUTDOWN_DELAY_MS: '1500' } });
    assert.equal((await get(`${service.url}/readyz`)).status, 200);
    service.signal('SIGTERM');
    await service.waitForMsgCount('worker draining', 2);
    for (let i = 0; i < 6; i++) {
      const ready = await get(`${service.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.text, 'draining\n');
      const greeting = await get(service.url);
      assert.equal(greeting.status, 200);
      assert.equal(greeting.headers.connection, 'close');
    }
    const { code } = await service.exited;
    assert.equal(code, 0);
    await assert.rejects(get(`${service.url}/readyz`), /ECONNREFUSED/);
  });
});
