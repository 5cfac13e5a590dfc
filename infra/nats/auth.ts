import { GOVERNOR_USER, governorInboxPrefix, loadgenInboxPrefix, loadgenUser, nodeInboxPrefix, subjects, type LoadgenRole } from "../../shared/subjects.ts";

/**
 * NATS server authorization for a fleet: one identity per node, allowed to publish only its own
 * subjects (power/req/work/audit.v1.<node>, its KV inventory key) and to answer only its own clock
 * control subject; optionally `loadgen-worker` and `loadgen-coordinator` identities, limited to the
 * load generator's control subjects and the LOAD stream; an operator identity for control and the
 * analyzer.
 *
 * Generates the `authorization { users = [...] }` block of nats-server.conf (server 2.9+). Node
 * passwords may be bcrypt hashes (`nats server passwd`) in production; the test uses plain ones.
 */
export interface NodeIdentity {
  id: string;
  password: string;
}

export interface AuthConfig {
  nodes: NodeIdentity[];
  operator: { user: string; password: string };
  /** Passwords of the load generator's identities; a role left out has no user (use the operator's). */
  loadgen?: Partial<Record<LoadgenRole, { password: string }>>;
  /** Password of the `governor` user; left out: no such user (run it as the operator). */
  governor?: { password: string };
}

export function nodePermissions(id: string): { publish: string[]; subscribe: string[] } {
  const inbox = nodeInboxPrefix(id);
  return {
    publish: [
      `power.v1.${id}`,
      `req.v1.${id}`,
      `work.v1.${id}`,
      `audit.v1.${id}`,
      `$KV.nodes.${id}`,
      // Read-only JetStream API calls the agent makes at start-up (stream and KV bucket info).
      "$JS.API.INFO",
      "$JS.API.STREAM.INFO.*",
    ],
    subscribe: [`${inbox}.>`, `ctl.v1.${id}.>`, "$SRV.>"],
  };
}

/** A subject of a shared/ builder with its one id token as a wildcard (`loadgen.v1.run.*.hb`). */
const anyId = (build: (id: string) => string) => build("__ANY__").replace("__ANY__", "*");
const ctl = subjects.loadgen;

/**
 * A load worker: announces itself, takes jobs (any worker id: the identity is shared by the
 * workers), hears aborts and the coordinator's heartbeat, reports progress and `done`, and
 * publishes results to LOAD (js.publish needs no JetStream API call).
 */
export function loadgenWorkerPermissions(): { publish: string[]; subscribe: string[] } {
  return {
    publish: [ctl.hello, anyId(ctl.heartbeat), anyId(ctl.done), anyId(subjects.load)],
    subscribe: [`${loadgenInboxPrefix("worker")}.>`, anyId(ctl.assign), anyId(ctl.abort), anyId(ctl.coordinator)],
  };
}

/**
 * A load coordinator (and a `joulestream load` run without workers): gathers workers, assigns
 * jobs, aborts, beats; reads LOAD through an ordered consumer and checks that a run id is new. It
 * may publish results too (a run without workers). It may not create or change streams: the
 * analyzer (operator) creates LOAD.
 */
export function loadgenCoordinatorPermissions(): { publish: string[]; subscribe: string[] } {
  return {
    publish: [
      anyId(ctl.assign),
      anyId(ctl.abort),
      anyId(ctl.coordinator),
      anyId(subjects.load),
      "$JS.API.INFO",
      "$JS.API.STREAM.INFO.LOAD",
      "$JS.API.STREAM.MSG.GET.LOAD",
      "$JS.API.DIRECT.GET.LOAD",
      "$JS.API.DIRECT.GET.LOAD.>",
      "$JS.API.CONSUMER.CREATE.LOAD",
      "$JS.API.CONSUMER.CREATE.LOAD.>",
      "$JS.API.CONSUMER.INFO.LOAD.*",
      "$JS.API.CONSUMER.MSG.NEXT.LOAD.*",
      "$JS.API.CONSUMER.DELETE.LOAD.*",
    ],
    subscribe: [`${loadgenInboxPrefix("coordinator")}.>`, ctl.hello, anyId(ctl.heartbeat), anyId(ctl.done)],
  };
}

/**
 * A governor (`joulestream govern`): reads the tap's request events, WORK and ENERGY live (core
 * subscriptions, no consumer), the kill switch, and the nodes bucket (KV reads and its key listing,
 * an ordered consumer); asks every node's clock control to set, renew and reset — never `get`'s
 * neighbours in power — and publishes its decisions on the audit subjects. It cannot publish power,
 * requests or work, answer clock control, nor read replies meant for others.
 */
export function governorPermissions(): { publish: string[]; subscribe: string[] } {
  const kv = `KV_${"nodes"}`;
  return {
    publish: [
      "ctl.v1.*.set",
      "ctl.v1.*.renew",
      "ctl.v1.*.reset",
      anyId(subjects.audit),
      "$JS.API.INFO",
      `$JS.API.STREAM.INFO.${kv}`,
      `$JS.API.STREAM.MSG.GET.${kv}`,
      `$JS.API.DIRECT.GET.${kv}`,
      `$JS.API.DIRECT.GET.${kv}.>`,
      `$JS.API.CONSUMER.CREATE.${kv}`,
      `$JS.API.CONSUMER.CREATE.${kv}.>`,
      `$JS.API.CONSUMER.INFO.${kv}.*`,
      `$JS.API.CONSUMER.DELETE.${kv}.*`,
    ],
    subscribe: [`${governorInboxPrefix()}.>`, anyId(subjects.requests), anyId(subjects.work), anyId(subjects.energy), subjects.governorKill],
  };
}

const q = (s: string) => JSON.stringify(s);
const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;

export function natsAuthConfig(cfg: AuthConfig): string {
  const users = cfg.nodes.map((n) => {
    const p = nodePermissions(n.id);
    return `    { user: ${q(n.id)}, password: ${q(n.password)}, permissions: { publish: { allow: ${list(p.publish)} }, subscribe: { allow: ${list(p.subscribe)} }, allow_responses: true } }`;
  });
  const roles: [LoadgenRole, () => { publish: string[]; subscribe: string[] }][] = [["worker", loadgenWorkerPermissions], ["coordinator", loadgenCoordinatorPermissions]];
  for (const [role, perms] of roles) {
    const id = cfg.loadgen?.[role];
    if (!id) continue;
    const p = perms();
    // allow_responses: a worker answers the coordinator's assign request on the coordinator's inbox.
    users.push(`    { user: ${q(loadgenUser(role))}, password: ${q(id.password)}, permissions: { publish: { allow: ${list(p.publish)} }, subscribe: { allow: ${list(p.subscribe)} }${role === "worker" ? ", allow_responses: true" : ""} } }`);
  }
  if (cfg.governor) {
    const p = governorPermissions();
    users.push(`    { user: ${q(GOVERNOR_USER)}, password: ${q(cfg.governor.password)}, permissions: { publish: { allow: ${list(p.publish)} }, subscribe: { allow: ${list(p.subscribe)} } } }`);
  }
  users.push(`    { user: ${q(cfg.operator.user)}, password: ${q(cfg.operator.password)} }`);
  return `authorization {\n  users = [\n${users.join(",\n")}\n  ]\n}\n`;
}
