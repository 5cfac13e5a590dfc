import { InfluxDB, Point, setLogger, type Transport, type WriteApi } from "@influxdata/influxdb-client";
import { RetryableError } from "../../shared/mod.ts";

/**
 * Writes points to InfluxDB with @influxdata/influxdb-client. Natively it speaks `/api/v2/write`
 * (InfluxDB 1.8+, 2.x, 3.x). With `api: "v1"` a transport wrapper routes the very same writes to
 * 1.x's `/write?db=&rp=&precision=` (Debian ships 1.6.7, which has no v2 endpoint); note that 1.6.7
 * reads `precision=us` as nanoseconds, so precisions are translated to the v1 spellings (n, u, ms, s).
 *
 * `write()` resolves only when InfluxDB accepted the batch, so the caller can acknowledge the inputs
 * after it; the client's own retries (exponential backoff) cover transient failures, and what is
 * still failing after `maxRetryTimeMs` rejects as retryable.
 */
export interface InfluxSinkOptions {
  url: string;
  database: string;
  /** v1: `/write` (InfluxDB 1.x ≤ 1.7); v2: `/api/v2/write` (1.8+, 2.x, 3.x). */
  api?: "v1" | "v2";
  token?: string;
  org?: string;
  /** v2 bucket; defaults to the database name (1.8 "db/rp" convention). */
  bucket?: string;
  retentionPolicy?: string;
  maxRetryTimeMs?: number;
  timeoutMs?: number;
  /**
   * Where the client library's own messages (its retry warnings) go, instead of the console. The
   * library has one logger per process: the last sink created with `log` gets them all.
   */
  log?: (line: string) => void;
}

export interface InfluxSink {
  write(points: Point[]): Promise<void>;
  stats(): { written: number; batches: number; failures: number };
  close(): Promise<void>;
}

const V1_PRECISION: Record<string, string> = { ns: "n", us: "u", ms: "ms", s: "s" };

/** Wraps the client's transport so `/api/v2/write?org=&bucket=&precision=` goes to v1 `/write`. */
export function v1WriteTransport(base: Transport, database: string, retentionPolicy?: string): Transport {
  const rewrite = (path: string): string => {
    if (!path.startsWith("/api/v2/write")) return path;
    const q = new URLSearchParams(path.split("?")[1] ?? "");
    const out = new URLSearchParams({ db: database, precision: V1_PRECISION[q.get("precision") ?? "ns"] ?? "n" });
    if (retentionPolicy) out.set("rp", retentionPolicy);
    if (q.get("consistency")) out.set("consistency", q.get("consistency")!);
    return `/write?${out}`;
  };
  return {
    send: (path, body, options, callbacks) => base.send(rewrite(path), body, options, callbacks),
    request: (path, body, options, started) => base.request(rewrite(path), body, options, started),
    iterate: (path, body, options) => base.iterate(rewrite(path), body, options),
    chunkCombiner: base.chunkCombiner,
  };
}

export function createInfluxSink(opts: InfluxSinkOptions): InfluxSink {
  const api = opts.api ?? "v2";
  if (opts.log) {
    const log = opts.log;
    const line = (level: string) => (message: string, err?: unknown) => log(`influxdb-client ${level}: ${message}${err instanceof Error ? `: ${err.message}` : ""}`);
    setLogger({ error: line("error"), warn: line("warn") });
  }
  const conn = { url: opts.url, ...(opts.token ? { token: opts.token } : {}), timeout: opts.timeoutMs ?? 10_000 };
  const transport = api === "v1" ? v1WriteTransport(new InfluxDB(conn).transport, opts.database, opts.retentionPolicy) : undefined;
  const client = new InfluxDB({ ...conn, ...(transport ? { transport } : {}) });
  const writeApi: WriteApi = client.getWriteApi(opts.org ?? "", opts.bucket ?? (opts.retentionPolicy ? `${opts.database}/${opts.retentionPolicy}` : opts.database), "ns", {
    // We batch ourselves and flush per call: the WriteApi's timer must not flush behind our back.
    batchSize: 1_000_000,
    flushInterval: 0,
    maxBufferLines: 1_000_000,
    maxRetries: 1_000,
    maxRetryTime: opts.maxRetryTimeMs ?? 60_000,
    minRetryDelay: 200,
    maxRetryDelay: 5_000,
  });
  const stats = { written: 0, batches: 0, failures: 0 };
  let chain: Promise<void> = Promise.resolve();
  return {
    write(points) {
      if (points.length === 0) return Promise.resolve();
      // One write in flight: batches land in order and a slow InfluxDB pushes back on the caller.
      const next = chain.then(async () => {
        writeApi.writePoints(points);
        try {
          await writeApi.flush(true);
          stats.written += points.length;
          stats.batches++;
        } catch (err) {
          stats.failures++;
          throw new RetryableError("UNAVAILABLE", `InfluxDB write failed: ${(err as Error).message}`, err);
        }
      });
      // The caller gets this batch's error through `next`; the chain only orders the next batch after it.
      chain = next.catch(() => {});
      return next;
    },
    stats: () => ({ ...stats }),
    async close() {
      await chain;
      // Every batch was flushed by write(); a close that fails has nothing left to lose.
      await writeApi.close().catch(() => undefined);
    },
  };
}

export { Point };
