import type { PowerBatch, RequestEnergy, RequestEvent, WorkWindow } from "../../shared/mod.ts";
import { attributeWindow, attributeWindowPrefillEnergy, DEFAULT_PREFILL_WEIGHT } from "../../shared/energy/mod.ts";
import { ClosedWindows } from "./closed-windows.ts";
import { hasAllWork, MAX_STREAM_SKEW_MS, newNodeState, restoreNodes, restoreRequests, snapshotNodes, snapshotRequests, watermark, type JoinSnapshot, type NodeState, type RequestAcc } from "./join-state.ts";

export { MAX_STREAM_SKEW_MS, STALLED_AFTER_MESSAGES } from "./join-state.ts";
import { attributeClosedWindow, energyRecord, type AttributeFn, type InstanceWindowResult, type NodeWindowResult } from "./window-result.ts";

export type { GpuWindowResult, InstanceWindowResult, NodeWindowResult } from "./window-result.ts";

/**
 * The windowed join of POWER, WORK and REQUESTS, per node. Pure state machine: no I/O, no clock —
 * time advances only with the data (a node's watermark is how far its slowest stream has come).
 *
 * A window closes when its POWER and the WORK of every instance known on the node are in, or,
 * incomplete, once the watermark passed its end by `allowedLatenessMs`. A request is finished when
 * its end event is in and every window up to the one holding its end has closed.
 *
 * Acknowledgement: every input comes with an opaque token (a JetStream message). The join hands a
 * token back as ackable once what the input contributed is either in an output (a closed window's
 * results, an emitted request) or in the join's state, which `snapshot()` captures: request events
 * when they are taken in, POWER/WORK when their window closed (its shares are then in the open
 * requests' sums). The caller stores the outputs and the snapshot before it acknowledges
 * (checkpoint.ts); after a crash it `restore()`s the snapshot and only the inputs of windows still
 * open, and those after the snapshot, come again. The same outputs are recomputed (each window's
 * attribution depends on that window's messages alone) and overwrite themselves.
 *
 * Cost: a drain looks only at the nodes that received input since the last one, and a request's
 * windows are checked from where the last check stopped, so a drain is O(new input), not
 * O(open requests × their windows).
 */
