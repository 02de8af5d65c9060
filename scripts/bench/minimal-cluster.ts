/**
 * The least a reusePort cluster needs, written the way a user would by hand: fork WORKERS
 * greeting servers, each binding its own socket, and stop them on SIGTERM. No respawn, health
 * checks, metrics or configuration checks: the bench's measure of what our supervisor costs.
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

cluster.setupPrimary({ exec: fileURLToPath(new URL('./greeting-app.js', import.meta.url)) });
// REUSE_PORT: the workers bind with reusePort and exclusive, out of the primary's way.
for (let i = 0; i < Number(process.env.WORKERS); i++) cluster.fork({ REUSE_PORT: '1' });

process.on('SIGTERM', () => {
  for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
});
cluster.on('exit', () => {
  if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
});
