/**
 * Hostile SMTP streams for property-based tests (fast-check), and the checks every answer must pass.
 * Used at the adapter/session seam (test/unit/relay/session-fuzz.test.ts) and against the relay as a
 * process (test/integration/fuzz.test.ts).
 *
 *   fc.assert(fc.asyncProperty(smtpStream(), async (s) => { ... checkReplies(output) ... }), FUZZ)
 *
 * A stream is a list of chunks (bytes as latin1 strings, so any byte can appear) written one after the
 * other, then optionally a FIN. Commands come from a grammar of what the relay understands (valid and
 * nearly valid), random printable garbage, and mutations of both (a byte inserted, dropped or replaced,
 * bare CR/LF/NUL, non-UTF-8 bytes, a line cut short); messages carry dot lines, smuggling sequences and
 * stray control bytes. Chunks are cut at random places, so a command or the final dot can straddle two.
 * Some streams open with a PROXY protocol header (v1 or v2), which a client that is not a trusted proxy
 * must never get past (relay/smtp/connection.ts, 6).
 */
import fc from 'fast-check';

/** Bounded runs: a fixed count and seed (printed with the counterexample on failure). */
export function fuzzParams(numRuns: number): fc.Parameters<unknown> {
  const seed = Number(process.env.MAILFLEET_FUZZ_SEED ?? 20261201);
  return { numRuns, seed, verbose: fc.VerbosityLevel.Verbose };
}

const domains = [
  'mx.test',
  'example.com',
  'nowhere.test',
  'MX.TEST',
  'xn--bcher-kva.example',
  'bücher.example',
];
const locals = ['app', 'r', 'DUP', 'dup', 'jörg', 'a.b', '"quoted"', '', 'x'.repeat(70), 'j\xF6rg'];

const address = fc.oneof(
  fc.tuple(fc.constantFrom(...locals), fc.constantFrom(...domains)).map(([l, d]) => `${l}@${d}`),
  fc.constantFrom('', 'postmaster', 'no-domain', 'a@[127.0.0.1]', '@relay.test:a@mx.test', 'a@@b'),
);

const mailParam = fc.constantFrom(
  'SIZE=100',
  'SIZE=99999999999',
  'SIZE=abc',
  'BODY=8BITMIME',
  'BODY=7BIT',
  'BODY=BINARYMIME',
  'SMTPUTF8',
  'SMTPUTF8=yes',
  'RET=FULL',
  'ENVID=abc+2Bdef',
  'AUTH=<>',
  'REQUIRETLS',
  'FOO=bar',
  'X=\xF6',
);
const rcptParam = fc.constantFrom('NOTIFY=SUCCESS', 'NOTIFY=NEVER,DELAY', 'ORCPT=rfc822;a@b.c', 'FOO');

/** One command line without its line end. */
export const commandLine: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom('EHLO client.test', 'HELO client.test', 'EHLO', 'EHLO [127.0.0.1]'),
  },
  {
    weight: 5,
    arbitrary: fc
      .tuple(address, fc.array(mailParam, { maxLength: 3 }))
      .map(([a, p]) => [`MAIL FROM:<${a}>`, ...p].join(' ')),
  },
  {
    weight: 6,
    arbitrary: fc
      .tuple(address, fc.array(rcptParam, { maxLength: 1 }))
      .map(([a, p]) => [`RCPT TO:<${a}>`, ...p].join(' ')),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'RSET',
      'NOOP',
      'VRFY postmaster',
      'VRFY',
      'EXPN staff',
      'HELP',
      'QUIT',
      'STARTTLS',
      'AUTH PLAIN AGFsaWNlAHdyb25n',
      'AUTH LOGIN',
      'AUTH CRAM-MD5',
      'BDAT 10 LAST',
      'GET / HTTP/1.1',
      'MAIL FROM:a@example.com',
      'RCPT TO:<r@mx.test',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }) },
);

/** A message body: lines with dot-stuffing traps, smuggling sequences, stray bytes. */
const bodyLine = fc.oneof(
  fc.constantFrom(
    'Subject: fuzz',
    'X-A: a\rX-B: b',
    'From: <app@example.com>',
    '',
    '.',
    '..',
    '.leading dot',
    'bare\nlf',
    'nul\0byte',
    '\n.\nMAIL FROM:<smuggled@example.com>',
    '\r.\rRSET',
    '\xF6\xFF 8-bit',
    'x'.repeat(1200),
  ),
  fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/\r\n\.\r\n/g, '')),
);

const body = fc.array(bodyLine, { maxLength: 8 }).map((lines) => `${lines.join('\r\n')}\r\n.\r\n`);

/** One item of a session: a command, DATA with a message and its final dot, or a whole transaction. */
const sessionItem = fc.oneof(
  { weight: 8, arbitrary: commandLine.map((c) => `${c}\r\n`) },
  { weight: 2, arbitrary: body.map((b) => `DATA\r\n${b}`) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom('app@example.com', 'jörg@example.com'),
        fc.constantFrom('', ' SMTPUTF8 BODY=8BITMIME'),
        body,
      )
      .map(([from, params, b]) => `MAIL FROM:<${from}>${params}\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n${b}`),
  },
);

/** What a load balancer would send first: PROXY v1 and v2 headers (latin1), and one cut short. */
export const proxyHeaderText = fc.constantFrom(
  'PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n',
  'PROXY UNKNOWN\r\n',
  'PROXY TCP6 ::1 ::1 40000 25\r\n',
  // v2, PROXY command, TCP over IPv4, 127.0.0.9:4000 -> 127.0.0.1:25
  '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x09\x7f\x00\x00\x01\x0f\xa0\x00\x19',
  'PROXY TCP4 127.0.0.9',
);

