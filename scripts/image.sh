#!/usr/bin/env bash
# Builds the mailfleet image from the repository's Dockerfile with the container engine it finds, tags
# it, and on request exports it as an OCI archive (`ctr -n k8s.io images import FILE` takes it as is).
#
#   scripts/image.sh                          build (or reuse) ghcr.io/mailfleet/mailfleet:<package.json version>
#   scripts/image.sh --oci-archive FILE       the same, and write it to FILE as an OCI archive
#   options: --engine podman|buildah|docker   which engine (default: docker if its daemon answers, else
#                                             podman, else buildah; podman is installed when none is)
#            --tag REF                        the image's name (default: the chart's default image)
#            --base auto|public|standin       the base of every stage (default auto: the Dockerfile's
#                                             public node image if it is there or can be pulled, else the
#                                             stand-in below)
#
# Progress goes to stderr; stdout gets where the result is, one line each: `image: REF (ENGINE)` and,
# with --oci-archive, `oci-archive: FILE`.
#
# Caches, under ${MAILFLEET_IMAGE_CACHE:-~/.cache/mailfleet/image}:
#   standin-KEY.tar        the stand-in base's file system, keyed by the Node version, the Debian suite and
#                          mirror, the package list and the functions below that make it;
#   mailfleet-KEY.oci.tar  built images (the newest 3), keyed by every input of the build: the Dockerfile,
#                          .dockerignore, the files the build context takes, the base image's id, the tag,
#                          the engine and the function below that runs the build. An unchanged tree
#                          reuses its image and archive, and says so.
# The engine's own layer cache also keeps `npm ci` when only sources changed.
#
# Needs root for what it installs from Debian (podman; mmdebstrap for the stand-in) and, with podman
# and buildah here, to build. Without root and apt-get it stops with one line naming the package.
#
# The stand-in base (--base standin, or when the Dockerfile's public node:*-trixie-slim cannot be pulled):
# made as the official image is, from what is reachable. Debian trixie minbase by mmdebstrap (as
# debian:trixie-slim, with its dpkg path excludes) plus passwd (groupadd/useradd); Node from the npm
# registry's node-linux-<arch> (as scripts/node.sh fetches it) with the npm and corepack that release
# bundles, laid out in /usr/local as nodejs.org's tarball is; yarn 1.22.22 in /opt; the node user (1000);
# a docker-entrypoint.sh with the official one's behaviour; the official ENTRYPOINT, CMD and ENV. It is
# checked as it is made: node --version, every library Node links resolves (ldd), npm and yarn run.
# Where it differs from the official base, and why that does not matter: docs/adr/0050-image-build.md.
#
# Tried here with podman and buildah. docker is chosen only when its daemon answers, which no machine of
# this project has: that path (docker build, docker import, skopeo to and from OCI archives) is untried.
# (All code is in functions and the last line exits: editing this file while it runs changes nothing.)
set -euo pipefail

die() {
  echo "mailfleet image: $*" >&2
  exit 1
}
say() { echo "mailfleet image: $*" >&2; }

usage() {
  sed -n '/^#   scripts/,/^# Progress/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

# --- machine ----------------------------------------------------------------------------------------

# Installs Debian packages as root, or stops with one line naming them.
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "needs $1: install the Debian packages ${*:2} (scripts/image.sh does, as root with apt-get)"
  fi
  say "installing ${*:2} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed: cannot install ${*:2}"
  apt-get install -y -qq --no-install-recommends "${@:2}" >/dev/null || die "could not install ${*:2} from Debian"
}

# Each engine's capability check: it answers, not only exists.
engine_works() {
  case "$1" in
    docker) command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 ;;
    podman) command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1 ;;
    buildah) command -v buildah >/dev/null 2>&1 && buildah info >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

