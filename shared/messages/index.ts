export * from "./common.ts";
export * from "./power.ts";
export * from "./request.ts";
export * from "./work.ts";
export * from "./load.ts";
export * from "./energy.ts";
export * from "./inventory.ts";
export * from "./dead-letter.ts";
