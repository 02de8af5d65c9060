/** Waits on the service's log for roll-drops.ts, failing instead of hanging when the service cannot get there. */
import type { Service } from '../../test/helpers/service.js';

/**
 * Resolves once the service has logged `msg` `count` times in all. Rejects when it exits first or
 * nothing comes within `ms` (waitForLog), or when a rolling restart is aborted (the count would
 * never be reached).
 */
export async function waitForCount(service: Service, msg: string, count: number, ms: number): Promise<void> {
  const logged = () => service.logs.filter((l) => l.msg === msg).length;
  const aborted = (m: string) => m.startsWith('rolling restart aborted');
  const what = `${count}× "${msg}"`;
  const line = await service.waitForLog((l) => aborted(l.msg) || logged() >= count, what, ms);
  if (aborted(line.msg)) throw new Error(`${line.msg} before ${what}; logs:\n${service.dump()}`);
}
