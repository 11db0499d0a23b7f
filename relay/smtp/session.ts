/**
 * One SMTP session's life, command by command: the smtp-server callbacks of a listener, wired to the
 * pure policy functions (relay/policy), the DNS check, AUTH, and the spool. I/O happens here; decisions
 * are made by the policy modules.
 *
 *   connect   → shutting down? (421) · too many connections? (421) · relay listener: client network (554)
 *   AUTH      → locked-out client address? (454) · verify (535, with a growing delay after repeated failures)
 *   MAIL FROM → shutting down? (421) · sender policy (530/550/553) · spool space (452) · rate limits (450)
 *   RCPT TO   → spool space (452) · syntax (553) · count (452) · recipient domain via DNS (556/550/451)
 *   DATA      → size (552) · trace and fix-up headers · spool, fsynced → "250 2.0.0 Ok: queued as ID"
 *               (452 when the spool's file system fell below its free-space floor or is full)
 *
 * Invariants
 * - 250 after DATA is sent only after Spool.accept() resolved (message and envelope fsynced).
 * - No callback throws into smtp-server: every handler catches, logs, and answers 451 4.3.0.
 * - Config is read per command from `deps.runtime()`, so a reload applies to the next command of every
 *   open session and drops none.
 * - A session AUTHenticated as the handoff identity (a peer relay draining its queue) keeps its envelope:
 *   no sender, recipient-domain, recipient-count or rate checks, no Date/Message-ID fix-ups; the size
 *   limit and the Received header still apply.
 * - Logs carry the username but never a password; metric labels are bounded sets only.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server';
import type { ListenerName } from '../config/schema.js';
import type { MailResolver } from '../dns/resolver.js';
import type { Logger } from '../log.js';
import type { MessageRejectReason, RecipientRejectReason, RelayMetrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import type { Envelope } from '../spool/envelope.js';
import type { AuthThrottle } from '../auth/throttle.js';
import { prelude, receivedHeader } from '../intake/headers.js';
import { HeaderTooBigError, IntakeTransform, MessageTooBigError, receiveMessage } from '../intake/receive.js';
import { clientKey, isAddressAllowed } from '../policy/network.js';
import type { RateLimiter } from '../policy/rate-limit.js';
import { checkRecipientCount, checkRecipientSyntax, recipientDomainDecision } from '../policy/recipient.js';
import { Replies, ReplyError, queuedText, replyError, withText, type Reply } from '../policy/replies.js';
import { checkSender } from '../policy/sender.js';
import { SpoolFullError } from '../spool/space.js';

/** What intake needs from the spool (relay/spool/spool.ts implements it). */
export interface SpoolWriter {
  /** Rejects with SpoolFullError when the spool's file system is below its floor or full. */
  accept(envelope: Envelope, body: AsyncIterable<Uint8Array | string>): Promise<{ id: string; size: number }>;
  /** Why new mail is refused for lack of space (with `incoming` more bytes), or undefined. */
  spaceProblem(incoming?: number): string | undefined;
}

export interface SessionDeps {
  runtime: () => Runtime;
  resolver: () => MailResolver;
  spool: SpoolWriter;
  metrics: RelayMetrics;
  log: Logger;
  rateLimiter: RateLimiter;
  throttle: AuthThrottle;
  /** Open SMTP connections across all listeners (including the one being checked). */
  connectionCount: () => number;
  /** true once shutdown (or drain) began: no new connections or transactions. */
  stopping: () => boolean;
  /** Spool writes in flight, so shutdown can wait for them. */
  inflight: Set<Promise<unknown>>;
  now?: () => number;
}

interface Transaction {
  mailFrom: string;
  recipients: string[];
  handoff: boolean;
}

interface SessionState {
  counted: boolean;
  transaction?: Transaction;
}

type Callback = (err?: Error | null) => void;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** The smtp-server handlers of one listener. */
export class SessionHandlers {
  private readonly states = new WeakMap<SMTPServerSession, SessionState>();
  private readonly now: () => number;

