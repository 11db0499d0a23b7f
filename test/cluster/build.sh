#!/usr/bin/env bash
# Builds the e2e control plane (test/cluster/kubetools: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm at the versions pinned in test/cluster/go.mod) into a cache
# outside the repository, or reuses the build already there, and prints its bin directory on stdout.
#
#   build.sh            build if missing, print the bin directory
#   build.sh --locate   print the bin directory if it is built; exit 3 with a message if not
#   build.sh node [--locate]
#                       the same for the real node (node/: kubelet, kube-proxy and local-provisioner as one
#                       binary, pause, CoreDNS from node/coredns), plus images/pause.tar and
#                       images/coredns.tar (OCI archives made with Debian's umoci) beside its bin directory
#
# The cache directory is keyed by everything that changes the binaries: go.mod, go.sum, the kubetools
# sources, the build flags and the Go version. Override its parent with MAILFLEET_CLUSTER_CACHE.
# Needs Go (the version in go.mod's go line or newer) and the Go module proxy; the node's images also umoci.
# node/go.mod pins k8s.io/kubernetes to the same version as go.mod (its own module keeps the provisioner
# library's dependencies out of the control plane's); the build refuses to run when the two differ.
# (All code is in functions, so editing this file while it runs cannot change what a running build does.)
set -euo pipefail

die() {
  echo "mailfleet cluster: $*" >&2
  exit 1
}

# Sets kube_version, helm_version, programs, buildflags, dir, bin.
configure() {
  kube_version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod)"
  helm_version="$(awk '$1 == "helm.sh/helm/v4" { print $2 }' go.mod)"
  programs=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwok-stages helm)
  local ldflags=(-s -w) pkg minor="${kube_version#v1.}"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=(
      "-X $pkg.gitVersion=$kube_version"
      "-X $pkg.gitMajor=1"
      "-X $pkg.gitMinor=${minor%%.*}"
      "-X $pkg.gitTreeState=clean"
    )
  done
  ldflags+=("-X helm.sh/helm/v4/internal/version.version=$helm_version")
  # No DWARF at all: the linker strips it anyway (-s -w), and not generating it saves about a tenth of
  # the compile time (measured on kubectl's 700 packages, cold cache: 173 s CPU against 196 s).
  buildflags=(-trimpath -gcflags=all=-dwarf=false "-ldflags=${ldflags[*]}")
  local key
  key="$(
    {
      go version
      echo "${buildflags[*]} ${programs[*]} $CGO_ENABLED"
      cat go.mod go.sum kubetools/*.go
    } | sha256sum | cut -c1-16
  )"
  dir="$cache/kube-$kube_version-$key"
  bin="$dir/bin"
}

build() {
  echo "mailfleet cluster: building Kubernetes $kube_version control plane, etcd, kwok, helm $helm_version into $dir" >&2
  local start=$SECONDS tmp="$dir.partial" p
  rm -rf "$tmp"
  mkdir -p "$tmp/bin"
  # One multi-call binary: the programs share most packages, and one link costs less than seven
  # (measured: 16 s for this link against 38 s for seven separate binaries, same package cache).
  go build "${buildflags[@]}" -o "$tmp/bin/kubetools" ./kubetools
  for p in "${programs[@]}"; do ln -s kubetools "$tmp/bin/$p"; done
  "$tmp/bin/kube-apiserver" --version >/dev/null
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "kube=$kube_version helm=$helm_version go=$(go env GOVERSION) built_in=$((SECONDS - start))s" >"$dir/complete"
  echo "mailfleet cluster: built in $((SECONDS - start)) s" >&2
  # Keep the three newest builds (other checkouts may pin other versions); older ones go, and so do
  # the leftovers of interrupted builds (we hold the lock, so no other build is running).
  ls -1dt "$cache"/kube-*/ 2>/dev/null | grep -v '\.partial/$' | tail -n +4 | xargs -r rm -rf
  rm -rf "$cache"/kube-*.partial
}

