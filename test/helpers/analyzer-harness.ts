/**
 * Test and bench support (not part of the emulator): the real analyzer bound to a local stack, and
 * a read-back of what it stored in InfluxDB.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { createInfluxSink, detectInfluxApi, startAnalyzer, type Analyzer } from "../../services/analyzer/mod.ts";
import { influxQuery, type InfluxTarget } from "../../shared/mod.ts";
import type { LocalStack } from "../../infra/local-stack.ts";

/** The real analyzer (InfluxDB sink) on a local stack, for fleet emulator tests and benches. */
export async function startStackAnalyzer(stack: LocalStack, opts: { name?: string; allowedLatenessMs?: number } = {}): Promise<{ analyzer: Analyzer; nc: NatsConnection; influx: InfluxTarget; close(): Promise<void> }> {
  const nc = await connect({ servers: stack.natsUrl, name: "test-analyzer", noAsyncTraces: true });
  const { api } = await detectInfluxApi(stack.influxUrl);
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  const analyzer = await startAnalyzer({ nc, sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api }), ...(opts.name ? { name: opts.name } : {}), ...(opts.allowedLatenessMs !== undefined ? { allowedLatenessMs: opts.allowedLatenessMs } : {}) });
  let closed: Promise<void> | undefined;
  return {
    analyzer,
    nc,
    influx,
    close: () =>
      (closed ??= (async () => {
        await analyzer.stop();
        await nc.close();
      })()),
  };
}

export interface StoredRequest {
  node: string;
  requestId: string;
  status: string;
  energyJ: number;
  promptTokens: number;
  outputTokens: number;
  incomplete: boolean;
}

/** What the analyzer wrote: node_energy windows and their Σ measured_j, and every request_energy row. */
export async function readResults(influx: InfluxTarget): Promise<{ nodeWindows: number; measuredJ: number; incompleteWindows: number; requests: StoredRequest[] }> {
  const ne = await influxQuery(influx, "SELECT measured_j, incomplete FROM node_energy");
  const rows = ne[0]?.rows ?? [];
  const req = await influxQuery(influx, "SELECT request_id, energy_j, prompt_tokens, output_tokens, incomplete FROM request_energy GROUP BY node, status");
  const requests: StoredRequest[] = [];
  for (const s of req) {
    for (const r of s.rows) {
      requests.push({
        node: s.tags.node!,
        status: s.tags.status!,
        requestId: String(r.request_id),
        energyJ: Number(r.energy_j),
        promptTokens: Number(r.prompt_tokens),
        outputTokens: Number(r.output_tokens),
        incomplete: r.incomplete === true,
      });
    }
  }
  return {
    nodeWindows: rows.length,
    measuredJ: rows.reduce((s, r) => s + Number(r.measured_j), 0),
    incompleteWindows: rows.filter((r) => r.incomplete === true).length,
    requests,
  };
}
