/**
 * Group commit for an fsync. Creating or removing a file is durable only once its directory is
 * fsynced, and a record appended to the journal once its segment is fdatasynced; with many sessions
 * committing at once, one sync covers every change made before it started. A caller whose change may have come after the running fsync began joins the next one, so
 * nobody is told "durable" early.
 *
 * soon() is for changes nobody waits on (removals): they ride on the next fsync a caller asks for, or
 * one starts after a short delay if none does.
 */
/** What is synced: a directory's FileHandle (fsync), or a file's fdatasync. */
interface Syncable {
  sync(): Promise<void>;
}

export class GroupSync {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** fsyncs performed (for tests and benchmarks: how many changes each one covered). */
  syncs = 0;

  constructor(private readonly handle: Syncable) {}

  /** Resolves once an fsync that started after this call has completed. */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    const after = () => {
      this.queued = undefined;
      return this.start();
    };
    this.queued = this.running.then(after, after);
    return this.queued;
  }

  /** Makes changes made so far durable by the next fsync, at the latest after `ms`. Never rejects. */
  soon(ms: number): void {
    if (this.timer) return;
    const before = this.syncs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // an fsync that started since covers the changes
      if (this.syncs === before) this.sync().catch(() => undefined);
    }, ms);
    this.timer.unref();
  }

  /** Cancels a pending soon() (the caller syncs or gives up the handle itself). */
  cancelSoon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private start(): Promise<void> {
    this.syncs++;
    const p: Promise<void> = this.handle.sync().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }
}
