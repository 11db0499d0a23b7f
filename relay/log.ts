/**
 * Structured JSON logs (pino), one line per event on stdout.
 *
 * Lines are written when the event loop's current turn ends, all lines of the turn in one write(2)
 * (under load a turn logs for many messages; a write per line cost ~2% of the relay's CPU, ADR 41),
 * and at process exit. What a killed process (SIGKILL, OOM) loses is at most the lines of its last turn.
 *
 * Conventions: `msg` is a short constant phrase, details go in fields; `event` names the lines other
 * programs wait for ("ready", "stopped", "config_reloaded"). Passwords never reach a log call: AUTH
 * handling logs the username and the outcome only, and the redact list below is a backstop for fields
 * that could carry secrets.
 */
import { writeSync } from 'node:fs';
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
    opts.destination ?? stdoutByTurn(),
  );
}

/** A turn that logs more than this writes as it goes. */
const TURN_BUFFER_BYTES = 64 * 1024;
/** How long to wait for a full pipe (stdout read by a slow collector) before writing again. */
const FULL_PIPE_WAIT_MS = 10;

/** stdout, written at the end of each event-loop turn and at exit (see the header). */
function stdoutByTurn(): pino.DestinationStream {
  let pending: string[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const data = Buffer.from(pending.join(''), 'utf8');
    pending = [];
    bytes = 0;
    writeFully(1, data);
  };
  process.on('exit', flush);
  return {
    write(line: string) {
      pending.push(line);
      bytes += line.length;
      if (bytes >= TURN_BUFFER_BYTES) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
  };
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** write(2) until all of `data` is out; a full non-blocking pipe is waited for, a closed one dropped. */
function writeFully(fd: number, data: Buffer): void {
  let done = 0;
  while (done < data.length) {
    try {
      done += writeSync(fd, data, done);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EBUSY') return; // EPIPE: nobody reads the log any more
      Atomics.wait(pause, 0, 0, FULL_PIPE_WAIT_MS);
    }
  }
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
