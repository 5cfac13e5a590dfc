import { parseArgs } from "node:util";
import type { z } from "zod";
import { ConfigError, errorMessage } from "./errors.ts";

/**
 * Command-line and environment configuration, validated with zod. Each option names its flag and
 * (optionally) its environment variable; precedence is flag > env > default (in the schema). A
 * validation error names the flag the user typed, or the env variable it came from.
 */
export interface OptionSpec {
  type: "string" | "boolean";
  /** Repeatable flag (`--target A --target B`) → string[]. */
  multiple?: boolean;
  short?: string;
  env?: string;
  /** Shown in --help, e.g. "URL". */
  arg?: string;
  description: string;
  /** For --help only; the schema holds the real default. */
  defaultText?: string;
}

export interface CommandSpec<S extends z.ZodType> {
  name: string;
  summary: string;
  usage?: string;
  options: Record<string, OptionSpec>;
  /** Validates the merged raw values (keys = option names in camelCase). */
  schema: S;
  /** Positional arguments, described for --help. */
  positionals?: string;
  /** Paragraphs for --help after the options: what a user must know that no single option says. */
  notes?: string[];
  examples?: string[];
}

export type Parsed<S extends z.ZodType> = { help: true } | { help: false; config: z.infer<S>; positionals: string[] };

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function parseCommand<S extends z.ZodType>(spec: CommandSpec<S>, argv: string[], env: NodeJS.ProcessEnv = process.env): Parsed<S> {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const [flag, o] of Object.entries(spec.options)) {
    options[flag] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(spec.name, `${errorMessage(err)} (see joulestream ${spec.name} --help)`);
  }
  if (parsed.values.help) return { help: true };

  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const [flag, o] of Object.entries(spec.options)) {
    const key = camel(flag);
    const v = parsed.values[flag];
    if (v !== undefined) {
      raw[key] = v;
      origin[key] = `--${flag}`;
    } else if (o.env && env[o.env] !== undefined && env[o.env] !== "") {
      const e = env[o.env]!;
      raw[key] = o.type === "boolean" ? /^(1|true|yes|on)$/i.test(e) : o.multiple ? e.split(",").map((s) => s.trim()) : e;
      origin[key] = o.env;
    }
  }
  const result = spec.schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0] ?? "");
    const flag = origin[key] ?? (key ? `--${key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}` : spec.name);
    const at = issue.path.length > 1 ? `${flag}[${issue.path.slice(1).join(".")}]` : flag;
    throw new ConfigError(at, issue.message);
  }
  return { help: false, config: result.data, positionals: parsed.positionals };
}

export function helpText(spec: CommandSpec<z.ZodType>): string {
  const lines = [`joulestream ${spec.name} — ${spec.summary}`, "", `Usage: ${spec.usage ?? `joulestream ${spec.name} [options]${spec.positionals ? " " + spec.positionals : ""}`}`, "", "Options:"];
  const rows = Object.entries(spec.options).map(([flag, o]) => {
    const left = `  ${o.short ? `-${o.short}, ` : ""}--${flag}${o.type === "string" ? ` ${o.arg ?? "VALUE"}` : ""}${o.multiple ? " (repeatable)" : ""}`;
    const extra = [o.defaultText ? `default: ${o.defaultText}` : "", o.env ? `env: ${o.env}` : ""].filter(Boolean).join("; ");
    return [left, o.description + (extra ? ` (${extra})` : "")] as const;
  });
  rows.push(["  -h, --help", "show this help"]);
  const width = Math.min(40, Math.max(...rows.map((r) => r[0].length)) + 2);
  for (const [l, r] of rows) lines.push(l.length >= width ? `${l}\n${" ".repeat(width)}${r}` : l.padEnd(width) + r);
  for (const note of spec.notes ?? []) lines.push("", note);
  if (spec.examples?.length) lines.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`));
  return lines.join("\n") + "\n";
}

/** Options every service takes to reach NATS. */
export const natsOptions: Record<string, OptionSpec> = {
  nats: { type: "string", arg: "URL", env: "JOULESTREAM_NATS_URL", description: "NATS server URL(s), comma-separated", defaultText: "nats://127.0.0.1:4222" },
  creds: { type: "string", arg: "FILE", env: "JOULESTREAM_NATS_CREDS", description: "NATS credentials file (JWT + nkey seed)" },
  user: { type: "string", env: "JOULESTREAM_NATS_USER", description: "NATS user (with --password)" },
  password: { type: "string", env: "JOULESTREAM_NATS_PASSWORD", description: "NATS password" },
  token: { type: "string", env: "JOULESTREAM_NATS_TOKEN", description: "NATS auth token" },
};
