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
import { crc32 } from 'node:zlib';
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

/**
 * The journal (journal.ts) holds records of the same format, each behind a frame line that names the
 * message and says how long its record is:
 *
 *   MFJ1 <id> <record length:8 hex> <crc32 of the line up to here:8 hex>\n
 *   <the message exactly as in a queue file: magic, envelope line, body, end record>
 *
 * The frame's own checksum tells a frame from bytes that happen to look like one (a body can contain
 * "MFJ1 "), so a reader can find the next record after damage.
 */
const FRAME_PREFIX = 'MFJ1 ';
/** Longer than any frame line (IDs are at most 24 characters). */
const MAX_FRAME_BYTES = 64;

export function encodeFrame(id: string, recordLength: number): Buffer {
  const head = `${FRAME_PREFIX}${id} ${recordLength.toString(16).padStart(8, '0')} `;
  return Buffer.from(
    `${head}${(crc32(Buffer.from(head, 'latin1')) >>> 0).toString(16).padStart(8, '0')}\n`,
    'latin1',
  );
}

export type FrameResult =
  | { kind: 'frame'; id: string; recordLength: number; recordOffset: number }
  /** The bytes end inside what may be a frame: a record whose write never completed. */
  | { kind: 'short' }
  | { kind: 'bad' };

/** Decodes the frame line at `at`. */
export function decodeFrame(bytes: Buffer, at: number): FrameResult {
  const window = bytes.subarray(at, at + MAX_FRAME_BYTES);
  const nl = window.indexOf(0x0a);
  if (nl < 0) {
    const prefix = window.subarray(0, FRAME_PREFIX.length).toString('latin1');
    return window.length < MAX_FRAME_BYTES && FRAME_PREFIX.startsWith(prefix)
      ? { kind: 'short' }
      : { kind: 'bad' };
  }
  const m = /^MFJ1 ([0-9A-Z]{9,24}) ([0-9a-f]{8}) ([0-9a-f]{8})$/.exec(
    window.subarray(0, nl).toString('latin1'),
  );
  if (!m) return { kind: 'bad' };
  const head = window.subarray(0, nl - 8);
  if (crc32(head) >>> 0 !== parseInt(m[3]!, 16)) return { kind: 'bad' };
  return { kind: 'frame', id: m[1]!, recordLength: parseInt(m[2]!, 16), recordOffset: at + nl + 1 };
}

/** A record read back from a journal segment: where its message bytes are, and what they hold. */
export type JournalRecord =
  | {
      kind: 'ok';
      id: string;
      /** Offset and length of the message bytes (what a queue file would hold) in the segment. */
      offset: number;
      length: number;
      envelope: Envelope;
      size: number;
      bodyOffset: number;
      crc: number;
    }
  | { kind: 'corrupt'; id: string; offset: number; length: number; reason: string };

export interface ParsedSegment {
  records: JournalRecord[];
  /** Stretches that hold no readable frame (damage), each to be set aside, never dropped silently. */
  damaged: { offset: number; length: number }[];
  /** Where a record whose write never completed begins: it was never acknowledged. */
  tornAt?: number;
}

/** Reads every record of a journal segment (pure: the caller reads the file). */
export function parseSegment(bytes: Buffer): ParsedSegment {
  const out: ParsedSegment = { records: [], damaged: [] };
  let at = 0;
  while (at < bytes.length) {
    const frame = decodeFrame(bytes, at);
    if (frame.kind === 'short') {
      out.tornAt = at;
      break;
    }
    if (frame.kind === 'bad') {
      const next = nextFrame(bytes, at + 1);
      // after the last record a failed write may leave the middle of a record: nothing follows it
      if (next < 0) {
        out.tornAt = at;
        break;
      }
      out.damaged.push({ offset: at, length: next - at });
      at = next;
      continue;
    }
    const end = frame.recordOffset + frame.recordLength;
    if (end > bytes.length) {
      out.tornAt = at;
      break;
    }
    out.records.push(decodeRecord(frame.id, bytes, frame.recordOffset, frame.recordLength));
    at = end;
  }
  return out;
}

function nextFrame(bytes: Buffer, from: number): number {
  for (
    let at = bytes.indexOf(FRAME_PREFIX, from, 'latin1');
    at >= 0;
    at = bytes.indexOf(FRAME_PREFIX, at + 1, 'latin1')
  )
    if (decodeFrame(bytes, at).kind === 'frame') return at;
  return -1;
}

function decodeRecord(id: string, bytes: Buffer, offset: number, length: number): JournalRecord {
  const corrupt = (reason: string): JournalRecord => ({ kind: 'corrupt', id, offset, length, reason });
  const record = bytes.subarray(offset, offset + length);
  if (length < TRAILER_LENGTH) return corrupt('journal record shorter than an end record');
  const trailer = decodeTrailer(record.subarray(length - TRAILER_LENGTH));
  if (!trailer) return corrupt('journal record without an end record');
  const header = decodeHeader(record.subarray(0, Math.min(MAX_HEADER_BYTES, length - TRAILER_LENGTH)));
  if ('problem' in header) return corrupt(header.problem);
  if (header.bodyOffset + trailer.bodyLength + TRAILER_LENGTH !== length)
    return corrupt(`end record says ${trailer.bodyLength} body bytes, record length disagrees`);
  const body = record.subarray(header.bodyOffset, header.bodyOffset + trailer.bodyLength);
  if (crc32(body) >>> 0 !== trailer.crc) return corrupt('body checksum mismatch');
  return {
    kind: 'ok',
    id,
    offset,
    length,
    envelope: header.envelope,
    size: trailer.bodyLength,
    bodyOffset: header.bodyOffset,
    crc: trailer.crc,
  };
}
