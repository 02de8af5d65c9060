/** bench:burst's command line, validated as the bench's is. */
import { parseStrict, positive } from './options.js';

export interface BurstOptions {
  readonly help: boolean;
  readonly connections: number;
  readonly workers: number;
  readonly rounds: number;
}

export const BURST_USAGE = `Usage: npm run bench:burst -- [options]   (node dist/scripts/accept-burst.js [options], where node is 26)

  --connections N   clients that connect while the workers are stopped (default 2000)
  --workers N       workers of the service and of the minimal cluster (default 2)
  --rounds N        rounds, medians reported (default 3)
`;

/** Parses argv (without node and the script); an OptionError names the option and the value given. */
export function parseBurstOptions(argv: readonly string[]): BurstOptions {
  const values = parseStrict(argv, {
    help: { type: 'boolean', short: 'h' },
    connections: { type: 'string' },
    workers: { type: 'string' },
    rounds: { type: 'string' },
  });
  const str = (name: string) => values[name] as string | undefined;
  return {
    help: values.help === true,
    connections: positive('connections', str('connections'), 100_000) ?? 2000,
    workers: positive('workers', str('workers'), 1024) ?? 2,
    rounds: positive('rounds', str('rounds'), 100) ?? 3,
  };
}
