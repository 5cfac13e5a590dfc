/** The lab: experiment matrices, sweeps (library / simnode / fleet), recommendations, reports. */
export { parseMatrix, loadMatrix, expandMatrix, pointId, matrixSchema, type Matrix, type PointSpec, type LoadSpec, type SloSpec } from "./matrix.ts";
export { pointRow, quantile, meetsSlo, ROW_COLUMNS, type PointRow, type WindowMeasurement, type MeasuredRequest, type SloThresholds } from "./metrics.ts";
export { createLibraryRunner, measureLibraryPoint, type PointRunner } from "./library-runner.ts";
export { createRealtimeRunner, type RealtimeRunnerOptions } from "./realtime-runner.ts";
export { createSimnodeController, createFleetController, parseEndpoint, type KnobController, type LabelledEndpoint } from "./controllers.ts";
export { runSweep, selectPoints, type SweepOptions, type SweepResult } from "./sweep.ts";
export { recommend, paretoFrontier, formatRecommendations, configLabel, type Recommendation, type ConfigSummary } from "./recommend.ts";
export { checkFindings, type Finding, type Verdict } from "./findings.ts";
export { sloThresholds, aloneLatency } from "./slo.ts";
export { createProgress, formatDuration, type Progress } from "./progress.ts";
export { openStore, readPoints, toCsv, POINTS_FILE, RESULTS_CSV, RESULTS_JSON } from "./store.ts";
export { buildReportHtml, readSweepDir, type SweepData } from "./report/html.ts";
export { buildCharts, type ChartSpec } from "./report/charts.ts";
export { renderSvg } from "./report/render.ts";
export { sweepCommand, reportCommand } from "./command.ts";
export { runGovernorEval, type EvalOptions, type EvalResult } from "./governor-eval/evaluate.ts";
export { governEvalCommand } from "./governor-eval/command.ts";
export { formatEvalTable, type EvalSummary, type ArmSummary } from "./governor-eval/report.ts";
