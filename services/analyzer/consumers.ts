import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager } from "@nats-io/jetstream";
import type { StreamName } from "../../shared/mod.ts";

/**
 * Durable pull consumers of the analyzer. Inputs are held unacknowledged while the requests they
 * feed are open, so ack_wait is long; a replica that takes a consumer over (restart after a crash,
 * or another replica after a lease expired) must not wait that out. So before binding, a consumer
 * with outstanding acknowledgements is recreated to start right after its ack floor: everything
 * not yet acknowledged is delivered again at once (the join and the sinks are idempotent).
 */
export const ACK_WAIT_NS = 30 * 60 * 1e9;

export interface ConsumerSpec {
  stream: StreamName;
  durable: string;
  /** e.g. `power.v1.*.3` for partition 3 (with the server's partition mapping). */
  filterSubject?: string;
  maxAckPending?: number;
}

export async function ensureConsumer(jsm: JetStreamManager, spec: ConsumerSpec): Promise<{ recreatedFromSeq?: number }> {
  const base: Partial<ConsumerConfig> = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ACK_WAIT_NS,
    max_ack_pending: spec.maxAckPending ?? 200_000,
    ...(spec.filterSubject ? { filter_subject: spec.filterSubject } : {}),
  };
  let info;
  try {
    info = await jsm.consumers.info(spec.stream, spec.durable);
  } catch {
    await jsm.consumers.add(spec.stream, { ...base, deliver_policy: DeliverPolicy.All });
    return {};
  }
  if (info.num_ack_pending === 0 && info.config.filter_subject === spec.filterSubject) return {};
  const startSeq = info.ack_floor.stream_seq + 1;
  await jsm.consumers.delete(spec.stream, spec.durable);
  await jsm.consumers.add(spec.stream, { ...base, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq });
  return { recreatedFromSeq: startSeq };
}
