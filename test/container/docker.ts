/**
 * The real Docker engine for the container tests: start it (or find it running), build the
 * image from the repository's Dockerfile, run containers published on loopback, read their
 * JSON logs, and remove everything afterwards.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Service } from '../helpers/service.js';

/** The repository root: three levels above the compiled file, or the current directory. */
export const ROOT = findRoot();
/** `../shared/container` beside the project: the local stand-ins for the official images. */
export const SHARED_CONTAINER = join(ROOT, '../shared/container');
/** One label on everything a test run creates, so cleanup removes exactly that. */
export const RUN_LABEL = 'myservice.test-run';
export const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;

function findRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [resolve(here, '../../..'), process.cwd()]) {
    if (existsSync(join(dir, 'Dockerfile')) && existsSync(join(dir, 'src/main.ts'))) return dir;
  }
  throw new Error(`no Dockerfile and src/main.ts above ${here} or in ${process.cwd()}`);
}

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly env?: Record<string, string>;
  readonly cwd?: string;
}

/** Runs a command to completion; rejects with its stderr when it fails. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      args,
      {
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, ...options.env },
        cwd: options.cwd ?? ROOT,
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(' ')} failed (${err.code ?? err.signal}): ${stderr}`));
        else resolvePromise(stdout.trim());
      },
    );
  });
}

/** `docker …`, resolving to its trimmed stdout. */
export function docker(args: readonly string[], options: RunOptions = {}): Promise<string> {
  return run('docker', args, options);
}

export interface Engine {
  /** The Node base image passed as --build-arg NODE_IMAGE. */
  readonly nodeImage: string;
  /** True when this run started dockerd, so it must stop it again. */
  readonly startedDaemon: boolean;
  /** True when nodeImage was derived from the local stand-in by this run, so it must remove it. */
  readonly derivedBase: boolean;
}

/**
 * The local stand-in with what the official image adds on top of Node: an ENTRYPOINT
 * (docker-entrypoint.sh, a shell script that execs its arguments), which the Dockerfile must
 * reset for node to be started with nothing in between. Labelled with the run, like its containers.
 */
