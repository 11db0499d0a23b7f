/**
 * The DATA phase: the message stream from smtp-server → size limit and header fix-ups → the spool.
 *
 * Invariants
 * - Memory is bounded whatever the message size: chunks pass straight through; only the header section
 *   is held, up to maxHeaderBytes, until its end is seen.
 * - The size limit counts the client's bytes (after dot-unstuffing, before anything is prepended). Past
 *   it, nothing more is handed on, the rest of the DATA is read and dropped, and the body stream fails
 *   at its end with MessageTooBigError, so the spool discards its partial file and the client gets 552
 *   only after its final "." (a reply in the middle of DATA would be read as garbage by most clients).
 * - Whatever fails (limit, spool, disk), the client's DATA is read to its end before receiveMessage()
 *   settles, so the SMTP reply always follows the client's final ".".
 * - A client that goes away mid-DATA fails the body stream (ClientGoneError), so the spool never
 *   commits a truncated message.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { scanHeaderSection } from './headers.js';

export class MessageTooBigError extends Error {
  constructor(readonly limit: number) {
    super(`message exceeds ${limit} bytes`);
  }
}
export class HeaderTooBigError extends Error {
  constructor(readonly limit: number) {
    super(`header section exceeds ${limit} bytes`);
  }
}
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected before the end of DATA');
  }
}

/** Postfix's header_size_limit is 100 KiB; a little more room for long DKIM/ARC chains. */
export const DEFAULT_MAX_HEADER_BYTES = 256 * 1024;

export interface IntakeOptions {
  maxMessageBytes: number;
  maxHeaderBytes?: number;
  /** Header lines to prepend, given the lower-case names of the fields the message has. */
  prelude: (fields: ReadonlySet<string>) => string;
}

/** Counts, limits and prepends. Never errors before its input ends (see the module header). */
export class IntakeTransform extends Transform {
  /** Client bytes seen. */
  received = 0;
  private tooBig = false;
  private headerTooBig = false;
  private scanning = true;
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(private readonly opts: IntakeOptions) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.received += chunk.length;
    if (this.received > this.opts.maxMessageBytes) {
      this.tooBig = true;
      this.release();
    }
    if (this.tooBig || this.headerTooBig) return cb();
    if (!this.scanning) return cb(null, chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const start = this.held.length === 1 ? chunk : Buffer.concat(this.held, this.heldBytes);
    this.held = [start];
    const scan = scanHeaderSection(start);
    // The section's size decides, whether or not its end arrived in this chunk.
    if (scan.size > this.maxHeaderBytes()) {
      this.headerTooBig = true;
      this.release();
    } else if (scan.complete) {
      this.emitHeld(scan.fields);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.tooBig) return cb(new MessageTooBigError(this.opts.maxMessageBytes));
    if (this.headerTooBig) return cb(new HeaderTooBigError(this.maxHeaderBytes()));
    if (this.scanning) {
      const all = Buffer.concat(this.held, this.heldBytes);
      this.held = [all];
      const scan = scanHeaderSection(all, true);
      if (scan.size > this.maxHeaderBytes()) return cb(new HeaderTooBigError(this.maxHeaderBytes()));
      this.emitHeld(scan.fields);
    }
    cb();
  }

  private maxHeaderBytes(): number {
    return this.opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  }

  private emitHeld(fields: ReadonlySet<string>): void {
    this.scanning = false;
    this.push(Buffer.from(this.opts.prelude(fields), 'utf8'));
    for (const b of this.held) if (b.length > 0) this.push(b);
    this.release();
  }

  private release(): void {
    this.held = [];
    this.heldBytes = 0;
  }
}

/**
 * Runs one DATA phase: pipes `source` (smtp-server's message stream) through `transform` into
 * `accept` (the spool), and settles only after `source` has ended.
 */
export async function receiveMessage<R>(
  source: Readable,
  transform: IntakeTransform,
  accept: (body: AsyncIterable<Buffer>) => Promise<R>,
): Promise<R> {
  const ended = new Promise<void>((resolve) => {
    if (source.readableEnded || source.destroyed) return resolve();
    source.once('end', resolve);
    source.once('close', resolve);
  });
  const gone = (err?: Error) => {
    if (!source.readableEnded) transform.destroy(err ?? new ClientGoneError());
  };
  source.once('error', () => gone(new ClientGoneError()));
  source.once('close', () => gone());
  source.pipe(transform);
  try {
    return await accept(transform);
  } catch (err) {
    source.unpipe(transform);
    if (!source.readableEnded && !source.destroyed) source.resume(); // read the rest of DATA and drop it
    await ended;
    throw err;
  }
}
