/**
 * NVML calls as data: a reading is a generator that yields each call it needs and gets the driver's
 * return code back, so the same reading runs with direct calls (runSync: µs each, the event loop
 * held) or with koffi's asynchronous calls on its thread pool (runAsync: the loop free).
 */

/** One NVML call, as the sampling generator asks for it; the driver answers with its return code. */
export interface Call {
  f: (...args: never[]) => number;
  args: unknown[];
}
export type Reading<T> = Generator<Call, T, number>;

/** The request for one call: `const code = yield call(f, ...args)` inside a reading. */
export function call<A extends unknown[]>(f: (...args: A) => number, ...args: A): Call {
  return { f: f as unknown as Call["f"], args };
}

/** Runs a reading with direct calls: everything happens before this returns. */
export function runSync<T>(g: Reading<T>): T {
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    r = g.next((r.value.f as (...a: unknown[]) => number)(...r.value.args));
  }
}

/** Runs a reading with koffi's asynchronous calls: each call on a worker thread, the loop free. */
export async function runAsync<T>(g: Reading<T>): Promise<T> {
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    const { f, args } = r.value;
    const code = await new Promise<number>((resolve, reject) =>
      (f as unknown as { async(...a: unknown[]): void }).async(...args, (err: unknown, v: number) => (err ? reject(err) : resolve(v))),
    );
    r = g.next(code);
  }
}
