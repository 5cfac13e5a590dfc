import { nodeInboxPrefix } from "../../shared/subjects.ts";

/**
 * NATS server authorization for a fleet: one identity per node, allowed to publish only its own
 * subjects (power/req/work/audit.v1.<node>, its KV inventory key) and to answer only its own clock
 * control subject; an operator identity for control, the analyzer and the load generator.
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

const q = (s: string) => JSON.stringify(s);
const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;

export function natsAuthConfig(cfg: AuthConfig): string {
  const users = cfg.nodes.map((n) => {
    const p = nodePermissions(n.id);
    return `    { user: ${q(n.id)}, password: ${q(n.password)}, permissions: { publish: { allow: ${list(p.publish)} }, subscribe: { allow: ${list(p.subscribe)} }, allow_responses: true } }`;
  });
  users.push(`    { user: ${q(cfg.operator.user)}, password: ${q(cfg.operator.password)} }`);
  return `authorization {\n  users = [\n${users.join(",\n")}\n  ]\n}\n`;
}
