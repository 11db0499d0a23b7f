#!/usr/bin/env bash
# Quickstart 2 (and what CI runs): install everything the tests need, then lint, format check,
# typecheck, build and run every test level (unit, integration, image, e2e, node).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node.sh
echo "mailfleet: node $(node --version), npm $(npm --version)"
# Each step says how long it took (stderr): a CI log then shows where a cold machine spends its time.
step() {
  local start=$SECONDS
  "$@"
  echo "mailfleet: $* took $((SECONDS - start)) s" >&2
}
step scripts/test-tools.sh
step npm ci --no-audit --no-fund
step npm run lint
step npm run format:check
step npm run typecheck
step npm run build
# The e2e control plane (test/cluster/): built from Go modules into ~/.cache/mailfleet/cluster once
# (about 10 minutes on 2 cores), reused after that.
step bash test/cluster/build.sh >/dev/null
# The real node of the node project's cluster (kubelet, kube-proxy, CoreDNS, pause and their images), and
# the image from the Dockerfile that it runs: both cached, reused after that.
step bash test/cluster/build.sh node >/dev/null
step bash scripts/image.sh >/dev/null
# promtool for the alert-rule tests (test/tools/promtool/): built once into ~/.cache/mailfleet/tools
# (about 4 CPU-minutes cold), reused after that.
step bash test/tools/promtool/build.sh >/dev/null
step npm test
