import { readFileSync, writeFileSync } from 'node:fs';
import { log } from '../log.js';

const SYSCTL = '/proc/sys/net/ipv4/tcp_migrate_req';

/**
 * With SO_REUSEPORT, connections waiting in a listener's accept queue are reset when that
 * listener closes (a worker draining in a rolling restart). Linux ≥ 5.14 moves them to another
 * listener of the group when net.ipv4.tcp_migrate_req=1; it is per network namespace, so a
 * container gets it from `docker run --sysctl net.ipv4.tcp_migrate_req=1`, or from us when
 * /proc/sys is writable.
 */
export function enableRequestMigration(): void {
  let current: string;
  try {
    current = readFileSync(SYSCTL, 'utf8').trim();
  } catch {
    log(
      'warn',
      'net.ipv4.tcp_migrate_req is not available (Linux < 5.14?): a rolling restart may reset queued connections',
    );
    return;
  }
  if (current === '1') {
    log('info', 'net.ipv4.tcp_migrate_req=1: queued connections move to another worker when one stops');
    return;
  }
  try {
    writeFileSync(SYSCTL, '1');
    log(
      'info',
      'set net.ipv4.tcp_migrate_req=1 in this network namespace: queued connections move to another worker when one stops',
    );
  } catch (err) {
    log(
      'warn',
      'net.ipv4.tcp_migrate_req is 0 and cannot be set here: a rolling restart may reset queued connections; run the container with --sysctl net.ipv4.tcp_migrate_req=1',
      {
        code: (err as NodeJS.ErrnoException).code,
      },
    );
  }
}
