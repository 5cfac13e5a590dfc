import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { Kvm, type KV } from "@nats-io/kv";
import {
  KV_NODES, decode, decodeAs, encode, errorMessage, eventsOf, nodeInventory, requestEnergy, requestEvent, requestsMessage, subjects, validate, workWindow,
  createLifecycle, type GovernorDecision, type NodeInventory,
} from "../../shared/mod.ts";
import { createClockClient, type ClockClient } from "./clock-client.ts";
import { createObserver, instanceKey, type PeriodStats } from "./observe.ts";
import { DEFAULT_POLICY, decide, freshMemory, type InstanceMemory, type PolicyConfig } from "./policy.ts";
import { priorClock, type Profile } from "./profile.ts";
import { DEFAULT_GUARD, freshGuard, guardHoldsAtPeriod, guardMove, nextPatience, type GuardConfig, type GuardState } from "./burst-guard.ts";
import type { DecisionSink } from "./decision-points.ts";

/**
 * `joulestream govern`: every control period, for each inference instance of the governed nodes,
 * the policy's clock for the period just measured, set through the node's clock control under this
 * governor's lease (renewed each period: a governor that dies, hangs or loses NATS has its clocks
 * undone by the agents when the lease runs out). Every decision, applied or not, is published on
 * the node's audit subject with its reason. Dry run: decisions only, no request to clock control.
 * Kill switch (`gov.v1.kill`): gives back every clock and stops acting until restarted.
 * Several governors: clock control refuses a GPU another holder has, so one holds an instance; the
 * other publishes "held by another" and tries again next period (it takes over when the holder
 * lets go).
 * Between periods, the burst guard (burst-guard.ts) takes an instance's clock to the maximum as soon
 * as more of its requests wait for their first token than it allows, and back to the period's clock
 * when none waits; its moves are decisions too (`guard: true`), through the same lease.
 * Simulated nodes apply one clock to all their GPUs: govern one instance per simnode.
 */
export interface GovernorOptions {
  nc: NatsConnection;
  /** Holder name for leases and the audit trail; unique per governor. */
  id: string;
  periodMs: number;
  /** Lease on each change; must outlast a few periods (renewed every period). */
  leaseMs: number;
  dryRun: boolean;
  slo: { ttftSloMs: number; tpotSloMs: number; attainmentTarget: number };
  policy?: Partial<Omit<PolicyConfig, "supportedMhz" | "ttftSloMs" | "tpotSloMs" | "attainmentTarget">>;
  profile?: Profile;
  /** The burst guard between periods (default on, DEFAULT_GUARD); false: the period's clock only. */
  burstGuard?: false | Partial<GuardConfig>;
  /**
   * Clocks to choose from where the inventory lists none for a GPU (a DCGM-exporter source cannot
   * read them), MHz. Clock control checks what it can; the driver snaps to the nearest step.
   */
  fallbackClocksMhz?: number[];
  /** Nodes to govern; default: every node in the inventory. */
  nodes?: string[];
  /** Where each period's decisions are also written (InfluxDB `governor_decision`); a failed write is counted, never blocks a decision. */
  decisionSink?: DecisionSink;
  log?: (line: string) => void;
  now?: () => number;
}

export interface GovernorStats {
  periods: number;
  decisions: number;
  sets: number;
  setFailures: number;
  refused: number;
  leasesLost: number;
  undecodable: number;
  /** Periods whose decisions the decision sink refused or could not reach. */
  sinkFailures: number;
  /** The burst guard's moves to the maximum. */
  boosts: number;
  killed: boolean;
}

export interface Governor {
  /** Runs one control period now (tests; the timer calls it too). */
  tick(): Promise<GovernorDecision[]>;
  stats(): GovernorStats;
  /** Gives back every clock it holds, then stops. Idempotent. */
  stop(): Promise<void>;
}

type SetResult = { ok: true } | { ok: false; error: string; /** Clock control refused: the instance is no longer held. */ released: boolean };

interface Held {
  node: string;
  instance: string;
  gpus: number[];
  /** The clock in force as far as this governor knows (its own lock, or the maximum). */
  currentMhz: number;
  /** The control period's clock (the policy's); the clock in force unless the burst guard holds the maximum. */
  baseMhz: number;
  maxMhz: number;
  holding: boolean;
  memory: InstanceMemory;
  guard: GuardState;
  /** The guard held the maximum at some time in the period being measured. */
  boostedInPeriod: boolean;
  /** Clock changes to this instance, one at a time, in order (the period's and the guard's). */
  chain: Promise<unknown>;
}

