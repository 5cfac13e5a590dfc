import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ConfigError, errorMessage } from "../../shared/errors.ts";
import { gpuSpec, modelSpec } from "../simnode/mod.ts";
import { CLASSES, type WorkloadClass } from "../../shared/workload-classes.ts";

/**
 * An experiment matrix: the paper's knobs (GPU clock × max batch × tensor parallelism × workload
 * class × model × offered load) as axes, expanded into points. YAML or JSON, validated with zod;
 * errors name the key (`matrix.experiments[0].axes.tp[1]`). A file with top-level `axes` is one
 * experiment named after the matrix.
 */
const positiveInt = z.number().int().positive();
const workloadClass = z.string().refine((s): s is WorkloadClass => (CLASSES as readonly string[]).includes(s), { message: `must be one of ${CLASSES.join(", ")}` });

/** Offered load: prompt + output tokens per second (DynamoLLM's "2K tokens/s"), or requests per second. */
export const loadSpec = z.union([z.object({ tokensPerS: z.number().positive() }).strict(), z.object({ requestsPerS: z.number().positive() }).strict()]);
export type LoadSpec = z.infer<typeof loadSpec>;

const axesSchema = z
  .object({
    model: z.array(z.string().min(1)).min(1).default(["llama-2-70b"]),
    workload: z.array(workloadClass).min(1),
    smClockMhz: z.array(z.number().positive()).min(1),
    maxBatch: z.array(positiveInt).min(1).default([256]),
    tp: z.array(positiveInt).min(1).default([4]),
    load: z.array(loadSpec).min(1).default([{ tokensPerS: 2000 }]),
  })
  .strict();

const windowSchema = z
  .object({
    /** Load runs this long before measuring (batch fills, queues settle), s. */
    warmupS: z.number().nonnegative().default(10),
    /** The measurement window, s. */
    measureS: z.number().positive().default(60),
  })
  .strict();

/**
 * SLOs on TTFT and time per output token. Absolute (`ttftMs`, `tpotMs`), or `factor` × the latency
 * of one request of the class served alone on the `reference` configuration (DynamoLLM: 5×),
 * computed with the simulated node. A point meets its SLO when at least `attainment` of its
 * measured requests meet both.
 */
const sloSchema = z
  .object({
    ttftMs: z.number().positive().optional(),
    tpotMs: z.number().positive().optional(),
    factor: z.number().positive().default(5),
    reference: z.object({ tp: positiveInt.default(8), smClockMhz: z.number().positive().default(1980) }).strict().default({ tp: 8, smClockMhz: 1980 }),
    attainment: z.number().min(0).max(1).default(0.9),
  })
  .strict();
export type SloSpec = z.infer<typeof sloSchema>;

const experimentSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - only"),
    description: z.string().optional(),
    axes: axesSchema,
    /** GPUs powered and counted per point; default: the point's TP degree (one instance). */
    gpus: positiveInt.optional(),
    window: windowSchema.optional(),
  })
  .strict();

export const matrixSchema = z.preprocess(
  (raw) => {
    if (raw && typeof raw === "object" && "axes" in raw && !("experiments" in raw)) {
      const { axes, gpus, ...rest } = raw as Record<string, unknown>;
      return { ...rest, experiments: [{ name: (rest.name as string) ?? "main", axes, ...(gpus !== undefined ? { gpus } : {}) }] };
    }
    return raw;
  },
  z
    .object({
      name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - only"),
      description: z.string().optional(),
      gpu: z.string().default("h100-sxm"),
      seed: z.number().int().default(17),
      window: windowSchema.default({ warmupS: 10, measureS: 60 }),
      slo: sloSchema.default({ factor: 5, reference: { tp: 8, smClockMhz: 1980 }, attainment: 0.9 }),
      experiments: z.array(experimentSchema).min(1),
    })
    .strict(),
);
export type Matrix = z.infer<typeof matrixSchema>;
export type Experiment = Matrix["experiments"][number];

