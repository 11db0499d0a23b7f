/**
 * Structured JSON logs (pino), one line per event on stdout.
 *
 * Conventions: `msg` is a short constant phrase, details go in fields; `event` names the lines other
 * programs wait for ("ready", "stopped", "config_reloaded"). Passwords never reach a log call: AUTH
 * handling logs the username and the outcome only, and the redact list below is a backstop for fields
 * that could carry secrets.
 */
import pino, { type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: LevelWithSilent; destination?: pino.DestinationStream } = {}) {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'mailfleet-relay', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'auth.password'], censor: '[redacted]' },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
