import { ConfigError } from "../../shared/mod.ts";
import { gpuSpec, kvCapacityTokens, minTp, modelSpec, snapSmClock, type GpuSpec, type ModelSpec } from "./catalog.ts";
import { createInstanceEngine, type CompletedStep, type EngineRequest, type InstanceEngine, type RequestState } from "./engine.ts";
import { powerParams, type KnobSettings, type PowerParams } from "./power-model.ts";

/**
 * A simulated GPU node: `gpus` GPUs split into instances of `tp` GPUs, the knobs a real node has
 * (locked SM clock, power limit, max batch, TP degree) and one energy counter per GPU that is the
 * exact integral of the modelled power (piecewise constant over steps and idle gaps). Time is
 * simulated milliseconds since the node started; no clock is read here.
 */
export interface NodeConfig {
  gpus?: number;
  tp?: number;
  model?: string;
  gpuModel?: string;
  maxBatch?: number;
  smClockMhz?: number;
  powerLimitW?: number;
  /** vLLM max_num_batched_tokens (chunked-prefill budget). */
  maxBatchedTokens?: number;
}

export const DEFAULT_GPUS = 8;
export const DEFAULT_MODEL = "llama-2-70b";
export const DEFAULT_GPU_MODEL = "h100-sxm";
/** vLLM V0's default max_num_seqs. */
export const DEFAULT_MAX_BATCH = 256;
/** vLLM V1's max_num_batched_tokens default for the OpenAI server on ≥70 GiB GPUs. */
export const DEFAULT_MAX_BATCHED_TOKENS = 8192;

export interface Knobs {
  smClockMhz: number;
  powerLimitW: number;
  maxBatch: number;
  tp: number;
}

export interface NodeInstance {
  id: string;
  gpus: number[];
  engine: InstanceEngine;
}

export interface StepListener {
  (instance: NodeInstance, step: CompletedStep): void;
}

export interface SimNode {
  readonly gpu: GpuSpec;
  readonly model: ModelSpec;
  readonly gpuCount: number;
  readonly instances: readonly NodeInstance[];
  readonly kvCapacityTokens: number;
  knobs(): Knobs;
  /** Applies knob changes (clock snapped to a supported step). A TP change needs an idle node. */
  setKnobs(change: Partial<Knobs>, tMs: number): Knobs;
  /** The instance with the least outstanding tokens (ties: lowest index), or the one named. */
  route(instanceId?: string): NodeInstance;
  submit(req: EngineRequest, tMs: number, instanceId?: string): { instance: NodeInstance; state: RequestState };
  /** Drops a request submitted to `instance` (client gone), freeing its slot and KV at `tMs`. */
  cancel(instance: NodeInstance, state: RequestState, tMs: number): void;
  advanceTo(tMs: number): void;
  /** Earliest end of a step in flight on any instance. */
  nextEventMs(): number | undefined;
  /** Energy counter of GPU `gpu` at `tMs` (≥ last advance), mJ. */
  energyMj(gpu: number, tMs: number): number;
  /** Power level at this moment, W. */
  powerW(gpu: number): number;
  /** Cumulative busy (kernel) time, ms. */
  busyMs(gpu: number, tMs: number): number;
  /** SM clock the GPU runs at now (throttled below the locked clock under the power limit). */
  smClockMhz(gpu: number): number;
  onStep(listener: StepListener): () => void;
}

interface Meter {
  accMj: number;
  busyAccMs: number;
  atMs: number;
  levelW: number;
  busyShare: number;
  clockMhz: number;
}

