/**
 * What the queue tools see and do (postqueue/postsuper for mailfleet), on the live relay's own spool
 * and queue manager — never on the spool files from a second process, which would race the queue
 * manager and break the one-owner rule of the spool lock.
 *
 *   list            every message: ID, size, arrival, sender, state (active, deferred, ready),
 *                   attempts, next attempt, and per recipient its status and last reply
 *   show ID         the same for one message, plus its header section
 *   retry ID|all    make deferred mail due now (persisted)
 *   delete ID       remove a message (refused while it is being delivered: try again in a moment)
 *
 * Reads come from the spool; every change is asked of the queue manager, the one writer of queued
 * messages, which refuses ("active") while the message is attempted or handed off by the drain.
 */
import type { Spool, SpoolEntry } from '../spool/spool.js';
import { readHeaders } from './bounce.js';
import type { DeleteResult, QueueManager } from './queue-manager.js';

export interface QueueRecipient {
  address: string;
  status: 'pending' | 'delivered' | 'failed';
  lastReply?: string;
}

export interface QueueItem {
  id: string;
  size: number;
  /** Acceptance time, ISO 8601. */
  arrivalTime: string;
  /** Envelope sender; '' is the null sender (a bounce). */
  sender: string;
  state: 'active' | 'deferred' | 'ready';
  attempts: number;
  nextAttemptAt?: string;
  lastError?: string;
  recipients: QueueRecipient[];
}

export type { DeleteResult };

export class QueueOps {
  constructor(
    private readonly spool: Spool,
    private readonly queue: Pick<QueueManager, 'isActive' | 'retryNow' | 'retryAll' | 'delete'>,
    private readonly now: () => number = Date.now,
  ) {}

  list(): QueueItem[] {
    return [...this.spool.entries()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((e) => this.item(e));
  }

  async show(id: string): Promise<(QueueItem & { headers: string }) | undefined> {
    const entry = this.spool.get(id);
    if (!entry) return undefined;
    let headers: string;
    try {
      headers = await readHeaders(this.spool, id);
    } catch (err) {
      headers = `(unreadable: ${(err as Error).message})`;
    }
    return { ...this.item(entry), headers };
  }

  retry(id: string): ReturnType<QueueManager['retryNow']> {
    return this.queue.retryNow(id);
  }

  retryAll(): Promise<number> {
    return this.queue.retryAll();
  }

  delete(id: string): Promise<DeleteResult> {
    return this.queue.delete(id);
  }

  private item(e: SpoolEntry): QueueItem {
    const s = e.state;
    const next = s?.nextAttemptAt ?? 0;
    const state = this.queue.isActive(e.id) ? 'active' : next > this.now() ? 'deferred' : 'ready';
    return {
      id: e.id,
      size: e.size,
      arrivalTime: new Date(e.envelope.receivedAt).toISOString(),
      sender: e.envelope.mailFrom,
      state,
      attempts: s?.attempts ?? 0,
      ...(next > 0 ? { nextAttemptAt: new Date(next).toISOString() } : {}),
      ...(s?.lastError ? { lastError: s.lastError } : {}),
      recipients: [...new Set(e.envelope.recipients)].map((address) => {
        const r = s?.recipients[address];
        return {
          address,
          status: r?.status ?? 'pending',
          ...(r?.lastReply ? { lastReply: r.lastReply } : {}),
        };
      }),
    };
  }
}