export interface JoinOptions {
  prefillWeight?: number;
  /**
   * Attribute by the prefill-energy rule (attribution.ts) with this energy per prefill token, mJ,
   * instead of weighting prefill tokens by `prefillWeight`.
   */
  prefillMjPerToken?: number;
  /**
   * With `prefillMjPerToken`: split each window's decode energy by cost, not count — context tokens
   * whose KV reads cost as much as a decode step's fixed part (attribution.ts, decodeStepCtxTokensOf).
   */
  decodeStepCtxTokens?: number;
  /** With `prefillMjPerToken`: a prefill token's cost grows with its position in the prompt (attribution.ts, ContextCosts). */
  prefillCtx?: { k: number; calibrationPosition: number };
  /** Static (idle) power of one GPU, W: each request's part of it over its windows is reported apart (staticEnergyMj). */
  staticPowerW?: number;
  allowedLatenessMs?: number;
  /** A request without an end event is emitted (incomplete) once the watermark is this far past its last work. */
  maxRequestIdleMs?: number;
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

/**
 * Emitted request ids kept per node (oldest forgotten first): a window or event that comes after its
 * request was stored adds nothing to it. 4,096 is over 15 minutes of a node's requests at 4 a second;
 * later than that a window is below the node's closed floor anyway, and counted late.
 */
export const EMITTED_PER_NODE = 4096;
/** How often, in a node's event time, its open requests are looked at for the idle limit. */
export const IDLE_SWEEP_MS = 10_000;

interface WindowState<T> {
  node: string;
  start: number;
  end: number;
  power?: PowerBatch;
  work: Map<string, WorkWindow>;
  tokens: T[];
}

export interface WindowJoin<T> {
  addPower(batch: PowerBatch, token: T): void;
  addWork(work: WorkWindow, token: T): void;
  addRequest(event: RequestEvent, token: T): void;
  /** Closes what can close and returns the outputs and the tokens that may now be acknowledged. */
  drain(): JoinOutput<T>;
  /** Closes every open window and emits every request that has an end (shutdown, end of a replay). */
  flush(): JoinOutput<T>;
  /** The state outside open windows, as plain data (see join-state.ts). Take it between drains. */
  snapshot(): JoinSnapshot;
  /** Replaces the state by a snapshot (before any input). */
  restore(snapshot: JoinSnapshot): void;
  stats(): JoinStats;
}

const emptyOutput = <T>(): JoinOutput<T> => ({ nodeWindows: [], instanceWindows: [], requests: [], ackable: [] });

export function createWindowJoin<T>(opts: JoinOptions = {}): WindowJoin<T> {
  const prefillWeight = opts.prefillWeight ?? DEFAULT_PREFILL_WEIGHT;
  const perToken = opts.prefillMjPerToken;
  const costs = { ...(opts.decodeStepCtxTokens !== undefined ? { decodeStepCtxTokens: opts.decodeStepCtxTokens } : {}), ...(opts.prefillCtx ? { prefillCtx: opts.prefillCtx } : {}) };
  const attribute: AttributeFn = perToken !== undefined ? (e, reqs) => attributeWindowPrefillEnergy(e, reqs, perToken, costs) : (e, reqs) => attributeWindow(e, reqs, prefillWeight);
  const lateness = opts.allowedLatenessMs ?? 5_000;
  const maxIdle = opts.maxRequestIdleMs ?? 10 * 60_000;
  /**
   * Open windows per node by start, and open requests per node: a drain looks at the nodes that
   * changed only. (Keyed by node, then start: no `node|start` string built per message.)
   */
  const openWindows = new Map<string, Map<number, WindowState<T>>>();
  let openWindowCount = 0;
  /**
   * Windows that got input since the last drain, per node, and the watermark each node's open
   * windows were last checked at: a drain checks a node's touched windows for completeness, and all
   * its open windows only when its watermark moved (a backlog read unevenly leaves dozens open per
   * node, and re-checking them all on every drain cost more than the join itself).
   */
  const touched = new Map<string, Set<WindowState<T>>>();
  const checkedAt = new Map<string, number>();
  const openRequests = new Map<string, Map<string, RequestAcc>>();
  /** Open requests whose end is in: the only ones a drain checks for being finished. */
  const endedRequests = new Map<string, Set<RequestAcc>>();
  const markEnded = (a: RequestAcc) => {
    let set = endedRequests.get(a.node);
    if (!set) endedRequests.set(a.node, (set = new Set()));
    set.add(a);
  };
  /** Per node, the ids of requests emitted lately (oldest first): a window that comes after one adds nothing to it. */
  const emitted = new Map<string, Set<string>>();
  let nodes = new Map<string, NodeState>();
  const dirty = new Set<string>();
  const stats = { duplicates: 0, late: 0, incompleteWindows: 0 };
  let openRequestCount = 0;
  let out: JoinOutput<T> = emptyOutput();

  const nodeState = (node: string) => {
    let n = nodes.get(node);
    if (!n) nodes.set(node, (n = newNodeState()));
    return n;
  };
  const isEmitted = (node: string, id: string) => emitted.get(node)?.has(id) ?? false;
  const isClosed = (ns: NodeState, start: number) => start < ns.closedFloor || ns.closed.has(start);
  /**
   * How far behind a node's event time closed windows stay listed: past the longest a request may
   * idle, a stream may lag and a message may be late, a window is closed for good. Without this
   * floor the list grew by one entry per node per second for as long as the analyzer ran.
   */
  const keepClosedMs = maxIdle + MAX_STREAM_SKEW_MS + lateness;
  const windowFor = (node: string, start: number, end: number, token: T): WindowState<T> | undefined => {
    const ns = nodeState(node);
    dirty.add(node);
    if (isClosed(ns, start)) {
      stats.late++;
      out.ackable.push(token);
      return undefined;
    }
    let open = openWindows.get(node);
    let w = open?.get(start);
    if (!w) {
      w = { node, start, end, work: new Map(), tokens: [] };
      if (!open) openWindows.set(node, (open = new Map()));
      open.set(start, w);
      openWindowCount++;
    }
    w.tokens.push(token);
    let t = touched.get(node);
    if (!t) touched.set(node, (t = new Set()));
    t.add(w);
    if (start < ns.firstStart) ns.firstStart = start;
    if (ns.windowMs === 0 && end > start) {
      ns.windowMs = end - start;
      ns.closed = new ClosedWindows(ns.windowMs);
    }
    return w;
  };
  const requestsOf = (node: string) => {
    let m = openRequests.get(node);
    if (!m) openRequests.set(node, (m = new Map()));
    return m;
  };
  const acc = (node: string, requestId: string): RequestAcc => {
    const m = requestsOf(node);
    let a = m.get(requestId);
    if (!a) {
      m.set(requestId, (a = { node, requestId, energyMj: 0, prefillMj: 0, decodeMj: 0, windows: 0, incomplete: false, lastWorkMs: 0 }));
      openRequestCount++;
    }
    return a;
  };

  const pruneClosed = (ns: NodeState) => {
    if (ns.windowMs > 0 && ns.closed.size > 2 * Math.ceil(keepClosedMs / ns.windowMs)) {
      const floor = watermark(ns) - keepClosedMs;
      if (floor > ns.closedFloor) {
        ns.closedFloor = floor;
        ns.closed.prune(floor);
      }
    }
  };

  const closeWindow = (w: WindowState<T>) => {
    const ns = nodeState(w.node);
    if (openWindows.get(w.node)?.delete(w.start)) openWindowCount--;
    ns.closed.add(w.start);
    pruneClosed(ns);
    const incomplete = !w.power || !hasAllWork(w, ns);
    if (incomplete) stats.incompleteWindows++;
    const closed = attributeClosedWindow({ node: w.node, start: w.start, end: w.end, ...(w.power ? { power: w.power } : {}), work: w.work }, incomplete, attribute, opts.staticPowerW);
    // The node's emitted ids and open requests, looked up once per window rather than per share.
    // (Not created here: a node without open requests must stay without an entry.)
    const emittedHere = emitted.get(w.node);
    let open = openRequests.get(w.node);
    for (const sh of closed.shares) {
      if (emittedHere?.has(sh.requestId)) continue; // a window that came after its request was emitted
      let a = open?.get(sh.requestId);
      if (!a) {
        a = acc(w.node, sh.requestId);
        open = openRequests.get(w.node);
      }
      a.instance ??= sh.instance;
      a.energyMj += sh.energyMj;
      a.prefillMj += sh.prefillMj;
      a.decodeMj += sh.decodeMj;
      if (sh.staticMj !== undefined) a.staticMj = (a.staticMj ?? 0) + sh.staticMj;
      a.windows++;
      a.lastWorkMs = Math.max(a.lastWorkMs, w.end);
      if (incomplete) a.incomplete = true;
    }
    for (const iw of closed.instanceWindows) out.instanceWindows.push(iw);
    out.nodeWindows.push(closed.nodeWindow);
    // The window's shares are in the open requests' sums now (and so in the next snapshot).
    for (const t of w.tokens) out.ackable.push(t);
  };

  const emit = (a: RequestAcc, incomplete: boolean) => {
    out.requests.push(energyRecord(a, incomplete));
    if (openRequests.get(a.node)?.delete(a.requestId)) openRequestCount--;
    const ended = endedRequests.get(a.node);
    if (ended?.delete(a) && ended.size === 0) endedRequests.delete(a.node);
    let done = emitted.get(a.node);
    if (!done) emitted.set(a.node, (done = new Set()));
    done.add(a.requestId);
    if (done.size > EMITTED_PER_NODE) done.delete(done.values().next().value!);
  };

  /**
   * Every window from the request's start to its end has closed (or, never seen, is past the
   * allowed lateness: then the request is incomplete). Windows lie on a grid of the node's window
   * length aligned to the epoch, so the request's windows are known without waiting for "later" data.
   * Closing is for good, so the windows found closed are not looked at again (`checkedFromMs`).
   */
  const requestReady = (a: RequestAcc, ns: NodeState, mark: number): boolean | "missing" => {
    if (!a.start || !a.end || ns.windowMs === 0) return false;
    let missing = false;
    const wm = ns.windowMs;
    let ws = Math.max(Math.floor(a.start.tMs / wm) * wm, a.checkedFromMs ?? Number.NEGATIVE_INFINITY);
    // Windows below the floor are closed: skip them at once (a start stamped a year early, by a clock
    // that NTP stepped later, walked the grid window by window, holding the event loop for seconds).
    if (ws < ns.closedFloor) ws += Math.ceil((ns.closedFloor - ws) / wm) * wm;
    // Windows before the first the node ever sent were never seen: missing, once the latest of them
    // is past the allowed lateness.
    const seenFrom = Math.ceil(ns.firstStart / wm) * wm;
    if (ws < seenFrom && ws <= a.end.tMs && Number.isFinite(seenFrom)) {
      const last = Math.min(seenFrom - wm, Math.floor(a.end.tMs / wm) * wm);
      if (mark < last + wm + lateness) return false;
      missing = true;
      ws = seenFrom;
    }
    let allClosed = !missing;
    const open = openWindows.get(a.node);
    for (; ws <= a.end.tMs; ws += wm) {
      if (isClosed(ns, ws)) {
        if (allClosed) a.checkedFromMs = ws + wm;
        continue;
      }
      allClosed = false;
      if (open?.has(ws) || mark < ws + wm + lateness) return false;
      missing = true;
    }
    return missing ? "missing" : true;
  };

  const stepNode = (node: string, force: boolean) => {
    const ns = nodeState(node);
    const open = openWindows.get(node);
    const fresh = touched.get(node);
    touched.delete(node);
    if (open && open.size > 0) {
      const mark = watermark(ns);
      const moved = force || checkedAt.get(node) !== mark;
      checkedAt.set(node, mark);
      const ready: WindowState<T>[] = [];
      for (const w of moved ? open.values() : (fresh ?? [])) {
        if (open.get(w.start) !== w) continue;
        const complete = w.power !== undefined && (w.power.instances ? w.power.instances.length > 0 : ns.instances.size > 0) && hasAllWork(w, ns);
        if (force || mark >= w.end + lateness || complete) ready.push(w);
      }
      ready.sort((a, b) => a.start - b.start);
      for (const w of ready) closeWindow(w);
      if (open.size === 0) openWindows.delete(node);
    }
    const reqs = openRequests.get(node);
    if (!reqs) return;
    const mark = watermark(ns);
    // Only requests with an end can be finished; the others are looked at for the idle limit, and
    // only once per IDLE_SWEEP_MS of node clock (a fleet keeps tens of thousands open).
    const ended = endedRequests.get(node);
    if (ended) {
      for (const a of ended) {
        const r = requestReady(a, ns, mark);
        if (r !== false || force) emit(a, r === "missing");
      }
    }
    const clock = ns.windowMs === 0 ? ns.requestMark : mark;
    if (force || clock - ns.idleSweptAt >= IDLE_SWEEP_MS) {
      ns.idleSweptAt = clock;
      for (const a of [...reqs.values()]) if (clock > Math.max(a.lastWorkMs, a.start?.tMs ?? 0, a.end?.tMs ?? 0) + maxIdle) emit(a, true);
    }
    if (reqs.size === 0) openRequests.delete(node);
  };

  const step = (force: boolean) => {
    const todo = force ? new Set([...openWindows.keys(), ...openRequests.keys()]) : dirty;
    for (const node of todo) stepNode(node, force);
    dirty.clear();
    const result = out;
    out = emptyOutput();
    return result;
  };

  return {
    addPower(batch, token) {
      const ns = nodeState(batch.node);
      ns.lastSeen.set("power", ++ns.seen);
      if (batch.windowEndMs > ns.powerMark) ns.powerMark = batch.windowEndMs;
      for (const i of batch.instances ?? []) ns.instances.add(i);
      const w = windowFor(batch.node, batch.windowStartMs, batch.windowEndMs, token);
      if (!w) return;
      if (w.power?.msgId === batch.msgId) stats.duplicates++; // the same message again: nothing changes
      w.power = batch;
    },
    addWork(work, token) {
      const ns = nodeState(work.node);
      ns.lastSeen.set(`work:${work.instance}`, ++ns.seen);
      ns.instances.add(work.instance);
      if (work.windowEndMs > (ns.workMarks.get(work.instance) ?? 0)) ns.workMarks.set(work.instance, work.windowEndMs);
      const w = windowFor(work.node, work.windowStartMs, work.windowEndMs, token);
      if (!w) return;
      if (w.work.get(work.instance)?.msgId === work.msgId) stats.duplicates++;
      w.work.set(work.instance, work);
    },
    addRequest(e, token) {
      // Taken in (or refused as late): either way the event is in the state or needs nothing more.
      out.ackable.push(token);
      if (isEmitted(e.node, e.requestId)) {
        stats.late++;
        return;
      }
      const ns = nodeState(e.node);
      dirty.add(e.node);
      if (e.tMs > ns.requestMark) ns.requestMark = e.tMs;
      const a = acc(e.node, e.requestId);
      a.instance ??= e.instance;
      // A duplicate (the same event again) sets what it set before.
      if (e.event === "start") {
        if (a.start?.msgId === e.msgId) stats.duplicates++;
        a.start = e;
      } else if (e.event === "end") {
        if (a.end?.msgId === e.msgId) stats.duplicates++;
        a.end = e;
        markEnded(a);
      }
    },
    drain: () => step(false),
    flush: () => step(true),
    snapshot: () => ({ v: 1, nodes: snapshotNodes(nodes), requests: snapshotRequests(openRequests) }),
    restore(snap) {
      nodes = restoreNodes(snap.nodes);
      openRequests.clear();
      endedRequests.clear();
      openRequestCount = 0;
      for (const a of restoreRequests(snap.requests)) {
        requestsOf(a.node).set(a.requestId, a);
        if (a.end) markEnded(a);
        openRequestCount++;
        dirty.add(a.node);
      }
    },
    stats: () => ({ ...stats, openWindows: openWindowCount, openRequests: openRequestCount, closedListed: [...nodes.values()].reduce((n, ns) => n + ns.closed.size, 0) }),
  };
}
