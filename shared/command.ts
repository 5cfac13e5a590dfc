import type { z } from "zod";
import type { CommandSpec } from "./config.ts";

/**
 * One subcommand of the `joulestream` CLI. `run` receives the validated config and resolves with
 * the process exit code; long-running commands resolve when they were stopped.
 */
export interface CliCommand<S extends z.ZodType = z.ZodType> {
  spec: CommandSpec<S>;
  run(config: z.infer<S>, positionals: string[]): Promise<number>;
}

export function defineCommand<S extends z.ZodType>(spec: CommandSpec<S>, run: (config: z.infer<S>, positionals: string[]) => Promise<number>): CliCommand<S> {
  return { spec, run };
}
