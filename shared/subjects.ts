import { PermanentError } from "./errors.ts";

/**
 * Subject names. The node id (or run id) is always one token, so NATS permissions can restrict a
 * node's credentials to `power.v1.<its id>` etc. and stop one node from speaking for another.
 */
export const TOKEN_RE = /^[A-Za-z0-9_-]{1,128}$/;

export function assertToken(kind: string, id: string): string {
  if (!TOKEN_RE.test(id)) {
    throw new PermanentError("CONFIG", `${kind} id ${JSON.stringify(id)} must match ${TOKEN_RE} (one NATS subject token)`);
  }
  return id;
}

export const subjects = {
  power: (node: string) => `power.v1.${assertToken("node", node)}`,
  requests: (node: string) => `req.v1.${assertToken("node", node)}`,
  work: (node: string) => `work.v1.${assertToken("node", node)}`,
  load: (run: string) => `load.v1.${assertToken("run", run)}`,
  energy: (node: string) => `energy.v1.${assertToken("node", node)}`,
  /** Dead letters: undecodable or invalid messages, with the reason, by the stream they came from. */
  deadLetter: (stream: string) => `dlq.v1.${assertToken("stream", stream)}`,
  /** Clock control service of one node (request/reply). */
  control: (node: string) => `ctl.v1.${assertToken("node", node)}`,
  /** Audit events of a node's clock control. */
  audit: (node: string) => `audit.v1.${assertToken("node", node)}`,
  /** The governors' kill switch: any message makes every governor give back its clocks and stop acting. */
  governorKill: "gov.v1.kill",
  /** Query service of the analyzer. */
  query: "joulestream.query.v1",
  /**
   * The load generator's coordinator ↔ worker protocol (core NATS; results go to the LOAD stream):
   * an idle worker says hello; a coordinator assigns it a job (request/reply); the worker sends
   * heartbeats and a final `done`; the coordinator can abort a run.
   */
  loadgen: {
    hello: "loadgen.v1.hello",
    assign: (worker: string) => `loadgen.v1.assign.${assertToken("worker", worker)}`,
    heartbeat: (run: string) => `loadgen.v1.run.${assertToken("run", run)}.hb`,
    done: (run: string) => `loadgen.v1.run.${assertToken("run", run)}.done`,
    abort: (run: string) => `loadgen.v1.run.${assertToken("run", run)}.abort`,
    /** The coordinator's own heartbeat: workers of a run stop when it falls silent. */
    coordinator: (run: string) => `loadgen.v1.run.${assertToken("run", run)}.coordinator`,
  },
} as const;

/** The node (or run) token of a subject like `power.v1.<node>`. */
export function subjectId(subject: string): string {
  // The third token, found without splitting the subject (the analyzer asks this of every message).
  const i = subject.indexOf(".");
  const j = i < 0 ? -1 : subject.indexOf(".", i + 1);
  if (j < 0) return "";
  const k = subject.indexOf(".", j + 1);
  return subject.slice(j + 1, k < 0 ? subject.length : k);
}

export const KV_NODES = "nodes";

/**
 * The inbox prefix of a node's connection (the agent sets it as the client's `inboxPrefix`): replies
 * to the node's requests arrive under it, and its NATS user may subscribe to no other part of the
 * inbox space. With `_INBOX.>` a node would receive every reply of the fleet: the messages the
 * analyzer pulls from its consumers (whose `$JS.ACK` reply subjects allow_responses would then let it
 * ack or terminate) and the other nodes' publish acks and control replies.
 */
export function nodeInboxPrefix(node: string): string {
  return `_INBOX_${assertToken("node", node)}`;
}

/** The load generator's two roles; each has a NATS user of its own (infra/nats/auth.ts). */
export type LoadgenRole = "worker" | "coordinator";

/** The NATS user of a load generator role (`loadgen-worker`, `loadgen-coordinator`). */
export function loadgenUser(role: LoadgenRole): string {
  return `loadgen-${role}`;
}

/**
 * The inbox prefix of a load generator connection, by role (see nodeInboxPrefix): a worker's user
 * may read only workers' replies, a coordinator's only coordinators'.
 */
export function loadgenInboxPrefix(role: LoadgenRole): string {
  return `_INBOX_${loadgenUser(role)}`;
}

/** The NATS user of a governor (infra/nats/auth.ts). */
export const GOVERNOR_USER = "governor";

/**
 * The inbox prefix of a governor's connection (see nodeInboxPrefix): clock control's replies and
 * the nodes bucket's reads reach it there, and its user may read no other reply.
 */
export function governorInboxPrefix(): string {
  return `_INBOX_${GOVERNOR_USER}`;
}
