#!/usr/bin/env bash
# What the test suite takes from the machine, each checked for the capability the tests use (not only
# that a command exists), and installed from Debian when it is missing or incomplete.
#
#   scripts/test-tools.sh           install what is missing (needs root and apt-get only then), check all
#   scripts/test-tools.sh --check   check only; the integration and e2e globalSetups run this, so a bare
#                                   `npm test` stops at the start, naming what to install
#
# A requirement that still fails prints one line: what is missing and the package that provides it.
# Add a requirement here, next to the others, when a test starts relying on something new.
set -euo pipefail
mode="${1:-install}"
case "$mode" in install | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")/.." && pwd)"

# --- checks: each returns 0 when the capability is there -----------------------------------------

# swaks as the tests run it: --tls/--tlsc need Net::SSLeay (a Recommends that --no-install-recommends
# leaves out), --auth LOGIN/PLAIN need its basic AUTH. `--support` prints what it can do.
swaks_tls() {
  command -v swaks >/dev/null 2>&1 || return 1
  local s
  s="$(swaks --support 2>&1)" || return 1
  grep -qx '=== TLS supported' <<<"$s" && grep -qx '=== Basic AUTH supported' <<<"$s"
}
# Postfix's smtp-sink (downstream server) and smtp-source (bench load): the Postfix daemon is never started.
smtp_sink_source() { [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; }
# strace records the relay's system calls (test/integration/durability.test.ts): following threads (-f),
# fds decoded with their paths and sockets (-yy), only the traced calls stopped (--seccomp-bpf). Fails
# where ptrace is not allowed (a container without CAP_SYS_PTRACE), not only where strace is missing.
strace_follows() {
  command -v strace >/dev/null 2>&1 &&
    strace -f -qq -yy --seccomp-bpf -e trace=write,fsync -o /dev/null sh -c 'echo ok >/dev/null' 2>/dev/null
}
# The spool's fault tests: an immutable file (chattr +i) that even root cannot unlink, in the directory
# the tests use, and a size-limited tmpfs mounted and unmounted (root with CAP_SYS_ADMIN).
immutable_files() {
  local d rc=1
  d="$(mktemp -d "${TMPDIR:-/tmp}/mailfleet-chattr.XXXXXX")" || return 1
  if touch "$d/f" && chattr +i "$d/f" 2>/dev/null; then
    rm -f "$d/f" 2>/dev/null || rc=0
    chattr -i "$d/f"
  fi
  rm -rf "$d"
  return $rc
}
small_tmpfs() {
  local d rc=1
  d="$(mktemp -d "${TMPDIR:-/tmp}/mailfleet-tmpfs.XXXXXX")" || return 1
  if mount -t tmpfs -o size=1m mailfleet-check "$d" 2>/dev/null; then
    [ "$(df -Pk "$d" | awk 'NR == 2 { print $2 }')" = 1024 ] && rc=0
    umount "$d"
  fi
  rmdir "$d"
  return $rc
}
# redis-server for the fleet store's tests (test/helpers/redis.ts): Redis 7 or newer (the store's Lua uses
# redis.call('TIME') inside scripts that write, which needs 5+ and effects replication; 7 is what issue 14
# names), able to start here and run a script. It listens on a Unix socket in a temp dir only, so the
# check needs no free port; redis-cli (redis-tools) talks to it. Debian's daemon is never started.
redis_server() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || return 1
  local v d pid i rc=1
  v="$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\) .*/\1/p')"
  [ -n "$v" ] && [ "$(printf '7.0.0\n%s\n' "$v" | sort -V | head -1)" = 7.0.0 ] || return 1
  d="$(mktemp -d "${TMPDIR:-/tmp}/mailfleet-redis.XXXXXX")" || return 1
  redis-server --port 0 --unixsocket "$d/s" --dir "$d" --save '' --appendonly no --daemonize no \
    --logfile "$d/log" >/dev/null 2>&1 &
  pid=$!
  for i in $(seq 50); do
    [ "$(redis-cli -s "$d/s" eval "return redis.call('TIME')[1] and 'ok'" 0 2>/dev/null)" = ok ] && rc=0 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -rf "$d"
  return $rc
}
# flock serialises the cached Go builds; setpriv ties the test cluster's processes to jest's life.
util_linux() { command -v flock >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1; }
# The e2e control plane and promtool build from Go modules with the Go in test/cluster/go.mod or newer.
go_version() {
  local go=go want have
  command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
  [ -x "$(command -v "$go")" ] || return 1
  want="$(awk '$1 == "go" { print $2; exit }' "$here/test/cluster/go.mod")"
  have="$("$go" env GOVERSION 2>/dev/null)" || return 1
  have="${have#go}"
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]
}
# The real node of the e2e cluster (test/cluster/node.ts): containerd and its ctr, runc, the CNI plugins
# the node's network uses, iptables for kube-proxy inside a network namespace of its own, iproute2 and
# nsenter to make and enter that namespace, umoci to pack the node's own images; all of it as root.
container_runtime() {
  command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 && runc --version >/dev/null 2>&1
}
cni_plugins() { local p; for p in bridge host-local portmap loopback; do [ -x "/usr/lib/cni/$p" ] || return 1; done; }
netns_iptables() {
  [ "$(id -u)" = 0 ] && command -v nsenter >/dev/null 2>&1 && unshare --net sh -c 'ip link set lo up && iptables -w -t nat -N MAILFLEET_CHECK' >/dev/null 2>&1
}
umoci_present() { command -v umoci >/dev/null 2>&1; }
# overlayfs for containerd's snapshots and cgroup hierarchies for the kubelet: the kernel's, not a package.
kernel_features() { grep -qw overlay /proc/filesystems && grep -q ' cgroup' /proc/self/mountinfo; }
# The image tests (test/image) run the image with podman and enter its network namespace with nsenter.
podman_nsenter() { podman info >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1; }
# Free space where the cold builds (Go's module and build caches, ~/.cache/mailfleet) and the tests'
# spools and cluster state (/tmp) go. Measured cold: about 6 GiB for the caches.
free_gib() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print int($4 / 1048576) }'; }
disk_space() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}"
  mkdir -p "$cache"
  [ "$(free_gib "$cache")" -ge 8 ] && [ "$(free_gib "${TMPDIR:-/tmp}")" -ge 2 ]
}

