/**
 * The echo server as its own process (benchmarks: the server must not share the load generator's
 * event loop). Prints `{"url": …}` on stdout once listening; stops on SIGTERM.
 */
import { startEchoServer } from "./echo-server.ts";

const server = await startEchoServer({ record: false, tokensPerChunk: Number(process.env.ECHO_TOKENS_PER_CHUNK ?? 1), itlMs: Number(process.env.ECHO_ITL_MS ?? 0) });
process.stdout.write(JSON.stringify({ url: server.url }) + "\n");
process.on("SIGTERM", () => void server.stop().then(() => process.exit(0)));
