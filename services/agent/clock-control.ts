import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { z } from "zod";
import { encode, subjects, type GpuInfo } from "../../shared/mod.ts";

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
}

export const setRequest = z.object({
  gpus: z.array(z.number().int().nonnegative()).min(1),
  /** Lock the SM clock to exactly this (must be a supported step), or give a range. */
  smClockMhz: z.number().positive().optional(),
  smClockRangeMhz: z.tuple([z.number().positive(), z.number().positive()]).optional(),
  powerLimitW: z.number().positive().optional(),
  /** The change is undone unless renewed within this time. */
  leaseMs: z.number().int().min(1000).max(3600_000).default(60_000),
  /** Who asks (for the audit trail). */
  by: z.string().max(200).default("unknown"),
});
export type SetRequest = z.input<typeof setRequest>;

interface Changed {
  clock?: [number, number];
  powerLimitMw?: { set: number; original: number };
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
}): Promise<ClockControl> {
  const log = opts.log ?? (() => {});
  const now = opts.nowMs ?? Date.now;
  const changed = new Map<number, Changed>();
  let leaseTimer: NodeJS.Timeout | undefined;
  let leaseHolder = "";

  const audit = (action: string, detail: Record<string, unknown>) => {
    opts.nc.publish(subjects.audit(opts.node), encode({ v: 1, kind: "audit", node: opts.node, tMs: now(), action, ...detail }));
    log(`clock control: ${action} ${JSON.stringify(detail)}`);
  };

  const restoreAll = async (why: string) => {
    clearTimeout(leaseTimer);
    for (const [gpu, c] of changed) {
      try {
        if (c.clock) await opts.backend.resetSmClock(gpu);
        if (c.powerLimitMw) await opts.backend.setPowerLimitMw(gpu, c.powerLimitMw.original);
        audit("restore", { gpu, why, clock: c.clock, powerLimitMw: c.powerLimitMw });
      } catch (err) {
        audit("restore_failed", { gpu, why, error: (err as Error).message });
      }
    }
    changed.clear();
  };

  const armLease = (ms: number) => {
    clearTimeout(leaseTimer);
    leaseTimer = setTimeout(() => void restoreAll(`lease of ${leaseHolder} expired`), ms);
    leaseTimer.unref();
  };

  const validate = (req: z.infer<typeof setRequest>): string | undefined => {
    for (const g of req.gpus) {
      const info = opts.gpus.find((x) => x.index === g);
      if (!info) return `no GPU ${g} on ${opts.node}`;
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
        if (info.minPowerLimitMw !== undefined && mw < info.minPowerLimitMw) return `GPU ${g} power limit must be ≥ ${info.minPowerLimitMw / 1000} W`;
        if (info.maxPowerLimitMw !== undefined && mw > info.maxPowerLimitMw) return `GPU ${g} power limit must be ≤ ${info.maxPowerLimitMw / 1000} W`;
      }
    }
    return undefined;
  };

  const reply = (m: ServiceMsg, body: unknown) => m.respond(JSON.stringify(body));
  const fail = (m: ServiceMsg, code: number, message: string) => m.respondError(code, message, JSON.stringify({ error: message }));

  const svc: Service = await new Svcm(opts.nc).add({ name: "joulestream-clock-control", version: "1.0.0", description: `clock control of ${opts.node}`, queue: "" });
  const base = subjects.control(opts.node);
  svc.addEndpoint("get", {
    subject: `${base}.get`,
    handler: (_err, m) => reply(m, { node: opts.node, gpus: opts.gpus, changed: Object.fromEntries(changed), leaseHolder }),
  });
  svc.addEndpoint("set", {
    subject: `${base}.set`,
    handler: (_err, m) => {
      void (async () => {
        let raw: unknown;
        try {
          raw = JSON.parse(new TextDecoder().decode(m.data));
        } catch {
          return fail(m, 400, "request is not JSON");
        }
        const parsed = setRequest.safeParse(raw);
        if (!parsed.success) return fail(m, 400, parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
        const req = parsed.data;
        const bad = validate(req);
        if (bad) return fail(m, 422, bad);
        try {
          for (const g of req.gpus) {
            const c = changed.get(g) ?? {};
            const range = req.smClockMhz !== undefined ? ([req.smClockMhz, req.smClockMhz] as [number, number]) : req.smClockRangeMhz;
            if (range) {
              await opts.backend.lockSmClock(g, range[0], range[1]);
              c.clock = range;
            }
            if (req.powerLimitW !== undefined) {
              const info = opts.gpus.find((x) => x.index === g)!;
              const original = c.powerLimitMw?.original ?? info.powerLimitMw ?? info.maxPowerLimitMw ?? req.powerLimitW * 1000;
              await opts.backend.setPowerLimitMw(g, req.powerLimitW * 1000);
              c.powerLimitMw = { set: req.powerLimitW * 1000, original };
            }
            changed.set(g, c);
            audit("set", { gpu: g, by: req.by, clock: c.clock, powerLimitMw: c.powerLimitMw?.set, leaseMs: req.leaseMs });
          }
          leaseHolder = req.by;
          armLease(req.leaseMs);
          reply(m, { ok: true, changed: Object.fromEntries(changed), leaseExpiresMs: now() + req.leaseMs });
        } catch (err) {
          fail(m, 500, (err as Error).message);
        }
      })();
    },
  });
  svc.addEndpoint("renew", {
    subject: `${base}.renew`,
    handler: (_err, m) => {
      let leaseMs = 60_000;
      try {
        leaseMs = z.object({ leaseMs: z.number().int().min(1000).max(3600_000) }).parse(JSON.parse(new TextDecoder().decode(m.data))).leaseMs;
      } catch {
        /* default lease */
      }
      if (changed.size > 0) armLease(leaseMs);
      reply(m, { ok: true, active: changed.size > 0, leaseExpiresMs: now() + leaseMs });
    },
  });
  svc.addEndpoint("reset", {
    subject: `${base}.reset`,
    handler: (_err, m) => {
      void restoreAll("reset requested").then(() => reply(m, { ok: true }));
    },
  });

  let stopping: Promise<void> | undefined;
  return {
    state: () => Object.fromEntries(changed),
    stop() {
      return (stopping ??= (async () => {
        await restoreAll("agent stopping");
        await svc.stop();
      })());
    },
  };
}

/** NVML control (synchronous FFI) as a ClockBackend. */
export function nvmlClockBackend(control: { lockGpuClocks(gpu: number, minMhz: number, maxMhz: number): void; resetGpuClocks(gpu: number): void; setPowerLimitMw(gpu: number, limitMw: number): void }): ClockBackend {
  return {
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
    lockSmClock: (_gpu, _lo, hi) => post("/admin/config", { smClockMhz: hi }),
    resetSmClock: () => post("/admin/reset-clocks"),
    setPowerLimitMw: (_gpu, mw) => post("/admin/config", { powerLimitW: mw / 1000 }),
  };
}
