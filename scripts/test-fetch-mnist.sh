#!/usr/bin/env bash
# test-fetch-mnist.sh: offline tests of scripts/fetch-mnist.sh.
#
# No network is used: the mirrors are file:// directories (and, when python3 is installed,
# a web server on 127.0.0.1 that lives only for the duration of this script). The real MNIST
# test set (t10k-*.gz) of the bundled data/mnist-10k is checked against the checksums built
# into fetch-mnist.sh; that directory's train-*.gz are a 10k subset, not the originals, so
# their checksums come from MNIST_SHA256_OVERRIDE_FILE, the test-only override.
#
# Usage: scripts/test-fetch-mnist.sh
#   MNIST_TEST_DATA  directory with the four .gz files (default: <repo>/data/mnist-10k, bundled)
# Prints one PASS/FAIL/SKIP line per case and a closing "N passed, N failed" line; exits 1
# if any case failed.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "$0")" && pwd)
REPO=$(cd -- "$HERE/.." && pwd)
FETCH=$HERE/fetch-mnist.sh
DATA=${MNIST_TEST_DATA:-$REPO/data/mnist-10k}
BASH_BIN=$(command -v bash)

readonly STEMS=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# The published checksums of the real test set (also built into fetch-mnist.sh).
readonly T10K_IMAGES_RAW_SHA=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
readonly T10K_LABELS_RAW_SHA=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
readonly T10K_IMAGES_GZ_SHA=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6

for stem in "${STEMS[@]}"; do
  if [[ ! -f $DATA/$stem.gz ]]; then
    echo "FAIL: test data missing: $DATA/$stem.gz (set MNIST_TEST_DATA to a directory with the four .gz files)" >&2
    exit 1
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/test-fetch-mnist.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf -- "$WORK"
}
trap cleanup EXIT

# Guard: every run gets an unreachable mirror list unless a case sets its own, so a bug can
# never send a test to the real mirrors.
export MNIST_MIRRORS="file://$WORK/no-such-mirror/"
unset MNIST_SHA256_OVERRIDE_FILE

# --- fixtures --------------------------------------------------------------------------

# good/: the four files as found in the bundled data directory.
mkdir -p "$WORK/good" "$WORK/bad" "$WORK/missing-parent"
for stem in "${STEMS[@]}"; do cp -- "$DATA/$stem.gz" "$WORK/good/"; done

# bad/: every kind of wrong file, all under the right names.
head -c 4096 /dev/urandom >"$WORK/bad/train-images-idx3-ubyte.gz"            # not gzip at all
gzip -dc "$DATA/train-labels-idx1-ubyte.gz" | head -c 5000 | gzip -c \
  >"$WORK/bad/train-labels-idx1-ubyte.gz"                                    # valid gzip, cut data
head -c 100000 "$DATA/t10k-images-idx3-ubyte.gz" >"$WORK/bad/t10k-images-idx3-ubyte.gz"  # partial
gzip -dc "$DATA/t10k-labels-idx1-ubyte.gz" >"$WORK/labels.raw"
printf '\377' | dd of="$WORK/labels.raw" bs=1 seek=100 conv=notrunc status=none  # one label changed
gzip -c "$WORK/labels.raw" >"$WORK/bad/t10k-labels-idx1-ubyte.gz"

# The test-only override: checksums of the 10k-subset train files (.gz and decompressed).
# The t10k files keep the real built-in checksums.
OVERRIDE=$WORK/override.sha256
for stem in train-images-idx3-ubyte train-labels-idx1-ubyte; do
  printf '%s  %s\n' "$(sha256sum <"$DATA/$stem.gz" | cut -d' ' -f1)" "$stem.gz"
  printf '%s  %s\n' "$(gzip -dc "$DATA/$stem.gz" | sha256sum | cut -d' ' -f1)" "$stem"
done >"$OVERRIDE"

# --- harness ---------------------------------------------------------------------------

PASSED=0
FAILED=0
SKIPPED=0
CASE=
WHY=()
RC=0
OUT=
ERR=

