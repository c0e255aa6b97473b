#!/usr/bin/env bash
# qemu-board.sh: an emulated NXP i.MX8M Plus EVK (QEMU's `imx8mp-evk`, 4x Cortex-A53) reachable
# over SSH on 127.0.0.1, to run mnist-mlp on "the board" without having one.
#
# What it owns: building the board's software once into a cache directory (a Debian arm64
# kernel, its device tree patched for QEMU, and an initramfs with busybox, dropbear and
# sftp-server, all from Debian packages), booting it, waiting for SSH, and powering it off.
# The facts it builds on (and why each step is needed) are in ../shared/notes/qemu-imx8mp.md.
#
# What it deliberately does not do: install host packages (scripts/install-host-deps.sh --board
# does), copy or run anything on the board (scripts/deploy.sh does), or give the board a
# network: QEMU's user net runs with restrict=on, and only the SSH port forward reaches it.
#
# Run `scripts/qemu-board.sh --help` for the commands.
set -euo pipefail

readonly PROG=${0##*/}
# modinfo lives in /usr/sbin, which a non-root user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
# MACHINE, RAM, the cache's file names.
# shellcheck source=scripts/board-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/board-common.sh"

usage() {
  cat <<EOF
Usage: $PROG [--cache DIR] [--timeout SECONDS] COMMAND [ARGS...]

Boots QEMU's emulated NXP i.MX8M Plus EVK (4x Cortex-A53, 512 MiB, ~170x slower than a real
board) with an SSH server, reachable only from this host on a free 127.0.0.1 port. The board is
off every network: QEMU's user net runs with restrict=on and forwards nothing but that port.

Commands:
  build            Only build the cache (kernel, patched device tree, initramfs, SSH keys).
                   Every other command builds it first if anything is missing.
  start            Boot the board in the background, wait for SSH, print how to reach it, and
                   record it (pid, port, key) in DIR/board.state. One started board per cache.
  stop             Power the started board off ('poweroff -f' over SSH; kill as the fallback).
  ssh [CMD...]     SSH into the started board as root (a shell, or run CMD there).
  env              Print 'export BOARD_...=...' lines for the started board (for eval).
  run [--] CMD...  Boot a board of its own, run the HOST command CMD with the variables below,
                   power the board off (always, also on failure or Ctrl-C), exit with CMD's code.

Variables given to CMD by 'run' (and printed by 'env'):
  BOARD_HOST       root@127.0.0.1
  BOARD_PORT       the forwarded SSH port
  BOARD_SSH_KEY    the private key the board accepts (generated at build time)
  BOARD_SSH_OPTS   ssh/scp options (space-separated, all '-o KEY=VALUE') selecting that key and
                   port and a known_hosts file holding the board's host key, which is generated
                   at build time: host-key checking stays on. E.g.
                     ssh \$BOARD_SSH_OPTS \$BOARD_HOST uname -a
                     DEPLOY_SSH_OPTS="\$BOARD_SSH_OPTS" scripts/deploy.sh \$BOARD_HOST --help

Options:
  --cache DIR        Cache directory [default: \${XDG_CACHE_HOME:-\$HOME/.cache}/mnist-mlp/qemu-imx8mp]
                     (no whitespace in the path: it ends up in BOARD_SSH_OPTS). Delete it to
                     rebuild; it is built again only when something in it is missing.
  --timeout SECONDS  How long to wait for SSH after power-on [default: \$QEMU_BOARD_TIMEOUT or $DEFAULT_TIMEOUT]
  -h, --help         This help.

The board: Debian bookworm's newest 6.12 arm64 kernel package, console on ttymxc1 (logged
to a file, shown when boot fails), root on a tmpfs with home /root, /tmp a tmpfs of half the
RAM, busybox (with sha256sum), dropbear (keys only) with OpenSSH's sftp-server so plain 'scp'
works. Building needs the packages of 'scripts/install-host-deps.sh --board' and the Debian
package mirror (arm64 packages are fetched with a private apt state inside the build directory:
the host's dpkg architectures are left alone). Boot to SSH takes ~20-30 s.

Examples:
  $PROG start && $PROG ssh uname -a && $PROG stop
  $PROG run -- sh -c 'ssh \$BOARD_SSH_OPTS \$BOARD_HOST cat /proc/cpuinfo'
EOF
}

