/**
 * The greeting as a pm2 user would serve it: a plain node:http server that pm2's cluster mode
 * starts once per instance (`pm2-runtime -i N`). Body and headers are built once, as ours are,
 * so the comparison is about the process manager, not the handler.
 */
import { createServer } from 'node:http';
import { hostname } from 'node:os';

const body = Buffer.from(`Hello, Docker world from ${hostname()} (pid ${process.pid}).\n`);
const headers = ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)];

createServer((_req, res) => {
  res.writeHead(200, headers);
  res.end(body);
}).listen(Number(process.env.PORT), process.env.HOST, () => {
  // The bench counts these lines, which pm2-runtime passes through, to know every instance listens.
  console.log(JSON.stringify({ msg: 'listening', pid: process.pid }));
});
