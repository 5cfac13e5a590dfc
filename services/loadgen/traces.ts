import { parseAzure } from "./azure.ts";
import { parseBurstGpt } from "./burstgpt.ts";
import { parseMooncake } from "./mooncake.ts";
import { ConfigError } from "../../shared/errors.ts";
import { toWorkload, type TraceOptions } from "./transform.ts";
import { headerNames, type TraceRow } from "./trace-row.ts";
import type { Workload } from "./workload.ts";
import type { ParseOptions } from "./trace-error.ts";
import { closeSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";

export type TraceFormat = "azure" | "mooncake" | "burstgpt";
export const TRACE_FORMATS: readonly TraceFormat[] = ["azure", "mooncake", "burstgpt"];

/**
 * The format from the file's first line where it tells (a JSON object: Mooncake; a CSV header naming
 * ContextTokens: Azure; Request tokens: BurstGPT), else from its name. A BurstGPT file called
 * `trace.csv` is read as what it is.
 */
export function detectFormat(path: string): TraceFormat {
  return formatOfHeader(firstLine(path)) ?? guessFormat(path);
}

function firstLine(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.toString("utf8", 0, n).replace(/^\uFEFF/, "").trimStart().split(/\r?\n/)[0] ?? "";
  } catch {
    return ""; // unreadable here: the parser says why, naming the file
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function formatOfHeader(line: string): TraceFormat | undefined {
  if (line.startsWith("{") || line.startsWith("[")) return "mooncake";
  const names = headerNames(line); // as the parsers will read it
  if (names.includes("contexttokens")) return "azure";
  if (names.includes("request tokens")) return "burstgpt";
  return undefined;
}

/** Format from the file name: .jsonl → mooncake, a name with "burst" → burstgpt, other .csv → azure. */
export function guessFormat(path: string): TraceFormat {
  // The file's own name only: a directory like `bursty-runs/` must not make an Azure CSV BurstGPT.
  const p = basename(path).toLowerCase();
  if (p.endsWith(".jsonl") || p.endsWith(".json")) return "mooncake";
  if (p.includes("burst")) return "burstgpt";
  if (p.endsWith(".csv")) return "azure";
  throw new ConfigError("--format", `cannot tell the format of ${path}: give --format azure|mooncake|burstgpt`);
}

export function traceRows(path: string, format: TraceFormat, opts: ParseOptions = {}): AsyncIterable<TraceRow> {
  switch (format) {
    case "azure":
      return parseAzure(path, opts);
    case "mooncake":
      return parseMooncake(path, opts);
    case "burstgpt":
      return parseBurstGpt(path, opts);
  }
}

/** Any supported trace as a workload. */
export function traceWorkload(path: string, opts: TraceOptions & { format?: TraceFormat } = {}): Workload {
  const format = opts.format ?? detectFormat(path);
  return toWorkload(traceRows(path, format, opts), path, opts);
}

export const azureTrace = (path: string, opts: TraceOptions = {}): Workload => toWorkload(parseAzure(path, opts), path, opts);
export const mooncakeTrace = (path: string, opts: TraceOptions = {}): Workload => toWorkload(parseMooncake(path, opts), path, opts);
export const burstGptTrace = (path: string, opts: TraceOptions & { models?: string[] } = {}): Workload => toWorkload(parseBurstGpt(path, opts), path, opts);