export async function startGovernor(opts: GovernorOptions): Promise<Governor> {
  const log = opts.log ?? (() => {});
  const now = opts.now ?? Date.now;
  if (opts.leaseMs < Math.max(1000, 2 * opts.periodMs)) throw new Error(`leaseMs ${opts.leaseMs} must be ≥ 1000 and ≥ 2 × periodMs (${opts.periodMs})`);
  const observer = createObserver(opts.slo);
  const clocks: ClockClient = createClockClient(opts.nc, opts.id);
  const stats: GovernorStats = { periods: 0, decisions: 0, sets: 0, setFailures: 0, refused: 0, leasesLost: 0, undecodable: 0, sinkFailures: 0, boosts: 0, killed: false };
  const held = new Map<string, Held>();
  const guardCfg: GuardConfig | undefined = opts.burstGuard === false ? undefined : { ...DEFAULT_GUARD, ...opts.burstGuard };
  /** The guard's decisions since the last period, for the decision sink (kept only where there is one). */
  let guardDecisions: GovernorDecision[] = [];
  let stopping = false;
  const kv: KV = await new Kvm(opts.nc).open(KV_NODES);

  const subs: Subscription[] = [];
  const listen = (subject: string, on: (data: Uint8Array) => void) => {
    const sub = opts.nc.subscribe(subject, { callback: (err, m) => (err ? log(`governor: ${subject}: ${errorMessage(err)}`) : on(m.data)) });
    subs.push(sub);
  };
  listen("req.v1.>", (data) => {
    const m = decodeAs(requestsMessage, data);
    if (!m.ok) return void stats.undecodable++;
    const touched = new Set<string>();
    for (const raw of eventsOf(m.value)) {
      const e = validate(requestEvent, raw);
      if (!e.ok) {
        stats.undecodable++;
        continue;
      }
      observer.onRequestEvent(e.value);
      touched.add(instanceKey(e.value.node, e.value.instance));
    }
    for (const key of touched) guard(key);
  });
  listen("work.v1.>", (data) => {
    const w = decodeAs(workWindow, data);
    if (w.ok) observer.onWork(w.value);
    else stats.undecodable++;
  });
  listen("energy.v1.>", (data) => {
    const e = decodeAs(requestEnergy, data);
    if (e.ok) observer.onEnergy(e.value);
    else stats.undecodable++;
  });
  listen(subjects.governorKill, () => {
    if (stats.killed) return;
    stats.killed = true;
    log(`governor ${opts.id}: kill switch: giving back every clock, no more changes`);
    void giveBack("kill switch");
  });

  const inventories = async (): Promise<NodeInventory[]> => {
    const out: NodeInventory[] = [];
    const names = opts.nodes ? [...opts.nodes] : [];
    if (!opts.nodes) for await (const k of await kv.keys()) names.push(k);
    for (const name of names) {
      const e = await kv.get(name);
      if (!e || e.operation !== "PUT") continue;
      const inv = validate(nodeInventory, decode(e.value));
      if (inv.ok) out.push(inv.value);
    }
    return out;
  };

  const giveBack = async (why: string) => {
    // A change under way finishes first (later ones see the kill switch or the stop and do nothing): then every clock held is reset.
    await Promise.all([...held.values()].map((h) => h.chain));
    const nodes = new Set([...held.values()].filter((h) => h.holding).map((h) => h.node));
    for (const h of held.values()) h.holding = false;
    for (const node of nodes) {
      try {
        await clocks.reset(node);
        log(`governor ${opts.id}: ${node}: clocks given back (${why})`);
      } catch (err) {
        log(`governor ${opts.id}: ${node}: give-back failed (${errorMessage(err)}); its lease will undo the change`);
      }
    }
  };

  const publish = (d: GovernorDecision) => {
    stats.decisions++;
    try {
      opts.nc.publish(subjects.audit(d.node), encode(d));
    } catch (err) {
      log(`governor ${opts.id}: decision for ${d.node}/${d.instance} not published: ${errorMessage(err)}`);
    }
  };

  /** A decision of this governor for one instance, as it stands now (not applied until said so). */
  const decision = (node: string, instance: string, d: Pick<GovernorDecision, "fromMhz" | "toMhz" | "action" | "reason" | "requests"> & Partial<GovernorDecision>): GovernorDecision => ({
    v: 1, kind: "governor", governor: opts.id, node, instance, tMs: now(), dryRun: opts.dryRun, applied: false, ...d,
  });

  /** Sets an instance's clock under this governor's lease, after any change already under way there. */
  const setClock = (h: Held, mhz: number): Promise<SetResult> => {
    const run = async (): Promise<SetResult> => {
      if (stats.killed || stopping) return { ok: false, error: stats.killed ? "kill switch" : "governor stopping", released: false };
      if (h.holding && h.currentMhz === mhz) return { ok: true };
      try {
        const r = await clocks.set(h.node, h.gpus, mhz, opts.leaseMs);
        if (r.ok) {
          stats.sets++;
          h.holding = true;
          h.currentMhz = mhz;
          return { ok: true };
        }
        if (r.refused) stats.refused++;
        else stats.setFailures++;
        // Not ours (another holder) or refused: the instance runs as someone else set it.
        Object.assign(h, { holding: false, currentMhz: h.maxMhz, baseMhz: h.maxMhz, memory: freshMemory(), guard: freshGuard() });
        return { ok: false, error: r.error, released: true };
      } catch (err) {
        stats.setFailures++;
        return { ok: false, error: errorMessage(err), released: false };
      }
    };
    const p = h.chain.then(run);
    h.chain = p.catch(() => undefined);
    return p;
  };

  /** The burst guard, on new request events of an instance: to the maximum, or back, at once. */
  const guard = (key: string) => {
    const h = held.get(key);
    if (!guardCfg || !h || stats.killed || stopping || (!h.holding && !opts.dryRun)) return;
    const waiting = observer.waiting(key);
    const move = guardMove(h.guard, waiting, h.baseMhz, h.maxMhz);
    if (!move) return;
    h.guard.boosted = move.boosted;
    if (move.boosted) {
      stats.boosts++;
      h.boostedInPeriod = true;
    }
    const d = decision(h.node, h.instance, { fromMhz: h.currentMhz, toMhz: move.toMhz, action: move.boosted ? "max" : "down", reason: move.reason, requests: 0, guard: true, waiting });
    const done = (x: GovernorDecision) => {
      publish(x);
      if (opts.decisionSink) guardDecisions.push(x);
    };
    if (opts.dryRun) {
      h.currentMhz = move.toMhz;
      return done({ ...d, notApplied: "dry run" });
    }
    void setClock(h, move.toMhz).then((r) => done(r.ok ? { ...d, applied: true } : { ...d, notApplied: r.error }));
  };

  const decideOne = async (inv: NodeInventory, inst: NodeInventory["instances"][number], obs: PeriodStats): Promise<GovernorDecision> => {
    const key = instanceKey(inv.node, inst.id);
    const listed = [...new Set(inst.gpus.flatMap((g) => inv.gpus.find((x) => x.index === g)?.supportedSmClocksMhz ?? []))];
    const supported = listed.length > 0 ? listed : (opts.fallbackClocksMhz ?? []);
    if (supported.length === 0) {
      return decision(inv.node, inst.id, { fromMhz: 0, toMhz: 0, action: "hold", reason: "no supported clocks known (inventory lists none, no fallback given)", notApplied: "no clocks", requests: obs.requests });
    }
    const maxMhz = Math.max(...supported);
    let h = held.get(key);
    if (!h) held.set(key, (h = { node: inv.node, instance: inst.id, gpus: inst.gpus, currentMhz: maxMhz, baseMhz: maxMhz, maxMhz, holding: false, memory: freshMemory(), guard: freshGuard(), boostedInPeriod: false, chain: Promise.resolve() }));
    const cfg: PolicyConfig = { ...DEFAULT_POLICY, guarded: guardCfg !== undefined, ...opts.policy, supportedMhz: supported, ...opts.slo };
    // A period the guard boosted ran at two clocks: its energy per token is not the period's clock's.
    if (h.boostedInPeriod) {
      delete obs.jPerOutputToken;
      h.boostedInPeriod = false;
    }
    const prior = opts.profile ? priorClock(opts.profile, inst.model, inst.gpus.length, obs.mix, opts.slo) : undefined;
    // The policy judges the period's own clock; time the guard held the maximum is part of what it measured there.
    const d = decide(cfg, h.baseMhz, obs, h.memory, prior?.mhz);
    if (guardCfg) h.guard.patience = nextPatience(guardCfg, h.guard.patience, obs);
    // The guard keeps the maximum while requests still wait (below the maximum and past its patience); otherwise the period's clock.
    const waiting = guardCfg ? observer.waiting(key) : 0;
    const boosted = guardCfg !== undefined && guardHoldsAtPeriod(h.guard, waiting, d.toMhz, maxMhz);
    const inForce = boosted ? maxMhz : d.toMhz;
    if (boosted) h.boostedInPeriod = true;
    const guardNote = boosted ? `; the burst guard holds ${maxMhz} MHz while ${waiting} request(s) wait for their first token` : "";
    const base = decision(inv.node, inst.id, {
      fromMhz: d.fromMhz, toMhz: d.toMhz, action: d.action, reason: d.reason + guardNote, requests: obs.requests,
      ...(obs.attainment !== undefined ? { attainment: obs.attainment } : {}), ...(obs.ttftP90Ms !== undefined ? { ttftP90Ms: obs.ttftP90Ms } : {}), ...(obs.tpotP90Ms !== undefined ? { tpotP90Ms: obs.tpotP90Ms } : {}),
      ...(obs.inFlight !== undefined ? { inFlight: obs.inFlight } : {}), ...(obs.jPerOutputToken !== undefined ? { jPerOutputToken: obs.jPerOutputToken } : {}), ...(prior ? { priorMhz: prior.mhz } : {}),
    });
    if (stats.killed) return { ...base, toMhz: h.currentMhz, notApplied: "kill switch" };
    if (opts.dryRun) {
      // What it would do, as if it had: the next period's decision follows from this one.
      Object.assign(h, { memory: d.memory, baseMhz: d.toMhz, currentMhz: inForce });
      h.guard.boosted = boosted;
      return { ...base, notApplied: "dry run" };
    }
    // Before the set: a guard move on events that arrive meanwhile starts from this state, and its set follows this one.
    const before = { baseMhz: h.baseMhz, boosted: h.guard.boosted };
    h.baseMhz = d.toMhz;
    h.guard.boosted = boosted;
    const r = await setClock(h, inForce);
    if (!r.ok) {
      // Refused (another holder): setClock let the instance go. Unreachable: as it was.
      if (!r.released) Object.assign(h, { baseMhz: before.baseMhz, guard: { ...h.guard, boosted: before.boosted } });
      return { ...base, notApplied: r.error };
    }
    h.memory = d.memory;
    return { ...base, applied: true };
  };

  const renewAll = async () => {
    const nodes = new Set([...held.values()].filter((h) => h.holding).map((h) => h.node));
    for (const node of nodes) {
      try {
        if (await clocks.renew(node, opts.leaseMs)) continue;
        // The lease ran out or an operator reset it: the clocks are back at the maximum.
        stats.leasesLost++;
        log(`governor ${opts.id}: ${node}: lease lost; clocks were restored, taking them again next period`);
        for (const h of held.values()) if (h.node === node) Object.assign(h, { holding: false, currentMhz: h.maxMhz, baseMhz: h.maxMhz, guard: { ...h.guard, boosted: false } });
      } catch (err) {
        log(`governor ${opts.id}: ${node}: renew failed: ${errorMessage(err)}`);
      }
    }
  };

  let running: Promise<GovernorDecision[]> | undefined;
  const tick = (): Promise<GovernorDecision[]> =>
    (running ??= (async () => {
      try {
        stats.periods++;
        const out: GovernorDecision[] = [];
        for (const inv of await inventories()) {
          for (const inst of inv.instances) {
            const d = await decideOne(inv, inst, observer.take(instanceKey(inv.node, inst.id)));
            publish(d);
            out.push(d);
          }
        }
        if (!opts.dryRun && !stats.killed) await renewAll();
        if (opts.decisionSink) {
          const written = [...guardDecisions, ...out];
          guardDecisions = [];
          try {
            await opts.decisionSink(written);
          } catch (err) {
            if (stats.sinkFailures++ === 0) log(`governor ${opts.id}: decisions not written to InfluxDB (${errorMessage(err)}); the audit subject has them`);
          }
        }
        return out;
      } finally {
        running = undefined;
      }
    })());

  const timer = setInterval(() => void tick().catch((err) => log(`governor ${opts.id}: period failed: ${errorMessage(err)}`)), opts.periodMs);
  // The caller's NATS connection keeps the process alive while it runs; the timer alone must not.
  timer.unref();
  const life = createLifecycle({
    graceMs: 10_000,
    async graceful() {
      stopping = true;
      clearInterval(timer);
      await running?.catch(() => undefined);
      for (const s of subs) s.unsubscribe();
      if (!opts.dryRun) await giveBack("governor stopping");
    },
  });
  return { tick, stats: () => ({ ...stats }), stop: async () => void (await life.stop()) };
}
