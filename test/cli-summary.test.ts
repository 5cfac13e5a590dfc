import test from "ava";
import { formatSummary, type RequestRow, type RunSummary } from "../services/cli/summary.ts";
import type { GroupSummary, Summary } from "../services/analyzer/query-service.ts";

const row = (id: string, status: string, energyJ: number): RequestRow => ({ id, instance: "i0", promptTokens: 10, outputTokens: status === "ok" ? 10 : 0, energyJ, prefillJ: 0, decodeJ: energyJ, jPerOutputToken: status === "ok" ? energyJ / 10 : null, incomplete: false, workloadClass: "chat", status });

test("summary - the run and its classes say how many requests were served, refused and aborted (the per-request figures are the served ones')", (t) => {
  const requests = [row("a", "ok", 10), row("b", "ok", 20), row("c", "error", 0.5), row("d", "aborted", 5)];
  const run: RunSummary = {
    runId: "r1",
    node: "n1",
    database: "db",
    requests,
    totals: { measuredEnergyJ: 50, attributedEnergyJ: 35.5, idleEnergyJ: 14.5, windows: 5, incompleteWindows: 0 },
    perRequest: { energyJ: { p50: 10, p90: 20, p99: 20, mean: 15 }, jPerOutputToken: { p50: 1, p90: 2, p99: 2, mean: 1.5 } },
  };
  const chat: GroupSummary = {
    model: "m", workloadClass: "chat", requests: 2, energyJ: 30, outputTokens: 20, promptTokens: 20,
    jPerRequest: { mean: 15, p50: 10, p99: 20 }, jPerOutputToken: 1.5, jPerToken: 0.75,
    ttftMs: { p50: 100, p99: 200 }, tpotMs: { p50: 20, p99: 30 }, e2eMs: { p50: 300, p99: 500 },
    refused: { requests: 1, energyJ: 0.5 }, aborted: { requests: 1, energyJ: 5, outputTokens: 0 }, sloAttainment: 0.25,
  };
  const byClass: Summary = { request: { runId: "r1" }, groups: [chat], measuredJ: 50, attributedJ: 35.5, idleJ: 14.5, idleShare: 0.29 };
  const out = formatSummary(run, { influxUrl: "http://influx", byClass });
  t.regex(out, /requests measured +4\n +served \/ refused \/ aborted +2 \/ 1 \/ 1\n/);
  t.regex(out, /by workload class +served +refused\/aborted/);
  t.regex(out, /chat +2 +1\/1 +1\.500 +100\/200 +20\.0 +25%/);
  t.notRegex(formatSummary({ ...run, requests: requests.slice(0, 2) }, { influxUrl: "http://influx" }), /refused/, "said only when there were some");
});
