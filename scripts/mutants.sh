#!/usr/bin/env bash
# Mutation testing of the numerical core (src/optim.rs, loss.rs, layers.rs, model.rs,
# gemm/*.rs) with cargo-mutants, against the fast tests only (`cargo test --lib --test
# gradcheck`): each mutant is a small bug (an operator swapped, a function body replaced) that
# those tests must catch. Prints the caught, missed, timeout and unviable counts and every
# survivor; a survivor listed in scripts/mutants-equivalent.txt (an equivalent mutant, with the
# reason) is reported as such, and any other one fails the run.
#
# The whole core is about 480 mutants: see docs/mutation-testing.md for the figures and the
# time it takes. For CI on a change, `--in-diff` tests only the mutants on the changed lines.
set -euo pipefail

# The version this script and the equivalent list were made with: a newer cargo-mutants may
# name or generate mutants differently. 27.1.0 itself needs Rust 1.88 to build.
MUTANTS_VERSION=27.1.0
CORE=(src/optim.rs src/loss.rs src/layers.rs src/model.rs src/gemm/*.rs)

usage() {
  cat <<EOF
Usage: scripts/mutants.sh [-h|--help] [--in-diff DIFF] [--jobs N] [FILE...]

Runs cargo-mutants $MUTANTS_VERSION (installed if missing) on FILE... (default: the numerical
core, ${CORE[*]}) with the fast tests only, then lists every mutant that survived. Exits 1 if
a survivor is not listed in scripts/mutants-equivalent.txt, 2 on a usage error, and with
cargo-mutants' own code if it could not run (e.g. 4: the tests fail without any mutation).

  --in-diff DIFF  only the mutants on lines that DIFF (a unified diff, e.g. from
                  'git diff HEAD~1') adds or changes
  --jobs N        mutants built and tested at once (default 1; each takes a build directory
                  and cores of its own)

Output: target/mutants.out/ (outcomes.json, a log per mutant); builds in target/mutants/.
EOF
}

in_diff=
jobs=1
files=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --in-diff) in_diff=${2:?--in-diff needs a file}; shift 2 ;;
    --in-diff=*) in_diff=${1#*=}; shift ;;
    --jobs | -j) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    -*) echo "mutants: error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "mutants: error: --jobs takes a number >= 1, not '$jobs'" >&2; exit 2; }
if [[ -n $in_diff ]]; then
  in_diff=$(realpath "$in_diff") || exit 2
  [[ -f $in_diff ]] || { echo "mutants: error: no diff file '$in_diff'" >&2; exit 2; }
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
((${#files[@]})) || files=("${CORE[@]}")
for f in "${files[@]}"; do
  [[ -f $f ]] || { echo "mutants: error: no source file '$f'" >&2; exit 2; }
done

if [[ $(cargo mutants --version 2>/dev/null) != "cargo-mutants $MUTANTS_VERSION" ]]; then
  echo "mutants: installing cargo-mutants $MUTANTS_VERSION (a few minutes)" >&2
  cargo install cargo-mutants --version "$MUTANTS_VERSION" --locked
fi

# Our crate at opt-level 1, still with debug assertions and overflow checks: the GEMM oracle
# test takes 2 s instead of 16 s unoptimized, and a rebuild stays a few seconds. No debug
# info: faster links. A target directory of its own, kept between runs, so dependencies are
# built once (cargo-mutants copies the tree elsewhere, but builds where CARGO_TARGET_DIR says).
export CARGO_PROFILE_DEV_OPT_LEVEL=1 CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_DIR=$PWD/target/mutants

args=(--jobs "$jobs" --no-shuffle --output target
  # The fast tests, built and run alone (-C reaches the build too, not just the test run).
  --cargo-arg=--lib --cargo-arg=--test=gradcheck)
for f in "${files[@]}"; do args+=(--file "$f"); done
[[ -z $in_diff ]] || args+=(--in-diff "$in_diff")

SECONDS=0
status=0
rm -rf target/mutants.out target/mutants.out.old # no outcomes of an earlier run read as these
cargo mutants "${args[@]}" || status=$?
# 0: all caught; 2: some missed; 3: some timed out (a hang is a caught bug here). Anything else
# (1 usage, 4 baseline tests fail, ...) means no verdict on the mutants.
case $status in
  0 | 2 | 3) ;;
  *) echo "mutants: cargo-mutants failed (exit $status): see target/mutants.out/" >&2; exit "$status" ;;
esac

if [[ ! -f target/mutants.out/outcomes.json ]]; then
  # cargo-mutants stops before testing when the diff is empty or touches no mutant.
  echo "mutants: no mutants to test${in_diff:+ on the lines of $in_diff}"
  exit 0
fi
python3 - scripts/mutants-equivalent.txt target/mutants.out/outcomes.json "$SECONDS" <<'EOF'
import json, re, sys

listing, outcomes_path, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
# "file:line:col: description  # reason": the name as cargo-mutants prints it.
equivalent = {}
for n, raw in enumerate(open(listing, encoding="utf-8"), 1):
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    name, sep, reason = line.partition("  # ")
    if not sep or not reason.strip():
        sys.exit(f"mutants: {listing}:{n}: no '  # reason' after the mutant")
    equivalent[name.strip()] = reason.strip()

outcomes = [o for o in json.load(open(outcomes_path))["outcomes"] if isinstance(o["scenario"], dict)]
by = {"CaughtMutant": [], "MissedMutant": [], "Timeout": [], "Unviable": []}
for o in outcomes:
    by.setdefault(o["summary"], []).append(o["scenario"]["Mutant"]["name"])

def key(name):
    """The name without line and column: a mutant keeps it when code above it moves."""
    return re.sub(r"^([^:]+):\d+:\d+:", r"\1:", name)

tested = [o["scenario"]["Mutant"]["name"] for o in outcomes]
tested_keys = {}
for t in tested:
    tested_keys[key(t)] = tested_keys.get(key(t), 0) + 1
listed_keys = {}
for e in equivalent:
    listed_keys[key(e)] = listed_keys.get(key(e), 0) + 1

def listed(name):
    """The listed entry for a survivor: the same name, or the same mutant moved (its
    description unique among this run's mutants and the list's entries)."""
    if name in equivalent:
        return name, False
    if tested_keys.get(key(name)) == 1 and listed_keys.get(key(name)) == 1:
        return next(e for e in equivalent if key(e) == key(name)), True
    return None, False

known, unknown, moved = [], [], []
for name in by["MissedMutant"]:
    entry, was_moved = listed(name)
    if entry is None:
        unknown.append(name)
    else:
        known.append((name, equivalent[entry]))
        if was_moved:
            moved.append((entry, name))

viable = len(outcomes) - len(by["Unviable"])
detected = len(by["CaughtMutant"]) + len(by["Timeout"])
print()
print(f"mutants: {len(outcomes)} tested in {seconds // 60} min {seconds % 60:02d} s: "
      f"{len(by['CaughtMutant'])} caught, {len(by['MissedMutant'])} missed "
      f"({len(known)} listed as equivalent, {len(unknown)} not), "
      f"{len(by['Timeout'])} timeouts, {len(by['Unviable'])} unviable")
if viable:
    print(f"mutants: {detected} of {viable} viable mutants caught or timed out "
          f"({100 * detected / viable:.1f}%), {100 * (detected + len(known)) / viable:.1f}% "
          f"with the equivalent ones")
for title, names in (("timed out (the tests hung: counted as caught)", by["Timeout"]),):
    if names:
        print(f"\n{title}:")
        for n in names:
            print(f"  {n}")
if known:
    print("\nequivalent (scripts/mutants-equivalent.txt):")
    for n, reason in known:
        print(f"  {n}\n      {reason}")
survivors = set(by["MissedMutant"])
for e in equivalent:
    if e in tested and e not in survivors:
        print(f"\nmutants: note: '{e}' is listed as equivalent but was caught: take it off the list")
for entry, name in moved:
    print(f"\nmutants: note: '{entry}' is now '{name}': update scripts/mutants-equivalent.txt")
if unknown:
    print("\nMISSED (no test fails with this bug; kill it with a test, or list it as "
          "equivalent with the reason):")
    for n in unknown:
        print(f"  {n}")
    sys.exit(1)
EOF
