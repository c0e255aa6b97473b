#!/usr/bin/env bash
# test-board.sh: the end-to-end board test CI runs. It trains and predicts on the emulated
# i.MX8M Plus EVK and checks the results against the same commands run natively on the host.
#
# What it owns: the sequence host deps -> builds -> native runs -> board boot -> deploy ->
# board runs -> comparison, the comparison's tolerances, and a summary with the time of each
# stage. Every stage must succeed: a missing QEMU or a failed boot is a failure, never a skip.
#
# What it deliberately does not do: anything by hand that the other scripts own. Host packages
# come from scripts/install-host-deps.sh --board, the board from scripts/qemu-board.sh, the
# copying and remote runs from scripts/deploy.sh.
#
# The board is emulated (~170x slower than native), so the work there is tiny: 3 iterations of
# batch 32, then 5 predictions.
set -euo pipefail

readonly PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

usage() {
  cat <<EOF
Usage: $PROG [--cache DIR] [--keep]

End-to-end test on the emulated i.MX8M Plus EVK:
  1. scripts/install-host-deps.sh --board
  2. cargo build --locked --release --target aarch64-unknown-linux-musl, and (for the host) cargo
     build --locked --release
  3. on the host (target/release/mnist-mlp), in a scratch directory with data -> the data set:
       mnist-mlp ${TRAIN_ARGS[*]}
       mnist-mlp ${PREDICT_ARGS[*]}
  4. scripts/qemu-board.sh run: boot the board; scripts/deploy.sh --no-build the static binary
     of step 2 and the data set (into ~/mnist-mlp and ~/mnist-mlp/data); run the same two
     commands there (deploy.sh again, --no-build: the very build of step 2 runs throughout)
  5. compare: the train output line for line, numbers within tolerance (loss relative
     $LOSS_RTOL, accuracy +-1 example: 1/batch per iteration line, 1/test-set-size for the
     test accuracy, other numbers exact); the predictions' digits (all integers) identical,
     their probabilities within $PROB_ATOL, other numbers (logits) within $PROB_ATOL relative
Exits 0 only if every stage succeeded and everything matched; prints a summary with timings.

Options:
  --cache DIR  The board cache, passed to scripts/qemu-board.sh --cache
  --keep       Keep the scratch directory (outputs, models) even on success
  -h, --help   This help

Environment:
  MNIST_MLP_TEST_DATA    The data set [default: <repo>/data/mnist-10k, bundled]
  QEMU_BOARD_TIMEOUT     Seconds to wait for the board's SSH (scripts/qemu-board.sh)
EOF
}

# What runs, on both sides. Tiny on purpose: the board is emulated.
readonly TRAIN_ARGS=(train --data data --iterations 3 --log-every 1 --batch 32 --threads 4 --seed 7
                     --save model.safetensors)
readonly PREDICT_ARGS=(predict --model model.safetensors --data data --index "0,1,2,3,4" --json)
readonly BATCH=32
# Tolerances. Host (x86_64, AVX kernels) and board (aarch64, NEON kernels) sum in different
# orders, so floats differ in the last bits; after 3 Adam steps that stays far below these.
readonly LOSS_RTOL=1e-3   # relative, on each logged loss
readonly PROB_ATOL=1e-3   # absolute on each probability of predict; relative (floor 1) on logits

readonly MUSL=aarch64-unknown-linux-musl

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------
# Stages: each is timed and recorded in $work/stages ("STATUS<TAB>MS<TAB>NAME"), which the
# summary prints. The board steps run in a child process (under qemu-board.sh run) and append
# to the same file.
# ---------------------------------------------------------------------------------------------

# stage NAME CMD...: runs CMD, records its time; on failure records that and exits 1.
stage() {
  local name=$1 t0 rc=0
  shift
  say "$name"
  t0=$(now_ms)
  "$@" || rc=$?
  if ((rc == 0)); then
    printf 'ok\t%s\t%s\n' "$(($(now_ms) - t0))" "$name" >>"$work/stages"
  else
    printf 'FAILED (exit %s)\t%s\t%s\n' "$rc" "$(($(now_ms) - t0))" "$name" >>"$work/stages"
    printf '%s: stage failed: %s (exit %s)\n' "$PROG" "$name" "$rc" >&2
    exit 1
  fi
}

# run_to OUT CMD...: runs CMD with its stdout shown and saved to OUT.
run_to() {
  local out=$1
  shift
  "$@" | tee "$out"
}

# in_dir DIR CMD...: runs CMD in DIR.
in_dir() { (cd "$1" && shift && exec "$@"); }

