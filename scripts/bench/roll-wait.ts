/** Waits on the service's log for roll-drops.ts, failing instead of hanging when the service cannot get there. */
import type { Service } from '../../test/helpers/service.js';
import { within } from './deadline.js';

/**
 * Resolves once the service has logged `msg` `count` times in all. Rejects when it exits first
 * (waitForLog), when a rolling restart is aborted (the count would never be reached), or after `ms`.
 */
export async function waitForCount(service: Service, msg: string, count: number, ms: number): Promise<void> {
  const logged = () => service.logs.filter((l) => l.msg === msg).length;
  const aborted = (m: string) => m.startsWith('rolling restart aborted');
  const what = `${count}× "${msg}"`;
  const line = await within(
    ms,
    service.waitForLog((l) => aborted(l.msg) || logged() >= count, what),
    () => `no ${what} within ${ms} ms; logs:\n${service.dump()}`,
  );
  if (aborted(line.msg)) throw new Error(`${line.msg} before ${what}; logs:\n${service.dump()}`);
}
