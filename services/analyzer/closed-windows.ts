/**
 * The starts of a node's closed windows, as runs on its window grid ([first start, count]). Windows
 * close in order almost always, so a node that ran for hours is one run, or a few where a window is
 * still open: membership is a binary search over a handful of runs, and a checkpoint copies the runs
 * as they are. (A Set of starts held up to 2,400 numbers per node, 3 million for 1,250 nodes, and a
 * checkpoint sorted all of them every second.) The grid is the epoch's multiples of the window
 * length; a start off it (a clock glitch, a changed window length) is kept apart in a Set, so runs
 * never overlap and a binary search finds the one that holds a start.
 */
export class ClosedWindows {
  private readonly firsts: number[] = [];
  private readonly counts: number[] = [];
  private readonly offGrid = new Set<number>();
  private listed = 0;

  constructor(private readonly stepMs: number) {}

  static fromRuns(stepMs: number, runs: readonly (readonly [number, number])[]): ClosedWindows {
    const c = new ClosedWindows(stepMs);
    for (const [first, count] of runs) for (let i = 0; i < count; i++) c.add(first + i * stepMs);
    return c;
  }

  /** Starts listed (the runs' lengths summed). */
  get size(): number {
    return this.listed;
  }

  /** Index of the last run whose first start is ≤ `start`, or -1. */
  private runAtOrBefore(start: number): number {
    let lo = 0;
    let hi = this.firsts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.firsts[mid]! <= start) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  private lastOf(i: number): number {
    return this.firsts[i]! + (this.counts[i]! - 1) * this.stepMs;
  }

  private onGrid(start: number): boolean {
    return this.stepMs > 0 && start % this.stepMs === 0;
  }

  has(start: number): boolean {
    if (!this.onGrid(start)) return this.offGrid.has(start);
    const i = this.runAtOrBefore(start);
    if (i < 0) return false;
    const first = this.firsts[i]!;
    if (start === first) return true;
    return this.stepMs > 0 && start <= this.lastOf(i) && (start - first) % this.stepMs === 0;
  }

  add(start: number): void {
    if (this.has(start)) return;
    this.listed++;
    if (!this.onGrid(start)) {
      this.offGrid.add(start);
      return;
    }
    const i = this.runAtOrBefore(start);
    const step = this.stepMs;
    const extendsPrev = i >= 0 && step > 0 && start === this.lastOf(i) + step;
    const next = i + 1;
    const joinsNext = next < this.firsts.length && step > 0 && this.firsts[next] === start + step;
    if (extendsPrev && joinsNext) {
      this.counts[i]! += 1 + this.counts[next]!;
      this.firsts.splice(next, 1);
      this.counts.splice(next, 1);
    } else if (extendsPrev) this.counts[i]! += 1;
    else if (joinsNext) {
      this.firsts[next] = start;
      this.counts[next]! += 1;
    } else {
      this.firsts.splice(next, 0, start);
      this.counts.splice(next, 0, 1);
    }
  }

  /** Forgets every start below `floor` (they count as closed by the floor from now on). */
  prune(floor: number): void {
    for (const s of this.offGrid) {
      if (s >= floor) continue;
      this.offGrid.delete(s);
      this.listed--;
    }
    while (this.firsts.length > 0 && this.lastOf(0) < floor) {
      this.listed -= this.counts[0]!;
      this.firsts.shift();
      this.counts.shift();
    }
    if (this.firsts.length > 0 && this.firsts[0]! < floor && this.stepMs > 0) {
      const k = Math.ceil((floor - this.firsts[0]!) / this.stepMs);
      this.firsts[0]! += k * this.stepMs;
      this.counts[0]! -= k;
      this.listed -= k;
    }
  }

  runs(): [number, number][] {
    return [...this.firsts.map((f, i): [number, number] => [f, this.counts[i]!]), ...[...this.offGrid].map((s): [number, number] => [s, 1])];
  }
}
