#!/usr/bin/env bash
# The README's quick start, word for word, as a new user runs it: in a fresh clone of this
# repository with no ../shared beside it and no network.
#
#   1. `git clone` of the committed HEAD into an empty folder of a new temporary directory
#      (so nothing named ../shared exists beside the clone);
#   2. the crates of Cargo.lock into Cargo's download cache (`cargo fetch --locked`): the one
#      download any Rust project needs, made before the network is cut;
#   3. the commands of the README's quick-start block (the ```sh block after the
#      `<!-- quick-start -->` marker), extracted from README.md at run time so the check
#      cannot drift from the text, each run in the clone inside a new network namespace (no
#      interface but a loopback that is down: any network use fails);
#   4. the first command's stdout against the README's expected output (the block after
#      `<!-- expected-output -->`): the same lines, the same iterations, batch accuracies and
#      test accuracy, each loss within one unit of its 6th significant digit (the GEMM kernels
#      may round the last printed digit differently; the README says so).
#
# Exits 1 on the first failure, 2 on a usage error. Needs git, python3 and unshare
# (util-linux), as root or with unprivileged user namespaces.
set -euo pipefail

usage() {
  cat <<EOF
Usage: scripts/check-fresh-clone.sh [--keep]

Clones the repository's HEAD into a temporary folder with no ../shared beside it and runs the
README's quick-start commands there, exactly as written, without network access.

  --keep      keep the temporary folder (printed at the end)

Environment:
  CARGO_TARGET_DIR  honoured if set (a fresh clone otherwise builds everything)
EOF
}

keep=0
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --keep) keep=1 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

die() { echo "check-fresh-clone: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-fresh.XXXXXX")
if ((keep)); then
  trap 'echo "kept: $work" >&2' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
clone=$work/clone/mnist-mlp

# A network namespace of our own: root can make one directly, a user through a user namespace.
if unshare --net true 2>/dev/null; then
  offline=(unshare --net)
elif unshare --user --map-root-user --net true 2>/dev/null; then
  offline=(unshare --user --map-root-user --net)
else
  die "cannot make a network namespace (unshare --net); run as root or enable user namespaces"
fi

step "git clone of HEAD ($(git -C "$repo" rev-parse --short HEAD)) into $clone"
git clone --quiet --no-local "$repo" "$clone"
[[ ! -e $clone/../shared ]] || die "$clone/../shared exists"
[[ -z $(git -C "$repo" status --porcelain --untracked-files=no) ]] ||
  echo "check-fresh-clone: note: uncommitted changes in $repo are not part of the clone" >&2

step "the crates of Cargo.lock into Cargo's cache (the one download; the rest runs offline)"
(cd "$clone" && cargo fetch --locked --quiet)

# The README's blocks, by marker.
blocks=$work/blocks
python3 - "$clone/README.md" "$blocks" <<'EOF'
import os, re, sys

readme, out = sys.argv[1:]
text = open(readme, encoding="utf-8").read()
os.makedirs(out)
for marker in ("quick-start", "expected-output"):
    m = re.search(r"<!-- %s -->\s*\n```[a-z]*\n(.*?)```" % marker, text, re.S)
    if not m:
        sys.exit(f"check-fresh-clone: error: README.md has no ``` block after <!-- {marker} -->")
    open(os.path.join(out, marker), "w").write(m.group(1))
EOF
mapfile -t commands < <(sed -e 's/[[:space:]]#.*$//' -e '/^[[:space:]]*$/d' "$blocks/quick-start")
((${#commands[@]} >= 2)) || die "the quick-start block has ${#commands[@]} command(s), expected two"

n=0
for cmd in "${commands[@]}"; do
  n=$((n + 1))
  step "offline, in the clone: $cmd"
  if ! (cd "$clone" && "${offline[@]}" bash -c "set -euo pipefail; $cmd") \
    >"$work/cmd-$n.out" 2>"$work/cmd-$n.err"; then
    { echo "--- stdout (end)"; tail -n 40 "$work/cmd-$n.out"; echo "--- stderr (end)"
      tail -n 30 "$work/cmd-$n.err"; } >&2
    die "'$cmd' failed in the fresh clone (output above)"
  fi
  tail -n 3 "$work/cmd-$n.err" >&2
done

step "the first command's output against the README's expected output"
python3 - "$blocks/expected-output" "$work/cmd-1.out" <<'EOF'
import math, re, sys

want_path, got_path = sys.argv[1:]
want = open(want_path).read().splitlines()
# The block may show the command as a first `$ ...` line.
want = [l for l in want if not l.startswith("$ ")]
got = open(got_path).read().splitlines()
number = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")

def close(a, b):
    """Equal, or a loss one unit apart in its 6th significant digit."""
    if a == b:
        return True
    x, y = float(a), float(b)
    unit = 10 ** (math.floor(math.log10(abs(y))) - 5) if y else 0
    return abs(x - y) <= unit * 1.0001

bad = []
if len(got) != len(want):
    bad.append(f"{len(got)} lines, the README shows {len(want)}")
for i, (g, w) in enumerate(zip(got, want), 1):
    if number.sub("#", g) != number.sub("#", w):
        bad.append(f"line {i}: {g!r}, the README shows {w!r}")
        continue
    gn, wn = number.findall(g), number.findall(w)
    for j, (a, b) in enumerate(zip(gn, wn)):
        is_loss = "Loss = " + b in w
        if not (close(a, b) if is_loss else a == b):
            bad.append(f"line {i}: {g!r}, the README shows {w!r}")
            break
if bad:
    print("\n".join("check-fresh-clone: error: " + b for b in bad), file=sys.stderr)
    sys.exit(1)
print(f"{len(got)} lines as the README shows them")
EOF
step "fresh clone: the README's ${#commands[@]} quick-start commands passed offline"
