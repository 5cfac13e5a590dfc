import { z } from "zod";
import { onShutdownSignal } from "../shared/lifecycle.ts";
import { defineCommand } from "../shared/command.ts";
import { startLocalClusterStack, type LocalClusterStack } from "./local-cluster-stack.ts";
import { startLocalStack, type LocalStack } from "./local-stack.ts";
import { ensureRollups } from "../services/analyzer/mod.ts";

const port = z.coerce.number().int().min(0).max(65535).default(0);

const schema = z
  .object({
    runDir: z.string().min(1).optional(),
    natsPort: port,
    influxPort: port,
    database: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . -").default("joulestream"),
    noInstall: z.boolean().default(false),
    cluster: z.boolean().default(false),
  })
  .refine((c) => !(c.cluster && c.natsPort), { path: ["natsPort"], message: "the cluster's three nodes pick their own ports (see infra/local-cluster.ts): leave --nats-port out with --cluster" });

/**
 * `joulestream up`: a local NATS (JetStream) + InfluxDB stack on 127.0.0.1 for development and
 * demos. Prints where it is and the env lines for the services, then runs until SIGINT/SIGTERM.
 * The servers die with this process even if it is killed outright.
 */
export const upCommand = defineCommand(
  {
    name: "up",
    summary: "start a local NATS (JetStream) + InfluxDB stack bound to 127.0.0.1",
    options: {
      "run-dir": { type: "string", arg: "DIR", description: "configs, logs and data (kept); without it, a temporary directory removed on exit" },
      "nats-port": { type: "string", arg: "N", description: "NATS client port on 127.0.0.1", defaultText: "a free port" },
      "influx-port": { type: "string", arg: "N", description: "InfluxDB HTTP port on 127.0.0.1", defaultText: "a free port" },
      database: { type: "string", arg: "NAME", description: "InfluxDB database to create", defaultText: "joulestream" },
      "no-install": { type: "boolean", description: "never apt-get install missing nats-server/influxdb" },
      cluster: { type: "boolean", description: "a 3-node NATS JetStream cluster instead of one server: streams R3, as services create them on a fleet" },
    },
    schema,
    examples: ["joulestream up", "joulestream up --run-dir .run --nats-port 4222 --influx-port 8086", "joulestream up --cluster"],
  },
  async (cfg) => {
    const log = (line: string) => process.stderr.write(`up: ${line}\n`);
    const stack: LocalStack | LocalClusterStack = cfg.cluster
      ? await startLocalClusterStack({ ...(cfg.runDir ? { runDir: cfg.runDir } : {}), influxPort: cfg.influxPort, database: cfg.database, install: !cfg.noInstall, log })
      : await startLocalStack({
          ...(cfg.runDir ? { runDir: cfg.runDir } : {}),
          natsPort: cfg.natsPort,
          influxPort: cfg.influxPort,
          database: cfg.database,
          install: !cfg.noInstall,
          log,
        });
    // Raw data kept 7 days, 1-min rollups 400 days (the dashboards' long ranges read them).
    await ensureRollups({ url: stack.influxUrl, database: stack.database });
    // On SIGINT/SIGTERM onShutdownSignal stops the stack and exits the process. The servers'
    // handles are unref'd (they must not keep a forgetful owner alive), so this timer keeps the
    // CLI running meanwhile. Both before the stack is announced: whoever reads the env lines may
    // signal at once (a clean-clone CI run once saw SIGINT kill `up` before it had a handler).
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const removeHandlers = onShutdownSignal(() => stack.stop(), log);
    process.stdout.write("natsUrls" in stack ? describeClusterStack(stack) : describeStack(stack));
    try {
      const failure = await stack.closed();
      if (failure) {
        log(failure.message);
        return 1;
      }
      return 0;
    } finally {
      removeHandlers();
      clearInterval(keepAlive);
    }
  },
);

export function describeStack(stack: LocalStack): string {
  return [
    `NATS      ${stack.natsUrl}  (JetStream; monitoring ${stack.natsMonitorUrl})`,
    `InfluxDB  ${stack.influxUrl}  (database ${stack.database})`,
    `Run dir   ${stack.runDir}  (logs: nats-server.log, influxd.log)`,
    ...pointServicesAt("Point services at it:", stack),
  ].join("\n");
}

export function describeClusterStack(stack: LocalClusterStack): string {
  const replicas = [...new Set(stack.streams.map((s) => s.replicas))].join("/");
  return [
    ...stack.natsUrls.map((url, k) => `NATS n${k + 1}   ${url}  (JetStream; monitoring ${stack.natsMonitorUrls[k]})`),
    `Streams   ${stack.streams.map((s) => s.name).join(", ")}: R${replicas}`,
    `InfluxDB  ${stack.influxUrl}  (database ${stack.database})`,
    `Run dir   ${stack.runDir}  (logs: nats/nats-n1.log .. nats-n3.log, influxd.log)`,
    ...pointServicesAt("Point services at it (they create streams and buckets R3 here by default):", stack),
  ].join("\n");
}

/** The env lines a user copies, and how to stop: the same for one server and a cluster. */
function pointServicesAt(heading: string, stack: { natsUrl: string; influxUrl: string; database: string }): string[] {
  return ["", heading, `export JOULESTREAM_NATS_URL=${stack.natsUrl}`, `export JOULESTREAM_INFLUX_URL=${stack.influxUrl}`, `export JOULESTREAM_INFLUX_DB=${stack.database}`, "", "Ctrl-C stops it.", ""];
}
