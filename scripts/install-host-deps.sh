#!/usr/bin/env bash
# Installs what building for the board and emulating it needs on a Debian bookworm host
# (CI runs this; so can you). Idempotent: packages and targets already present are kept.
#
#   scripts/install-host-deps.sh [--board]
#
# Always: the aarch64 cross linker and glibc sysroot, user-mode QEMU (runs aarch64 tests), the
# Rust targets for the board, and the Rust 1.75 toolchain of Yocto scarthgap.
# --board: also QEMU 10 from bookworm-backports (the emulated i.MX8M Plus EVK machine exists
# since QEMU 9), the tools that build its initramfs, and those of its SD card image.
set -euo pipefail

board=0
[[ "${1:-}" == "--board" ]] && board=1

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

have_pkgs() { dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -c "install ok installed" | grep -qx "$#"; }

pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu)
if ((board)); then
  # QEMU (system and user) from backports: bookworm's 7.2 has no imx8mp-evk machine.
  if [[ ! -f /etc/apt/sources.list.d/backports.sources ]]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    cat <<SRC | $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null
Types: deb
URIs: ${mirror:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO apt-get update -qq
  fi
  if ! have_pkgs qemu-system-arm qemu-user || ! qemu-system-aarch64 -M help 2>/dev/null | grep -q imx8mp-evk; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-system-arm qemu-user
  fi
  # e2fsprogs and python3: scripts/power-cut.sh makes, repairs and reads the SD card image.
  pkgs+=(device-tree-compiler cpio kmod xz-utils openssh-client e2fsprogs python3)
else
  pkgs+=(qemu-user)
fi
if ! have_pkgs "${pkgs[@]}"; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi

rustup target add aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
rustup toolchain install 1.75.0 --profile minimal
