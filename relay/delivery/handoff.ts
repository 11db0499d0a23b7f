/**
 * Handing a queued message to a peer relay (while draining): the same message, sent over SMTP to the
 * peer's submission port with its original envelope — the null sender included, every recipient still
 * pending — authenticated as the fleet's handoff identity (handoff.username / handoff.passwordFile)
 * after STARTTLS, the peer's certificate verified against handoff.caFile (and, for a peer named by IP
 * address, against the name handoff.serverName).
 *
 * The body goes without this relay's DKIM signature: the peer signs it once itself, with the same
 * domain keys (the fleet shares its configuration).
 *
 * The caller removes the message only after the peer's 250 for every pending recipient; a damaged body
 * rethrows CorruptEntryError (set it aside, never hand it on).
 */
import fs from 'node:fs/promises';
import { isIP } from 'node:net';
import type { HandoffConfig } from '../config/schema.js';
import { CorruptEntryError, type Spool, type SpoolEntry } from '../spool/spool.js';
import { outcomesFromError, outcomesFromInfo, type RecipientOutcome, type SmtpErrorLike } from './replies.js';
import type { SmtpTarget, TransportPool } from './transport.js';

export interface Peer {
  host: string;
  port: number;
}

/** Parses "host:port" or "[ipv6]:port"; throws naming the bad entry. */
export function parsePeer(s: string): Peer {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:\s[\]]+):(\d{1,5})$/.exec(s);
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`peer "${s}" is not host:port`);
  return { host: m[1]!, port };
}

/**
 * The transport target for a peer; the handoff password and CA are read from their files each time. A
 * peer named by IP address is verified against handoff.serverName (when set) instead of its IP.
 */
export async function peerTarget(peer: Peer, handoff: HandoffConfig): Promise<SmtpTarget> {
  const pass = (await fs.readFile(handoff.passwordFile, 'utf8')).replace(/\r?\n$/, '');
  const ca = handoff.caFile ? await fs.readFile(handoff.caFile, 'utf8') : undefined;
  const byIp = isIP(peer.host) !== 0;
  return {
    host: peer.host,
    port: peer.port,
    name: peer.host,
    ...(byIp && handoff.serverName ? { servername: handoff.serverName } : {}),
    tls: 'starttls',
    ...(ca ? { ca } : {}),
    auth: { user: handoff.username, pass },
  };
}

/** Sends `entry` to the peer for `recipients`; one outcome per recipient (delivered = the peer has it). */
export async function handOff(
  transport: Pick<TransportPool, 'send'>,
  target: SmtpTarget,
  spool: Spool,
  entry: SpoolEntry,
  recipients: string[],
): Promise<RecipientOutcome[]> {
  const envelope = {
    from: entry.envelope.mailFrom,
    to: recipients,
    size: entry.size,
    eightBit: entry.envelope.bodyType === '8BITMIME',
  };
  try {
    const info = await transport.send(target, envelope, spool.readBody(entry.id));
    return outcomesFromInfo(recipients, info, target.name);
  } catch (err) {
    if (err instanceof CorruptEntryError) throw err;
    return outcomesFromError(recipients, err as SmtpErrorLike, target.name);
  }
}
