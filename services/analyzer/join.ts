import type { PowerBatch, RequestEnd, RequestEnergy, RequestEvent, RequestStart, WorkWindow } from "../../shared/mod.ts";
import { attributeWindow, DEFAULT_PREFILL_WEIGHT } from "./attribution.ts";
import { gpuWindowEnergy, type GpuWindowEnergy } from "./window-energy.ts";

/**
 * The windowed join of POWER, WORK and REQUESTS, per node. Pure state machine: no I/O, no clock —
 * time advances only with the data (a node's watermark is how far its slowest stream has come).
 *
 * A window closes when its POWER and the WORK of every instance known on the node are in, or,
 * incomplete, once the watermark passed its end by `allowedLatenessMs`. A request is finished when
 * its end event is in and every window up to the one holding its end has closed.
 *
 * Acknowledgement: every input comes with an opaque token (a JetStream message). The join hands a
 * token back as ackable only when what the input contributed is in an output the caller will store
 * first: request events when their request is emitted; POWER/WORK when their window closed AND every
 * request active in it was emitted. After a crash, unacknowledged inputs are redelivered and the same
 * outputs are recomputed (each window's attribution depends on that window's messages alone).
 */
export interface JoinOptions {
  prefillWeight?: number;
  allowedLatenessMs?: number;
  /** A request without an end event is emitted (incomplete) once the watermark is this far past its last work. */
  maxRequestIdleMs?: number;
}

export interface GpuWindowResult extends GpuWindowEnergy {
  gpu: number;
  uuid: string;
}

export interface NodeWindowResult {
  node: string;
  windowStartMs: number;
  windowEndMs: number;
  measuredMj: number;
  attributedMj: number;
  idleMj: number;
  /** Energy of GPUs that belong to no instance (counted in idleMj too). */
  unassignedMj: number;
  incomplete: boolean;
  gpus: GpuWindowResult[];
  power?: PowerBatch;
}

export interface InstanceWindowResult {
  node: string;
  instance: string;
  model?: string;
  windowStartMs: number;
  windowEndMs: number;
  gpus: number[];
  energyMj: number;
  attributedMj: number;
  idleMj: number;
  prefillTokens: number;
  decodeTokens: number;
  activeRequests: number;
  inFlight: number;
  incomplete: boolean;
}

export interface JoinOutput<T> {
  nodeWindows: NodeWindowResult[];
  instanceWindows: InstanceWindowResult[];
  requests: RequestEnergy[];
  ackable: T[];
}

export interface JoinStats {
  duplicates: number;
  late: number;
  openWindows: number;
  openRequests: number;
  incompleteWindows: number;
  /** Closed window starts still listed, all nodes (bounded: older ones fall under each node's floor). */
  closedListed: number;
}

interface NodeState {
  /** Instances seen in WORK on this node, and those the latest POWER listed. */
  instances: Set<string>;
  /** Latest window end seen in POWER. */
  powerMark: number;
  /** Latest window end seen in WORK, per instance. */
  workMarks: Map<string, number>;
  /** Earliest window start seen: where an instance that has sent nothing yet stands. */
  firstStart: number;
  /** Window length on this node (from its messages). */
  windowMs: number;
  /** Starts of closed windows at or after `closedFloor`; every window starting before it counts as closed. */
  closed: Set<number>;
  closedFloor: number;
  /** Latest time of any request event: the node's only clock while it has sent no window. */
  requestMark: number;
  /** POWER and WORK messages taken from this node, and the count when each stream last sent one. */
  seen: number;
  lastSeen: Map<string, number>;
}

/**
 * A stream that stopped sending (an instance removed, a WORK consumer gone) holds the node's
 * watermark back at most this far, in event time.
 */
export const MAX_STREAM_SKEW_MS = 10 * 60_000;
/**
 * ... and only once the node's other streams have sent this many messages since its last one: a
 * stream that is merely behind (a backlog drained unevenly) still sends, and one window stamped far
 * ahead by a glitching clock must not make every stream that is not as far ahead count as stopped.
 */
export const STALLED_AFTER_MESSAGES = 600;

