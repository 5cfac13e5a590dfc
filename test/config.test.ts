import test from "ava";
import { z } from "zod";
import { ConfigError, helpText, parseCommand, type CommandSpec } from "../shared/mod.ts";

const schema = z.object({
  nats: z.string().default("nats://127.0.0.1:4222"),
  rateHz: z.coerce.number().positive().default(10),
  target: z.array(z.url()).default([]),
  verbose: z.boolean().default(false),
});
const spec: CommandSpec<typeof schema> = {
  name: "x",
  summary: "test",
  options: {
    nats: { type: "string", env: "T_NATS", description: "url" },
    "rate-hz": { type: "string", description: "rate" },
    target: { type: "string", multiple: true, description: "targets" },
    verbose: { type: "boolean", description: "v" },
  },
  schema,
};

test("config - flag beats env beats default", (t) => {
  const a = parseCommand(spec, [], {});
  t.deepEqual(a, { help: false, config: { nats: "nats://127.0.0.1:4222", rateHz: 10, target: [], verbose: false }, positionals: [] });
  const b = parseCommand(spec, [], { T_NATS: "nats://env:1" });
  t.is(!b.help && b.config.nats, "nats://env:1");
  const c = parseCommand(spec, ["--nats", "nats://flag:2"], { T_NATS: "nats://env:1" });
  t.is(!c.help && c.config.nats, "nats://flag:2");
});

test("config - a bad value is an error naming the flag the user typed", (t) => {
  const e = t.throws(() => parseCommand(spec, ["--rate-hz", "0"], {}), { instanceOf: ConfigError });
  t.is(e!.key, "--rate-hz");
  const e2 = t.throws(() => parseCommand(spec, ["--target", "http://ok", "--target", "not a url"], {}), { instanceOf: ConfigError });
  t.is(e2!.key, "--target[1]");
});

test("config - a bad env value names the variable", (t) => {
  const s2 = { ...spec, options: { ...spec.options, "rate-hz": { type: "string" as const, env: "T_RATE", description: "rate" } } };
  const e = t.throws(() => parseCommand(s2, [], { T_RATE: "fast" }), { instanceOf: ConfigError });
  t.is(e!.key, "T_RATE");
});

test("config - unknown flags are refused, --help is recognised", (t) => {
  t.throws(() => parseCommand(spec, ["--nope"], {}), { instanceOf: ConfigError });
  t.deepEqual(parseCommand(spec, ["--help"], {}), { help: true });
  t.regex(helpText(spec), /--rate-hz VALUE/);
});
