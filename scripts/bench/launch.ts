/** Starts each kind of target on a free port, pinned to the service's CPUs, and knows when it is ready. */
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Service } from '../../test/helpers/service.js';
import { removeScratchDir, scratchDir, spawnTracked } from './commands.js';
import { type CpuPlan, pinPrefix } from './cpu-plan.js';
import { within } from './deadline.js';
import { listensAlone } from './listener.js';
import { printable } from './printable.js';
import type { RunningTarget, TargetSpec } from './targets.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;
/** Ports tried per start: freePort()'s port can be taken before the server binds it. */
const PORT_ATTEMPTS = 3;
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

/** A target that did not get ready; `portTaken` when its port was in use, so another may do. */
export class StartError extends Error {
  readonly code = 'ERR_BENCH_START';
  override name = 'StartError';
  readonly portTaken: boolean;
  constructor(message: string, portTaken: boolean) {
    super(message);
    this.portTaken = portTaken;
  }
}

/** Pure: whether a failed server's output says its address was in use (Node's code, nginx's strerror). */
export function portTaken(output: string): boolean {
  return /EADDRINUSE|Address already in use/.test(output);
}

/**
 * Pure: the start failure's message with the server's output once, made printable. The test
 * helper's waitForLog puts the output it had at the exit in its message; the output read now,
 * which may have more, replaces it.
 */
export function startFailure(label: string, message: string, output: string): string {
  const reason = message.split('; logs:\n')[0];
  return output === '' ? `${label}: ${reason}` : `${label}: ${reason}\n${printable(output)}`;
}

/** Spawns argv on the service's CPUs with a clean environment; stdout lines are parsed as JSON logs. */
async function spawnServer(
  ctx: LaunchContext,
  argv: readonly string[],
  env: Record<string, string>,
  port: number,
): Promise<Spawned> {
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

/**
 * Resolves once the server's own socket listens on the port and no other does. nginx says nothing
 * when it is ready, so this polls; the listening socket exists before its workers do, and the
 * warm-up covers the rest.
 */
async function waitForListener(s: Spawned): Promise<void> {
  let gone = false;
  s.service.exited.then(() => {
    gone = true;
  });
  while (!listensAlone(s.service.pid, s.port)) {
    if (gone) throw new Error(`exited before listening on ${s.port}`);
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
    exitStatus() {
      const { exitCode, signalCode } = s.service.proc;
      return exitCode !== null ? String(exitCode) : (signalCode ?? undefined);
    },
    async stop() {
      const result = await s.service.stop();
      await cleanup?.();
      return result;
    },
  };
}

/**
 * Starts the target on a free port and resolves once every serving process answers; a port taken
 * before the server bound it costs a retry on another, not the round (as the tests' spawnUntilReady).
 */
export async function launch(
  spec: TargetSpec,
  ctx: LaunchContext,
  pickPort: () => Promise<number> = freePort,
): Promise<RunningTarget> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchOn(spec, ctx, await pickPort());
    } catch (err) {
      if (!(err instanceof StartError && err.portTaken) || attempt === PORT_ATTEMPTS) throw err;
    }
  }
}

async function launchOn(spec: TargetSpec, ctx: LaunchContext, port: number): Promise<RunningTarget> {
  const node = process.execPath;
  switch (spec.kind) {
    case 'single': {
      const s = await spawnServer(ctx, [node, SINGLE_PROCESS], {}, port);
      await ready(s, spec, () => s.service.waitForLog((l) => l.msg === 'listening'));
      return handle(spec, s, false);
    }
    case 'cluster': {
      const env = { WORKERS: String(spec.workers), BALANCE: spec.balance ?? 'reuseport', ...spec.env };
      const s = await spawnServer(ctx, [node, MAIN], env, port);
      await ready(s, spec, () => s.service.waitForMsgCount('worker ready', spec.workers));
      return handle(spec, s, spec.env?.METRICS !== 'off');
    }
    case 'pm2':
      return launchPm2(spec, ctx, port);
    case 'minimal': {
      const s = await spawnServer(ctx, [node, MINIMAL_CLUSTER], { WORKERS: String(spec.workers) }, port);
      await ready(s, spec, async () => {
        await waitForListening(s, spec.workers);
        // Its workers bind with SO_REUSEPORT, which the kernel grants beside a foreign SO_REUSEPORT
        // listener of the same user: that one would share the load. Our service probes for it itself.
        if (!listensAlone(s.service.pid, port))
          throw new StartError(`port ${port} has a listener of another process too`, true);
      });
      return handle(spec, s, false);
    }
    case 'nginx':
      return launchNginx(spec, ctx, port);
  }
}

async function ready(
  s: Spawned,
  spec: TargetSpec,
  wait: () => Promise<unknown>,
  cleanup?: () => Promise<void>,
): Promise<void> {
  try {
    // A server that never gets ready fails its configuration instead of hanging the bench.
    await within(READY_TIMEOUT_MS, wait(), () => `not ready within ${READY_TIMEOUT_MS} ms`);
  } catch (err) {
    await s.service.stop();
    await cleanup?.();
    const output = s.service.dump();
    const taken = (err instanceof StartError && err.portTaken) || portTaken(output);
    throw new StartError(startFailure(spec.label, (err as Error).message, output), taken);
  }
}

/** Waits for `workers` "listening" lines of greeting-app.ts on the server's stdout. */
async function waitForListening(s: Spawned, workers: number): Promise<void> {
  const count = () => s.service.logs.filter((l) => l.msg === 'listening').length;
  await s.service.waitForLog(() => count() >= workers, `${workers} greeting servers listening`);
}

async function launchPm2(spec: TargetSpec, ctx: LaunchContext, port: number): Promise<RunningTarget> {
  if (!ctx.pm2Runtime) throw new Error('pm2-runtime not found');
  // PM2_HOME in a temporary directory: no daemon state shared with the user's own pm2.
  const home = scratchDir('bench-pm2-');
  const s = await spawnServer(
    ctx,
    [process.execPath, ctx.pm2Runtime, '-i', String(spec.workers), GREETING_APP],
    { PM2_HOME: home, HOME: home },
    port,
  );
  const cleanup = () => removeScratchDir(home);
  // pm2-runtime passes each app instance's stdout through.
  await ready(s, spec, () => waitForListening(s, spec.workers), cleanup);
  return handle(spec, s, false, cleanup);
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

async function launchNginx(spec: TargetSpec, ctx: LaunchContext, port: number): Promise<RunningTarget> {
  if (!ctx.nginx) throw new Error('nginx not found');
  const prefix = scratchDir('bench-nginx-');
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConf(prefix, port, spec.workers));
  // -e: the error log before the config is read, which is otherwise /var/log/nginx.
  const s = await spawnServer(ctx, [ctx.nginx, '-p', prefix, '-c', conf, '-e', 'stderr'], {}, port);
  const cleanup = () => removeScratchDir(prefix);
  await ready(s, spec, () => waitForListener(s), cleanup);
  return handle(spec, s, false, cleanup);
}
