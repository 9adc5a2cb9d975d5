#!/usr/bin/env bash
# Builds lookout's container image from a prepared context: no base image and no Rust image are
# needed. The image is `FROM scratch` plus, at the same paths as on this host:
#   /usr/local/bin/lookout                          the binary (cargo build --release, or --binary)
#   the shared libraries `ldd` lists for it         (libc, libgcc_s, the dynamic loader)
#   /usr/local/bin/docker                           the Docker CLI, for `docker compose up`
#   /usr/libexec/docker/cli-plugins/docker-compose  the compose v2 plugin
#   /etc/ssl/certs/ca-certificates.crt              CA certificates for registries and webhooks
# lookout runs `docker compose up` for the services it updates, so the image must contain the
# Docker CLI and the compose plugin: they are copied from this host (with their libraries when
# they are not static). Without them the image still starts, but cannot apply an update.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/build-image.sh [--binary PATH] [--tag NAME] [--label KEY=VALUE]... [--context DIR]
                             [--prepare-only]

  --binary PATH    put this lookout binary in the image instead of building one
  --tag NAME       image name (default lookout:VERSION and lookout:latest)
  --label K=V      extra image label (repeatable)
  --context DIR    prepare the build context here (default: a temporary folder, removed after)
  --prepare-only   prepare the context, do not run docker build (needs --context)
environment:
  DOCKER_CLI           the docker client binary to copy (default: `command -v docker`)
  DOCKER_COMPOSE_PLUGIN  the compose plugin to copy (default: the first one found in the usual places)
EOF
}

binary=""
tags=()
labels=()
context=""
prepare_only=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --binary) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; binary=$2; shift 2 ;;
    --tag) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; tags+=("$2"); shift 2 ;;
    --label) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; labels+=("$2"); shift 2 ;;
    --context) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; context=$2; shift 2 ;;
    --prepare-only) prepare_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-image.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$prepare_only" -eq 1 ] && [ -z "$context" ]; then
  echo "build-image.sh: --prepare-only needs --context DIR" >&2
  exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
log() { printf 'build-image.sh: %s\n' "$*" >&2; }

if [ -z "$binary" ]; then
  cargo build --release --locked --manifest-path "$repo/Cargo.toml"
  binary=${CARGO_TARGET_DIR:-$repo/target}/release/lookout
fi
[ -x "$binary" ] || { log "$binary is not an executable file"; exit 1; }
version=$("$binary" --version | awk '{print $2}')

if [ -z "$context" ]; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
else
  mkdir -p "$context"
  rm -rf "$context/rootfs"
fi
rootfs=$context/rootfs

# copy_with_libs SRC DEST: copies an executable to DEST inside the image, and every shared
# library `ldd` lists for it to the same path as on the host.
copy_with_libs() {
  local src=$1 dest=$rootfs$2 lib
  install -D -m 0755 "$src" "$dest"
  # A static binary: ldd prints "not a dynamic executable" (or "statically linked") and fails.
  if ! ldd "$src" >/dev/null 2>&1; then
    log "$src is static"
    return
  fi
  while read -r lib; do
    [ -n "$lib" ] || continue
    if [ ! -e "$rootfs$lib" ]; then
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
      log "library $lib (for $src)"
    fi
  done < <(ldd "$src" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}')
}

copy_with_libs "$binary" /usr/local/bin/lookout

docker_cli=${DOCKER_CLI:-$(command -v docker || true)}
if [ -n "$docker_cli" ] && [ -x "$docker_cli" ]; then
  copy_with_libs "$docker_cli" /usr/local/bin/docker
else
  log "warning: no docker CLI found: the image cannot run \`docker compose up\` (set DOCKER_CLI)"
fi
compose=${DOCKER_COMPOSE_PLUGIN:-}
if [ -z "$compose" ]; then
  for candidate in "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose" \
    /usr/local/lib/docker/cli-plugins/docker-compose \
    /usr/libexec/docker/cli-plugins/docker-compose \
    /usr/lib/docker/cli-plugins/docker-compose; do
    if [ -x "$candidate" ]; then
      compose=$candidate
      break
    fi
  done
fi
if [ -n "$compose" ]; then
  copy_with_libs "$compose" /usr/libexec/docker/cli-plugins/docker-compose
else
  log "warning: no compose v2 plugin found: the image cannot run \`docker compose up\` (set DOCKER_COMPOSE_PLUGIN)"
fi

if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
else
  log "warning: /etc/ssl/certs/ca-certificates.crt is missing: HTTPS registries will not be trusted"
fi
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
install -d -m 0755 "$rootfs/etc/lookout" "$rootfs/var/lib/lookout" "$rootfs/root/.docker"
install -d -m 1777 "$rootfs/tmp"
cp "$repo/deploy/Dockerfile" "$context/Dockerfile"
log "context prepared in $context (lookout $version)"

if [ "$prepare_only" -eq 1 ]; then
  exit 0
fi
[ "${#tags[@]}" -gt 0 ] || tags=("lookout:$version" "lookout:latest")
args=(build --build-arg "VERSION=$version")
for t in "${tags[@]}"; do args+=(--tag "$t"); done
for l in "${labels[@]}"; do args+=(--label "$l"); done
docker "${args[@]}" "$context"
log "built ${tags[*]}"
