import { workMessage, type InstanceInfo, type WorkWindow } from "../../shared/mod.ts";

/**
 * Counts, per instance, the prefill and decode tokens each request processed in the current
 * window. The sampler calls `closeWindow` at each power-window boundary, so WORK and POWER windows
 * share their edges. Every instance gets a WORK message for every window, empty or not.
 */
export interface WorkTracker {
  started(instance: string, requestId: string): void;
  prefill(instance: string, requestId: string, tokens: number): void;
  decode(instance: string, requestId: string, tokens: number): void;
  ended(instance: string, requestId: string): void;
  closeWindow(windowStartMs: number, windowEndMs: number): WorkWindow[];
}

interface Open {
  prefill: number;
  decode: number;
}

export function createWorkTracker(node: string, instances: readonly InstanceInfo[]): WorkTracker {
  const current = new Map<string, Map<string, Open>>();
  const inFlight = new Map<string, Set<string>>();
  for (const inst of instances) {
    current.set(inst.id, new Map());
    inFlight.set(inst.id, new Set());
  }
  const entry = (instance: string, requestId: string): Open => {
    const m = current.get(instance);
    if (!m) throw new RangeError(`unknown instance ${instance}`);
    let e = m.get(requestId);
    if (!e) m.set(requestId, (e = { prefill: 0, decode: 0 }));
    return e;
  };
  return {
    started(instance, requestId) {
      inFlight.get(instance)?.add(requestId);
    },
    prefill(instance, requestId, tokens) {
      if (tokens > 0) entry(instance, requestId).prefill += tokens;
    },
    decode(instance, requestId, tokens) {
      if (tokens > 0) entry(instance, requestId).decode += tokens;
    },
    ended(instance, requestId) {
      inFlight.get(instance)?.delete(requestId);
    },
    closeWindow(windowStartMs, windowEndMs) {
      const out: WorkWindow[] = [];
      for (const inst of instances) {
        const m = current.get(inst.id)!;
        current.set(inst.id, new Map());
        out.push(
          workMessage({
            node,
            instance: inst.id,
            gpus: inst.gpus,
            ...(inst.model ? { model: inst.model } : {}),
            windowStartMs,
            windowEndMs,
            requests: [...m].map(([requestId, w]) => ({ requestId, prefillTokens: w.prefill, decodeTokens: w.decode })),
            inFlight: inFlight.get(inst.id)!.size,
          }),
        );
      }
      return out;
    },
  };
}