/**
 * The node's event time: the least of how far POWER and each instance's WORK have come. Taking the
 * least, not the latest, keeps one stream that is ahead (a backlog drained unevenly by separate
 * consumers) from closing windows whose other inputs are merely behind, not missing. A stream more
 * than MAX_STREAM_SKEW_MS behind the most advanced one has stopped (POWER as much as WORK: a sampler
 * that died while the tap runs on), and holds nothing back: its windows close incomplete instead
 * of the node's state growing without end.
 */
function watermark(ns: NodeState): number {
  let lead = ns.powerMark;
  for (const inst of ns.instances) lead = Math.max(lead, ns.workMarks.get(inst) ?? ns.firstStart);
  const stopped = (stream: string, mark: number) => lead - mark > MAX_STREAM_SKEW_MS && ns.seen - (ns.lastSeen.get(stream) ?? 0) > STALLED_AFTER_MESSAGES;
  let m = stopped("power", ns.powerMark) ? lead : ns.powerMark;
  for (const inst of ns.instances) {
    const wm = ns.workMarks.get(inst) ?? ns.firstStart;
    if (!stopped(`work:${inst}`, wm)) m = Math.min(m, wm);
  }
  return m;
}

/** The instances a window must have WORK from: those its POWER lists, else all seen on the node. */
function expectedInstances(w: { power?: PowerBatch }, ns: NodeState): Set<string> {
  return w.power?.instances ? new Set(w.power.instances) : ns.instances;
}

interface WindowState<T> {
  node: string;
  start: number;
  end: number;
  power?: PowerBatch;
  work: Map<string, WorkWindow>;
  tokens: T[];
}

interface ClosedHold<T> {
  heldBy: Set<string>;
  tokens: T[];
}

interface RequestAcc<T> {
  node: string;
  requestId: string;
  instance?: string;
  start?: RequestStart;
  end?: RequestEnd;
  energyMj: number;
  prefillMj: number;
  decodeMj: number;
  windows: number;
  incomplete: boolean;
  lastWorkMs: number;
  holds: Set<string>;
  tokens: T[];
  /** Offered to `orphans()` once already. */
  offered?: boolean;
}

export interface WindowJoin<T> {
  addPower(batch: PowerBatch, token: T): void;
  addWork(work: WorkWindow, token: T): void;
  addRequest(event: RequestEvent, token: T): void;
  /** Closes what can close and returns the outputs and the tokens that may now be acknowledged. */
  drain(): JoinOutput<T>;
  /** Closes every open window and emits every request that has an end (shutdown, end of a replay). */
  flush(): JoinOutput<T>;
  /**
   * Requests seen without their start event (in replayed windows, or only their end): after a
   * restart these are requests stored before it, since a start is acknowledged only once its request
   * is stored. Each is offered once; the caller checks its store and `forget`s them.
   */
  orphans(): { node: string; requestId: string }[];
  /** Drops a request already stored elsewhere: its windows' inputs become ackable, nothing is emitted. */
  forget(node: string, requestId: string): void;
  stats(): JoinStats;
}