/** One configuration to measure. */
export interface PointSpec {
  experiment: string;
  model: string;
  gpu: string;
  workloadClass: WorkloadClass;
  smClockMhz: number;
  maxBatch: number;
  tp: number;
  gpus: number;
  load: LoadSpec;
  warmupS: number;
  measureS: number;
  seed: number;
}

export function parseMatrix(raw: unknown, source = "matrix"): Matrix {
  const r = matrixSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
    throw new ConfigError(`${source}${path}`, issue.message);
  }
  const names = new Set<string>();
  let gpu;
  try {
    gpu = gpuSpec(r.data.gpu);
  } catch (err) {
    throw new ConfigError(`${source}.gpu`, errorMessage(err).replace(/^gpuModel: /, ""));
  }
  const clocks = gpu.supportedSmClocksMhz;
  r.data.experiments.forEach((e, i) => {
    if (names.has(e.name)) throw new ConfigError(`${source}.experiments[${i}].name`, `duplicate experiment "${e.name}"`);
    names.add(e.name);
    const at = `${source}.experiments[${i}].axes`;
    for (const [axis, values] of Object.entries(e.axes)) {
      const seen = new Set(values.map((v) => JSON.stringify(v)));
      if (seen.size !== values.length) throw new ConfigError(`${at}.${axis}`, "lists a value twice");
    }
    e.axes.model.forEach((m, k) => {
      try {
        modelSpec(m);
      } catch (err) {
        throw new ConfigError(`${at}.model[${k}]`, errorMessage(err).replace(/^model: /, ""));
      }
    });
    // The driver locks only supported clocks: a value off the grid or out of range would be measured
    // at another clock than the row says (and two values could measure the same clock).
    e.axes.smClockMhz.forEach((f, k) => {
      if (clocks.includes(f)) return;
      const near = [...clocks].sort((a, b) => Math.abs(a - f) - Math.abs(b - f))[0]!;
      throw new ConfigError(`${at}.smClockMhz[${k}]`, `${f} MHz is not a supported SM clock of ${gpu.name} (${clocks[clocks.length - 1]}–${clocks[0]} MHz in ${clocks[0]! - clocks[1]!} MHz steps; nearest: ${near})`);
    });
  });
  return r.data;
}

export function loadMatrix(path: string): Matrix {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError("--matrix", `cannot read ${path}: ${errorMessage(err)}`);
  }
  let raw: unknown;
  try {
    raw = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError("--matrix", `${path} is not valid ${/\.json$/i.test(path) ? "JSON" : "YAML"}: ${errorMessage(err)}`);
  }
  return parseMatrix(raw, "matrix");
}

/** Every point of every experiment, in a stable order (model, class, TP, batch, load, clock descending). */
export function expandMatrix(m: Matrix): PointSpec[] {
  const out: PointSpec[] = [];
  for (const e of m.experiments) {
    const w = { ...m.window, ...e.window };
    const clocks = [...e.axes.smClockMhz].sort((a, b) => b - a);
    for (const model of e.axes.model)
      for (const workloadClass of e.axes.workload as WorkloadClass[])
        for (const tp of e.axes.tp)
          for (const maxBatch of e.axes.maxBatch)
            for (const load of e.axes.load)
              for (const smClockMhz of clocks)
                out.push({ experiment: e.name, model, gpu: m.gpu, workloadClass, smClockMhz, maxBatch, tp, gpus: Math.max(e.gpus ?? tp, tp), load, warmupS: w.warmupS, measureS: w.measureS, seed: m.seed });
  }
  return out;
}

export const loadLabel = (l: LoadSpec): string => ("tokensPerS" in l ? `${l.tokensPerS}tok/s` : `${l.requestsPerS}req/s`);

/** A readable, stable id: same configuration → same id, so a resumed sweep skips it. */
export function pointId(p: PointSpec): string {
  const load = "tokensPerS" in p.load ? `t${p.load.tokensPerS}` : `r${p.load.requestsPerS}`;
  return [p.experiment, p.model, p.workloadClass, `tp${p.tp}`, `g${p.gpus}`, `b${p.maxBatch}`, load, `f${p.smClockMhz}`, `w${p.warmupS}+${p.measureS}`, `s${p.seed}`].join("/");
}
