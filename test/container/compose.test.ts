/**
 * Replicas behind nginx with Docker Compose (issue 8): scripts/deploy/docker-compose.yml run
 * for real, with the image built from the Dockerfile and the local stand-in for nginx:stable.
 * COMPOSE picks the client (default `docker-compose`, Debian's 1.29; `docker compose` works).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  buildImage,
  Container,
  docker,
  type Engine,
  nginxImage,
  ROOT,
  RUN_ID,
  removeImage,
  run,
  startEngine,
  stopEngine,
} from './docker.js';
import { type Outcome, TimedLoad } from './timed-load.js';

const COMPOSE_FILE = join(ROOT, 'scripts/deploy/docker-compose.yml');
const PROJECT = `myservice-test-${RUN_ID}`;
const [COMPOSE = 'docker-compose', ...COMPOSE_ARGS] = (process.env.COMPOSE ?? 'docker-compose').split(' ');

let engine: Engine | undefined;
let image: string | undefined;
let env: Record<string, string> = {};
let url = '';
let nginx: Container | undefined;
/** Replicas whose logs are followed, by container id. */
const apps = new Map<string, Container>();
/** Replicas killed by a test: if the restart policy brings one back, its log holds two lives. */
const killed = new Set<string>();

function compose(args: readonly string[]): Promise<string> {
  return run(COMPOSE, [...COMPOSE_ARGS, '--project-name', PROJECT, '--file', COMPOSE_FILE, ...args], {
    env,
    timeoutMs: 180_000,
  });
}

async function containerIds(service: string): Promise<string[]> {
  const ids = await docker([
    'ps',
    '--quiet',
    '--no-trunc',
    '--filter',
    `label=com.docker.compose.project=${PROJECT}`,
    '--filter',
    `label=com.docker.compose.service=${service}`,
  ]);
  return ids.split('\n').filter(Boolean);
}

/** The running replicas, each followed once and waited for until all its workers are ready. */
async function runningApps(): Promise<Container[]> {
  const running: Container[] = [];
  for (const id of await containerIds('app')) {
    if (killed.has(id)) continue;
    let app = apps.get(id);
    if (!app) {
      app = Container.attach(id);
      apps.set(id, app);
    }
    const first = await app.service.waitForLog((l) => typeof l.workers === 'number', 'the start-up line');
    await app.waitForWorkers(first.workers as number);
    running.push(app);
  }
  return running;
}

/** Load through nginx until `done` holds for the answers so far (or `ms` pass), then stops it. */
async function loadUntil(
  options: { concurrency: number; newConnections?: boolean },
  done: (o: Outcome) => boolean,
  ms: number,
  what: string,
): Promise<TimedLoad> {
  const load = new TimedLoad(url, options);
  try {
    await load.waitFor(done, ms, what);
  } finally {
    await load.stop();
  }
  return load;
}

/** Client lanes of each kind in the fault tests. */
const LANES = 4;

/**
 * Runs `fault` under load through nginx from two kinds of clients: a new connection per request
 * (what nginx could fail to retry shows there alone) and keep-alive connections to nginx.
 */
async function underLoad(
  t: TestContext,
  fault: () => Promise<void>,
): Promise<{ fresh: TimedLoad; keptAlive: TimedLoad; reloads: string[] }> {
  const fresh = new TimedLoad(url, { concurrency: LANES, newConnections: true });
  const keptAlive = new TimedLoad(url, { concurrency: LANES });
  const errorsBefore = nginxErrors().length;
  const logsBefore = nginx?.service.logs.length ?? 0;
  try {
    await Promise.all([fresh.waitForOk(200), keptAlive.waitForOk(200)]);
    await fault();
    await Promise.all([fresh.waitForOk(300), keptAlive.waitForOk(300)]);
  } finally {
    await Promise.all([fresh.stop(), keptAlive.stop()]);
  }
  // What nginx met on the way (and retried, or not): its error log during the fault.
  for (const line of nginxErrors().slice(errorsBefore)) t.diagnostic(`nginx: ${line}`);
  const reloads = (nginx?.service.logs.slice(logsBefore) ?? [])
    .map((l) => l.msg)
    .filter((msg) => msg.startsWith('start.sh'));
  for (const msg of reloads) t.diagnostic(msg);
  return { fresh, keptAlive, reloads };
}

/** nginx's error-log lines of level warn and above (its stderr, as the official image has it). */
function nginxErrors(): string[] {
  return (nginx?.service.stderr.join('') ?? '')
    .split('\n')
    .filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l));
}

/**
 * A reload closes the idle keep-alive connections of nginx's old workers, and a client that sent
 * a request on one at that moment sees the connection close (nginx never saw that request, so it
 * could not retry it). nginx itself must never have answered with an error.
 */
