/**
 * The on-disk format of one queued message (pure: encode and decode, no I/O).
 *
 *   MAILFLEET-SPOOL 1\n          magic and format version
 *   {"mailFrom":…}\n              the envelope, one JSON line
 *   <body bytes>                  the message exactly as received, with the relay's trace headers
 *   \nMFEND <len:16 hex> <crc32:8 hex>\n     the end record (TRAILER_LENGTH bytes)
 *
 * Invariant (Postfix's rule): a file without a valid end record was never acknowledged and is never
 * delivered. The end record's body length must agree with the file size, and its CRC-32 covers the
 * body so damage is detected when the body is read back for delivery.
 */
import { envelopeProblem, type Envelope } from './envelope.js';

export const MAGIC = 'MAILFLEET-SPOOL 1\n';
const TRAILER_PREFIX = '\nMFEND ';
/** "\nMFEND " + 16 hex + " " + 8 hex + "\n" */
export const TRAILER_LENGTH = TRAILER_PREFIX.length + 16 + 1 + 8 + 1;
/** Envelopes are small; a longer header line means the file is damaged. */
export const MAX_HEADER_BYTES = 1024 * 1024;

export function encodeHeader(envelope: Envelope): Buffer {
  return Buffer.from(MAGIC + JSON.stringify(envelope) + '\n', 'utf8');
}

export function encodeTrailer(bodyLength: number, crc: number): Buffer {
  const len = bodyLength.toString(16).padStart(16, '0');
  const sum = (crc >>> 0).toString(16).padStart(8, '0');
  return Buffer.from(`${TRAILER_PREFIX}${len} ${sum}\n`, 'latin1');
}

export interface Trailer {
  bodyLength: number;
  crc: number;
}

/** Decodes an end record; undefined when the bytes are not one (the file is half-written). */
export function decodeTrailer(bytes: Buffer): Trailer | undefined {
  if (bytes.length !== TRAILER_LENGTH) return undefined;
  const m = /^\nMFEND ([0-9a-f]{16}) ([0-9a-f]{8})\n$/.exec(bytes.toString('latin1'));
  if (!m) return undefined;
  return { bodyLength: parseInt(m[1]!, 16), crc: parseInt(m[2]!, 16) };
}

export type HeaderResult = { envelope: Envelope; bodyOffset: number } | { problem: string };

/** Decodes the magic line and envelope from the first bytes of a file. */
export function decodeHeader(head: Buffer): HeaderResult {
  if (head.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) return { problem: 'bad magic line' };
  const end = head.indexOf(0x0a, MAGIC.length);
  if (end < 0) return { problem: 'envelope line not terminated' };
  let envelope: unknown;
  try {
    envelope = JSON.parse(head.subarray(MAGIC.length, end).toString('utf8'));
  } catch {
    return { problem: 'envelope is not JSON' };
  }
  const problem = envelopeProblem(envelope);
  if (problem) return { problem };
  return { envelope: envelope as Envelope, bodyOffset: end + 1 };
}
