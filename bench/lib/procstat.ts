/**
 * CPU time and memory of a process tree, read from /proc (Linux only).
 *
 * CPU: the sum over the live tree of utime + stime + cutime + cstime. When a process exits and its
 * parent reaps it, its own and its reaped children's times move into the parent's cutime/cstime, so the
 * sum is conserved as long as the tree's processes reap their children (Postfix's master, Haraka's
 * cluster master and node do). The difference between two samples is the CPU the tree used in between,
 * including short-lived children (Postfix's smtpd, cleanup, smtp...).
 *
 * Memory: the sums of RSS and of PSS (smaps_rollup) over the live tree, sampled every `intervalMs`; the
 * peak is the largest sum seen (a sum of per-process peaks would overstate it). For a tree of many
 * processes (Postfix, Haraka's cluster) the RSS sum counts shared pages — libraries, the node binary —
 * once per process; PSS divides each shared page among the processes that map it, so its sum is the
 * tree's real footprint. For a single process the two differ by its share of shared libraries.
 */
import fs from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86_64/arm64
const PAGE = 4096;

interface ProcInfo {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
  rssBytes: number;
  pssBytes: number;
}

function readPss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

function readProc(pid: number): ProcInfo | undefined {
  let stat: string;
  let statm: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    statm = fs.readFileSync(`/proc/${pid}/statm`, 'latin1');
  } catch {
    return undefined; // gone
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const ppid = Number(rest[1]);
  const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  const rssPages = Number(statm.split(' ')[1]);
  return { pid, ppid, ticks, rssBytes: rssPages * PAGE, pssBytes: NaN };
}

/** Every live process in the tree rooted at `root` (root included when alive). */
export function processTree(root: number): ProcInfo[] {
  const all = new Map<number, ProcInfo>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (p) all.set(p.pid, p);
  }
  const children = new Map<number, number[]>();
  for (const p of all.values()) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const out: ProcInfo[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    const p = all.get(pid);
    if (!p) continue;
    out.push(p);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

export interface TreeSample {
  cpuSeconds: number;
  rssBytes: number;
  pssBytes: number;
  processes: number;
}

export function sampleTree(root: number): TreeSample {
  const tree = processTree(root);
  return {
    cpuSeconds: tree.reduce((s, p) => s + p.ticks, 0) / CLK_TCK,
    rssBytes: tree.reduce((s, p) => s + p.rssBytes, 0),
    pssBytes: tree.reduce((s, p) => s + (readPss(p.pid) || p.rssBytes), 0),
    processes: tree.length,
  };
}

export interface TreeUsage {
  cpuSeconds: number;
  peakRssBytes: number;
  peakPssBytes: number;
  /** RSS and PSS at the start of the window. */
  startRssBytes: number;
  startPssBytes: number;
  /** RSS samples over the window: [ms since start, bytes]. */
  rssSeries: [number, number][];
  peakProcesses: number;
}

/** Samples a process tree until stop(); stop() returns what the tree used in the window. */
export class TreeSampler {
  private readonly start: TreeSample;
  private readonly startedAt = Date.now();
  private peak: number;
  private peakPss: number;
  private peakProcesses: number;
  private readonly series: [number, number][] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly root: number,
    intervalMs = 100,
  ) {
    this.start = sampleTree(root);
    this.peak = this.start.rssBytes;
    this.peakPss = this.start.pssBytes;
    this.peakProcesses = this.start.processes;
    this.series.push([0, this.start.rssBytes]);
    this.timer = setInterval(() => this.tick(), intervalMs);
  }

  private tick(): TreeSample {
    const s = sampleTree(this.root);
    this.peak = Math.max(this.peak, s.rssBytes);
    this.peakPss = Math.max(this.peakPss, s.pssBytes);
    this.peakProcesses = Math.max(this.peakProcesses, s.processes);
    this.series.push([Date.now() - this.startedAt, s.rssBytes]);
    return s;
  }

  stop(): TreeUsage {
    clearInterval(this.timer);
    const end = this.tick();
    return {
      cpuSeconds: Math.max(0, end.cpuSeconds - this.start.cpuSeconds),
      peakRssBytes: this.peak,
      peakPssBytes: this.peakPss,
      startRssBytes: this.start.rssBytes,
      startPssBytes: this.start.pssBytes,
      rssSeries: this.series,
      peakProcesses: this.peakProcesses,
    };
  }
}