function assertOnlyReloadCloses(load: TimedLoad): void {
  assert.deepEqual(
    load.failures.filter((o) => o.error !== 'UND_ERR_SOCKET'),
    [],
  );
  assert.ok(load.failures.length <= LANES, load.summary());
}

async function addressOf(container: Container): Promise<string> {
  return container.inspect('{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}');
}

/** How many lines nginx has logged so far: a mark for the reloads that come after it. */
function nginxMark(): number {
  return nginx?.service.logs.length ?? 0;
}

/**
 * Resolves once start.sh has reloaded nginx, after the line at `mark`, with a replica set that
 * leaves out `ip`. Earlier lines do not count: a scale-up that reloads in two steps logs a set
 * without its second new replica, and waiting on that line once let a test end before its own
 * reload, which then closed the next test's keep-alive connections.
 */
async function reloadedWithout(ip: string, mark: number): Promise<void> {
  await nginxLineAfter(
    mark,
    (msg) => {
      const now = /is now \[([^\]]*)\]/.exec(msg)?.[1];
      return now !== undefined && !now.trim().split(' ').includes(ip);
    },
    `nginx reload without ${ip}`,
  );
}

/** Resolves with the first nginx line logged after the line at `mark` that matches `test`. */
async function nginxLineAfter(mark: number, test: (msg: string) => boolean, what: string): Promise<void> {
  const logs = nginx?.service.logs ?? [];
  await nginx?.service.waitForLog((l) => test(l.msg) && logs.indexOf(l) >= mark, what);
}

before(
  async () => {
    engine = await startEngine();
    image = await buildImage(engine.nodeImage);
    env = {
      MYSERVICE_IMAGE: image,
      NGINX_IMAGE: await nginxImage(),
      MYSERVICE_CPUS: '2',
      MYSERVICE_PUBLISH: '127.0.0.1:0',
    };
    await compose(['up', '--detach', '--scale', 'app=3']);
    url = `http://${(await compose(['port', 'nginx', '5000'])).split('\n')[0]}`;
    const [nginxId] = await containerIds('nginx');
    nginx = Container.attach(nginxId as string);
    await runningApps();
    await loadUntil({ concurrency: 1 }, (o) => o.ok, 30_000, 'greeting through nginx');
  },
  { timeout: 900_000 },
);

after(async () => {
  try {
    for (const app of apps.values()) await app.remove();
    await nginx?.remove();
    await compose(['down', '--volumes', '--remove-orphans']);
    assert.deepEqual(await containerIds('app'), []);
  } finally {
    await removeImage(image);
    await stopEngine(engine);
  }
});

/** Generous: other engineers' benchmarks share this machine's two cores. */
const TIMEOUT = { timeout: 180_000 };

