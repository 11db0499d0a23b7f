/** pino JSON logs. One root logger made in the entry point; modules get children with their own fields. */
import { pino, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export function makeLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return destination
    ? pino({ level, base: { component: 'operator' } }, destination)
    : pino({ level, base: { component: 'operator' } });
}

/** For unit tests and library use: logs nothing. */
export const silentLogger: Logger = pino({ level: 'silent' });

export const errorMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));