  constructor(
    readonly listener: ListenerName,
    private readonly deps: SessionDeps,
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** The options object smtp-server takes (bound handlers). */
  handlers() {
    return {
      onConnect: (session: SMTPServerSession, cb: Callback) => this.guard(cb, () => this.onConnect(session)),
      onSecure: (socket: net.Socket | tls.TLSSocket, session: SMTPServerSession, cb: Callback) => {
        this.onSecure(socket as tls.TLSSocket, session);
        cb();
      },
      onAuth: (
        auth: SMTPServerAuthentication,
        session: SMTPServerSession,
        cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
      ) => {
        this.onAuth(auth, session).then(
          (user) => cb(null, { user }),
          (err: unknown) => cb(this.refusalOrInternal(err, session)),
        );
      },
      onMailFrom: (address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) =>
        this.guard(cb, () => this.onMailFrom(address, session), session),
      onRcptTo: (address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) =>
        this.guard(cb, () => this.onRcptTo(address, session), session),
      onData: (
        stream: SMTPServerDataStream,
        session: SMTPServerSession,
        cb: (err?: Error | null, message?: string) => void,
      ) => {
        this.onData(stream, session).then(
          (text) => cb(null, text),
          (err: unknown) => cb(this.refusalOrInternal(err, session)),
        );
      },
      onClose: (session: SMTPServerSession) => this.onClose(session),
    };
  }

  /** Runs a handler that resolves to nothing (accept) or throws a ReplyError (refuse). */
  private guard(cb: Callback, run: () => Promise<void> | void, session?: SMTPServerSession): void {
    let result: Promise<void> | void;
    try {
      result = run();
    } catch (err) {
      cb(this.refusalOrInternal(err, session));
      return;
    }
    if (!result) {
      cb();
      return;
    }
    result.then(
      () => cb(),
      (err: unknown) => cb(this.refusalOrInternal(err, session)),
    );
  }

  private refusalOrInternal(err: unknown, session?: SMTPServerSession): Error {
    if (err instanceof ReplyError) return err;
    return this.internal(err, session);
  }

  private internal(err: unknown, session?: SMTPServerSession): Error {
    this.deps.log.error({ err, listener: this.listener, session: session?.id }, 'internal error in session');
    return replyError(withText(Replies.spoolError, 'Local error in processing, try again later'));
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.states.get(session);
    if (!s) {
      s = { counted: false };
      this.states.set(session, s);
    }
    return s;
  }

  private refuseConnection(reply: Reply): never {
    this.deps.metrics.connections.inc({ listener: this.listener, result: 'refused' });
    throw replyError(reply);
  }

  private onConnect(session: SMTPServerSession): void {
    const { metrics } = this.deps;
    if (this.deps.stopping()) this.refuseConnection(Replies.shuttingDown);
    const rt = this.deps.runtime();
    if (this.deps.connectionCount() > rt.config.limits.maxConnections) {
      this.deps.log.warn(
        { listener: this.listener, client: session.remoteAddress },
        'connection limit reached',
      );
      this.refuseConnection(Replies.tooManyConnections);
    }
    if (this.listener === 'relay' && !isAddressAllowed(session.remoteAddress, rt.relayNetworks)) {
      this.deps.log.info(
        { listener: this.listener, client: session.remoteAddress },
        'client not in allowedNetworks',
      );
      this.refuseConnection(Replies.clientNotAllowed);
    }
    this.state(session).counted = true;
    metrics.connections.inc({ listener: this.listener, result: 'accepted' });
    metrics.sessionsInFlight.inc({ listener: this.listener });
  }

  private onSecure(socket: tls.TLSSocket, _session: SMTPServerSession): void {
    const version =
      typeof socket.getProtocol === 'function' ? (socket.getProtocol() ?? 'unknown') : 'unknown';
    this.deps.metrics.tlsSessions.inc({ listener: this.listener, version });
  }

  /** Resolves to the username on success; throws a ReplyError on refusal. */
  private async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    const { metrics, throttle, log } = this.deps;
    const mechanism = auth.method;
    const key = clientKey(session.remoteAddress);
    const count = (result: 'success' | 'failure' | 'throttled' | 'locked_out') =>
      metrics.authAttempts.inc({ listener: this.listener, mechanism, result });
    const gate = throttle.gate(key);
    if (!gate.allowed) {
      count('locked_out');
      log.warn(
        { listener: this.listener, client: session.remoteAddress, user: auth.username },
        'AUTH refused: client locked out',
      );
      throw replyError(Replies.authLockedOut);
    }
    const username = auth.username ?? '';
    const ok = username !== '' && (await this.deps.runtime().users.verify(username, auth.password ?? ''));
    if (ok) {
      throttle.success(key);
      count('success');
      log.info(
        { listener: this.listener, client: session.remoteAddress, user: username, mechanism },
        'AUTH ok',
      );
      return username;
    }
    const failure = throttle.failure(key);
    count(failure.lockedOut ? 'locked_out' : failure.delayMs > 0 ? 'throttled' : 'failure');
    log.info(
      {
        listener: this.listener,
        client: session.remoteAddress,
        user: username,
        mechanism,
        failures: failure.failures,
        delayMs: failure.delayMs,
        lockedOut: failure.lockedOut,
      },
      'AUTH failed',
    );
    if (failure.delayMs > 0) await sleep(failure.delayMs);
    throw replyError(failure.lockedOut ? Replies.authLockedOut : Replies.authFailed);
  }

