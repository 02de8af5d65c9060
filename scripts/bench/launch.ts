/** Starts each kind of target on a free port, pinned to the service's CPUs, and knows when it is ready. */
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Service } from '../../test/helpers/service.js';
import { removeScratchDir, scratchDir, spawnTracked } from './commands.js';
import { type CpuPlan, pinPrefix } from './cpu-plan.js';
import type { RunningTarget, TargetSpec } from './targets.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;
const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const SINGLE_PROCESS = fileURLToPath(new URL('../single-process.js', import.meta.url));
const GREETING_APP = fileURLToPath(new URL('./greeting-app.js', import.meta.url));
const MINIMAL_CLUSTER = fileURLToPath(new URL('./minimal-cluster.js', import.meta.url));

export interface LaunchContext {
  readonly plan: CpuPlan;
  /** The pm2-runtime script and the nginx binary, when they are compared. */
  readonly pm2Runtime?: string | undefined;
  readonly nginx?: string | undefined;
}

interface Spawned {
  readonly service: Service;
  readonly port: number;
  readonly startedAt: number;
}

/** Spawns argv on the service's CPUs with a clean environment; stdout lines are parsed as JSON logs. */
async function spawnServer(
  ctx: LaunchContext,
  argv: readonly string[],
  env: Record<string, string>,
  port?: number,
): Promise<Spawned> {
  port ??= await freePort();
  const [file, ...args] = [...pinPrefix(ctx.plan, 'service'), ...argv];
  const startedAt = performance.now();
  // The bundle's bench.sh sets LD_LIBRARY_PATH when its node needs the bundled libraries: so do the servers.
  const { LD_LIBRARY_PATH } = process.env;
  const proc = spawnTracked(file as string, args, {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...(LD_LIBRARY_PATH ? { LD_LIBRARY_PATH } : {}),
      PORT: String(port),
      HOST,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service = new Service(proc, port);
  await once(proc, 'spawn'); // rejects with the 'error' of a server that cannot be started
  return { service, port, startedAt };
}

/** Rejects after `ms` so a server that never gets ready fails its configuration instead of hanging the bench. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not ready after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves once the port accepts a connection. nginx says nothing when it is ready, so this
 * polls; the listening socket exists before its workers do, and the warm-up covers the rest.
 */
async function waitForPort(port: number, exited: Promise<unknown>): Promise<void> {
  let gone = false;
  exited.then(() => {
    gone = true;
  });
  for (;;) {
    if (gone) throw new Error(`exited before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, HOST);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function handle(
  spec: TargetSpec,
  s: Spawned,
  metrics: boolean,
  cleanup?: () => Promise<void>,
): RunningTarget {
  const url = `http://${HOST}:${s.port}/`;
  return {
    spec,
    pid: s.service.pid,
    url,
    readyMs: performance.now() - s.startedAt,
    metricsUrl: metrics ? `${url}metrics` : undefined,
    async stop() {
      const result = await s.service.stop();
      await cleanup?.();
      return result;
    },
  };
}

/** Starts the target and resolves once every serving process answers. */
export async function launch(spec: TargetSpec, ctx: LaunchContext): Promise<RunningTarget> {
  const node = process.execPath;
  switch (spec.kind) {
    case 'single': {
      const s = await spawnServer(ctx, [node, SINGLE_PROCESS], {});
      await ready(s, spec, () => s.service.waitForLog((l) => l.msg === 'listening'));
      return handle(spec, s, false);
    }
    case 'cluster': {
      const s = await spawnServer(ctx, [node, MAIN], {
        WORKERS: String(spec.workers),
        BALANCE: spec.balance ?? 'reuseport',
        ...spec.env,
      });
      await ready(s, spec, () => s.service.waitForMsgCount('worker ready', spec.workers));
      return handle(spec, s, spec.env?.METRICS !== 'off');
    }
    case 'pm2':
      return launchPm2(spec, ctx);
    case 'minimal': {
      const s = await spawnServer(ctx, [node, MINIMAL_CLUSTER], { WORKERS: String(spec.workers) });
      await ready(s, spec, () => waitForListening(s, spec.workers));
      return handle(spec, s, false);
    }
    case 'nginx':
      return launchNginx(spec, ctx);
  }
}

async function ready(s: Spawned, spec: TargetSpec, wait: () => Promise<unknown>): Promise<void> {
  try {
    await within(READY_TIMEOUT_MS, spec.label, wait());
  } catch (err) {
    await s.service.stop();
    throw new Error(`${spec.label}: ${(err as Error).message}\n${s.service.dump()}`);
  }
}

/** Waits for `workers` "listening" lines of greeting-app.ts on the server's stdout. */
async function waitForListening(s: Spawned, workers: number): Promise<void> {
  const count = () => s.service.logs.filter((l) => l.msg === 'listening').length;
  await s.service.waitForLog(() => count() >= workers, `${workers} greeting servers listening`);
}

async function launchPm2(spec: TargetSpec, ctx: LaunchContext): Promise<RunningTarget> {
  if (!ctx.pm2Runtime) throw new Error('pm2-runtime not found');
  // PM2_HOME in a temporary directory: no daemon state shared with the user's own pm2.
  const home = scratchDir('bench-pm2-');
  const s = await spawnServer(
    ctx,
    [process.execPath, ctx.pm2Runtime, '-i', String(spec.workers), GREETING_APP],
    {
      PM2_HOME: home,
      HOME: home,
    },
  );
  // pm2-runtime passes each app instance's stdout through.
  await ready(s, spec, () => waitForListening(s, spec.workers));
  return handle(spec, s, false, () => removeScratchDir(home));
}

/** nginx answering the same bytes as our greeting ($pid is the worker's pid, as ours is). */
function nginxConf(prefix: string, port: number, workers: number): string {
  return `daemon off;
master_process on;
worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  # Node keeps a connection for any number of requests; nginx closes after 1000 by default.
  keepalive_requests 1000000;
  keepalive_timeout 5s;
  server {
    listen ${HOST}:${port} backlog=511;
    default_type text/plain;
    charset utf-8;
    location / {
      add_header X-Content-Type-Options nosniff;
      return 200 "Hello, Docker world from ${hostname()} (pid $pid).\\n";
    }
  }
}
`;
}

async function launchNginx(spec: TargetSpec, ctx: LaunchContext): Promise<RunningTarget> {
  if (!ctx.nginx) throw new Error('nginx not found');
  const prefix = scratchDir('bench-nginx-');
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConf(prefix, port, spec.workers));
  // -e: the error log before the config is read, which is otherwise /var/log/nginx.
  const s = await spawnServer(ctx, [ctx.nginx, '-p', prefix, '-c', conf, '-e', 'stderr'], {}, port);
  await ready(s, spec, () => waitForPort(port, s.service.exited));
  return handle(spec, s, false, () => removeScratchDir(prefix));
}
