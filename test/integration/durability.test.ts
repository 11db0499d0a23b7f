/**
 * "250 means on stable storage", checked the way a power cut would find out. Killing the relay (the
 * crash tests) leaves the page cache intact, so those tests pass with every fsync removed; this one
 * does not. The relay runs under strace while real clients submit messages over real sockets, and the
 * recorded system calls must show, for every message a client was told 250, the spool's invariants
 * (relay/spool/spool.ts and journal.ts, ADR 2, ADR 36 and ADR 42) in this order. A message that fits in
 * one write (64 KiB) goes to the journal:
 *
 *   openat(journal/S, O_CREAT|O_EXCL) = J  the segment, once per segment
 *   fsync(journal/) = 0                    after that: the segment's directory entry is durable
 *   pwritev(J, "MFJ1 ID …")                the record (frame line, then the message)
 *   fdatasync(J) = 0                       one that began after the write (group commit)
 *   write(client socket, "250 2.0.0 Ok: queued as ID")   only now; matched by the client's port
 *
 * A longer one gets a file of its own:
 *
 *   openat(queue/ID, O_CREAT|O_EXCL) = F   the file is created in place (no rename: a file without its
 *   writes to F                            end record is half-written and swept at start)
 *   fdatasync(F) = 0                       after the last write
 *   fsync(queue/) = 0                      one that began after F was created (group commit: it may
 *                                          cover many messages, but not one created while it ran)
 *   write(client socket, "250 …")
 *
 * The directories exist durably before the first 250 (each mkdir is followed by an fsync of its parent).
 * Delivery is parked, so every message is deferred once: a journaled one first moves to queue/ID by the
 * second sequence above, and the new delivery state is written to tmp/, fdatasynced, renamed over
 * state/ID, and state/ is fsynced, all before the relay goes on (it logs "message deferred" only after
 * that). Removals are not checked: they become durable with the next directory fsync (or fdatasync of
 * the journal's .done file), and a power cut before it can only bring a delivered message back.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import {
  FILE_WRITES,
  SOCKET_WRITES,
  STRACE_CALLS,
  parseStrace,
  stringArgs,
  succeeded,
  type Syscall,
} from '../helpers/strace.js';

jest.setTimeout(120_000);

const CLIENTS = 10;
const MESSAGES_PER_CLIENT = 4;

interface Acked {
  id: string;
  clientPort: number;
  kib: number;
}

let dns: TestDnsServer;
let relay: RelayProcess;
let dir: string;
let calls: Syscall[];
let spool: string;
const acked: Acked[] = [];

/** A body of about `kib` KiB; bodies over 64 KiB are written in several chunks. */
const body = (n: number, kib: number) =>
  `Subject: durable ${n}\r\n\r\n` + `${'x'.repeat(1022)}\r\n`.repeat(kib) + '.\r\n';

async function submit(client: SmtpClient, n: number): Promise<Acked> {
  for (const [line, code] of [
    ['MAIL FROM:<app@example.com>', 250],
    ['RCPT TO:<rcpt@x.test>', 250],
    ['DATA', 354],
  ] as const) {
    const r = await client.command(line);
    if (r.code !== code) throw new Error(`${line}: ${r.raw}`);
  }
  const kib = [1, 4, 100, 16, 2][n % 5]!;
  client.write(body(n, kib));
  const r = await client.reply();
  const id = /queued as (\S+)/.exec(r.raw)?.[1];
  if (r.code !== 250 || !id) throw new Error(`end of DATA: ${r.raw}`);
  return { id, clientPort: client.localPort, kib };
}

beforeAll(async () => {
  execFileSync('strace', ['-f', '-o', '/dev/null', 'true']); // fails clearly if strace cannot trace here
  dir = await fs.realpath(await fs.mkdtemp(path.join('/tmp', 'mailfleet-durability-')));
  const trace = path.join(dir, 'strace.out');
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
  relay = await startRelay({
    dir,
    // delivery parked (relayConfig): every message is deferred once, so its state is saved
    config: relayConfig({ dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 } }),
    wrap: [
      'strace',
      '-f',
      '-qq',
      '-yy',
      '-s',
      // log lines are written a turn of the event loop at a time (relay/log.ts): up to ~64 KiB a write
      String(256 * 1024),
      '--seccomp-bpf',
      '-e',
      `trace=${STRACE_CALLS}`,
      '-o',
      trace,
    ],
    // libuv may hand file operations to io_uring, which strace cannot see: use its threadpool
    env: { UV_USE_IO_URING: '0' },
    readyTimeoutMs: 60_000,
  });
  spool = await fs.realpath(relay.spoolDir);
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const client = await SmtpClient.connect(relay.ports.relay!);
      try {
        await client.command('EHLO client.test');
        for (let i = 0; i < MESSAGES_PER_CLIENT; i++) acked.push(await submit(client, c * 100 + i));
        await client.command('QUIT');
      } finally {
        client.close();
      }
    }),
  );
  for (const { id } of acked) await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
  await relay.stop();
  calls = parseStrace(await fs.readFile(trace, 'utf8'));
});

