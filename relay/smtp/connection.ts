/**
 * smtp-server, adapted: a listener class (RelayServer) whose connections (RelayConnection) differ from
 * the library's in nine documented ways. Everything else — command parsing, PIPELINING, dot-unstuffing,
 * STARTTLS, SASL exchanges, idle timeouts — is the library's.
 *
 *  1. No greeting delay. SMTPConnection.init() waits a fixed 100 ms before the 220 greeting to catch
 *     "early talkers"; with a connection per message that caps a listener at ~10 connections per second
 *     per concurrent client (measured: 177 msgs/s at 20 clients, 1055 without the pause). Together with
 *     disableReverseLookup (a PTR lookup per connection, up to 1.5 s when DNS is slow) it is why a bare
 *     smtp-server looks slow. A submission relay has no use for greet-pause: clients are known apps.
 *     (docs/adr/0003-relay-smtp-server-adapter.md)
 *  2. Enhanced status codes chosen by the relay. The library derives one from the basic code
 *     (550 → 5.1.1 whatever the reason); a reply whose text starts with an enhanced code
 *     (relay/policy/replies.ts) is sent as is instead. The library's own address-syntax refusals are
 *     replaced by the catalogue's, so a malformed sender or recipient gets one reply whichever layer
 *     noticed.
 *  3. AUTH only after TLS where the listener requires it: not advertised in EHLO before STARTTLS, and
 *     "530 5.7.0 Must issue a STARTTLS command first" (RFC 3207 §4) instead of the library's 538.
 *  4. VRFY never discloses users (252 2.5.0), EXPN is not offered (502 5.5.1).
 *  5. The connection limit is the relay's (all listeners together, checked in onConnect), not the
 *     library's per-server maxClients.
 *  6. PROXY protocol v1 and v2 (proxy-protocol.ts) from the listener's trusted proxies only, in place
 *     of the library's useProxy (v1 only, exact addresses, no refusal of headers from anyone else):
 *     - a peer inside `proxyProtocol.trustedProxies` must start with a valid header within 5 s; the
 *       session then has the header's client address (or the proxy's own for v1 UNKNOWN / v2 LOCAL),
 *       read before any TLS, so it works on smtps too. A missing, invalid or truncated header (the
 *       proxy half-closed inside it): the connection gets "421 4.7.0 PROXY protocol header missing or
 *       invalid" (plaintext) and is closed. A proxy that closes or half-closes before sending a byte
 *       is gone (a TCP health check): closed, nothing written, not counted as invalid;
 *     - any other peer that starts with a PROXY header (either version) gets "554 5.7.1 PROXY protocol
 *       header not accepted from this address" and is closed; nothing from the header is used. On a
 *       plaintext listener that peer has already been greeted (SMTP servers speak first, so the
 *       relay does not wait for it); on smtps its first bytes are looked at before the handshake.
 *     Trust is read per connection from the runtime, so a reload applies to the next connection.
 *     What follows the header in the same packets (pipelined commands, a FIN) is put back for the
 *     session, so 7-9 hold behind a proxy too.
 *  7. MAIL and RCPT lines are checked as bytes: the library decodes them as UTF-8, turning invalid bytes
 *     into U+FFFD, which would send mail to an address the client never gave. A line that is not UTF-8
 *     is refused (501 5.1.7 / 5.1.3 for the address, 501 5.5.4 for a parameter) before it is decoded.
 *  8. A client that half-closes (sends FIN after its last command or its final ".") still gets every
 *     reply: the listener keeps half-open sockets (allowHalfOpen), and the connection closes once the
 *     input has ended and nothing is left to answer. Without this Node ended the socket at the FIN and
 *     the 250 for a message already queued was never sent, so the client would send it again.
 *  9. A client whose input ends in the middle of DATA can never finish the message: the connection
 *     closes at once and nothing is queued.
 *
 * These overrides use smtp-server's documented class surface (its own .d.ts); the integration tests
 * (test/integration/bad-input.test.ts, relay-intake.test.ts, submission-tls.test.ts,
 * proxy-protocol.test.ts) exercise each one, so an upgrade that changes them fails loudly.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerName } from '../config/schema.js';
import { isAddressAllowed, type Network } from '../policy/network.js';
import { Replies, type Reply } from '../policy/replies.js';
import { looksLikeProxyHeader, parseProxyHeader, type ProxySource } from './proxy-protocol.js';

/** How long a trusted proxy may take to send its header (spec: at least 3 s; Postfix waits 5 s). */
export const PROXY_HEADER_TIMEOUT_MS = 5000;
/** How long a refused socket stays open for its reply line to be delivered. */
const REFUSAL_LINGER_MS = 1000;

