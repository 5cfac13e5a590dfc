import test from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNats, stopAll, systemClock } from "../shared/mod.ts";
import { startSimnode } from "../services/simnode/server.ts";
import { startAgent } from "../services/agent/agent.ts";
import { createDcgmSource } from "../services/agent/dcgm-source.ts";
import { startAnalyzer } from "../services/analyzer/analyzer.ts";
import { createInfluxSink } from "../services/analyzer/influx-sink.ts";
import { detectInfluxApi } from "../services/analyzer/influx-version.ts";
import { createSimnodeController } from "../services/lab/controllers.ts";
import { parseMatrix } from "../services/lab/matrix.ts";
import { createProgress } from "../services/lab/progress.ts";
import { createRealtimeRunner } from "../services/lab/realtime-runner.ts";
import { runSweep } from "../services/lab/sweep.ts";
import { withStack } from "./helpers/stack.ts";

test("sweep (simnode mode) - sets each point's clock through /admin/config, reads its energy back from InfluxDB, and restores the clock", async (t) => {
  const stack = await withStack(t);
  const stops: (() => Promise<void>)[] = [];
  t.teardown(() => stopAll(stops.reverse()));
  const sim = await startSimnode({ gpus: 4, tp: 4, model: "llama-2-70b", seed: 2 });
  stops.push(() => sim.stop());
  const clock = systemClock();
  const node = "lab-rt";
  const nc = await connectNats({ nats: stack.natsUrl }, "lab-rt-agent");
  stops.push(() => nc.close());
  const agent = await startAgent({ nc, node, clock, source: createDcgmSource({ url: sim.metricsUrl, clock, kind: "sim" }), instances: sim.instances.map((i) => ({ id: i.id, gpus: i.gpus, model: i.model, upstream: `${sim.url}/i/${i.id}`, listen: "127.0.0.1:0" })) });
  stops.push(() => agent.stop());
  const nc2 = await connectNats({ nats: stack.natsUrl }, "lab-rt-analyzer");
  stops.push(() => nc2.close());
  const api = await detectInfluxApi(stack.influxUrl);
  const analyzer = await startAnalyzer({ nc: nc2, sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api: api.api }) });
  stops.push(() => analyzer.stop());

  const matrix = parseMatrix({ name: "rt", window: { warmupS: 1, measureS: 4 }, axes: { workload: ["short-short"], tp: [4], maxBatch: [64], smClockMhz: [1980, 1005], load: [{ requestsPerS: 6 }] } });
  const out = mkdtempSync(join(tmpdir(), "lab-rt-"));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const seen: number[] = [];
  const controller = createSimnodeController({ adminUrl: sim.url, targets: Object.values(agent.tapUrls) });
  const apply = controller.apply.bind(controller);
  controller.apply = async (p) => {
    const r = await apply(p);
    seen.push(sim.node.knobs().smClockMhz);
    return r;
  };
  const runner = createRealtimeRunner({ controller, node, influx: { url: stack.influxUrl, database: stack.database }, settleTimeoutMs: 20_000 });
  const r = await runSweep({ matrix, outDir: out, runner, progress: createProgress({ total: 0, write: () => {} }) });
  t.deepEqual(r.failed, []);
  t.deepEqual(seen, [1980, 1005]);
  t.is(sim.node.knobs().smClockMhz, 1980, "clock restored after the sweep");
  t.is(r.rows.length, 2);
  for (const row of r.rows) {
    t.is(row.mode, "simnode");
    t.true(row.energyJ > 0 && Number.isFinite(row.jPerOutputToken) && row.jPerOutputToken > 0, `energy ${row.energyJ} J, ${row.jPerOutputToken} J/token`);
    t.true(row.requests > 0 && row.ttftP50Ms > 0, `${row.requests} requests`);
  }
  const [hi, lo] = [r.rows.find((x) => x.smClockMhz === 1980)!, r.rows.find((x) => x.smClockMhz === 1005)!];
  t.true(lo.avgPowerW < hi.avgPowerW, `power at 1005 MHz (${lo.avgPowerW.toFixed(0)} W) below 1980 MHz (${hi.avgPowerW.toFixed(0)} W)`);
});