export function createWindowJoin<T>(opts: JoinOptions = {}): WindowJoin<T> {
  const prefillWeight = opts.prefillWeight ?? DEFAULT_PREFILL_WEIGHT;
  const lateness = opts.allowedLatenessMs ?? 5_000;
  const maxIdle = opts.maxRequestIdleMs ?? 10 * 60_000;
  const windows = new Map<string, WindowState<T>>();
  const holds = new Map<string, ClosedHold<T>>();
  const requests = new Map<string, RequestAcc<T>>();
  const seen = new Set<string>();
  const emitted = new Set<string>();
  const nodes = new Map<string, NodeState>();
  const stats = { duplicates: 0, late: 0, incompleteWindows: 0 };
  let out: JoinOutput<T> = { nodeWindows: [], instanceWindows: [], requests: [], ackable: [] };

  const nodeState = (node: string) => {
    let n = nodes.get(node);
    if (!n) nodes.set(node, (n = { instances: new Set(), powerMark: 0, workMarks: new Map(), firstStart: Number.POSITIVE_INFINITY, windowMs: 0, closed: new Set(), closedFloor: Number.NEGATIVE_INFINITY, requestMark: 0, seen: 0, lastSeen: new Map() }));
    return n;
  };
  const isEmitted = (node: string, id: string) => emitted.has(`${node}/${id}`);
  const isClosed = (ns: NodeState, start: number) => start < ns.closedFloor || ns.closed.has(start);
  /**
   * How far behind a node's event time closed windows stay listed: past the longest a request may
   * idle, a stream may lag and a message may be late, a window is closed for good. Without this
   * floor the list grew by one entry per node per second for as long as the analyzer ran.
   */
  const keepClosedMs = maxIdle + MAX_STREAM_SKEW_MS + lateness;
  const dedupe = (msgId: string, token: T): boolean => {
    if (seen.has(msgId)) {
      stats.duplicates++;
      out.ackable.push(token);
      return true;
    }
    seen.add(msgId);
    if (seen.size > 2_000_000) seen.delete(seen.values().next().value!);
    return false;
  };
  const windowFor = (node: string, start: number, end: number, token: T): WindowState<T> | undefined => {
    const ns = nodeState(node);
    if (isClosed(ns, start)) {
      stats.late++;
      out.ackable.push(token);
      return undefined;
    }
    const key = `${node}|${start}`;
    let w = windows.get(key);
    if (!w) windows.set(key, (w = { node, start, end, work: new Map(), tokens: [] }));
    w.tokens.push(token);
    if (start < ns.firstStart) ns.firstStart = start;
    if (ns.windowMs === 0 && end > start) ns.windowMs = end - start;
    return w;
  };
  const acc = (node: string, requestId: string): RequestAcc<T> => {
    const key = `${node}/${requestId}`;
    let a = requests.get(key);
    if (!a) requests.set(key, (a = { node, requestId, energyMj: 0, prefillMj: 0, decodeMj: 0, windows: 0, incomplete: false, lastWorkMs: 0, holds: new Set(), tokens: [] }));
    return a;
  };

  const closeWindow = (w: WindowState<T>) => {
    const ns = nodeState(w.node);
    windows.delete(`${w.node}|${w.start}`);
    ns.closed.add(w.start);
    if (ns.windowMs > 0 && ns.closed.size > 2 * Math.ceil(keepClosedMs / ns.windowMs)) {
      const floor = watermark(ns) - keepClosedMs;
      if (floor > ns.closedFloor) {
        ns.closedFloor = floor;
        for (const start of ns.closed) if (start < floor) ns.closed.delete(start);
      }
    }
    const missingWork = [...expectedInstances(w, ns)].filter((i) => !w.work.has(i));
    const incomplete = !w.power || missingWork.length > 0;
    if (incomplete) stats.incompleteWindows++;
    const gpuEnergy = new Map<number, GpuWindowResult>();
    for (const g of w.power?.gpus ?? []) gpuEnergy.set(g.gpu, { gpu: g.gpu, uuid: g.uuid, ...gpuWindowEnergy(g) });
    const measuredMj = [...gpuEnergy.values()].reduce((s, g) => s + g.energyMj, 0);
    const assigned = new Set<number>();
    let attributed = 0;
    let idle = 0;
    const heldBy = new Set<string>();
    for (const work of [...w.work.values()].sort((a, b) => (a.instance < b.instance ? -1 : 1))) {
      const energyMj = work.gpus.reduce((s, g) => (assigned.has(g) ? s : (assigned.add(g), s + (gpuEnergy.get(g)?.energyMj ?? 0))), 0);
      const { shares, idleMj } = attributeWindow(energyMj, work.requests, prefillWeight);
      let prefillTokens = 0;
      let decodeTokens = 0;
      for (const s of shares) {
        prefillTokens += s.prefillTokens;
        decodeTokens += s.decodeTokens;
        attributed += s.energyMj;
        if (isEmitted(w.node, s.requestId)) continue; // replayed window of a request already stored
        const a = acc(w.node, s.requestId);
        a.instance ??= work.instance;
        a.energyMj += s.energyMj;
        a.prefillMj += s.prefillMj;
        a.decodeMj += s.decodeMj;
        a.windows++;
        a.lastWorkMs = Math.max(a.lastWorkMs, w.end);
        if (incomplete || !w.power) a.incomplete = true;
        a.holds.add(`${w.node}|${w.start}`);
        heldBy.add(`${w.node}/${s.requestId}`);
      }
      idle += idleMj;
      out.instanceWindows.push({
        node: w.node,
        instance: work.instance,
        ...(work.model ? { model: work.model } : {}),
        windowStartMs: w.start,
        windowEndMs: w.end,
        gpus: work.gpus,
        energyMj,
        attributedMj: energyMj - idleMj,
        idleMj,
        prefillTokens,
        decodeTokens,
        activeRequests: shares.length,
        inFlight: work.inFlight ?? shares.length,
        incomplete,
      });
    }
    let unassignedMj = 0;
    for (const [g, e] of gpuEnergy) if (!assigned.has(g)) unassignedMj += e.energyMj;
    idle += unassignedMj;
    out.nodeWindows.push({
      node: w.node,
      windowStartMs: w.start,
      windowEndMs: w.end,
      measuredMj,
      attributedMj: attributed,
      idleMj: idle,
      unassignedMj,
      incomplete,
      gpus: [...gpuEnergy.values()],
      ...(w.power ? { power: w.power } : {}),
    });
    if (heldBy.size === 0) out.ackable.push(...w.tokens);
    else holds.set(`${w.node}|${w.start}`, { heldBy, tokens: w.tokens });
  };

  const emit = (a: RequestAcc<T>, incomplete: boolean) => {
    const end = a.end;
    out.requests.push({
      v: 1,
      kind: "energy",
      msgId: `${a.node}:energy:${a.requestId}`,
      node: a.node,
      instance: a.instance ?? a.start?.instance ?? end?.instance ?? "unknown",
      requestId: a.requestId,
      ...(a.start?.model ? { model: a.start.model } : {}),
      ...(a.start?.workloadClass ? { workloadClass: a.start.workloadClass } : {}),
      ...(a.start?.runId ? { runId: a.start.runId } : {}),
      startMs: a.start?.tMs ?? end?.tMs ?? a.lastWorkMs,
      endMs: end?.tMs ?? a.lastWorkMs,
      status: end?.status ?? "error",
      promptTokens: end?.promptTokens ?? 0,
      outputTokens: end?.outputTokens ?? 0,
      energyMj: a.energyMj,
      prefillEnergyMj: a.prefillMj,
      decodeEnergyMj: a.decodeMj,
      idleShareMj: 0,
      windows: a.windows,
      // Output tokens but no window that carried them: its energy is missing, not zero.
      incomplete: incomplete || a.incomplete || !a.start || !end || (a.windows === 0 && (end?.outputTokens ?? 0) > 0),
      config: {},
    });
    release(a);
  };

  const release = (a: RequestAcc<T>) => {
    const key = `${a.node}/${a.requestId}`;
    requests.delete(key);
    emitted.add(key);
    if (emitted.size > 2_000_000) emitted.delete(emitted.values().next().value!);
    out.ackable.push(...a.tokens);
    for (const h of a.holds) {
      const hold = holds.get(h);
      if (!hold) continue;
      hold.heldBy.delete(key);
      if (hold.heldBy.size === 0) {
        holds.delete(h);
        out.ackable.push(...hold.tokens);
      }
    }
  };

  /**
   * Every window from the request's start to its end has closed (or, never seen, is past the
   * allowed lateness: then the request is incomplete). Windows lie on a grid of the node's window
   * length aligned to the epoch, so the request's windows are known without waiting for "later" data.
   */
  const requestReady = (a: RequestAcc<T>): boolean | "missing" => {
    const ns = nodeState(a.node);
    if (!a.start || !a.end || ns.windowMs === 0) return false;
    let missing = false;
    const wm = ns.windowMs;
    let ws = Math.floor(a.start.tMs / wm) * wm;
    // Windows below the floor are closed: skip them at once (a start stamped a year early, by a clock
    // that NTP stepped later, walked the grid window by window, holding the event loop for seconds).
    if (ws < ns.closedFloor) ws += Math.ceil((ns.closedFloor - ws) / wm) * wm;
    // Windows before the first the node ever sent were never seen: missing, once the latest of them
    // is past the allowed lateness.
    const seenFrom = Math.ceil(ns.firstStart / wm) * wm;
    if (ws < seenFrom && ws <= a.end.tMs && Number.isFinite(seenFrom)) {
      const last = Math.min(seenFrom - wm, Math.floor(a.end.tMs / wm) * wm);
      if (watermark(ns) < last + wm + lateness) return false;
      missing = true;
      ws = seenFrom;
    }
    for (; ws <= a.end.tMs; ws += wm) {
      if (isClosed(ns, ws)) continue;
      if (windows.has(`${a.node}|${ws}`) || watermark(ns) < ws + wm + lateness) return false;
      missing = true;
    }
    return missing ? "missing" : true;
  };

  /** How far a node has come: its watermark, or, while it has sent no window at all, its request events. */
  const nodeClock = (ns: NodeState) => (ns.windowMs === 0 ? ns.requestMark : watermark(ns));

  const step = (force: boolean) => {
    const ready = [...windows.values()].filter((w) => {
      const ns = nodeState(w.node);
      const expected = expectedInstances(w, ns);
      const complete = w.power !== undefined && expected.size > 0 && [...expected].every((i) => w.work.has(i));
      return force || complete || watermark(ns) >= w.end + lateness;
    });
    ready.sort((a, b) => a.start - b.start);
    for (const w of ready) closeWindow(w);
    for (const a of [...requests.values()]) {
      const r = requestReady(a);
      if (r !== false || (force && a.end)) emit(a, r === "missing");
      else if (nodeClock(nodeState(a.node)) > Math.max(a.lastWorkMs, a.start?.tMs ?? 0, a.end?.tMs ?? 0) + maxIdle) emit(a, true);
    }
    const result = out;
    out = { nodeWindows: [], instanceWindows: [], requests: [], ackable: [] };
    return result;
  };

  return {
    addPower(batch, token) {
      if (dedupe(batch.msgId, token)) return;
      const ns = nodeState(batch.node);
      ns.lastSeen.set("power", ++ns.seen);
      if (batch.windowEndMs > ns.powerMark) ns.powerMark = batch.windowEndMs;
      for (const i of batch.instances ?? []) ns.instances.add(i);
      const w = windowFor(batch.node, batch.windowStartMs, batch.windowEndMs, token);
      if (w) w.power = batch;
    },
    addWork(work, token) {
      if (dedupe(work.msgId, token)) return;
      const ns = nodeState(work.node);
      ns.lastSeen.set(`work:${work.instance}`, ++ns.seen);
      ns.instances.add(work.instance);
      if (work.windowEndMs > (ns.workMarks.get(work.instance) ?? 0)) ns.workMarks.set(work.instance, work.windowEndMs);
      const w = windowFor(work.node, work.windowStartMs, work.windowEndMs, token);
      if (w) w.work.set(work.instance, work);
    },
    addRequest(e, token) {
      if (dedupe(e.msgId, token)) return;
      if (isEmitted(e.node, e.requestId)) {
        stats.late++;
        out.ackable.push(token);
        return;
      }
      const ns = nodeState(e.node);
      if (e.tMs > ns.requestMark) ns.requestMark = e.tMs;
      const a = acc(e.node, e.requestId);
      a.tokens.push(token);
      a.instance ??= e.instance;
      if (e.event === "start") a.start = e;
      else if (e.event === "end") a.end = e;
    },
    drain: () => step(false),
    orphans() {
      const found: { node: string; requestId: string }[] = [];
      for (const a of requests.values()) {
        // Without its start event: a request whose start was acknowledged, i.e. stored, before a restart.
        if (a.offered || a.start) continue;
        a.offered = true;
        found.push({ node: a.node, requestId: a.requestId });
      }
      return found;
    },
    forget(node, requestId) {
      const a = requests.get(`${node}/${requestId}`);
      if (a) release(a);
    },
    flush: () => step(true),
    stats: () => ({ ...stats, openWindows: windows.size, openRequests: requests.size, closedListed: [...nodes.values()].reduce((n, ns) => n + ns.closed.size, 0) }),
  };
}
