/**
 * bench:rolls runs the service as nobody (uid 65534), so that it cannot set the sysctl the run
 * has chosen for it. That user must be able to load the compiled scripts: a checkout in a folder
 * only root may enter (mktemp -d makes one) cannot run there.
 */
import { spawnSync } from 'node:child_process';

/** The command prefix that runs what follows as nobody, with no supplementary groups. */
export const AS_NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups'] as const;

/** True when nobody can run `node script --help`: the node binary, the script and its imports are readable. */
export function loadsAsNobody(node: string, script: string): boolean {
  return (
    spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), node, script, '--help'], { stdio: 'ignore' }).status === 0
  );
}
