/**
 * A bare smtp-server that accepts every message and discards it: the reference for what the SMTP
 * library alone costs, without policy, spool or delivery.
 *
 *   node bare-server.js library PORT   smtp-server with its defaults (authOptional only)
 *   node bare-server.js adapter PORT   mailfleet's adapter (RelayServer: no 100 ms greeting pause) and
 *                                      no reverse DNS lookup, as the relay's listeners run it
 *
 * With a new connection per message, `library` is held back by SMTPConnection.init(), which waits a
 * fixed 100 ms before the 220 greeting (to catch "early talkers"), and by a reverse DNS lookup of every
 * client (dns.reverse, up to 1.5 s). Neither costs CPU, so the server sits idle while clients wait:
 * 20 sessions × (1 / ~0.1 s) ≈ 200 connections, hence messages, per second.
 */
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { RelayServer } from '../../relay/smtp/connection.js';

const [variant, portArg] = process.argv.slice(2);
const port = Number(portArg);
if ((variant !== 'library' && variant !== 'adapter') || !(port > 0)) {
  console.error('usage: bare-server.js library|adapter PORT');
  process.exit(2);
}

const options: SMTPServerOptions = {
  authOptional: true,
  logger: false,
  onData(stream, _session, callback) {
    stream.on('end', () => callback());
    stream.resume();
  },
};

const server =
  variant === 'library'
    ? new SMTPServer(options)
    : new RelayServer(
        { ...options, disableReverseLookup: true, disabledCommands: ['AUTH'] },
        { name: 'relay', authRequiresTls: false },
      );
server.on('error', () => undefined);
server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port} (${variant})`));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
