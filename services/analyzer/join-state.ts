import type { PowerBatch, RequestEnd, RequestStart } from "../../shared/mod.ts";
import { ClosedWindows } from "./closed-windows.ts";

/**
 * The join's state that outlives a window: per node, how far each stream has come and which windows
 * have closed; per open request, what it has accumulated so far. This, and not the messages that
 * built it, is what a checkpoint holds (checkpoint.ts): after a restart the join is restored from
 * it and only the messages of still-open windows, and those after the checkpoint, are replayed.
 */
export interface NodeState {
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
  /** Starts of closed windows at or after `closedFloor`; every window starting before it counts as closed. Made with the node's first window (its grid). */
  closed: ClosedWindows;
  closedFloor: number;
  /** Latest time of any request event: the node's only clock while it has sent no window. */
  requestMark: number;
  /** POWER and WORK messages taken from this node, and the count when each stream last sent one. */
  seen: number;
  lastSeen: Map<string, number>;
  /** Node clock at the last sweep for requests idle past their limit (the sweep runs once per window of clock). */
  idleSweptAt: number;
}

export interface RequestAcc {
  node: string;
  requestId: string;
  instance?: string;
  start?: RequestStart;
  end?: RequestEnd;
  energyMj: number;
  prefillMj: number;
  decodeMj: number;
  /** Of energyMj, the static-power part (only when the join is given the GPUs' static power). */
  staticMj?: number;
  windows: number;
  incomplete: boolean;
  lastWorkMs: number;
  /** Every window of the request's grid before this start is known closed (closing is for good). */
  checkedFromMs?: number;
}

export function newNodeState(): NodeState {
  return { instances: new Set(), powerMark: 0, workMarks: new Map(), firstStart: Number.POSITIVE_INFINITY, windowMs: 0, closed: new ClosedWindows(0), closedFloor: Number.NEGATIVE_INFINITY, requestMark: 0, seen: 0, lastSeen: new Map(), idleSweptAt: Number.NEGATIVE_INFINITY };
}

/** A snapshot as plain data (msgpack-able: no Map, Set or ±Infinity). Version it if its shape changes. */
export interface JoinSnapshot {
  v: 1;
  nodes: NodeSnapshot[];
  /** Open requests, per node, as tuples (a fleet has tens of thousands open: field names would double the bytes). */
  requests: [string, RequestTuple[]][];
}

/**
 * requestId, instance, start (tMs, model, workloadClass, runId), end (tMs, status, promptTokens,
 * outputTokens), energyMj, prefillMj, decodeMj, windows, incomplete, lastWorkMs, checkedFromMs,
 * staticMj. Only what `emit()` reads of the events is kept. A snapshot written before staticMj
 * existed has 11 elements and restores as it was (no static part).
 */
type RequestTuple = [
  string,
  string | null,
  [number, string | null, string | null, string | null] | null,
  [number, RequestEnd["status"], number, number] | null,
  number,
  number,
  number,
  number,
  boolean,
  number,
  number | null,
  (number | null)?,
];

export function snapshotRequests(open: Map<string, Map<string, RequestAcc>>): JoinSnapshot["requests"] {
  return [...open].map(([node, reqs]) => [
    node,
    [...reqs.values()].map((a): RequestTuple => [
      a.requestId,
      a.instance ?? null,
      a.start ? [a.start.tMs, a.start.model ?? null, a.start.workloadClass ?? null, a.start.runId ?? null] : null,
      a.end ? [a.end.tMs, a.end.status, a.end.promptTokens, a.end.outputTokens] : null,
      a.energyMj,
      a.prefillMj,
      a.decodeMj,
      a.windows,
      a.incomplete,
      a.lastWorkMs,
      a.checkedFromMs ?? null,
      a.staticMj ?? null,
    ]),
  ]);
}

export function restoreRequests(snap: JoinSnapshot["requests"]): RequestAcc[] {
  const out: RequestAcc[] = [];
  for (const [node, tuples] of snap) {
    for (const [requestId, instance, start, end, energyMj, prefillMj, decodeMj, windows, incomplete, lastWorkMs, checkedFromMs, staticMj] of tuples) {
      const inst = instance ?? "unknown";
      const base = { v: 1 as const, kind: "request" as const, msgId: "", node, instance: inst, requestId };
      out.push({
        node,
        requestId,
        ...(instance !== null ? { instance } : {}),
        ...(start ? { start: { ...base, event: "start" as const, tMs: start[0], endpoint: "completions" as const, stream: false, ...(start[1] !== null ? { model: start[1] } : {}), ...(start[2] !== null ? { workloadClass: start[2] } : {}), ...(start[3] !== null ? { runId: start[3] } : {}) } } : {}),
        ...(end ? { end: { ...base, event: "end" as const, tMs: end[0], status: end[1], promptTokens: end[2], outputTokens: end[3] } } : {}),
        energyMj,
        prefillMj,
        decodeMj,
        windows,
        incomplete,
        lastWorkMs,
        ...(checkedFromMs !== null ? { checkedFromMs } : {}),
        ...(staticMj !== undefined && staticMj !== null ? { staticMj } : {}),
      });
    }
  }
  return out;
}

interface NodeSnapshot {
  node: string;
  instances: string[];
  powerMark: number;
  workMarks: [string, number][];
  firstStart: number | null;
  windowMs: number;
  closedFloor: number | null;
  /** Closed window starts as runs on the node's grid: [first start, count] (one run per gap-free stretch). */
  closedRuns: [number, number][];
  requestMark: number;
  seen: number;
  lastSeen: [string, number][];
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

export function snapshotNodes(nodes: Map<string, NodeState>): NodeSnapshot[] {
  return [...nodes].map(([node, ns]) => ({
    node,
    instances: [...ns.instances],
    powerMark: ns.powerMark,
    workMarks: [...ns.workMarks],
    firstStart: finite(ns.firstStart),
    windowMs: ns.windowMs,
    closedFloor: finite(ns.closedFloor),
    closedRuns: ns.closed.runs(),
    requestMark: ns.requestMark,
    seen: ns.seen,
    lastSeen: [...ns.lastSeen],
  }));
}

export function restoreNodes(snap: readonly NodeSnapshot[]): Map<string, NodeState> {
  const nodes = new Map<string, NodeState>();
  for (const s of snap) {
    const closed = ClosedWindows.fromRuns(s.windowMs, s.closedRuns);
    nodes.set(s.node, {
      ...newNodeState(),
      instances: new Set(s.instances),
      powerMark: s.powerMark,
      workMarks: new Map(s.workMarks),
      firstStart: s.firstStart ?? Number.POSITIVE_INFINITY,
      windowMs: s.windowMs,
      closed,
      closedFloor: s.closedFloor ?? Number.NEGATIVE_INFINITY,
      requestMark: s.requestMark,
      seen: s.seen,
      lastSeen: new Map(s.lastSeen),
    });
  }
  return nodes;
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
export function watermark(ns: NodeState): number {
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
export function expectedInstances(w: { power?: PowerBatch }, ns: NodeState): Iterable<string> {
  return w.power?.instances ?? ns.instances;
}

/** Every instance the window must have WORK from has sent it (no allocation: checked on every drain). */
export function hasAllWork(w: { power?: PowerBatch; work: ReadonlyMap<string, unknown> }, ns: NodeState): boolean {
  for (const i of expectedInstances(w, ns)) if (!w.work.has(i)) return false;
  return true;
}