# --- requirements: check | Debian packages that provide it (empty: not installable here) | what -----
requirements=(
  "swaks_tls|swaks libnet-ssleay-perl libio-socket-ssl-perl|swaks with TLS and AUTH (swaks --support: 'TLS supported')"
  "smtp_sink_source|postfix|Postfix's /usr/sbin/smtp-sink and /usr/sbin/smtp-source"
  "redis_server|redis-server redis-tools|redis-server 7 or newer that starts here and runs Lua (the fleet store's tests)"
  "util_linux|util-linux|flock and setpriv"
  "immutable_files|e2fsprogs|chattr +i making a file impossible to unlink under ${TMPDIR:-/tmp}"
  "small_tmpfs||mounting a size-limited tmpfs (run the tests as root with CAP_SYS_ADMIN)"
  "strace_follows|strace|strace able to trace a process and its threads here (strace -f -yy --seccomp-bpf)"
  "container_runtime|containerd runc|containerd, ctr and runc (the real node)"
  "cni_plugins|containernetworking-plugins|the CNI plugins bridge, host-local, portmap and loopback in /usr/lib/cni (the real node)"
  "netns_iptables|iptables iproute2 util-linux|root, and iptables working inside a new network namespace (the real node)"
  "umoci_present|umoci|umoci (packs the real node's images)"
  "kernel_features||a kernel with overlayfs and cgroups mounted (the real node)"
  "podman_nsenter|podman util-linux|podman that runs containers (podman info) and nsenter"
  "go_version||Go $(awk '$1 == "go" { print $2; exit }' "$here/test/cluster/go.mod") or newer (https://go.dev/dl/, with the Go module proxy reachable)"
  "disk_space||8 GiB free under ${XDG_CACHE_HOME:-$HOME/.cache} and 2 GiB under ${TMPDIR:-/tmp}"
)

failing() {
  local r
  for r in "${requirements[@]}"; do
    IFS='|' read -r check _ _ <<<"$r"
    "$check" || echo "$r"
  done
}

report() {
  local r check pkgs what
  while IFS= read -r r; do
    [ -n "$r" ] || continue
    IFS='|' read -r check pkgs what <<<"$r"
    if [ -n "$pkgs" ]; then
      echo "mailfleet: the tests need $what: install the Debian packages $pkgs (scripts/test-tools.sh does, as root)" >&2
    else
      echo "mailfleet: the tests need $what" >&2
    fi
  done <<<"$1"
}

missing="$(failing)"
[ -z "$missing" ] && exit 0
if [ "$mode" = --check ]; then
  report "$missing"
  exit 1
fi

pkgs=()
while IFS='|' read -r _ p _; do
  [ -n "$p" ] && read -ra more <<<"$p" && pkgs+=("${more[@]}")
done <<<"$missing"
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    report "$missing"
    echo "mailfleet: cannot install them here (needs root and apt-get)" >&2
    exit 1
  fi
  echo "mailfleet: installing ${pkgs[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The postinsts of postfix and redis-server must not start a mail system or a Redis daemon on the
  # machine (invoke-rc.d asks policy-rc.d; 101 = not allowed, and the install still succeeds).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi
# Check again: a package that installed but still lacks the capability must stop the run here.
missing="$(failing)"
[ -z "$missing" ] && exit 0
report "$missing"
exit 1
