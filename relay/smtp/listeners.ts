/**
 * The SMTP listeners: one smtp-server (RelayServer) per configured listener, and how they start, take
 * new certificates and limits, and stop.
 *
 *   submission  plain TCP; STARTTLS; AUTH PLAIN/LOGIN offered and accepted only after TLS
 *   smtps       implicit TLS (RFC 8314); AUTH PLAIN/LOGIN
 *   relay       plain TCP (STARTTLS when tls is configured); no AUTH; allowedNetworks only
 *
 * Each may accept the PROXY protocol from its trusted proxies (proxyProtocol; relay/smtp/connection.ts).
 * Every listener advertises PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and SIZE <limit>.
 * DSN, REQUIRETLS, XCLIENT/XFORWARD and sendmail's joke commands (WIZ, SHELL, KILL) are off; their
 * MAIL/RCPT parameters are refused (relay/policy/parameters.ts). Sockets are kept half-open after the
 * client's FIN so it still gets its replies (relay/smtp/connection.ts, 8).
 *
 * Shutdown (stop): the sockets stop accepting at once; idle sessions get "421 4.3.2" right away and
 * sessions inside a transaction (MAIL given, DATA streaming, a handler pending) may finish it — they get
 * 421 at their next MAIL or when idle — until `graceMs` has passed; whatever is left then is cut off.
 */
