import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { z } from "zod";
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { describeIssues, encode, respondServiceError, subjects, type GpuInfo } from "../../shared/mod.ts";
import type { NvmlControl } from "./nvml/control.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * Guarded GPU clock and power-limit control, off unless the operator passes --allow-clock-control.
 * A NATS service on `ctl.v1.<node>.{get,set,renew,reset}` (JSON request/reply) that:
 * - validates every request against what the GPU supports (clock steps, power-limit range);
 * - holds every change under a lease: a controller that stops renewing (crashed sweep, lost
 *   network) gets its changes undone when the lease runs out;
 * - undoes everything it changed on stop (SIGINT/SIGTERM of the agent);
 * - publishes every change and every restore as an audit event on `audit.v1.<node>`.
 */
export interface ClockBackend {
  lockSmClock(gpu: number, minMhz: number, maxMhz: number): Promise<void>;
  resetSmClock(gpu: number): Promise<void>;
  setPowerLimitMw(gpu: number, limitMw: number): Promise<void>;
  /** The power limit in force now, where the backend can read it (what a restore goes back to). */
  readPowerLimitMw?(gpu: number): Promise<number | undefined>;
}

export const setRequest = z.object({
  gpus: z.array(z.number().int().nonnegative()).min(1),
  /** Lock the SM clock to exactly this (must be a supported step), or give a range. */
  smClockMhz: z.number().positive().optional(),
  smClockRangeMhz: z.tuple([z.number().positive(), z.number().positive()]).optional(),
  powerLimitW: z.number().positive().optional(),
  /** The change is undone unless renewed within this time. */
  leaseMs: z.number().int().min(1000).max(3600_000).default(60_000),
  /** Who asks (for the audit trail): each holder has its own lease, and may not change another's GPUs. */
  by: z.string().max(200).default("unknown"),
});
export type SetRequest = z.input<typeof setRequest>;
const holderRequest = z.object({ by: z.string().max(200).optional(), leaseMs: z.number().int().min(1000).max(3600_000).optional() });

interface Changed {
  clock?: [number, number];
  powerLimitMw?: { set: number; original: number };
  /** Who holds this GPU's change (its lease). */
  by: string;
}

export interface ClockControl {
  /** Undoes every change still in force. Idempotent. */
  stop(): Promise<void>;
  state(): Record<number, Changed>;
}

