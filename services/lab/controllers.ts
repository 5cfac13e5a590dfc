import type { NatsConnection } from "@nats-io/nats-core";
import { ConfigError, PermanentError, RetryableError, errorMessage } from "../../shared/errors.ts";
import { subjects } from "../../shared/subjects.ts";
import type { PointSpec } from "./matrix.ts";
import { modelSpec } from "../simnode/mod.ts";

/**
 * How a real-time sweep turns the knobs. `apply` sets a point's configuration and says where to
 * send its load; `restore` undoes every change (idempotent, safe to call when nothing changed).
 */
export interface KnobController {
  readonly mode: string;
  apply(p: PointSpec): Promise<{ targets: string[] }>;
  restore(): Promise<void>;
}

interface SimKnobs {
  model?: string;
  smClockMhz: number;
  maxBatch: number;
  tp: number;
  powerLimitW: number;
  gpus: number;
}

/**
 * A simulated node: every knob through its /admin/config. Load goes to `targets` (the agent's taps
 * in front of the simnode, so the pipeline sees it). TP changes rebuild the simnode's instances;
 * the taps must then point at the node's router (`/v1`) rather than at one instance.
 */
export function createSimnodeController(o: { adminUrl: string; targets: string[] }): KnobController {
  let original: SimKnobs | undefined;
  const call = async (method: "GET" | "POST", path: string, body?: unknown): Promise<SimKnobs> => {
    let res: Response;
    try {
      res = await fetch(new URL(path, o.adminUrl), { method, headers: { "content-type": "application/json" }, ...(body ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `simnode at ${o.adminUrl} unreachable: ${errorMessage(err)}`, err);
    }
    const text = await res.text();
    if (!res.ok) throw new PermanentError("CONFIG", `simnode ${method} ${path} → HTTP ${res.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as SimKnobs;
  };
  return {
    mode: "simnode",
    async apply(p) {
      original ??= await call("GET", "/admin/config");
      // The window's energy is the node's (node_energy sums every GPU): the point must own the whole node.
      if (p.gpus !== original.gpus) throw new ConfigError("gpus", `point counts ${p.gpus} GPUs but the simnode has ${original.gpus}: start it with --gpus ${p.gpus}, or set the experiment's gpus: ${original.gpus}`);
      if (original.model !== undefined && modelSpec(p.model).id !== original.model) throw new ConfigError("model", `point is for ${p.model} but the simnode serves ${original.model}`);
      await call("POST", "/admin/config", { smClockMhz: p.smClockMhz, maxBatch: p.maxBatch, tp: p.tp });
      return { targets: o.targets };
    },
    async restore() {
      if (!original) return;
      const o0 = original;
      await call("POST", "/admin/reset-clocks");
      await call("POST", "/admin/config", { maxBatch: o0.maxBatch, tp: o0.tp, smClockMhz: o0.smClockMhz, powerLimitW: o0.powerLimitW });
      original = undefined;
    },
  };
}

/** A serving endpoint on a real node, labelled with the batch and TP it was started with. */
export interface LabelledEndpoint {
  url: string;
  tp: number;
  maxBatch: number;
  /** GPU indices it runs on (the clock is locked on these). */
  gpus: number[];
}

/** `tp=4,batch=256,gpus=0-3,url=http://node:9001` → LabelledEndpoint. */
export function parseEndpoint(spec: string): LabelledEndpoint {
  const kv = Object.fromEntries(spec.split(",").map((s) => {
    const i = s.indexOf("=");
    return [s.slice(0, i).trim(), s.slice(i + 1).trim()];
  }));
  const tp = Number(kv.tp), maxBatch = Number(kv.batch ?? kv.maxBatch);
  if (!kv.url || !Number.isInteger(tp) || !Number.isInteger(maxBatch)) throw new ConfigError("--endpoint", `expected tp=N,batch=N,gpus=A-B,url=URL, got ${JSON.stringify(spec)}`);
  const gpus = (kv.gpus ?? "").split(/[;+ ]/).filter(Boolean).flatMap((g) => {
    const [a, b] = g.split("-").map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, k) => a! + k);
  });
  if (gpus.length !== tp) throw new ConfigError("--endpoint", `${spec}: gpus= must list ${tp} GPUs (e.g. gpus=0-${tp - 1})`);
  return { url: kv.url, tp, maxBatch, gpus };
}

/**
 * A real node: the SM clock through its agent's clock control (`ctl.v1.<node>.set`, under a lease
 * the agent undoes by itself if this process dies), batch and TP by picking the endpoint labelled
 * with them. A point with no matching endpoint fails with a permanent error (and is skipped).
 */
export function createFleetController(o: { nc: NatsConnection; node: string; endpoints: LabelledEndpoint[]; by?: string }): KnobController {
  const base = subjects.control(o.node);
  let changed = false;
  const request = async (verb: string, body: unknown) => {
    const m = await o.nc.request(`${base}.${verb}`, JSON.stringify(body), { timeout: 10_000 });
    const text = new TextDecoder().decode(m.data);
    const status = m.headers?.get("Nats-Service-Error-Code");
    if (status) throw new PermanentError("CONFIG", `clock control ${verb} on ${o.node}: ${status} ${text}`);
    return text;
  };
  return {
    mode: "fleet",
    async apply(p) {
      const ep = o.endpoints.find((e) => e.tp === p.tp && e.maxBatch === p.maxBatch);
      if (!ep) throw new PermanentError("NOT_FOUND", `no --endpoint labelled tp=${p.tp},batch=${p.maxBatch} (have ${o.endpoints.map((e) => `tp=${e.tp},batch=${e.maxBatch}`).join("; ") || "none"})`);
      changed = true;
      const leaseMs = Math.min(3600_000, Math.max(60_000, Math.round((p.warmupS + p.measureS) * 2000 + 60_000)));
      await request("set", { gpus: ep.gpus, smClockMhz: p.smClockMhz, leaseMs, by: o.by ?? "joulestream-sweep" });
      return { targets: [ep.url] };
    },
    async restore() {
      if (!changed) return;
      await request("reset", { by: o.by ?? "joulestream-sweep" });
      changed = false;
    },
  };
}