# Tunables.
readonly DEFAULT_TIMEOUT=240   # s from power-on to SSH: ~25 s idle; generous for a loaded CI host
readonly PORT_TRIES=10         # random ports tried when another process wins the one we picked
readonly STOP_WAIT=20          # s to let QEMU exit after 'poweroff -f' before killing it
readonly LOCK_WAIT=1800        # s to wait for another process building the same cache

# The board as Debian and QEMU see it.
readonly KERNEL_PATTERN='^linux-image-6\.12\.[0-9]+\+deb12-arm64-unsigned$'
readonly DTB_NAME=freescale/imx8mp-evk.dtb
readonly FEC_NODE=/soc@0/bus@30800000/ethernet@30be0000    # the emulated FEC ("imx.enet")
readonly EQOS_NODE=/soc@0/bus@30800000/ethernet@30bf0000   # second MAC: not emulated
readonly USER_PKGS=(busybox-static dropbear-bin openssh-sftp-server libc6 libcrypt1
                    libtomcrypt1 libtommath1 libgmp10 zlib1g)
readonly NET_MODULE=fec        # its dependencies are found with modinfo
# For an SD card with ext4 (the $STORAGE initramfs): the uSDHC driver, and ext4, whose checksum
# module crc32c_generic is a soft dependency modinfo does not list. MMC core and mmc_block are
# built in.
readonly STORAGE_MODULES=(sdhci-esdhc-imx crc32c_generic ext4)
readonly HOST_KEY_ALIAS=mnist-mlp-qemu-imx8mp   # the name the board's host key is known under
readonly APPEND="console=ttymxc1,115200 rdinit=/init random.trust_bootloader=on panic=1"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Building the cache
# ---------------------------------------------------------------------------------------------

