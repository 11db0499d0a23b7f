# shellcheck shell=bash
# Sourced by the project's scripts: puts a Node.js >= 22.19 on PATH. When the machine's node is older
# (or missing), Node 24 LTS is provisioned from the npm registry's node-linux-<arch> package into
# ~/.cache/mailfleet and reused after that; nothing else is downloaded.
MAILFLEET_NODE_VERSION="${MAILFLEET_NODE_VERSION:-24.21.0}"

mailfleet_node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)'
}

if ! mailfleet_node_ok; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "mailfleet: unsupported machine $(uname -m); install Node.js >= 22.19 yourself" >&2; return 1 ;;
  esac
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet"
  dir="$cache/node-$MAILFLEET_NODE_VERSION-$arch"
  if [ ! -x "$dir/bin/node" ]; then
    command -v npm >/dev/null 2>&1 || { echo "mailfleet: need npm (any version) to fetch Node $MAILFLEET_NODE_VERSION" >&2; return 1; }
    echo "mailfleet: provisioning Node $MAILFLEET_NODE_VERSION from the npm registry into $dir" >&2
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$MAILFLEET_NODE_VERSION" >/dev/null) || { rm -rf "$tmp"; return 1; }
    mkdir -p "$dir.partial" && tar xzf "$tmp"/node-linux-*.tgz -C "$dir.partial" --strip-components=1 && rm -rf "$dir" && mv "$dir.partial" "$dir"
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
fi
