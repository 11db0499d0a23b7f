// Builds the relay into dist/ once per test run: integration tests run the relay (and spool writers) as
// real processes from the compiled output, exactly as a user runs `mailfleet-relay`.
//
// It compiles relay/cli.ts and everything it imports (the whole relay: listeners, spool, delivery, …)
// with tsconfig.build.json's options, and fails on any type error in those files. Files outside the
// relay's import graph (the operator) are not this project's concern: `npm run typecheck` and
// `npm run build` check them in CI, and an operator change in progress must not stop relay tests.
const path = require('node:path');
const ts = require('typescript');

module.exports = async function buildRelayOnce() {
  const root = path.join(__dirname, '..', '..');
  const started = Date.now();
  const parsed = ts.getParsedCommandLineOfConfigFile(
    path.join(root, 'tsconfig.build.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  );
  // Not incremental on purpose: a build info file would skip emitting into a dist/ that another
  // `npm run build` rewrote meanwhile (several people and runs share dist/ in one tree).
  const program = ts.createProgram({
    rootNames: [path.join(root, 'relay/cli.ts')],
    options: parsed.options,
  });
  const emitted = program.emit();
  const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics);
  if (diagnostics.length > 0) {
    const host = {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => root,
      getNewLine: () => '\n',
    };
    throw new Error(`relay build failed:\n${ts.formatDiagnosticsWithColorAndContext(diagnostics, host)}`);
  }
  process.stderr.write(`\nintegration: relay built into dist/ in ${Date.now() - started} ms\n`);
};
