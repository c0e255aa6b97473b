#!/usr/bin/env bash
# Speed, memory and accuracy of the tutorial's training run (seed network, 1000 iterations,
# batch 128) with the crate against the numpy reference (scripts/reference/train_numpy.py) and,
# when `import torch` works, the PyTorch one (scripts/reference/train_torch.py), on this
# machine, one run after the other. The row "crate-mm" is the same binary with its products on
# matrixmultiply (MNIST_MLP_GEMM=fallback) instead of its own GEMM.
#
# usage: scripts/bench-compare.sh [--data DIR] [--threads N[,N...]] [--repeat R]
#                                 [--iterations N] [--torch-python PY]
#
#   --data DIR          MNIST IDX files (raw or .gz); default <repo>/data/mnist-10k (bundled)
#   --threads LIST      thread counts to measure, comma-separated; default "1,<cores>"
#   --repeat R          runs of each tool per thread count; default 3 (medians are reported)
#   --iterations N      training iterations; default 1000 (the tutorial)
#   --torch-python PY   a Python that has torch (and numpy); default the venv's Python
#
# Numpy comes from PyPI into <repo>/.venv-bench (created on first use, reused after; a `*`
# .gitignore inside keeps it out of git). PyTorch is not installed by this script: the PyPI
# wheel for x86_64 pulls the CUDA stack (several GB); point --torch-python at a Python that
# has it, or the PyTorch rows are skipped with the reason printed.
#
# Each repetition runs every tool once, in turn (crate, numpy, torch), so a change of load
# on a shared machine hits all tools alike. Wall time and peak RSS come from /usr/bin/time
# (whole process: start-up, data loading, training, test evaluation); ms/iteration is each
# tool's own timing of its training loop (the crate's stderr line "N iterations in X s
# (Y ms/iteration)", the references print the same words). The ratio column is the tool's
# median ms/iteration over the crate's at the same thread count (> 1: slower than the crate).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data="$repo/data/mnist-10k"
threads_list="1,$(nproc)"
repeat=3
iterations=1000
venv="$repo/.venv-bench"
torch_python=""

usage() {
    sed -n '7,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data=${2:?--data needs a directory}; shift 2 ;;
        --threads) threads_list=${2:?--threads needs a number}; shift 2 ;;
        --repeat) repeat=${2:?--repeat needs a number}; shift 2 ;;
        --iterations) iterations=${2:?--iterations needs a number}; shift 2 ;;
        --torch-python) torch_python=${2:?--torch-python needs a path}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench-compare: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

positive_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
positive_int "$repeat" || { echo "bench-compare: --repeat must be a positive integer" >&2; exit 2; }
positive_int "$iterations" || { echo "bench-compare: --iterations must be a positive integer" >&2; exit 2; }
IFS=, read -r -a threads_arr <<<"$threads_list"
# Drop repeated counts (the default "1,<cores>" is "1,1" on one core), keep the order.
declare -A seen=()
threads=()
for t in "${threads_arr[@]}"; do
    positive_int "$t" || { echo "bench-compare: bad thread count '$t'" >&2; exit 2; }
    [[ -n ${seen[$t]:-} ]] && continue
    seen[$t]=1
    threads+=("$t")
done
[[ -d $data ]] || { echo "bench-compare: data directory $data not found" >&2; exit 1; }
data=$(cd "$data" && pwd)
[[ -x /usr/bin/time ]] || { echo "bench-compare: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

# --- numpy venv -------------------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    echo "bench-compare: creating $venv with numpy from PyPI" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy
fi
# The repository's .gitignore may not list this venv: ignore everything inside it from within.
[[ -f $venv/.gitignore ]] || printf '*\n' >"$venv/.gitignore"
py="$venv/bin/python"
[[ -n $torch_python ]] || torch_python=$py

# --- crate --------------------------------------------------------------------------------------
echo "bench-compare: cargo build --release" >&2
(cd "$repo" && cargo build --release --quiet)
bin="$repo/target/release/mnist-mlp"

# --- which tools --------------------------------------------------------------------------------
tools=(crate crate-mm numpy)
if torch_err=$("$torch_python" -c 'import torch' 2>&1); then
    tools+=(torch)
else
    echo "bench-compare: skipping PyTorch: 'import torch' fails in $torch_python: $(tail -n 1 <<<"$torch_err")" >&2
    echo "bench-compare:   (PyPI's x86_64 torch wheel pulls the CUDA stack, several GB; pass --torch-python PY for a Python that has torch)" >&2
fi

# Sets the array `cmd` to the command line of tool `$1` at `$2` threads.
tool_cmd() {
    local tool=$1 n=$2
    local common=(--data "$data" --threads "$n" --iterations "$iterations")
    case "$tool" in
        crate) cmd=("$bin" train "${common[@]}") ;;
        crate-mm) cmd=(env MNIST_MLP_GEMM=fallback "$bin" train "${common[@]}") ;;
        numpy) cmd=("$py" "$repo/scripts/reference/train_numpy.py" "${common[@]}") ;;
        torch) cmd=("$torch_python" "$repo/scripts/reference/train_torch.py" "${common[@]}") ;;
    esac
}