afterAll(async () => {
  await relay?.kill();
  await dns?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true }); // the trace is megabytes
});

/** The write of "250 … queued as ID" to the client's socket. */
function ackOf(id: string, clientPort: number): Syscall | undefined {
  return calls.find(
    (c) =>
      SOCKET_WRITES.has(c.name) &&
      c.fd?.path.includes(`:${clientPort}]`) &&
      c.args.includes(`queued as ${id}`),
  );
}

/** The log write that says the message was deferred (one write carries every line of a turn). */
function deferralLogged(id: string): Syscall | undefined {
  return calls.find(
    (c) =>
      c.fd?.fd === 1 &&
      FILE_WRITES.has(c.name) &&
      c.args
        .split('\\n')
        .some((line) => line.includes(`\\"id\\":\\"${id}\\"`) && line.includes('message deferred')),
  );
}

/** What is missing or out of order for one acknowledged message (empty: durable before its 250). */
function acceptProblems(id: string, clientPort: number): string[] {
  const ack = ackOf(id, clientPort);
  if (!ack) return [`no write of "250 … queued as ${id}" on the socket of client port ${clientPort}`];
  const record = calls.find((c) => FILE_WRITES.has(c.name) && c.args.includes(`MFJ1 ${id} `));
  if (record) return journalProblems(id, record, ack);
  return fileProblems(id, ack, '250');
}

/** A journaled message: its record written, then an fdatasync of its segment, then the 250. */
function journalProblems(id: string, record: Syscall, ack: Syscall): string[] {
  const segment = record.fd;
  if (!segment || !segment.path.startsWith(`${spool}/journal/`))
    return [`${id}: its journal record was written to ${segment?.path ?? 'an unknown fd'}`];
  const problems: string[] = [];
  if (record.end > ack.start) problems.push('the 250 was written before its journal record');
  const onSegment = (c: Syscall) => c.fd?.fd === segment.fd && c.fd.path === segment.path;
  const sync = calls.find(
    (c) =>
      (c.name === 'fdatasync' || c.name === 'fsync') && onSegment(c) && c.start > record.end && c.ret === '0',
  );
  if (!sync) problems.push('no fdatasync of the journal segment after its record was written');
  else if (sync.end > ack.start) problems.push("the 250 was written before the segment's fdatasync returned");
  const create = calls.find(
    (c) => c.name === 'openat' && c.opened?.path === segment.path && /O_CREAT/.test(c.args),
  );
  const dirSync =
    create &&
    calls.find(
      (c) =>
        c.name === 'fsync' &&
        c.fd?.path === `${spool}/journal` &&
        c.ret === '0' &&
        c.start > create.end &&
        c.end < ack.start,
    );
  if (!dirSync) problems.push('no fsync of journal/ after its segment was created and before the 250');
  return problems.map((p) => `${id}: ${p}`);
}

/** A message in queue/ID: created, written, fdatasynced and its directory fsynced before `before`. */
function fileProblems(id: string, before: Syscall, what: string): string[] {
  const file = `${spool}/queue/${id}`;
  const ack = before;
  const create = calls.find((c) => c.name === 'openat' && c.opened?.path === file && /O_CREAT/.test(c.args));
  if (!create) return [`${id}: no openat(O_CREAT) of ${file}`];
  const fd = create.opened!.fd;
  const onFile = (c: Syscall) => c.start > create.end && c.fd?.fd === fd && c.fd.path === file;
  const close = calls.find((c) => c.name === 'close' && onFile(c));
  const life = calls.filter((c) => onFile(c) && (!close || c.start <= close.start));
  const writes = life.filter((c) => FILE_WRITES.has(c.name));
  if (writes.length === 0) return [`${id}: nothing was written to ${file}`];
  const problems: string[] = [];
  const lastWrite = Math.max(...writes.map((w) => w.end));
  if (lastWrite > ack.start) problems.push(`the ${what} was written before the file was complete`);
  const sync = life.find(
    (c) => (c.name === 'fdatasync' || c.name === 'fsync') && c.start > lastWrite && c.ret === '0',
  );
  if (!sync) problems.push('no fdatasync/fsync of the file after its last write');
  else if (sync.end > ack.start)
    problems.push(`the ${what} was written before the file's fdatasync returned`);
  const dirSync = calls.find(
    (c) =>
      c.name === 'fsync' &&
      c.fd?.path === `${spool}/queue` &&
      c.ret === '0' &&
      c.start > create.end &&
      c.end < ack.start,
  );
  if (!dirSync)
    problems.push(`no fsync of queue/ that began after the file was created and returned before the ${what}`);
  return problems.map((p) => `${id}: ${p}`);
}

