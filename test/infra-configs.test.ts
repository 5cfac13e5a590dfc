import test from "ava";
import { readFile } from "node:fs/promises";
import { ensureBinaries, INSTALL_COMMAND, type AptResult } from "../infra/binaries.ts";
import { renderInfraTemplate, renderTemplate } from "../infra/templates.ts";
import { PermanentError } from "../shared/errors.ts";

test("infra configs - the InfluxDB template binds every listener to 127.0.0.1 and disables the rest", async (t) => {
  const conf = await renderInfraTemplate("influxdb/influxdb.conf", { DATA_DIR: "/tmp/x", HTTP_PORT: 18086, RPC_PORT: 18088 });
  const binds = [...conf.matchAll(/^\s*bind-address\s*=\s*"([^"]*)"/gm)].map((m) => m[1]!);
  t.true(binds.length >= 7, `only ${binds.length} bind-address keys`);
  for (const b of binds) t.regex(b, /^127\.0\.0\.1:\d+$/);
  t.regex(conf, /^bind-address = "127\.0\.0\.1:18088"/m); // the top-level RPC service, before any section
  t.regex(conf, /^reporting-enabled = false/m);
  for (const section of ["graphite", "collectd", "opentsdb", "udp"]) t.regex(conf, new RegExp(`\\[\\[${section}\\]\\]\\s*\\n\\s*enabled = false`));
});

test("infra configs - NATS templates listen on loopback and leave no placeholder unfilled", async (t) => {
  const vars: Record<string, number | string> = { SERVER_NAME: "x", CLIENT_PORT: 1, MONITOR_PORT: 2, STORE_DIR: '"/tmp/js"' };
  for (const k of [1, 2, 3]) Object.assign(vars, { [`N${k}_CLIENT_PORT`]: 10 + k, [`N${k}_CLUSTER_PORT`]: 20 + k, [`N${k}_MONITOR_PORT`]: 30 + k });
  for (const file of ["nats/single.conf", "nats/cluster/n1.conf", "nats/cluster/n2.conf", "nats/cluster/n3.conf"]) {
    const conf = await renderInfraTemplate(file, vars);
    t.notRegex(conf.replace(/^\s*#.*$/gm, ""), /\{\{/, file);
    t.regex(conf, /^host: 127\.0\.0\.1$/m, file);
    t.regex(conf, /^http: "127\.0\.0\.1:\d+"$/m, file);
  }
  const n2 = await readFile(new URL("../infra/nats/cluster/n2.conf", import.meta.url), "utf8");
  t.regex(n2, /server_name: n2/);
  t.regex(n2, /nats:\/\/127\.0\.0\.1:\{\{N1_CLUSTER_PORT\}\}/);
  t.regex(n2, /nats:\/\/127\.0\.0\.1:\{\{N3_CLUSTER_PORT\}\}/);
});

test("infra configs - a placeholder without a value is an error, not a hole in the config", (t) => {
  const err = t.throws(() => renderTemplate("port: {{CLIENT_PORT}}\n# {{DOCUMENTED}} stays\n", {}, "x.conf"));
  t.true(err instanceof PermanentError);
  t.regex(err!.message, /CLIENT_PORT/);
  t.notRegex(err!.message, /DOCUMENTED/);
});

test("local stack binaries - missing without root: a permanent error giving the install command", async (t) => {
  const err = await t.throwsAsync(ensureBinaries(["nats-server", "influxd"], { searchDirs: ["/nonexistent"], isRoot: false }));
  t.true(err instanceof PermanentError);
  t.true(err!.message.includes(INSTALL_COMMAND), err!.message);
});

test("local stack binaries - as root, a failed apt-get install runs apt-get update and tries again", async (t) => {
  const calls: string[] = [];
  const runApt = async (args: string[]): Promise<AptResult> => {
    calls.push(args.join(" "));
    return { code: calls.length === 1 ? 100 : 0, output: "E: Unable to locate package" };
  };
  // The fake apt installs nothing, so the binaries are still missing afterwards.
  const err = await t.throwsAsync(ensureBinaries(["nats-server", "influxd"], { searchDirs: ["/nonexistent"], isRoot: true, runApt }));
  t.deepEqual(calls, ["install -y -q nats-server influxdb", "update -q", "install -y -q nats-server influxdb"]);
  t.true(err instanceof PermanentError);
  t.regex(err!.message, /still not found/);
});
