/**
 * The bench's single-process baseline, the post's design: the worker's greeting server in one
 * process, no node:cluster. Reads PORT, HOST and the HTTP limits like the service does.
 */
import { hostname } from 'node:os';
import { parseConfig } from '../src/config.js';
import { log } from '../src/log.js';
import { closeGracefully } from '../src/worker/connections.js';
import { RequestStats } from '../src/worker/request-stats.js';
import { createGreetingServer, LISTEN_BACKLOG, type Readiness } from '../src/worker/server.js';

const config = parseConfig(process.env);
let readiness: Readiness = 'starting';
const server = createGreetingServer({
  hostname: hostname(),
  pid: process.pid,
  limits: config.http,
  stats: new RequestStats(),
  readiness: () => readiness,
});

function stop(): void {
  if (readiness === 'draining') process.exit(0);
  readiness = 'draining';
  closeGracefully(server, config.drainTimeoutMs, () => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// The same backlog as a cluster worker, so the comparison is about cluster alone.
server.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
  readiness = 'ready';
  log('info', 'listening', { port: config.port });
});
