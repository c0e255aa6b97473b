#!/usr/bin/env bash
# How the training step scales with threads on this machine: `mnist-mlp bench` at each thread
# count in turn, several rounds, so a change in the machine's load hits every count alike; prints
# the median of the runs' step medians per count and its speedup over the first count.
#
# usage: scripts/bench-threads.sh [--threads N[,N...]] [--rounds R] [--steps S] [--arch A]
#                                 [--bin PATH]
#
#   --threads LIST   thread counts, comma-separated; default "1,<cores>"
#   --rounds R       runs of each count; default 8
#   --steps S        timed steps per run (after bench's warm-up); default 1000
#   --arch A         seed or relu; default seed
#   --bin PATH       the mnist-mlp to measure; default target/release/mnist-mlp (built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

threads="1,$(nproc)"
rounds=8
steps=1000
arch=seed
bin=target/release/mnist-mlp
while (($#)); do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-threads: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [[ ! -x $bin ]]; then
    cargo build --release --locked
fi
IFS=, read -ra counts <<<"$threads"

echo "bench-threads: $bin, arch $arch, $steps steps per run, $rounds rounds of threads ${threads}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 1; r <= rounds; r++)); do
    for t in "${counts[@]}"; do
        line=$("$bin" bench --threads "$t" --steps "$steps" --arch "$arch" | grep '^training step:')
        ms=$(sed -E 's/^training step: ([0-9.]+) ms.*/\1/' <<<"$line")
        echo "round $r, $t thread(s): $ms ms"
        echo "$t $ms" >>"$results"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-8s %12s %10s   %s\n' threads "median ms" speedup "step medians of the runs"
first=""
for t in "${counts[@]}"; do
    runs=$(awk -v t="$t" '$1 == t { print $2 }' "$results" | sort -g)
    median=$(awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$runs")
    first=${first:-$median}
    speedup=$(awk -v a="$first" -v b="$median" 'BEGIN { printf "%.2f", a / b }')
    printf '%-8s %12.3f %9s×   %s\n' "$t" "$median" "$speedup" "$(tr '\n' ' ' <<<"$runs")"
done