/** The same for the delivery state saved when the message was deferred. */
function stateProblems(id: string): string[] {
  const target = `${spool}/state/${id}`;
  const logged = deferralLogged(id);
  if (!logged) return [`${id}: no "message deferred" log line written`];
  const rename = calls
    .filter((c) => c.name.startsWith('rename') && succeeded(c) && stringArgs(c)[1] === target)
    .filter((c) => c.end < logged.start)
    .pop();
  if (!rename) return [`${id}: no rename into state/ before the deferral was logged`];
  const tmp = stringArgs(rename)[0]!;
  const problems: string[] = [];
  const create = calls.find((c) => c.name === 'openat' && c.opened?.path === tmp && c.end < rename.start);
  const sync =
    create &&
    calls.find(
      (c) =>
        (c.name === 'fdatasync' || c.name === 'fsync') &&
        c.fd?.fd === create.opened!.fd &&
        c.fd.path === tmp &&
        c.start > create.end &&
        c.end < rename.start &&
        c.ret === '0',
    );
  if (!sync) problems.push(`the new state ${tmp} was not fdatasynced before its rename`);
  const dirSync = calls.find(
    (c) =>
      c.name === 'fsync' &&
      c.fd?.path === `${spool}/state` &&
      c.ret === '0' &&
      c.start > rename.end &&
      c.end < logged.start,
  );
  if (!dirSync)
    problems.push('no fsync of state/ that began after the rename and returned before the relay went on');
  return problems.map((p) => `${id}: ${p}`);
}

test('the trace saw every message acknowledged', () => {
  expect(acked).toHaveLength(CLIENTS * MESSAGES_PER_CLIENT);
  expect(calls.length).toBeGreaterThan(100);
});

test('every 250 follows the fdatasync of its journal record or of its own file (and its directory)', () => {
  expect(acked.flatMap((a) => acceptProblems(a.id, a.clientPort))).toEqual([]);
  // both layouts were exercised: bodies up to 64 KiB are journaled, 100 KiB ones are not
  const journaled = (a: Acked) =>
    calls.some((c) => FILE_WRITES.has(c.name) && c.args.includes(`MFJ1 ${a.id} `));
  expect(
    acked
      .filter(journaled)
      .map((a) => a.kib)
      .sort(),
  ).toEqual(
    acked
      .filter((a) => a.kib <= 64)
      .map((a) => a.kib)
      .sort(),
  );
  expect(acked.filter((a) => a.kib > 64).length).toBeGreaterThan(0);
});

test('every message, journaled or not, is in queue/ durably before its deferral is logged', () => {
  const problems = acked.flatMap((a) => {
    const logged = deferralLogged(a.id);
    return logged
      ? fileProblems(a.id, logged, 'deferral log line')
      : [`${a.id}: no "message deferred" log line`];
  });
  expect(problems).toEqual([]);
});

test('the spool directories are durable (parent fsynced after each mkdir) before the first 250', () => {
  const firstAck = Math.min(
    ...calls.filter((c) => SOCKET_WRITES.has(c.name) && c.args.includes('queued as ')).map((c) => c.start),
  );
  const mkdirs = calls.filter(
    (c) => c.name.startsWith('mkdir') && succeeded(c) && stringArgs(c)[0]?.startsWith(spool),
  );
  expect(mkdirs.map((c) => path.relative(spool, stringArgs(c)[0]!)).sort()).toEqual(
    ['', 'corrupt', 'journal', 'queue', 'state', 'tmp'].sort(),
  );
  const unsynced = mkdirs
    .map((m) => stringArgs(m)[0]!)
    .filter((made, i) => {
      const parent = path.dirname(made);
      return !calls.some(
        (c) =>
          c.name === 'fsync' &&
          c.fd?.path === parent &&
          c.ret === '0' &&
          c.start > mkdirs[i]!.end &&
          c.end < firstAck,
      );
    });
  expect(unsynced).toEqual([]);
});

test('a deferral is logged only after its state file and its rename into state/ are durable', () => {
  expect(acked.flatMap((a) => stateProblems(a.id))).toEqual([]);
});
