import type { SeqWork, CompletedStep } from "./engine.ts";
import type { NodeInstance, SimNode } from "./node.ts";
import { stepPhases, type Phase, type PerfContext } from "./perf-model.ts";
import { dynamicScale, phasePowerW, powerParams, voltageFrac, type PowerParams, type StepCost } from "./power-model.ts";

/**
 * The simulator's own energy ledger: what each request cost, from what only the engine knows —
 * which sequences ran in each step, how many prefill/decode tokens each processed at what context,
 * and the step's energy from the power model. The analyzer never sees any of this, so the ledger is
 * an independent truth (in the simulator's world) to check its attribution against.
 *
 * The rule, per step of an instance (its energy is the GPUs' power × the step's time, the very
 * integral the energy counters hold):
 * - static: the GPUs' idle power over the step (P_idle × time × GPUs). Split among the step's
 *   sequences by their share of the step's *time*; kept apart from active energy.
 * - active: the rest. Split phase by phase (the perf model's kernel classes), each phase's energy
 *   above idle by each sequence's share of that phase's work: GEMMs and all-reduces by tokens (the
 *   weights are read once for all tokens of the step: a shared cost, split per token that used it);
 *   attention by its compute (query-key pairs) and memory (KV bytes read) shares, weighted by how
 *   compute- or memory-busy the phase was; per-sequence kernels and the host's step overhead equally.
 * - idle: energy while no step runs on the instance — the instance's, no request's.
 * Conservation: Σ requests (active + static) + Σ instances idle = Σ GPU energy counters, exactly up
 * to float rounding (the shares of a step are normalized to its measured energy).
 */
export interface LedgerRequest {
  requestId: string;
  instanceId: string;
  /** Energy above idle power of the steps it ran in, its share, mJ (all GPUs of the instance). */
  activeMj: number;
  /** Idle (static) power of those steps, its share by time, mJ. */
  staticMj: number;
  /** Of activeMj: steps where it prefilled (the first token comes from the last prefill chunk). */
  prefillActiveMj: number;
  decodeActiveMj: number;
  steps: number;
  prefillTokens: number;
  decodeTokens: number;
  /** The sum of the two, mJ: what the request cost. */
  totalMj: number;
}

export interface LedgerInstance {
  instanceId: string;
  gpus: number[];
  /** Energy of its steps, mJ (Σ of its requests' active + static). */
  stepMj: number;
  /** Energy while no step ran, mJ. */
  idleMj: number;
}

export interface LedgerSnapshot {
  requests: LedgerRequest[];
  instances: LedgerInstance[];
  /** Energy of GPUs in no instance (a node whose GPU count is not a multiple of TP), mJ. */
  unassignedMj: number;
  /** Σ GPU energy counters at the snapshot's time, mJ. */
  totalMj: number;
  /** Requests forgotten (oldest first) past the ledger's bound. */
  dropped: number;
}

export interface EnergyLedger {
  /** The ledger at `tMs` (≥ the node's last advance): idle energy runs up to then. */
  snapshot(tMs: number): LedgerSnapshot;
  get(requestId: string): LedgerRequest | undefined;
  /** Stops listening to the node. */
  close(): void;
}

/** Requests kept by default: a server runs for days; a library run is bounded by its workload. */
export const DEFAULT_LEDGER_MAX_REQUESTS = 200_000;

export function createEnergyLedger(node: SimNode, opts: { maxRequests?: number } = {}): EnergyLedger {
  const max = opts.maxRequests ?? DEFAULT_LEDGER_MAX_REQUESTS;
  const power = powerParams(node.gpu);
  const requests = new Map<string, LedgerRequest>();
  /** Energy of steps per GPU, mJ: the rest of its counter is idle. */
  const stepMjByGpu = new Array<number>(node.gpuCount).fill(0);
  let dropped = 0;

  const entry = (s: SeqWork, instanceId: string): LedgerRequest => {
    const id = s.state.req.id;
    let r = requests.get(id);
    if (!r) {
      r = { requestId: id, instanceId, activeMj: 0, staticMj: 0, prefillActiveMj: 0, decodeActiveMj: 0, steps: 0, prefillTokens: 0, decodeTokens: 0, totalMj: 0 };
      requests.set(id, r);
      if (requests.size > max) {
        requests.delete(requests.keys().next().value!);
        dropped++;
      }
    }
    return r;
  };

  const off = node.onStep((inst: NodeInstance, step: CompletedStep) => {
    const ctx: PerfContext = { model: node.model, gpu: node.gpu, tp: inst.gpus.length };
    const split = splitStep(ctx, power, step.seqs, step.cost, inst.gpus.length);
    const stepMj = step.cost.powerW * (step.endMs - step.startMs);
    for (const g of inst.gpus) stepMjByGpu[g]! += stepMj;
    step.seqs.forEach((s, k) => {
      const r = entry(s, inst.id);
      const a = split.activeMj[k]!;
      r.activeMj += a;
      r.staticMj += split.staticMj[k]!;
      r.totalMj = r.activeMj + r.staticMj;
      if (s.prefillTokens > 0) {
        r.prefillActiveMj += a;
        r.prefillTokens += s.prefillTokens;
      } else {
        r.decodeActiveMj += a;
        r.decodeTokens++;
      }
      r.steps++;
    });
  });

  return {
    snapshot(tMs) {
      const instances: LedgerInstance[] = [];
      const inInstance = new Set<number>();
      let totalMj = 0;
      for (let g = 0; g < node.gpuCount; g++) totalMj += node.energyMj(g, tMs);
      for (const inst of node.instances) {
        let stepMj = 0;
        let idleMj = 0;
        for (const g of inst.gpus) {
          inInstance.add(g);
          // A step in flight at `tMs` is not in the ledger yet: its part so far counts as idle until it completes.
          stepMj += stepMjByGpu[g]!;
          idleMj += node.energyMj(g, tMs) - stepMjByGpu[g]!;
        }
        instances.push({ instanceId: inst.id, gpus: [...inst.gpus], stepMj, idleMj });
      }
      let unassignedMj = 0;
      for (let g = 0; g < node.gpuCount; g++) if (!inInstance.has(g)) unassignedMj += node.energyMj(g, tMs);
      return { requests: [...requests.values()].map((r) => ({ ...r })), instances, unassignedMj, totalMj, dropped };
    },
    get: (id) => {
      const r = requests.get(id);
      return r ? { ...r } : undefined;
    },
    close: off,
  };
}

