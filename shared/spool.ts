import { createWriteStream, mkdirSync, readdirSync, statSync, type WriteStream } from "node:fs";
import { readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decode, encode } from "./codec.ts";

/**
 * The storage of an outbox (outbox.ts): a FIFO of messages waiting for NATS, in memory up to `memoryRecords` records
 * or `memoryBytes` of data, then spilled to segment files on disk (up to `maxDiskBytes`), so a broker outage of minutes loses
 * nothing. Order is kept: once spilling starts, new records go to disk behind the spilled ones, and
 * segments are read back in order. Writes are asynchronous (the request path never waits on disk).
 * Segments left by a previous run are picked up at start, oldest first.
 *
 * Overflow policy: when memory and disk are both full, the newest record is dropped and counted, by
 * the messages it carries (a batch of 300 request events counts 300).
 */
export interface SpoolRecord {
  subject: string;
  msgId: string;
  data: Uint8Array;
  /** Messages the record carries (a batch), for the drop count; default 1. Not kept on disk. */
  messages?: number;
}

export interface SpoolOptions {
  /** Directory for segment files; without it the spool is memory-only. */
  dir?: string;
  memoryRecords?: number;
  /** Bytes of message data held in memory before spilling (default 32 MiB): batches are large. */
  memoryBytes?: number;
  segmentRecords?: number;
  /** A segment file is closed at this size (default 8 MiB), so reading one back stays small. */
  segmentBytes?: number;
  maxDiskBytes?: number;
}

export interface SpoolStats {
  inMemory: number;
  onDisk: number;
  diskBytes: number;
  /** Messages dropped (see SpoolRecord.messages). */
  dropped: number;
  spilled: number;
}

export interface Spool {
  push(rec: SpoolRecord): boolean;
  /** The oldest record, reading the next segment from disk when memory is empty. */
  peek(): Promise<SpoolRecord | undefined>;
  /** Up to `max` oldest records, in order (at most one segment's worth comes from disk). */
  peekMany(max: number): Promise<SpoolRecord[]>;
  /** Removes the `n` oldest records (default 1), which `peek`/`peekMany` returned. */
  shift(n?: number): void;
  /**
   * Records queued. Segments left by an earlier run count only once read (or counted by
   * `countQueued`): counting them means reading them.
   */
  readonly size: number;
  /** Nothing queued, in memory or on disk (segments of an earlier run included). */
  readonly empty: boolean;
  /** Every record queued, segments of an earlier run included (it reads those to count them). */
  countQueued(): Promise<number>;
  stats(): SpoolStats;
  close(): Promise<void>;
}

interface Segment {
  path: string;
  records: number;
  /** Messages its records carry (SpoolRecord.messages), for the drop count if its writes fail. */
  messages: number;
  bytes: number;
  stream?: WriteStream;
  closed: Promise<void>;
}

