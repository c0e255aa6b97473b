#!/usr/bin/env bash
# Proves that `cross build` and `cross test` work for the board target (aarch64-unknown-linux-gnu)
# on a Debian host that reaches only the package registries, where cross's own image cannot be
# pulled. Instead of that image it uses a local one made from Debian packages:
#
#   1. host packages: docker.io, debootstrap, binutils-aarch64-linux-gnu (only those missing);
#   2. dockerd, started in the background if no Docker engine answers (log in the cache dir);
#   3. a Debian bullseye rootfs (`debootstrap --variant=minbase`: glibc 2.31 like cross's image,
#      native gcc, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, procps), kept as a
#      tarball in the cache dir, and `docker import`ed with the same linker/runner/CC/AR
#      environment as cross's image;
#   4. cross 0.2.5 (`cargo install --locked`, into the cache dir; compiled in the background
#      while 3. runs);
#   5. `cargo fetch` on the host, then `cross build --release` and `cross test --release` with the
#      containers off the network, the test data mounted and MNIST_MLP_TEST_SCALE=reduced
#      (Cross.toml forwards these and sets MNIST_MLP_TEST_RUNNER);
#   6. a check that the binary needs no glibc symbol version newer than 2.31.
#
# Idempotent: the rootfs tarball, the image and cross are reused when present. Measured on
# 2 cores: image and cross ~2-3 min (in parallel), build ~1 min, test ~16 min (building the
# tests ~4 min, then the suite under QEMU), so ~20 min the first time and ~17 min after.
#
# Cross.toml is left as it is for users (cross's default image): this script selects its image
# with CROSS_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGE.
set -euo pipefail

readonly TARGET=aarch64-unknown-linux-gnu
readonly CROSS_VERSION=0.2.5
readonly SUITE=bullseye
readonly MAX_GLIBC=2.31
# Packages of the image, besides minbase. Native gcc: build scripts and proc macros. procps:
# /bin/kill, which a test runs (minbase has only the shell builtin; under QEMU user mode a
# missing program is not even a spawn error, the child just exits 127).
readonly IMAGE_PACKAGES=gcc,libc6-dev,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross,\
binutils-aarch64-linux-gnu,qemu-user,procps
# Environment of the image: what cross's own aarch64 image sets, minus what needs C++/cmake.
# These CARGO_TARGET_* variables take precedence over .cargo/config.toml inside the container.
readonly IMAGE_ENV=(
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  "CROSS_TOOLCHAIN_PREFIX=aarch64-linux-gnu-"
  "CROSS_SYSROOT=/usr/aarch64-linux-gnu"
  "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc"
  "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64 -L /usr/aarch64-linux-gnu"
  "CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc"
  "AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar"
  "QEMU_LD_PREFIX=/usr/aarch64-linux-gnu"
  "PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig"
)

