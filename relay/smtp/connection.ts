/**
 * smtp-server, adapted: a listener class (RelayServer) whose connections (RelayConnection) differ from
 * the library's in five documented ways. Everything else — command parsing, PIPELINING, dot-unstuffing,
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
 *     (relay/policy/replies.ts) is sent as is instead.
 *  3. AUTH only after TLS where the listener requires it: not advertised in EHLO before STARTTLS, and
 *     "530 5.7.0 Must issue a STARTTLS command first" (RFC 3207 §4) instead of the library's 538.
 *  4. VRFY never discloses users (252 2.5.0), EXPN is not offered (502 5.5.1).
 *  5. The connection limit is the relay's (all listeners together, checked in onConnect), not the
 *     library's per-server maxClients.
 *
 * These overrides use smtp-server's documented class surface (its own .d.ts); the integration tests
 * (test/integration/smtp-*.test.ts) exercise each one, so an upgrade that changes them fails loudly.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerName } from '../config/schema.js';
import { Replies } from '../policy/replies.js';

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

export interface ListenerTraits {
  name: ListenerName;
  /** AUTH is only advertised and accepted once the session is encrypted. */
  authRequiresTls: boolean;
  /** Called when AUTH is refused because the session is not encrypted yet (metrics). */
  onAuthBeforeTls?: (session: SMTPServerSession) => void;
}

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
    if (typeof data === 'string' && context !== false && ENHANCED_PREFIX.test(data)) {
      super.send(code, data, false);
      return;
    }
    if (Array.isArray(data) && code === 250 && this.hidesAuth()) {
      super.send(
        code,
        data.filter((line, i) => i === 0 || !line.startsWith('AUTH ')),
        context,
      );
      return;
    }
    super.send(code, data, context);
  }

  /** 3: AUTH before STARTTLS is refused with RFC 3207's reply. */
  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (this.hidesAuth()) {
      this.traits.onAuthBeforeTls?.(this.session);
      const r = Replies.authTlsRequired;
      this.send(r.code, `${r.enhanced} ${r.text}`);
      callback();
      return;
    }
    super.handler_AUTH(command, callback);
  }

  /** 4: VRFY answers without looking anything up. */
  override handler_VRFY(command: Buffer, callback: () => void): void {
    if (!command.toString().trim().split(/\s+/)[1]) {
      this.send(501, '5.5.4 Syntax: VRFY address');
    } else {
      const r = Replies.vrfyNotDisclosed;
      this.send(r.code, `${r.enhanced} ${r.text}`);
    }
    callback();
  }

  /** 4: EXPN would list a mailing list's members; there are none to list, and we would not tell. */
  handler_EXPN(_command: Buffer, callback: () => void): void {
    const r = Replies.expnDisabled;
    this.send(r.code, `${r.enhanced} ${r.text}`);
    callback();
  }

  private hidesAuth(): boolean {
    return this.traits.authRequiresTls && !this.secure;
  }
}
