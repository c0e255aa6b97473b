#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (the targets in fuzz/, cargo-fuzz + libFuzzer on the
# nightly toolchain), one target after the other, each for SECONDS:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default 60 s, all targets
#
# Targets: idx_images, idx_labels (raw IDX from memory), idx_gz (.gz IDX files), model_file
# (models and checkpoints, then resume), image (PGM/PNG digits). Each starts from the
# committed seeds (fuzz/seeds/TARGET) and the corpus grown by earlier runs (fuzz/corpus/TARGET,
# not committed), with the dictionary of its format (fuzz/dicts/). A finding is any panic, a failed check of the target, an input running
# longer than FUZZ_TIMEOUT seconds (a hang), one allocation over FUZZ_MALLOC_MB or a resident
# size over FUZZ_RSS_MB (libFuzzer's limits); besides, every target bounds its largest
# allocation by its input's real length, so a size claimed by a header cannot pass unnoticed.
# The input is saved as fuzz/artifacts/TARGET/crash-* (or oom-*, timeout-*): reproduce with
# `cargo +nightly fuzz run --fuzz-dir fuzz TARGET FILE`, then make it a regression test
# (tests/fuzz-regressions/).
#
# Installs what is missing (the nightly toolchain, cargo-fuzz), builds once, runs the targets
# one at a time (one process: these machines have 2 cores), prints executions per target and
# exits non-zero if any target found something. Logs: fuzz/artifacts/TARGET/last-run.log.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
secs=${1:-60}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive whole number, not '$secs'" >&2; exit 2; }
shift || true
all=(idx_images idx_labels idx_gz model_file image)
targets=("${@:-${all[@]}}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (have: ${all[*]})" >&2; exit 2; }
done

# No allocation needs more than a few MiB on these inputs; 64 MiB at once is a finding.
malloc_mb=${FUZZ_MALLOC_MB:-64}
rss_mb=${FUZZ_RSS_MB:-512}
# Every input runs in milliseconds; a hang never ends. 60 s, not less: on this loaded shared
# machine a 90 ms input was seen stalled for 12 s, and once for 70 s.
timeout=${FUZZ_TIMEOUT:-60}
# AddressSanitizer keeps freed blocks in a 256 MiB quarantine by default, which alone brought
# the idx_gz run to 391 MiB; a smaller one leaves the RSS limit to measure our own memory.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=64"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing the nightly toolchain (cargo-fuzz needs it for the sanitizers)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "fuzz.sh: building the targets (nightly, AddressSanitizer, debug assertions)"
build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
if ! cargo +nightly fuzz build --fuzz-dir fuzz >"$build_log" 2>&1; then
  cat "$build_log" >&2
  echo "fuzz.sh: the fuzz targets do not build" >&2
  exit 1
fi

failed=()
summary=()
stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$2" | tail -1; }
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  echo "fuzz.sh: $t for $secs s (malloc limit $malloc_mb MiB, RSS limit $rss_mb MiB, timeout $timeout s)"
  dict=()
  case $t in
    idx_*) dict=(-dict=fuzz/dicts/idx.dict) ;;
    *) [[ -f "fuzz/dicts/$t.dict" ]] && dict=(-dict="fuzz/dicts/$t.dict") ;;
  esac
  set +e
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    "${dict[@]}" -max_total_time="$secs" -timeout="$timeout" \
    -malloc_limit_mb="$malloc_mb" -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 -close_fd_mask=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(stat number_of_executed_units "$log")
  rate=$(stat average_exec_per_sec "$log")
  rss=$(stat peak_rss_mb "$log")
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  if ((rc == 0)); then
    result="no findings"
  else
    found=$(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //' | tr '\n' ' ')
    result="FINDING (exit $rc): ${found:-see $log}"
    failed+=("$t")
    echo "---- last lines of $log" >&2
    tail -n 60 "$log" >&2
  fi
  summary+=("$(printf '%-11s %5s s  %12s execs  %8s exec/s  corpus %5s  peak RSS %5s MiB  %s' \
    "$t" "$secs" "${execs:-?}" "${rate:-?}" "$corpus" "${rss:-?}" "$result")")
  echo "${summary[-1]}"
done

echo
echo "fuzz.sh summary:"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