# Median of the numbers on stdin (mean of the middle two for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
        else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "numpy:   $("$py" -c 'import numpy; print(numpy.__version__)') ($("$py" -c 'import numpy; c = numpy.show_config(mode="dicts"); print(c["Build Dependencies"]["blas"]["name"], c["Build Dependencies"]["blas"]["version"])' 2>/dev/null || echo "BLAS unknown"))"
echo "data:    $data"
echo "load before: $(uptime)"

# --- runs ---------------------------------------------------------------------------------------
cmd=()
# Every run leaves $work/<tool>-<threads>-<rep>.{out,err,time}; the time file holds
# "wall_s user_s sys_s maxrss_KiB".
for n in "${threads[@]}"; do
    for ((r = 1; r <= repeat; r++)); do
        for tool in "${tools[@]}"; do
            base="$work/$tool-$n-$r"
            tool_cmd "$tool" "$n"
            echo "bench-compare: threads $n, run $r/$repeat: $tool" >&2
            if ! env -u RUST_LOG /usr/bin/time -f '%e %U %S %M' -o "$base.time" \
                "${cmd[@]}" >"$base.out" 2>"$base.err"; then
                echo "bench-compare: $tool failed (threads $n, run $r); its stderr ends:" >&2
                tail -n 5 "$base.err" >&2
                exit 1
            fi
        done
    done
done
echo "load after:  $(uptime)"
echo

# --- table --------------------------------------------------------------------------------------
printf '%-8s %7s %10s %9s %10s %13s %9s %17s\n' tool threads "wall s" "cpu s" "ms/iter" "peak RSS MiB" accuracy "ms/iter vs crate"
printf '%-8s %7s %10s %9s %10s %13s %9s %17s\n' -------- ------- ------ ----- ------- ------------ -------- ----------------
for n in "${threads[@]}"; do
    crate_ms=""
    for tool in "${tools[@]}"; do
        files=("$work/$tool-$n-"*.time)
        wall=$(for f in "${files[@]}"; do awk '{ print $1 }' "$f"; done | median)
        cpu=$(for f in "${files[@]}"; do awk '{ print $2 + $3 }' "$f"; done | median)
        rss=$(for f in "${files[@]}"; do awk '{ print $4 / 1024 }' "$f"; done | median)
        ms=$(cat "$work/$tool-$n-"*.err | sed -n 's/.* iterations in [0-9.]* s (\([0-9.]*\) ms\/iteration).*/\1/p' | median)
        # Accuracy of every run; a fixed seed gives one value per tool, else "min-max".
        acc=$(cat "$work/$tool-$n-"*.out | sed -n 's/^Accuracy on test set: //p' | sort -g |
            awk 'NR == 1 { lo = $1 } { hi = $1 } END { print (lo == hi ? lo : lo "-" hi) }')
        [[ $tool == crate ]] && crate_ms=$ms
        ratio=$(awk -v a="$ms" -v b="$crate_ms" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
        printf '%-8s %7s %10.2f %9.2f %10.2f %13.1f %9s %17s\n' "$tool" "$n" "$wall" "$cpu" "$ms" "$rss" "$acc" "$ratio"
    done
done
echo
echo "medians of $repeat run(s) each; wall and peak RSS of the whole process (/usr/bin/time), ms/iter from each tool's own timing of its training loop"