# run_in DIR ARGS...: run fetch-mnist.sh in DIR, capturing RC, OUT (stdout), ERR (stderr).
run_in() {
  local dir=$1
  shift
  set +e
  (cd -- "$dir" && "$FETCH" "$@") >"$WORK/stdout" 2>"$WORK/stderr"
  RC=$?
  set -e
  OUT=$(cat "$WORK/stdout")
  ERR=$(cat "$WORK/stderr")
}
# run ARGS...: the same in the current directory.
run() { run_in . "$@"; }

begin() { CASE=$1; WHY=(); }
# expect DESCRIPTION COMMAND...: record DESCRIPTION as a failure unless COMMAND succeeds.
expect() {
  local desc=$1
  shift
  "$@" || WHY+=("$desc")
}
end() {
  if ((${#WHY[@]} == 0)); then
    echo "PASS: $CASE"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL: $CASE"
    printf '    expected: %s\n' "${WHY[@]}"
    printf '    exit status %s; stdout:\n      %s\n    stderr:\n      %s\n' "$RC" \
      "${OUT//$'\n'/$'\n      '}" "${ERR//$'\n'/$'\n      '}"
    FAILED=$((FAILED + 1))
  fi
}
skip() {
  echo "SKIP: $1 ($2)"
  SKIPPED=$((SKIPPED + 1))
}

# Small predicates for expect.
rc_is() { [[ $RC -eq $1 ]]; }
out_has() { grep -qF -- "$1" <<<"$OUT"; }
err_has() { grep -qF -- "$1" <<<"$ERR"; }
count_in_out() { grep -cF -- "$1" <<<"$OUT" || true; }
out_count_is() { [[ $(count_in_out "$1") -eq $2 ]]; }
sha_is() { [[ $(sha256sum <"$1" | cut -d' ' -f1) == "$2" ]]; }
same() { cmp -s -- "$1" "$2"; }
is_empty_dir() { [[ -d $1 && -z $(ls -A -- "$1") ]]; }
no_part_files() { [[ -z $(find "$1" -name '.*.part.*') ]]; }
all_gz_match() { # DIR SRC: the four .gz in DIR are byte copies of those in SRC
  local stem
  for stem in "${STEMS[@]}"; do same "$1/$stem.gz" "$2/$stem.gz" || return 1; done
}
all_raw_match() { # DIR: the four raw files in DIR are the content of the four .gz
  local stem
  for stem in "${STEMS[@]}"; do
    [[ -f $1/$stem ]] && gzip -dc "$1/$stem.gz" | cmp -s - "$1/$stem" || return 1
  done
}
inodes() { (cd "$1" && ls -i -- *); }

# --- cases -----------------------------------------------------------------------------

begin "--help prints the usage and exits 0"
run --help
expect "exit 0" rc_is 0
expect "usage line" out_has "Usage: fetch-mnist.sh [--gunzip] [--from DIR2] [--force] [DIR]"
end

begin "usage errors exit 2 and create nothing"
mkdir -p "$WORK/cwd-usage"
for args in "--bogus" "--from" "--from=" "one two" "-x dir" "--gunzip one -- two"; do
  # shellcheck disable=SC2086 # word splitting of $args is the point
  run_in "$WORK/cwd-usage" $args
  expect "'$args': exit 2 (got $RC)" rc_is 2
  expect "'$args': a hint to --help on stderr" err_has "--help"
done
run_in "$WORK/cwd-usage" ""
expect "empty DIR: exit 2 (got $RC)" rc_is 2
MNIST_MIRRORS=" " run "$WORK/usage-dest"
expect "MNIST_MIRRORS without URL: exit 2 (got $RC)" rc_is 2
expect "nothing created" is_empty_dir "$WORK/cwd-usage"
expect "no DIR created" test ! -e "$WORK/usage-dest"
end

begin "--from with wrong content fails naming each file, expected and actual sums; no file left"
cp -r "$WORK/bad" "$WORK/bad-from"
rm "$WORK/bad-from/train-labels-idx1-ubyte.gz"   # one missing file too
run --from "$WORK/bad-from" "$WORK/dest-bad"
expect "exit 1" rc_is 1
expect "train-images: not gzip" err_has "train-images-idx3-ubyte.gz (from $WORK/bad-from): checksum mismatch: expected sha256 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609, got "
expect "train-images: says not gzip" err_has "does not decompress as gzip"
expect "train-labels: not found" err_has "train-labels-idx1-ubyte.gz: not found in $WORK/bad-from"
expect "t10k-images: mismatch with expected sum" err_has "t10k-images-idx3-ubyte.gz (from $WORK/bad-from): checksum mismatch: expected sha256 $T10K_IMAGES_GZ_SHA, got $(sha256sum <"$WORK/bad/t10k-images-idx3-ubyte.gz" | cut -d' ' -f1)"
expect "t10k-labels: content mismatch with expected sum" err_has "decompressed content: expected sha256 $T10K_LABELS_RAW_SHA, got $(sha256sum <"$WORK/labels.raw" | cut -d' ' -f1)"
expect "summary line" err_has "4 of 4 files could not be fetched and verified"
expect "no file (final or temporary) in DIR" is_empty_dir "$WORK/dest-bad"
end

export MNIST_SHA256_OVERRIDE_FILE=$OVERRIDE

begin "--from a good directory: real t10k files pass the built-in checksums"
run --from "$WORK/good" "$WORK/dest-from"
expect "exit 0" rc_is 0
expect "four copies reported" out_count_is ": copied from $WORK/good" 4
expect "t10k-images verified" out_has "t10k-images-idx3-ubyte.gz: copied from $WORK/good"
expect "files are byte copies" all_gz_match "$WORK/dest-from" "$WORK/good"
expect "final files are world-readable" test -n "$(find "$WORK/dest-from" -name '*.gz' -perm -004)"
expect "ready line" out_has "MNIST ready in $WORK/dest-from"
expect "override warning" err_has "meant for tests only"
end

begin "mirrors: a missing and a bad mirror fall through to the good one"
MNIST_MIRRORS="file://$WORK/missing-parent/nothing/ file://$WORK/bad file://$WORK/good/" \
  run "$WORK/dest-mirror"
expect "exit 0" rc_is 0
expect "all four from the third mirror" out_count_is "downloaded from file://$WORK/good/" 4
expect "files are byte copies" all_gz_match "$WORK/dest-mirror" "$WORK/good"
expect "no temporary file left" no_part_files "$WORK/dest-mirror"
end

begin "mirrors: all failing gives 'all mirrors failed' with each reason; no file left"
MNIST_MIRRORS="file://$WORK/missing-parent/nothing/ file://$WORK/bad/" run "$WORK/dest-allbad"
expect "exit 1" rc_is 1
expect "message names the file" err_has "t10k-images-idx3-ubyte.gz: all 2 mirrors failed:"
expect "reason of mirror 1" err_has "file://$WORK/missing-parent/nothing/t10k-images-idx3-ubyte.gz: download failed"
expect "reason of mirror 2" err_has "file://$WORK/bad/t10k-images-idx3-ubyte.gz: checksum mismatch: expected sha256 $T10K_IMAGES_GZ_SHA"
expect "no file (final or temporary) in DIR" is_empty_dir "$WORK/dest-allbad"
end

begin "--gunzip stores the raw files next to the kept .gz"
run --gunzip "$WORK/dest-mirror"
expect "exit 0" rc_is 0
expect "four .gz already present" out_count_is ".gz: already present" 4
expect "four decompressed" out_count_is ": decompressed, sha256 ok" 4
expect "raw = content of .gz" all_raw_match "$WORK/dest-mirror"
expect "real t10k images raw checksum" sha_is "$WORK/dest-mirror/t10k-images-idx3-ubyte" "$T10K_IMAGES_RAW_SHA"
expect "real t10k labels raw checksum" sha_is "$WORK/dest-mirror/t10k-labels-idx1-ubyte" "$T10K_LABELS_RAW_SHA"
expect "IDX magic of images" test "$(head -c 4 "$WORK/dest-mirror/t10k-images-idx3-ubyte" | od -An -tx1 | tr -d ' ')" = 00000803
expect ".gz kept" all_gz_match "$WORK/dest-mirror" "$WORK/good"
expect "no temporary file left" no_part_files "$WORK/dest-mirror"
end

begin "--gunzip: decompressed content with the wrong checksum is not kept"
# An override whose raw checksum for train-labels is wrong (the first matching line wins).
{ printf '%064d  %s\n' 0 train-labels-idx1-ubyte; cat "$OVERRIDE"; } >"$WORK/override-badraw"
MNIST_SHA256_OVERRIDE_FILE=$WORK/override-badraw run --gunzip --from "$WORK/good" "$WORK/dest-badraw"
expect "exit 1" rc_is 1
expect "message names the file, expected and actual" err_has "train-labels-idx1-ubyte (decompressed from $WORK/dest-badraw/train-labels-idx1-ubyte.gz): checksum mismatch: expected sha256 $(printf '%064d' 0), got "
expect "no raw train-labels" test ! -e "$WORK/dest-badraw/train-labels-idx1-ubyte"
expect "the other raw files are there" test -f "$WORK/dest-badraw/t10k-labels-idx1-ubyte"
expect "no temporary file left" no_part_files "$WORK/dest-badraw"
end

begin "re-running skips verified files (no fetch, files untouched)"
before=$(inodes "$WORK/dest-mirror")
touch -d '2001-01-01' "$WORK/dest-mirror"/*
run --gunzip "$WORK/dest-mirror"   # the guard mirror list would fail any download
expect "exit 0" rc_is 0
expect "eight 'already present'" out_count_is ": already present" 8
expect "nothing downloaded" out_count_is "downloaded" 0
expect "same inodes" test "$before" = "$(inodes "$WORK/dest-mirror")"
expect "files not rewritten" test -z "$(find "$WORK/dest-mirror" -type f -newermt '2002-01-01')"
end

begin "--force fetches and decompresses again"
run --force --gunzip --from "$WORK/good" "$WORK/dest-mirror"
expect "exit 0" rc_is 0
expect "four copied" out_count_is ": copied from" 4
expect "four decompressed" out_count_is ": decompressed, sha256 ok" 4
expect "all eight rewritten" test "$(find "$WORK/dest-mirror" -type f -newermt '2002-01-01' | wc -l)" -eq 8
expect "raw = content of .gz" all_raw_match "$WORK/dest-mirror"
end

begin "--force that cannot fetch keeps a verified file and removes a wrong one"
mkdir -p "$WORK/dest-force"
cp "$WORK/good/t10k-images-idx3-ubyte.gz" "$WORK/dest-force/"
echo garbage >"$WORK/dest-force/t10k-labels-idx1-ubyte.gz"
run --force "$WORK/dest-force"   # the guard mirror list: every download fails
expect "exit 1" rc_is 1
expect "verified file kept" same "$WORK/dest-force/t10k-images-idx3-ubyte.gz" "$WORK/good/t10k-images-idx3-ubyte.gz"
expect "wrong file removed" test ! -e "$WORK/dest-force/t10k-labels-idx1-ubyte.gz"
expect "warning names it" err_has "t10k-labels-idx1-ubyte.gz: removing the existing file too"
expect "no temporary file left" no_part_files "$WORK/dest-force"
end

begin "corrupt files already in DIR are replaced (a .gz and a raw file)"
echo garbage >"$WORK/dest-mirror/t10k-labels-idx1-ubyte.gz"
head -c 1000 "$WORK/dest-mirror/train-images-idx3-ubyte" >"$WORK/dest-mirror/t10k-images-idx3-ubyte"
run --gunzip --from "$WORK/good" "$WORK/dest-mirror"
expect "exit 0" rc_is 0
expect "warns about the .gz" err_has "t10k-labels-idx1-ubyte.gz: existing file is not the right one"
expect "warns about the raw file" err_has "t10k-images-idx3-ubyte: existing file has the wrong checksum"
expect "labels .gz copied again" out_has "t10k-labels-idx1-ubyte.gz: copied from"
expect "files correct again" all_gz_match "$WORK/dest-mirror" "$WORK/good"
expect "raw files correct again" all_raw_match "$WORK/dest-mirror"
end

begin "a corrupt file that cannot be replaced is removed, not left under its name"
mkdir -p "$WORK/dest-corrupt"
echo garbage >"$WORK/dest-corrupt/t10k-labels-idx1-ubyte.gz"
run "$WORK/dest-corrupt"
expect "exit 1" rc_is 1
expect "warning names the file" err_has "t10k-labels-idx1-ubyte.gz: existing file is not the right one (checksum mismatch"
expect "corrupt file removed" is_empty_dir "$WORK/dest-corrupt"
end

begin "DIR defaults to data/mnist under the current directory"
mkdir -p "$WORK/cwd-default"
run_in "$WORK/cwd-default" --gunzip --from "$WORK/good"
expect "exit 0" rc_is 0
expect "files in ./data/mnist" all_gz_match "$WORK/cwd-default/data/mnist" "$WORK/good"
expect "raw files in ./data/mnist" all_raw_match "$WORK/cwd-default/data/mnist"
end

# HTTP through a loopback-only server: the curl path, 404 fall-through, and the wget path.
if command -v python3 >/dev/null 2>&1; then
  mkdir -p "$WORK/srv"
  cp -r "$WORK/good" "$WORK/bad" "$WORK/srv/"
  python3 -u -m http.server --bind 127.0.0.1 --directory "$WORK/srv" 0 \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  port=
  for _ in $(seq 50); do
    port=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -n 1)
    [[ -n $port ]] && break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    skip "HTTP mirrors" "the local python3 web server did not start"
  else
    base=http://127.0.0.1:$port
    begin "HTTP mirrors with curl: 404 and bad content fall through"
    MNIST_MIRRORS="$base/nothing/ $base/bad/ $base/good/" run "$WORK/dest-http"
    expect "exit 0" rc_is 0
    expect "four from the good mirror" out_count_is "downloaded from $base/good/" 4
    expect "files are byte copies" all_gz_match "$WORK/dest-http" "$WORK/good"
    end

    if command -v wget >/dev/null 2>&1; then
      # A PATH with the tools the script needs but no curl, so it has to use wget.
      mkdir -p "$WORK/bin-nocurl"
      for tool in bash env mktemp chmod mv rm cp gzip sha256sum mkdir cat wget; do
        ln -s "$(command -v "$tool")" "$WORK/bin-nocurl/$tool"
      done
      begin "HTTP mirrors with wget (no curl on PATH): 404 and bad content fall through"
      set +e
      MNIST_MIRRORS="$base/nothing/ $base/bad/ $base/good/" PATH=$WORK/bin-nocurl \
        "$BASH_BIN" "$FETCH" "$WORK/dest-wget" >"$WORK/stdout" 2>"$WORK/stderr"
      RC=$?
      set -e
      OUT=$(cat "$WORK/stdout")
      ERR=$(cat "$WORK/stderr")
      expect "exit 0" rc_is 0
      expect "four from the good mirror" out_count_is "downloaded from $base/good/" 4
      expect "files are byte copies" all_gz_match "$WORK/dest-wget" "$WORK/good"
      expect "no temporary file left" no_part_files "$WORK/dest-wget"
      end
    else
      skip "HTTP mirrors with wget" "wget is not installed"
    fi
  fi
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
else
  skip "HTTP mirrors" "python3 is not installed"
fi

if command -v shellcheck >/dev/null 2>&1; then
  begin "shellcheck finds nothing in either script"
  set +e
  OUT=$(shellcheck "$FETCH" "$HERE/test-fetch-mnist.sh" 2>&1)
  RC=$?
  set -e
  ERR=
  expect "shellcheck exit 0" rc_is 0
  end
else
  skip "shellcheck" "shellcheck is not installed"
fi

echo "test-fetch-mnist: $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
