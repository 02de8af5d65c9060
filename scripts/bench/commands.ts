/** Runs the load generators and finds executables; every child is tracked so Ctrl-C can stop it. */
import {
  type ChildProcess,
  type ChildProcessByStdio,
  type SpawnOptionsWithStdioTuple,
  spawn,
} from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Readable } from 'node:stream';
import { processTree } from './proc-stats.js';

const running = new Set<ChildProcess>();
let stopping = false;

/**
 * Spawns a child (a server under test or a load generator) that an interrupted bench stops.
 * After Ctrl-C the rounds go on until the exit, so from then on this refuses to start any.
 */
export function spawnTracked(
  file: string,
  args: readonly string[],
  options: SpawnOptionsWithStdioTuple<'ignore', 'pipe', 'pipe'>,
): ChildProcessByStdio<null, Readable, Readable> {
  if (stopping) throw new Error('the bench is stopping');
  const child = spawn(file, args, options);
  running.add(child);
  child.once('exit', () => running.delete(child));
  // A child that could not start (EACCES, ENOENT) emits 'error' and never 'exit'.
  child.once('error', () => running.delete(child));
  return child;
}

/** Ctrl-C: SIGTERM to every child started, then no more starts; resolves once all have exited. */
export async function stopChildren(): Promise<void> {
  stopping = true;
  const children = [...running];
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (running.has(c) ? once(c, 'exit') : null)));
}

/**
 * A second Ctrl-C: SIGKILL to every child still running and to everything under it, which a
 * killed parent could no longer stop (pm2-runtime's instances, the service roll-drops runs).
 */
export function killChildren(): void {
  stopping = true;
  // The whole tree first: once a parent dies, its children are reparented out of reach.
  const pids = [...running].flatMap((child) => (child.pid === undefined ? [] : processTree(child.pid)));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  /** Sent SIGTERM when it ran past the timeout asked for. */
  readonly timedOut: boolean;
}

/** Runs argv to completion and collects its output; a spawn error (ENOENT) rejects. */
export function run(
  argv: readonly string[],
  options: { readonly timeoutMs?: number } = {},
): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('empty command');
  const child = spawnTracked(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          child.kill('SIGTERM');
        }, options.timeoutMs);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code, timedOut });
    });
  });
}

/**
 * The first executable called `name` on PATH (plus the sbin directories, where Debian puts
 * nginx but a user's PATH often does not look), or undefined.
 */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...path.split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    // X_OK alone also holds for a directory.
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Scratch directories not removed yet; one exit listener for all (one each would pile up over rounds). */
const scratch = new Set<string>();
process.once('exit', () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory removed at exit at the latest, Ctrl-C's process.exit() included. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.add(dir);
  return dir;
}

/** Keeps a scratch directory after all (it now holds results): it is no longer removed at exit. */
export function keepScratchDir(dir: string): void {
  scratch.delete(dir);
}

/** Removes a scratch directory now, once what used it has stopped. */
export async function removeScratchDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } finally {
    // Only now: an exit during the removal must still find it in the list.
    scratch.delete(dir);
  }
}
