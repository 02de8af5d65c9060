/** The one reading of a greeting for every test: `Hello, Docker world from <hostname> (pid <n>).` */

/** A whole greeting, nothing before or after it; hostnames have no spaces. */
export const GREETING = /^Hello, Docker world from (\S+) \(pid (\d+)\)\.\n$/;

export interface Greeting {
  readonly hostname: string;
  readonly pid: number;
}

/** Who a greeting comes from; undefined for any other text. */
export function parseGreeting(text: string): Greeting | undefined {
  const m = GREETING.exec(text);
  return m ? { hostname: m[1] as string, pid: Number(m[2]) } : undefined;
}

/** The worker pid a greeting names; undefined for any other text. */
export function greetingPidIn(text: string): number | undefined {
  return parseGreeting(text)?.pid;
}

/** The worker pid a greeting names; throws, quoting it, for any other text. */
export function pidOfGreeting(text: string): number {
  const pid = greetingPidIn(text);
  if (pid === undefined) throw new Error(`not a greeting: ${JSON.stringify(text.slice(0, 80))}`);
  return pid;
}
