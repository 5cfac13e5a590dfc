/** The simulated GPU node: public names. */
export { startSimnode, instanceEndpoints, type Simnode, type SimnodeOptions } from "./server.ts";
export { simulate, type WorkloadRequest, type SimulationOptions, type SimulationResult, type RequestTiming, type StepRecord } from "./library.ts";
export { createSimNode, DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCHED_TOKENS, type SimNode, type NodeConfig, type Knobs, type NodeInstance } from "./node.ts";
export { createInstanceEngine, type InstanceEngine, type EngineRequest, type CompletedStep, type SeqWork } from "./engine.ts";
export { createEnergyLedger, splitStep, DEFAULT_LEDGER_MAX_REQUESTS, type EnergyLedger, type LedgerRequest, type LedgerInstance, type LedgerSnapshot } from "./ledger.ts";
export { GPUS, MODELS, H100_SUPPORTED_SM_CLOCKS_MHZ, gpuSpec, modelSpec, snapSmClock, kvCapacityTokens, kvBytesPerToken, minTp, type GpuSpec, type ModelSpec } from "./catalog.ts";
export { stepPhases, type StepWork, type Phase } from "./perf-model.ts";
export { stepCost, dynamicScale, powerParams, type StepCost, type PowerParams } from "./power-model.ts";
export { CHARS_PER_TOKEN, CHAT_TOKENS_PER_MESSAGE, estimateTextTokens, textOfTokens } from "./openai.ts";
export { poissonClassWorkload, burstWorkload, CLASS_MEDIAN_TOKENS, type PoissonOptions } from "./workloads.ts";
export { ML_ENERGY_H100, measureSteadyState, type MeasuredPoint, type SteadyState } from "./calibration.ts";
export { gpuUuid } from "./metrics.ts";
export { simCommand } from "./command.ts";
