/**
 * Watches the config file and every file it references (users file, TLS certificate and key, …) and
 * asks for a reload when any of them changes.
 *
 * Polling, not fs.watch: Kubernetes updates a mounted ConfigMap or Secret by writing a new timestamped
 * directory and swapping the `..data` symlink, so the watched path never changes as a file — the target
 * of its symlink chain does. stat() follows symlinks, so (device, inode, size, mtime, ctime) of each path
 * changes when the swap happens, and equally when an editor rewrites a file in place. A few stat() calls
 * per interval cost nothing.
 *
 * A change is acted on once two consecutive polls agree (the files have settled), so a file caught
 * half-written by a non-atomic writer is not loaded; reloads never overlap.
 */
import { stat } from 'node:fs/promises';

export interface WatchOptions {
  /** The paths to watch; asked again after every reload (the set can change with the config). */
  files: () => readonly string[];
  intervalMs: number;
  onChange: () => Promise<void>;
}

async function signature(files: readonly string[]): Promise<string> {
  const parts = await Promise.all(
    files.map(async (f) => {
      try {
        const s = await stat(f);
        return `${f}|${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      } catch (err) {
        return `${f}|${(err as NodeJS.ErrnoException).code ?? 'error'}`;
      }
    }),
  );
  return parts.join('\n');
}

export class ConfigWatcher {
  private timer: NodeJS.Timeout | undefined;
  private baseline = '';
  private pending: string | undefined;
  private busy = false;

  constructor(private readonly opts: WatchOptions) {}

  async start(): Promise<void> {
    this.baseline = await signature(this.opts.files());
    this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Forget what was seen and take the files as they are now as the new baseline. */
  async rebase(): Promise<void> {
    this.baseline = await signature(this.opts.files());
    this.pending = undefined;
  }

  private schedule(): void {
    this.timer = setTimeout(() => void this.tick(), this.opts.intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = await signature(this.opts.files());
      if (now === this.baseline) {
        this.pending = undefined;
      } else if (this.pending !== now) {
        this.pending = now; // changed: wait one more interval for the files to settle
      } else {
        this.pending = undefined;
        await this.opts.onChange();
        await this.rebase();
      }
    } finally {
      this.busy = false;
      if (this.timer) this.schedule();
    }
  }
}