export async function startClockControl(opts: {
  nc: NatsConnection;
  node: string;
  gpus: GpuInfo[];
  backend: ClockBackend;
  log?: (line: string) => void;
  nowMs?: () => number;
  /**
   * Where the changes in force are kept (rewritten on every change): an agent killed with SIGKILL
   * cannot undo them, so the next start does, from this file, before it takes requests.
   */
  stateFile?: string;
}): Promise<ClockControl> {
  const log = opts.log ?? (() => {});
  const now = opts.nowMs ?? Date.now;
  const changed = new Map<number, Changed>();
  const persist = () => {
    if (!opts.stateFile) return;
    try {
      if (changed.size === 0) return unlinkSync(opts.stateFile);
      writeFileSync(`${opts.stateFile}.tmp`, JSON.stringify([...changed]));
      renameSync(`${opts.stateFile}.tmp`, opts.stateFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log(`clock control: cannot keep its state in ${opts.stateFile}: ${errorMessage(err)}`);
    }
  };
  /** One lease per holder: a holder that stops renewing gets its own changes undone, nobody else's. */
  const leases = new Map<string, NodeJS.Timeout>();
  let stopped = false;
  // Every operation that touches the GPUs runs alone: a reset or a stop never interleaves with a set.
  let queue: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => {});
    return p;
  };

  const audit = (action: string, detail: Record<string, unknown>) => {
    log(`clock control: ${action} ${JSON.stringify(detail)}`);
    try {
      opts.nc.publish(subjects.audit(opts.node), encode({ v: 1, kind: "audit", node: opts.node, tMs: now(), action, ...detail }));
    } catch (err) {
      // A closed connection must not stop a restore half-way: the GPUs matter more than the trail.
      log(`clock control: audit ${action} not published: ${errorMessage(err)}`);
    }
  };

  const restore = async (gpus: number[], why: string) => {
    for (const gpu of gpus) {
      const c = changed.get(gpu);
      if (!c) continue;
      changed.delete(gpu);
      persist();
      const errors: string[] = [];
      if (c.clock) await opts.backend.resetSmClock(gpu).catch((err: Error) => errors.push(`clock: ${err.message}`));
      if (c.powerLimitMw) await opts.backend.setPowerLimitMw(gpu, c.powerLimitMw.original).catch((err: Error) => errors.push(`power limit: ${err.message}`));
      if (errors.length) audit("restore_failed", { gpu, why, by: c.by, error: errors.join("; ") });
      else audit("restore", { gpu, why, by: c.by, clock: c.clock, powerLimitMw: c.powerLimitMw });
    }
  };
  const heldBy = (by: string) => [...changed].filter(([, c]) => c.by === by).map(([g]) => g);
  const dropLease = (by: string) => {
    clearTimeout(leases.get(by));
    leases.delete(by);
  };
  const restoreHolder = async (by: string, why: string) => {
    dropLease(by);
    await restore(heldBy(by), why);
  };
  const restoreAll = async (why: string) => {
    for (const t of leases.values()) clearTimeout(t);
    leases.clear();
    await restore([...changed.keys()], why);
  };

  const armLease = (by: string, ms: number) => {
    clearTimeout(leases.get(by));
    const timer = setTimeout(() => {
      leases.delete(by);
      void exclusive(() => restore(heldBy(by), `lease of ${by} expired`)).catch((err) => log(`clock control: restore failed: ${errorMessage(err)}`));
    }, ms);
    timer.unref();
    leases.set(by, timer);
  };

  const validate = (req: z.infer<typeof setRequest>): string | undefined => {
    if (new Set(req.gpus).size !== req.gpus.length) return `GPU listed twice in ${JSON.stringify(req.gpus)}`;
    if (req.smClockMhz !== undefined && req.smClockRangeMhz) return "give smClockMhz or smClockRangeMhz, not both";
    for (const g of req.gpus) {
      const info = opts.gpus.find((x) => x.index === g);
      if (!info) return `no GPU ${g} on ${opts.node}`;
      const holder = changed.get(g)?.by;
      if (holder !== undefined && holder !== req.by) return `GPU ${g} is held by ${holder}; it must reset (or its lease run out) first`;
      const steps = info.supportedSmClocksMhz ?? [];
      if (req.smClockMhz !== undefined && steps.length > 0 && !steps.includes(req.smClockMhz)) {
        const near = [...steps].sort((a, b) => Math.abs(a - req.smClockMhz!) - Math.abs(b - req.smClockMhz!)).slice(0, 3);
        return `GPU ${g} does not support an SM clock of ${req.smClockMhz} MHz (nearest supported: ${near.join(", ")})`;
      }
      if (req.smClockRangeMhz) {
        const [lo, hi] = req.smClockRangeMhz;
        if (lo > hi) return `SM clock range ${lo}-${hi} is backwards`;
        if (steps.length > 0 && (hi > Math.max(...steps) || lo < Math.min(...steps))) return `GPU ${g} supports SM clocks ${Math.min(...steps)}-${Math.max(...steps)} MHz`;
      }
      if (req.powerLimitW !== undefined) {
        const mw = req.powerLimitW * 1000;
        if (!Number.isInteger(mw)) return `power limit ${req.powerLimitW} W is not a whole number of milliwatts`;
        if (info.minPowerLimitMw !== undefined && mw < info.minPowerLimitMw) return `GPU ${g} power limit must be ≥ ${info.minPowerLimitMw / 1000} W`;
        if (info.maxPowerLimitMw !== undefined && mw > info.maxPowerLimitMw) return `GPU ${g} power limit must be ≤ ${info.maxPowerLimitMw / 1000} W`;
      }
    }
    return undefined;
  };

  const reply = (m: ServiceMsg, body: unknown) => m.respond(JSON.stringify(body));
  const fail = (m: ServiceMsg, code: number, message: string) => respondServiceError(m, code, message);
  /**
   * The request's JSON body as `schema` wants it, or a 400 naming what is wrong and undefined. An
   * empty body is `{}` where every field is optional (renew, reset), not JSON where one is needed (set).
   */
  const parseRequest = <S extends z.ZodType>(m: ServiceMsg, schema: S, emptyIsEmptyObject: boolean): z.infer<S> | undefined => {
    let raw: unknown;
    try {
      const text = new TextDecoder().decode(m.data);
      raw = emptyIsEmptyObject && text.trim() === "" ? {} : JSON.parse(text);
    } catch {
      fail(m, 400, "request is not JSON");
      return undefined;
    }
    const parsed = schema.safeParse(raw);
    if (parsed.success) return parsed.data;
    fail(m, 400, describeIssues(parsed.error));
    return undefined;
  };

  // Changes a previous run left in force (it was killed before it could undo them): undone first.
  if (opts.stateFile) {
    let left: [number, Changed][] = [];
    try {
      left = JSON.parse(readFileSync(opts.stateFile, "utf8")) as [number, Changed][];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log(`clock control: ${opts.stateFile} unreadable (${errorMessage(err)}); GPUs a killed run changed may still be locked`);
    }
    for (const [gpu, c] of Array.isArray(left) ? left : []) if (Number.isInteger(gpu) && c && typeof c === "object") changed.set(gpu, c);
    if (changed.size > 0) await restore([...changed.keys()], "left in force by a previous run that did not stop (killed?)");
  }

  const svc: Service = await new Svcm(opts.nc).add({ name: "joulestream-clock-control", version: "1.0.0", description: `clock control of ${opts.node}`, queue: "" });
  const base = subjects.control(opts.node);
  const leaseHolders = () => [...leases.keys()];
  svc.addEndpoint("get", {
    subject: `${base}.get`,
    handler: (_err, m) => reply(m, { node: opts.node, gpus: opts.gpus, changed: Object.fromEntries(changed), leaseHolders: leaseHolders() }),
  });
  svc.addEndpoint("set", {
    subject: `${base}.set`,
    handler: (_err, m) => {
      const req = parseRequest(m, setRequest, false);
      if (!req) return;
      void exclusive(async () => {
        if (stopped) return fail(m, 503, "clock control is stopping");
        const bad = validate(req);
        if (bad) {
          audit("set_refused", { gpus: req.gpus, by: req.by, error: bad });
          return fail(m, 422, bad);
        }
        const fresh = req.gpus.filter((g) => !changed.has(g));
        try {
          // Every original is read before anything changes (the simnode applies one limit to all its GPUs).
          const originals = new Map<number, number | undefined>();
          if (req.powerLimitW !== undefined) {
            for (const g of req.gpus) {
              const info = opts.gpus.find((x) => x.index === g)!;
              originals.set(g, changed.get(g)?.powerLimitMw?.original ?? (await opts.backend.readPowerLimitMw?.(g)) ?? info.powerLimitMw ?? info.maxPowerLimitMw);
            }
            const unknown = req.gpus.filter((g) => originals.get(g) === undefined);
            if (unknown.length) throw new Error(`GPU ${unknown.join(", ")}: the power limit cannot be read, so it could not be restored; nothing changed`);
          }
          for (const g of req.gpus) {
            const c: Changed = changed.get(g) ?? { by: req.by };
            // Recorded (and kept on disk) before the call: a call that fails half-way, or an agent
            // killed during it, still gets undone.
            changed.set(g, c);
            const range = req.smClockMhz !== undefined ? ([req.smClockMhz, req.smClockMhz] as [number, number]) : req.smClockRangeMhz;
            if (range) {
              c.clock = range;
              persist();
              await opts.backend.lockSmClock(g, range[0], range[1]);
            }
            if (req.powerLimitW !== undefined) {
              c.powerLimitMw = { set: req.powerLimitW * 1000, original: originals.get(g)! };
              persist();
              await opts.backend.setPowerLimitMw(g, req.powerLimitW * 1000);
            }
            audit("set", { gpu: g, by: req.by, clock: c.clock, powerLimitMw: c.powerLimitMw?.set, leaseMs: req.leaseMs });
          }
          armLease(req.by, req.leaseMs);
          reply(m, { ok: true, changed: Object.fromEntries(changed), leaseExpiresMs: now() + req.leaseMs });
        } catch (err) {
          // Undo what this request changed on GPUs it did not hold; GPUs it held stay under its lease.
          audit("set_failed", { gpus: req.gpus, by: req.by, error: errorMessage(err) });
          await restore(fresh, "set failed");
          if (heldBy(req.by).length > 0) armLease(req.by, req.leaseMs);
          fail(m, 500, errorMessage(err));
        }
      });
    },
  });
  svc.addEndpoint("renew", {
    subject: `${base}.renew`,
    handler: (_err, m) => {
      const req = parseRequest(m, holderRequest, true);
      if (!req) return;
      const by = req.by ?? "unknown";
      const leaseMs = req.leaseMs ?? 60_000;
      const active = heldBy(by).length > 0;
      if (active) armLease(by, leaseMs);
      reply(m, { ok: true, active, ...(active ? { leaseExpiresMs: now() + leaseMs } : {}) });
    },
  });
  svc.addEndpoint("reset", {
    subject: `${base}.reset`,
    handler: (_err, m) => {
      const req = parseRequest(m, holderRequest, true);
      if (!req) return;
      // With `by`: that holder's changes; without: everything (the operator's override).
      void exclusive(() => (req.by !== undefined ? restoreHolder(req.by, `reset requested by ${req.by}`) : restoreAll("reset requested"))).then(() => reply(m, { ok: true }));
    },
  });

  let stopping: Promise<void> | undefined;
  return {
    state: () => Object.fromEntries(changed),
    stop() {
      return (stopping ??= (async () => {
        stopped = true;
        // Waits for a set in flight, then undoes everything; no set runs after this.
        await exclusive(() => restoreAll("agent stopping"));
        await svc.stop();
      })());
    },
  };
}