# Sets engine: the one asked for, else the first that works, else podman installed from Debian. An
# engine that is installed but does not answer stops here with its own error (not installed again).
choose_engine() {
  if [ -z "$engine" ]; then
    for engine in docker podman buildah; do engine_works "$engine" && return 0; done
    engine=podman
  fi
  engine_works "$engine" && return 0
  case "$engine" in
    docker) die "docker does not answer (docker info): start its daemon, or use --engine podman" ;;
    podman | buildah) ;;
    *) die "unknown engine $engine (podman, buildah or docker)" ;;
  esac
  if command -v "$engine" >/dev/null 2>&1; then
    die "$engine is installed but \`$engine info\` fails: $("$engine" info 2>&1 | tail -1)"
  fi
  apt_install "a container engine (docker with a running daemon, podman or buildah)" "$engine"
  engine_works "$engine" || die "$engine is installed but \`$engine info\` fails: $("$engine" info 2>&1 | tail -1)"
}

need_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && mmdebstrap --version >/dev/null 2>&1 && return 0
  apt_install "mmdebstrap to make the stand-in base" mmdebstrap
}

# docker has no OCI-archive export of its own that every version shares: skopeo copies from its daemon.
need_skopeo() {
  command -v skopeo >/dev/null 2>&1 && skopeo --version >/dev/null 2>&1 && return 0
  apt_install "skopeo to move images between docker and OCI archives" skopeo
}

# --- engine operations (podman, buildah, docker) ------------------------------------------------------

image_exists() {
  case "$engine" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

image_id() {
  case "$engine" in
    docker) docker image inspect --format '{{.Id}}' "$1" ;;
    podman) podman image inspect --format '{{.Id}}' "$1" ;;
    buildah) buildah inspect --type image --format '{{.FromImageID}}' "$1" ;;
  esac
}

image_label() {
  case "$engine" in
    docker) docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null ;;
    podman) podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null ;;
    buildah) buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null ;;
  esac
}

# import_rootfs TAR REF: an image of that file system with the official node image's config.
import_rootfs() {
  local changes=(
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "ENV NODE_VERSION=$node_version"
    "ENV YARN_VERSION=$yarn_version"
    'ENTRYPOINT ["docker-entrypoint.sh"]'
    'CMD ["node"]'
  )
  local c args=()
  for c in "${changes[@]}"; do args+=(--change "$c"); done
  case "$engine" in
    docker | podman) "$engine" import "${args[@]}" "$1" "$2" >/dev/null ;;
    buildah)
      local ctr
      ctr="$(buildah from scratch)"
      buildah add --quiet "$ctr" "$1" / >/dev/null
      buildah config --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --env "NODE_VERSION=$node_version" --env "YARN_VERSION=$yarn_version" \
        --entrypoint '["docker-entrypoint.sh"]' --cmd node "$ctr"
      buildah commit --quiet --rm "$ctr" "$2" >/dev/null
      ;;
  esac
}

# save_oci REF FILE and load_oci FILE: an OCI archive whose index names the image REF.
save_oci() {
  case "$engine" in
    docker) skopeo copy -q "docker-daemon:$1" "oci-archive:$2:$1" ;;
    podman) podman save -q --format oci-archive -o "$2" "$1" ;;
    buildah) buildah push -q "$1" "oci-archive:$2:$1" ;;
  esac
}
load_oci() {
  local id
  case "$engine" in
    docker) skopeo copy -q "oci-archive:$1" "docker-daemon:$2" ;;
    podman) id="$(podman pull -q "oci-archive:$1")" && podman tag "$id" "$2" ;;
    buildah) id="$(buildah pull -q "oci-archive:$1")" && buildah tag "$id" "$2" ;;
  esac
}

# build: the Dockerfile with host networking (below), the base chosen, and the inputs' key as a label.
build() {
  local ca_dir='' args=(
    -f "$repo/Dockerfile" -t "$tag"
    --network host
    --label "dev.mailfleet.image.inputs=$inputs_key"
  )
  [ -n "$base_arg" ] && args+=(--build-arg "BASE_IMAGE=$base_arg")
  # npm ci in the build trusts the host's CAs too: behind a TLS-inspecting proxy (as here) the
  # registry's certificate is signed by the proxy's CA, which only the host's trust store has. It is
  # mounted for RUN steps only (not copied) and named by a build-stage ARG: nothing of it is in the image.
  # The mount point is /mnt, empty in Debian's images, so that no trace is left where it was mounted.
  if [ -n "$host_ca" ] && [ "$engine" != docker ]; then
    ca_dir="$(mktemp -d)"
    cp "$host_ca" "$ca_dir/host-ca.crt"
    args+=(-v "$ca_dir:/mnt:ro" --build-arg NODE_EXTRA_CA_CERTS=/mnt/host-ca.crt)
  fi
  local rc=0
  case "$engine" in
    docker) DOCKER_BUILDKIT=1 docker build "${args[@]}" "$repo" >&2 || rc=$? ;;
    podman) podman build --layers "${args[@]}" "$repo" >&2 || rc=$? ;;
    buildah) buildah build --layers "${args[@]}" "$repo" >&2 || rc=$? ;;
  esac
  [ -z "$ca_dir" ] || rm -rf "$ca_dir"
  [ "$rc" = 0 ] || die "$engine could not build $tag (its output is above)"
}

