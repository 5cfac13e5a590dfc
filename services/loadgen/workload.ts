/** One request of a workload, as sources produce it and the scheduler consumes it. */
export interface WorkloadRequest {
  /** Position in the workload, dense from 0 (trace row order after filtering): the exactly-once key. */
  index: number;
  /** Send time relative to the run's start, ms. */
  offsetMs: number;
  promptTokens: number;
  outputTokens: number;
  workloadClass?: string;
  /** Mooncake-style 512-token block ids: equal ids → identical prompt blocks. */
  hashIds?: number[];
}

/** A workload is any stream of requests in non-decreasing offset order. */
export type Workload = AsyncIterable<WorkloadRequest>;
