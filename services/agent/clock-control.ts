import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { createLifecycle, respondServiceError, subjects, type GpuInfo } from "../../shared/mod.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { ClockBackend } from "./clock-backends.ts";
import { createClockLedger, type Changed, type ClockLedger } from "./clock-ledger.ts";
import { holderRequest, parseRequest, refusalOf, setRequest, type SetRequestParsed } from "./clock-requests.ts";

// agent.ts and the tests take the backends from here, with the control they drive.
export { nvmlClockBackend, simnodeClockBackend, type ClockBackend } from "./clock-backends.ts";

/**
 * Guarded GPU clock and power-limit control, off unless the operator passes --allow-clock-control.
 * A NATS service on `ctl.v1.<node>.{get,set,renew,reset}` (JSON request/reply) that:
 * - validates every request against what the GPU supports (clock steps, power-limit range:
 *   clock-requests.ts);
 * - holds every change under a lease: a controller that stops renewing (crashed sweep, lost
 *   network) gets its changes undone when the lease runs out (clock-ledger.ts);
 * - undoes everything it changed on stop (SIGINT/SIGTERM of the agent);
 * - publishes every change and every restore as an audit event on `audit.v1.<node>`.
 */
export interface ClockControl {
  /**
   * Undoes every change still in force, then ends the service. Idempotent. Past the grace (a
   * backend that does not answer), the service ends anyway: what was not undone stays in the state
   * file, for the next start to undo.
   */
  stop(graceMs?: number): Promise<void>;
  state(): Record<number, Changed>;
}

export interface ClockControlOptions {
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
  /** How long a stop may take to undo the changes (default STOP_GRACE_MS). */
  stopGraceMs?: number;
}

/** Each GPU's restore is one or two backend calls (the simnode's time out after 10 s each). */
export const STOP_GRACE_MS = 30_000;

export async function startClockControl(opts: ClockControlOptions): Promise<ClockControl> {
  const now = opts.nowMs ?? Date.now;
  const log = opts.log ?? (() => {});
  const ledger = createClockLedger({ nc: opts.nc, node: opts.node, backend: opts.backend, log, now, stateFile: opts.stateFile });
  const { changed } = ledger;
  const reply = (m: ServiceMsg, body: unknown) => m.respond(JSON.stringify(body));
  await ledger.restoreLeftOver();

  // Stopping: a set in flight finishes, then everything is undone (no set runs after this), then
  // the service ends. Forced: the service ends; the state file keeps what is still in force.
  const life = createLifecycle({
    graceMs: opts.stopGraceMs ?? STOP_GRACE_MS,
    graceful: async () => {
      await ledger.exclusive(() => ledger.restoreAll("agent stopping"));
      await svc.stop();
    },
    force: async (graceMs) => {
      log(`clock control: changes to GPU ${[...changed.keys()].join(", ") || "(none)"} not undone within ${graceMs} ms${opts.stateFile ? `; the next start undoes them (${opts.stateFile})` : ""}`);
      await svc.stop().catch(() => undefined);
    },
  });
  const svc: Service = await new Svcm(opts.nc).add({ name: "joulestream-clock-control", version: "1.0.0", description: `clock control of ${opts.node}`, queue: "" });
  const base = subjects.control(opts.node);
  svc.addEndpoint("get", {
    subject: `${base}.get`,
    handler: (_err, m) => reply(m, { node: opts.node, gpus: opts.gpus, changed: Object.fromEntries(changed), leaseHolders: ledger.leaseHolders() }),
  });
  svc.addEndpoint("set", {
    subject: `${base}.set`,
    handler: (_err, m) => {
      const req = parseRequest(m, setRequest, false);
      if (!req) return;
      void ledger.exclusive(async () => {
        if (life.stopping) return respondServiceError(m, 503, "clock control is stopping");
        const bad = refusalOf(req, opts.gpus, opts.node, (g) => changed.get(g)?.by);
        if (bad) {
          ledger.audit("set_refused", { gpus: req.gpus, by: req.by, error: bad });
          return respondServiceError(m, 422, bad);
        }
        const fresh = req.gpus.filter((g) => !changed.has(g));
        try {
          await applySet(ledger, opts, req);
          reply(m, { ok: true, changed: Object.fromEntries(changed), leaseExpiresMs: now() + req.leaseMs });
        } catch (err) {
          // Undo what this request changed on GPUs it did not hold; GPUs it held stay under its lease.
          ledger.audit("set_failed", { gpus: req.gpus, by: req.by, error: errorMessage(err) });
          await ledger.restore(fresh, "set failed");
          if (ledger.heldBy(req.by).length > 0) ledger.armLease(req.by, req.leaseMs);
          respondServiceError(m, 500, errorMessage(err));
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
      const active = ledger.heldBy(by).length > 0;
      if (active) ledger.armLease(by, leaseMs);
      reply(m, { ok: true, active, ...(active ? { leaseExpiresMs: now() + leaseMs } : {}) });
    },
  });
  svc.addEndpoint("reset", {
    subject: `${base}.reset`,
    handler: (_err, m) => {
      const req = parseRequest(m, holderRequest, true);
      if (!req) return;
      // With `by`: that holder's changes; without: everything (the operator's override).
      void ledger.exclusive(() => (req.by !== undefined ? ledger.restoreHolder(req.by, `reset requested by ${req.by}`) : ledger.restoreAll("reset requested"))).then(() => reply(m, { ok: true }));
    },
  });

  return {
    state: () => Object.fromEntries(changed),
    stop: async (graceMs) => {
      await life.stop(graceMs);
    },
  };
}

/** Makes a validated set's changes, each recorded before its call, then arms the holder's lease. Throws on the first failure. */
async function applySet(ledger: ClockLedger, opts: ClockControlOptions, req: SetRequestParsed): Promise<void> {
  const { changed } = ledger;
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
      ledger.persist();
      await opts.backend.lockSmClock(g, range[0], range[1]);
    }
    if (req.powerLimitW !== undefined) {
      c.powerLimitMw = { set: req.powerLimitW * 1000, original: originals.get(g)! };
      ledger.persist();
      await opts.backend.setPowerLimitMw(g, req.powerLimitW * 1000);
    }
    ledger.audit("set", { gpu: g, by: req.by, clock: c.clock, powerLimitMw: c.powerLimitMw?.set, leaseMs: req.leaseMs });
  }
  ledger.armLease(req.by, req.leaseMs);
}
