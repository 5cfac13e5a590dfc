/**
 * The floor for any reverse proxy in Node: reads the body, forwards it on a keep-alive agent and
 * relays the response bytes as they come, with no parsing and no bookkeeping. The proxy benchmark
 * runs it beside the tap, so the cost of the extra hop and the cost of the tap's work show apart.
 * Usage: node --import=tsx bench/helpers/passthrough-proxy.ts UPSTREAM_URL (prints {"url": …}).
 */
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

const upstream = new URL(process.argv[2]!);
const agent = new Agent({ keepAlive: true });
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const headers = { ...req.headers, host: upstream.host, "content-length": body.length };
    const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.on("data", (c: Buffer) => res.write(c));
      ures.on("end", () => res.end());
    });
    up.on("error", () => res.destroy());
    up.end(body);
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }) + "\n"));
process.on("SIGTERM", () => process.exit(0));