export function createSpool(opts: SpoolOptions = {}): Spool {
  const memLimit = opts.memoryRecords ?? 20_000;
  const memByteLimit = opts.memoryBytes ?? 32 * 1024 * 1024;
  const segLimit = opts.segmentRecords ?? 5_000;
  const segByteLimit = opts.segmentBytes ?? 8 * 1024 * 1024;
  const maxDisk = opts.maxDiskBytes ?? 512 * 1024 * 1024;
  /** Records in memory from `head` on; those before it were published and are let go (undefined). */
  let mem: (SpoolRecord | undefined)[] = [];
  let head = 0;
  /** Data bytes of the records in memory from `head` on. */
  let memBytes = 0;
  const segments: Segment[] = [];
  let diskBytes = 0;
  let dropped = 0;
  let spilled = 0;
  // Segment numbers start mid-range so records saved from memory at close can go *before* them.
  let counter = 500_000_000_000;
  let lowest = counter;

  if (opts.dir) {
    mkdirSync(opts.dir, { recursive: true });
    for (const f of readdirSync(opts.dir).filter((f) => f.endsWith(".seg")).sort()) {
      const path = join(opts.dir, f);
      const bytes = statSync(path).size;
      segments.push({ path, records: -1, messages: -1, bytes, closed: Promise.resolve() });
      diskBytes += bytes;
      const n = Number.parseInt(f, 10);
      if (Number.isFinite(n)) {
        counter = Math.max(counter, n + 1);
        lowest = Math.min(lowest, n);
      }
    }
  }
  const memSize = () => mem.length - head;
  const queued = () => memSize() + segments.reduce((s, g) => s + Math.max(0, g.records), 0);
  const writing = () => {
    const last = segments[segments.length - 1];
    return last?.stream ? last : undefined;
  };
  const rotate = () => {
    const w = writing();
    if (w) {
      w.stream!.end();
      delete w.stream;
    }
  };
  const newSegment = (): Segment => {
    const path = join(opts.dir!, `${String(counter++).padStart(12, "0")}.seg`);
    const stream = createWriteStream(path, { flags: "a" });
    const seg: Segment = { path, records: 0, messages: 0, bytes: 0, stream, closed: new Promise((resolve) => stream.once("close", () => resolve())) };
    // Disk full, directory gone or read-only: the segment's records are lost and counted, not thrown
    // as an uncaught 'error' that would end the process (and the records it holds in memory).
    stream.on("error", () => {
      const i = segments.indexOf(seg);
      if (i < 0) return;
      segments.splice(i, 1);
      dropped += seg.messages;
      diskBytes -= seg.bytes;
      delete seg.stream;
      void unlink(path).catch(() => {});
    });
    segments.push(seg);
    return seg;
  };

  const peek = async (): Promise<SpoolRecord | undefined> => {
    if (memSize() > 0) return mem[head]!;
    const seg = segments[0];
    if (!seg) return undefined;
    if (seg.stream) rotate();
    await seg.closed;
    let buf: Buffer;
    try {
      buf = await readFile(seg.path);
    } catch {
      buf = Buffer.alloc(0); // unreadable (gone, EIO): given up on, not retried for ever
    }
    const recs: SpoolRecord[] = [];
    for (let off = 0; off + 4 <= buf.length; ) {
      const len = buf.readUInt32BE(off);
      if (off + 4 + len > buf.length) break; // torn tail of a crashed run
      // A frame a crash left zero-filled or garbled ends the segment: what follows cannot be framed.
      const rec = decodeFrame(buf.subarray(off + 4, off + 4 + len));
      if (!rec) {
        dropped++; // at least one record; how many followed it cannot be told
        break;
      }
      recs.push(rec);
      off += 4 + len;
    }
    const at = segments.indexOf(seg); // not there if its writes failed meanwhile (see newSegment)
    if (at >= 0) {
      segments.splice(at, 1);
      diskBytes -= seg.bytes;
    }
    // Into memory before the unlink is awaited: a record pushed meanwhile (no segment left) goes behind these.
    mem = mem.slice(head).concat(recs);
    head = 0;
    memBytes = mem.reduce((n, r) => n + r!.data.length, 0);
    await unlink(seg.path).catch(() => {});
    if (memSize() === 0) return segments.length > 0 ? peek() : undefined;
    return mem[head]!;
  };

  return {
    push(rec) {
      if (segments.length === 0 && memSize() < memLimit && (memBytes + rec.data.length <= memByteLimit || memSize() === 0)) {
        mem.push(rec);
        memBytes += rec.data.length;
        return true;
      }
      const f = opts.dir ? frame(rec) : undefined;
      if (!f || diskBytes + f.length > maxDisk) {
        dropped += rec.messages ?? 1;
        return false;
      }
      let seg = writing();
      if (!seg || seg.records >= segLimit || seg.bytes >= segByteLimit) {
        rotate();
        seg = newSegment();
      }
      seg.stream!.write(f);
      seg.records++;
      seg.messages += rec.messages ?? 1;
      seg.bytes += f.length;
      diskBytes += f.length;
      spilled++;
      return true;
    },
    peek,
    async peekMany(max) {
      if (memSize() === 0) await peek();
      return mem.slice(head, head + Math.min(max, memSize())) as SpoolRecord[];
    },
    shift(n = 1) {
      const end = head + Math.min(n, memSize());
      for (let i = head; i < end; i++) memBytes -= mem[i]!.data.length;
      // Published records are let go now: a long-running process must not keep thousands of them.
      mem.fill(undefined, head, end);
      head = end;
      if (head === mem.length) {
        mem = [];
        head = 0;
      } else if (head > 4096 && head * 2 > mem.length) {
        mem = mem.slice(head);
        head = 0;
      }
    },
    get size() {
      return queued();
    },
    get empty() {
      return memSize() === 0 && segments.length === 0;
    },
    async countQueued() {
      for (const seg of segments.filter((g) => g.records < 0)) {
        const buf = await readFile(seg.path).catch(() => Buffer.alloc(0)); // read back meanwhile: gone
        let n = 0;
        for (let off = 0; off + 4 <= buf.length; n++) {
          const len = buf.readUInt32BE(off);
          if (off + 4 + len > buf.length) break;
          off += 4 + len;
        }
        seg.records = n;
      }
      return queued();
    },
    stats: () => ({ inMemory: memSize(), onDisk: segments.reduce((s, g) => s + Math.max(0, g.records), 0), diskBytes, dropped, spilled }),
    /** Closes the files; records still in memory are saved to disk ahead of the spilled ones. */
    async close() {
      rotate();
      await Promise.all(segments.map((s) => s.closed));
      if (!opts.dir || memSize() === 0) return;
      const path = join(opts.dir, `${String(--lowest).padStart(12, "0")}.seg`);
      await writeFile(path, Buffer.concat((mem.slice(head) as SpoolRecord[]).map(frame)));
      mem = [];
      head = 0;
      memBytes = 0;
    },
  };
}

function decodeFrame(body: Buffer): SpoolRecord | undefined {
  try {
    const v = decode(body) as unknown;
    if (!Array.isArray(v) || typeof v[0] !== "string" || typeof v[1] !== "string" || !(v[2] instanceof Uint8Array)) return undefined;
    return { subject: v[0], msgId: v[1], data: v[2] };
  } catch {
    return undefined;
  }
}

/** One record on disk: 4-byte big-endian length, then msgpack [subject, msgId, data]. */
function frame(rec: SpoolRecord): Buffer {
  const body = encode([rec.subject, rec.msgId, rec.data]);
  const f = Buffer.allocUnsafe(4 + body.length);
  f.writeUInt32BE(body.length, 0);
  f.set(body, 4);
  return f;
}
