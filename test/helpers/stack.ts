import type { ExecutionContext, TestFn } from "ava";
import { startLocalStack, type LocalStack, type LocalStackOptions } from "../../infra/local-stack.ts";

/**
 * Real nats-server (JetStream, all streams) and influxd for integration tests: free loopback ports,
 * a temporary run directory, everything removed on stop. The servers die with the test worker even
 * if it is killed.
 */
export async function startTestStack(opts: LocalStackOptions = {}): Promise<LocalStack> {
  return await startLocalStack(opts);
}

/** A stack for one test, stopped when the test ends (pass or fail). */
export async function withStack(t: ExecutionContext, opts: LocalStackOptions = {}): Promise<LocalStack> {
  const stack = await startTestStack(opts);
  t.teardown(() => stack.stop());
  return stack;
}

/**
 * One stack shared by the tests of a file: started before the first test, stopped after the last.
 * Tests sharing it should use their own node ids / run ids, since they run concurrently.
 *
 *   const stack = sharedTestStack(test);
 *   test("x", async (t) => { const { natsUrl } = stack(); ... });
 */
export function sharedTestStack(test: TestFn, opts: LocalStackOptions = {}): () => LocalStack {
  let stack: LocalStack | undefined;
  test.before(async () => {
    stack = await startTestStack(opts);
  });
  test.after.always(async () => {
    await stack?.stop();
  });
  return () => {
    if (!stack) throw new Error("sharedTestStack: the stack is not started (used outside a test?)");
    return stack;
  };
}
