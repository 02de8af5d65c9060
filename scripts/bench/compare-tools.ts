/** The alternatives --compare names, located before anything is measured. */
import { findExecutable } from './commands.js';
import { type BenchOptions, OptionError } from './options.js';
import type { CompareTool } from './targets.js';

const HOW_TO_GET: Readonly<Record<'pm2' | 'nginx', string>> = {
  pm2: 'npm install --prefix /tmp/pm2 pm2, then --compare pm2=/tmp/pm2/node_modules/.bin/pm2-runtime',
  nginx: 'Debian/Ubuntu: apt-get install nginx',
};

/**
 * What each compared configuration runs: a binary's path, or what it is. A comparison asked for
 * that cannot run is an OptionError: a run without the row it was started for is a wasted run.
 */
export function findCompared(
  compare: BenchOptions['compare'],
  find: (name: string) => string | undefined = findExecutable,
): Map<CompareTool, string> {
  const found = new Map<CompareTool, string>();
  for (const { tool, path } of compare) {
    if (tool === 'metrics-off') found.set(tool, 'METRICS=off');
    else if (tool === 'minimal') found.set(tool, 'scripts/bench/minimal-cluster.ts');
    else {
      const name = path ?? (tool === 'pm2' ? 'pm2-runtime' : 'nginx');
      const located = find(name);
      if (!located) {
        const where =
          path === undefined
            ? `${name} is not on PATH (nor in /usr/local/sbin, /usr/sbin, /sbin)`
            : `${path} is not an executable file`;
        throw new OptionError(`--compare ${tool}: ${where} (${HOW_TO_GET[tool]})`);
      }
      found.set(tool, located);
    }
  }
  return found;
}
