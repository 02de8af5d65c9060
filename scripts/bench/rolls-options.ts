/** bench:rolls' command line, validated as the bench's is. */
import { parseStrict, positive } from './options.js';

export interface RollsOptions {
  readonly help: boolean;
  readonly rolls: number;
  readonly rounds: number;
  /** Each cycle adds a worker (SIGTTIN) and removes one (SIGTTOU) instead of a SIGHUP roll. */
  readonly scale: boolean;
  /** The run inside a network namespace that the outer run starts: not for users. */
  readonly inside: boolean;
}

export const ROLLS_USAGE = `Usage: npm run bench:rolls -- [options]   (node dist/scripts/roll-drops.js [options], where node is 26)
Needs root, unshare and setpriv: each run gets a network namespace of its own, and the service
runs as nobody (uid 65534), who must be able to read the checkout.

  --rolls N    SIGHUP rolling restarts per run, or cycles with --scale (default 10)
  --rounds N   runs with tcp_migrate_req at 0 and at 1 each, medians reported (default 3)
  --scale      each of the N cycles adds a worker (SIGTTIN) and removes one (SIGTTOU) instead,
               which closes a listening socket where a roll closes none
`;

/** Parses argv (without node and the script); an OptionError names the option and the value given. */
export function parseRollsOptions(argv: readonly string[]): RollsOptions {
  const values = parseStrict(argv, {
    help: { type: 'boolean', short: 'h' },
    rolls: { type: 'string' },
    rounds: { type: 'string' },
    scale: { type: 'boolean' },
    inside: { type: 'boolean' },
  });
  const str = (name: string) => values[name] as string | undefined;
  return {
    help: values.help === true,
    rolls: positive('rolls', str('rolls'), 1000) ?? 10,
    rounds: positive('rounds', str('rounds'), 100) ?? 3,
    scale: values.scale === true,
    inside: values.inside === true,
  };
}
