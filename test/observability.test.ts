/** Issue 6: health, readiness and metrics that see every worker. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, request } from 'undici';
import { errorFields, log, setLogLevel } from '../src/log.js';
import { ResponseTotals, renderMetrics } from '../src/primary/metrics.js';
import { LOOP_DELAY_RESOLUTION_MS, RequestStats } from '../src/worker/request-stats.js';
import type { Readiness } from '../src/worker/server.js';
import { pidOfGreeting } from './helpers/greeting.js';
import { closeInProcess, listenInProcess } from './helpers/in-process.js';
import { greetingPid } from './helpers/load.js';
import { parseExposition, type Sample, total } from './helpers/prometheus.js';
import { RawConnection } from './helpers/raw-http.js';
import { isAlive, pollUntil, servicesStoppedAfterEach } from './helpers/service.js';

const start = servicesStoppedAfterEach();

async function get(url: string): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const res = await request(url, { reset: true });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

describe('health and readiness of one worker (in process)', () => {
  it('/healthz is 200 in every state; /readyz is 503 while starting or draining, 200 when ready or retiring (the service goes on)', async () => {
    let state: Readiness = 'starting';
    const { server, port } = await listenInProcess({ readiness: () => state });
    const base = `http://127.0.0.1:${port}`;
    try {
      // The last column: whether a response closes its connection (kept-alive clients move on).
      const expected: [Readiness, number, string, boolean][] = [
        ['starting', 503, 'starting\n', false],
        ['ready', 200, 'ready\n', false],
        ['retiring', 200, 'ready\n', true],
        ['draining', 503, 'draining\n', true],
      ];
      for (const [s, status, body, closes] of expected) {
        state = s;
        const ready = await get(`${base}/readyz`);
        assert.equal(ready.status, status, s);
        assert.equal(ready.text, body);
        assert.equal(ready.headers['cache-control'], 'no-store');
        const kept = await request(base); // HTTP/1.1 with no Connection header: kept alive
        await kept.body.text();
        assert.equal(kept.headers.connection === 'close', closes, s);
        const live = await get(`${base}/healthz`);
        assert.equal(live.status, 200);
        assert.equal(live.headers['cache-control'], 'no-store');
      }
      assert.equal((await get(`${base}/metrics`)).status, 404, 'no /metrics without an aggregator');
    } finally {
      await closeInProcess(server);
    }
  });
});

describe('/metrics on one worker (in process)', () => {
  const scrape = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
  it('a scrape carries Cache-Control: no-store like every probe, and Connection: close while the worker retires or drains', async () => {
    let state: Readiness = 'ready';
    const { server, port } = await listenInProcess({
      metrics: async () => 'metric 1\n',
      readiness: () => state,
    });
    try {
      for (const [s, closes] of [
        ['ready', false],
        ['retiring', true],
        ['draining', true],
      ] as const) {
        state = s;
        const conn = await RawConnection.open(port);
        try {
          conn.write(scrape);
          const reply = await conn.reply();
          assert.deepEqual([reply.status, reply.body], [200, 'metric 1\n'], s);
          assert.deepEqual(reply.headers.get('cache-control'), ['no-store'], s);
          assert.deepEqual(reply.headers.get('connection'), [closes ? 'close' : 'keep-alive'], s);
          if (closes) assert.ok(await conn.closedWithin(1_000), `${s}: the connection stayed open`);
        } finally {
          conn.destroy();
        }
      }
    } finally {
      await closeInProcess(server);
    }
  });

  it('a kept-alive connection scrapes as often as it likes: an answered scrape no longer counts among the 8 that may wait', async () => {
    const { server, stats, port } = await listenInProcess({ metrics: async () => 'metric 1\n' });
    // Prometheus keeps its connection to a target alive from one scrape to the next.
    const conn = await RawConnection.open(port);
    try {
      for (let i = 1; i <= 20; i++) {
        conn.write(scrape);
        const reply = await conn.reply().catch((err: Error) => assert.fail(`scrape ${i}: ${err.message}`));
        assert.equal(reply.status, 200, `scrape ${i}`);
      }
      assert.equal(stats.pipeliningFloods, 0);
    } finally {
      conn.destroy();
      await closeInProcess(server);
    }
  });

  it('a scrape whose text does not come (the primary too late, or failing) gets 503, counted neither as a request nor as a response', async () => {
    for (const [what, metrics] of [
      ['late', async () => null],
      ['failing', () => Promise.reject(new Error('no text'))],
    ] as const) {
      const { server, stats, port } = await listenInProcess({ metrics });
      const conn = await RawConnection.open(port);
      try {
        conn.write(scrape);
        const reply = await conn.reply();
        assert.deepEqual([reply.status, reply.body], [503, 'metrics unavailable\n'], what);
        assert.deepEqual(reply.headers.get('cache-control'), ['no-store'], what);
        assert.equal(stats.requests, 0, what);
        assert.deepEqual(stats.responses, [0, 0, 0, 0, 0], what);
      } finally {
        conn.destroy();
        await closeInProcess(server);
      }
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
    // Every worker answered each collection: none waited out the timeout.
    assert.ok(!service.logs.some((l) => l.msg.startsWith('workers did not answer a scrape')), service.dump());
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
      const loopDelay = p.filter((s) => s.name === 'myservice_worker_event_loop_delay_seconds');
      assert.equal(loopDelay.length, 4);
      // Nearly idle workers: the delay is near 0, not the 20 ms the sampling timer waits between ticks.
      for (const s of loopDelay.filter((d) => d.labels.quantile === '0.5'))
        assert.ok(s.value < 0.01, `p50 ${s.value} s`);
      // Seconds since the epoch, as Prometheus's process collectors give it (not milliseconds).
      const startedAgo = Date.now() / 1000 - total(p, 'process_start_time_seconds');
      assert.ok(startedAgo >= 0 && startedAgo < 60, `started ${startedAgo} s ago`);
    }
  });

  it('another method on a probe path is no probe: 405, counted as a request and a 4xx response like POST /', async () => {
    const service = await start({ env: { WORKERS: '1' } });
    for (const path of ['/', '/healthz', '/readyz', '/metrics']) {
      const posted = await request(`${service.url}${path}`, { method: 'POST', body: '', reset: true });
      assert.deepEqual([posted.statusCode, posted.headers.allow], [405, 'GET, HEAD'], path);
      await posted.body.text();
    }
    const p = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(p, 'myservice_http_requests_total'), 4);
    assert.equal(total(p, 'myservice_http_responses_total', { code: '4xx' }), 4);
  });

  // A probe's included: no response to a probe is counted.
  for (const [path, counted] of [
    ['/', { '1xx': 1, '2xx': 1, requests: 1 }],
    ['/healthz', { '1xx': 0, '2xx': 0, requests: 0 }],
  ] as const) {
    it(`a 100 Continue to GET ${path} counts as a 1xx response beside the final 200, unless it is a probe's (${JSON.stringify(counted)})`, async () => {
      const service = await start({ env: { WORKERS: '1' } });
      const conn = await RawConnection.open(service.port);
      try {
        conn.write(
          `GET ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody`,
        );
        const reply = await conn.reply();
        assert.deepEqual([reply.interim, reply.status], [[100], 200]);
      } finally {
        conn.destroy();
      }
      const p = parseExposition((await get(`${service.url}/metrics`)).text);
      assert.equal(total(p, 'myservice_http_responses_total', { code: '1xx' }), counted['1xx']);
      assert.equal(total(p, 'myservice_http_responses_total', { code: '2xx' }), counted['2xx']);
      assert.equal(total(p, 'myservice_http_requests_total'), counted.requests);
    });
  }

  it("a request refused while its body is read (invalid chunking: 400, too slow: 408) counts as a request, as one refused for too much body (413) does; a probe's, as neither", async () => {
    const service = await start({
      env: { WORKERS: '1', HEADERS_TIMEOUT_MS: '500', REQUEST_TIMEOUT_MS: '1000' },
    });
    const refused = async (head: string, body: string): Promise<number> => {
      const conn = await RawConnection.open(service.port);
      try {
        conn.write(`POST / HTTP/1.1\r\nHost: x\r\n${head}\r\n\r\n${body}`);
        return (await conn.reply({ ms: 5_000 })).status;
      } finally {
        conn.destroy();
      }
    };
    assert.equal(await refused('Transfer-Encoding: chunked', 'zz\r\n'), 400);
    assert.equal(await refused('Content-Length: 5', 'ab'), 408);
    assert.equal(await refused('Content-Length: 5000000', ''), 413);
    // A probe's body refused the same ways: no request, and no response counted.
    for (const [head, body, status] of [
      ['Transfer-Encoding: chunked', 'zz\r\n', 400],
      ['Content-Length: 5', 'ab', 408],
      ['Content-Length: 5000000', '', 413],
    ] as const) {
      const conn = await RawConnection.open(service.port);
      try {
        conn.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n${head}\r\n\r\n${body}`);
        assert.equal((await conn.reply({ ms: 5_000 })).status, status);
      } finally {
        conn.destroy();
      }
    }
    const p = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(p, 'myservice_http_requests_total'), 3);
    assert.equal(total(p, 'myservice_http_responses_total', { code: '4xx' }), 3);
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

  it('no counter goes down when a worker is SIGKILLed and replaced: responses_total keeps what it served', async () => {
    const service = await start({ env: { WORKERS: '2', BALANCE: 'round-robin' } });
    const sent = 60;
    const served = new Set<number>();
    for (let i = 0; i < sent; i++) served.add(await greetingPid(service.url));
    // The primary learns a worker's counts when it scrapes: this is the victim's last report.
    const before = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(before, 'myservice_http_responses_total', { code: '2xx' }), sent);
    const victim = [...served][0] as number;
    process.kill(victim, 'SIGKILL');
    await service.waitForMsgCount('worker ready', 1);
    const after = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.ok(!after.some((s) => s.labels.pid === String(victim)), 'the dead worker is gone');
    assert.equal(total(after, 'myservice_http_responses_total', { code: '2xx' }), sent);
    // Every counter series in both scrapes (the parser holds counters to the _total suffix).
    const key = (s: Sample): string => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
    const earlier = new Map(before.map((s) => [key(s), s.value]));
    for (const s of after.filter((a) => a.name.endsWith('_total'))) {
      const was = earlier.get(key(s));
      if (was !== undefined) assert.ok(s.value >= was, `${key(s)} went from ${was} to ${s.value}`);
    }
  });

  it('scrapes that come together share one collection: a burst of 20 asks each worker once or twice, not 20 times', async (t) => {
    const service = await start({ env: { WORKERS: '2', LOG_LEVEL: 'debug' } });
    const count = (msg: string) => service.logs.filter((l) => l.msg === msg).length;
    const asked = () => count('worker stats received');
    const before = asked();
    const askedByWorkers = () => count('worker asked for the metrics text');
    const askedBefore = askedByWorkers();
    // The primary stopped until every scrape has been read by a worker, so all of them come while
    // the first waits: on a fast machine a collection could otherwise end before the next scrape.
    const primary = service.proc.pid as number;
    process.kill(primary, 'SIGSTOP');
    t.after(() => {
      if (isAlive(primary)) process.kill(primary, 'SIGCONT');
    });
    const scrapes = Promise.all(Array.from({ length: 20 }, () => get(`${service.url}/metrics`)));
    await pollUntil(() => {
      const queues = receiveQueues(service.port);
      return queues.length === 20 && queues.every((bytes) => bytes === 0);
    }, 'every scrape accepted and read by a worker');
    process.kill(primary, 'SIGCONT');
    const texts = await scrapes;
    for (const r of texts) assert.equal(r.status, 200);
    // Each worker asks once for the scrapes it holds while the primary is stopped, twice if one
    // reached its handler only after that answer (a read from the kernel and the request's
    // dispatch are not one step: seen once in CI with 3 asks). Without the workers' sharing: 20.
    const workerAsks = askedByWorkers() - askedBefore;
    assert.ok(workerAsks >= 1 && workerAsks <= 2 * 2, `the workers asked ${workerAsks} times for 20 scrapes`);
    // The primary collects once for the asks it reads together, each collection answered by both
    // workers: at most 2 answers an ask, which a primary that did not share would give too; its
    // own sharing is the next test's.
    const answers = asked() - before;
    assert.ok(answers >= 2 && answers <= 2 * workerAsks, `${answers} stats answers for ${workerAsks} asks`);
  });

  it("a scrape that comes while another's collection waits (a stopped worker) shares it: one collection for both", async (t) => {
    const service = await start({ env: { WORKERS: '3', LOG_LEVEL: 'debug' } });
    // Two kept-alive connections on two different workers, known by the pid in their greeting.
    const byPid = new Map<number, Client>();
    for (let i = 0; i < 30 && byPid.size < 2; i++) {
      const client = new Client(service.url, { pipelining: 1 });
      t.after(() => client.close());
      const greet = await client.request({ path: '/', method: 'GET' });
      byPid.set(pidOfGreeting(await greet.body.text()), client);
    }
    assert.equal(byPid.size, 2, 'two connections on two workers');
    const [[first, viaFirst], [, viaSecond]] = [...byPid] as [[number, Client], [number, Client]];
    const [stopped] = service.liveWorkerPids().filter((pid) => !byPid.has(pid)) as [number];
    process.kill(stopped, 'SIGSTOP'); // a collection waits up to 1 s for it
    t.after(() => {
      if (isAlive(stopped)) process.kill(stopped, 'SIGCONT');
    });
    const from = service.logs.length;
    const received = () => service.logs.slice(from).filter((l) => l.msg === 'worker stats received');
    const one = viaFirst.request({ path: '/metrics', method: 'GET' });
    await service.waitForLog(
      () => received().some((l) => l.workerPid === first),
      'the first collection under way',
    );
    const two = viaSecond.request({ path: '/metrics', method: 'GET' });
    const texts = await Promise.all([one, two].map(async (r) => (await r).body.text()));
    process.kill(stopped, 'SIGCONT');
    assert.equal(texts[0], texts[1]);
    assert.deepEqual([...new Set(received().map((l) => l.requestId))].length, 1, service.dump());
    // Said once, for the one collection, naming the worker left out.
    const missing = service.logs.filter((l) => l.msg.startsWith('workers did not answer a scrape in time'));
    assert.deepEqual(
      missing.map((l) => l.workerPids),
      [[stopped]],
    );
  });

  it('a scrape waiting on a stopped worker that is then killed ends at its exit: no wait for the timeout, no worker reported missing', async (t) => {
    const service = await start({ env: { WORKERS: '2', LOG_LEVEL: 'debug' } });
    // The scrape goes over a kept-alive connection to one worker; the other is stopped.
    const client = new Client(service.url, { pipelining: 1 });
    t.after(() => client.close());
    const greet = await client.request({ path: '/', method: 'GET' });
    const serving = pidOfGreeting(await greet.body.text());
    const [stopped] = service.liveWorkerPids().filter((pid) => pid !== serving) as [number];
    process.kill(stopped, 'SIGSTOP');
    t.after(() => {
      try {
        process.kill(stopped, 'SIGKILL');
      } catch {
        // Gone already, as it should be.
      }
    });
    const from = service.logs.length;
    const scrape = client.request({ path: '/metrics', method: 'GET' }).then(async (r) => {
      await r.body.text();
      return { status: r.statusCode };
    });
    // The other worker has answered: the collection now waits on the stopped one alone.
    await service.waitForLog(
      () => service.logs.slice(from).some((l) => l.msg === 'worker stats received'),
      'the other worker answered',
    );
    process.kill(stopped, 'SIGKILL');
    assert.equal((await scrape).status, 200);
    const missing = service.logs.filter((l) => l.msg.startsWith('workers did not answer a scrape'));
    assert.deepEqual(missing, [], 'the collection waited out its timeout');
  });

  it('a scrape read after a draining worker died, before its exit: answered, and the collect-stats it missed is no IPC warning', async (t) => {
    // No heartbeat during the test: a worker's channel carries only what the test provokes.
    const service = await start({
      env: {
        WORKERS: '2',
        LOG_LEVEL: 'debug',
        HEARTBEAT_INTERVAL_MS: '60000',
        HEARTBEAT_TIMEOUT_MS: '120000',
      },
    });
    const readyIn = (slot: number) =>
      service.logs.find((l) => l.msg === 'worker ready' && l.slot === slot)?.workerPid as number;
    const [staying, leaving] = [readyIn(0), readyIn(1)]; // SIGTTOU removes the last slot
    // A kept-alive connection on each worker, known by the pid in its greeting.
    const onWorker = new Map<number, RawConnection>();
    for (let i = 0; i < 40 && onWorker.size < 2; i++) {
      const conn = await RawConnection.open(service.port);
      conn.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const pid = pidOfGreeting((await conn.reply()).body);
      if (onWorker.has(pid)) conn.destroy();
      else onWorker.set(pid, conn);
    }
    t.after(() => {
      for (const conn of onWorker.values()) conn.destroy();
    });
    const [viaStaying, viaLeaving] = [onWorker.get(staying), onWorker.get(leaving)];
    assert.ok(viaStaying && viaLeaving, 'a connection on each worker');
    // A request still arriving keeps the leaving worker draining: it stays, quiet, until killed.
    viaLeaving.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab');
    const primary = service.proc.pid as number;
    t.after(() => {
      if (isAlive(primary)) process.kill(primary, 'SIGCONT');
    });
    service.signal('SIGTTOU');
    await service.waitForLog((l) => l.msg === 'worker draining' && l.pid === leaving);
    // The primary stopped with the scrape's request unread; the draining worker then dies, as at
    // the drain deadline: the primary reads the scrape first and asks the dead worker too.
    process.kill(primary, 'SIGSTOP');
    viaStaying.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    await pollUntil(() => unreadFrom(primary, staying) > 0, "the scrape's request in the primary's channel");
    process.kill(leaving, 'SIGKILL');
    await pollUntil(() => threadsLeft(leaving) === 0, "the leaving worker dead, every thread's exit done");
    process.kill(primary, 'SIGCONT');
    const scrape = await viaStaying.reply();
    assert.equal(scrape.status, 200);
    assert.match(scrape.body, /myservice_workers_configured 1/);
    await service.waitForLog((l) => l.msg === 'worker stopped' && l.workerPid === leaving);
    const missed = service.logs.filter((l) => l.msg === 'a message to a leaving worker was not delivered');
    assert.deepEqual(
      missed.map((l) => [l.workerPid, l.type]),
      [[leaving, 'collect-stats']],
      service.dump(),
    );
    assert.ok(!service.logs.some((l) => /IPC error/.test(l.msg as string)), service.dump());
  });

  it('a worker killed at the drain deadline keeps what it served in responses_total: heartbeats carry the counts', async () => {
    const service = await start({
      env: {
        WORKERS: '1',
        DRAIN_TIMEOUT_MS: '500',
        HEARTBEAT_INTERVAL_MS: '100',
        HEARTBEAT_TIMEOUT_MS: '1000',
      },
    });
    const sent = 50;
    for (let i = 0; i < sent; i++) await greetingPid(service.url);
    // A request that never finishes keeps the worker draining until it is killed.
    const slow = await RawConnection.open(service.port);
    slow.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab');
    // No scrape before: only heartbeats (the draining worker's included) tell the primary what it served.
    service.signal('SIGHUP');
    const killed = await service.waitForLog(
      (l) => l.msg === 'worker did not finish draining in time; killing it',
    );
    await service.waitForLog((l) => l.msg === 'worker replaced' && l.workerPid === killed.workerPid);
    const after = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(after, 'myservice_http_responses_total', { code: '2xx' }), sent, service.dump());
    slow.destroy();
  });

  it('a worker stopped by SIGTTOU reports its final counts: responses_total keeps all it served', async () => {
    // Heartbeats too rare to carry the counts (and the timeout at least twice them): the stopped
    // worker's counts reach the primary only as it drains.
    const service = await start({
      env: {
        WORKERS: '2',
        BALANCE: 'round-robin',
        HEARTBEAT_INTERVAL_MS: '60000',
        HEARTBEAT_TIMEOUT_MS: '120000',
      },
    });
    const sent = 40;
    for (let i = 0; i < sent; i++) await greetingPid(service.url);
    // No scrape before the stop.
    service.signal('SIGTTOU');
    await service.waitForLog((l) => l.msg === 'worker stopped');
    const after = parseExposition((await get(`${service.url}/metrics`)).text);
    assert.equal(total(after, 'myservice_http_responses_total', { code: '2xx' }), sent);
  });

  it('a worker that answers a scrape and exits before the scrape ends keeps its real slot', async (t) => {
    const service = await start({
      env: { WORKERS: '3', HEARTBEAT_TIMEOUT_MS: '10000', LOG_LEVEL: 'debug' },
    });
    // One connection, so the scrape goes to a worker known to stay (its pid is in the greeting).
    const client = new Client(service.url, { pipelining: 1 });
    t.after(() => client.close());
    const greet = await client.request({ path: '/', method: 'GET' });
    const scraper = pidOfGreeting(await greet.body.text());
    const [slow, leaver] = service.liveWorkerPids().filter((pid) => pid !== scraper) as [number, number];
    process.kill(slow, 'SIGSTOP'); // the scrape waits up to 1 s for it
    t.after(() => {
      if (isAlive(slow)) process.kill(slow, 'SIGCONT');
    });
    const answered = (l: { msg: string; workerPid?: unknown }) =>
      l.msg === 'worker stats received' && l.workerPid === leaver;
    const before = service.logs.filter(answered).length;
    const scrape = client.request({ path: '/metrics', method: 'GET' });
    await service.waitForLog(() => service.logs.filter(answered).length > before, 'the leaver answering');
    process.kill(leaver, 'SIGKILL');
    const text = await (await scrape).body.text();
    process.kill(slow, 'SIGCONT');
    const samples = parseExposition(text).filter((x) => x.labels.slot !== undefined);
    assert.ok(!samples.some((x) => x.labels.slot === '-1'), text);
    assert.ok(
      samples.some((x) => x.labels.pid === String(leaver)),
      'the leaver answered in time',
    );
  });

  it('ResponseTotals: exited workers keep their last counts, so the totals never go down', () => {
    const totals = new ResponseTotals();
    const seen: number[][] = [];
    const read = (): number[] => {
      const counts = totals.counts();
      seen.push(counts);
      return counts;
    };
    totals.add(1);
    totals.add(2);
    assert.deepEqual(read(), [0, 0, 0, 0, 0]);
    totals.record(1, [0, 30, 0, 2, 0]);
    totals.record(2, [0, 30, 0, 0, 1]);
    assert.deepEqual(read(), [0, 60, 0, 2, 1]);
    totals.retire(1); // crashed: its last report stays
    assert.deepEqual(read(), [0, 60, 0, 2, 1]);
    totals.record(1, [0, 99, 0, 0, 0]); // a report that arrives after the exit is not counted twice
    totals.add(3); // the replacement starts from 0
    assert.deepEqual(read(), [0, 60, 0, 2, 1]);
    totals.record(3, [0, 5, 0, 0, 0]);
    totals.record(2, [0, 31, 0, 0, 1]);
    assert.deepEqual(read(), [0, 66, 0, 2, 1]);
    totals.retire(2); // scaled down
    totals.retire(3); // rolled
    assert.deepEqual(read(), [0, 66, 0, 2, 1]);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]?.every((n, c) => n >= (seen[i - 1]?.[c] ?? 0)));
  });

  it("an idle worker reports an event-loop delay near 0, not the 20 ms between the sampler's ticks; a blocked loop still shows", async () => {
    const stats = new RequestStats();
    stats.watchEventLoop();
    // Not a wait for an event: the loop staying idle for ~15 ticks is what is measured.
    await sleep(15 * LOOP_DELAY_RESOLUTION_MS);
    const idle = stats.snapshot();
    // Half the tick: far from the 20 ms an unsubtracted histogram reads, with room for a busy machine.
    assert.ok(idle.loopDelayP50Seconds < 0.01, `idle p50 ${idle.loopDelayP50Seconds} s`);
    const blockedAt = performance.now();
    while (performance.now() - blockedAt < 100);
    // The tick that was due during the block records it on the next turn of the loop.
    await sleep(2 * LOOP_DELAY_RESOLUTION_MS);
    const blocked = stats.snapshot();
    assert.ok(
      blocked.loopDelayP99Seconds >= 0.06,
      `p99 after a 100 ms block ${blocked.loopDelayP99Seconds} s`,
    );
  });

  it('every request the handler answers counts once in requests_total: 400, 404, 405, 413 and 417 alike; what the parser refuses counts only as a response', async () => {
    const { server, stats, port } = await listenInProcess();
    try {
      const cases: [string, number][] = [
        ['GET / HTTP/1.1\r\n\r\n', 400], // HTTP/1.1 without Host
        ['GET / HTTP/0.9\r\nHost: x\r\n\r\n', 400],
        ['GET /nope HTTP/1.1\r\nHost: x\r\n\r\n', 404],
        ['DELETE / HTTP/1.1\r\nHost: x\r\n\r\n', 405],
        ['POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n', 413],
        ['GET / HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\n\r\n', 417],
      ];
      // Refused by llhttp before a request exists: bad header syntax, Content-Length with
      // Transfer-Encoding.
      const refused: [string, number][] = [
        ['GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400],
        [
          'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
          400,
        ],
      ];
      for (const [send, status] of [...cases, ...refused]) {
        const conn = await RawConnection.open(port);
        try {
          conn.write(send);
          assert.equal((await conn.reply()).status, status);
        } finally {
          conn.destroy();
        }
      }
      assert.equal(stats.requests, cases.length);
      assert.deepEqual(stats.responses, [0, 0, 0, cases.length + refused.length, 0]);
    } finally {
      await closeInProcess(server);
    }
  });

  it('a scrape the primary does not answer (stopped) gets 503 after 2 s, not a hang; it is answered again once the primary runs', async () => {
    const service = await start({ env: { WORKERS: '1' } });
    process.kill(service.pid, 'SIGSTOP');
    const asked = performance.now();
    const scrape = await get(`${service.url}/metrics`).finally(() => process.kill(service.pid, 'SIGCONT'));
    const waited = performance.now() - asked;
    assert.deepEqual([scrape.status, scrape.text], [503, 'metrics unavailable\n']);
    assert.ok(waited >= 1_980 && waited < 3_500, `answered after ${waited} ms`);
    assert.equal((await get(`${service.url}/metrics`)).status, 200);
  });

  it('METRICS=off: /metrics is 404', async () => {
    const service = await start({ env: { WORKERS: '1', METRICS: 'off' } });
    assert.equal((await get(`${service.url}/metrics`)).status, 404);
  });

  it('renderMetrics: the configured count is the target, not the processes; workers by state, a stopping one included', () => {
    // During a roll: 2 configured, 3 processes (a replacement starting, an old one draining).
    const text = renderMetrics({
      supervisor: {
        phase: 'running',
        configured: 2,
        workers: [
          { id: 1, slot: 0, pid: 11, state: 'stopping' },
          { id: 2, slot: 1, pid: 12, state: 'listening' },
          { id: 3, slot: 0, pid: 13, state: 'listening' },
          { id: 4, slot: 1, pid: 14, state: 'starting' },
        ],
        restarts: { crash: 0, hung: 0, boot: 0, roll: 1, scale: 0 },
        oomKills: 0,
      },
      workers: [],
      responses: [0, 0, 0, 0, 0],
      primaryStartSeconds: 1,
      primaryRssBytes: 2,
    });
    const p = parseExposition(text);
    assert.equal(total(p, 'myservice_workers_configured'), 2);
    const byState = (state: string) => total(p, 'myservice_workers', { state });
    assert.deepEqual([byState('starting'), byState('listening'), byState('stopping')], [1, 2, 1]);
  });

  it("renderMetrics: each family's TYPE, each restart under its own cause, and the same text whatever order the workers answered in", () => {
    const stats = (n: number) => ({
      requests: n,
      droppedConnections: n + 1,
      pipeliningFloods: n + 2,
      maxConnections: 10_000,
      responses: [0, n, 0, 0, 0],
      rssBytes: 1e8,
      heapUsedBytes: 1e7,
      loopDelayP50Seconds: 0.001,
      loopDelayP99Seconds: 0.002,
    });
    const input = (order: readonly number[]) => ({
      supervisor: {
        phase: 'running' as const,
        configured: 2,
        workers: [],
        restarts: { crash: 1, hung: 2, boot: 3, roll: 4, scale: 5 },
        oomKills: 6,
      },
      workers: order.map((slot) => ({ slot, pid: 100 + slot, stats: stats(10 * slot) })),
      responses: [1, 2, 3, 4, 5],
      primaryStartSeconds: 1,
      primaryRssBytes: 2,
    });
    const text = renderMetrics(input([0, 1]));
    assert.equal(renderMetrics(input([1, 0])), text);
    const types = Object.fromEntries(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => [name, type]),
    );
    const counters = [
      'myservice_http_requests_total',
      'myservice_connections_dropped_total',
      'myservice_pipelining_floods_total',
      'myservice_http_responses_total',
      'myservice_worker_restarts_total',
      'myservice_worker_oom_kills_total',
    ];
    const gauges = [
      'myservice_worker_max_connections',
      'myservice_workers_configured',
      'myservice_workers',
      'myservice_worker_resident_memory_bytes',
      'myservice_worker_heap_used_bytes',
      'myservice_worker_event_loop_delay_seconds',
      'process_start_time_seconds',
      'process_resident_memory_bytes',
    ];
    assert.deepEqual(types, {
      ...Object.fromEntries(counters.map((name) => [name, 'counter'])),
      ...Object.fromEntries(gauges.map((name) => [name, 'gauge'])),
    });
    const p = parseExposition(text);
    const causes = ['crash', 'hung', 'boot', 'roll', 'scale'];
    assert.deepEqual(
      causes.map((cause) => total(p, 'myservice_worker_restarts_total', { cause })),
      [1, 2, 3, 4, 5],
    );
    assert.equal(total(p, 'myservice_worker_oom_kills_total'), 6);
    const classes = ['1xx', '2xx', '3xx', '4xx', '5xx'];
    assert.deepEqual(
      classes.map((code) => total(p, 'myservice_http_responses_total', { code })),
      [1, 2, 3, 4, 5],
    );
  });

  it('renderMetrics gives a valid exposition for a service with no worker', () => {
    const text = renderMetrics({
      supervisor: {
        phase: 'running',
        configured: 1,
        workers: [],
        restarts: { crash: 0, hung: 0, boot: 0, roll: 0, scale: 0 },
        oomKills: 0,
      },
      workers: [],
      responses: [0, 0, 0, 0, 0],
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
    const signalled = performance.now();
    service.signal('SIGTERM');
    await service.waitForMsgCount('worker draining', 2);
    for (let i = 0; i < 6; i++) {
      const ready = await get(`${service.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.text, 'draining\n');
      // A kept-alive request (get() asks for close itself): the close is the draining server's.
      const greeting = await request(service.url);
      assert.equal(greeting.statusCode, 200);
      assert.equal(greeting.headers.connection, 'close');
      await greeting.body.text();
    }
    const { code } = await service.exited;
    assert.equal(code, 0);
    // A lower bound: the delay was waited, not only announced.
    assert.ok(performance.now() - signalled >= 1500, 'stopped before SHUTDOWN_DELAY_MS');
    await assert.rejects(get(`${service.url}/readyz`), /ECONNREFUSED/);
  });
});

describe('readiness during a rolling restart', () => {
  it('a worker leaving in a roll answers /readyz 200 on its kept-alive connections, with Connection: close; 503 once the service stops too', async (t) => {
    const service = await start({ env: { WORKERS: '1' } });
    // Two kept-alive connections on the one worker: one asks during the roll, one after SIGTERM.
    const [during, after] = [await RawConnection.open(service.port), await RawConnection.open(service.port)];
    t.after(() => {
      during.destroy();
      after.destroy();
    });
    const pids = [];
    for (const conn of [during, after]) {
      conn.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      pids.push(pidOfGreeting((await conn.reply()).body));
    }
    const old = pids[0];
    assert.equal(pids[1], old);
    service.signal('SIGHUP');
    await service.waitForLog((l) => l.msg === 'worker draining' && l.pid === old);
    // Each asks within the grace an idle connection gets for one last request (500 ms).
    during.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
    const ready = await during.reply();
    assert.deepEqual(
      [ready.status, ready.body, ready.headers.get('connection')],
      [200, 'ready\n', ['close']],
    );
    service.signal('SIGTERM');
    await service.waitForLog((l) => l.msg === 'worker draining as the service stops' && l.pid === old);
    after.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
    const stopping = await after.reply();
    assert.deepEqual(
      [stopping.status, stopping.body, stopping.headers.get('connection')],
      [503, 'draining\n', ['close']],
    );
    assert.equal((await service.exited).code, 0);
  });
});

describe('logs', () => {
  it("an error's fields: its type, message, stack and errno code; a thrown non-error as text", () => {
    const err = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    const { err: fields } = errorFields(err) as { err: Record<string, unknown> };
    assert.deepEqual(
      [fields.type, fields.message, fields.code, typeof fields.stack],
      ['Error', 'listen EADDRINUSE', 'EADDRINUSE', 'string'],
    );
    assert.deepEqual(errorFields('boom'), { err: { type: 'string', message: 'boom' } });
  });

  it("lines carry pino's numeric levels (what pino-pretty renders), and LOG_LEVEL drops only the levels below it", () => {
    const written: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => {
      written.push(chunk);
      return true;
    }) as typeof process.stdout.write;
    const levels = () =>
      written.splice(0).map((line) => (JSON.parse(line) as { level: number; msg: string }).level);
    const all = ['debug', 'info', 'warn', 'error', 'fatal'] as const;
    try {
      setLogLevel('debug');
      for (const level of all) log(level, `a ${level} line`);
      const atDebug = levels();
      setLogLevel('warn');
      for (const level of all) log(level, `a ${level} line`);
      const atWarn = levels();
      process.stdout.write = write;
      assert.deepEqual(atDebug, [20, 30, 40, 50, 60]);
      assert.deepEqual(atWarn, [40, 50, 60]);
    } finally {
      process.stdout.write = write;
      setLogLevel('info');
    }
  });

  it('LOG_LEVEL reaches the workers: at warn, a start and a stop log nothing below warn from any process', async () => {
    const service = await start({ env: { WORKERS: '1', LOG_LEVEL: 'warn' }, ready: 0 });
    // 'worker ready' is an info line, so readiness is asked of /readyz, as an orchestrator would.
    for (;;) {
      const ready = await get(`${service.url}/readyz`).catch(() => undefined);
      if (ready?.status === 200) break;
      assert.equal(service.proc.exitCode, null, service.dump());
      await sleep(20); // a probe's period: connects refused in a hot loop would take a core
    }
    service.signal('SIGTERM');
    assert.equal((await service.exited).code, 0);
    // The worker's own 'worker draining' (info) would be the first to show.
    assert.deepEqual(
      service.logs.filter((l) => l.level < 40),
      [],
    );
  });

  it("stdout's reader gone (EPIPE): each process says so once on stderr and the service keeps serving; SIGTERM exits 0", async () => {
    const service = await start({ env: { WORKERS: '2' } });
    const primary = service.pid;
    const workers = service.liveWorkerPids();
    service.proc.stdout?.destroy();
    const jsonLines = (): Record<string, unknown>[] =>
      service.stderr
        .join('')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const stderrFrom = (pid: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (!jsonLines().some((l) => l.pid === pid)) return;
          service.proc.stderr?.off('data', check);
          resolve();
        };
        service.proc.stderr?.on('data', check);
        check();
      });
    // A roll logs at once: its first line is the write that fails.
    service.signal('SIGHUP');
    await Promise.race([
      stderrFrom(primary),
      service.exited.then(({ code, signal }) =>
        assert.fail(`the service exited (${code ?? signal}); stderr: ${service.stderr.join('')}`),
      ),
    ]);
    const line = jsonLines().find((l) => l.pid === primary);
    assert.equal(line?.code, 'EPIPE');
    assert.match(line?.msg as string, /^stdout failed: log lines are dropped from now on/);
    await greetingPid(service.url);
    assert.deepEqual(await service.stop(), { code: 0, signal: null });
    // The first workers logged their drain in the roll: each said so once and left as planned (one
    // that died of the failed write would have said nothing: its last words go to stdout too).
    const from = jsonLines().map((l) => l.pid as number);
    for (const pid of [primary, ...workers])
      assert.equal(from.filter((p) => p === pid).length, 1, `stderr: ${service.stderr.join('')}`);
  });
});

/** Unread bytes of each server-side connection on `port`, accepted or still queued, from ss. */
function receiveQueues(port: number): number[] {
  // ss -t: Recv-Q Send-Q Local Peer
  return execFileSync('ss', ['-tnH', 'state', 'established', `sport = :${port}`], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

/** Bytes `from` has sent to `pid` over their unix socket pair (an IPC channel) that `pid` has not read, from ss. */
function unreadFrom(pid: number, from: number): number {
  // ss -x: Netid State Recv-Q Send-Q Local * Inode Peer * Inode Process
  const sockets = execFileSync('ss', ['-xpH'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.startsWith('u_str'))
    .map((line) => {
      const [, , recvQ, , , inode, , peer] = line.trim().split(/\s+/);
      return { recvQ: Number(recvQ), inode, peer, line };
    });
  const theirs = new Set(sockets.filter((s) => s.line.includes(`pid=${from},`)).map((s) => s.inode));
  return sockets
    .filter((s) => s.line.includes(`pid=${pid},`) && theirs.has(s.peer))
    .reduce((sum, s) => sum + s.recvQ, 0);
}

/**
 * Threads of `pid` still exiting. A process's main thread shows as a zombie before its other
 * threads (libuv's, V8's) have finished exiting, and until the last has, its files (its IPC
 * channel) are still open.
 */
function threadsLeft(pid: number): number {
  if (isAlive(pid)) return Number.POSITIVE_INFINITY;
  try {
    return readdirSync(`/proc/${pid}/task`).length - 1;
  } catch {
    return 0; // reaped
  }
}
