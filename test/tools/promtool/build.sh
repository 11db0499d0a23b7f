#!/usr/bin/env bash
# Builds promtool from the pinned Prometheus module (go.mod beside this script) into a cache outside the
# repository and prints its path. Reused when present: the cache key is the Prometheus version plus a
# hash of go.mod, go.sum, this script and the Go version, so changing the pin builds a new binary and
# never reuses a stale one.
#
#   test/tools/promtool/build.sh            # build if needed, print the binary's path
#   test/tools/promtool/build.sh --locate   # print the path if built; exit 3 with a message if not
#   MAILFLEET_TOOLS_CACHE=/some/dir ...     # another cache root (default ~/.cache/mailfleet/tools)
#
# Built with -tags remove_all_sd: promtool's rule checks need no service-discovery plugins (AWS, Azure,
# GCE, ...), and leaving them out roughly halves the cold build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-build}"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
command -v go >/dev/null 2>&1 || { echo "mailfleet: promtool builds with Go; install Go >= 1.26" >&2; exit 1; }
version="$(sed -n 's|^[[:space:]]*\(require[[:space:]]\+\)\{0,1\}github.com/prometheus/prometheus \(v[^[:space:]]*\).*|\2|p' "$here/go.mod")"
[ -n "$version" ] || { echo "mailfleet: no github.com/prometheus/prometheus pin in $here/go.mod" >&2; exit 1; }
key="$({ go version; cat "$here/go.mod" "$here/go.sum" "$here/build.sh"; } | sha256sum | cut -c1-12)"
root="${MAILFLEET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet/tools}"
dir="$root/promtool-$version-$key"
if [ -x "$dir/promtool" ]; then
  echo "$dir/promtool"
  exit 0
fi
if [ "$mode" = --locate ]; then
  echo "mailfleet: promtool (prometheus module $version) is not built; run test/tools/promtool/build.sh (about 4 CPU-minutes cold)" >&2
  exit 3
fi
[ "$mode" = build ] || { echo "mailfleet: unknown argument $mode (use --locate or nothing)" >&2; exit 2; }
mkdir -p "$dir"
# One build at a time (parallel test workers or shells may ask at once); the others reuse its result.
exec 9>"$root/.promtool.lock"
flock 9
if [ ! -x "$dir/promtool" ]; then
  echo "mailfleet: building promtool (prometheus module $version) into $dir" >&2
  start=$SECONDS
  tmp="$dir/promtool.partial"
  # Module v0.3MM.P is Prometheus 3.MM.P: stamp it so `promtool --version` says which rules engine runs.
  release="3.${version#v0.3}"
  (cd "$here" && go build -trimpath -tags remove_all_sd -o "$tmp" \
    -ldflags="-s -X github.com/prometheus/common/version.Version=$release" github.com/prometheus/prometheus/cmd/promtool)
  "$tmp" --version >/dev/null
  mv "$tmp" "$dir/promtool"
  echo "mailfleet: promtool built in $((SECONDS - start)) s" >&2
fi
echo "$dir/promtool"
