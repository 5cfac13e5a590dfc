import { z } from "zod";
import { ConfigError } from "../../shared/errors.ts";
import { onShutdownSignal } from "../../shared/lifecycle.ts";
import { CHECKSUMS_FILE, defaultTraceCacheDir, fetchTrace, TRACE_CATALOG, type TraceDataset } from "../loadgen/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { packageFile } from "./package-root.ts";

/**
 * `joulestream traces fetch NAME…`: the full public traces, downloaded to a cache and checked
 * against their sha256; `joulestream traces list`: what can be fetched, and what the repository
 * carries (load/traces). Nothing here runs in the tests' way: they use the carried files.
 */
const schema = z.object({
  dir: z.string().min(1).optional(),
  mirror: z.url().optional(),
});

/** The files the repository carries (load/traces/README.md), package-relative. */
const CARRIED = ["load/traces/azure/AzureLLMInferenceTrace_code.csv", "load/traces/azure/AzureLLMInferenceTrace_conv.csv", "load/traces/mooncake/conversation_trace.jsonl", "load/traces/mooncake/synthetic_trace.jsonl"];

export const tracesCommand = defineCommand(
  {
    name: "traces",
    summary: "download the full public LLM-serving traces (Azure 2023/2024, Mooncake, BurstGPT) to a cache, checksummed",
    usage: "joulestream traces fetch NAME[/FILE]... [--dir DIR]   |   joulestream traces list",
    positionals: "fetch NAME[/FILE]... | list",
    options: {
      dir: { type: "string", arg: "DIR", env: "JOULESTREAM_TRACE_CACHE", description: "cache directory (files go in DIR/NAME/)", defaultText: "$XDG_CACHE_HOME/joulestream/traces, else ~/.cache/joulestream/traces" },
      mirror: { type: "string", arg: "URL", env: "JOULESTREAM_TRACE_MIRROR", description: "fetch from a mirror laid out as URL/NAME/FILE instead of each file's public URL (checksums still apply)" },
    },
    schema,
    notes: [
      `Datasets: ${TRACE_CATALOG.map((d) => d.name).join(", ")} (joulestream traces list shows their files, sources and licences).`,
      "Checksums: every file is verified by sha256 before it is kept; a mismatch is refused and nothing of the download stays. Azure 2023, Mooncake and BurstGPT files are checked against checksums in the catalogue. The Azure 2024 files could not be verified when the catalogue was written: their checksum is recorded on first download (trust on first use, in DIR/NAME/" +
        CHECKSUMS_FILE +
        ") and every later fetch is held to it. A file already in the cache that verifies is not downloaded again.",
    ],
    examples: ["joulestream traces list", "joulestream traces fetch azure-2024", "joulestream traces fetch burstgpt/BurstGPT_without_fails_2.csv --dir /data/traces", "joulestream load --trace ~/.cache/joulestream/traces/azure-2024/AzureLLMInferenceTrace_conv_1week.csv --rate 5 --target …"],
  },
  async (cfg, positionals) => {
    const [verb, ...names] = positionals;
    const dir = cfg.dir ?? defaultTraceCacheDir();
    if (verb === "list") {
      process.stdout.write(listing(dir));
      return 0;
    }
    if (verb !== "fetch") throw new ConfigError("traces", `${verb === undefined ? "missing" : `unknown: ${JSON.stringify(verb)};`} say fetch NAME or list`);
    if (names.length === 0) throw new ConfigError("NAME", `missing: which traces to fetch (${TRACE_CATALOG.map((d) => d.name).join(", ")})`);
    // Every name is checked before anything is downloaded.
    const wanted = names.map(parseName);
    const ac = new AbortController();
    const work = (async () => {
      for (const { dataset, file } of wanted) {
        const files = await fetchTrace({ dataset, dir, ...(file ? { only: [file] } : {}), ...(cfg.mirror ? { mirror: cfg.mirror } : {}), signal: ac.signal, log: (l) => process.stderr.write(`traces: ${l}\n`) });
        for (const f of files) process.stdout.write(`${f.path}\n`);
      }
    })();
    // Ctrl-C: the download stops and removes its partial file before the process exits.
    const off = onShutdownSignal(async () => {
      ac.abort();
      await Promise.allSettled([work]);
    });
    try {
      await work;
    } finally {
      off();
    }
    return 0;
  },
);

function parseName(arg: string): { dataset: TraceDataset; file?: string } {
  const [name, file, ...more] = arg.split("/");
  const dataset = TRACE_CATALOG.find((d) => d.name === name);
  if (!dataset || more.length) throw new ConfigError("NAME", `unknown trace ${JSON.stringify(arg)}: one of ${TRACE_CATALOG.map((d) => d.name).join(", ")}, optionally /FILE`);
  if (file !== undefined && !dataset.files.some((f) => f.name === file)) throw new ConfigError("NAME", `${dataset.name} has no file ${JSON.stringify(file)} (it has ${dataset.files.map((f) => f.name).join(", ")})`);
  return file === undefined ? { dataset } : { dataset, file };
}

function listing(dir: string): string {
  const lines: string[] = [];
  for (const d of TRACE_CATALOG) {
    lines.push(`${d.name} — ${d.title}`, `  format ${d.format}; licence ${d.licence}; ${d.source}`);
    for (const f of d.files) lines.push(`  ${f.name}${f.bytes ? ` (${(f.bytes / 1e6).toFixed(1)} MB)` : ""}, sha256 ${f.sha256 ?? "recorded on first download"}`);
  }
  lines.push("", `cache: ${dir}`, "", "carried in the repository (load/traces/README.md):");
  for (const rel of CARRIED) lines.push(`  ${packageFile(rel) ?? `${rel} (not beside this build)`}`);
  return lines.join("\n") + "\n";
}
