/** joulestream load generation: workloads (traces, synthetic), the open-loop runner, summaries, workers. */
export type { WorkloadRequest, Workload } from "./workload.ts";
export { runLoad, requestIdOf, DEFAULT_TIMEOUT_MS, type RunLoadOptions } from "./runner.ts";
export { createAggregator, formatSummary, meetsSlo, type LoadSummary, type Slo, type Aggregator } from "./summary.ts";
export { azureTrace, mooncakeTrace, burstGptTrace, traceWorkload, traceRows, guessFormat, detectFormat, TRACE_FORMATS, type TraceFormat } from "./traces.ts";
export { toWorkload, traceStats, type TraceOptions } from "./transform.ts";
export { syntheticWorkload, poissonWorkload, type SyntheticOptions, type Arrival } from "./synthetic.ts";
export { classify, parseClass, CLASSES, INPUT_CUTS, OUTPUT_CUTS, type WorkloadClass } from "../../shared/workload-classes.ts";
export { TraceError, type ParseOptions } from "./trace-error.ts";
export { parseTimestampMs } from "./timestamp.ts";
export { createHistogram, type Histogram, type Percentiles } from "./histogram.ts";
export { tokenIdPrompt, textPrompt, BLOCK_TOKENS } from "./prompt.ts";
export type { Api, PromptMode } from "./request-body.ts";
export { histogramFromState, type HistogramState } from "./histogram.ts";
export { TRACE_CATALOG, type TraceDataset, type TraceFile } from "./trace-catalog.ts";
export { CHECKSUMS_FILE, defaultTraceCacheDir, fetchTrace, sha256File, ChecksumMismatchError, type FetchTraceOptions, type FetchedFile } from "./trace-fetch.ts";
export { loadCommand } from "./command.ts";
export { openResultsOutbox, drainAtExit, type ResultsOutbox, type ResultsOutboxOptions } from "./results-outbox.ts";
