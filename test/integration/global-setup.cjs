// Builds dist/ once per test run: integration tests run the relay (and spool writers) as real
// processes from the compiled output, exactly as a user runs `mailfleet-relay`.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

module.exports = async function buildOnce() {
  const root = path.join(__dirname, '..', '..');
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
};
