import { encode, errorMessage, subjects, type CarbonSeries, type RequestEnergy } from "../../shared/mod.ts";
import type { LineProtocolPoint as Point } from "./line-protocol.ts";
import type { AckedPublisher } from "../../shared/mod.ts";
import type { JoinOutput } from "./join.ts";
import type { LoadJoin } from "./load-join.ts";
import type { PointWriter } from "./point-writer.ts";
import { instanceWindowPoint, nodeWindowPoints, requestLoadPoint, requestPoint } from "./points.ts";
import type { Retry } from "./retry.ts";

/**
 * The store stage: a drain's outputs go to InfluxDB (through the coalescing writer), each finished
 * request to the ENERGY stream (published with its msgId, so a replay is dropped by the server as a
 * duplicate) and to the load join. All of it is idempotent: a point rewritten after a restart lands
 * on the same series and time, so the pipeline needs no per-request bookkeeping to store exactly once
 * in effect. Nothing here is awaited per message: `store()` hands off, `barrier()` resolves once
 * everything handed off before it is stored (a checkpoint waits for it before acknowledging).
 */
export interface StoreOptions {
  writer: PointWriter;
  /** ENERGY goes out through it (pipelined JetStream publishes). */
  publisher: AckedPublisher;
  loadJoin: LoadJoin;
  retry: Retry;
  /** Every 10 Hz sample as its own gpu_power point (default: one aggregate per GPU and window). */
  rawSamples?: boolean;
  /** Grid carbon intensity for the request points' gco2. */
  carbon?: CarbonSeries;
  /** ENERGY publishes and load joins in flight at most (then `ready()` waits). */
  maxInFlight?: number;
  log?: (line: string) => void;
}

export interface StoreStats {
  requestsEmitted: number;
  windowsClosed: number;
  loadJoined: number;
  /** Points that could not be built (a non-finite value from a broken agent), dropped. */
  pointsUnbuildable: number;
  /** Latest window end stored, epoch ms (for the lag figure). */
  latestWindowEndMs: number;
}

export interface Store<T> {
  store(out: JoinOutput<T>): void;
  /** Resolves when what was handed off so far is stored; rejects if the stage stopped first. */
  barrier(): Promise<void>;
  /** Resolves when the stage can take more (writer queue and publishes under their bounds). */
  ready(): Promise<void>;
  stats(): StoreStats;
}

/**
 * A point as its line, written when it is built: the writer's queue (up to 200,000 points on a
 * backlog) then holds one string per point, not each builder's arrays and pieces, which every
 * young-generation collection copied until the write.
 */
class Written implements Point {
  private readonly line: string | undefined;
  constructor(p: Point) {
    this.line = p.toLineProtocol();
  }
  toLineProtocol(): string | undefined {
    return this.line;
  }
}

export function createStore<T>(opts: StoreOptions): Store<T> {
  const log = opts.log ?? (() => {});
  const maxInFlight = opts.maxInFlight ?? 4096;
  const pending = new Set<Promise<unknown>>();
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  const stats: StoreStats = { requestsEmitted: 0, windowsClosed: 0, loadJoined: 0, pointsUnbuildable: 0, latestWindowEndMs: 0 };

  const track = (p: Promise<unknown>) => {
    pending.add(p);
    // A failure (only StoppedError once retries end) reaches the checkpoint through barrier().
    p.then(
      () => pending.delete(p),
      () => undefined,
    );
  };
  /** The points of `items`, appended to `into` (a fresh array by default); one that cannot be built is dropped. */
  const built = <I>(items: readonly I[], fn: (i: I) => Point | Point[], into: Point[] = []): Point[] => {
    for (const i of items) {
      let p: Point | Point[];
      try {
        p = fn(i);
      } catch (err) {
        stats.pointsUnbuildable++;
        log(`point not built, dropped: ${errorMessage(err)}`);
        continue;
      }
      if (Array.isArray(p)) for (const x of p) into.push(new Written(x));
      else into.push(new Written(p));
    }
    return into;
  };
  const released = () => {
    inFlight--;
    if (inFlight < maxInFlight) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  /** ENERGY first, then the load join (its point merges into the request's row). */
  const request = async (r: RequestEnergy) => {
    inFlight++;
    try {
      await opts.retry("publishing ENERGY", () => opts.publisher.publish(subjects.energy(r.node), encode(r), r.msgId));
      // A load generator's requests carry its run id (x-joulestream-run): one without came from
      // elsewhere (production traffic), and no LOAD result will ever meet it.
      if (r.runId === undefined) return;
      const joined = await opts.retry("joining load results", () => opts.loadJoin.addEnergy(r));
      if (joined) {
        await opts.writer.write(built([joined], requestLoadPoint));
        stats.loadJoined++;
      }
    } finally {
      released();
    }
  };

  return {
    store(out) {
      if (out.nodeWindows.length + out.instanceWindows.length + out.requests.length === 0) return;
      const raw = opts.rawSamples ?? false;
      const points = built(out.nodeWindows, (w) => nodeWindowPoints(w, { rawSamples: raw }));
      built(out.instanceWindows, instanceWindowPoint, points);
      built(out.requests, (r) => requestPoint(r, opts.carbon), points);
      track(opts.writer.write(points));
      for (const r of out.requests) track(request(r));
      for (const w of out.nodeWindows) stats.latestWindowEndMs = Math.max(stats.latestWindowEndMs, w.windowEndMs);
      stats.requestsEmitted += out.requests.length;
      stats.windowsClosed += out.nodeWindows.length;
    },
    async barrier() {
      await Promise.all([...pending]);
    },
    async ready() {
      await opts.writer.ready();
      if (inFlight >= maxInFlight) await new Promise<void>((r) => waiters.push(r));
    },
    stats: () => ({ ...stats }),
  };
}
