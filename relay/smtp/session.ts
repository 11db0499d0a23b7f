/**
 * One SMTP session's life, command by command: the smtp-server callbacks of a listener, wired to the
 * pure policy functions (relay/policy), the DNS check, AUTH, and the spool. I/O happens here; decisions
 * are made by the policy modules.
 *
 *   connect   → shutting down? (421) · too many connections? (421) · relay listener: client network (554)
 *               · per-client connections and connection rate, unless exempt (421 4.7.0)
 *   AUTH      → throttle admits the check (454 when locked out; waits while checks in flight use up the
 *               allowance) · verify (535, with a growing delay after repeated failures; 454 if a lockout
 *               began meanwhile)
 *   MAIL FROM → (not UTF-8: 501, connection.ts) · shutting down? (421) · parameters (555)
 *               · sender policy (530/501/553/550) · spool space, with a declared SIZE= (452)
 *               · rate limits per client, user and sender domain, fleet-wide with a store (450)
 *   RCPT TO   → (not UTF-8: 501, connection.ts) · parameters (555) · spool space (452) · syntax (501/553)
 *               · count (452) · suppression list, when it refuses (550 5.1.1) · recipient domain via DNS
 *               (556/550/451); a repeated recipient (same local part, byte for byte; domain without
 *               case) is accepted once
 *   DATA      → size (552) · bare CR or NUL (554) · trace and fix-up headers
 *               · spool, fsynced → "250 2.0.0 Ok: queued as ID"
 *               (452 when the spool's file system fell below its free-space floor or is full)
 *
 * Invariants
 * - 250 after DATA is sent only after Spool.accept() resolved (message and envelope fsynced).
 * - No callback throws into smtp-server: every handler catches, logs, and answers 451 4.3.0.
 * - Every reply comes from the catalogue (relay/policy/replies.ts).
 * - SMTPUTF8 and BODY are taken from the MAIL command that opened the transaction, never from the
 *   library's session envelope (which keeps them from a refused MAIL).
 * - Config is read per command from `deps.runtime()`, so a reload applies to the next command of every
 *   open session and drops none.
 * - A session AUTHenticated as the handoff identity (a peer relay draining its queue) keeps its envelope:
 *   no sender, recipient-domain, recipient-count or rate checks, no bare CR/NUL refusal (the message
 *   was accepted once already; refusing it now could only strand it in a draining pod), no
 *   Date/Message-ID fix-ups; the size limit, the spool's free-space floor and the Received header
 *   still apply.
 * - The client address is session.remoteAddress: behind a trusted PROXY-protocol proxy, the header's
 *   (relay/smtp/connection.ts). allowedNetworks, the per-client limits, the AUTH throttle, logs and the
 *   Received header all use it.
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
import type {
  ConnectionRefusedReason,
  MessageRejectReason,
  RecipientRejectReason,
  RelayMetrics,
} from '../metrics.js';
import type { Runtime } from '../runtime.js';
import type { Envelope } from '../spool/envelope.js';
import type { AuthThrottle } from '../auth/throttle.js';
import { prelude, receivedHeader } from '../intake/headers.js';
import {
  BareCrError,
  HeaderTooBigError,
  IntakeTransform,
  MessageTooBigError,
  NulError,
  receiveMessage,
} from '../intake/receive.js';
import type { ClientConnectionLimits } from '../policy/client-limits.js';
import { clientKey, isAddressAllowed } from '../policy/network.js';
import { checkRecipientCount, checkRecipientSyntax, recipientDomainDecision } from '../policy/recipient.js';
import { checkMailParameters, checkRcptParameters, type MailParameters } from '../policy/parameters.js';
import { Replies, ReplyError, queuedText, replyError, withDetail, type Reply } from '../policy/replies.js';
import { checkSender } from '../policy/sender.js';
import { SpoolFullError } from '../spool/space.js';

/**
 * What sessions ask of the limits the fleet shares (relay/fleet/state.ts implements it: the shared store
 * when there is one and it answers in time, this pod's own counts otherwise). Neither call rejects.
 */