describe('Compose: replicas behind nginx on one URL', () => {
  it(
    '3 replicas × 2 workers: all 6 (hostname, pid) pairs answer through the single URL',
    TIMEOUT,
    async (t) => {
      const replicas = await runningApps();
      assert.equal(replicas.length, 3);
      for (const app of replicas) {
        // The Compose file's CPU limit reaches the service, which forks a worker per CPU.
        assert.match(String(app.service.logs[0]?.workersReason), /200000\/100000 = 2 CPUs → 2 workers$/);
      }
      const expected = new Set(
        replicas.flatMap((a) => a.service.liveWorkerPids().map((p) => `${a.shortId} ${p}`)),
      );
      assert.equal(expected.size, 6);
      const seen = new Set<string>();
      const load = await loadUntil(
        { concurrency: 16, newConnections: true },
        (o) => {
          if (o.ok) seen.add(`${o.hostname} ${o.pid}`);
          return [...expected].every((pair) => seen.has(pair));
        },
        60_000,
        'all 6 (hostname, pid) pairs',
      );
      t.diagnostic(`6 pairs after ${load.outcomes.length} requests: ${load.summary()}`);
      assert.deepEqual([...load.pairs()].sort(), [...expected].sort());
      assert.deepEqual(load.failures, []);
    },
  );

  it('docker-compose up --scale app=5 adds replicas that start receiving traffic', TIMEOUT, async (t) => {
    const before = new Set(await containerIds('app'));
    const mark = nginxMark();
    const load = new TimedLoad(url, { concurrency: 8, newConnections: true });
    try {
      await load.waitForOk(200);
      await compose(['up', '--detach', '--scale', 'app=5']);
      const added = (await runningApps()).filter((a) => !before.has(a.id));
      assert.equal(added.length, 2);
      const hosts = new Set(added.map((a) => a.shortId));
      const started = performance.now();
      await load.waitFor(
        (o) => o.ok && hosts.delete(o.hostname as string) && hosts.size === 0,
        60_000,
        'answers from both',
      );
      t.diagnostic(
        `new replicas answered ${Math.round(performance.now() - started)} ms after they were ready`,
      );
    } finally {
      await load.stop();
    }
    await nginxLineAfter(mark, (msg) => /reloading nginx$/.test(msg), 'nginx reload');
    t.diagnostic(`during the scale-up: ${load.summary()}`);
    assert.deepEqual(load.failures, []);
  });

  it(
    'docker stop of one replica under load: no request that nginx could retry is lost',
    TIMEOUT,
    async (t) => {
      const [victim] = (await runningApps()) as [Container];
      const ip = await addressOf(victim);
      let stop = { ms: 0, exitCode: -1 };
      const { fresh, keptAlive } = await underLoad(t, async () => {
        const mark = nginxMark();
        stop = await victim.stop();
        // Docker's DNS drops a stopped container; start.sh reloads nginx without it.
        await reloadedWithout(ip, mark);
      });
      t.diagnostic(`docker stop took ${Math.round(stop.ms)} ms, exit ${stop.exitCode}`);
      t.diagnostic(`new connection per request: ${fresh.summary()}; keep-alive: ${keptAlive.summary()}`);
      assert.equal(stop.exitCode, 0);
      assert.deepEqual(fresh.failures, []);
      assertOnlyReloadCloses(keptAlive);
    },
  );

  it(
    'docker kill of one replica: the service stays up, failures bounded and reported',
    TIMEOUT,
    async (t) => {
      const [victim] = (await runningApps()) as [Container];
      const ip = await addressOf(victim);
      let killedAt = 0;
      const { fresh, keptAlive } = await underLoad(t, async () => {
        const mark = nginxMark();
        killedAt = performance.now();
        killed.add(victim.id);
        await victim.kill('KILL');
        await reloadedWithout(ip, mark);
      });
      const failed = [...fresh.failures, ...keptAlive.failures];
      const when = failed.map((o) => `${Math.round(o.startedAt - killedAt)} ms`).join(', ') || 'none';
      t.diagnostic(
        `docker kill, new connection per request: ${fresh.summary()}; keep-alive: ${keptAlive.summary()}`,
      );
      t.diagnostic(`failed requests were sent at ${when} after the kill`);
      t.diagnostic(
        `the killed replica is ${await victim.inspect('{{.State.Status}}, restarts={{.RestartCount}}')}`,
      );
      // At most the requests in flight on the killed replica, one per client lane.
      assert.ok(failed.length <= LANES * 2, `${failed.length} failed`);
    },
  );

  it('rolling a replica with SIGHUP loses nothing', TIMEOUT, async (t) => {
    const [app] = (await runningApps()) as [Container];
    const old = app.service.liveWorkerPids();
    const { fresh, keptAlive, reloads } = await underLoad(t, async () => {
      await app.kill('HUP');
      await app.service.waitForLog((l) => l.msg === 'rolling restart complete', 'rolling restart complete');
    });
    const rolled = app.service.liveWorkerPids();
    t.diagnostic(
      `SIGHUP, new connection per request: ${fresh.summary()}; keep-alive: ${keptAlive.summary()}`,
    );
    assert.equal(rolled.length, old.length);
    assert.deepEqual(
      rolled.filter((p) => old.includes(p)),
      [],
    );
    // A roll changes no address, so nginx must not reload: a reload here is an earlier test's,
    // and it would close keep-alive connections under this one.
    assert.deepEqual(reloads, []);
    assert.deepEqual([...fresh.failures, ...keptAlive.failures], []);
  });

  it(
    'a replica rolled or scaled by docker kill --signal is still started again when it exits by itself',
    TIMEOUT,
    async () => {
      const [app] = (await runningApps()) as [Container];
      // Docker marks a container sent any signal by `docker kill` as stopped by hand (moby#41302),
      // which `restart: unless-stopped` then never restarts; `always` does.
      const rolled = app.service.waitForMsgCount('rolling restart complete', 1);
      await app.kill('HUP');
      await rolled;
      killed.add(app.id);
      // Its own exit, not the engine's stop: SIGTERM from inside the container, drain, exit 0.
      await app.exec(['sh', '-c', 'kill -TERM 1']);
      const deadline = Date.now() + 60_000;
      let state = '';
      while (Date.now() < deadline) {
        state = await app.inspect('restarts={{.RestartCount}} running={{.State.Running}}');
        if (state === 'restarts=1 running=true') return;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.fail(`not started again within 60 s: ${state}`);
    },
  );
});
