import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { PermanentError } from "../shared/errors.ts";

/** Directory of the config templates (infra/ in the checkout). */
export const INFRA_DIR = fileURLToPath(new URL(".", import.meta.url));

/**
 * Fills `{{NAME}}` placeholders outside comment lines (lines starting with `#`, where the templates
 * document their placeholders). Every placeholder must have a value: a config file rendered with a
 * hole in it would be parsed by the server in surprising ways, so a missing one is an error.
 */
export function renderTemplate(text: string, vars: Record<string, string | number>, what = "template"): string {
  const missing = new Set<string>();
  const fill = (line: string) =>
    /^\s*#/.test(line)
      ? line
      : line.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_, key: string) => {
          const v = vars[key];
          if (v === undefined) {
            missing.add(key);
            return "";
          }
          return String(v);
        });
  const out = text.split("\n").map(fill).join("\n");
  if (missing.size > 0) throw new PermanentError("CONFIG", `${what}: no value for ${[...missing].join(", ")}`);
  return out;
}

/** Reads a template under infra/ (e.g. "nats/single.conf") and renders it. */
export async function renderInfraTemplate(relPath: string, vars: Record<string, string | number>): Promise<string> {
  const text = await readFile(new URL(relPath, new URL(".", import.meta.url)), "utf8");
  return renderTemplate(text, vars, `infra/${relPath}`);
}

/** Quotes a path for NATS and TOML config strings (both accept JSON-style escapes). */
export function configString(value: string): string {
  return JSON.stringify(value);
}
