import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { decodeAs, encode, eventsOf, isPowerBatchExact, isRequestEventExact, isRequestsMessageExact, isWorkWindowExact, powerBatch, requestEvent, requestsMessage, subjectId, subjects, validate, workWindow, type DeadLetter, type PowerBatch, type RequestEvent, type StreamName, type WorkWindow } from "../../shared/mod.ts";
import type { Token } from "./consumers.ts";
import type { Retry } from "./retry.ts";

/**
 * The intake stage: a message from POWER, WORK or REQUESTS is decoded and validated once, here;
 * one whose body speaks for another node than its subject names is refused (per-node permissions
 * rest on it); what is refused goes to `dlq.v1.<stream>` as it came, with the reason. What passes
 * goes to the next stage (the join) with the message's token; a REQUESTS batch's events each get a
 * share of it, and the message is done when its last share is.
 */
export type InputStream = "POWER" | "WORK" | "REQUESTS";

export interface IntakeNext {
  addPower(batch: PowerBatch, token: Token): void;
  addWork(work: WorkWindow, token: Token): void;
  addRequest(event: RequestEvent, token: Token): void;
}

export interface Intake {
  handle(stream: InputStream, m: JsMsg, token: Token): void;
  stats(): { received: Record<InputStream, number>; deadLettered: number };
}

/**
 * Publishes a refused message (or, with `part`, one refused event of a batch) to `dlq.v1.<stream>`
 * as it came, with the reason, retried until it lands (or the stage stops). Its msg id is the
 * message's stream sequence, so a replay dead-letters it once. Both intakes (this one and LOAD's)
 * send their refusals through it.
 */
export function publishDeadLetter(js: JetStreamClient, retry: Retry, stream: StreamName, m: Pick<JsMsg, "subject" | "seq" | "data">, reason: string, detail: string, tMs: number, part?: { index: number; data: Uint8Array }): Promise<unknown> {
  const dl: DeadLetter = { v: 1, kind: "dead_letter", stream, subject: m.subject, seq: m.seq, reason, detail: part ? `event ${part.index} of the batch: ${detail}` : detail, tMs, data: part?.data ?? m.data };
  const msgID = part ? `dlq:${stream}:${m.seq}:${part.index}` : `dlq:${stream}:${m.seq}`;
  return retry("dead-lettering", () => js.publish(subjects.deadLetter(stream), encode(dl), { msgID }));
}

export function createIntake(opts: { next: IntakeNext; js: JetStreamClient; retry: Retry; clock?: () => number }): Intake {
  const now = opts.clock ?? Date.now;
  const stats = { received: { POWER: 0, WORK: 0, REQUESTS: 0 } as Record<InputStream, number>, deadLettered: 0 };
  /** Published (retried until it lands) before the message is done: a refused message is never lost. */
  const deadLetter = (stream: StreamName, m: JsMsg, token: Token, reason: string, detail: string, part?: { index: number; data: Uint8Array }) => {
    publishDeadLetter(opts.js, opts.retry, stream, m, reason, detail, now(), part)
      .then(() => {
        stats.deadLettered++;
        token.done();
      })
      .catch(() => undefined); // stopped: the message stays unacknowledged and comes again
  };
  /** The node a message's subject names (`subjectId`), read once per message; a batch's events are compared with it. */
  const foreign = (m: JsMsg, subjectNode: string, node: string) => (subjectNode === node ? undefined : `node ${JSON.stringify(node)} on subject ${m.subject}`);

  return {
    handle(stream, m, token) {
      stats.received[stream]++;
      if (stream === "POWER" || stream === "WORK") {
        const d = stream === "POWER" ? decodeAs(powerBatch, m.data, isPowerBatchExact) : decodeAs(workWindow, m.data, isWorkWindowExact);
        if (!d.ok) return deadLetter(stream, m, token, d.reason, d.detail);
        const f = foreign(m, subjectId(m.subject), d.value.node);
        if (f) return deadLetter(stream, m, token, "subject", f);
        if (stream === "POWER") opts.next.addPower(d.value as PowerBatch, token);
        else opts.next.addWork(d.value as WorkWindow, token);
        return;
      }
      const d = decodeAs(requestsMessage, m.data, isRequestsMessageExact);
      if (!d.ok) return deadLetter(stream, m, token, d.reason, d.detail);
      const subjectNode = subjectId(m.subject);
      const f = foreign(m, subjectNode, d.value.node);
      if (f) return deadLetter(stream, m, token, "subject", f);
      const events = eventsOf(d.value);
      const shares = sharedToken(token, events.length);
      for (let i = 0; i < events.length; i++) {
        const e = validate(requestEvent, events[i], isRequestEventExact);
        const fe = e.ok ? foreign(m, subjectNode, e.value.node) : undefined;
        if (e.ok && !fe) opts.next.addRequest(e.value, shares[i]!);
        else if (e.ok) deadLetter(stream, m, shares[i]!, "subject", fe!, { index: i, data: encode(events[i]) });
        else deadLetter(stream, m, shares[i]!, e.reason, e.detail, { index: i, data: encode(events[i]) });
      }
      if (events.length === 0) token.done();
    },
    stats: () => ({ received: { ...stats.received }, deadLettered: stats.deadLettered }),
  };
}

/**
 * The token of a message that carries `n` events (a REQUESTS batch), split into `n` shares: the
 * message is done when the last share is, that is when every one of its events is in the join's
 * state (or dead-lettered). A share done twice counts once.
 */
export function sharedToken(whole: Token, n: number): Token[] {
  if (n === 1) return [whole];
  let left = n;
  return Array.from({ length: n }, () => {
    let done = false;
    return {
      done() {
        if (done) return;
        done = true;
        if (--left === 0) whole.done();
      },
    };
  });
}
