/**
 * When deferred messages wake up: a min-heap of (time, id) with one authoritative wake time per id.
 *
 * The times themselves live in the spool (each message's state.nextAttemptAt), so this is only a cache
 * rebuilt at start (Haraka's lesson: the schedule must survive restarts). Rescheduling an id replaces
 * its time; superseded heap entries are skipped when they surface, so no search is ever needed.
 */
interface Wake {
  at: number;
  id: string;
}

export class WakeHeap {
  private readonly heap: Wake[] = [];
  private readonly current = new Map<string, number>();

  /** Number of ids waiting. */
  get size(): number {
    return this.current.size;
  }

  has(id: string): boolean {
    return this.current.has(id);
  }

  /** Schedules (or reschedules) `id` to wake at `at`. */
  set(id: string, at: number): void {
    this.current.set(id, at);
    this.push({ at, id });
  }

  delete(id: string): void {
    this.current.delete(id);
  }

  /** Earliest wake time, or undefined when nothing waits. */
  peek(): number | undefined {
    this.dropStale();
    return this.heap[0]?.at;
  }

  /** Removes and returns every id due at `now`, earliest first. */
  popDue(now: number): string[] {
    const due: string[] = [];
    for (;;) {
      this.dropStale();
      const top = this.heap[0];
      if (!top || top.at > now) return due;
      this.pop();
      this.current.delete(top.id);
      due.push(top.id);
    }
  }

  private dropStale(): void {
    while (this.heap.length && this.current.get(this.heap[0]!.id) !== this.heap[0]!.at) this.pop();
  }

  private push(w: Wake): void {
    const h = this.heap;
    h.push(w);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= h[i]!.at) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]!.at < h[m]!.at) m = l;
      if (r < h.length && h[r]!.at < h[m]!.at) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}
