/** The contract every service imports: schemas, subjects, codec, config, errors, lifecycle, units. */
export * from "./messages/index.ts";
export * from "./codec.ts";
export * from "./subjects.ts";
export * from "./streams.ts";
export * from "./errors.ts";
export * from "./lifecycle.ts";
export * from "./units.ts";
export * from "./config.ts";
export * from "./nats.ts";
export * from "./influxql.ts";
export * from "./replicas.ts";
export * from "./buckets.ts";
export * from "./spool.ts";
export * from "./outbox.ts";
export * from "./acked-publisher.ts";
export * from "./carbon.ts";