summary() {
  local rc=$? status ms name
  {
    echo
    echo "==================== board test summary ===================="
    if [[ -s $work/stages ]]; then
      while IFS=$'\t' read -r status ms name; do
        printf '  %s s  %-6s %s\n' "$(awk -v m="$ms" 'BEGIN { printf "%7.1f", m / 1000 }')" "$status" "$name"
      done <"$work/stages"
    fi
    printf '  %7d s         total\n' "$SECONDS"
    if ((rc == 0)); then
      echo "RESULT: PASS (board matches host)"
    else
      echo "RESULT: FAIL (exit $rc); outputs kept in $work"
    fi
  } >&2
  if ((rc == 0 && keep == 0)); then rm -rf "$work"; elif ((rc == 0)); then echo "outputs kept in $work" >&2; fi
}

# ---------------------------------------------------------------------------------------------
# The steps run on the board, as the command of `qemu-board.sh run` (this script, re-invoked
# with --board-steps WORK). BOARD_HOST and BOARD_SSH_OPTS come from qemu-board.sh.
# ---------------------------------------------------------------------------------------------

board_steps() {
  work=$1
  printf 'ok\t%s\t%s\n' "$(($(now_ms) - BOARD_T0))" "board: build cache if missing + boot to SSH" >>"$work/stages"
  export DEPLOY_SSH_OPTS=$BOARD_SSH_OPTS
  local deploy="$REPO/scripts/deploy.sh"
  stage "board: deploy binary + data set (scripts/deploy.sh --data)" \
    "$deploy" --musl --no-build --data "$data" "$BOARD_HOST"
  stage "board: mnist-mlp ${TRAIN_ARGS[*]}" \
    run_to "$work/board-train.out" "$deploy" --musl --no-build "$BOARD_HOST" "${TRAIN_ARGS[@]}"
  stage "board: mnist-mlp ${PREDICT_ARGS[*]}" \
    run_to "$work/board-predict.out" "$deploy" --musl --no-build "$BOARD_HOST" "${PREDICT_ARGS[@]}"
}

# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------

