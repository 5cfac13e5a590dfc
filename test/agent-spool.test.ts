import test from "ava";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { createSpool, type SpoolRecord } from "../shared/spool.ts";
import { until } from "./helpers/until.ts";

const rec = (i: number): SpoolRecord => ({ subject: "power.v1.n1", msgId: `m${i}`, data: new Uint8Array([i & 255, (i >> 8) & 255]) });

async function drain(spool: ReturnType<typeof createSpool>): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const r = await spool.peek();
    if (!r) return out;
    out.push(r.msgId);
    spool.shift();
  }
}

test("spool - spills to disk past its memory bound and gives everything back in order", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spool = createSpool({ dir, memoryRecords: 100, segmentRecords: 250 });
  for (let i = 0; i < 1000; i++) t.true(spool.push(rec(i)));
  t.is(spool.size, 1000);
  t.is(spool.stats().spilled, 900);
  // Pushes keep coming while it drains: they must still come out after the older ones.
  const first = await spool.peek();
  t.is(first?.msgId, "m0");
  for (let i = 1000; i < 1100; i++) spool.push(rec(i));
  const ids = await drain(spool);
  t.deepEqual(ids, Array.from({ length: 1100 }, (_, i) => `m${i}`));
  t.is(spool.stats().dropped, 0);
  await spool.close();
  t.deepEqual(readdirSync(dir), []);
});

test("spool - large records (batches) spill by bytes, and segments close by size so one read-back stays small", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = (i: number) => ({ ...rec(i), data: new Uint8Array(100 * 1024).fill(i % 251) });
  const spool = createSpool({ dir, memoryBytes: 1024 * 1024, segmentBytes: 512 * 1024 });
  for (let i = 0; i < 40; i++) t.true(spool.push(big(i)));
  t.is(spool.stats().inMemory, 10, "1 MiB of 100 KiB records in memory");
  t.is(spool.stats().spilled, 30);
  // The segments' files appear as their write streams open (asynchronously).
  await until(() => readdirSync(dir).length >= 5, 5000, `5 segment files (${readdirSync(dir).length} so far)`);
  t.is(readdirSync(dir).length, 5, "30 spilled records in segments of 6 (each closed once past 512 KiB)");
  const out: number[] = [];
  for (;;) {
    const batch = await spool.peekMany(1000);
    if (batch.length === 0) break;
    t.true(batch.length <= 10, `a read-back of ${batch.length} records`);
    for (const r of batch) {
      t.is(r.data.length, 100 * 1024);
      out.push(Number(r.msgId.slice(1)));
    }
    spool.shift(batch.length);
  }
  t.deepEqual(out, Array.from({ length: 40 }, (_, i) => i));
  await spool.close();
});

test("spool - what is left at close is picked up by the next run, oldest first", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = createSpool({ dir, memoryRecords: 10, segmentRecords: 7 });
  for (let i = 0; i < 40; i++) a.push(rec(i));
  await a.peek();
  a.shift(); // m0 was published
  await a.close();
  const b = createSpool({ dir, memoryRecords: 10 });
  t.deepEqual(await drain(b), Array.from({ length: 39 }, (_, i) => `m${i + 1}`));
});

test("spool - what an earlier run left is queued: not empty at once, and counted on request by reading the segments", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = createSpool({ dir, memoryRecords: 10, segmentRecords: 7 });
  for (let i = 0; i < 25; i++) a.push(rec(i));
  await a.close();
  const b = createSpool({ dir, memoryRecords: 10 });
  t.false(b.empty);
  t.is(b.size, 0, "not counted before it is read");
  t.is(await b.countQueued(), 25);
  t.is(b.size, 25);
  t.is((await drain(b)).length, 25);
  t.true(b.empty);
  t.is(b.size, 0);
});

test("spool - when memory and disk are full the newest record is dropped and counted", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = createSpool({ dir, memoryRecords: 5, maxDiskBytes: 200 });
  let accepted = 0;
  for (let i = 0; i < 100; i++) if (s.push(rec(i))) accepted++;
  t.true(accepted < 100);
  t.is(s.stats().dropped, 100 - accepted);
  t.deepEqual(await drain(s), Array.from({ length: accepted }, (_, i) => `m${i}`));
  // A dropped batch counts the messages it carried.
  const mem = createSpool({ memoryRecords: 1 });
  t.true(mem.push(rec(0)));
  t.false(mem.push({ ...rec(1), messages: 300 }));
  t.is(mem.stats().dropped, 300);
});