/** NVML control (synchronous FFI) as a ClockBackend. */
export function nvmlClockBackend(control: NvmlControl): ClockBackend {
  return {
    readPowerLimitMw: async (gpu) => control.readPowerLimitMw(gpu),
    lockSmClock: async (gpu, lo, hi) => control.lockGpuClocks(gpu, lo, hi),
    resetSmClock: async (gpu) => control.resetGpuClocks(gpu),
    setPowerLimitMw: async (gpu, mw) => control.setPowerLimitMw(gpu, mw),
  };
}

/**
 * The simulated node's admin endpoint as a ClockBackend (`POST /admin/config`, `/admin/reset-clocks`).
 * The simnode applies one SM clock and one power limit to all its GPUs, so a per-GPU call sets the
 * node's value; sweeps set all GPUs alike anyway.
 */
export function simnodeClockBackend(adminBaseUrl: string): ClockBackend {
  const post = async (path: string, body?: unknown) => {
    const res = await fetch(new URL(path, adminBaseUrl), { method: "POST", headers: { "content-type": "application/json" }, ...(body ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`simnode ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  };
  return {
    readPowerLimitMw: async () => {
      const res = await fetch(new URL("/admin/config", adminBaseUrl), { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`simnode /admin/config: HTTP ${res.status}`);
      const w = ((await res.json()) as { powerLimitW?: number }).powerLimitW;
      return typeof w === "number" ? Math.round(w * 1000) : undefined;
    },
    lockSmClock: (_gpu, _lo, hi) => post("/admin/config", { smClockMhz: hi }),
    resetSmClock: () => post("/admin/reset-clocks"),
    setPowerLimitMw: (_gpu, mw) => post("/admin/config", { powerLimitW: mw / 1000 }),
  };
}