export type ProxyEvent =
  | { kind: 'accepted'; version: 1 | 2; proxy: string; client?: string }
  | {
      kind: 'refused';
      reason: 'proxy_header_invalid' | 'proxy_header_untrusted';
      peer: string;
      detail: string;
      /** The session had been accepted (and counted) already: a plaintext listener greets first. */
      afterGreeting?: boolean;
    };

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

export interface ListenerTraits {
  name: ListenerName;
  /** AUTH is only advertised and accepted once the session is encrypted. */
  authRequiresTls: boolean;
  /** Called when AUTH is refused because the session is not encrypted yet (metrics). */
  onAuthBeforeTls?: (session: SMTPServerSession) => void;
  /** Called when a MAIL or RCPT line is refused because it is not UTF-8 (metrics, log). */
  onNotUtf8?: (session: SMTPServerSession, command: 'MAIL' | 'RCPT') => void;
  /** Peers that must send a PROXY header (listeners.<name>.proxyProtocol.trustedProxies); read per connection. */
  trustedProxies?: () => readonly Network[];
  /** PROXY headers accepted and connections refused over them (metrics, logs). */
  onProxy?: (event: ProxyEvent) => void;
}

/** Random bytes for session ids, drawn 4 KiB at a time (a randomBytes call per connection cost ~50 us). */
let idEntropy = Buffer.alloc(0);
let idEntropyAt = 0;

/** smtp-server's session id format: 80 random bits in base 32. */
function sessionId(): string {
  if (idEntropyAt + 10 > idEntropy.length) {
    idEntropy = randomBytes(4000);
    idEntropyAt = 0;
  }
  const hi = idEntropy.readUIntBE(idEntropyAt, 5);
  const lo = idEntropy.readUIntBE(idEntropyAt + 5, 5);
  idEntropyAt += 10;
  // 40 bits are 8 base-32 digits each
  return hi.toString(32).padStart(8, '0') + lo.toString(32).padStart(8, '0');
}

/** The peer closed, reset or half-closed the connection before sending a byte: nothing to answer. */
class PeerGone extends Error {}

type Decision<T> = { more: true } | { fail: string } | { consumed: number; result: T };

/**
 * Reads the first bytes of a socket until `decide` has its answer, puts back what it did not consume,
 * and calls `done` once: with the result, or an error (bad header, timeout, input ended inside the
 * header, peer gone). What is put back keeps its place before a FIN already received, so the session
 * still reads every line and then the end of its input (8).
 */
function readStart<T>(
  socket: net.Socket,
  decide: (buf: Buffer) => Decision<T>,
  timeoutMs: number | undefined,
  done: (err: Error | null, result?: T) => void,
): void {
  let buf: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (err: Error | null, result?: T) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('error', onGone);
    socket.off('close', onGone);
    socket.off('end', onEnd);
    done(err, result);
  };
  const onGone = () => finish(new PeerGone('connection closed before its first bytes were read'));
  // 'end' is the peer's FIN. The socket is half-open (allowHalfOpen, 8) and can still be answered:
  // bytes before the FIN are a header cut short; a FIN before any byte is a peer that left.
  const onEnd = () =>
    buf.length === 0
      ? onGone()
      : finish(new Error(`input ended after ${buf.length} bytes, before the PROXY header was complete`));
  const onReadable = () => {
    let chunk: Buffer | null;
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const d = decide(buf);
      if ('more' in d) continue;
      if ('fail' in d) return finish(new Error(d.fail));
      const rest = buf.subarray(d.consumed);
      if (rest.length > 0) socket.unshift(rest);
      return finish(null, d.result);
    }
  };
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => finish(new Error(`no PROXY header within ${timeoutMs} ms`)), timeoutMs).unref();
  socket.on('readable', onReadable);
  socket.on('error', onGone);
  socket.on('close', onGone);
  socket.on('end', onEnd);
}

/** Writes a reply line to a socket that never got a session, then closes it. */
function refuseSocket(socket: net.Socket, r: Reply): void {
  socket.on('error', () => undefined); // a late EPIPE must not become an uncaught error
  if (!socket.destroyed) {
    socket.end(`${r.code} ${r.enhanced} ${r.text}\r\n`);
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
  }
}

/** Replies of the library that the catalogue replaces (by the context the library sends them with). */
const REPLACED: Record<string, Reply> = {
  SENDER_SYNTAX_ERROR: Replies.senderSyntax,
  MAILBOX_SYNTAX_ERROR: Replies.recipientSyntax,
};