test("spool - batches come out in order across memory and disk, and shift(n) removes exactly n", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = createSpool({ dir, memoryRecords: 30, segmentRecords: 25 });
  for (let i = 0; i < 200; i++) s.push(rec(i));
  const out: string[] = [];
  for (let round = 0; ; round++) {
    const batch = await s.peekMany(16);
    if (batch.length === 0) break;
    t.true(batch.length <= 16);
    // Take part of a batch only, as the publisher does when a publish in it fails.
    const take = round % 3 === 0 ? Math.ceil(batch.length / 2) : batch.length;
    out.push(...batch.slice(0, take).map((r) => r.msgId));
    s.shift(take);
    if (round === 5) for (let i = 200; i < 220; i++) s.push(rec(i)); // pushes while draining
  }
  t.deepEqual(out, Array.from({ length: 220 }, (_, i) => `m${i}`));
  t.is(s.size, 0);
});

test("spool - published records are let go at once, not kept until a compaction thousands of records later", async (t) => {
  v8.setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const s = createSpool();
  const refs: WeakRef<Uint8Array>[] = [];
  // Steady state: each record is published (shifted) soon after it is queued, a few stay queued.
  for (let i = 0; i < 200; i++) {
    const r = { subject: "power.v1.n1", msgId: `m${i}`, data: new Uint8Array(64 * 1024) };
    refs.push(new WeakRef(r.data));
    s.push(r);
    if (i >= 3) s.shift(); // three records always waiting
  }
  await new Promise((r) => setImmediate(r));
  gc();
  const alive = refs.filter((w) => w.deref() !== undefined).length;
  t.is(s.size, 3);
  t.true(alive <= 3, `${alive} records still referenced (${(alive * 64) / 1024} MiB) with 3 queued`);
});

test("spool - a segment a crash left with a zero-filled or garbled tail is read up to the damage, and the agent starts", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const before = createSpool({ dir, memoryRecords: 1 });
  for (let i = 0; i < 5; i++) before.push(rec(i));
  await before.close();
  const files = readdirSync(dir).sort();
  const last = join(dir, files.at(-1)!);
  // Power lost while writing: the file's size grew but its last blocks are zeros. Then a second
  // segment that is garbage from its first byte, and an empty one.
  writeFileSync(last, Buffer.concat([readFileSync(last), Buffer.alloc(16)]));
  writeFileSync(join(dir, "600000000000.seg"), Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]));
  writeFileSync(join(dir, "600000000001.seg"), Buffer.alloc(0));
  const after = createSpool({ dir });
  const more = after.push(rec(99)); // behind what was on disk
  t.true(more);
  t.deepEqual(await drain(after), ["m0", "m1", "m2", "m3", "m4", "m99"]);
  t.is(after.stats().dropped, 2, "one damaged record per damaged segment, counted");
  t.deepEqual(readdirSync(dir), [], "read-back segments are removed, damaged ones too");
});

test("spool - a disk that fails writes (full, gone) loses only what went to it, counted, instead of ending the process", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spool = createSpool({ dir, memoryRecords: 2 });
  symlinkSync("/dev/full", join(dir, "500000000000.seg")); // the first segment's writes fail with ENOSPC
  for (let i = 0; i < 10; i++) spool.push({ ...rec(i), messages: 3 });
  // The failed writes are reported by the segment's stream, asynchronously.
  await until(() => spool.stats().dropped >= 8 * 3, 5000, `the failed writes counted (${spool.stats().dropped} so far)`);
  t.is(spool.stats().dropped, 8 * 3, "each lost record counted by the messages it carried");
  t.deepEqual(await drain(spool), ["m0", "m1"], "memory is intact");
  spool.push(rec(10)); // the disk is not needed while memory has room
  t.deepEqual(await drain(spool), ["m10"]);
});