/**
 * One step's energy split among its sequences (pure). `gpus`: the instance's GPU count (every GPU
 * of an instance runs the same step at the same power). Returns mJ per sequence, in `seqs` order.
 */
export function splitStep(ctx: PerfContext, power: PowerParams, seqs: readonly SeqWork[], cost: StepCost, gpus: number): { activeMj: number[]; staticMj: number[] } {
  const n = seqs.length;
  const activeMj = new Array<number>(n).fill(0);
  const staticMj = new Array<number>(n).fill(0);
  if (n === 0) return { activeMj, staticMj };
  const work = { prefillTokens: 0, prefillAttnPairs: 0, prefillSeqs: 0, decodeSeqs: 0, decodeCtxTokens: 0 };
  const tokens: number[] = [];
  const pairs: number[] = [];
  const kv: number[] = [];
  for (const s of seqs) {
    if (s.prefillTokens > 0) {
      work.prefillTokens += s.prefillTokens;
      work.prefillSeqs++;
      const p = s.prefillTokens * (s.prefillStart + s.prefillTokens / 2);
      work.prefillAttnPairs += p;
      tokens.push(s.prefillTokens);
      pairs.push(p);
      kv.push(0);
    } else {
      work.decodeSeqs++;
      work.decodeCtxTokens += s.decodeCtxTokens;
      tokens.push(1);
      pairs.push(s.decodeCtxTokens);
      kv.push(s.decodeCtxTokens);
    }
  }
  const phases = stepPhases(ctx, work, cost.smClockMhz);
  const scale = dynamicScale(ctx.gpu, cost.smClockMhz);
  // Leakage (∝ V²) is drawn because the step runs at this clock: active, like the dynamic power.
  const vSq = voltageFrac(ctx.gpu, cost.smClockMhz) ** 2;
  const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
  const totals = { tokens: sum(tokens), pairs: sum(pairs), kv: sum(kv) };
  const shareOf = (ph: Phase, k: number): number => {
    switch (ph.kind) {
      case "misc":
      case "host":
        return 1 / n;
      case "attention": {
        const c = totals.pairs > 0 ? pairs[k]! / totals.pairs : 1 / n;
        const m = totals.kv > 0 ? kv[k]! / totals.kv : c;
        const busy = ph.computeUtil + ph.memUtil;
        return busy > 0 ? (ph.computeUtil * c + ph.memUtil * m) / busy : c;
      }
      default:
        // linear, comm, and any kind added later: per token.
        return tokens[k]! / totals.tokens;
    }
  };
  let activeModel = 0;
  let timeModel = 0;
  for (const ph of phases) {
    const above = Math.max(0, phasePowerW(power, scale, vSq, ph) - power.idleW) * ph.timeMs;
    activeModel += above;
    timeModel += ph.timeMs;
    for (let k = 0; k < n; k++) {
      const sh = shareOf(ph, k);
      activeMj[k]! += above * sh;
      staticMj[k]! += ph.timeMs * sh;
    }
  }
  // Normalize to the step's own energy (power × time × GPUs), split into static and active: the
  // shares are the model's, the totals the counters'.
  const durationMs = cost.durationMs;
  const staticTotal = power.idleW * durationMs * gpus;
  const activeTotal = Math.max(0, cost.powerW - power.idleW) * durationMs * gpus;
  for (let k = 0; k < n; k++) {
    activeMj[k] = activeModel > 0 ? (activeMj[k]! / activeModel) * activeTotal : activeTotal / n;
    staticMj[k] = timeModel > 0 ? (staticMj[k]! / timeModel) * staticTotal : staticTotal / n;
  }
  // A step below idle power cannot happen in this model; were it to, its energy still all goes somewhere.
  if (cost.powerW < power.idleW) for (let k = 0; k < n; k++) staticMj[k] = (staticMj[k]! / staticTotal) * cost.powerW * durationMs * gpus;
  return { activeMj, staticMj };
}
