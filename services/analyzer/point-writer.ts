import { errorMessage } from "../../shared/mod.ts";
import type { InfluxSink } from "./influx-sink.ts";
import type { LineProtocolPoint as Point } from "./line-protocol.ts";
import { retrying, StoppedError, type Retry } from "./retry.ts";

/**
 * Coalesces the points of many drains into few InfluxDB writes (the store stage's InfluxDB side).
 *
 * - A batch leaves when it holds `maxBatchPoints`, or `lingerMs` after its first point.
 * - One write in flight: batches land in order, and a slow InfluxDB slows the writer, not the server.
 * - Bounded queue, overflow policy "the producer waits": `write()` always takes the points (they are
 *   never dropped: their inputs would be lost with them), and `ready()` resolves only once the queue
 *   is back under `maxQueuedPoints`. The pipeline awaits it before pulling more, so an InfluxDB
 *   outage stops consumption instead of growing memory, and the inputs stay unacknowledged.
 * - Errors are classified here: a 4xx other than 408/429 is permanent for the points that caused it;
 *   the batch is split until those are found and dropped (counted in `rejected`), so one bad point
 *   never poisons the points after it. Anything else is retried with backoff until `close()`.
 */
export interface PointWriterOptions {
  maxBatchPoints?: number;
  lingerMs?: number;
  maxQueuedPoints?: number;
  log?: (line: string) => void;
  /** Called on each transient failure that will be retried. */
  onRetry?: () => void;
}

export interface PointWriter {
  /** Queues points; resolves once InfluxDB has them (or refused the bad ones for good). */
  write(points: Point[]): Promise<void>;
  /** Resolves when the queue is under its bound. */
  ready(): Promise<void>;
  stats(): { queued: number; written: number; batches: number; rejected: number; retries: number };
  /** Stops retrying: what is not written by then is rejected with StoppedError. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BATCH_POINTS = 5_000;
export const DEFAULT_LINGER_MS = 100;
export const DEFAULT_MAX_QUEUED_POINTS = 200_000;

interface Pending {
  points: Point[];
  resolve(): void;
  reject(err: unknown): void;
}

/** A 4xx other than 408 (timeout) and 429 (too many requests): the same points fail the same way. */
export function isPermanentWriteError(err: unknown): boolean {
  const e = err as { cause?: { statusCode?: number }; statusCode?: number } | undefined;
  const code = e?.cause?.statusCode ?? e?.statusCode;
  return code !== undefined && code >= 400 && code < 500 && code !== 408 && code !== 429;
}

export function createPointWriter(sink: InfluxSink, opts: PointWriterOptions = {}): PointWriter {
  const maxBatch = opts.maxBatchPoints ?? DEFAULT_MAX_BATCH_POINTS;
  const linger = opts.lingerMs ?? DEFAULT_LINGER_MS;
  const maxQueued = opts.maxQueuedPoints ?? DEFAULT_MAX_QUEUED_POINTS;
  const log = opts.log ?? (() => {});
  const queue: Pending[] = [];
  const stats = { queued: 0, written: 0, batches: 0, rejected: 0, retries: 0 };
  const retry: Retry = retrying({ log, onRetry: () => (stats.retries++, opts.onRetry?.()) });
  let waiters: (() => void)[] = [];
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  /** Writes `points`, isolating the ones InfluxDB refuses for good (split in halves until found). */
  const writeIsolating = async (points: Point[]): Promise<void> => {
    if (points.length === 0) return;
    try {
      await sink.write(points);
    } catch (err) {
      if (!isPermanentWriteError(err)) throw err;
      if (points.length === 1) {
        stats.rejected++;
        log(`InfluxDB refused a point, dropped: ${errorMessage(err)}`);
        return;
      }
      const mid = points.length >> 1;
      await writeIsolating(points.slice(0, mid));
      await writeIsolating(points.slice(mid));
    }
  };

  const take = (): { batch: Point[]; done: Pending[] } => {
    const batch: Point[] = [];
    const done: Pending[] = [];
    while (queue.length > 0 && (batch.length === 0 || batch.length + queue[0]!.points.length <= maxBatch)) {
      const p = queue.shift()!;
      for (const x of p.points) batch.push(x);
      done.push(p);
    }
    stats.queued -= batch.length;
    return { batch, done };
  };

  const loop = async () => {
    while (queue.length > 0) {
      const { batch, done } = take();
      if (stats.queued < maxQueued) {
        const w = waiters;
        waiters = [];
        for (const f of w) f();
      }
      try {
        await retry("writing InfluxDB", () => writeIsolating(batch));
        stats.written += batch.length;
        stats.batches++;
        for (const p of done) p.resolve();
      } catch (err) {
        for (const p of done) p.reject(err);
        for (const p of queue.splice(0)) p.reject(err);
        stats.queued = 0;
      }
      // Let more points gather behind a write that found the queue small.
      if (queue.length > 0 && stats.queued < maxBatch && !closed) await new Promise((r) => setTimeout(r, linger));
    }
    running = undefined;
  };
  const kick = () => {
    if (running || closed) return;
    if (stats.queued >= maxBatch) {
      clearTimeout(timer);
      timer = undefined;
      running = loop();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        running ??= loop();
      }, linger);
    }
  };

  return {
    write(points) {
      if (closed) return Promise.reject(new StoppedError("the InfluxDB writer is closed"));
      if (points.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        queue.push({ points, resolve, reject });
        stats.queued += points.length;
        kick();
      });
    },
    ready: () => (stats.queued < maxQueued || closed ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    stats: () => ({ ...stats }),
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      retry.stop();
      const err = new StoppedError("the InfluxDB writer was closed before these points were written");
      for (const p of queue.splice(0)) p.reject(err);
      stats.queued = 0;
      for (const f of waiters) f();
      waiters = [];
      await running?.catch(() => undefined);
    },
  };
}
