/**
 * bench:rolls runs the service as nobody (uid 65534), so that it cannot set the sysctl the run
 * has chosen for it. That user must be able to load the compiled scripts: a checkout in a folder
 * only root may enter (mktemp -d makes one) cannot run there.
 */
import { spawnSync } from 'node:child_process';
import { findExecutable } from './commands.js';

/** The command prefix that runs what follows as nobody, with no supplementary groups. */
export const AS_NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups'] as const;

/** True when nobody can run `node script --help`: the node binary, the script and its imports are readable. */
export function loadsAsNobody(node: string, script: string): boolean {
  return (
    spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), node, script, '--help'], { stdio: 'ignore' }).status === 0
  );
}

/**
 * What this machine lacks for bench:rolls running `script` with `node`, checked before any run
 * (and by the test that runs it); undefined when nothing.
 */
export function rollsPrerequisiteMissing(node: string, script: string): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: each run has a network namespace of its own (unshare -n)';
  for (const tool of ['unshare', 'setpriv'])
    if (!findExecutable(tool)) return `needs ${tool} (Debian's util-linux) on PATH`;
  if (!loadsAsNobody(node, script))
    return `nobody (uid 65534), who runs the service here, cannot load ${script}: the checkout must be readable by every user (not in a folder only root may enter)`;
  return undefined;
}
