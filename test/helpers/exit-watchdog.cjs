// Armed by the globalTeardowns (they run in jest's main process, after every test): if that process is
// still alive minutes later, something a globalSetup or globalTeardown started is still open (a child
// process, a socket, a timer), and jest would wait for it forever: CI would hang until its time limit.
// This turns that into a failure that names what is open. The timer is unref'd: a process that can
// exit exits at once, and this never fires.
const GRACE_MS = 5 * 60 * 1000;

function describe(h) {
  const kind = h?.constructor?.name ?? typeof h;
  if (typeof h?.pid === 'number') return `${kind} pid ${h.pid}: ${(h.spawnargs ?? []).join(' ')}`;
  if (h?.remotePort || h?.localPort)
    return `${kind} ${h.localAddress}:${h.localPort} -> ${h.remoteAddress}:${h.remotePort}`;
  if (kind === 'Socket')
    return `Socket (pipe${typeof h._handle?.fd === 'number' ? ` fd ${h._handle.fd}` : ''})`;
  if (typeof h?.address === 'function') {
    try {
      return `${kind} listening on ${JSON.stringify(h.address())}`;
    } catch {
      return kind;
    }
  }
  if (typeof h?.fd === 'number') return `${kind} fd ${h.fd}`;
  return kind;
}

module.exports = function armExitWatchdog() {
  if (globalThis.mailfleetExitWatchdog) return;
  globalThis.mailfleetExitWatchdog = true;
  setTimeout(() => {
    const open = process._getActiveHandles().map(describe);
    process.stderr.write(
      `\nmailfleet: jest's main process is still running ${GRACE_MS / 1000} s after the last test; ` +
        `open there (left by a globalSetup or globalTeardown): ${JSON.stringify(process.getActiveResourcesInfo())}\n` +
        open.map((d) => `  ${d}\n`).join(''),
    );
    process.exit(1);
  }, GRACE_MS).unref();
};
