/**
 * Reads what `strace -f -yy -o FILE` recorded of a process, as one list of system calls in the order
 * they happened. The order is causal: a traced thread is stopped at every entry and exit until strace has
 * written the line, so a call that returned before another began is written before it.
 *
 *   strace -f -qq -yy -s 2048 -e trace=<STRACE_CALLS> -o FILE node ...
 *   const calls = parseStrace(await fs.readFile(FILE, 'utf8'));
 *   calls.filter((c) => c.name === 'fsync' && c.fd?.path === dir)
 *
 * A call interrupted by another thread's ("fsync(3 <unfinished ...>" then "<... fsync resumed>) = 0")
 * becomes one entry with `start` (entry line) and `end` (exit line). With -yy every fd argument carries
 * what it is: `22</spool/queue/ID>`, `25<TCP:[127.0.0.1:2525->127.0.0.1:40000]>`, `1<pipe:[123]>`.
 */

/** What the durability checks look at: creating, writing, syncing, renaming files; socket writes. */
export const STRACE_CALLS = [
  'openat',
  'mkdir',
  'mkdirat',
  'write',
  'writev',
  'pwrite64',
  'pwritev',
  'pwritev2',
  'sendmsg',
  'sendto',
  'fsync',
  'fdatasync',
  'rename',
  'renameat',
  'renameat2',
  'link',
  'linkat',
  'unlink',
  'unlinkat',
  'close',
].join(',');

export interface Fd {
  fd: number;
  /** What -yy says the fd is: a path, "TCP:[a:p->b:q]", "pipe:[n]", ... */
  path: string;
}

export interface Syscall {
  tid: number;
  name: string;
  /** Argument text as strace printed it. */
  args: string;
  /** Return text: "0", "-1 ENOSPC (No space left on device)", "22</path>" ... */
  ret: string;
  /** The first argument when it is an fd. */
  fd?: Fd;
  /** The fd an openat returned. */
  opened?: Fd;
  /** Line index of the entry and of the return. */
  start: number;
  end: number;
}

const FD = /^(\d+)<((?:[^>[]|\[[^\]]*\])*)>/;

function fdOf(text: string): Fd | undefined {
  const m = FD.exec(text.trim());
  return m ? { fd: Number(m[1]), path: m[2]! } : undefined;
}

function complete(tid: number, name: string, body: string, start: number, end: number): Syscall | undefined {
  // ") = 0", padded with spaces when strace aligns the return column
  const ends = [...body.matchAll(/\) +=  *(?=\S)/g)];
  const last = ends[ends.length - 1];
  if (!last) return undefined; // e.g. exit_group: no return
  const args = body.slice(0, last.index);
  const ret = body.slice(last.index + last[0].length).trim();
  const call: Syscall = { tid, name, args, ret, start, end };
  const fd = fdOf(args);
  if (fd) call.fd = fd;
  if (name === 'openat') {
    const opened = fdOf(ret);
    if (opened) call.opened = opened;
  }
  return call;
}

export function parseStrace(text: string): Syscall[] {
  const out: Syscall[] = [];
  const pending = new Map<number, { name: string; body: string; start: number }>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\d+) +(?:\d\d:\d\d:\d\d\.\d+ +)?(.*)$/.exec(lines[i]!);
    if (!m) continue;
    const tid = Number(m[1]);
    const rest = m[2]!;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed) {
      const p = pending.get(tid);
      pending.delete(tid);
      if (!p || p.name !== resumed[1]) continue;
      const call = complete(tid, p.name, p.body + resumed[2]!, p.start, i);
      if (call) out.push(call);
      continue;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished) {
      pending.set(tid, { name: unfinished[1]!, body: unfinished[2]!, start: i });
      continue;
    }
    const whole = /^(\w+)\((.*)$/.exec(rest);
    if (whole) {
      const call = complete(tid, whole[1]!, whole[2]!, i, i);
      if (call) out.push(call);
    }
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The string arguments of a call, unescaped enough to compare paths ("/a/b" → /a/b). */
export function stringArgs(call: Syscall): string[] {
  return [...call.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"'));
}

export const FILE_WRITES = new Set(['write', 'writev', 'pwrite64', 'pwritev', 'pwritev2']);
export const SOCKET_WRITES = new Set(['write', 'writev', 'sendmsg', 'sendto']);
export const succeeded = (c: Syscall) => !c.ret.startsWith('-1');
