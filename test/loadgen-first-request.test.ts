import test from "ava";
import type { LoadResult } from "../shared/messages/load.ts";
import { fileURLToPath } from "node:url";
import { azureTrace, runLoad } from "../services/loadgen/mod.ts";
import { startEchoServer } from "./helpers/echo-server.ts";

/**
 * In a file of its own, so that the process is as cold as `joulestream load` starting: no connection
 * open to the target, no request code compiled, no body built. The first request used to leave about
 * 14 ms behind its time, the rest within a fraction of a ms.
 */
const TRACE = fileURLToPath(new URL("../load/traces/azure/AzureLLMInferenceTrace_conv.csv", import.meta.url));

test("loadgen - the first request of a run leaves as punctually as the rest (connection and code warmed before time zero)", async (t) => {
  const server = await startEchoServer();
  t.teardown(() => server.stop());
  const results: LoadResult[] = [];
  // As `joulestream load --trace` runs: rows read from the file, token-id prompts of the trace's lengths.
  const source = azureTrace(TRACE, { speedup: 8, limit: 30, maxOutputTokens: 8 });
  await runLoad({ source, targets: [server.url], runId: "cold", onResult: (r) => void results.push(r) });
  t.is(results.length, 30);
  const lag = results.sort((a, b) => a.index - b.index).map((r) => r.sentMs - r.scheduledMs);
  const median = [...lag].sort((a, b) => a - b)[lag.length >> 1]!;
  // A few ms: room for a loaded test machine, far under the 14 ms a cold first request took.
  t.log(lag.slice(0, 6).map((l) => l.toFixed(2)).join(", "), "median", median.toFixed(2));
  t.true(lag[0]! - median < 4, `first request ${lag[0]!.toFixed(2)} ms late, median ${median.toFixed(2)} ms: ${lag.slice(0, 5).map((l) => l.toFixed(2)).join(", ")}…`);
});
