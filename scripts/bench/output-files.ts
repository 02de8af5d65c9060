/** Where the report files go, checked before any measuring: a run must not end in a path it cannot write. */
import { rmSync } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from './commands.js';
import { OptionError } from './options.js';

/**
 * A plain run's folder: the project's git-ignored bench-results/, found from this file rather
 * than the working directory. The committed reference results in scripts/results are written
 * only when asked for (--out scripts/results, or --report to redraw them).
 */
export const DEFAULT_OUT = resolve(fileURLToPath(new URL('../../../bench-results', import.meta.url)));

export interface OutputFiles {
  readonly json: string;
  readonly svg: string;
  /** The temporary folder of a --quick run, removed at exit unless kept once the files are in it. */
  readonly temporaryDir?: string;
}

/** Pure: the chart's path beside a JSON report, named after it (x.json → x.svg). */
export function svgBeside(json: string): string {
  return `${json.replace(/\.json$/i, '')}.svg`;
}

/**
 * Creates the folders and checks each file can be written; an OptionError names the option that
 * chose it. --out DIR holds both files; --json alone puts the chart beside the JSON; with neither,
 * DEFAULT_OUT, or a temporary folder for --quick.
 */
export async function prepareOutputs(
  options: {
    readonly quick: boolean;
    readonly out: string | undefined;
    readonly json: string | undefined;
  },
  defaultOut: string = DEFAULT_OUT,
): Promise<OutputFiles> {
  const temporaryDir =
    options.out === undefined && options.json === undefined && options.quick
      ? scratchDir('bench-')
      : undefined;
  const out = options.out ?? temporaryDir ?? defaultOut;
  const json = resolve(options.json ?? join(out, 'bench.json'));
  const svg =
    options.out === undefined && options.json !== undefined ? svgBeside(json) : resolve(out, 'bench.svg');
  const outOption =
    options.out !== undefined ? '--out' : options.json !== undefined ? '--json' : 'the default --out';
  await prepareFile(json, options.json === undefined ? outOption : '--json');
  // prepareFile passes a folder not made yet: the chart's own path, or one of its folders.
  if (json === svg || svg.startsWith(`${json}/`)) {
    const where = json === svg ? 'the chart' : 'a folder of the chart';
    throw new OptionError(`--json: ${json} is ${where} (${svg}): give the JSON a path of its own`);
  }
  await prepareFile(svg, outOption);
  return { json, svg, ...(temporaryDir ? { temporaryDir } : {}) };
}

/**
 * The file's folder exists (created if need be) and the file is, or can be, a writable regular
 * file; an OptionError names the option that chose the path.
 */
export async function prepareFile(file: string, option: string): Promise<void> {
  try {
    await makeFolder(dirname(file));
    const existing = await stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (existing && !existing.isFile()) throw new Error(`${file} is not a regular file`);
    // The file is replaced by a rename (writeWhole), so it is the folder that must take a new
    // file: made and removed here, since access(W_OK) says yes to root anywhere (/proc too).
    const probe = partialPath(file);
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (err) {
    throw new OptionError(`${option}: cannot write ${file}: ${(err as Error).message}`);
  }
}

/**
 * mkdir -p. Node's `recursive: true` never returns where a folder exists but a child cannot be
 * made in it with ENOENT (under /proc, or a dangling symlink): it makes the parent and tries the
 * child again, forever. Here a child still missing once its parent exists is the error.
 */
async function makeFolder(folder: string): Promise<void> {
  try {
    await mkdir(folder);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return; // a file there fails on the next step with ENOTDIR
    if (code !== 'ENOENT' || dirname(folder) === folder) throw err;
    await makeFolder(dirname(folder));
    await mkdir(folder).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}

/** Where writeWhole writes `file` before renaming it into place. */
function partialPath(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.partial`);
}

/** Temporary files not yet renamed into place: a stop signal's exit removes them. */
const partials = new Set<string>();
let removeOnExit = false;

/**
 * Writes a report's files through temporary files in their folders, then renames them into place
 * together: a signal or a full disk in the middle leaves the previous files whole (and the JSON
 * and its chart of the same run), never a truncated one, and no temporary file behind.
 */
export async function writeWhole(files: readonly (readonly [path: string, data: string])[]): Promise<void> {
  if (!removeOnExit) {
    removeOnExit = true;
    process.on('exit', () => {
      for (const partial of partials) rmSync(partial, { force: true });
    });
  }
  const written = files.map(([file, data]) => ({
    file,
    data,
    partial: partialPath(file),
  }));
  try {
    for (const { partial, data } of written) {
      partials.add(partial);
      await writeFile(partial, data);
    }
    for (const { partial, file } of written) {
      await rename(partial, file);
      partials.delete(partial);
    }
  } finally {
    for (const { partial } of written) {
      if (!partials.delete(partial)) continue;
      await rm(partial, { force: true });
    }
  }
}
