/**
 * The greeting as users would serve it without this project: a plain node:http server with the
 * same bytes as ours, built once (body as a string, as ours is), so that comparisons are about
 * the process manager, not the handler. `pm2-runtime -i N` starts it once per instance, and
 * minimal-cluster.ts forks it as node:cluster workers on their own reusePort sockets.
 */
import { createServer } from 'node:http';
import { hostname } from 'node:os';

const body = `Hello, Docker world from ${hostname()} (pid ${process.pid}).\n`;
const headers = [
  'Content-Type',
  'text/plain; charset=utf-8',
  'Content-Length',
  String(Buffer.byteLength(body)),
  'X-Content-Type-Options',
  'nosniff',
];
const reusePort = process.env.REUSE_PORT === '1';

createServer((_req, res) => {
  res.writeHead(200, headers);
  res.end(body);
}).listen(
  { port: Number(process.env.PORT), host: process.env.HOST, backlog: 511, reusePort, exclusive: reusePort },
  () => {
    // The bench counts these lines (pm2-runtime passes them through) to know every process listens.
    console.log(JSON.stringify({ msg: 'listening', pid: process.pid }));
  },
);
