import { createServer, type Server } from "node:net";
import { readFile, readdir, readlink } from "node:fs/promises";

export const LOOPBACK = "127.0.0.1";

/**
 * `n` distinct free TCP ports on 127.0.0.1. The listeners are held until all are taken, so the
 * ports differ; another process can still grab one before our server binds it, which callers
 * handle by retrying on "address already in use" (see `isAddressInUse`).
 */
export async function freePorts(n: number, host = LOOPBACK): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          srv.once("error", reject);
          srv.listen(0, host, () => {
            const addr = srv.address();
            if (addr && typeof addr === "object") resolve(addr.port);
            else reject(new Error("listener has no port"));
          });
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
  }
}

export async function freePort(host = LOOPBACK): Promise<number> {
  const [port] = await freePorts(1, host);
  return port!;
}

/** Whether something accepts a bind on this port right now. */
export async function isPortFree(port: number, host = LOOPBACK): Promise<boolean> {
  const srv = createServer();
  return await new Promise<boolean>((resolve) => {
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** Log text from nats-server or influxd saying a listen address was taken. */
export function isAddressInUse(logText: string): boolean {
  return /address already in use/i.test(logText);
}

export interface ListeningSocket {
  /** Dotted IPv4 or full IPv6 text. */
  address: string;
  port: number;
  family: 4 | 6;
  inode: number;
}

/** Listening TCP sockets of the whole machine, from /proc/net/tcp{,6} (Linux). */
export async function listeningSockets(): Promise<ListeningSocket[]> {
  const out: ListeningSocket[] = [];
  for (const [file, family] of [["/proc/net/tcp", 4], ["/proc/net/tcp6", 6]] as const) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address "HEX:PORT", f[3] state ("0A" = LISTEN), f[9] inode.
      if (f.length < 10 || f[3] !== "0A") continue;
      const [hexAddr, hexPort] = f[1]!.split(":");
      out.push({ address: decodeProcAddress(hexAddr!), port: parseInt(hexPort!, 16), family, inode: Number(f[9]) });
    }
  }
  return out;
}

/** /proc/net addresses are 32-bit words in host (little-endian) byte order. */
function decodeProcAddress(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = hex.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(word.slice(b, b + 2), 16));
  }
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

export function isLoopbackAddress(address: string): boolean {
  if (/^127\./.test(address)) return true;
  if (address === "0:0:0:0:0:0:0:1") return true;
  // IPv4-mapped loopback: ::ffff:127.x.y.z
  const m = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(address);
  return m !== null && parseInt(m[1]!, 16) >> 8 === 127;
}

/** Listening sockets owned by a process (via its /proc/<pid>/fd links). */
export async function listeningSocketsOf(pid: number): Promise<ListeningSocket[]> {
  const inodes = new Set<number>();
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // The descriptor closed while we listed them.
    }
  }
  return (await listeningSockets()).filter((s) => inodes.has(s.inode));
}

/**
 * Whether `pid` itself listens on all of `ports`. A readiness probe that only asks the port could be
 * answered by another server already there (a system influxd on 8086) while ours fails to bind.
 * Where /proc is missing (not Linux) this cannot be told and is assumed.
 */
export async function ownsPorts(pid: number, ports: readonly number[]): Promise<boolean> {
  if (process.platform !== "linux") return true;
  const own = new Set((await listeningSocketsOf(pid)).map((s) => s.port));
  return ports.every((p) => own.has(p));
}

/** Whether a process is running (a zombie, waiting to be reaped, counts as gone). */
export async function isProcessAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Field 3, after the parenthesized command name, is the state.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