/** A byte-level mutation of a text: insert, drop or replace one byte. */
function mutate(text: string): fc.Arbitrary<string> {
  const special = fc.constantFrom('\r', '\n', '\0', '\xF6', '\xFF', ' ', ':', '<', '>', '.', '\r\n.\r\n');
  return fc
    .tuple(fc.nat({ max: Math.max(0, text.length) }), fc.constantFrom('insert', 'drop', 'replace'), special)
    .map(([at, how, b]) =>
      how === 'insert'
        ? text.slice(0, at) + b + text.slice(at)
        : how === 'drop'
          ? text.slice(0, at) + text.slice(at + 1)
          : text.slice(0, at) + b + text.slice(at + 1),
    );
}

export interface SmtpStream {
  /** Written in order; each chunk as latin1 bytes. */
  chunks: string[];
  /** Half-close (FIN) after the last chunk; otherwise QUIT is appended and read to the end. */
  fin: boolean;
}

/** Cuts `text` into pieces at the given fractions. */
function cut(text: string, at: number[]): string[] {
  const points = [...new Set(at.map((f) => Math.floor(f * text.length)))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) out.push(text.slice(prev, p));
    prev = Math.max(prev, p);
  }
  if (prev < text.length) out.push(text.slice(prev));
  return out;
}

/**
 * Streams: a session of items (the first usually an EHLO, now and then a PROXY header before it), some
 * mutated, cut into chunks.
 */
export function smtpStream(opts: { maxItems?: number } = {}): fc.Arbitrary<SmtpStream> {
  const items = fc.array(sessionItem, { minLength: 1, maxLength: opts.maxItems ?? 12 });
  const start = fc.oneof(
    { weight: 4, arbitrary: fc.constant('EHLO client.test\r\n') },
    { weight: 1, arbitrary: fc.constant('') },
    { weight: 1, arbitrary: proxyHeaderText.map((h) => `${h}EHLO client.test\r\n`) },
  );
  const text = fc
    .tuple(start, items)
    .map(([first, list]) => first + list.join(''))
    .chain((t) => fc.oneof({ weight: 3, arbitrary: fc.constant(t) }, { weight: 2, arbitrary: mutate(t) }));
  return fc
    .tuple(text, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), fc.boolean())
    .map(([t, at, fin]) => ({ chunks: cut(t, at), fin }));
}

export interface ParsedReply {
  code: number;
  lines: string[];
}

/**
 * Splits what the server wrote into replies and lists every way it breaks RFC 5321 §4.2 (3-digit code,
 * "-" on every line but the last, one code per reply, CRLF after every line) or the relay's promise of
 * an enhanced status code (RFC 2034) on every reply but the greeting, EHLO/HELO's, 334 and 354.
 */
export function checkReplies(output: string): { replies: ParsedReply[]; problems: string[] } {
  const problems: string[] = [];
  const replies: ParsedReply[] = [];
  if (output !== '' && !output.endsWith('\r\n'))
    problems.push(`output does not end in CRLF: ${JSON.stringify(output.slice(-80))}`);
  const lines = output.split('\r\n');
  lines.pop();
  let current: string[] = [];
  let greeting = true;
  let afterEhlo = false;
  for (const line of lines) {
    if (/[\r\n]/.test(line)) problems.push(`bare CR or LF inside a reply line: ${JSON.stringify(line)}`);
    const m = /^(\d{3})([ -])(.*)$/.exec(line) ?? /^(\d{3})()$/.exec(line);
    if (!m) {
      problems.push(`not a reply line: ${JSON.stringify(line)}`);
      continue;
    }
    const code = m[1]!;
    if (current.length > 0 && current[0]!.slice(0, 3) !== code)
      problems.push(`code changes inside a multiline reply: ${JSON.stringify([...current, line])}`);
    current.push(line);
    if (m[2] === '-') continue;
    const reply: ParsedReply = { code: Number(code), lines: current.map((l) => l.slice(4)) };
    replies.push(reply);
    const text = reply.lines[reply.lines.length - 1] ?? '';
    const exempt =
      greeting ||
      reply.code === 334 ||
      reply.code === 354 ||
      (reply.code === 250 && reply.lines.length > 1) || // EHLO
      /^[^ ]+ (Hello|Nice to meet you)/.test(reply.lines[0] ?? '') || // HELO/EHLO greeting line
      /^Error: [Ss]yntax: (EHLO|HELO)|^Error: Bad hostname syntax/.test(text);
    if (!exempt) {
      const e = /^([245])\.\d{1,3}\.\d{1,3} /.exec(text);
      if (!e) problems.push(`no enhanced status code: ${JSON.stringify(current.join('\\n'))}`);
      else if (e[1] !== code[0]) problems.push(`enhanced code of another class: ${JSON.stringify(line)}`);
    }
    greeting = false;
    afterEhlo = reply.code === 250 && reply.lines.length > 1;
    current = [];
  }
  void afterEhlo;
  if (current.length > 0) problems.push(`multiline reply never finished: ${JSON.stringify(current)}`);
  return { replies, problems };
}

/** Queue IDs the server announced with "250 2.0.0 Ok: queued as ID". */
export function queuedIds(replies: ParsedReply[]): string[] {
  return replies.flatMap((r) => {
    const m = r.code === 250 ? /^2\.0\.0 Ok: queued as (\S+)$/.exec(r.lines[0] ?? '') : null;
    return m ? [m[1]!] : [];
  });
}