export function createSimNode(cfg: NodeConfig = {}): SimNode {
  const gpu = gpuSpec(cfg.gpuModel ?? DEFAULT_GPU_MODEL);
  const model = modelSpec(cfg.model ?? DEFAULT_MODEL);
  const gpuCount = cfg.gpus ?? DEFAULT_GPUS;
  if (!Number.isInteger(gpuCount) || gpuCount < 1 || gpuCount > 64) throw new ConfigError("gpus", `must be an integer in 1..64, got ${gpuCount}`);
  const power: PowerParams = powerParams(gpu);
  const maxBatchedTokens = cfg.maxBatchedTokens ?? DEFAULT_MAX_BATCHED_TOKENS;
  const knobs: Knobs = {
    smClockMhz: snapSmClock(gpu, cfg.smClockMhz ?? gpu.maxSmClockMhz),
    powerLimitW: cfg.powerLimitW ?? gpu.tdpW,
    maxBatch: cfg.maxBatch ?? DEFAULT_MAX_BATCH,
    tp: cfg.tp ?? minTp(model, gpu),
  };
  validateKnobs(knobs, gpu, model, gpuCount);
  const meters: Meter[] = Array.from({ length: gpuCount }, () => ({ accMj: 0, busyAccMs: 0, atMs: 0, levelW: power.idleW, busyShare: 0, clockMhz: knobs.smClockMhz }));
  const listeners = new Set<StepListener>();
  let instances: NodeInstance[] = [];
  let kvCap = 0;

  const integrate = (m: Meter, tMs: number) => {
    if (tMs > m.atMs) {
      m.accMj += m.levelW * (tMs - m.atMs); // W·ms = mJ
      m.busyAccMs += m.busyShare * (tMs - m.atMs);
      m.atMs = tMs;
    }
  };

  function build(): void {
    kvCap = kvCapacityTokens(model, gpu, knobs.tp);
    const next: NodeInstance[] = [];
    for (let first = 0, i = 0; first + knobs.tp <= gpuCount; first += knobs.tp, i++) {
      const gpus = Array.from({ length: knobs.tp }, (_, k) => first + k);
      const inst: NodeInstance = { id: `i${i}`, gpus, engine: undefined as unknown as InstanceEngine };
      inst.engine = createInstanceEngine({
        perf: { model, gpu, tp: knobs.tp },
        power,
        knobs: (): KnobSettings => knobs,
        maxBatch: () => knobs.maxBatch,
        maxBatchedTokens,
        kvCapacityTokens: kvCap,
        maxContextTokens: model.maxContext,
        onStepStart: (startMs, cost) => {
          for (const g of gpus) {
            const m = meters[g]!;
            integrate(m, startMs);
            m.levelW = cost.powerW;
            m.busyShare = cost.busyShare;
            m.clockMhz = cost.smClockMhz;
          }
        },
        onStep: (step) => {
          for (const g of gpus) {
            const m = meters[g]!;
            integrate(m, step.endMs);
            m.levelW = power.idleW;
            m.busyShare = 0;
            m.clockMhz = knobs.smClockMhz;
          }
          for (const l of listeners) l(inst, step);
        },
      });
      next.push(inst);
    }
    instances = next;
  }
  build();

  return {
    gpu,
    model,
    gpuCount,
    get instances() {
      return instances;
    },
    get kvCapacityTokens() {
      return kvCap;
    },
    knobs: () => ({ ...knobs }),
    setKnobs(change, tMs) {
      const next: Knobs = { ...knobs, ...change };
      if (change.smClockMhz !== undefined) next.smClockMhz = snapSmClock(gpu, change.smClockMhz);
      validateKnobs(next, gpu, model, gpuCount);
      if (next.tp !== knobs.tp && instances.some((i) => i.engine.running + i.engine.waiting > 0)) {
        throw new ConfigError("tp", "can only change while no request is running or queued");
      }
      for (const m of meters) {
        integrate(m, tMs);
        if (m.busyShare === 0) m.clockMhz = next.smClockMhz;
      }
      const rebuild = next.tp !== knobs.tp;
      Object.assign(knobs, next);
      if (rebuild) build();
      return { ...knobs };
    },
    route,
    submit(req, tMs, instanceId) {
      const instance = route(instanceId);
      instance.engine.advanceTo(tMs);
      return { instance, state: instance.engine.submit(req, tMs) };
    },
    cancel(instance, state, tMs) {
      instance.engine.advanceTo(tMs);
      instance.engine.cancel(state);
    },
    advanceTo(tMs) {
      for (const i of instances) i.engine.advanceTo(tMs);
    },
    nextEventMs() {
      let t: number | undefined;
      for (const i of instances) {
        const e = i.engine.nextEventMs();
        if (e !== undefined && (t === undefined || e < t)) t = e;
      }
      return t;
    },
    energyMj(g, tMs) {
      const m = meters[g]!;
      return m.accMj + m.levelW * Math.max(0, tMs - m.atMs);
    },
    powerW: (g) => meters[g]!.levelW,
    busyMs(g, tMs) {
      const m = meters[g]!;
      return m.busyAccMs + m.busyShare * Math.max(0, tMs - m.atMs);
    },
    smClockMhz: (g) => meters[g]!.clockMhz,
    onStep(l) {
      listeners.add(l);
      return () => void listeners.delete(l);
    },
  };

  function route(instanceId?: string): NodeInstance {
    if (instanceId !== undefined) {
      const inst = instances.find((i) => i.id === instanceId);
      if (!inst) throw new ConfigError("instance", `no instance "${instanceId}" (have ${instances.map((i) => i.id).join(", ")})`);
      return inst;
    }
    let best = instances[0]!;
    for (const i of instances) if (i.engine.pendingTokens < best.engine.pendingTokens) best = i;
    return best;
  }
}

function validateKnobs(k: Knobs, gpu: GpuSpec, model: ModelSpec, gpuCount: number): void {
  if (!Number.isInteger(k.tp) || k.tp < 1 || (k.tp & (k.tp - 1)) !== 0) throw new ConfigError("tp", `must be a power of two, got ${k.tp}`);
  if (k.tp > gpuCount) throw new ConfigError("tp", `${k.tp} exceeds the node's ${gpuCount} GPUs`);
  if (kvCapacityTokens(model, gpu, k.tp) < 2048) throw new ConfigError("tp", `${model.id} does not fit on ${k.tp}× ${gpu.name} (minimum TP ${minTp(model, gpu)})`);
  if (!Number.isInteger(k.maxBatch) || k.maxBatch < 1 || k.maxBatch > 4096) throw new ConfigError("maxBatch", `must be an integer in 1..4096, got ${k.maxBatch}`);
  if (!(k.powerLimitW >= gpu.minPowerLimitW && k.powerLimitW <= gpu.tdpW)) throw new ConfigError("powerLimitW", `must be in ${gpu.minPowerLimitW}..${gpu.tdpW} W, got ${k.powerLimitW}`);
}
