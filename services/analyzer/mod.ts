/** The analyzer: public names (what apps and tests compose; its stages are internal). */
export { startAnalyzer, DEFAULT_STOP_GRACE_MS, type Analyzer, type AnalyzerOptions, type AnalyzerStats } from "./analyzer.ts";
export { createInfluxSink, v1WriteTransport, Point, type InfluxSink, type InfluxSinkOptions } from "./influx-sink.ts";
export { detectInfluxApi } from "./influx-version.ts";
export { partitionMappings } from "./partitions.ts";
export { querySummary, startQueryService, summaryRequest, type Summary, type SummaryRequest, type GroupSummary } from "./query-service.ts";
export { ensureRollups, rollupBackfill, rollupStatements, RAW_RP, ROLLUP_RP, type RollupOptions } from "./rollups.ts";
export { analyzerCommand } from "./command.ts";
/** The windowed join as a pure function of its inputs: replays and the attribution benchmark run it in process. */
export { createWindowJoin, type WindowJoin, type JoinOptions, type JoinOutput } from "./join.ts";