# The host's trust store, for npm in the build: NODE_EXTRA_CA_CERTS, npm's cafile, Debian's or Fedora's bundle.
find_host_ca() {
  local f
  for f in "${NODE_EXTRA_CA_CERTS:-}" "$(npm config get cafile 2>/dev/null || true)" \
    /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -n "$f" ] && [ "$f" != null ] && [ -f "$f" ]; then
      host_ca="$f"
      return 0
    fi
  done
  host_ca=''
}

# --- the stand-in base (see the header) ----------------------------------------------------------------

# standin_node_tree DIR: /usr/local and /opt of the official node image, from npm packages.
standin_node_tree() {
  local dir="$1" dl changelog npm_version corepack_version
  dl="$(mktemp -d)"
  (cd "$dl" && npm pack --silent "node-linux-$ARCH_NODE@$node_version" >/dev/null) ||
    die "npm pack node-linux-$ARCH_NODE@$node_version failed (is the npm registry reachable?)"
  mkdir -p "$dir/usr/local/lib/node_modules/npm" "$dir/usr/local/lib/node_modules/corepack" "$dir/opt/yarn-v$yarn_version"
  tar -xzf "$dl/node-linux-$ARCH_NODE-$node_version.tgz" -C "$dir/usr/local" --strip-components=1 --no-same-owner
  rm -f "$dir/usr/local/package.json" # the npm package's own, not part of Node's tarball
  # The npm and corepack this release bundles: the newest upgrade its CHANGELOG lists at or before it.
  changelog="$dir/usr/local/CHANGELOG.md"
  npm_version="$(bundled_version "$changelog" 'upgrade npm to')"
  corepack_version="$(bundled_version "$changelog" 'update corepack to')"
  [ -n "$npm_version" ] && [ -n "$corepack_version" ] ||
    die "cannot tell from Node $node_version's CHANGELOG which npm and corepack it bundles"
  (cd "$dl" && npm pack --silent "npm@$npm_version" "corepack@$corepack_version" "yarn@$yarn_version" >/dev/null) ||
    die "npm pack npm@$npm_version corepack@$corepack_version yarn@$yarn_version failed"
  tar -xzf "$dl/npm-$npm_version.tgz" -C "$dir/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  tar -xzf "$dl/corepack-$corepack_version.tgz" -C "$dir/usr/local/lib/node_modules/corepack" --strip-components=1 --no-same-owner
  tar -xzf "$dl/yarn-$yarn_version.tgz" -C "$dir/opt/yarn-v$yarn_version" --strip-components=1 --no-same-owner
  rm -rf "$dl"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/local/bin/npx"
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$dir/usr/local/bin/corepack"
  ln -s /usr/local/bin/node "$dir/usr/local/bin/nodejs"
  ln -s "/opt/yarn-v$yarn_version/bin/yarn" "$dir/usr/local/bin/yarn"
  ln -s "/opt/yarn-v$yarn_version/bin/yarnpkg" "$dir/usr/local/bin/yarnpkg"
  # The official image keeps only this machine's OpenSSL configuration headers.
  find "$dir/usr/local/include/node/openssl/archs" -mindepth 1 -maxdepth 1 ! -name "$ARCH_OPENSSL" -exec rm -rf {} +
  standin_entrypoint >"$dir/usr/local/bin/docker-entrypoint.sh"
  chmod 0755 "$dir/usr/local/bin/docker-entrypoint.sh"
}

