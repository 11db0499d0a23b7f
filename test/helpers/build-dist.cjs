// Compiles entry points (and everything they import) into dist/ with tsconfig.build.json's options,
// failing on any type error in those files. The integration and e2e projects' globalSetups use it: their
// tests run the relay and the operator as real processes from dist/, and must not run one older than
// the sources. Files outside the entries' import graph are not checked here (`npm run typecheck` does).
const path = require('node:path');
const ts = require('typescript');

/** Builds `entries` (paths relative to `root`); `label` prefixes the messages. */
module.exports = function buildDist(root, entries, label) {
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
  if (!parsed) throw new Error(`${label}: cannot read tsconfig.build.json`);
  // Not incremental on purpose: a build info file would skip emitting into a dist/ that another
  // `npm run build` rewrote meanwhile (several people and runs share dist/ in one tree).
  const program = ts.createProgram({
    rootNames: entries.map((f) => path.join(root, f)),
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
    throw new Error(`${label}: build failed:\n${ts.formatDiagnosticsWithColorAndContext(diagnostics, host)}`);
  }
  return Date.now() - started;
};