need_tools() {
  local t missing=()
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  ((${#missing[@]} == 0)) ||
    die "missing host tools: ${missing[*]} (hint: scripts/install-host-deps.sh --board)"
}

cache_complete() {
  local f
  for f in "$KERNEL" "$DTB" "$INITRD" "$STORAGE" "$KEY" "$KEY.pub" "$KNOWN_HOSTS" "$COMPLETE"; do
    [[ -s $cache/$f ]] || return 1
  done
}

# Builds the cache unless it is complete; holds a lock so concurrent callers build it once.
ensure_cache() {
  cache_complete && return 0
  # The lock lives in a subshell so its descriptor is never inherited by QEMU.
  (
    flock -w "$LOCK_WAIT" 9 || die "timed out waiting for the lock on $cache/.lock"
    cache_complete || build_cache
  ) 9>"$cache/.lock"
}

# Prints the modules NAME needs, dependencies first, then NAME (depth-first post-order).
# $1: name, $2: directory of the unpacked kernel package. Uses the global `modmap`.
module_closure() {
  local name=${1//-/_} dir=$2 dep
  [[ " ${seen_modules} " == *" $name "* ]] && return 0
  seen_modules+=" $name"
  [[ -n ${modmap[$name]:-} ]] || die "kernel module $name not found in the kernel package"
  for dep in $(modinfo -F depends "${modmap[$name]}" | tr ',' ' '); do
    module_closure "$dep" "$dir"
  done
  echo "$name"
}

# Copies the modules named by $2... into directory $1, decompressed. Uses the global `modmap`.
copy_modules() {
  local dest=$1 base
  shift
  for base in "$@"; do
    case ${modmap[$base]} in
      *.ko) cp "${modmap[$base]}" "$dest/$base.ko" ;;
      *.ko.xz) xz -dc "${modmap[$base]}" >"$dest/$base.ko" ;;
      *) die "cannot decompress ${modmap[$base]}" ;;
    esac
  done
}

build_cache() {
  need_tools apt-get apt-cache dpkg-deb tar fdtput qemu-aarch64 cpio gzip xz ssh-keygen modinfo
  local t0=$SECONDS tmp
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  # shellcheck disable=SC2064  # expand $tmp now: it is local
  trap "rm -rf '$tmp'" EXIT
  say "building the board into $cache (one time; ~100 MB download) ..."

  # A private apt state for arm64: lists and downloads stay in $tmp, the host's apt sources
  # (and any mirror or proxy configured there) are reused, dpkg's architectures untouched.
  mkdir -p "$tmp/apt/lists/partial" "$tmp/apt/archives/partial" "$tmp/debs"
  : >"$tmp/apt/status"
  local apt_opts=(
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::State::Lists="$tmp/apt/lists" -o Dir::State::status="$tmp/apt/status"
    -o Dir::Cache="$tmp/apt" -o Dir::Cache::archives="$tmp/apt/archives"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
  )
  apt-get -qq "${apt_opts[@]}" update ||
    die "apt-get update (arm64) failed: is the Debian mirror reachable?"
  # The newest 6.12 kernel: older builds leave the mirror, so none is pinned.
  local kpkg
  kpkg=$(apt-cache "${apt_opts[@]}" search --names-only "$KERNEL_PATTERN" |
         awk '{print $1}' | grep -E "$KERNEL_PATTERN" | sort -V | tail -n 1)
  [[ -n $kpkg ]] || die "no package matching $KERNEL_PATTERN in the apt sources (hint: scripts/install-host-deps.sh --board adds bookworm-backports)"
  say "kernel package: $kpkg"
  (cd "$tmp/debs" && apt-get -qq "${apt_opts[@]}" download "$kpkg" "${USER_PKGS[@]}") ||
    die "apt-get download failed"

  # Kernel: the vmlinuz of Debian's arm64 package is a raw Image, usable with -kernel as is.
  local kdir=$tmp/kernel
  mkdir -p "$kdir"
  dpkg-deb -x "$tmp/debs/$kpkg"_*.deb "$kdir"
  local image kver
  image=$(find "$kdir/boot" -name 'vmlinuz-*' | head -n 1)
  [[ -n $image ]] || die "no /boot/vmlinuz-* in $kpkg"
  kver=${image##*/vmlinuz-}
  cp "$image" "$tmp/$KERNEL"

  # Device tree. REQUIRED: without nvmem-cells the FEC driver waits forever for its MAC from
  # the OTP fuses, which QEMU does not emulate. The EQOS MAC is not emulated at all.
  cp "$kdir/usr/lib/linux-image-$kver/$DTB_NAME" "$tmp/$DTB"
  fdtput -d "$tmp/$DTB" "$FEC_NODE" nvmem-cells
  fdtput -d "$tmp/$DTB" "$FEC_NODE" nvmem-cell-names
  fdtput -t s "$tmp/$DTB" "$EQOS_NODE" status disabled

  # Root file system: the user-space packages unpacked, minus documentation and iconv tables.
  local root=$tmp/root
  mkdir -p "$root"
  local deb
  for deb in "$tmp"/debs/*.deb; do
    [[ $deb == */"$kpkg"_* ]] || dpkg-deb -x "$deb" "$root"
  done
  rm -rf "${root:?}/usr/share" "${root:?}/usr/lib/aarch64-linux-gnu/gconv"
  mkdir -p "$root"/{proc,sys,dev,tmp,run,root/.ssh,etc/dropbear,lib/modules,sbin,usr/bin,usr/sbin}
  # Busybox applets as symlinks, made now rather than at every boot.
  local applet
  for applet in $(qemu-aarch64 "$root/bin/busybox" --list-full); do
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done

  # Ethernet driver and what it needs, decompressed, in load order.
  declare -A modmap=()
  local ko base seen_modules="" mods
  while IFS= read -r ko; do
    base=${ko##*/}; base=${base%%.ko*}
    modmap[${base//-/_}]=$ko
  done < <(find "$kdir" -path '*/modules/*' -name '*.ko*')
  mods=$(module_closure "$NET_MODULE" "$kdir")
  # shellcheck disable=SC2086  # a list of words
  copy_modules "$root/lib/modules" $mods
  echo "$mods" >"$root/etc/board-modules"
  say "modules: ${mods//$'\n'/ }"

  # The SD card's modules, in their own initramfs ($STORAGE): only power-cut.sh needs them.
  local storage=$tmp/storage smods m
  mkdir -p "$storage/lib/modules" "$storage/etc"
  smods=$(for m in "${STORAGE_MODULES[@]}"; do module_closure "$m" "$kdir"; done)
  # shellcheck disable=SC2086  # a list of words
  copy_modules "$storage/lib/modules" $smods
  echo "$smods" >"$storage/etc/storage-modules"
  (cd "$storage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$tmp/$STORAGE"
  say "storage modules: ${smods//$'\n'/ }"

  # Accounts: root only, keys only (dropbear -s). '*' is no password, unlike '' (rejected).
  echo 'root:*:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  echo '/bin/sh' >"$root/etc/shells"
  echo 'imx8mp-evk' >"$root/etc/hostname"
  ln -s /proc/mounts "$root/etc/mtab"   # for df and mount
  chmod 700 "$root/root" "$root/root/.ssh"

  # SSH keys: the client key the host uses, and the board's host key, made by the board's own
  # dropbearkey under user-mode QEMU. The host key goes into our known_hosts under a fixed
  # alias (HostKeyAlias), so checking stays strict whatever port the board gets.
  ssh-keygen -q -t ed25519 -N '' -C "mnist-mlp qemu board" -f "$tmp/$KEY"
  install -m 600 "$tmp/$KEY.pub" "$root/root/.ssh/authorized_keys"
  local hostkey=$root/etc/dropbear/dropbear_ed25519_host_key pub
  qemu-aarch64 -L "$root" "$root/usr/bin/dropbearkey" -t ed25519 -f "$hostkey" >/dev/null 2>&1 ||
    die "dropbearkey failed under qemu-aarch64"
  pub=$(qemu-aarch64 -L "$root" "$root/usr/bin/dropbearkey" -y -f "$hostkey" 2>/dev/null |
        grep '^ssh-ed25519 ' | awk '{print $1, $2}')
  [[ -n $pub ]] || die "could not read the board's host key"
  echo "$HOST_KEY_ALIAS $pub" >"$tmp/$KNOWN_HOSTS"

  # PID 1 sets the board up, then becomes busybox init, which keeps dropbear running and
  # handles a plain 'poweroff' too.
  cat >"$root/init" <<'INIT'
#!/bin/sh
# PID 1 of the emulated i.MX8M Plus EVK (written by scripts/qemu-board.sh).
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
hostname -F /etc/hostname
for m in $(cat /etc/board-modules); do
  insmod "/lib/modules/$m.ko" || echo "board-init: insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ]; do
  i=$((i + 1))
  [ "$i" -le 200 ] || { echo "board-init: no eth0 after 20 s"; break; }
  sleep 0.1
done
# QEMU user net: we are 10.0.2.15, the gateway is 10.0.2.2 (restrict=on: it routes nowhere).
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
echo "board-init: network up, starting dropbear"
exec /sbin/init
INIT
  chmod 755 "$root/init"
  cat >"$root/etc/inittab" <<'INITTAB'
# busybox init (written by scripts/qemu-board.sh). -s: keys only; -j -k: no port forwarding.
::respawn:/usr/sbin/dropbear -F -E -s -j -k -p 22 -r /etc/dropbear/dropbear_ed25519_host_key
::shutdown:/bin/sync
INITTAB

  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$tmp/$INITRD"

  local f
  for f in "$KERNEL" "$DTB" "$INITRD" "$STORAGE" "$KEY" "$KEY.pub" "$KNOWN_HOSTS"; do
    mv -f "$tmp/$f" "$cache/$f"
  done
  echo "$kpkg" >"$cache/$COMPLETE"
  say "built in $((SECONDS - t0)) s: kernel $kver, initramfs $(du -h "$cache/$INITRD" | cut -f1)"
}

# ---------------------------------------------------------------------------------------------
# Booting, reaching and stopping a board
# ---------------------------------------------------------------------------------------------

# The ssh/scp options for a board on port $1 (one word each: no whitespace in paths).
board_ssh_opts() {
  printf '%s\n' -o "Port=$1" -o "IdentityFile=$cache/$KEY" -o IdentitiesOnly=yes \
    -o "UserKnownHostsFile=$cache/$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
    -o "HostKeyAlias=$HOST_KEY_ALIAS" -o StrictHostKeyChecking=yes -o UpdateHostKeys=no \
    -o BatchMode=yes -o ConnectTimeout=20 -o LogLevel=ERROR
}

# Prints the environment for a board on port $1, as export lines.
board_env() {
  local opts
  opts=$(board_ssh_opts "$1" | tr '\n' ' ')
  printf 'export BOARD_HOST=%q\nexport BOARD_PORT=%q\nexport BOARD_SSH_KEY=%q\nexport BOARD_SSH_OPTS=%q\n' \
    root@127.0.0.1 "$1" "$cache/$KEY" "${opts% }"
}

# Is $1 the pid of a running qemu-system-aarch64?
qemu_alive() {
  [[ -n $1 ]] && kill -0 "$1" 2>/dev/null && grep -q qemu-system-aarch64 "/proc/$1/cmdline" 2>/dev/null
}

# Boots a board whose run files (console log, pid file, dtb copy) go in directory $1.
# Sets the globals `board_pid` and `board_port` as soon as QEMU runs, and `board_up=1` once
# SSH answers; returns then, or dies (having killed QEMU).
boot_board() {
  local run=$1 t0=$SECONDS try port
  need_tools qemu-system-aarch64 fdtput ssh
  # A fresh entropy seed for every boot (else dropbear stalls ~8 s waiting for entropy).
  cp "$cache/$DTB" "$run/board.dtb"
  # shellcheck disable=SC2046  # 64 separate hex bytes
  fdtput -t bx "$run/board.dtb" /chosen rng-seed $(od -An -tx1 -N64 /dev/urandom)
  : >"$run/console.log"
  board_pid="" board_port="" board_up=0
  for ((try = 1; try <= PORT_TRIES; try++)); do
    port=$((20000 + RANDOM % 40000))
    # Something already listening there? (bash's /dev/tcp connects: success means taken.)
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    rm -f "$run/qemu.pid"
    # -daemonize returns once the machine is set up, so a port lost to a race fails here.
    if qemu-system-aarch64 -M "$MACHINE" -smp 4 -m "$RAM" \
         -display none -monitor none -no-reboot -daemonize -pidfile "$run/qemu.pid" \
         -serial null -serial "file:$run/console.log" \
         -kernel "$cache/$KERNEL" -dtb "$run/board.dtb" -initrd "$cache/$INITRD" \
         -append "$APPEND" \
         -nic "user,model=imx.enet,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" \
         2>"$run/qemu.err"; then
      board_pid=$(cat "$run/qemu.pid") board_port=$port
      break
    fi
    grep -qi 'forwarding' "$run/qemu.err" || die "QEMU failed to start: $(cat "$run/qemu.err")"
  done
  [[ -n $board_pid ]] || die "no free port for SSH after $PORT_TRIES tries: $(cat "$run/qemu.err")"
  say "board powered on (QEMU pid $board_pid, ssh port $board_port); waiting up to ${timeout} s for SSH ..."

  # Until the guest answers, QEMU accepts the TCP connection and holds it: one ssh attempt can
  # hang until dropbear is up, so each attempt is capped by what is left of the timeout.
  local opts left
  mapfile -t opts < <(board_ssh_opts "$board_port")
  while :; do
    left=$((timeout - (SECONDS - t0)))
    if ((left <= 0)); then
      kill "$board_pid" 2>/dev/null || true
      boot_failed "$run" "no SSH on port $board_port after ${timeout} s"
    fi
    timeout "$((left < 30 ? left : 30))" ssh "${opts[@]}" -n root@127.0.0.1 true 2>/dev/null && break
    qemu_alive "$board_pid" || boot_failed "$run" "QEMU exited during boot"
    sleep 1
  done
  board_up=1
  say "board up: SSH answered after $((SECONDS - t0)) s"
}

boot_failed() {
  board_pid=""
  if [[ -s $1/console.log ]]; then
    printf '%s: error: %s. Last lines of the console (%s):\n' "$PROG" "$2" "$1/console.log"
    tail -n 40 "$1/console.log" | sed 's/^/  | /'
  else
    printf '%s: error: %s. The console printed nothing.\n' "$PROG" "$2"
  fi >&2
  exit 1
}

# Powers off the board on port $1 with QEMU pid $2: 'poweroff -f' over SSH (only if $3 is 1,
# i.e. SSH has answered: a booting board would hold the connection), then SIGTERM, then
# SIGKILL, each after a wait.
power_off() {
  local port=$1 pid=$2 up=$3 opts i
  qemu_alive "$pid" || return 0
  if ((up)); then
    mapfile -t opts < <(board_ssh_opts "$port")
    timeout 30 ssh "${opts[@]}" -o ConnectTimeout=10 -n root@127.0.0.1 'poweroff -f' >/dev/null 2>&1 || true
    for ((i = 0; i < STOP_WAIT * 10; i++)); do qemu_alive "$pid" || return 0; sleep 0.1; done
    say "board did not power off in ${STOP_WAIT} s; killing QEMU (pid $pid)"
  fi
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do qemu_alive "$pid" || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# Reads the state file of the started board into `st_pid` and `st_port`. Fails (and removes
# the file) when it names no running QEMU.
load_state() {
  st_pid="" st_port=""
  [[ -f $cache/$STATE ]] || return 1
  local k v
  while IFS='=' read -r k v; do
    case $k in pid) st_pid=$v ;; port) st_port=$v ;; esac
  done <"$cache/$STATE"
  qemu_alive "$st_pid" || { rm -f "$cache/$STATE"; return 1; }
}

read_state() {
  load_state || die "no board running from $cache; run '$PROG${cache_arg:+ $cache_arg} start'"
}

cmd_start() {
  if load_state; then
    say "a board is already running (pid $st_pid, port $st_port)"
  else
    ensure_cache
    local run=$cache/board
    rm -rf "$run"; mkdir -p "$run"
    # Interrupted before the state file exists: nobody could stop this QEMU, so kill it.
    trap '[[ -z ${board_pid:-} ]] || power_off "$board_port" "$board_pid" 0' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    boot_board "$run"
    printf 'pid=%s\nport=%s\nkey=%s\nknown_hosts=%s\nconsole=%s\n' "$board_pid" "$board_port" \
      "$cache/$KEY" "$cache/$KNOWN_HOSTS" "$run/console.log" >"$cache/$STATE"
    trap - EXIT INT TERM
    st_pid=$board_pid st_port=$board_port
  fi
  local opts
  opts=$(board_ssh_opts "$st_port" | tr '\n' ' ')
  cat <<EOF
board: QEMU pid $st_pid, ssh port $st_port, key $cache/$KEY (user root)
  ssh:    ssh ${opts% } root@127.0.0.1
  or:     $0${cache_arg:+ $cache_arg} ssh [CMD...]
  deploy: DEPLOY_SSH_OPTS='${opts% }' scripts/deploy.sh root@127.0.0.1 ...
  env:    eval "\$($0${cache_arg:+ $cache_arg} env)"
  stop:   $0${cache_arg:+ $cache_arg} stop
EOF
}

cmd_stop() {
  read_state
  say "powering off the board (pid $st_pid)"
  power_off "$st_port" "$st_pid" 1
  rm -f "$cache/$STATE"
}

cmd_ssh() {
  read_state
  local opts
  mapfile -t opts < <(board_ssh_opts "$st_port")
  # Without CMD, ssh opens a login shell with a terminal (BatchMode only forbids prompts).
  exec ssh "${opts[@]}" root@127.0.0.1 "$@"
}

cmd_env() {
  read_state
  board_env "$st_port"
}

cmd_run() {
  (($# > 0)) || die "run: no command given (usage: $PROG run -- CMD...)"
  ensure_cache
  local run
  run=$(mktemp -d "$cache/run.XXXXXX")
  board_pid="" board_port="" board_up=0
  run_dir=$run
  # Always power off and clean up, whatever happens after this point.
  trap 'run_cleanup' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  boot_board "$run"
  local rc=0
  eval "$(board_env "$board_port")"
  "$@" || rc=$?
  say "command exited with $rc; powering off the board"
  exit "$rc"
}

run_cleanup() {
  local rc=$?
  if [[ -n ${board_pid:-} ]]; then power_off "$board_port" "$board_pid" "$board_up"; fi
  if ((rc != 0)) && [[ -s $run_dir/console.log ]]; then
    say "console log kept: $run_dir/console.log"
  else
    rm -rf "$run_dir"
  fi
}

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

cache=$DEFAULT_BOARD_CACHE
cache_arg=""
timeout=${QEMU_BOARD_TIMEOUT:-$DEFAULT_TIMEOUT}
cmd=""
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --cache) (($# >= 2)) || die "--cache needs a directory"; cache=$2; cache_arg="--cache $2"; shift 2 ;;
    --cache=*) cache=${1#*=}; cache_arg="--cache ${1#*=}"; shift ;;
    --timeout) (($# >= 2)) || die "--timeout needs seconds"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [[ -z $cmd ]] || die "unexpected argument '$1' (see --help)"
      cmd=$1; shift
      # Everything after these commands belongs to them.
      if [[ $cmd == ssh || $cmd == run ]]; then break; fi
      ;;
  esac
done
[[ -n $cmd ]] || { usage >&2; exit 2; }
[[ $timeout =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$timeout'"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
[[ $cache != *[[:space:]]* ]] || die "the cache path '$cache' contains whitespace; pick another with --cache"

case $cmd in
  build) ensure_cache; say "cache ready: $cache" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  ssh) cmd_ssh "$@" ;;
  env) cmd_env ;;
  run) [[ ${1:-} != -- ]] || shift; cmd_run "$@" ;;
  *) die "unknown command '$cmd' (see --help)" ;;
esac