# Sets dir and bin for the real node's build.
configure_node() {
  local node_kube
  node_kube="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' node/go.mod)"
  [ "$node_kube" = "$kube_version" ] ||
    die "node/go.mod pins k8s.io/kubernetes $node_kube but go.mod pins $kube_version: pin both to the same version"
  local key
  key="$(
    {
      go version
      echo "${buildflags[*]} $CGO_ENABLED"
      cat node/go.mod node/go.sum node/coredns/go.mod node/coredns/go.sum
      cat node/kubenode/*.go node/pause/*.go node/coredns/*.go
      declare -f build_node pack_image
    } | sha256sum | cut -c1-16
  )"
  dir="$cache/node-$kube_version-$key"
  bin="$dir/bin"
}

# An OCI archive of one static binary as the image's entrypoint (umoci, from Debian): $1 binary, $2 tag,
# $3 archive, $4 user.
pack_image() {
  local binary="$1" tag="$2" out="$3" user="$4" work
  work="$(mktemp -d)"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
  install -m 0755 "$binary" "$work/bundle/rootfs/$(basename "$binary")"
  umoci repack --image "$work/layout:$tag" "$work/bundle"
  umoci config --image "$work/layout:$tag" --config.entrypoint "/$(basename "$binary")" --config.user "$user" \
    --architecture amd64 --os linux
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$out" .
  rm -rf "$work"
}

build_node() {
  echo "mailfleet cluster: building the real node (kubelet, kube-proxy $kube_version, CoreDNS, pause) into $dir" >&2
  command -v umoci >/dev/null 2>&1 || die "the node's images need umoci (Debian package umoci; scripts/test-tools.sh installs it)"
  local start=$SECONDS tmp="$dir.partial" p
  rm -rf "$tmp"
  mkdir -p "$tmp/bin" "$tmp/images"
  (cd node && go build "${buildflags[@]}" -o "$tmp/bin/kubenode" ./kubenode)
  for p in kubelet kube-proxy local-provisioner; do ln -s kubenode "$tmp/bin/$p"; done
  (cd node && go build -trimpath -ldflags="-s -w" -o "$tmp/bin/pause" ./pause)
  (cd node/coredns && go build -trimpath -ldflags="-s -w" -o "$tmp/bin/coredns" .)
  "$tmp/bin/kubelet" --version >/dev/null
  "$tmp/bin/coredns" -version >/dev/null
  pack_image "$tmp/bin/pause" 1 "$tmp/images/pause.tar" 65535
  pack_image "$tmp/bin/coredns" 1 "$tmp/images/coredns.tar" 65534
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "kube=$kube_version go=$(go env GOVERSION) built_in=$((SECONDS - start))s" >"$dir/complete"
  echo "mailfleet cluster: real node built in $((SECONDS - start)) s" >&2
  ls -1dt "$cache"/node-*/ 2>/dev/null | grep -v '\.partial/$' | tail -n +3 | xargs -r rm -rf
  rm -rf "$cache"/node-*.partial
}

main() {
  local here mode="${1:-build}" what=control-plane
  if [ "$mode" = node ]; then
    what=node
    mode="${2:-build}"
  fi
  here="$(cd "$(dirname "$0")" && pwd)"
  cache="${MAILFLEET_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet/cluster}"
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
  command -v go >/dev/null 2>&1 || die "needs Go on PATH (see test/cluster/go.mod for the version)"
  export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
  cd "$here"
  configure
  [ "$what" = node ] && configure_node

  if [ -f "$dir/complete" ]; then
    echo "$bin"
    return 0
  fi
  if [ "$mode" = --locate ]; then
    if [ "$what" = node ]; then
      echo "mailfleet cluster: the real node's binaries are not built (expected in $dir);" >&2
      echo "mailfleet cluster: run \`bash test/cluster/build.sh node\` (or scripts/test.sh)" >&2
    else
      echo "mailfleet cluster: the control-plane binaries for test/cluster/go.mod are not built (expected in $dir);" >&2
      echo "mailfleet cluster: run \`npm run cluster:build\` (or scripts/test.sh), which needs Go and about 10 minutes cold" >&2
    fi
    exit 3
  fi
  [ "$mode" = build ] || die "unknown argument $mode (use --locate or nothing)"

  mkdir -p "$cache"
  # One build at a time per cache (several checkouts or shells may ask at once); the others then
  # reuse the winner's result.
  exec 9>"$cache/.lock"
  flock 9
  if [ "$what" = node ]; then
    [ -f "$dir/complete" ] || build_node
  else
    [ -f "$dir/complete" ] || build
  fi
  echo "$bin"
}

main "$@"
