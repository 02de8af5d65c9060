import { readFileSync, writeFileSync } from 'node:fs';
import { log } from '../log.js';

const SYSCTL = '/proc/sys/net/ipv4/tcp_migrate_req';

/**
 * With SO_REUSEPORT, connections waiting in a listener's accept queue are reset when that
 * listener closes: a worker removed by SIGTTOU, or one that crashed or was killed (a roll closes
 * none: its replacement takes the socket over). Linux ≥ 5.14 moves them to another listener of
 * the group when net.ipv4.tcp_migrate_req=1; it is per network namespace, so a container gets it
 * from `docker run --sysctl net.ipv4.tcp_migrate_req=1`, or from us when /proc/sys is writable.
 */
export function enableRequestMigration(): void {
  let current: string;
  try {
    current = readFileSync(SYSCTL, 'utf8').trim();
  } catch {
    log(
      'warn',
      'net.ipv4.tcp_migrate_req is not available (Linux < 5.14?): a worker that stops outside a roll (SIGTTOU, a crash) resets the connections queued on its socket',
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
      'net.ipv4.tcp_migrate_req is 0 and cannot be set here: a worker that stops outside a roll (SIGTTOU, a crash) resets the connections queued on its socket; run the container with --sysctl net.ipv4.tcp_migrate_req=1',
      {
        code: (err as NodeJS.ErrnoException).code,
      },
    );
  }
}