import type { AddressInfo } from 'node:net';
import type { SMTPServerOptions } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { ListenerName, RelayConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { Replies } from '../policy/replies.js';
import type { Runtime } from '../runtime.js';
import { RelayServer, type ProxyEvent } from './connection.js';
import { SessionHandlers, type SessionDeps } from './session.js';
import { secureContextOptions, type TlsMaterial } from './tls.js';

const ALWAYS_DISABLED = ['WIZ', 'SHELL', 'KILL', 'XCLIENT', 'XFORWARD'];

export interface Listener {
  readonly name: ListenerName;
  readonly server: RelayServer;
  /** Bound address (after start). */
  address?: AddressInfo;
}

function limitOptions(config: RelayConfig): Pick<SMTPServerOptions, 'size' | 'socketTimeout'> {
  return {
    size: config.limits.maxMessageBytes,
    socketTimeout: config.limits.idleTimeout * 1000 || undefined,
  };
}

function listenerOptions(name: ListenerName, rt: Runtime): SMTPServerOptions {
  const disabled = [...ALWAYS_DISABLED];
  if (name === 'relay') disabled.push('AUTH');
  if (!rt.tls) disabled.push('STARTTLS');
  return {
    name: rt.config.hostname,
    banner: 'mailfleet',
    heloResponse: '%s Hello %s',
    logger: false,
    disableReverseLookup: true,
    allowHalfOpen: true,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hideREQUIRETLS: true,
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH is enforced at MAIL FROM by the sender policy (530 5.7.0, counted in metrics).
    authOptional: true,
    disabledCommands: disabled,
    secure: name === 'smtps',
    ...(rt.tls ? secureContextOptions(rt.tls) : {}),
    ...limitOptions(rt.config),
  };
}

export function createListeners(rt: Runtime, deps: SessionDeps): Listener[] {
  const out: Listener[] = [];
  for (const name of ['submission', 'smtps', 'relay'] as const) {
    if (!rt.config.listeners[name]) continue;
    const session = new SessionHandlers(name, deps);
    const server = new RelayServer(
      { ...listenerOptions(name, rt), ...session.handlers() },
      {
        name,
        authRequiresTls: name === 'submission',
        onAuthBeforeTls: () =>
          deps.metrics.authAttempts.inc({ listener: name, mechanism: 'any', result: 'not_allowed' }),
        onNotUtf8: (s, command) => session.notUtf8(s, command),
        trustedProxies: () => deps.runtime().trustedProxies[name] ?? [],
        onProxy: (event) => proxyEvent(name, event, deps),
      },
    );
    server.on('error', (err: Error & { code?: string }) =>
      deps.log.info({ listener: name, code: err.code, err: err.message }, 'SMTP connection error'),
    );
    out.push({ name, server });
  }
  return out;
}

function proxyEvent(listener: ListenerName, event: ProxyEvent, deps: SessionDeps): void {
  if (event.kind === 'accepted') {
    deps.metrics.proxyHeaders.inc({ listener, version: String(event.version) });
    deps.log.debug({ listener, proxy: event.proxy, client: event.client }, 'PROXY header accepted');
    return;
  }
  if (!event.afterGreeting) deps.metrics.connections.inc({ listener, result: 'refused' });
  deps.metrics.connectionsRefused.inc({ listener, reason: event.reason });
  deps.log.warn(
    { listener, peer: event.peer, reason: event.reason, detail: event.detail },
    event.reason === 'proxy_header_invalid'
      ? 'connection from a trusted proxy refused: PROXY header missing or invalid'
      : 'connection refused: PROXY header from an address that is not a trusted proxy',
  );
}

export async function startListeners(listeners: Listener[], config: RelayConfig, log: Logger): Promise<void> {
  for (const l of listeners) {
    const { address, port } = config.listeners[l.name]!;
    await new Promise<void>((resolve, reject) => {
      const net = l.server.server;
      const onError = (err: Error) =>
        reject(new Error(`listeners.${l.name}: cannot listen on ${address}:${port}: ${err.message}`));
      net.once('error', onError);
      l.server.listen(port, address, () => {
        net.off('error', onError);
        resolve();
      });
    });
    l.address = l.server.server.address() as AddressInfo;
    log.info({ listener: l.name, address: l.address.address, port: l.address.port }, 'listening');
  }
}

/** New certificate/key for new handshakes; established sessions keep theirs. */
export function applyTls(listeners: Listener[], material: TlsMaterial): void {
  for (const l of listeners) l.server.updateSecureContext(secureContextOptions(material));
}

/** New SIZE limit and idle timeout for the next EHLO / next idle period. */
export function applyLimits(listeners: Listener[], config: RelayConfig): void {
  for (const l of listeners) Object.assign(l.server.options, limitOptions(config));
}

export function connectionCount(listeners: Listener[]): number {
  return listeners.reduce((n, l) => n + l.server.connections.size, 0);
}

/** A session may be closed now without cutting a transaction short. */
function isIdle(c: SMTPConnection): boolean {
  const envelope = c.session.envelope as { mailFrom?: unknown } | undefined;
  return !c._handlerPending && !c._dataStream && !c._upgrading && !envelope?.mailFrom;
}

function closeWith421(c: SMTPConnection): void {
  const r = Replies.shuttingDown;
  c.send(r.code, `${r.enhanced} ${r.text}`, false); // a 421 also closes the connection
}

/**
 * Stops accepting, lets transactions in flight finish for up to `graceMs`, then cuts off the rest.
 * Resolves when every session is gone.
 */
export async function stopListeners(listeners: Listener[], graceMs: number, log: Logger): Promise<void> {
  await Promise.all(
    listeners.map(
      (l) =>
        new Promise<void>((resolve) => {
          if (!l.server.server.listening) return resolve();
          // close() calls back only when every socket is gone; "no new connections" is all we need here.
          l.server.server.close();
          // Sockets still in their implicit-TLS handshake have no session that could finish.
          l.server._pendingSockets.forEach((socket) => socket.destroy());
          resolve();
        }),
    ),
  );
  const deadline = Date.now() + graceMs;
  const all = () => listeners.flatMap((l) => [...l.server.connections]);
  while (all().length > 0) {
    for (const c of all()) if (isIdle(c)) closeWith421(c);
    if (Date.now() >= deadline) {
      const left = all();
      if (left.length > 0)
        log.warn({ sessions: left.length }, 'shutdown grace period over; closing sessions in flight');
      for (const c of all()) {
        closeWith421(c);
        c._socket.destroy();
        for (const l of listeners) l.server.connections.delete(c);
      }
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
