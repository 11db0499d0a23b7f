/**
 * The envelope of a queued message: who it is from and to, and how it arrived. Written into the
 * message's spool file ahead of the body, and never changed afterwards; per-recipient delivery progress
 * lives in the separate delivery state (see spool.ts).
 */
import type { ListenerName } from '../config/schema.js';

export interface Envelope {
  /** Envelope sender (MAIL FROM). '' is the null sender (bounces). */
  mailFrom: string;
  /** Envelope recipients (RCPT TO), at least one. */
  recipients: string[];
  /** When the message was accepted (end of DATA), epoch milliseconds. */
  receivedAt: number;
  /** Listener the message arrived on; 'internal' for mail the relay composed itself (DSNs). */
  listener: ListenerName | 'internal';
  /** The client: its address ('' for internal) and EHLO/HELO name. */
  client: { address: string; helo?: string };
  /** AUTH identity, when the client authenticated. */
  authUser?: string;
  /** The client asked for SMTPUTF8 (RFC 6531). */
  smtputf8?: boolean;
  /** BODY= parameter of MAIL FROM. */
  bodyType?: '7BIT' | '8BITMIME';
}

/** Structural check of an envelope read back from disk; returns what is wrong, or undefined. */
export function envelopeProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'envelope is not an object';
  const e = value as Record<string, unknown>;
  if (typeof e.mailFrom !== 'string') return 'mailFrom is not a string';
  if (!Array.isArray(e.recipients) || e.recipients.length === 0) return 'recipients is empty';
  if (!e.recipients.every((r) => typeof r === 'string' && r.length > 0)) return 'a recipient is not a string';
  if (typeof e.receivedAt !== 'number' || !Number.isFinite(e.receivedAt)) return 'receivedAt is not a number';
  if (typeof e.listener !== 'string') return 'listener is not a string';
  if (typeof e.client !== 'object' || e.client === null) return 'client is missing';
  return undefined;
}
