import { PassThrough, Readable } from 'node:stream';
import {
  BareCrError,
  ClientGoneError,
  HeaderTooBigError,
  IntakeTransform,
  MessageTooBigError,
  NulError,
  receiveMessage,
} from '../../../relay/intake/receive.js';

const PRELUDE = 'Received: test\r\n';
const transform = (maxMessageBytes = 1024, maxHeaderBytes = 256) =>
  new IntakeTransform({
    maxMessageBytes,
    maxHeaderBytes,
    prelude: (fields) => PRELUDE + (fields.has('date') ? '' : 'Date: added\r\n'),
  });

async function collect(body: AsyncIterable<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const b of body) parts.push(b);
  return Buffer.concat(parts).toString('latin1');
}

function source(chunks: string[]): PassThrough {
  const s = new PassThrough();
  void (async () => {
    for (const c of chunks) {
      s.write(Buffer.from(c, 'latin1'));
      await new Promise((r) => setImmediate(r));
    }
    s.end();
  })();
  return s;
}

describe('DATA intake stream', () => {
  test('prepends trace and fix-up headers, passes the message through byte for byte', async () => {
    const msg = 'Subject: hi\r\nFrom: a@example.com\r\n\r\nline 1\r\n.dot\r\n';
    const out = await receiveMessage(
      source([msg.slice(0, 5), msg.slice(5, 20), msg.slice(20)]),
      transform(),
      collect,
    );
    expect(out).toBe(PRELUDE + 'Date: added\r\n' + msg);
  });

  test('keeps an existing Date; a message of headers only', async () => {
    const msg = 'Date: Mon, 1 Jan 2026 00:00:00 +0000\r\nSubject: x';
    expect(await receiveMessage(source([msg]), transform(), collect)).toBe(PRELUDE + msg);
  });

  test('over the size limit: the rest is read and dropped, the body fails at its end', async () => {
    const src = source(['Subject: x\r\n\r\n', 'a'.repeat(600), 'b'.repeat(600), 'c'.repeat(600)]);
    const t = transform(1024);
    await expect(receiveMessage(src, t, collect)).rejects.toBeInstanceOf(MessageTooBigError);
    expect(src.readableEnded).toBe(true);
    expect(t.received).toBe(1814);
  });

  test('a header section past its bound fails with HeaderTooBigError', async () => {
    const src = source(Array.from({ length: 20 }, (_, i) => `X-H${i}: ${'v'.repeat(40)}\r\n`));
    await expect(receiveMessage(src, transform(100_000, 256), collect)).rejects.toBeInstanceOf(
      HeaderTooBigError,
    );
  });

  test('the header bound holds however the stream is chunked (also when its end is in the last chunk)', async () => {
    const line = `X-Filler: ${'h'.repeat(88)}\r\n`; // 100 bytes
    const message = (lines: number) => line.repeat(lines) + '\r\nbody\r\n';
    for (let trial = 0; trial < 50; trial++) {
      const split = (text: string) => {
        const chunks: string[] = [];
        for (let pos = 0; pos < text.length;) {
          const n = 1 + Math.floor(Math.random() * 400);
          chunks.push(text.slice(pos, pos + n));
          pos += n;
        }
        return chunks;
      };
      // A 400-byte header section against a 300-byte bound is refused; a 300-byte one is not.
      await expect(
        receiveMessage(source(split(message(4))), transform(100_000, 300), collect),
      ).rejects.toBeInstanceOf(HeaderTooBigError);
      await expect(
        receiveMessage(source(split(message(3))), transform(100_000, 300), collect),
      ).resolves.toMatch(/body/);
    }
  });

  test('memory stays bounded for a large message (chunks pass through as they come)', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const total = 64 * 1024 * 256; // 16 MiB
    let sent = 0;
    const src = new Readable({
      read() {
        if (sent === 0) this.push('Subject: big\r\n\r\n');
        if (sent >= total) return void this.push(null);
        sent += chunk.length;
        this.push(chunk);
      },
    });
    let seen = 0;
    let maxBuffered = 0;
    const t = transform(32 * 1024 * 1024);
    await receiveMessage(src, t, async (body) => {
      for await (const b of body) {
        seen += b.length;
        maxBuffered = Math.max(maxBuffered, t.readableLength + t.writableLength);
      }
    });
    expect(seen).toBeGreaterThan(total);
    expect(maxBuffered).toBeLessThan(1024 * 1024);
  });

  test('when the spool fails early, the rest of DATA is still read before the error surfaces', async () => {
    const src = source(['Subject: x\r\n\r\n', 'body\r\n', 'more\r\n']);
    await expect(
      receiveMessage(src, transform(), async () => {
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(src.readableEnded).toBe(true);
  });

  test('a client that leaves mid-DATA fails the body (nothing half-written is committed)', async () => {
    const src = new PassThrough();
    src.write('Subject: x\r\n\r\npartial');
    setTimeout(() => src.destroy(new Error('ECONNRESET')), 10);
    await expect(receiveMessage(src, transform(), collect)).rejects.toBeInstanceOf(ClientGoneError);
  });

  describe('bare CR and NUL: the same rule in the header section and the body', () => {
    /** Every way of cutting `text` into two or three chunks (so a CR/LF pair straddles a boundary). */
    function splits(text: string): string[][] {
      const out: string[][] = [[text]];
      for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
      for (let i = 1; i < text.length - 1; i += 3)
        out.push([text.slice(0, i), text.slice(i, i + 1), text.slice(i + 1)]);
      return out;
    }

    test.each([
      ['a bare CR in a header', 'X-A: a\rX-B: b\r\nSubject: s\r\n\r\nbody\r\n', BareCrError, 6],
      ['a bare CR in the body', 'Subject: s\r\n\r\nline\rmore\r\n', BareCrError, 18],
      ['CR CR LF', 'Subject: s\r\n\r\nline\r\r\n', BareCrError, 18],
      ['a NUL in a header', 'X-A: a\u0000b\r\n\r\nbody\r\n', NulError, 6],
      ['a NUL in the body', 'Subject: s\r\n\r\nbo\u0000dy\r\n', NulError, 16],
    ])('%s is refused at the end, wherever the chunks are cut', async (_what, msg, kind, offset) => {
      for (const chunks of splits(msg)) {
        const t = transform();
        const handed: string[] = [];
        const err = await receiveMessage(source(chunks), t, async (body) => {
          for await (const b of body) handed.push(b.toString('latin1'));
        }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(kind);
        expect((err as BareCrError).offset).toBe(offset);
      }
    });

    test('CRLF and bare LF pass, byte for byte, wherever the chunks are cut', async () => {
      const msg = 'Subject: s\r\nX-Lf: a\nX-B: b\r\n\r\nline\r\nunix line\n\r\n';
      for (const chunks of splits(msg))
        expect(await receiveMessage(source(chunks), transform(), collect)).toBe(
          PRELUDE + 'Date: added\r\n' + msg,
        );
    });

    test('a hand-off from a peer relay (checkContent false) keeps its bytes as they are', async () => {
      const msg = 'X-A: a\rX-B: b\r\n\r\nbo\u0000dy\r\n';
      const t = new IntakeTransform({ maxMessageBytes: 1024, prelude: () => PRELUDE, checkContent: false });
      expect(await receiveMessage(source([msg]), t, collect)).toBe(PRELUDE + msg);
    });

    test('8-bit bytes are content, not a reason to refuse', async () => {
      const msg = 'Subject: caf\u00e9\r\n\r\n\u00ff\u00fe\u0080\r\n';
      expect(await receiveMessage(source([msg]), transform(), collect)).toBe(
        PRELUDE + 'Date: added\r\n' + msg,
      );
    });

    test('refused before the spool starts reading (it opens its file first): an error for the spool, no crash', async () => {
      for (const [msg, kind] of [
        ['X-A: a\rX-B: b\r\n\r\nbody\r\n', BareCrError],
        ['Subject: s\r\n\r\n' + 'z'.repeat(2000), MessageTooBigError],
      ] as const) {
        const src = new PassThrough();
        src.end(Buffer.from(msg, 'latin1'));
        const late = async (body: AsyncIterable<Buffer>) => {
          await new Promise((r) => setTimeout(r, 20)); // fs.open of the queue file
          return collect(body);
        };
        await expect(receiveMessage(src, transform(1024), late)).rejects.toBeInstanceOf(kind);
      }
    });

    test('over the size limit as well: the size decides, as before', async () => {
      const src = source(['Subject: x\r\n\r\n\u0000', 'a'.repeat(2000)]);
      await expect(receiveMessage(src, transform(1024), collect)).rejects.toBeInstanceOf(MessageTooBigError);
    });
  });
});