compare() {
  python3 - "$work" "$data" "$BATCH" "$LOSS_RTOL" "$PROB_ATOL" <<'PY'
"""Compares the board's outputs with the host's; prints each line and exits 1 on a mismatch."""
import gzip, json, os, re, struct, sys

work, data, batch, loss_rtol, prob_atol = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")   # NaN/inf stay text: must match
failures = []

def test_set_size():
    """The number of test labels, from the IDX header (raw file preferred, like mnist-mlp)."""
    for name, opener in (("t10k-labels-idx1-ubyte", open), ("t10k-labels-idx1-ubyte.gz", gzip.open)):
        path = os.path.join(data, name)
        if os.path.exists(path):
            with opener(path, "rb") as f:
                magic, count = struct.unpack(">II", f.read(8))
            return count
    sys.exit(f"compare: no t10k-labels-idx1-ubyte(.gz) in {data}")

def read_lines(name):
    with open(os.path.join(work, name)) as f:
        return f.read().splitlines()

def check(ok, what):
    if not ok:
        failures.append(what)
    return ok

# -- train: the same text, numbers within tolerance --------------------------------------------
n_test = test_set_size()
host, board = read_lines("host-train.out"), read_lines("board-train.out")
print(f"train output ({len(host)} lines on the host, {len(board)} on the board; "
      f"tolerances: loss rel {loss_rtol:g}, accuracy {1}/{batch} per batch, {1}/{n_test} on the test set)")
check(len(host) == len(board), f"train: {len(host)} lines on the host, {len(board)} on the board")
check(len(host) > 0, "train: no output")
for i, (h, b) in enumerate(zip(host, board), 1):
    hn, bn = NUM.findall(h), NUM.findall(b)
    if NUM.sub("#", h) != NUM.sub("#", b) or len(hn) != len(bn):
        check(False, f"train line {i}: text differs: host {h!r}, board {b!r}")
        print(f"  DIFF  host : {h}\n        board: {b}")
        continue
    line_ok = True
    for k, (x, y) in enumerate(zip(hn, bn)):
        before = NUM.split(h)[k]           # the text right before this number
        fx, fy = float(x), float(y)
        if before.rstrip().endswith("Loss ="):
            ok = abs(fx - fy) <= loss_rtol * max(abs(fx), abs(fy))
        elif "accuracy" in before.lower():
            n = n_test if "test" in before.lower() else batch
            ok = abs(fx - fy) <= 1.0 / n + 1e-9
        else:
            ok = x == y                    # iteration numbers and anything else: exact
        line_ok &= check(ok, f"train line {i}: {x} vs {y} after {before.strip()!r}")
    print(f"  {'ok   ' if line_ok else 'DIFF '} host : {h}")
    if h != b or not line_ok:
        print(f"        board: {b}")

# -- predict: one JSON object per line; digits identical, probabilities within tolerance ------
def same(h, b, path):
    if isinstance(h, dict) and isinstance(b, dict):
        if h.keys() != b.keys():
            return check(False, f"predict {path}: keys {sorted(h)} vs {sorted(b)}")
        return all([same(h[k], b[k], f"{path}.{k}") for k in h])
    if isinstance(h, list) and isinstance(b, list):
        if len(h) != len(b):
            return check(False, f"predict {path}: {len(h)} vs {len(b)} items")
        return all([same(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(h, b))])
    numbers = (int, float)
    if isinstance(h, numbers) and isinstance(b, numbers) and not isinstance(h, bool) and not isinstance(b, bool):
        if isinstance(h, int) and isinstance(b, int):   # index, digit, label: exact
            return check(h == b, f"predict {path}: {h} vs {b}")
        # Probabilities: absolute. Anything else (logits): relative, the same bound at scale 1.
        tol = prob_atol if ".probabilit" in path else prob_atol * max(1.0, abs(h), abs(b))
        return check(abs(h - b) <= tol, f"predict {path}: {h} vs {b} (tolerance {tol:g})")
    return check(h == b, f"predict {path}: {h!r} vs {b!r}")

host, board = read_lines("host-predict.out"), read_lines("board-predict.out")
print(f"predict output ({len(host)} lines on the host, {len(board)} on the board; tolerance {prob_atol:g})")
check(len(host) == len(board), f"predict: {len(host)} lines on the host, {len(board)} on the board")
check(len(host) > 0, "predict: no output")
for i, (h, b) in enumerate(zip(host, board), 1):
    try:
        hj, bj = json.loads(h), json.loads(b)
    except json.JSONDecodeError as e:
        check(False, f"predict line {i}: not JSON ({e}): host {h!r}, board {b!r}")
        continue
    ok = check(isinstance(hj, dict) and "digit" in hj, f"predict line {i}: no \"digit\" on the host: {h}")
    ok = same(hj, bj, f"line {i}") and ok
    if ok:
        print(f"  ok    index {hj.get('index')}: digit {hj['digit']}, probability "
              f"{hj.get('probability')} on the host, {bj.get('probability')} on the board")
    else:
        print(f"  DIFF  host : {h}\n        board: {b}")

if failures:
    print(f"\n{len(failures)} mismatch(es):")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("board and host agree")
PY
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

data=${MNIST_MLP_TEST_DATA:-$REPO/data/mnist-10k}

if [[ ${1:-} == --board-steps ]]; then
  board_steps "$2"
  exit 0
fi

board_args=()
keep=0
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --cache) (($# >= 2)) || die "--cache needs a directory"; board_args=(--cache "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ -d $data ]] || die "no data set at $data (set MNIST_MLP_TEST_DATA)"
data=$(cd "$data" && pwd)   # absolute: the board steps run elsewhere
work=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-board-test.XXXXXX")
: >"$work/stages"
trap summary EXIT
echo "$PROG: data set $data, scratch directory $work" >&2

stage "host: scripts/install-host-deps.sh --board" "$REPO/scripts/install-host-deps.sh" --board
stage "host: cargo build --locked --release --target $MUSL" \
  cargo build --manifest-path "$REPO/Cargo.toml" --locked --release --target "$MUSL"
stage "host: cargo build --locked --release" cargo build --manifest-path "$REPO/Cargo.toml" --locked --release

# Native reference runs, in a scratch directory laid out like the board's remote directory.
host_bin=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
           python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/mnist-mlp
mkdir -p "$work/host"
ln -s "$data" "$work/host/data"
stage "host: mnist-mlp ${TRAIN_ARGS[*]}" \
  run_to "$work/host-train.out" in_dir "$work/host" "$host_bin" "${TRAIN_ARGS[@]}"
stage "host: mnist-mlp ${PREDICT_ARGS[*]}" \
  run_to "$work/host-predict.out" in_dir "$work/host" "$host_bin" "${PREDICT_ARGS[@]}"

# The board: boot, run the board steps (this script again), power off. Its stages land in
# $work/stages; this stage's time is the whole session, boot and power-off included.
export BOARD_T0 MNIST_MLP_TEST_DATA=$data
BOARD_T0=$(now_ms)
stage "board: session total (scripts/qemu-board.sh run)" \
  "$REPO/scripts/qemu-board.sh" "${board_args[@]}" run -- "$REPO/scripts/test-board.sh" --board-steps "$work"

stage "compare board with host" compare
