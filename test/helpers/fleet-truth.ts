import type { ExpectedRequest } from "../../services/fleet/ground-truth.ts";
import type { StoredRequest } from "./analyzer-harness.ts";
import { mjToJ } from "../../shared/mod.ts";

export const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/**
 * What the analyzer stored against what the fleet emulator knows: the worst relative error of a
 * request's energy, and every stored request that was never published or whose tokens, status or
 * completeness differ from the truth (empty when all agree).
 */
export function compareWithTruth(stored: readonly StoredRequest[], expected: ReadonlyMap<string, ExpectedRequest>): { worstRelErr: number; problems: string[] } {
  let worstRelErr = 0;
  const problems: string[] = [];
  for (const r of stored) {
    const id = `${r.node}/${r.requestId}`;
    const e = expected.get(id);
    if (!e) {
      problems.push(`${id}: stored, never published`);
      continue;
    }
    worstRelErr = Math.max(worstRelErr, relErr(r.energyJ, mjToJ(e.energyMj)));
    if (r.promptTokens !== e.promptTokens || r.outputTokens !== e.outputTokens) problems.push(`${id}: tokens ${r.promptTokens}/${r.outputTokens}, truth ${e.promptTokens}/${e.outputTokens}`);
    if (r.status !== e.status) problems.push(`${id}: status ${r.status}, truth ${e.status}`);
    if (r.incomplete) problems.push(`${id}: incomplete`);
  }
  return { worstRelErr, problems };
}
