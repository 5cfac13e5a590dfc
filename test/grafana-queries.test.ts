import test from "ava";
import { DASHBOARDS } from "../infra/grafana/dashboards.ts";

/** Review: the tag keys each measurement has, as services/analyzer/points.ts writes them. */
const TAGS: Record<string, string[]> = {
  gpu_power: ["node", "gpu", "uuid"],
  gpu_energy: ["node", "gpu"],
  node_energy: ["node"],
  instance_energy: ["node", "instance", "model"],
  request_energy: ["node", "instance", "model", "workload_class", "status", "run_id"],
  agent_stats: ["node"],
  analyzer_stats: ["analyzer", "replica"],
  governor_decision: ["node", "instance", "governor", "action"],
};
const panels = Object.values(DASHBOARDS).flatMap((d) => d.panels.map((p) => ({ d: d.uid, p: p as (typeof d.panels)[number] & { fieldConfig: { defaults: { unit?: string } }; transformations?: { id: string; options: { binary?: { operator: string } } }[] } })));

test("grafana - every GROUP BY key is a tag of the measurement (a field or a missing tag groups nothing)", (t) => {
  for (const { d, p } of panels) {
    for (const q of p.targets) {
      // the outermost FROM and GROUP BY (a subquery's are checked the same way)
      for (const m of q.query.matchAll(/FROM "([a-z_]+)"[^()]*?GROUP BY ([^)]*?)(?: fill\(\w+\))?(?:\)|$)/g)) {
        const keys = [...m[2]!.matchAll(/"([a-z_]+)"/g)].map((k) => k[1]!);
        for (const k of keys) t.true(TAGS[m[1]!]!.includes(k), `${d}/${p.title}: GROUP BY "${k}" is not a tag of ${m[1]}`);
      }
    }
  }
});

test("grafana - a panel that divides two counts in Grafana shows the ratio as percentunit (0.0-1.0)", (t) => {
  for (const { d, p } of panels) {
    if (p.transformations?.some((x) => x.id === "calculateField" && x.options.binary?.operator === "/")) t.is(p.fieldConfig.defaults.unit, "percentunit", `${d}/${p.title}`);
  }
});

test("analyzer_stats - replicas of one analyzer group (same --name) write separate series", async (t) => {
  const { analyzerStatsPoint } = await import("../services/analyzer/points.ts");
  const s = { received: 1, deadLettered: 0, acked: 0, reacked: 0, pending: 0, requestsEmitted: 0, windowsClosed: 0, sinkRetries: 0, pointsRejected: 0, lagMs: 0 };
  const a = analyzerStatsPoint("analyzer", 1000, s, "analyzer-1a2b3c4d").toLineProtocol()!;
  const b = analyzerStatsPoint("analyzer", 1000, s, "analyzer-5e6f7a8b").toLineProtocol()!;
  t.not(a.split(" ")[0], b.split(" ")[0]);
});
