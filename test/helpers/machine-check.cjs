// Stops a test run at its start when the machine lacks a peer or a capability the tests rely on
// (swaks without TLS, no smtp-sink, Go too old, ...), with the lines scripts/test-tools.sh prints
// naming what to install, instead of tests failing obscurely minutes later. The integration and e2e
// globalSetups call it; scripts/test.sh runs scripts/test-tools.sh (which installs) before jest.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

module.exports = function checkMachine(root) {
  const r = spawnSync('bash', [path.join(root, 'scripts/test-tools.sh'), '--check'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`this machine cannot run the tests yet:\n${r.stderr || r.stdout}`);
  }
};
