/**
 * A downstream SMTP server for delivery tests, run as its own process and steered on command:
 *
 *   node test/helpers/smtp-downstream-server.ts OPTIONS.json
 *
 * Built on smtp-server. Node strips the types of this file itself, so it uses erasable TypeScript only
 * and imports nothing but node built-ins and packages. Start it through test/helpers/smtp-downstream.ts.
 *
 * OPTIONS (JSON file): { host?: string (default 127.0.0.1), port?: number (0: free), name?: string, saveDir?: string (raw messages go
 * there as <n>.eml), tls?: { key, cert } (PEM text: STARTTLS offered), secure?: boolean (implicit TLS),
 * auth?: { user, pass } (AUTH PLAIN/LOGIN required, only after TLS when TLS is configured) }
 *
 * Behaviour (stdin, one JSON object per line: {"seq": n, "rules": Rules, "dropConnections"?: true};
 * answered {"event":"ok","seq":n}; dropConnections closes every open connection, e.g. pooled ones):
 *   connect: "accept" (default) | "drop" (close before the greeting) | "stall" (never greet) | reply text
 *            such as "421 4.3.2 busy" (greet with it and close)
 *   mail:    reply text to every MAIL FROM (default: accept)
 *   rcpt:    { "<address>": reply text } per recipient; rcptDefault: reply text for the others
 *   data:    reply text for the message ("451 4.3.0 later", "554 5.6.0 no"), "drop" (close the connection
 *            after the body, before replying) or "stall" (never reply)
 *   dataDelayMs: accept messages only after this delay (a slow server)
 *
 * Output (stdout, one JSON object per line): {"event":"ready","port"} once listening; {"event":"connect",
 * "secure"} per session; {"event":"auth","user"}; {"event":"data","open"} when a message's body starts
 * (open: bodies being received or awaiting their reply, this one included); {"event":"message","n",
 * "from","to":[…],"size","ehlo","secure","user","testId","messageId","file","session"} per accepted
 * message (testId: its X-Test-Id header; session: the connection's id).
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';

interface Rules {
  connect?: string;
  mail?: string;
  rcpt?: Record<string, string>;
  rcptDefault?: string;
  data?: string;
  dataDelayMs?: number;
}
interface Options {
  host?: string;
  port?: number;
  name?: string;
  saveDir?: string;
  tls?: { key: string; cert: string };
  secure?: boolean;
  auth?: { user: string; pass: string };
}

const options = JSON.parse(fs.readFileSync(process.argv[2] as string, 'utf8')) as Options;
let rules: Rules = {};
let count = 0;
const sockets = new Map<string, Socket>();
/** Sessions between the start of a body and its reply (or the session's end). */
const inData = new Set<string>();

function emit(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** An smtp-server error carrying the reply "CODE text". */
function reply(text: string): Error {
  const m = /^(\d{3})[ -]?(.*)$/.exec(text.trim());
  return Object.assign(new Error(m ? m[2] : text), { responseCode: m ? Number(m[1]) : 451 });
}

const socketKey = (s: { remoteAddress?: string; remotePort?: number }) =>
  `${s.remoteAddress}:${s.remotePort}`;

function header(raw: Buffer, name: string): string | undefined {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw
    .subarray(0, end < 0 ? raw.length : end)
    .toString('utf8')
    .replace(/\r\n[ \t]+/g, ' ');
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head);
  return m?.[1]?.trim();
}

const serverOptions: SMTPServerOptions = {
  name: options.name ?? 'downstream.test',
  banner: 'downstream test server',
  size: 50 * 1024 * 1024,
  secure: options.secure ?? false,
  ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : { disabledCommands: ['STARTTLS'] }),
  authOptional: !options.auth,
  authMethods: ['PLAIN', 'LOGIN'],
  allowInsecureAuth: !options.tls && !options.secure,
  logger: false,
  onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void) {
    const mode = rules.connect ?? 'accept';
    if (mode === 'stall') return; // never greet
    if (mode === 'drop') {
      sockets.get(socketKey(session))?.destroy();
      return;
    }
    emit({ event: 'connect', secure: session.secure });
    if (mode !== 'accept') return cb(reply(mode));
    cb();
  },
  onAuth(auth, session, cb) {
    const ok = options.auth && auth.username === options.auth.user && auth.password === options.auth.pass;
    emit({ event: 'auth', user: auth.username, ok: Boolean(ok) });
    if (!ok) return cb(reply('535 5.7.8 authentication failed'));
    cb(null, { user: auth.username });
  },
  onMailFrom(_address, _session, cb) {
    if (rules.mail) return cb(reply(rules.mail));
    cb();
  },
  onRcptTo(address, _session, cb) {
    const r = rules.rcpt?.[address.address] ?? rules.rcptDefault;
    if (r) return cb(reply(r));
    cb();
  },
  onClose(session) {
    inData.delete(session.id);
  },
  onData(stream, session, cb) {
    inData.add(session.id);
    emit({ event: 'data', open: inData.size });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const mode = rules.data;
      if (mode === 'stall') return;
      if (mode === 'drop') {
        sockets.get(socketKey(session))?.destroy();
        return;
      }
      if (mode) {
        inData.delete(session.id);
        return cb(reply(mode));
      }
      const raw = Buffer.concat(chunks);
      const n = ++count;
      let file: string | undefined;
      if (options.saveDir) {
        file = path.join(options.saveDir, `${n}.eml`);
        fs.writeFileSync(file, raw);
      }
      emit({
        event: 'message',
        n,
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((r) => r.address),
        size: raw.length,
        ehlo: session.hostNameAppearsAs,
        secure: session.secure,
        user: session.user,
        testId: header(raw, 'X-Test-Id'),
        messageId: header(raw, 'Message-ID'),
        file,
        session: session.id,
      });
      const ok = () => {
        inData.delete(session.id);
        cb(null, `2.0.0 Ok: queued as downstream-${n}`);
      };
      if (rules.dataDelayMs) setTimeout(ok, rules.dataDelayMs);
      else ok();
    });
  },
};

const server = new SMTPServer(serverOptions);
server.on('error', (err) => process.stderr.write(`smtp-downstream: ${err.message}\n`));
server.server.on('connection', (socket: Socket) => {
  const key = socketKey(socket);
  sockets.set(key, socket);
  socket.on('close', () => sockets.delete(key));
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { seq: number; rules: Rules; dropConnections?: boolean };
  rules = cmd.rules;
  if (cmd.dropConnections) for (const s of sockets.values()) s.destroy();
  emit({ event: 'ok', seq: cmd.seq });
});

server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
  const address = server.server.address();
  emit({ event: 'ready', port: typeof address === 'object' && address ? address.port : 0 });
});

process.on('SIGTERM', () => {
  for (const s of sockets.values()) s.destroy();
  server.close(() => process.exit(0));
});
