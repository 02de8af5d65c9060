/** Where the report files go, checked before any measuring: a run must not end in a path it cannot write. */
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { OptionError } from './options.js';

export interface OutputFiles {
  readonly json: string;
  readonly svg: string;
}

/** Creates the folders and checks each file can be written; an OptionError names the option that chose it. */
export async function prepareOutputs(options: {
  readonly quick: boolean;
  readonly out: string | undefined;
  readonly json: string | undefined;
}): Promise<OutputFiles> {
  const outOption = options.out === undefined ? 'the default --out' : '--out';
  let out = options.out ?? 'scripts/results';
  if (options.out === undefined && options.quick) out = await mkdtemp(join(tmpdir(), 'bench-'));
  const files = {
    json: resolve(options.json ?? join(out, 'bench.json')),
    svg: resolve(join(out, 'bench.svg')),
  };
  await checkWritable(files.json, options.json === undefined ? outOption : '--json');
  await checkWritable(files.svg, outOption);
  return files;
}

/** The file's folder exists (created if need be) and the file is, or can be, a writable regular file. */
async function checkWritable(file: string, option: string): Promise<void> {
  try {
    await mkdir(dirname(file), { recursive: true });
    const existing = await stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (existing && !existing.isFile()) throw new Error(`${file} is not a regular file`);
    // W_OK on the folder for a new file; EROFS shows here too.
    await access(existing ? file : dirname(file), constants.W_OK);
  } catch (err) {
    throw new OptionError(`${option}: cannot write ${file}: ${(err as Error).message}`);
  }
}