export class RelayServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    readonly traits: ListenerTraits,
  ) {
    super(options);
  }

  /** Same as SMTPServer.connect(), with RelayConnection. */
  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new RelayConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: Parameters<SMTPServer['_onClientConnect']>[0]) =>
      this._onClientConnect(data),
    );
    connection.init();
  }

  /** 6: a peer in the listener's trusted-proxy list must send a header (also guards its socket). */
  override _expectsProxyHeader(socket: net.Socket): boolean {
    const trusted = this.traits.trustedProxies?.() ?? [];
    return trusted.length > 0 && isAddressAllowed(socket.remoteAddress ?? '', trusted);
  }

  /** 6: reads a trusted proxy's header, or looks for one from anyone else before implicit TLS. */
  override _handleProxy(
    socket: net.Socket,
    callback: (err: Error | null, socketOptions?: SMTPConnectionOptions & { id: string }) => void,
  ): void {
    const id = sessionId();
    const peer = socket.remoteAddress ?? '';
    const refuse = (reason: 'proxy_header_invalid' | 'proxy_header_untrusted', err: Error) => {
      this.traits.onProxy?.({ kind: 'refused', reason, peer, detail: err.message });
      refuseSocket(
        socket,
        reason === 'proxy_header_invalid' ? Replies.proxyHeaderInvalid : Replies.proxyHeaderUntrusted,
      );
      callback(err);
    };
    if (this._expectsProxyHeader(socket)) {
      readStart<{ version: 1 | 2; source?: ProxySource }>(
        socket,
        (buf) => {
          const h = parseProxyHeader(buf);
          if (h.status === 'incomplete') return { more: true };
          if (h.status === 'invalid') return { fail: h.reason };
          return { consumed: h.length, result: { version: h.version, source: h.source } };
        },
        PROXY_HEADER_TIMEOUT_MS,
        (err, header) => {
          if (err instanceof PeerGone) {
            socket.destroy();
            return callback(err);
          }
          if (err || !header) return refuse('proxy_header_invalid', err ?? new Error('no header'));
          this.traits.onProxy?.({
            kind: 'accepted',
            version: header.version,
            proxy: peer,
            client: header.source?.address,
          });
          callback(null, {
            id,
            ...(header.source
              ? { remoteAddress: header.source.address, remotePort: header.source.port }
              : {}),
          });
        },
      );
      return;
    }
    if (this.options.secure && !this.options.needsUpgrade) {
      // A TLS client speaks first, so its first bytes can be looked at without delaying anyone.
      readStart<'proxy' | 'other'>(
        socket,
        (buf) => {
          const v = looksLikeProxyHeader(buf);
          return v === 'undecided'
            ? { more: true }
            : { consumed: 0, result: v === 'yes' ? 'proxy' : 'other' };
        },
        undefined, // smtp-server's pre-connect guard (_acceptSocket) bounds the wait
        (err, first) => {
          if (first === 'other') return callback(null, { id });
          if (first === 'proxy')
            return refuse('proxy_header_untrusted', new Error('PROXY header from an untrusted address'));
          socket.destroy();
          callback(err ?? new Error('connection closed'));
        },
      );
      return;
    }
    setImmediate(() => callback(null, { id }));
  }
}

export class RelayConnection extends SMTPConnection {
  private get traits(): ListenerTraits {
    return (this._server as RelayServer).traits;
  }

  /** 1: greet as soon as the socket is set up (no early-talker pause, no reverse lookup). */
  override init(): void {
    this._setListeners(() => this.connectionReady());
    if (!this.secure) this.watchForProxyHeader();
  }

