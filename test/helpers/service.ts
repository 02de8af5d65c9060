/** Starts the compiled service in a real process and reads its JSON log lines (Puma's integration helpers, in spirit). */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { afterEach } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ExitCode } from '../../src/exit-codes.js';

export const MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly pid: number;
  readonly [field: string]: unknown;
}

/** A free TCP port on loopback. With reuseport, port 0 would give every worker its own port. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

export class Service {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: { test: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  #buffer = '';

  readonly proc: ChildProcess;
  readonly port: number;

  constructor(proc: ChildProcess, port: number) {
    this.proc = proc;
    this.port = port;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.#read(chunk));
    proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk));
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #read(chunk: string): void {
    this.#buffer += chunk;
    let nl = this.#buffer.indexOf('\n');
    while (nl !== -1) {
      const text = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      nl = this.#buffer.indexOf('\n');
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { level: 0, msg: text, pid: 0 };
      }
      this.logs.push(line);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(line)) return true;
        w.resolve(line);
        return false;
      });
    }
  }

  /**
   * Resolves with the first log line (past or future) that matches; rejects with the logs if the
   * process exits first or none comes within `ms` (a hung service fails with its logs, not a bare
   * test timeout).
   */
  waitForLog(test: (l: LogLine) => boolean, what = 'log line', ms = 60_000): Promise<LogLine> {
    const seen = this.logs.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${what} within ${ms} ms; logs:\n${this.dump()}`));
      }, ms).unref();
      const waiter = {
        test,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.#waiters.push(waiter);
      this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`service exited (${code ?? signal}) before ${what}; logs:\n${this.dump()}`));
      });
    });
  }

  /** Waits for `count` further log lines with this msg (counting from now). */
  async waitForMsgCount(msg: string, count: number): Promise<void> {
    const base = this.logs.filter((l) => l.msg === msg).length;
    await this.waitForLog(
      () => this.logs.filter((l) => l.msg === msg).length >= base + count,
      `${count}× "${msg}"`,
    );
  }

  /** The primary's child processes now: its workers, one being forked among them. */
  childPids(): number[] {
    const text = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8').trim();
    return text === '' ? [] : text.split(' ').map(Number);
  }

  /** Every worker pid any log line named, exited or not. */
  workerPidsEverLogged(): number[] {
    return [...new Set(this.logs.map((l) => l.workerPid).filter((p): p is number => typeof p === 'number'))];
  }

  /** Pids of workers that logged ready and have not exited since. */
  liveWorkerPids(): number[] {
    const live = new Set<number>();
    for (const l of this.logs) {
      if (l.msg === 'worker ready') live.add(l.workerPid as number);
      else if (typeof l.workerPid === 'number' && l.code !== undefined) live.delete(l.workerPid);
    }
    return [...live];
  }

  signal(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited after `ms`. */
  async stop(ms = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
      const result = await this.exited;
      clearTimeout(timer);
      return result;
    }
    return this.exited;
  }

  dump(): string {
    return [...this.logs.map((l) => JSON.stringify(l)), ...this.stderr].join('\n');
  }
}

export interface StartOptions {
  readonly env?: Record<string, string>;
  /** Wait for this many 'worker ready' lines (default: WORKERS from env, or none). */
  readonly ready?: number;
  readonly port?: number;
  readonly args?: readonly string[];
  /** A shell prefix run before node (`$0 "$@"` is the node command), e.g. to join a cgroup. */
  readonly wrap?: string;
  /** In a process group of its own (its pgid is its pid), for signals sent to the whole group. */
  readonly detached?: boolean;
}

/** Spawns `node dist/src/main.js` with a clean environment plus `env`, on a free port. */
export function startService(options: StartOptions = {}): Promise<Service> {
  return spawnUntilReady(options, () => {});
}

/**
 * Spawns the service and waits until it is ready; `record` sees each process at once. A port from
 * freePort() can be taken before the service binds it (by another program, or as the local port
 * of an outgoing connection): that service exits 3 with EADDRINUSE and another starts on a new
 * port, twice at most. Only while waiting for ready workers: with `ready: 0` the caller sees the exit.
 */
async function spawnUntilReady(options: StartOptions, record: (service: Service) => void): Promise<Service> {
  for (let attempt = 1; ; attempt++) {
    const service = await spawnService(options);
    record(service);
    try {
      await waitUntilReady(service, options);
      return service;
    } catch (err) {
      const portTaken =
        options.port === undefined &&
        service.proc.exitCode === ExitCode.bind &&
        service.logs.some((l) => l.code === 'EADDRINUSE');
      if (!portTaken || attempt === 3) throw err;
    }
  }
}

/** The service process, not yet ready. */
async function spawnService(options: StartOptions): Promise<Service> {
  const port = options.port ?? (await freePort());
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    PORT: String(port),
    HOST: '127.0.0.1',
    ...options.env,
  };
  const argv = [process.execPath, MAIN, ...(options.args ?? [])];
  const [file, args] = options.wrap
    ? ['/bin/sh', ['-c', options.wrap, ...argv]]
    : [process.execPath, argv.slice(1)];
  const proc = spawn(file as string, args as string[], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  return new Service(proc, port);
}

async function waitUntilReady(service: Service, options: StartOptions): Promise<void> {
  const ready = options.ready ?? (options.env?.WORKERS ? Number(options.env.WORKERS) : 0);
  if (ready > 0) await service.waitForMsgCount('worker ready', ready);
}

/** Resolves as soon as `test()` holds, checked at every turn of the event loop; throws after `ms`. */
export async function pollUntil(test: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await setImmediate();
  }
}

/**
 * True while a process with this pid exists and has not exited: a zombie (state Z) waits only for
 * its parent, or PID 1, to reap it, which is not the service's doing. But the leader of a killed
 * Node process shows Z while its other threads (V8's, libuv's) are still exiting, and those still
 * hold its descriptors: a listening socket stays open until the last of them is gone (seen in 80
 * of 100 SIGKILLs of a process with busy threads). So a zombie counts as exited once it is its
 * process's only thread.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
  try {
    // The state follows the command name in parentheses, which may itself hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z' || readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false; // gone between the two looks
  }
}

/**
 * A startService for one test file: every service it started is stopped after each test, and the
 * test fails if its primary or any worker it logged is still alive (no orphans, ever).
 */
export function servicesStoppedAfterEach(): (options?: StartOptions) => Promise<Service> {
  const started: Service[] = [];
  afterEach(async () => {
    const services = started.splice(0);
    // Every one stopped before any is judged, so one failure leaves no other running.
    await Promise.all(services.map((service) => service.stop()));
    const left = services.flatMap((service) =>
      [service.pid, ...service.workerPidsEverLogged()].filter(isAlive),
    );
    // Killed before failing: a stopped worker left behind would keep the test run from ending.
    for (const pid of left) process.kill(pid, 'SIGKILL');
    assert.deepEqual(left, [], `pids left: ${left.join(', ')}`);
  });
  // Recorded before it is ready: one that never gets there is stopped all the same.
  return (options = {}) => spawnUntilReady(options, (service) => started.push(service));
}
