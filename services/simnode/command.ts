import { z } from "zod";
import { runUntilSignal } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { GPUS, MODELS } from "./catalog.ts";
import { startSimnode } from "./server.ts";

const schema = z.object({
  host: z.string().default("127.0.0.1"),
  port: z.coerce.number().int().min(0).max(65535).default(8000),
  gpus: z.coerce.number().int().min(1).max(64).default(8),
  tp: z.coerce.number().int().min(1).max(64).optional(),
  model: z.string().default("llama-2-70b"),
  gpuModel: z.string().default("h100-sxm"),
  maxBatch: z.coerce.number().int().min(1).max(4096).optional(),
  smClockMhz: z.coerce.number().int().positive().optional(),
  powerLimitW: z.coerce.number().positive().optional(),
  seed: z.coerce.number().int().default(1),
  timeScale: z.coerce.number().positive().default(1),
});

export const simCommand = defineCommand(
  {
    name: "sim",
    summary: "simulated GPU inference node: OpenAI-compatible API over a calibrated H100 engine model, DCGM-style /metrics",
    options: {
      host: { type: "string", env: "JOULESTREAM_SIM_HOST", description: "listen address", defaultText: "127.0.0.1" },
      port: { type: "string", short: "p", env: "JOULESTREAM_SIM_PORT", description: "listen port (0 = random)", defaultText: "8000" },
      gpus: { type: "string", arg: "N", description: "GPUs in the node", defaultText: "8" },
      tp: { type: "string", arg: "N", description: "tensor parallelism (GPUs per instance)", defaultText: "the model's minimum" },
      model: { type: "string", description: `model (${Object.keys(MODELS).join(", ")})`, defaultText: "llama-2-70b" },
      "gpu-model": { type: "string", description: `GPU (${Object.keys(GPUS).join(", ")})`, defaultText: "h100-sxm" },
      "max-batch": { type: "string", arg: "N", description: "max running sequences per instance (vLLM max_num_seqs)", defaultText: "256" },
      "sm-clock-mhz": { type: "string", arg: "MHZ", description: "lock the SM clock (snapped to a supported step)", defaultText: "max" },
      "power-limit-w": { type: "string", arg: "W", description: "power limit per GPU", defaultText: "TDP" },
      seed: { type: "string", description: "seed for EOS draws and GPU UUIDs", defaultText: "1" },
      "time-scale": { type: "string", arg: "X", description: "simulated time runs X times faster than wall time", defaultText: "1" },
    },
    schema,
    examples: ["joulestream sim --port 8000 --gpus 8 --tp 4 --model llama-2-70b", "joulestream sim --model llama-3.1-8b --gpus 1 --max-batch 64 --sm-clock-mhz 1410"],
  },
  async (cfg) => {
    const sim = await startSimnode(cfg);
    // The handler goes in before the URL is printed: whoever reads it may signal at once.
    const stopped = runUntilSignal(() => sim.stop());
    const k = sim.node.knobs();
    process.stdout.write(`${sim.url}\n`);
    process.stderr.write(
      `sim: ${sim.node.gpuCount}× ${sim.node.gpu.name}, ${sim.instances.length} instance(s) of ${sim.node.model.id} at TP=${k.tp} (${sim.instances.map((i) => `${i.id}: GPUs ${i.gpus.join(",")}`).join("; ")})\n` +
        `sim: OpenAI API ${sim.url}/v1 (pin an instance: ${sim.url}/i/<id>/v1), metrics ${sim.metricsUrl}, admin ${sim.url}/admin/config\n`,
    );
    await stopped;
    return 0;
  },
);
