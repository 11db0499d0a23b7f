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
 * - A failure of the body stream always reaches the consumer through its iteration, never as an
 *   uncaught 'error' event, however early it happens.
 * - Content: a bare CR (a CR not followed by LF) or a NUL anywhere, header section or body, refuses the
 *   whole message the same way (BareCrError / NulError at the end, 554 5.6.0 after the final "."),
 *   and nothing of it is handed on. The next hop's SMTP client turns a bare CR into CRLF, which would
 *   split one header field into two ("X-A: a\rX-B: b") that this relay never saw; RFC 5322 §2.3 and
 *   RFC 6152 allow CR only in CRLF and no NUL at all. A bare LF is a line end here (the header scan
 *   reads it as one) and leaves as CRLF, so it creates no line the relay did not see: it is accepted.
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
/** A CR not followed by LF at `offset` (client bytes, from the start of DATA). */
export class BareCrError extends Error {
  constructor(readonly offset: number) {
    super(`bare CR at byte ${offset}`);
  }
}
/** A NUL byte at `offset`. */
export class NulError extends Error {
  constructor(readonly offset: number) {
    super(`NUL at byte ${offset}`);
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
  /** Refuse bare CR and NUL (default true); false for a peer relay's hand-off, already accepted once. */
  checkContent?: boolean;
}

/** Counts, limits and prepends. Never errors before its input ends (see the module header). */
export class IntakeTransform extends Transform {
  /** Client bytes seen. */
  received = 0;
  private tooBig = false;
  private headerTooBig = false;
  /** The first bare CR or NUL seen, once one was. */
  private badContent?: BareCrError | NulError;
  /** The previous chunk ended in CR: whether it was bare depends on this chunk's first byte. */
  private crAtEnd = false;
  private scanning = true;
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(private readonly opts: IntakeOptions) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const start = this.received;
    this.received += chunk.length;
    if (this.received > this.opts.maxMessageBytes) {
      this.tooBig = true;
      this.release();
    }
    if (this.tooBig || this.headerTooBig) return cb();
    if (!this.badContent && this.opts.checkContent !== false)
      this.badContent = this.checkContent(chunk, start);
    if (this.badContent) {
      this.release();
      return cb();
    }
    if (!this.scanning) return cb(null, chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const head = this.held.length === 1 ? chunk : Buffer.concat(this.held, this.heldBytes);
    this.held = [head];
    const scan = scanHeaderSection(head);
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
    if (this.badContent) return cb(this.badContent);
    if (this.crAtEnd) return cb(new BareCrError(this.received - 1)); // the message's last byte
    if (this.scanning) {
      const all = Buffer.concat(this.held, this.heldBytes);
      this.held = [all];
      const scan = scanHeaderSection(all, true);
      if (scan.size > this.maxHeaderBytes()) return cb(new HeaderTooBigError(this.maxHeaderBytes()));
      this.emitHeld(scan.fields);
    }
    cb();
  }

  /** The first bare CR or NUL in `chunk`, which starts at client byte `start`. */
  private checkContent(chunk: Buffer, start: number): BareCrError | NulError | undefined {
    if (this.crAtEnd && chunk.length > 0 && chunk[0] !== 0x0a) return new BareCrError(start - 1);
    const nul = chunk.indexOf(0);
    let cr = chunk.indexOf(0x0d);
    while (cr >= 0 && cr < chunk.length - 1 && (nul < 0 || cr < nul)) {
      if (chunk[cr + 1] !== 0x0a) return new BareCrError(start + cr);
      cr = chunk.indexOf(0x0d, cr + 2);
    }
    if (nul >= 0) return new NulError(start + nul);
    this.crAtEnd = chunk.length > 0 && chunk[chunk.length - 1] === 0x0d;
    return undefined;
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
  // The consumer learns of a failure through its iteration, also when the transform failed before it
  // began reading (the spool opens its file first): without a listener that error was uncaught and
  // took the process down (found by test/integration/fuzz.test.ts).
  transform.on('error', () => undefined);
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
