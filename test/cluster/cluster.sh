#!/usr/bin/env bash
# `npm run cluster:up|cluster:down|cluster:status`: the e2e control plane by hand (see README, "Running a
# cluster by hand"). `up` builds the binaries first when they are missing (about 10 minutes cold).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/node.sh
if [ "${1:-}" = up ]; then
  bash test/cluster/build.sh >/dev/null
  case " $* " in *" --real-node "*) bash test/cluster/build.sh node >/dev/null ;; esac
fi
npx tsc -p test/cluster/tsconfig.cli.json
exec node test/cluster/.build/js/cli.js "$@"
