/**
 * Entry point. It checks the runtime before it loads anything: on an older Node, the service's
 * modules fail to link with a SyntaxError about a missing export, which tells a user nothing (a
 * bare `node` may be the system's Node 20, where `npm start` runs the project's Node 26).
 */
import { ExitCode } from './exit-codes.js';
import { log } from './log.js';
import { SignalQueue } from './signal-queue.js';

// First, before launch.ts and its imports load (20 ms and more here): a control signal that
// comes before a handler exists takes its default action, or is dropped by PID 1.
const signals = new SignalQueue();

const NEEDED_MAJOR = 26;

if (Number(process.versions.node.split('.')[0]) < NEEDED_MAJOR) {
  log(
    'fatal',
    `myservice needs Node.js ${NEEDED_MAJOR} or later, and this is ${process.version} (${process.execPath}): start it with npm start, which runs the project's Node ${NEEDED_MAJOR}, or the Docker image`,
    { exitCode: ExitCode.config },
  );
  process.exit(ExitCode.config);
}
const { launch } = await import('./launch.js');
await launch(signals);
