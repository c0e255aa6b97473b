#!/usr/bin/env bash
# power-cut.sh: pulls the plug on the emulated i.MX8M Plus EVK while mnist-mlp trains on its SD
# card, and checks that no model and no checkpoint the program reported saved is lost.
#
# What it owns: the SD card image (ext4 made on the host with mkfs.ext4 -d, holding the board's
# binary and a small data set), an init for the board that mounts the card and trains on it
# with a checkpoint every iteration, the cuts (SIGKILL of QEMU: the guest's page cache and
# everything in flight on the card are lost, as on a bench supply switched off), and the
# checks after each cut: e2fsck -fy (the journal replay a reboot does), the files read out with
# debugfs, and a resume from the recovered checkpoint that must end in the model of an
# uninterrupted run, tensor for tensor.
#
# What it reuses: scripts/qemu-board.sh builds the board (kernel, device tree, initramfs, and
# the SD and ext4 modules) into its cache; scripts/board-common.sh names them.
#
# Run `scripts/power-cut.sh --help` for the options. Facts behind it: docs/robustness.md,
# "Power cuts on the board's SD card".
set -euo pipefail

readonly PROG=${0##*/}
readonly REPO=$(cd "$(dirname "$0")/.." && pwd)
# e2fsck, debugfs and mkfs.ext4 live in /usr/sbin, which a non-root user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
# MACHINE, RAM, DEFAULT_BOARD_CACHE and the cache's file names.
# shellcheck source=scripts/board-common.sh
source "$REPO/scripts/board-common.sh"

# Tunables.
readonly DEFAULT_CUTS=10
readonly DEFAULT_SEED=1
readonly ITERATIONS=60         # ~20-40 s of training on the emulated board, ~1 checkpoint/0.5 s
# The run under test: a tiny network, a checkpoint after every iteration, the model at the end.
# One thread: the same bits whatever the thread count, and a board loaded like a real one.
readonly TRAIN_ARGS=(--arch relu --hidden 16 --batch 32 --iterations "$ITERATIONS" --threads 1
                     --log-every 1)
readonly TRAIN_IMAGES=512 TEST_IMAGES=100   # subset of data/mnist-10k, stored raw on the card
readonly CARD_SIZE=64M
readonly BOOT_TIMEOUT=300      # s from power-on to the start of training (~10 s idle)
readonly RUN_TIMEOUT=900       # s for the whole uncut run
readonly TAIL_S=3              # cuts also fall this long after the run ends: a model reported
                               # saved must survive the seconds after it too
readonly UNSAFE_DEFAULT_MODE=truncate
# The EVK's SD slot, usdhc2. Its card-detect GPIO and its GPIO-switched supply are not
# emulated: without these edits the controller never probes (deferred on vmmc-supply) or
# never sees the card. (usdhc3, the eMMC slot, needs none of them: QEMU's bus 2.)
readonly SD_NODE=/soc@0/bus@30800000/mmc@30b50000
readonly SD_BUS=1
readonly CARD_DEV=/dev/mmcblk1
readonly APPEND_BASE="console=ttymxc1,115200 rdinit=/power-cut-init panic=1"

usage() {
  cat <<EOF
Usage: $PROG [--cuts N] [--seed S] [--unsafe [--unsafe-writes MODE]] [--cache DIR] [--keep]

Boots the emulated i.MX8M Plus EVK (scripts/qemu-board.sh's board) with an ext4 SD card in its
SD slot, trains a tiny network on the card (${TRAIN_ARGS[*]}
--checkpoint-every 1, --checkpoint and --save on the card, -v so that each checkpoint is
logged once it is durable), and cuts the
power (SIGKILL of QEMU) at a random moment of the run, N times, each on a fresh card. After
each cut: e2fsck -fy the card, read the checkpoint and the model with debugfs, and check:

  a checkpoint is lost when the log reported iteration R saved and the card's checkpoint is
  missing, unreadable or older than R, or when the checkpoint on the card does not resume
  (under qemu-aarch64, the board's own binary) to the model of an uninterrupted run, tensor
  for tensor;
  a model is lost when the log reported it saved and it is missing, or when a model on the
  card differs from the uninterrupted run's.

First one uncut run on the board checks that its model equals the one qemu-aarch64 makes on
the host (so resuming on the host proves what resuming on the board would) and times the run.

The last line of stdout is 'power-cut: N cuts, K models lost, C checkpoints lost'; the exit
status is 0 only when K = C = 0 (1 for losses, 2 for usage, other failures 1 with a message).

Options:
  --cuts N               Power cuts [default: $DEFAULT_CUTS]
  --seed S               Seed of the cut moments [default: $DEFAULT_SEED]
  --unsafe               The control: the board runs a build with the test-only cargo feature
                         unsafe-writes (files written in place, never fsynced). Losses are
                         expected; the harness is blind if there are none.
  --unsafe-writes MODE   How that build writes: 'overwrite' (over the old bytes, no truncate)
                         or 'truncate' (truncate then write, which ext4's auto_da_alloc
                         flushes on close) [default: $UNSAFE_DEFAULT_MODE]
  --cache DIR            The board's cache (scripts/qemu-board.sh --cache) [default:
                         $DEFAULT_BOARD_CACHE]
  --keep                 Keep the scratch directory (console logs, cards) at the end
  -h, --help             This help.
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
now_ms() { date +%s%3N; }

need_tools() {
  local t missing=()
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  ((${#missing[@]} == 0)) ||
    die "missing host tools: ${missing[*]} (hint: scripts/install-host-deps.sh --board)"
}

# ---------------------------------------------------------------------------------------------
# Safetensors on the host: the checkpoint's iteration, and tensor-for-tensor equality.
# ---------------------------------------------------------------------------------------------

# st iteration FILE: prints the checkpoint's metadata 'iteration'.
# st same FILE REF:   exits 0 when FILE has exactly REF's tensors (names, dtypes, shapes,
#                     bytes), 3 when it does not, saying which differs.
# Exits 2 with a message when a file is not a readable safetensors file.
st() {
  python3 - "$@" <<'PY'
import json, struct, sys

def read(path):
    try:
        b = open(path, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        head = json.loads(b[8:8 + n])
        meta = head.pop("__metadata__", {})
        data = b[8 + n:]
        tensors = {}
        for name, t in head.items():
            lo, hi = t["data_offsets"]
            if hi > len(data):
                raise ValueError(f"tensor {name} runs past the end of the file")
            tensors[name] = (t["dtype"], t["shape"], data[lo:hi])
        return meta, tensors
    except Exception as e:
        print(f"{path}: not a readable safetensors file ({e})", file=sys.stderr)
        sys.exit(2)

cmd = sys.argv[1]
meta, tensors = read(sys.argv[2])
if cmd == "iteration":
    print(int(meta["iteration"]))
elif cmd == "same":
    _, ref = read(sys.argv[3])
    if tensors.keys() != ref.keys():
        print(f"tensors {sorted(tensors)} differ from {sorted(ref)}", file=sys.stderr)
        sys.exit(3)
    for name in sorted(ref):
        if tensors[name] != ref[name]:
            print(f"tensor {name} differs from the uninterrupted run's", file=sys.stderr)
            sys.exit(3)
PY
}

# ---------------------------------------------------------------------------------------------
# The board
# ---------------------------------------------------------------------------------------------

# Writes the board's PID 1 for this run into directory $1 (packed as a third initramfs).
# $2: the environment for mnist-mlp ('' or MNIST_MLP_UNSAFE_WRITES=MODE).
write_init() {
  mkdir -p "$1/mnt"
  cat >"$1/power-cut-init" <<EOF
#!/bin/sh
# PID 1 of the power-cut board (written by scripts/power-cut.sh).
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in \$(cat /etc/storage-modules); do
  insmod "/lib/modules/\$m.ko" || echo "power-cut-init: insmod \$m failed"
done
i=0
while [ ! -b $CARD_DEV ]; do
  i=\$((i + 1))
  [ "\$i" -le 300 ] || { echo "power-cut-init: no $CARD_DEV after 30 s"; poweroff -f; }
  sleep 0.1
done
# Default mount options: ext4 with data=ordered and delayed allocation.
mount -t ext4 $CARD_DEV /mnt || { echo "power-cut-init: cannot mount $CARD_DEV"; poweroff -f; }
grep ' /mnt ' /proc/mounts
cd /mnt
echo "power-cut-init: training"
# Through one pipe: stdout and stderr keep their order, and no progress bar is drawn (it
# needs a terminal). A line is printed after the save it reports has returned.
{
  env $2 ./mnist-mlp train ${TRAIN_ARGS[*]} --data data \\
    --checkpoint ckpt.safetensors --checkpoint-every 1 --save model.safetensors -v
  echo "power-cut-init: finished, exit \$?"
} 2>&1 | cat
case \$(cat /proc/cmdline) in
  *power_cut.clean*)
    umount /mnt && echo "power-cut-init: unmounted"
    poweroff -f ;;
esac
# Waiting for the cut. No sync: what the writer left in the page cache stays there.
while :; do sleep 1000; done
EOF
  chmod 755 "$1/power-cut-init"
}

# Boots the board on card $1 with console log $2 and extra kernel arguments $3, in the
# background; sets `qemu_pid`.
power_on() {
  : >"$2"
  qemu-system-aarch64 -M "$MACHINE" -smp 4 -m "$RAM" -display none -monitor none -no-reboot \
    -serial null -serial "file:$2" \
    -kernel "$cache/$KERNEL" -dtb "$work/board.dtb" -initrd "$work/initrd.gz" \
    -append "$APPEND_BASE $3" -nic none \
    -drive "if=sd,bus=$SD_BUS,unit=0,file=$1,format=raw" 2>>"$work/qemu.err" &
  qemu_pid=$!
}

# Waits until console log $1 holds a line matching $2, at most $3 s; fails if QEMU exits.
wait_for() {
  local deadline=$(($(now_ms) + $3 * 1000))
  until grep -q -- "$2" "$1"; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      grep -q -- "$2" "$1" && return 0
      return 1
    fi
    (($(now_ms) < deadline)) || return 1
    sleep 0.05
  done
}

board_failed() {
  kill -9 "$qemu_pid" 2>/dev/null || true
  printf '%s: error: %s. Last lines of the console (%s):\n' "$PROG" "$2" "$1" >&2
  tail -n 30 "$1" | sed 's/^/  | /' >&2
  exit 1
}

# Copies FILE ($2, absolute on the card) out of card image $1 into $3; fails if it is not there.
card_get() {
  rm -f "$3"
  debugfs -R "dump -p $2 $3" "$1" >/dev/null 2>&1 || true
  # debugfs says nothing useful in its exit status: a missing file leaves no output file.
  debugfs -R "stat $2" "$1" 2>&1 | grep -q '^Inode:' && [[ -f $3 ]]
}

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

cuts=$DEFAULT_CUTS seed=$DEFAULT_SEED unsafe=0 unsafe_mode=$UNSAFE_DEFAULT_MODE keep=0
cache=$DEFAULT_BOARD_CACHE
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --cuts) (($# >= 2)) || { usage >&2; exit 2; }; cuts=$2; shift 2 ;;
    --seed) (($# >= 2)) || { usage >&2; exit 2; }; seed=$2; shift 2 ;;
    --unsafe) unsafe=1; shift ;;
    --unsafe-writes) (($# >= 2)) || { usage >&2; exit 2; }; unsafe_mode=$2; shift 2 ;;
    --cache) (($# >= 2)) || { usage >&2; exit 2; }; cache=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) printf '%s: unknown argument %s (see --help)\n' "$PROG" "$1" >&2; exit 2 ;;
  esac
done
[[ $cuts =~ ^[1-9][0-9]*$ ]] || { say "--cuts must be a positive number, not '$cuts'"; exit 2; }
[[ $seed =~ ^[0-9]+$ ]] || { say "--seed must be a number, not '$seed'"; exit 2; }
[[ $unsafe_mode == overwrite || $unsafe_mode == truncate ]] ||
  { say "--unsafe-writes must be overwrite or truncate, not '$unsafe_mode'"; exit 2; }

need_tools qemu-system-aarch64 qemu-aarch64 mkfs.ext4 e2fsck debugfs fdtput cpio gzip python3 cargo

# ---------------------------------------------------------------------------------------------
# Setting up: the board, the binaries, the data, the reference model, the card
# ---------------------------------------------------------------------------------------------

"$REPO/scripts/qemu-board.sh" --cache "$cache" build
cache=$(cd "$cache" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-power-cut.XXXXXX")
qemu_pid=""
cleanup() {
  [[ -z $qemu_pid ]] || kill -9 "$qemu_pid" 2>/dev/null || true
  if ((keep)); then say "scratch directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
say "scratch directory $work"

readonly MUSL=aarch64-unknown-linux-musl
target_dir=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
             python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
say "building the board's binary (cargo build --release --target $MUSL)"
cargo build --manifest-path "$REPO/Cargo.toml" --locked --release --target "$MUSL" -q
safe_bin=$target_dir/$MUSL/release/mnist-mlp
board_bin=$safe_bin board_env=""
if ((unsafe)); then
  # Its own target directory: the release binary is never built with the feature.
  say "building the unsafe control (--features unsafe-writes, target dir $target_dir/power-cut-unsafe)"
  cargo build --manifest-path "$REPO/Cargo.toml" --locked --release --target "$MUSL" -q \
    --features unsafe-writes --target-dir "$target_dir/power-cut-unsafe"
  board_bin=$target_dir/power-cut-unsafe/$MUSL/release/mnist-mlp
  board_env=MNIST_MLP_UNSAFE_WRITES=$unsafe_mode
fi
# The host runs the board's code path: the same binary, the same CPU model.
host_run() { qemu-aarch64 -cpu cortex-a53 "$safe_bin" "$@"; }

# The data: the first images of the bundled set, raw (the board maps them, nothing to unzip).
mkdir -p "$work/card/data"
python3 - "$REPO/data/mnist-10k" "$work/card/data" "$TRAIN_IMAGES" "$TEST_IMAGES" <<'PY'
import gzip, struct, sys
src, dst, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for name, n in [("train-images-idx3-ubyte", n_train), ("train-labels-idx1-ubyte", n_train),
                ("t10k-images-idx3-ubyte", n_test), ("t10k-labels-idx1-ubyte", n_test)]:
    b = gzip.open(f"{src}/{name}.gz").read()
    dims = b[3]
    size = 1
    for d in struct.unpack(f">{dims}I", b[4:4 + 4 * dims])[1:]:
        size *= d
    head = b[:4] + struct.pack(">I", n) + b[8:4 + 4 * dims]
    open(f"{dst}/{name}", "wb").write(head + b[4 + 4 * dims:4 + 4 * dims + n * size])
PY
cp "$board_bin" "$work/card/mnist-mlp"
mkdir -p "$work/ref"
say "reference: the uninterrupted run under qemu-aarch64"
host_run train "${TRAIN_ARGS[@]}" --data "$work/card/data" --save "$work/ref/model.safetensors" \
  -q >"$work/ref/train.out" || die "the reference run failed: $(cat "$work/ref/train.out")"

mkfs.ext4 -q -F -d "$work/card" "$work/card.img" "$CARD_SIZE" >"$work/mkfs.out" 2>&1 ||
  die "mkfs.ext4 failed: $(cat "$work/mkfs.out")"

# The board's device tree with the SD slot usable, and its initramfs: the board's own, the SD
# and ext4 modules, and this run's init.
cp "$cache/$DTB" "$work/board.dtb"
fdtput -d "$work/board.dtb" "$SD_NODE" cd-gpios
fdtput -d "$work/board.dtb" "$SD_NODE" vmmc-supply
fdtput "$work/board.dtb" "$SD_NODE" non-removable
write_init "$work/init" "$board_env"
(cd "$work/init" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip >"$work/init.cpio.gz"
cat "$cache/$INITRD" "$cache/$STORAGE" "$work/init.cpio.gz" >"$work/initrd.gz"

# ---------------------------------------------------------------------------------------------
# The uncut run: times the run, and checks that the board computes what qemu-aarch64 does
# ---------------------------------------------------------------------------------------------

say "uncut run on the board (boot ~10-30 s, then training)"
cp --sparse=always "$work/card.img" "$work/uncut.img"
power_on "$work/uncut.img" "$work/uncut.log" power_cut.clean
wait_for "$work/uncut.log" 'power-cut-init: training' "$BOOT_TIMEOUT" ||
  board_failed "$work/uncut.log" "the board did not start training"
t0=$(now_ms)
wait_for "$work/uncut.log" 'power-cut-init: finished' "$RUN_TIMEOUT" ||
  board_failed "$work/uncut.log" "the uncut run did not finish"
run_ms=$(($(now_ms) - t0))
grep -q 'power-cut-init: finished, exit 0' "$work/uncut.log" ||
  board_failed "$work/uncut.log" "the uncut run failed"
wait "$qemu_pid" || true
qemu_pid=""
e2fsck -fn "$work/uncut.img" >"$work/uncut.fsck" 2>&1 ||
  die "the cleanly unmounted card is not clean: $(cat "$work/uncut.fsck")"
card_get "$work/uncut.img" /model.safetensors "$work/uncut-model.safetensors" ||
  die "the uncut run left no model on the card"
st same "$work/uncut-model.safetensors" "$work/ref/model.safetensors" ||
  die "the board's model differs from qemu-aarch64's: resuming on the host proves nothing"
saves=$(grep -c 'checkpoint at iteration [0-9]* written' "$work/uncut.log" || true)
say "uncut run: $((run_ms / 1000)).$(printf '%03d' $((run_ms % 1000))) s of training, $saves checkpoints logged; its model equals qemu-aarch64's"

# ---------------------------------------------------------------------------------------------
# The cuts
# ---------------------------------------------------------------------------------------------

# Where the program was when the power went, from the last line it printed: a checkpoint save
# starts right after an 'Iteration' line (the step is done) and ends with its 'checkpoint at
# iteration' line; the last checkpoint is saved after the 'N iterations in' line, the model
# after the test accuracy line.
phase_of() {
  local last
  last=$(grep -E '^(Iteration |Accuracy on test set|mnist-mlp: |power-cut-init: finished)' "$1" |
         tail -n 1)
  case $last in
    'Iteration '*) echo "inside a checkpoint save" ;;
    *' iterations in '*) echo "inside the last checkpoint save" ;;
    'Accuracy on test set'*) echo "inside the model save" ;;
    *'checkpoint at iteration'*) echo "between saves" ;;
    *'model saved'* | 'power-cut-init: finished'*) echo "after the run" ;;
    *) echo "before the first save" ;;
  esac
}

window_ms=$((run_ms + TAIL_S * 1000))
RANDOM=$seed
models_lost=0 ckpts_lost=0 inside=0
printf 'power-cut: %d cuts, seed %d, %s board binary, cut moments uniform over %d ms of training\n' \
  "$cuts" "$seed" "$( ((unsafe)) && echo "UNSAFE ($unsafe_mode)" || echo "release")" "$window_ms"
for ((k = 1; k <= cuts; k++)); do
  at_ms=$(( ((RANDOM << 15) | RANDOM) % window_ms ))
  img=$work/cut$k.img log=$work/cut$k.log dir=$work/cut$k
  mkdir -p "$dir"
  cp --sparse=always "$work/card.img" "$img"
  power_on "$img" "$log" ""
  wait_for "$log" 'power-cut-init: training' "$BOOT_TIMEOUT" ||
    board_failed "$log" "cut $k: the board did not start training"
  sleep "$((at_ms / 1000)).$(printf '%03d' $((at_ms % 1000)))"
  kill -9 "$qemu_pid"
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=""

  phase=$(phase_of "$log")
  [[ $phase != inside* ]] || inside=$((inside + 1))
  reported=$( (grep -o 'checkpoint at iteration [0-9]* written' "$log" || true) | tail -n 1 |
             awk '{print $4}')
  reported=${reported:-0}
  model_reported=0
  grep -q 'mnist-mlp: info: model saved to' "$log" && model_reported=1

  # Recover as a reboot would: replay the journal, repair.
  fsck_rc=0
  e2fsck -fy "$img" >"$dir/fsck.out" 2>&1 || fsck_rc=$?
  ((fsck_rc < 4)) || die "cut $k: e2fsck -fy could not repair the card (exit $fsck_rc): $(tail -n 5 "$dir/fsck.out")"

  verdict=()
  # The checkpoint.
  ckpt_state="absent"
  if card_get "$img" /ckpt.safetensors "$dir/ckpt.safetensors"; then
    if got=$(st iteration "$dir/ckpt.safetensors" 2>"$dir/st.err"); then
      ckpt_state="iteration $got"
      if ((got < reported)); then
        verdict+=("CHECKPOINT LOST: iteration $got on the card, $reported reported")
        ckpts_lost=$((ckpts_lost + 1))
      elif ! host_run train --resume "$dir/ckpt.safetensors" --data "$work/card/data" \
               --save "$dir/resumed.safetensors" -q >"$dir/resume.out" 2>&1; then
        verdict+=("CHECKPOINT LOST: it does not resume: $(tail -n 1 "$dir/resume.out")")
        ckpts_lost=$((ckpts_lost + 1))
      elif ! st same "$dir/resumed.safetensors" "$work/ref/model.safetensors" 2>"$dir/st.err"; then
        verdict+=("CHECKPOINT LOST: resumed, it ends in another model: $(cat "$dir/st.err")")
        ckpts_lost=$((ckpts_lost + 1))
      else
        ckpt_state+=", resumes to the uninterrupted run's model"
      fi
    else
      ckpt_state="unreadable ($(stat -c %s "$dir/ckpt.safetensors") bytes)"
      verdict+=("CHECKPOINT LOST: on the card but unreadable: $(cat "$dir/st.err")")
      ckpts_lost=$((ckpts_lost + 1))
    fi
  elif ((reported > 0)); then
    verdict+=("CHECKPOINT LOST: missing, iteration $reported reported")
    ckpts_lost=$((ckpts_lost + 1))
  fi
  # The model.
  model_state="absent"
  if card_get "$img" /model.safetensors "$dir/model.safetensors"; then
    if st same "$dir/model.safetensors" "$work/ref/model.safetensors" 2>"$dir/st.err"; then
      model_state="the uninterrupted run's"
    else
      model_state="bad ($(stat -c %s "$dir/model.safetensors") bytes)"
      verdict+=("MODEL LOST: on the card but not the model: $(cat "$dir/st.err")")
      models_lost=$((models_lost + 1))
    fi
  elif ((model_reported)); then
    verdict+=("MODEL LOST: missing, reported saved")
    models_lost=$((models_lost + 1))
  fi
  ((${#verdict[@]} > 0)) || verdict=(ok)
  printf 'cut %d/%d at %d.%03d s, %s: e2fsck %d; checkpoint reported %s, card: %s; model %s, card: %s: %s\n' \
    "$k" "$cuts" $((at_ms / 1000)) $((at_ms % 1000)) "$phase" "$fsck_rc" "$reported" "$ckpt_state" \
    "$( ((model_reported)) && echo reported || echo "not reported")" "$model_state" \
    "$(IFS=';'; echo "${verdict[*]}")"
  ((keep)) || rm -f "$img"
done

printf 'power-cut: %d of %d cuts (%d%%) fell inside a save\n' "$inside" "$cuts" $((100 * inside / cuts))
printf 'power-cut: %d cuts, %d models lost, %d checkpoints lost\n' "$cuts" "$models_lost" "$ckpts_lost"
((models_lost == 0 && ckpts_lost == 0))