async function withOfficialEntrypoint(standIn: string): Promise<string> {
  const tag = `myservice-test-base:${RUN_ID}`;
  const context = mkdtempSync(join(tmpdir(), 'myservice-base-'));
  try {
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM ${standIn}\nENTRYPOINT ["/bin/sh", "-c", "exec \\"$@\\"", "docker-entrypoint.sh"]\nCMD ["node"]\n`,
    );
    await docker(['build', '--quiet', '--label', `${RUN_LABEL}=${RUN_ID}`, '--tag', tag, context]);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return tag;
}

/**
 * Finds the engine running or starts it with local-node-image.sh, which also builds the local
 * stand-in for the official Node image once per machine. NODE_IMAGE overrides the base image.
 */
export async function startEngine(): Promise<Engine> {
  const running = await docker(['info'], { timeoutMs: 20_000 }).then(
    () => true,
    () => false,
  );
  const fromEnv = process.env.NODE_IMAGE?.trim();
  if (running && fromEnv) return { nodeImage: fromEnv, startedDaemon: false, derivedBase: false };
  const printed = await run(join(SHARED_CONTAINER, 'local-node-image.sh'), [], { timeoutMs: 600_000 });
  if (fromEnv) return { nodeImage: fromEnv, startedDaemon: !running, derivedBase: false };
  const standIn = printed.split('\n').pop() ?? '';
  try {
    return { nodeImage: await withOfficialEntrypoint(standIn), startedDaemon: !running, derivedBase: true };
  } catch (err) {
    await stopEngine({ nodeImage: standIn, startedDaemon: !running, derivedBase: false });
    throw err;
  }
}

/** Leaves the engine as it was found: removes a derived base, and stops the daemon if this run started it. */
export async function stopEngine(engine: Engine | undefined): Promise<void> {
  try {
    if (engine?.derivedBase) await docker(['rmi', engine.nodeImage]);
  } finally {
    if (engine?.startedDaemon) await run(join(SHARED_CONTAINER, 'local-node-image.sh'), ['stop']);
  }
}

/** The local stand-in for `nginx:stable` (built once per machine); NGINX_IMAGE overrides it. */
export async function nginxImage(): Promise<string> {
  const fromEnv = process.env.NGINX_IMAGE?.trim();
  if (fromEnv) return fromEnv;
  const printed = await run(join(SHARED_CONTAINER, 'local-nginx-image.sh'), [], { timeoutMs: 600_000 });
  return printed.split('\n').pop() ?? '';
}

/**
 * Builds the image from the repository's Dockerfile. The build stage gets a tag of its own so
 * that removeImage() can delete both chains of intermediate images the classic builder leaves.
 */
export async function buildImage(nodeImage: string): Promise<string> {
  const tag = `myservice-test:${RUN_ID}`;
  const common = ['build', '--quiet', '--build-arg', `NODE_IMAGE=${nodeImage}`];
  await docker([...common, '--target', 'build', '--tag', `${tag}-build`, ROOT], { timeoutMs: 600_000 });
  await docker([...common, '--label', `${RUN_LABEL}=${RUN_ID}`, '--tag', tag, ROOT], { timeoutMs: 600_000 });
  return tag;
}

/** Removes the image and its build stage (their untagged parents go with them). */
export async function removeImage(tag: string | undefined): Promise<void> {
  if (tag) await docker(['rmi', tag, `${tag}-build`]);
}

/** Removes every container this run labelled; returns how many there were. */
export async function removeRunContainers(): Promise<number> {
  const ids = (await docker(['ps', '-aq', '--filter', `label=${RUN_LABEL}=${RUN_ID}`]))
    .split('\n')
    .filter(Boolean);
  if (ids.length > 0) await docker(['rm', '-f', ...ids]);
  return ids.length;
}

/** A running container whose port 5000 is published on 127.0.0.1 and whose logs are followed. */
export class Container {
  readonly id: string;
  /** Its JSON log lines, read as the local tests read a process's stdout. */
  readonly service: Service;
  readonly #follower: ChildProcess;

  private constructor(id: string, port: number) {
    this.id = id;
    this.#follower = spawn('docker', ['logs', '--follow', id], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.service = new Service(this.#follower, port);
  }

  /** Follows the logs of a container started elsewhere (by Compose); it publishes no port. */
  static attach(id: string): Container {
    return new Container(id, 0);
  }

  /** `docker run -d` with `flags` before the image name; published on a random loopback port. */
  static async start(image: string, flags: readonly string[] = []): Promise<Container> {
    const id = await docker([
      'run',
      '--detach',
      '--label',
      `${RUN_LABEL}=${RUN_ID}`,
      '--publish',
      '127.0.0.1::5000',
      ...flags,
      image,
    ]);
    const address = (await docker(['port', id, '5000/tcp'])).split('\n')[0] ?? '';
    return new Container(id, Number(address.slice(address.lastIndexOf(':') + 1)));
  }

  get url(): string {
    return this.service.url;
  }

  /** The short id Docker gives the container as its hostname. */
  get shortId(): string {
    return this.id.slice(0, 12);
  }

  /** Resolves once `count` workers have logged ready since the start. */
  async waitForWorkers(count: number): Promise<void> {
    await this.service.waitForLog(
      () => this.service.logs.filter((l) => l.msg === 'worker ready').length >= count,
      `${count} × "worker ready"`,
    );
  }

  inspect(format: string): Promise<string> {
    return docker(['inspect', '--format', format, this.id]);
  }

  /** `docker stop`, timed; resolves with the wall time and the container's exit code. */
  async stop(): Promise<{ ms: number; exitCode: number }> {
    const started = performance.now();
    await docker(['stop', this.id]);
    const ms = performance.now() - started;
    return { ms, exitCode: Number(await this.inspect('{{.State.ExitCode}}')) };
  }

  kill(signal: string): Promise<string> {
    return docker(['kill', '--signal', signal, this.id]);
  }

  exec(command: readonly string[]): Promise<string> {
    return docker(['exec', this.id, ...command]);
  }

  async remove(): Promise<void> {
    await docker(['rm', '--force', '--volumes', this.id]);
    this.#follower.kill();
  }
}
