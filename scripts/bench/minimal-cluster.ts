/**
 * The least a reusePort cluster needs, written the way a user would by hand: fork WORKERS
 * greeting servers, each binding its own socket, and stop them on SIGTERM. No respawn, health
 * checks, metrics or configuration checks: the bench's measure of what our supervisor costs.
 * The bench always sets WORKERS, PORT and HOST.
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

const workers = Number(process.env.WORKERS);
cluster.setupPrimary({ exec: fileURLToPath(new URL('./greeting-app.js', import.meta.url)) });
// REUSE_PORT: the workers bind with reusePort and exclusive, out of the primary's way.
for (let i = 0; i < workers; i++) cluster.fork({ REUSE_PORT: '1' });

let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
});
// Counted, not read from cluster.workers: a worker leaves that list only after both its exit
// and its disconnect, so the last 'exit' may still find it there.
let exited = 0;
cluster.on('exit', (worker, code, signal) => {
  if (!stopping) {
    // A crash must fail the configuration, not leave the bench waiting for a worker that is gone.
    console.error(`worker ${worker.process.pid} exited with ${code ?? signal} before SIGTERM`);
    process.exit(1);
  }
  if (++exited === workers) process.exit(0);
});
