/** Why the service cannot listen, in the terms a user sets: the error, the address, what to change. */
import { getSystemErrorMessage } from 'node:util';

type Advice = (host: string | undefined, port: number) => string;

const ADVICE: Readonly<Record<string, Advice>> = {
  EADDRINUSE: (_host, port) =>
    `something else listens on port ${port} (another program, or another instance of this service): stop it, or set another PORT`,
  EADDRNOTAVAIL: (host) =>
    `HOST=${host} is no address of this machine (unset HOST to listen on every interface)`,
  ENOTFOUND: (host) => `HOST=${host} is a name that does not resolve here`,
  EAI_AGAIN: (host) => `HOST=${host} could not be resolved now (no answer from DNS)`,
  EACCES: (_host, port) =>
    port < 1024
      ? `a port below 1024 needs root or CAP_NET_BIND_SERVICE (or a lower net.ipv4.ip_unprivileged_port_start): set PORT to 1024 or more`
      : `port ${port} is not permitted to this user`,
};

/**
 * The failed listen's message, naming the address (node:cluster writes a round-robin failure on
 * every interface as "bind EADDRINUSE null:5000"), then what to change when the cause is the
 * user's: the system's message names neither PORT nor HOST.
 */
export function bindFailure(err: NodeJS.ErrnoException, host: string | undefined, port: number): string {
  // Only a system call's error: the start lock's own EADDRINUSE already says what it is.
  if (err.syscall === undefined || err.code === undefined) return err.message;
  let what = err.message;
  if (host === undefined) {
    const reason = err.errno === undefined ? '' : ` (${getSystemErrorMessage(err.errno)})`;
    what = `${err.syscall} ${err.code}${reason}: port ${port} on every interface`;
  }
  const advice = ADVICE[err.code];
  return advice ? `${what}; ${advice(host, port)}` : what;
}