  private rejectMessage(
    reason: MessageRejectReason,
    reply: Reply,
    session: SMTPServerSession,
    extra = {},
  ): never {
    this.deps.metrics.messagesRejected.inc({ listener: this.listener, reason });
    this.deps.log.info(
      {
        listener: this.listener,
        session: session.id,
        client: session.remoteAddress,
        user: authUser(session),
        reason,
        ...extra,
      },
      'message refused',
    );
    throw replyError(reply);
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): void {
    const state = this.state(session);
    state.transaction = undefined;
    if (this.deps.stopping()) this.rejectMessage('draining', Replies.shuttingDown, session);
    const rt = this.deps.runtime();
    const user = authUser(session);
    const handoff = user !== undefined && user === rt.handoffUser;
    const decision = checkSender(
      {
        mailFrom: address.address,
        listener: this.listener,
        authUser: user,
        handoff,
        clientAllowed: this.listener !== 'relay' || isAddressAllowed(session.remoteAddress, rt.relayNetworks),
        smtputf8: Boolean(session.envelope.smtpUtf8),
      },
      rt.domains,
    );
    if (!decision.ok) this.rejectMessage(decision.reason, decision.reply, session, { from: address.address });
    const declared = Number(((address.args || {}) as Record<string, string | undefined>).SIZE ?? 0) || 0;
    const space = this.deps.spool.spaceProblem(declared);
    if (space) this.rejectMessage('spool_full', Replies.spoolFull, session, { problem: space });
    if (!handoff) this.checkRates(session, user, rt);
    state.transaction = { mailFrom: decision.address, recipients: [], handoff };
  }

  private checkRates(session: SMTPServerSession, user: string | undefined, rt: Runtime): void {
    const { limits } = rt.config;
    const client = this.deps.rateLimiter.take(
      `client ${clientKey(session.remoteAddress)}`,
      limits.messagesPerMinutePerClient,
    );
    if (!client.allowed)
      this.rejectMessage('rate_limited', Replies.rateLimited, session, {
        limit: 'client',
        retryAfterMs: client.retryAfterMs,
      });
    if (user === undefined) return;
    const perUser = this.deps.rateLimiter.take(`user ${user}`, limits.messagesPerMinutePerUser);
    if (!perUser.allowed)
      this.rejectMessage('rate_limited', Replies.rateLimited, session, {
        limit: 'user',
        retryAfterMs: perUser.retryAfterMs,
      });
  }

  private rejectRecipient(
    reason: RecipientRejectReason,
    reply: Reply,
    session: SMTPServerSession,
    to: string,
  ): never {
    this.deps.metrics.recipientsRejected.inc({ listener: this.listener, reason });
    this.deps.log.info({ listener: this.listener, session: session.id, to, reason }, 'recipient refused');
    throw replyError(reply);
  }