export interface SubmissionLimits {
  /** Takes one message from the rate of `kind` `id` (0: unlimited). */
  takeRate(
    kind: 'client' | 'user' | 'domain',
    id: string,
    perMinute: number,
  ): Promise<{ allowed: boolean; retryAfterMs: number }>;
  /** The suppression entry of a canonical recipient address, or null. */
  suppressed(address: string): Promise<{ reason: string; until: number } | null>;
}

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
  limits: SubmissionLimits;
  throttle: AuthThrottle;
  /** Per-client connection counts and rates (shared by all listeners). */
  clientLimits: ClientConnectionLimits;
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
  /** Canonical addresses (relay/policy/address.ts), each once. */
  recipients: string[];
  handoff: boolean;
  params: MailParameters;
}

interface SessionState {
  counted: boolean;
  /** The per-client key this connection is counted under (undefined: exempt, or not admitted). */
  clientKey?: string;
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
    return replyError(Replies.internalError);
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.states.get(session);
    if (!s) {
      s = { counted: false };
      this.states.set(session, s);
    }
    return s;
  }

  private refuseConnection(reason: ConnectionRefusedReason, reply: Reply): never {
    this.deps.metrics.connections.inc({ listener: this.listener, result: 'refused' });
    this.deps.metrics.connectionsRefused.inc({ listener: this.listener, reason });
    throw replyError(reply);
  }

  private onConnect(session: SMTPServerSession): void {
    const { metrics, log } = this.deps;
    const client = session.remoteAddress;
    if (this.deps.stopping()) this.refuseConnection('shutting_down', Replies.shuttingDown);
    const rt = this.deps.runtime();
    if (this.deps.connectionCount() > rt.config.limits.maxConnections) {
      log.warn({ listener: this.listener, client }, 'connection limit reached');
      this.refuseConnection('max_connections', Replies.tooManyConnections);
    }
    if (this.listener === 'relay' && !isAddressAllowed(client, rt.relayNetworks)) {
      log.info({ listener: this.listener, client }, 'client not in allowedNetworks');
      this.refuseConnection('client_not_allowed', Replies.clientNotAllowed);
    }
    const admission = this.deps.clientLimits.admit(client, rt.config.limits, rt.exemptNetworks);
    if (!admission.ok) {
      log.warn(
        {
          listener: this.listener,
          client,
          key: admission.key,
          limit: admission.reason,
          retryAfterMs: admission.retryAfterMs,
        },
        'per-client connection limit reached',
      );
      this.refuseConnection(admission.reason, admission.reply);
    }
    const state = this.state(session);
    state.counted = true;
    state.clientKey = admission.key;
    metrics.connections.inc({ listener: this.listener, result: 'accepted' });
    metrics.sessionsInFlight.inc({ listener: this.listener });
  }

  private onSecure(socket: tls.TLSSocket, _session: SMTPServerSession): void {
    const version =
      typeof socket.getProtocol === 'function' ? (socket.getProtocol() ?? 'unknown') : 'unknown';
    this.deps.metrics.tlsSessions.inc({ listener: this.listener, version });
  }

  /**
   * Resolves to the username on success; throws a ReplyError on refusal. The throttle admits the
   * password check first (attempts in flight count against the lockout allowance), and a check that
   * succeeds while a lockout is in force is refused like the others.
   */
  private async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    const { metrics, throttle, log } = this.deps;
    const mechanism = auth.method;
    const key = clientKey(session.remoteAddress);
    const username = auth.username ?? '';
    const count = (result: 'success' | 'failure' | 'throttled' | 'locked_out') =>
      metrics.authAttempts.inc({ listener: this.listener, mechanism, result });
    const lockedOut = (retryAfterMs: number): never => {
      count('locked_out');
      log.warn(
        { listener: this.listener, client: session.remoteAddress, user: username, retryAfterMs },
        'AUTH refused: client locked out',
      );
      throw replyError(Replies.authLockedOut);
    };
    const admitted = await throttle.begin(key);
    if (!admitted.allowed) return lockedOut(admitted.retryAfterMs);
    const { attempt } = admitted;
    let ok: boolean;
    try {
      ok = username !== '' && (await this.deps.runtime().users.verify(username, auth.password ?? ''));
    } catch (err) {
      attempt.abandoned();
      throw err;
    }
    if (ok) {
      const result = attempt.succeeded();
      if (!result.allowed) return lockedOut(result.retryAfterMs);
      count('success');
      log.info(
        { listener: this.listener, client: session.remoteAddress, user: username, mechanism },
        'AUTH ok',
      );
      return username;
    }
    const failure = attempt.failed();
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
    if (failure.startedLockout)
      log.warn(
        { listener: this.listener, client: session.remoteAddress, failures: failure.failures },
        'client locked out of AUTH',
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

  private async onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = this.state(session);
    state.transaction = undefined;
    if (this.deps.stopping()) this.rejectMessage('draining', Replies.shuttingDown, session);
    const rt = this.deps.runtime();
    const parameters = checkMailParameters(address.args, { authOffered: this.listener !== 'relay' });
    if (!parameters.ok)
      this.rejectMessage('bad_protocol', parameters.reply, session, { from: address.address });
    const { params } = parameters;
    const user = authUser(session);
    const handoff = user !== undefined && user === rt.handoffUser;
    const decision = checkSender(
      {
        mailFrom: address.address,
        listener: this.listener,
        authUser: user,
        handoff,
        clientAllowed: this.listener !== 'relay' || isAddressAllowed(session.remoteAddress, rt.relayNetworks),
        smtputf8: params.smtputf8,
      },
      rt.domains,
    );
    if (!decision.ok) this.rejectMessage(decision.reason, decision.reply, session, { from: address.address });
    const space = this.deps.spool.spaceProblem(params.size ?? 0);
    if (space) this.rejectMessage('spool_full', Replies.spoolFull, session, { problem: space });
    if (!handoff) await this.checkRates(session, user, decision.address, rt);
    state.transaction = { mailFrom: decision.address, recipients: [], handoff, params };
  }

  /**
   * The message rates, asked at once (one round trip to the fleet's store, not three): each limit
   * takes its token whether or not another refuses, as Postfix's anvil counts every MAIL request.
   */
  private async checkRates(
    session: SMTPServerSession,
    user: string | undefined,
    mailFrom: string,
    rt: Runtime,
  ): Promise<void> {
    const { limits } = rt.config;
    const exempt = isAddressAllowed(session.remoteAddress, rt.exemptNetworks);
    const at = mailFrom.lastIndexOf('@');
    const checks: [limit: string, kind: 'client' | 'user' | 'domain', id: string, perMinute: number][] = [
      ['client', 'client', clientKey(session.remoteAddress), exempt ? 0 : limits.messagesPerMinutePerClient],
    ];
    if (user !== undefined) checks.push(['user', 'user', user, limits.messagesPerMinutePerUser]);
    if (at > 0)
      checks.push([
        'sender_domain',
        'domain',
        mailFrom.slice(at + 1).toLowerCase(),
        limits.messagesPerMinutePerSenderDomain,
      ]);
    const asked = checks.filter(([, , , perMinute]) => perMinute > 0);
    if (asked.length === 0) return;
    const results = await Promise.all(asked.map(([, kind, id, n]) => this.deps.limits.takeRate(kind, id, n)));
    const refused = results.findIndex((r) => !r.allowed);
    if (refused >= 0)
      this.rejectMessage('rate_limited', Replies.rateLimited, session, {
        limit: asked[refused]![0],
        retryAfterMs: results[refused]!.retryAfterMs,
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
    if (!txn) throw replyError(Replies.needMail);
    const parameters = checkRcptParameters(address.args);
    if (!parameters.ok)
      return this.rejectRecipient('bad_protocol', parameters.reply, session, address.address);
    const space = this.deps.spool.spaceProblem();
    if (space) return this.rejectRecipient('spool_full', Replies.spoolFull, session, address.address);
    const syntax = checkRecipientSyntax(address.address, txn.params.smtputf8);
    if (!syntax.ok) return this.rejectRecipient(syntax.reason, syntax.reply, session, address.address);
    // Canonical form: the local part exactly as given, the domain lower-case A-label (RFC 5321 §2.4).
    const duplicate = txn.recipients.includes(syntax.address);
    if (!txn.handoff) {
      const count = checkRecipientCount(
        txn.recipients,
        syntax.address,
        this.deps.runtime().config.limits.maxRecipients,
      );
      if (!count.ok) return this.rejectRecipient(count.reason, count.reply, session, syntax.address);
      // Both asked at once: each may be a round trip (fleet store, DNS), the first refusal is the list's.
      const [entry, hosts] = await Promise.all([
        duplicate ? null : this.suppressionOf(syntax.address),
        this.deps.resolver().mailHosts(syntax.mailbox.domain),
      ]);
      if (entry)
        return this.rejectRecipient(
          'suppressed',
          withDetail(Replies.recipientSuppressed, `until ${new Date(entry.until).toISOString()}`),
          session,
          syntax.address,
        );
      const domain = recipientDomainDecision(hosts);
      if (!domain.ok) {
        if (hosts.kind === 'tempfail')
          this.deps.log.warn({ domain: syntax.mailbox.domain, error: hosts.error }, 'DNS lookup failed');
        return this.rejectRecipient(domain.reason, domain.reply, session, syntax.address);
      }
    }
    if (!duplicate) txn.recipients.push(syntax.address);
  }

  /** The recipient's suppression entry when the list refuses at RCPT (suppression.action refuse). */
  private suppressionOf(address: string): Promise<{ reason: string; until: number } | null> | null {
    if (this.deps.runtime().config.suppression.action !== 'refuse') return null;
    return this.deps.limits.suppressed(address);
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const txn = this.state(session).transaction;
    if (!txn || txn.recipients.length === 0) {
      stream.resume();
      this.rejectMessage('no_recipients', Replies.needRcpt, session);
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
      checkContent: !txn.handoff,
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
      if (err instanceof BareCrError)
        return this.rejectMessage('bad_content', Replies.bareCr, session, { offset: err.offset });
      if (err instanceof NulError)
        return this.rejectMessage('bad_content', Replies.nulByte, session, { offset: err.offset });
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

  /** A MAIL or RCPT line relay/smtp/connection.ts refused before decoding it: counted and logged. */
  notUtf8(session: SMTPServerSession, command: 'MAIL' | 'RCPT'): void {
    const { metrics, log } = this.deps;
    const where = { listener: this.listener, session: session.id, client: session.remoteAddress };
    if (command === 'MAIL') {
      metrics.messagesRejected.inc({ listener: this.listener, reason: 'sender_syntax' });
      log.info({ ...where, reason: 'sender_syntax', detail: 'not UTF-8' }, 'message refused');
    } else {
      metrics.recipientsRejected.inc({ listener: this.listener, reason: 'syntax' });
      log.info({ ...where, reason: 'syntax', detail: 'not UTF-8' }, 'recipient refused');
    }
  }

  private onClose(session: SMTPServerSession): void {
    const state = this.states.get(session);
    if (state?.counted) {
      this.deps.metrics.sessionsInFlight.dec({ listener: this.listener });
      this.deps.clientLimits.release(state.clientKey);
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
    ...(txn.params.smtputf8 ? { smtputf8: true } : {}),
    bodyType: txn.params.bodyType,
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
