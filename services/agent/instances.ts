import { ConfigError, TOKEN_RE } from "../../shared/mod.ts";
import type { AgentInstance } from "./agent.ts";

/**
 * Parses `--instance id=i0,listen=127.0.0.1:9000,upstream=http://127.0.0.1:8000,gpus=0-3,model=llama-2-70b`.
 * `gpus` takes lists and ranges ("0-3", "0,2", "4-7"). Errors name the flag and the bad part.
 */
export function parseInstance(spec: string, flag = "--instance"): AgentInstance {
  const kv = new Map<string, string>();
  for (const part of spec.split(/,(?=[a-z]+=)/)) {
    const i = part.indexOf("=");
    if (i < 0) throw new ConfigError(flag, `${JSON.stringify(part)} is not key=value (in ${JSON.stringify(spec)})`);
    kv.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  for (const k of kv.keys()) if (!["id", "listen", "upstream", "gpus", "model"].includes(k)) throw new ConfigError(flag, `unknown key ${JSON.stringify(k)} (id, listen, upstream, gpus, model)`);
  const id = kv.get("id") ?? "i0";
  if (!TOKEN_RE.test(id)) throw new ConfigError(`${flag} id`, `${JSON.stringify(id)} must match ${TOKEN_RE}`);
  const upstream = kv.get("upstream");
  if (!upstream) throw new ConfigError(`${flag} upstream`, "missing: the inference server's base URL (upstream=http://127.0.0.1:8000)");
  try {
    new URL(upstream);
  } catch {
    throw new ConfigError(`${flag} upstream`, `${JSON.stringify(upstream)} is not a URL`);
  }
  const gpus = parseGpuList(kv.get("gpus") ?? "0", `${flag} gpus`);
  const model = kv.get("model");
  return { id, listen: kv.get("listen") ?? "127.0.0.1:0", upstream, gpus, ...(model ? { model } : {}) };
}

export function parseGpuList(s: string, key: string): number[] {
  const out = new Set<number>();
  for (const part of s.split(/[,;]/).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new ConfigError(key, `${JSON.stringify(part)} is not a GPU index or range (e.g. 0-3)`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new ConfigError(key, `range ${part} is backwards`);
    for (let g = a; g <= b; g++) out.add(g);
  }
  if (out.size === 0) throw new ConfigError(key, "empty GPU list");
  return [...out].sort((x, y) => x - y);
}
