import { InfluxDB, Point, setLogger, type Transport } from "@influxdata/influxdb-client";
import { errorMessage, RetryableError } from "../../shared/mod.ts";
import type { LineProtocolPoint } from "./line-protocol.ts";

/**
 * Writes points to InfluxDB through @influxdata/influxdb-client's transport: the points' own line
 * protocol (Point.toLineProtocol), one POST per call. Natively `/api/v2/write` (InfluxDB 1.8+, 2.x,
 * 3.x); with `api: "v1"` a transport wrapper routes the very same writes to 1.x's
 * `/write?db=&rp=&precision=` (Debian ships 1.6.7, which has no v2 endpoint); note that 1.6.7 reads
 * `precision=us` as nanoseconds, so precisions are translated to the v1 spellings (n, u, ms, s).
 *
 * Points are anything that writes its own line (line-protocol.ts; the client's Point too).
 * `write()` resolves only when InfluxDB accepted the batch, so the caller can acknowledge the inputs
 * after it, and rejects at the first failure with the HTTP status on the error: retrying, and
 * telling a refusal for good (4xx) from an outage, is the caller's (point-writer.ts). The client's
 * WriteApi is not used: its buffering and retries duplicated ours and halved the throughput
 * (84k against 180k points/s measured here, scratch figures in the closing note of issue 15).
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
  timeoutMs?: number;
  /**
   * Where the client library's own messages (its retry warnings) go, instead of the console. The
   * library has one logger per process: the last sink created with `log` gets them all.
   */
  log?: (line: string) => void;
}

export interface InfluxSink {
  write(points: readonly LineProtocolPoint[]): Promise<void>;
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
  const base = new InfluxDB(conn).transport;
  const transport = api === "v1" ? v1WriteTransport(base, opts.database, opts.retentionPolicy) : base;
  const bucket = opts.bucket ?? (opts.retentionPolicy ? `${opts.database}/${opts.retentionPolicy}` : opts.database);
  const path = `/api/v2/write?${new URLSearchParams({ org: opts.org ?? "", bucket, precision: "ns" })}`;
  const stats = { written: 0, batches: 0, failures: 0 };
  const inFlight = new Set<Promise<void>>();
  return {
    write(points) {
      if (points.length === 0) return Promise.resolve();
      const lines: string[] = [];
      for (const p of points) {
        const l = p.toLineProtocol();
        if (l) lines.push(l);
      }
      const sent = (async () => {
        try {
          await transport.request(path, lines.join("\n"), { method: "POST", headers: { "content-type": "text/plain; charset=utf-8" } });
          stats.written += lines.length;
          stats.batches++;
        } catch (err) {
          stats.failures++;
          const status = (err as { statusCode?: number }).statusCode;
          throw Object.assign(new RetryableError("UNAVAILABLE", `InfluxDB write failed${status ? ` (HTTP ${status})` : ""}: ${errorMessage(err)}`, err), status ? { statusCode: status } : {});
        }
      })();
      inFlight.add(sent);
      void sent.finally(() => inFlight.delete(sent)).catch(() => undefined);
      return sent;
    },
    stats: () => ({ ...stats }),
    async close() {
      // Every write was awaited by its caller; a close waits for the stragglers, never retries.
      await Promise.allSettled([...inFlight]);
    },
  };
}

export { Point };
