import type { PowerBatch, RequestEvent, WorkWindow } from "../../shared/mod.ts";
// The emulator knows the work it generated, so it can state what a correct analyzer must find.
// It uses the analyzer's own pure functions on purpose (the brief asks for it): the expectation is
// then exact to the last bit, and the independent check is the counter totals (`counterMj`).
// These request expectations check that the pipeline computes its rule, not that the rule is right:
// that is checked against the simulated node's own energy ledger (bench attribution-accuracy,
// docs/attribution.md).
import { attributeWindow, DEFAULT_PREFILL_WEIGHT } from "../../shared/energy/mod.ts";
import { gpuWindowEnergy } from "../../shared/energy/mod.ts";

/**
 * What the analyzer should compute from the messages the emulator published: energy per node (by
 * the analyzer's window-energy function and, independently, by first-to-last counter reading) and
 * energy per request (attribution per instance-window, summed in window order as the join does).
 */
export interface ExpectedRequest {
  node: string;
  instance: string;
  requestId: string;
  energyMj: number;
  prefillMj: number;
  decodeMj: number;
  windows: number;
  promptTokens: number;
  outputTokens: number;
  status?: "ok" | "aborted" | "error";
  workloadClass?: string;
}

export interface NodeTruth {
  windows: number;
  /** Σ over windows and GPUs of gpuWindowEnergy: what node_energy.measured_j must sum to. */
  measuredMj: number;
  attributedMj: number;
  idleMj: number;
  /** Σ over GPUs of (last counter reading − first): independent of the analyzer's code. */
  counterMj: number;
}

export interface GroundTruth {
  addWindow(power: PowerBatch, work: readonly WorkWindow[]): void;
  addEvent(e: RequestEvent): void;
  nodes(): Map<string, NodeTruth>;
  requests(): Map<string, ExpectedRequest>;
  totals(): { windows: number; measuredMj: number; attributedMj: number; idleMj: number; counterMj: number; requestsStarted: number; requestsFinished: number };
}

export function createGroundTruth(opts: { prefillWeight?: number } = {}): GroundTruth {
  const weight = opts.prefillWeight ?? DEFAULT_PREFILL_WEIGHT;
  const nodes = new Map<string, NodeTruth>();
  const requests = new Map<string, ExpectedRequest>();
  const firstReading = new Map<string, number>();
  const lastReading = new Map<string, number>();
  let started = 0;
  let finished = 0;
  const req = (node: string, instance: string, id: string): ExpectedRequest => {
    const key = `${node}/${id}`;
    let r = requests.get(key);
    if (!r) requests.set(key, (r = { node, instance, requestId: id, energyMj: 0, prefillMj: 0, decodeMj: 0, windows: 0, promptTokens: 0, outputTokens: 0 }));
    return r;
  };
  const nodesWithCounters = () => {
    for (const n of nodes.values()) n.counterMj = 0;
    for (const [key, last] of lastReading) nodes.get(key.slice(0, key.lastIndexOf("/")))!.counterMj += last - firstReading.get(key)!;
    return nodes;
  };
  return {
    addWindow(power, work) {
      let n = nodes.get(power.node);
      if (!n) nodes.set(power.node, (n = { windows: 0, measuredMj: 0, attributedMj: 0, idleMj: 0, counterMj: 0 }));
      n.windows++;
      const gpuMj = new Map<number, number>();
      for (const g of power.gpus) {
        const e = gpuWindowEnergy(g).energyMj;
        gpuMj.set(g.gpu, e);
        n.measuredMj += e;
        const key = `${power.node}/${g.gpu}`;
        if (!firstReading.has(key)) firstReading.set(key, g.energyStartMj ?? g.energyMj?.[0] ?? 0);
        lastReading.set(key, g.energyMj?.at(-1) ?? 0);
      }
      const assigned = new Set<number>();
      // Same order as the join: instances sorted, a GPU counted for the first instance that names it.
      for (const w of [...work].sort((a, b) => (a.instance < b.instance ? -1 : 1))) {
        const energyMj = w.gpus.reduce((s, g) => (assigned.has(g) ? s : (assigned.add(g), s + (gpuMj.get(g) ?? 0))), 0);
        const { shares, idleMj } = attributeWindow(energyMj, w.requests, weight);
        n.idleMj += idleMj;
        for (const s of shares) {
          const r = req(power.node, w.instance, s.requestId);
          r.energyMj += s.energyMj;
          r.prefillMj += s.prefillMj;
          r.decodeMj += s.decodeMj;
          r.windows++;
          n.attributedMj += s.energyMj;
        }
      }
      for (const [g, e] of gpuMj) if (!assigned.has(g)) n.idleMj += e;
    },
    addEvent(e) {
      const r = req(e.node, e.instance, e.requestId);
      if (e.event === "start") {
        started++;
        if (e.workloadClass) r.workloadClass = e.workloadClass;
      } else if (e.event === "end") {
        finished++;
        r.status = e.status;
        r.promptTokens = e.promptTokens;
        r.outputTokens = e.outputTokens;
      }
    },
    nodes: nodesWithCounters,
    requests: () => requests,
    totals() {
      const t = { windows: 0, measuredMj: 0, attributedMj: 0, idleMj: 0, counterMj: 0, requestsStarted: started, requestsFinished: finished };
      for (const n of nodesWithCounters().values()) {
        t.windows += n.windows;
        t.measuredMj += n.measuredMj;
        t.attributedMj += n.attributedMj;
        t.idleMj += n.idleMj;
        t.counterMj += n.counterMj;
      }
      return t;
    },
  };
}