# bundled_version CHANGELOG PHRASE: the version after PHRASE in the first entry at or after this release.
bundled_version() {
  awk -v anchor="<a id=\"$node_version\"></a>" -v phrase="$2" '
    index($0, anchor) { on = 1 }
    on && index($0, phrase) {
      s = substr($0, index($0, phrase) + length(phrase) + 1)
      match(s, /^[0-9]+\.[0-9]+\.[0-9]+/)
      if (RSTART) { print substr(s, RSTART, RLENGTH); exit }
    }' "$1"
}

# The entrypoint: behaves as the official node image's docker-entrypoint.sh does.
standin_entrypoint() {
  cat <<'EOF'
#!/bin/sh
# Entrypoint of mailfleet's stand-in for the node:*-trixie-slim base, with the official image's behaviour:
# the arguments run as a command, unless the first one is an option ("-..."), names no command, or
# names a file that is not executable; then they are arguments of node.
set -e
with_node=no
case "${1-}" in -*) with_node=yes ;; esac
if [ "$with_node" = no ]; then
  if ! command -v "${1-}" >/dev/null 2>&1; then
    with_node=yes
  elif [ -f "$1" ] && [ ! -x "$1" ]; then
    with_node=yes
  fi
fi
if [ "$with_node" = yes ]; then set -- node "$@"; fi
exec "$@"
EOF
}

# standin_rootfs TAR: Debian trixie minbase + passwd, the Node tree and the node user, as a tarball.
standin_rootfs() {
  local out="$1" work
  work="$(mktemp -d)"
  standin_node_tree "$work/node"
  mkdir "$work/root"
  MF_NODE_TREE="$work/node" mmdebstrap --variant=minbase --include="${standin_packages// /,}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/overrides/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='tar -C "$MF_NODE_TREE" -cf - . | tar -C "$1" -xf - --no-same-owner' \
    --customize-hook='chroot "$1" groupadd --gid 1000 node' \
    --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
    --customize-hook='! chroot "$1" ldd /usr/local/bin/node | grep "not found"' \
    --customize-hook='chroot "$1" /usr/local/bin/node --version' \
    --customize-hook='chroot "$1" /usr/local/bin/npm --version' \
    --customize-hook='chroot "$1" /usr/local/bin/yarn --version' \
    "$debian_suite" "$work/root" "$debian_mirror" >&2 ||
    { rm -rf "$work"; die "mmdebstrap could not make the stand-in ($debian_suite from $debian_mirror)"; }
  [ "$(chroot "$work/root" /usr/local/bin/node --version)" = "v$node_version" ] ||
    { rm -rf "$work"; die "the stand-in's node is not v$node_version"; }
  # /dev stays empty, as in Debian's images: the runtime mounts its own.
  tar --numeric-owner --exclude='./dev/*' -C "$work/root" -cf "$out.partial" .
  mv "$out.partial" "$out"
  rm -rf "$work"
}

# Sets base_arg (empty: the Dockerfile's default) and base_ref (the image every stage starts from).
choose_base() {
  local public="docker.io/library/node:$node_version-trixie-slim" why
  if [ "$base" != standin ]; then
    if image_exists "$public"; then
      base_arg='' base_ref="$public"
      return 0
    fi
    if why="$(timeout 600 "$engine" pull -q "$public" 2>&1)"; then
      base_arg='' base_ref="$public"
      return 0
    fi
    [ "$base" = public ] && die "cannot pull $public: $(tail -1 <<<"$why")"
    say "cannot pull the Dockerfile's base $public ($(tail -1 <<<"$why")): building on a stand-in made from Debian packages (--base standin)"
  fi
  local key file
  key="$(
    {
      echo "$node_version $ARCH_NODE $yarn_version $debian_suite $debian_mirror $standin_packages"
      declare -f standin_rootfs standin_node_tree bundled_version standin_entrypoint import_rootfs
    } | sha256sum | cut -c1-16
  )"
  base_ref="localhost/mailfleet/node-standin:$node_version-$debian_suite-$key"
  base_arg="$base_ref"
  image_exists "$base_ref" && { say "stand-in base $base_ref is there"; return 0; }
  file="$image_cache/standin-$key.tar"
  if [ -f "$file" ]; then
    say "reusing the stand-in base from $file"
  else
    need_mmdebstrap
    say "making the stand-in base (Debian $debian_suite + Node $node_version) into $file"
    standin_rootfs "$file"
  fi
  import_rootfs "$file" "$base_ref"
  ls -t "$image_cache"/standin-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
}

