#!/usr/bin/env bash
# Runs the Python interoperability tests (tests/python) against the release binary, and
# smoke-tests scripts/plot-metrics.py on the metrics of a short training run:
#
#   1. a venv (python3 -m venv, default <repo>/.venv-tests), made once, with
#      tests/python/requirements.txt installed; reinstalled only when that file changes;
#   2. target/release/mnist-mlp, built with `cargo build --release` if missing
#      (MNIST_MLP_BIN names another binary, which is then never built);
#   3. pytest on tests/python (no .pytest_cache, no __pycache__ left in the tree);
#   4. `mnist-mlp train --metrics` for 60 iterations, then plot-metrics.py on that CSV: the PNG
#      must exist, be a PNG and be non-trivial; a malformed CSV must make it exit 1.
#
# Idempotent; exits non-zero on the first failure. Needs Python >= 3.11 with venv, the registry
# PyPI (only on the first run or after requirements.txt changes), and the MNIST test data.
set -euo pipefail

usage() {
  cat <<EOF
Usage: scripts/python-tests.sh [-h|--help] [PYTEST_ARGS...]

Makes/updates a venv with tests/python/requirements.txt, builds the release binary if it is
missing, runs the Python interop tests (extra arguments go to pytest, e.g. -k relu -rA) and
smoke-tests scripts/plot-metrics.py.

Environment:
  PYTHON                 interpreter the venv is made from [python3]
  MNIST_MLP_VENV         the venv [<repo>/.venv-tests]
  MNIST_MLP_BIN          binary under test [<repo>/target/release/mnist-mlp, built if missing]
  MNIST_MLP_TEST_DATA    the MNIST data set [<repo>/data/mnist-10k, bundled]
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac

die() { echo "python-tests: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MNIST_MLP_VENV:-$repo/.venv-tests}
python=${PYTHON:-python3}
requirements=$repo/tests/python/requirements.txt
data=${MNIST_MLP_TEST_DATA:-$repo/data/mnist-10k}
export MNIST_MLP_TEST_DATA=$data
export PYTHONDONTWRITEBYTECODE=1

[[ -f $requirements ]] || die "$requirements is missing"
[[ -e $data/t10k-images-idx3-ubyte.gz || -e $data/t10k-images-idx3-ubyte ]] ||
  die "no MNIST data at $data (set MNIST_MLP_TEST_DATA)"

# 1. The venv. A stamp holding a hash of requirements.txt says what is installed.
command -v "$python" >/dev/null || die "$python not found (set PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$python is $("$python" -V 2>&1); Python >= 3.11 is needed"
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python ]]; then
  step "creating the venv $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv" || die "cannot create a venv with $python (Debian: apt-get install python3-venv)"
fi
# The venv keeps itself out of git, whatever .gitignore says (as Python >= 3.13's venv does).
[[ -f $venv/.gitignore ]] || echo '*' >"$venv/.gitignore"
if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  step "installing $(realpath --relative-to="$repo" "$requirements") into the venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi
py=$venv/bin/python

# 2. The binary.
if [[ -n ${MNIST_MLP_BIN:-} ]]; then
  bin=$MNIST_MLP_BIN
  [[ -x $bin ]] || die "MNIST_MLP_BIN=$bin is not an executable"
else
  bin=$repo/target/release/mnist-mlp
  if [[ ! -x $bin ]]; then
    step "building the release binary"
    (cd "$repo" && cargo build --release)
  fi
  export MNIST_MLP_BIN=$bin
fi

# 3. The interop tests.
step "pytest tests/python ($("$py" -m pytest --version 2>&1), binary $bin)"
(cd "$repo" && "$py" -m pytest -p no:cacheprovider -q tests/python "$@")

# 4. plot-metrics.py on a real metrics file, in a scratch directory removed on exit.
step "smoke test of scripts/plot-metrics.py"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-python-tests.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
"$bin" -q train --data "$data" --arch relu --iterations 60 --log-every 5 \
  --metrics "$scratch/run.csv" >"$scratch/train.out"
rows=$(wc -l <"$scratch/run.csv")
((rows >= 12)) || die "expected a header, ~12 log rows and a test row in the metrics CSV, got $rows lines"
[[ $(tail -n 1 "$scratch/run.csv") =~ ^60,,,0\.[0-9]+,,$ ]] ||
  die "the last row of the metrics CSV is not the test accuracy: $(tail -n 1 "$scratch/run.csv")"
"$py" "$repo/scripts/plot-metrics.py" "$scratch/run.csv"
png=$scratch/run.png
[[ -f $png ]] || die "plot-metrics.py wrote no $png"
[[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || die "$png is not a PNG"
size=$(stat -c %s "$png")
((size > 20000)) || die "$png is only $size bytes: an empty plot?"
# Non-trivial: the image has ink, not one flat colour.
"$py" - "$png" <<'EOF' || die "$png looks blank"
import sys
import matplotlib.image as mpimg
img = mpimg.imread(sys.argv[1])
w, h = img.shape[1], img.shape[0]
assert w >= 400 and h >= 300, f"{w}x{h} is too small"
distinct = len({tuple(px) for px in img.reshape(-1, img.shape[2])[::7].round(3).tolist()})
assert distinct > 50, f"only {distinct} distinct colours"
print(f"{sys.argv[1]}: {w}x{h}, {distinct} colours (sampled)")
EOF
"$py" "$repo/scripts/plot-metrics.py" "$scratch/run.csv" -o "$scratch/other/name.png" >/dev/null
[[ -s $scratch/other/name.png ]] || die "plot-metrics.py -o wrote nothing"
printf 'iteration,loss\n0,oops\n' >"$scratch/bad.csv"
set +e
"$py" "$repo/scripts/plot-metrics.py" "$scratch/bad.csv" 2>"$scratch/bad.err"
rc=$?
set -e
((rc == 1)) || die "plot-metrics.py exited $rc on a malformed CSV, expected 1"
grep -q 'bad.csv' "$scratch/bad.err" || die "plot-metrics.py's error does not name the file: $(cat "$scratch/bad.err")"
[[ ! -e $scratch/bad.png ]] || die "plot-metrics.py wrote a PNG for a malformed CSV"

echo "python-tests: all passed" >&2
