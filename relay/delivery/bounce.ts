/**
 * Bounces and delay notices: composes the DSN (dsn.ts) for a message and puts it in the spool, from
 * the null sender to the original envelope sender. Going through the spool makes a notice as durable
 * as any mail and retried like any mail; its null sender means it is never bounced itself.
 *
 * Only the original's header section is read (at most MAX_HEADER_BYTES), never its body.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Envelope } from '../spool/envelope.js';
import type { Spool } from '../spool/spool.js';
import { composeDsn, headerSection, type DsnKind, type DsnRecipient } from './dsn.js';

const MAX_HEADER_BYTES = 64 * 1024;

export interface BounceRequest {
  kind: DsnKind;
  /** Queue ID and envelope of the message being reported on. */
  id: string;
  envelope: Envelope;
  recipients: DsnRecipient[];
  /** The relay's hostname (Reporting-MTA). */
  hostname: string;
  now: number;
}

/** Queues the notice; resolves with its queue ID once it is durable. */
export async function queueDsn(spool: Spool, req: BounceRequest): Promise<string> {
  if (req.envelope.mailFrom === '') throw new Error('refusing to bounce a bounce');
  const originalHeaders = await readHeaders(spool, req.id);
  const stamp = req.now.toString(36);
  const raw = composeDsn({
    kind: req.kind,
    reportingMta: req.hostname,
    queueId: req.id,
    arrivalDate: req.envelope.receivedAt,
    to: req.envelope.mailFrom,
    recipients: req.recipients,
    originalHeaders,
    now: req.now,
    messageId: `<${req.id}.${req.kind}.${stamp}@${req.hostname}>`,
    boundary: `${req.id}.${stamp}.${randomBytes(6).toString('hex')}/${req.hostname}`,
  });
  const envelope: Envelope = {
    mailFrom: '',
    recipients: [req.envelope.mailFrom],
    receivedAt: req.now,
    listener: 'internal',
    client: { address: '' },
    ...(req.envelope.smtputf8 ? { smtputf8: true } : {}),
    ...(/[^\x20-\x7e\r\n\t]/.test(raw) ? { bodyType: '8BITMIME' as const } : {}),
  };
  // A bounce may use the space below the free-space floor: delivery goes on while new mail is refused.
  const { id } = await spool.accept(envelope, Readable.from([Buffer.from(raw, 'utf8')]), {
    useReserve: true,
  });
  return id;
}

/** The original message's header section, read from the spool without reading its body. */
export async function readHeaders(spool: Spool, id: string): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  const body = spool.readBody(id);
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      total += (chunk as Buffer).length;
      const { complete } = headerSection(Buffer.concat(chunks));
      if (complete || total >= MAX_HEADER_BYTES) break;
    }
  } finally {
    body.destroy();
  }
  return headerSection(Buffer.concat(chunks).subarray(0, MAX_HEADER_BYTES)).headers;
}
