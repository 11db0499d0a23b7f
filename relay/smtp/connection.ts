/**
 * smtp-server, adapted: a listener class (RelayServer) whose connections (RelayConnection) differ from
 * the library's in eight documented ways. Everything else — command parsing, PIPELINING, dot-unstuffing,
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
 *  6. MAIL and RCPT lines are checked as bytes: the library decodes them as UTF-8, turning invalid bytes
 *     into U+FFFD, which would send mail to an address the client never gave. A line that is not UTF-8
 *     is refused (501 5.1.7 / 5.1.3 for the address, 501 5.5.4 for a parameter) before it is decoded.
 *  7. A client that half-closes (sends FIN after its last command or its final ".") still gets every
 *     reply: the listener keeps half-open sockets (allowHalfOpen), and the connection closes once the
 *     input has ended and nothing is left to answer. Without this Node ended the socket at the FIN and
 *     the 250 for a message already queued was never sent, so the client would send it again.
 *  8. A client whose input ends in the middle of DATA can never finish the message: the connection
 *     closes at once and nothing is queued.
 *
 * These overrides use smtp-server's documented class surface (its own .d.ts); the integration tests
 * (test/integration/bad-input.test.ts, relay-intake.test.ts, submission-tls.test.ts) exercise each one,
 * so an upgrade that changes them fails loudly.
 */
import { isUtf8 } from 'node:buffer';
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerName } from '../config/schema.js';
import { Replies, type Reply } from '../policy/replies.js';

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

export interface ListenerTraits {
  name: ListenerName;
  /** AUTH is only advertised and accepted once the session is encrypted. */
  authRequiresTls: boolean;
  /** Called when AUTH is refused because the session is not encrypted yet (metrics). */
  onAuthBeforeTls?: (session: SMTPServerSession) => void;
  /** Called when a MAIL or RCPT line is refused because it is not UTF-8 (metrics, log). */
  onNotUtf8?: (session: SMTPServerSession, command: 'MAIL' | 'RCPT') => void;
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
}

export class RelayConnection extends SMTPConnection {
  private get traits(): ListenerTraits {
    return (this._server as RelayServer).traits;
  }

  /** 1: greet as soon as the socket is set up (no early-talker pause, no reverse lookup). */
  override init(): void {
    this._setListeners(() => this.connectionReady());
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
   * 7: the library's send() writes only while the socket's readyState is "open"; after the client's
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

  /** 6: refuse a MAIL line that is not UTF-8 before the library decodes it. */
  override handler_MAIL(command: Buffer, callback: () => void): void {
    const refusal = notUtf8(command, Replies.senderNotUtf8, Replies.mailParameterNotUtf8);
    if (!refusal) return super.handler_MAIL(command, callback);
    this.traits.onNotUtf8?.(this.session, 'MAIL');
    this.sendReply(refusal);
    callback();
  }

  /** 6: the same for RCPT. */
  override handler_RCPT(command: Buffer, callback: () => void): void {
    const refusal = notUtf8(command, Replies.recipientNotUtf8, Replies.rcptParameterNotUtf8);
    if (!refusal) return super.handler_RCPT(command, callback);
    this.traits.onNotUtf8?.(this.session, 'RCPT');
    this.sendReply(refusal);
    callback();
  }

  /** 7 and 8: notice when the client's input has ended (its FIN, every line before it parsed). */
  override _createParser(): ReturnType<SMTPConnection['_createParser']> {
    const parser = super._createParser();
    parser.once('finish', () => {
      if (this._parser !== parser) return; // replaced by STARTTLS
      this.inputEnded = true;
      this.closeIfAnswered();
    });
    return parser;
  }

  /** 7: after each command's handler is done, a client whose input ended may be let go. */
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