  /**
   * 6: a PROXY header as the first bytes of a plaintext session (its sender is not a trusted proxy
   * of this listener, or it sent a second one) refuses the session. The look runs before the command
   * parser sees the bytes (prepended listener), and close() makes the parser drop them.
   */
  private watchForProxyHeader(): void {
    const socket = this._socket;
    let seen: Buffer = Buffer.alloc(0);
    const peek = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]).subarray(0, 16);
      const verdict = looksLikeProxyHeader(seen);
      if (verdict === 'undecided') return;
      socket.off('data', peek);
      if (verdict === 'no' || this._closing) return;
      this.traits.onProxy?.({
        kind: 'refused',
        reason: 'proxy_header_untrusted',
        peer: this.remoteAddress,
        detail: 'PROXY header from an untrusted address',
        afterGreeting: true,
      });
      this.sendReply(Replies.proxyHeaderUntrusted);
      this.close();
    };
    socket.prependListener('data', peek);
  }

  /** 2 and 3: keep the relay's enhanced codes; hide AUTH from EHLO before TLS. */
  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const replaced = typeof context === 'string' ? REPLACED[context] : undefined;
    if (replaced) {
      this.sendReply(replaced);
      return;
    }
    if (typeof data === 'string' && context !== false && ENHANCED_PREFIX.test(data)) {
      this.write(code, data, false);
      return;
    }
    if (Array.isArray(data) && code === 250 && this.hidesAuth()) {
      this.write(
        code,
        data.filter((line, i) => i === 0 || !line.startsWith('AUTH ')),
        context,
      );
      return;
    }
    this.write(code, data, context);
  }

  /**
   * 8: the library's send() writes only while the socket's readyState is "open"; after the client's
   * FIN it is "writeOnly", and the reply would be dropped. For the duration of that synchronous call the
   * socket reads as open (an own property shadowing the prototype's getter, removed right after).
   */
  private write(code: number, data?: string | string[] | null, context?: string | false): void {
    const socket = this._socket;
    if (socket.readyState !== 'writeOnly' || socket.destroyed) return super.send(code, data, context);
    Object.defineProperty(socket, 'readyState', { value: 'open', configurable: true });
    try {
      super.send(code, data, context);
    } finally {
      delete (socket as { readyState?: unknown }).readyState;
    }
  }

  /** 3: AUTH before STARTTLS is refused with RFC 3207's reply. */
  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (this.hidesAuth()) {
      this.traits.onAuthBeforeTls?.(this.session);
      this.sendReply(Replies.authTlsRequired);
      callback();
      return;
    }
    super.handler_AUTH(command, callback);
  }

  /** 4: VRFY answers without looking anything up. */
  override handler_VRFY(command: Buffer, callback: () => void): void {
    this.sendReply(command.toString().trim().split(/\s+/)[1] ? Replies.vrfyNotDisclosed : Replies.vrfySyntax);
    callback();
  }

  /** 4: EXPN would list a mailing list's members; there are none to list, and we would not tell. */
  handler_EXPN(_command: Buffer, callback: () => void): void {
    this.sendReply(Replies.expnDisabled);
    callback();
  }

  /** 7: refuse a MAIL line that is not UTF-8 before the library decodes it. */
  override handler_MAIL(command: Buffer, callback: () => void): void {
    const refusal = notUtf8(command, Replies.senderNotUtf8, Replies.mailParameterNotUtf8);
    if (!refusal) return super.handler_MAIL(command, callback);
    this.traits.onNotUtf8?.(this.session, 'MAIL');
    this.sendReply(refusal);
    callback();
  }

  /** 7: the same for RCPT. */
  override handler_RCPT(command: Buffer, callback: () => void): void {
    const refusal = notUtf8(command, Replies.recipientNotUtf8, Replies.rcptParameterNotUtf8);
    if (!refusal) return super.handler_RCPT(command, callback);
    this.traits.onNotUtf8?.(this.session, 'RCPT');
    this.sendReply(refusal);
    callback();
  }

  /** 8 and 9: notice when the client's input has ended (its FIN, every line before it parsed). */
  override _createParser(): ReturnType<SMTPConnection['_createParser']> {
    const parser = super._createParser();
    parser.once('finish', () => {
      if (this._parser !== parser) return; // replaced by STARTTLS
      this.inputEnded = true;
      this.closeIfAnswered();
    });
    return parser;
  }

  /** 8: after each command's handler is done, a client whose input ended may be let go. */
  override _onCommand(command: Buffer, callback?: () => void): void {
    super._onCommand(command, () => {
      callback?.();
      if (this.inputEnded) this.closeIfAnswered();
    });
  }

  private inputEnded = false;

  /** Closes once no handler and no message is waiting for its reply; a DATA left open never will. */
  private closeIfAnswered(): void {
    if (this._closing || this._handlerPending) return;
    const inData = Boolean(this._parser && this._parser._dataMode);
    if (this._dataStream && !inData) return; // the message is in; its reply is still to come
    this.close();
  }

  private sendReply(r: Reply): void {
    this.write(r.code, `${r.enhanced} ${r.text}`, false);
  }

  private hidesAuth(): boolean {
    return this.traits.authRequiresTls && !this.secure;
  }
}

/**
 * The refusal for a MAIL/RCPT line that is not UTF-8: `address` when the bad bytes are inside the
 * angle brackets (or there are none to tell), `parameter` when they come after them.
 */
function notUtf8(line: Buffer, address: Reply, parameter: Reply): Reply | undefined {
  if (isUtf8(line)) return undefined;
  const open = line.indexOf(0x3c); // <
  const close = open < 0 ? -1 : line.indexOf(0x3e, open); // >
  if (close < 0 || !isUtf8(line.subarray(open + 1, close))) return address;
  return parameter;
}