usage() {
  cat <<EOF
Usage: scripts/cross-check.sh [--build-only] [--rebuild-image] [--keep-dockerd] [-h|--help]

Builds a local cross image (Debian ${SUITE}, glibc ${MAX_GLIBC}) from Debian packages, installs
cross ${CROSS_VERSION}, and runs, in the project root:
  cross build --release --target ${TARGET}
  cross test  --release --target ${TARGET}     (QEMU user mode, MNIST_MLP_TEST_SCALE=reduced)
then checks that the binary needs no glibc symbol newer than ${MAX_GLIBC}. Prints the time of
each stage. Needs root (apt-get, debootstrap, dockerd) or sudo.

Options:
  --build-only     skip \`cross test\`
  --rebuild-image  build the rootfs tarball and the image again even if cached
  --keep-dockerd   leave running the dockerd that this script started (default: stop it)
  -h, --help       this text

Environment:
  CROSS_CHECK_CACHE      cache dir (rootfs tarball, cross, dockerd log)
                         [\${XDG_CACHE_HOME:-\$HOME/.cache}/mnist-mlp/cross]
  CROSS_CHECK_TARGET_DIR cargo target dir of the cross builds [<repo>/target/cross-${SUITE}]
                         (apart from the host's, so a host-linked binary is never checked)
  DEBIAN_MIRROR          mirror for debootstrap [first URIs of
                         /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian]
  MNIST_MLP_SHARED_DATA  passed on to the container when set (the default suite reads the
                         bundled data/mnist-10k)
EOF
}

build_only=0
rebuild_image=0
keep_dockerd=0
while (($#)); do
  case "$1" in
    --build-only) build_only=1 ;;
    --rebuild-image) rebuild_image=1 ;;
    --keep-dockerd) keep_dockerd=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "cross-check: unknown argument: $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cache=${CROSS_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/cross}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)
target_dir=${CROSS_CHECK_TARGET_DIR:-$repo/target/cross-$SUITE}

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'cross-check: error: %s\n' "$*" >&2
  exit 1
}

# --- timings: `stage NAME command...` runs one stage and records its wall time --------------
# (No `cmd || …` around the stage: that would switch off `set -e` inside it. A failing stage
# ends the script and the EXIT trap records it.)
timings=()
script_start=$SECONDS
current_stage=""
stage_start=0
stage() {
  current_stage=$1
  stage_start=$SECONDS
  shift
  log "$current_stage"
  "$@"
  timings+=("$(printf '%-28s %5ss' "$current_stage" $((SECONDS - stage_start)))")
  current_stage=""
}
print_timings() {
  [[ -z "$current_stage" ]] ||
    timings+=("$(printf '%-28s %5ss  FAILED' "$current_stage" $((SECONDS - stage_start)))")
  ((${#timings[@]})) || return 0
  printf '\n%s\n' "cross-check timings (wall):"
  printf '  %s\n' "${timings[@]}"
  printf '  %-28s %5ss\n' "total" $((SECONDS - script_start))
}

# --- cleanup: stop the dockerd we started, remove temporary files --------------------------
dockerd_pid=""
cross_job=""
tmp=$(mktemp -d)
cleanup() {
  local rc=$?
  print_timings
  if [[ -n "$cross_job" ]]; then
    # The background `cargo install` (child of the job's subshell), then the subshell.
    pkill -TERM -P "$cross_job" 2>/dev/null || true
    kill "$cross_job" 2>/dev/null || true
  fi
  if [[ -n "$dockerd_pid" ]] && ((!keep_dockerd)); then
    log "stopping dockerd (pid $dockerd_pid)"
    "${SUDO[@]}" kill "$dockerd_pid" 2>/dev/null || true
    # dockerd stops its containerd and exits within a few seconds.
    for _ in $(seq 30); do
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 1
    done
  fi
  "${SUDO[@]}" rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# --- 1. host packages --------------------------------------------------------------------------
# apt-get, retried while another apt/dpkg holds its locks.
apt_get() {
  local i out
  for i in $(seq 40); do
    if out=$("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=60 "$@" 2>&1); then
      return 0
    fi
    if grep -qiE 'could not get lock|unable to acquire|is another process using it' <<<"$out"; then
      log "apt is locked by another process; retrying ($i/40)"
      sleep 15
      continue
    fi
    printf '%s\n' "$out" >&2
    return 1
  done
  die "apt stayed locked"
}

host_packages() {
  local pkgs=(docker.io debootstrap binutils-aarch64-linux-gnu) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# --- 2. a Docker engine ------------------------------------------------------------------------
docker_up() { docker info >/dev/null 2>&1; }

start_dockerd() {
  if docker_up; then
    log "a Docker engine is running"
    return 0
  fi
  command -v dockerd >/dev/null || die "no dockerd (package docker.io)"
  log "starting dockerd (log: $cache/dockerd.log)"
  "${SUDO[@]}" dockerd >"$cache/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local i
  for i in $(seq 60); do
    docker_up && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$cache/dockerd.log" >&2 || true
  die "dockerd did not come up after ${i}s"
}

# --- 3. the image --------------------------------------------------------------------------------
mirror=${DEBIAN_MIRROR:-}
if [[ -z "$mirror" && -r /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}
# The recipe's hash names the tarball and the image tag: changing the packages or the
# environment above makes new ones instead of reusing stale ones.
recipe_hash=$(printf '%s\n' "$SUITE" "$IMAGE_PACKAGES" "${IMAGE_ENV[@]}" | sha256sum | cut -c1-12)
rootfs_tar=$cache/rootfs-$SUITE-$recipe_hash.tar
image=mnist-mlp-cross:$TARGET-$SUITE-$recipe_hash

build_rootfs() {
  if [[ -s "$rootfs_tar" ]] && ((!rebuild_image)); then
    log "reusing $rootfs_tar"
    return 0
  fi
  local root=$tmp/rootfs
  log "debootstrap $SUITE from $mirror (log: $cache/debootstrap.log)"
  if ! "${SUDO[@]}" debootstrap --variant=minbase --include="$IMAGE_PACKAGES" \
    "$SUITE" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -n 30 "$cache/debootstrap.log" >&2
    if [[ -f "$root/debootstrap/debootstrap.log" ]]; then
      tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    fi
    die "debootstrap failed"
  fi
  # Smaller image: no downloaded .debs, no package lists (the image never runs apt).
  "${SUDO[@]}" rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  "${SUDO[@]}" tar --numeric-owner -C "$root" -cf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
  "${SUDO[@]}" rm -rf "$root"
  # Tarballs of earlier recipes are stale.
  find "$cache" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "${rootfs_tar##*/}" -delete
}

import_image() {
  if docker image inspect "$image" >/dev/null 2>&1 && ((!rebuild_image)); then
    log "reusing image $image"
    return 0
  fi
  local changes=() kv old_id
  # With --rebuild-image: the image that the tag names now, removed once the tag moves on.
  old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  for kv in "${IMAGE_ENV[@]}"; do
    # ENV KEY="value": the value may hold spaces (the runner).
    changes+=(--change "ENV ${kv%%=*}=\"${kv#*=}\"")
  done
  docker import "${changes[@]}" --change 'CMD ["/bin/bash"]' "$rootfs_tar" "$image" >/dev/null
  # The toolchain the image promises: cross gcc, sysroot, QEMU, native cc, kill.
  docker run --rm --network none "$image" sh -c \
    'aarch64-linux-gnu-gcc --version | head -n1 && qemu-aarch64 --version | head -n1 &&
     cc --version | head -n1 && ldd --version | head -n1 && test -x /bin/kill'
  # Images of earlier recipes are stale (kept if a container still uses one).
  docker image ls --format '{{.Repository}}:{{.Tag}}' "${image%%:*}" | grep -vxF "$image" |
    xargs -r docker image rm >/dev/null 2>&1 || true
  if [[ -n "$old_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
}

# --- 4. cross ------------------------------------------------------------------------------------
cross_root=$cache/cross-$CROSS_VERSION
cross_bin=$cross_root/bin/cross
install_cross() {
  if [[ -x "$cross_bin" ]]; then
    log "reusing $cross_bin"
    return 0
  fi
  cargo install cross --version "=$CROSS_VERSION" --locked --root "$cross_root"
}

# cross 0.2.5 reads `rustup toolchain list` lines as "<name>" or "<name> (default)"; rustup
# >= 1.28 prints "<name> (active, default)", so cross thinks the toolchain is missing and
# reinstalls it on every call (a download, here it even replaces stable). This wrapper, first
# in PATH for cross only, strips the suffixes of that one command and passes the rest through.
make_rustup_wrapper() {
  local real
  real=$(command -v rustup) || die "rustup is needed (cross uses the host's toolchain)"
  mkdir -p "$tmp/bin"
  cat >"$tmp/bin/rustup" <<EOF
#!/bin/sh
# rustup wrapper for cross $CROSS_VERSION (see scripts/cross-check.sh).
if [ "\$1" = toolchain ] && [ "\$2" = list ]; then
  out=\$("$real" "\$@") || exit \$?
  printf '%s\n' "\$out" |
    sed -E 's/ \\((active|default|override)(, *(active|default|override))*\\)\$//'
  exit 0
fi
exec "$real" "\$@"
EOF
  chmod +x "$tmp/bin/rustup"
}

# --- 5. build and test ---------------------------------------------------------------------------

prepare_host() {
  # With CROSS_CUSTOM_TOOLCHAIN set cross does not add the target's std itself.
  if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
  fi
  # Everything the build and the tests need, downloaded once on the host: the containers run
  # without network and cargo inside them offline (CARGO_* variables reach the container).
  (cd "$repo" && cargo fetch --locked)
}

# Runs cross in the project with this script's image, wrapper and settings.
run_cross() {
  (
    cd "$repo"
    export PATH="$tmp/bin:$PATH"
    export CROSS_CUSTOM_TOOLCHAIN=1
    export CROSS_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGE=$image
    export CROSS_CONTAINER_OPTS="--network none"
    export CARGO_NET_OFFLINE=true
    export CARGO_TARGET_DIR=$target_dir
    # Cross.toml forwards this: the heavy end-to-end tests are shrunk (QEMU user mode is
    # ~100x slower than native). The tests read the bundled data/mnist-10k in the project.
    export MNIST_MLP_TEST_SCALE=reduced
    "$cross_bin" "$@"
  )
}

# --- 6. glibc symbol versions --------------------------------------------------------------------
check_glibc() {
  local bin=$target_dir/$TARGET/release/mnist-mlp versions newest
  [[ -x "$bin" ]] || die "no binary at $bin"
  file "$bin" 2>/dev/null || true
  versions=$(aarch64-linux-gnu-objdump -T "$bin" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' |
    sed 's/^GLIBC_//' | sort -uV)
  [[ -n "$versions" ]] || die "no GLIBC symbol versions found in $bin"
  newest=$(tail -n1 <<<"$versions")
  log "glibc versions required: $(tr '\n' ' ' <<<"$versions")"
  if [[ $(printf '%s\n%s\n' "$MAX_GLIBC" "$newest" | sort -V | tail -n1) != "$MAX_GLIBC" ]]; then
    die "$bin needs GLIBC_$newest, newer than $MAX_GLIBC"
  fi
  log "OK: $bin needs at most GLIBC_$newest (<= $MAX_GLIBC)"
}

stage "host packages" host_packages
stage "dockerd" start_dockerd
# Compiling cross (CPU) runs in the background while debootstrap (network, dpkg) and the import run.
cross_job_start=$SECONDS
log "cargo install cross $CROSS_VERSION in the background (log: $cache/cargo-install-cross.log)"
(
  install_cross
  echo $((SECONDS - cross_job_start)) >"$tmp/cross-seconds"
) >"$cache/cargo-install-cross.log" 2>&1 &
cross_job=$!
stage "rootfs ($SUITE)" build_rootfs
stage "docker import" import_image
current_stage="cargo install cross (bg)"
stage_start=$cross_job_start
if ! wait "$cross_job"; then
  cross_job=""
  tail -n 30 "$cache/cargo-install-cross.log" >&2
  die "cargo install cross failed"
fi
cross_job=""
timings+=("$(printf '%-28s %5ss  (in parallel with the two above)' "$current_stage" \
  "$(cat "$tmp/cross-seconds")")")
current_stage=""
make_rustup_wrapper
stage "rustup target, cargo fetch" prepare_host
stage "cross build --release" run_cross build --release --target "$TARGET"
if ((!build_only)); then
  stage "cross test --release" run_cross test --release --target "$TARGET"
fi
stage "glibc check" check_glibc
log "cross-check passed (image $image)"