# --- inputs and cache ---------------------------------------------------------------------------------

# Sets inputs_key: every input of the build. The context is hashed as .dockerignore lets files in
# (its "!" lines); its exclusions are not applied, so the key covers a superset and is never stale.
compute_inputs_key() {
  local roots=() line
  while IFS= read -r line; do
    case "$line" in '!'*) line="${line#!}" && roots+=("${line%/}") ;; esac
  done <"$repo/.dockerignore"
  inputs_key="$(
    {
      echo "engine=$engine tag=$tag base=$base_ref $(image_id "$base_ref")"
      declare -f build
      sha256sum "$repo/Dockerfile" "$repo/.dockerignore" | cut -d' ' -f1
      (cd "$repo" && find "${roots[@]}" -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    } | sha256sum | cut -c1-16
  )"
}

main() {
  engine='' tag='' base=auto archive=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --engine) engine="${2:?--engine needs a value}" && shift 2 ;;
      --tag) tag="${2:?--tag needs a value}" && shift 2 ;;
      --base) base="${2:?--base needs a value}" && shift 2 ;;
      --oci-archive) archive="${2:?--oci-archive needs a file}" && shift 2 ;;
      -h | --help) usage 0 ;;
      *) echo "mailfleet image: unknown argument $1" >&2 && usage ;;
    esac
  done
  case "$base" in auto | public | standin) ;; *) die "--base is auto, public or standin" ;; esac
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  [ -z "$archive" ] || archive="$(cd "$(dirname "$archive")" 2>/dev/null && pwd)/$(basename "$archive")" ||
    die "the directory of --oci-archive $archive does not exist"
  image_cache="${MAILFLEET_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet/image}"
  mkdir -p "$image_cache"
  # One build at a time per cache (the tests and the real-node suite may both ask for the image).
  exec 9>"$image_cache/.lock"
  flock -w 3600 9 || die "another scripts/image.sh holds $image_cache/.lock"

  node_version="$(awk -F= '$1 == "ARG NODE_VERSION" { print $2; exit }' "$repo/Dockerfile")"
  [ -n "$node_version" ] || die "the Dockerfile has no ARG NODE_VERSION=..."
  yarn_version=1.22.22
  debian_suite=trixie
  debian_mirror=http://deb.debian.org/debian
  standin_packages='passwd'
  case "$(uname -m)" in
    x86_64) ARCH_NODE=x64 ARCH_OPENSSL=linux-x86_64 ;;
    aarch64 | arm64) ARCH_NODE=arm64 ARCH_OPENSSL=linux-aarch64 ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac

  choose_engine
  [ "$engine" != docker ] || need_skopeo
  # shellcheck source=node.sh
  . "$repo/scripts/node.sh"
  [ -n "$tag" ] || tag="ghcr.io/mailfleet/mailfleet:$(node -p 'require(process.argv[1]).version' "$repo/package.json")"
  choose_base
  compute_inputs_key
  local cached="$image_cache/mailfleet-$inputs_key.oci.tar"
  if image_exists "$tag" && [ "$(image_label "$tag" dev.mailfleet.image.inputs)" = "$inputs_key" ]; then
    say "unchanged inputs ($inputs_key): reusing the image $tag"
  elif [ -f "$cached" ]; then
    say "unchanged inputs ($inputs_key): loading the image from $cached"
    load_oci "$cached" "$tag"
  else
    find_host_ca
    say "building $tag with $engine on $base_ref"
    local start=$SECONDS
    build
    say "built $tag in $((SECONDS - start)) s"
  fi
  if [ ! -f "$cached" ]; then
    save_oci "$tag" "$cached.partial"
    mv "$cached.partial" "$cached"
    ls -t "$image_cache"/mailfleet-*.oci.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
  fi
  echo "image: $tag ($engine)"
  if [ -n "$archive" ]; then
    if [ "$archive" != "$cached" ]; then
      rm -f "$archive"
      ln "$cached" "$archive" 2>/dev/null || cp "$cached" "$archive"
    fi
    echo "oci-archive: $archive"
  fi
}

main "$@"; exit