  private async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const txn = this.state(session).transaction;
    if (!txn) throw replyError({ code: 503, enhanced: '5.5.1', text: 'Need MAIL command' });
    const space = this.deps.spool.spaceProblem();
    if (space) return this.rejectRecipient('spool_full', Replies.spoolFull, session, address.address);
    const syntax = checkRecipientSyntax(address.address, Boolean(session.envelope.smtpUtf8));
    if (!syntax.ok) return this.rejectRecipient(syntax.reason, syntax.reply, session, address.address);
    const lower = syntax.address.toLowerCase();
    const duplicate = txn.recipients.some((r) => r.toLowerCase() === lower);
    if (!txn.handoff) {
      const count = checkRecipientCount(
        txn.recipients,
        syntax.address,
        this.deps.runtime().config.limits.maxRecipients,
      );
      if (!count.ok) return this.rejectRecipient(count.reason, count.reply, session, syntax.address);
      const hosts = await this.deps.resolver().mailHosts(syntax.mailbox.domain);
      const domain = recipientDomainDecision(hosts);
      if (!domain.ok) {
        if (hosts.kind === 'tempfail')
          this.deps.log.warn({ domain: syntax.mailbox.domain, error: hosts.error }, 'DNS lookup failed');
        return this.rejectRecipient(domain.reason, domain.reply, session, syntax.address);
      }
    }
    if (!duplicate) txn.recipients.push(syntax.address);
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const txn = this.state(session).transaction;
    if (!txn || txn.recipients.length === 0) {
      stream.resume();
      this.rejectMessage(
        'no_recipients',
        { code: 503, enhanced: '5.5.1', text: 'Need RCPT command' },
        session,
      );
    }
    const rt = this.deps.runtime();
    const receivedAt = this.now();
    const { envelope, received } = composeEnvelope(
      this.listener,
      session,
      txn,
      rt.config.hostname,
      receivedAt,
    );
    const transform = new IntakeTransform({
      maxMessageBytes: rt.config.limits.maxMessageBytes,
      prelude: (fields) =>
        prelude({ received, fields, fixups: !txn.handoff, hostname: rt.config.hostname, now: receivedAt }),
    });
    let endOfData = 0;
    transform.once('end', () => (endOfData = this.now()));
    const write = receiveMessage(stream, transform, (body) => this.deps.spool.accept(envelope, body));
    this.deps.inflight.add(write);
    try {
      const { id, size } = await write;
      const { metrics } = this.deps;
      metrics.messagesReceived.inc({ listener: this.listener });
      metrics.receivedBytes.inc({ listener: this.listener }, size);
      if (endOfData) metrics.spoolCommitDuration.observe((this.now() - endOfData) / 1000);
      this.deps.log.info(
        {
          id,
          listener: this.listener,
          session: session.id,
          client: session.remoteAddress,
          user: envelope.authUser,
          from: envelope.mailFrom,
          recipients: envelope.recipients.length,
          size,
          handoff: txn.handoff || undefined,
        },
        'message queued',
      );
      return queuedText(id);
    } catch (err) {
      if (err instanceof MessageTooBigError)
        return this.rejectMessage('size', Replies.messageTooBig, session, { bytes: transform.received });
      if (err instanceof HeaderTooBigError) return this.rejectMessage('size', Replies.headerTooBig, session);
      if (err instanceof SpoolFullError)
        return this.rejectMessage('spool_full', Replies.spoolFull, session, { problem: err.message });
      if (stream.destroyed && !stream.readableEnded) {
        this.deps.log.info(
          { listener: this.listener, session: session.id },
          'client left during DATA; nothing queued',
        );
        throw replyError(Replies.spoolError);
      }
      this.deps.log.error({ err, listener: this.listener, session: session.id }, 'spool write failed');
      return this.rejectMessage('spool_error', Replies.spoolError, session);
    } finally {
      this.deps.inflight.delete(write);
      this.state(session).transaction = undefined;
    }
  }

  private onClose(session: SMTPServerSession): void {
    const state = this.states.get(session);
    if (state?.counted) {
      this.deps.metrics.sessionsInFlight.dec({ listener: this.listener });
      state.counted = false;
    }
    this.states.delete(session);
  }
}

/** The spool envelope and the Received header of the transaction at DATA. */
function composeEnvelope(
  listener: ListenerName,
  session: SMTPServerSession,
  txn: Transaction,
  hostname: string,
  receivedAt: number,
): { envelope: Envelope; received: string } {
  const user = authUser(session);
  const helo = session.hostNameAppearsAs || undefined;
  const tlsInfo = session.secure && session.tlsOptions ? session.tlsOptions : undefined;
  const received = receivedHeader({
    helo,
    clientAddress: session.remoteAddress,
    by: hostname,
    protocol: protocolName(session, user),
    id: `${session.id}.${session.transaction}`,
    tls: tlsInfo ? { version: tlsInfo.version ?? 'TLS', cipher: tlsInfo.name } : undefined,
    recipient: txn.recipients.length === 1 ? txn.recipients[0] : undefined,
    date: receivedAt,
  });
  const envelope: Envelope = {
    mailFrom: txn.mailFrom,
    recipients: [...txn.recipients],
    receivedAt,
    listener,
    client: { address: session.remoteAddress, ...(helo ? { helo } : {}) },
    ...(user !== undefined ? { authUser: user } : {}),
    ...(session.envelope.smtpUtf8 ? { smtputf8: true } : {}),
    bodyType: session.envelope.bodyType?.toLowerCase() === '8bitmime' ? '8BITMIME' : '7BIT',
  };
  return { envelope, received };
}

function authUser(session: SMTPServerSession): string | undefined {
  const user: unknown = session.user;
  return typeof user === 'string' && user !== '' ? user : undefined;
}

/** RFC 3848 "with" keyword. */
function protocolName(session: SMTPServerSession, user: string | undefined): string {
  const base = session.openingCommand === 'HELO' ? 'SMTP' : 'ESMTP';
  if (base === 'SMTP') return 'SMTP';
  return `${base}${session.secure ? 'S' : ''}${user !== undefined ? 'A' : ''}`;
}
