# board-common.sh: what scripts/qemu-board.sh and scripts/power-cut.sh share about the
# emulated i.MX8M Plus EVK: QEMU's machine, its RAM, and the names of the files in the board's
# cache. Sourced, not run; it defines constants only.
# shellcheck shell=bash

readonly MACHINE=imx8mp-evk
readonly RAM=512M              # more RAM makes early boot much slower (2G: 45-130 s)
readonly DEFAULT_BOARD_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/qemu-imx8mp

# Cache contents (relative to the cache directory). COMPLETE is written last.
# STORAGE is a second initramfs, appended to INITRD by whoever wants the board to mount an SD
# card: the SD host driver and ext4 modules, in load order, listed in /etc/storage-modules.
readonly KERNEL=Image DTB=board.dtb INITRD=initramfs.cpio.gz STORAGE=storage.cpio.gz \
         KEY=id_ed25519 KNOWN_HOSTS=known_hosts COMPLETE=.complete STATE=board.state
