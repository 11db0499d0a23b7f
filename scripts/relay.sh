#!/usr/bin/env bash
# Quickstart 1: install, build and start the relay standalone on its embedded default config
# (loopback, unprivileged ports, spool under ./.spool). Extra arguments go to mailfleet-relay.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node.sh
[ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run --silent build
exec node dist/relay/cli.js "$@"
