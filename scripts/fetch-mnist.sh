#!/usr/bin/env bash
# fetch-mnist.sh: download (or copy) the four MNIST .gz files and verify their SHA-256.
#
# What it owns: getting train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
# t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz into one directory, each checked
# against the checksums written below, and, with --gunzip, the raw IDX files next to them
# (mnist-mlp memory-maps a raw file when it is present, else it decompresses the .gz).
#
# Guarantees: a file under its final name has been verified. Every download or copy goes to a
# hidden temporary file in the target directory and is renamed (atomically, same directory)
# only after its checksum matched; a file already there with a wrong checksum is removed
# before it is fetched again. Files already present and verified are left alone (idempotent),
# unless --force.
#
# What it deliberately does not do: parse IDX headers (mnist-mlp does that), or fetch
# anything but these four files.
#
# Run scripts/test-fetch-mnist.sh for the offline tests.
set -euo pipefail

readonly PROG=${0##*/}

# The four files, by their raw (decompressed) names; the downloads are these plus ".gz".
readonly STEMS=(
  train-images-idx3-ubyte
  train-labels-idx1-ubyte
  t10k-images-idx3-ubyte
  t10k-labels-idx1-ubyte
)

# Mirrors, tried in this order; MNIST_MIRRORS (space-separated base URLs) replaces the list.
# The checksums, not the transport, vouch for the bytes, so a plain-http mirror is acceptable.
readonly DEFAULT_MIRRORS=(
  https://ossci-datasets.s3.amazonaws.com/mnist/
  https://storage.googleapis.com/cvdf-datasets/mnist/
  http://yann.lecun.com/exdb/mnist/
)

# Tunables for each download attempt (one attempt per mirror and file).
readonly CONNECT_TIMEOUT=20   # seconds to connect: low fails over to the next mirror sooner
readonly STALL_SECONDS=60     # abort when slower than STALL_BYTES/s for this long ...
readonly STALL_BYTES=1024     # ... which catches a stalled transfer long before MAX_TIME
readonly MAX_TIME=1800        # seconds per file in all: a hard stop for a trickling mirror
readonly RETRIES=3            # retries of transient errors on the same mirror
readonly RETRY_DELAY=2        # seconds between those retries

# The published SHA-256 of the original files: the .gz as served by the mirrors above
# (the values tensorflow-datasets records for them, with sizes 9912422, 28881, 1648877 and
# 4542 bytes, and that many projects pin) and the decompressed IDX files (47040016, 60008,
# 7840016 and 10008 bytes).
builtin_sha256() {
  case $1 in
    train-images-idx3-ubyte.gz) echo 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609 ;;
    train-labels-idx1-ubyte.gz) echo 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c ;;
    t10k-images-idx3-ubyte.gz)  echo 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6 ;;
    t10k-labels-idx1-ubyte.gz)  echo f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6 ;;
    train-images-idx3-ubyte)    echo ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db ;;
    train-labels-idx1-ubyte)    echo 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 ;;
    t10k-images-idx3-ubyte)     echo 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 ;;
    t10k-labels-idx1-ubyte)     echo ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 ;;
    *) return 1 ;;
  esac
}

usage() {
  cat <<EOF
Usage: $PROG [--gunzip] [--from DIR2] [--force] [DIR]

Download the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into DIR and verify their SHA-256.

  DIR           target directory, created if missing (default: data/mnist)
  --gunzip      also store the decompressed IDX files next to the .gz (which are kept),
                so that mnist-mlp can memory-map them
  --from DIR2   copy the .gz files from DIR2 instead of downloading them (still verified)
  --force       fetch (and with --gunzip decompress) again even if already present
  -h, --help    show this help

A file already in DIR with the right checksum is skipped. A .gz that was re-compressed
(different bytes, same data) is accepted when its decompressed content has the published
checksum. Nothing ends up under a final name unless it was verified.

Environment:
  MNIST_MIRRORS               space-separated base URLs to try in turn instead of
$(printf '                                %s\n' "${DEFAULT_MIRRORS[@]}")
  MNIST_SHA256_OVERRIDE_FILE  FOR TESTS ONLY: "sha256  name" lines replacing the built-in
                              checksums of the files named (.gz or raw names)

Exit status: 0 all files verified, 1 a file could not be fetched or verified, 2 usage error.
EOF
}

# --- messages --------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
error() { printf '%s: error: %s\n' "$PROG" "$*" >&2; }
usage_error() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  printf "Try '%s --help' for more information.\n" "$PROG" >&2
  exit 2
}

# --- temporary files: removed on any exit, so no partial file outlives the script -------

TMP_FILES=()
cleanup() {
  local f
  for f in ${TMP_FILES[@]+"${TMP_FILES[@]}"}; do rm -f -- "$f"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# new_tmp DIR NAME: create a new empty hidden temporary file for NAME in DIR, and set TMP to
# its path (a variable, not output: a command substitution would register it in a subshell).
TMP=
new_tmp() {
  TMP=$(mktemp "$1/.$2.part.XXXXXX") || return 1   # X's last: BusyBox mktemp wants that
  TMP_FILES+=("$TMP")
}

# install_file TMP FINAL: give TMP the usual permissions (mktemp makes it 0600), then rename.
# (The callers run under "||", where set -e is off: every step reports its own failure.)
install_file() {
  chmod "$(printf '%o' $((0666 & ~0$(umask))))" "$1" && mv -f -- "$1" "$2" && return 0
  error "cannot move $1 to $2"
  return 1
}

# --- checksums -------------------------------------------------------------------------

# sha256_of FILE|-: print the SHA-256 of FILE (or of standard input for "-").
sha256_of() {
  if [[ $1 != - ]]; then
    sha256_of - <"$1"
    return
  fi
  local out
  case $HASHER in
    sha256sum) out=$(sha256sum) ;;
    shasum) out=$(shasum -a 256) ;;
    openssl) out=$(openssl dgst -sha256 -r) ;;
  esac
  printf '%s\n' "${out%% *}"
}

# expected_sha256 NAME: print the checksum NAME must have, or nothing when it is unknown
# (a raw file whose .gz checksum was overridden but whose own was not).
expected_sha256() {
  local name=$1 hash file
  if [[ -n ${MNIST_SHA256_OVERRIDE_FILE:-} ]]; then
    while read -r hash file; do
      [[ ${file#\*} == "$name" ]] && { printf '%s\n' "$hash"; return 0; }
    done <"$MNIST_SHA256_OVERRIDE_FILE"
    if [[ $name != *.gz ]]; then
      while read -r hash file; do
        [[ ${file#\*} == "$name.gz" ]] && return 0
      done <"$MNIST_SHA256_OVERRIDE_FILE"
    fi
  fi
  builtin_sha256 "$name"
}

# verify_gz FILE NAME: check that FILE is the right NAME (a .gz): either its own checksum
# matches, or (a re-compressed copy) its decompressed content has the raw file's checksum.
# Sets VERIFIED_HOW on success and MISMATCH (expected vs actual) on failure.
VERIFIED_HOW=
MISMATCH=
verify_gz() {
  local file=$1 name=$2 want got raw_want raw_got
  want=$(expected_sha256 "$name")
  got=$(sha256_of "$file")
  if [[ $got == "$want" ]]; then
    VERIFIED_HOW="sha256 ok"
    return 0
  fi
  MISMATCH="checksum mismatch: expected sha256 $want, got $got"
  raw_want=$(expected_sha256 "${name%.gz}")
  [[ -n $raw_want ]] || return 1
  if raw_got=$(gzip -dc <"$file" 2>/dev/null | sha256_of -); then
    if [[ $raw_got == "$raw_want" ]]; then
      VERIFIED_HOW="re-compressed copy: decompressed content sha256 ok"
      return 0
    fi
    MISMATCH+="; decompressed content: expected sha256 $raw_want, got $raw_got"
  else
    MISMATCH+=" (and it does not decompress as gzip)"
  fi
  return 1
}

# --- getting one .gz -------------------------------------------------------------------

# download URL OUT: fetch URL into OUT with curl (or wget); on failure print the reason.
download() {
  case $DOWNLOADER in
    curl)
      curl --fail --silent --show-error --location \
        --connect-timeout "$CONNECT_TIMEOUT" --max-time "$MAX_TIME" \
        --speed-limit "$STALL_BYTES" --speed-time "$STALL_SECONDS" \
        --retry "$RETRIES" --retry-delay "$RETRY_DELAY" \
        --output "$2" -- "$1" 2>&1
      ;;
    wget)
      # --read-timeout plays the part of curl's stall detection.
      wget --quiet --connect-timeout="$CONNECT_TIMEOUT" --read-timeout="$STALL_SECONDS" \
        --tries="$((RETRIES + 1))" --waitretry="$RETRY_DELAY" \
        --output-document="$2" -- "$1" 2>&1
      ;;
  esac
}

# fetch_gz NAME: put a verified NAME into $DIR, from $FROM or from the mirrors.
fetch_gz() {
  local name=$1 dest=$DIR/$1 tmp mirror url out reasons=()
  new_tmp "$DIR" "$name" || { error "$name: cannot create a temporary file in $DIR"; return 1; }
  tmp=$TMP

  if [[ -n $FROM ]]; then
    if [[ ! -f $FROM/$name ]]; then
      error "$name: not found in $FROM"
      return 1
    fi
    cp -- "$FROM/$name" "$tmp" || { error "$name: cannot copy from $FROM"; return 1; }
    if ! verify_gz "$tmp" "$name"; then
      error "$name (from $FROM): $MISMATCH"
      return 1
    fi
    install_file "$tmp" "$dest" || return 1
    say "$name: copied from $FROM, $VERIFIED_HOW"
    return 0
  fi

  if [[ -z $DOWNLOADER ]]; then
    error "$name: neither curl nor wget is installed; hint: install one, or use --from DIR2"
    return 1
  fi
  for mirror in "${MIRRORS[@]}"; do
    url=${mirror%/}/$name
    if ! out=$(download "$url" "$tmp"); then
      reasons+=("$url: download failed: ${out:-$DOWNLOADER exited non-zero}")
      continue
    fi
    if ! verify_gz "$tmp" "$name"; then
      reasons+=("$url: $MISMATCH")
      continue
    fi
    install_file "$tmp" "$dest" || return 1
    say "$name: downloaded from $url, $VERIFIED_HOW"
    return 0
  done
  error "$name: all ${#MIRRORS[@]} mirrors failed:"
  printf '  %s\n' "${reasons[@]}" >&2
  return 1
}

# --- one file, start to end ------------------------------------------------------------

# gunzip_one STEM: write the verified raw STEM next to the verified STEM.gz.
# An existing raw file that is not verified goes first: mnist-mlp prefers a raw file to its
# .gz, so a wrong one must not stay, while without it the verified .gz is still there.
gunzip_one() {
  local stem=$1 gz=$DIR/$1.gz raw=$DIR/$1 want got tmp
  want=$(expected_sha256 "$stem")
  [[ -n $want ]] || want=$(gzip -dc <"$gz" | sha256_of -)
  if [[ -e $raw && $FORCE -eq 1 ]]; then
    rm -f -- "$raw"
  elif [[ -e $raw ]]; then
    got=$(sha256_of "$raw")
    if [[ $got == "$want" ]]; then
      say "$stem: already present, sha256 ok"
      return 0
    fi
    warn "$stem: existing file has the wrong checksum (expected $want, got $got); rewriting it"
    rm -f -- "$raw"
  fi
  new_tmp "$DIR" "$stem" || { error "$stem: cannot create a temporary file in $DIR"; return 1; }
  tmp=$TMP
  if ! gzip -dc <"$gz" >"$tmp"; then
    error "$stem: decompressing $gz failed"
    return 1
  fi
  got=$(sha256_of "$tmp")
  if [[ $got != "$want" ]]; then
    error "$stem (decompressed from $gz): checksum mismatch: expected sha256 $want, got $got"
    return 1
  fi
  install_file "$tmp" "$raw" || return 1
  say "$stem: decompressed, sha256 ok"
}

# process STEM: make STEM.gz (and with --gunzip STEM) present and verified in $DIR.
process() {
  local stem=$1 name=$1.gz dest=$DIR/$1.gz
  if [[ ! -e $dest ]]; then
    fetch_gz "$name" || return 1
  elif [[ $FORCE -eq 1 ]]; then
    # The old file is replaced only by a verified new one; if that cannot be had, the old
    # one stays only if it verifies.
    if ! fetch_gz "$name"; then
      if ! verify_gz "$dest" "$name"; then
        warn "$name: removing the existing file too ($MISMATCH)"
        rm -f -- "$dest"
      fi
      return 1
    fi
  elif verify_gz "$dest" "$name"; then
    say "$name: already present, $VERIFIED_HOW"
  else
    warn "$name: existing file is not the right one ($MISMATCH); fetching it again"
    rm -f -- "$dest"
    fetch_gz "$name" || return 1
  fi
  if [[ $GUNZIP -eq 1 ]]; then
    gunzip_one "$stem" || return 1
  fi
}

# --- command line ----------------------------------------------------------------------

GUNZIP=0
FORCE=0
FROM=
DIR=
# set_dir ARG: take ARG as DIR (only one may be given).
set_dir() {
  [[ -z $DIR ]] || usage_error "only one DIR may be given (got '$DIR' and '$1')"
  [[ -n $1 ]] || usage_error "DIR must not be empty"
  DIR=$1
}
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --gunzip) GUNZIP=1 ;;
    --force) FORCE=1 ;;
    --from | --from=*)
      if [[ $1 == --from ]]; then
        (($# >= 2)) || usage_error "option '--from' needs a directory"
        FROM=$2
        shift
      else
        FROM=${1#--from=}
      fi
      [[ -n $FROM ]] || usage_error "option '--from' needs a non-empty directory"
      ;;
    --) shift; break ;;
    -?*) usage_error "unknown option '$1'" ;;
    *) set_dir "$1" ;;
  esac
  shift
done
for arg in "$@"; do set_dir "$arg"; done   # operands after "--"
DIR=${DIR:-data/mnist}

if [[ -n $FROM && ! -d $FROM ]]; then
  error "--from: $FROM is not a directory"
  exit 1
fi
if [[ -n ${MNIST_SHA256_OVERRIDE_FILE:-} ]]; then
  [[ -r $MNIST_SHA256_OVERRIDE_FILE ]] || { error "cannot read MNIST_SHA256_OVERRIDE_FILE=$MNIST_SHA256_OVERRIDE_FILE"; exit 1; }
  warn "expected checksums overridden from $MNIST_SHA256_OVERRIDE_FILE (meant for tests only)"
fi
MIRRORS=("${DEFAULT_MIRRORS[@]}")
if [[ -n ${MNIST_MIRRORS+x} ]]; then
  read -r -a MIRRORS <<<"$MNIST_MIRRORS"
  ((${#MIRRORS[@]} > 0)) || usage_error "MNIST_MIRRORS is set but holds no URL"
fi
HASHER=
for tool in sha256sum shasum openssl; do
  if command -v "$tool" >/dev/null 2>&1; then HASHER=$tool; break; fi
done
if [[ -z $HASHER ]]; then
  error "no SHA-256 tool found; hint: install coreutils (sha256sum), perl (shasum) or openssl"
  exit 1
fi
if ! command -v gzip >/dev/null 2>&1; then
  error "gzip is not installed; hint: install gzip (needed to check and decompress the files)"
  exit 1
fi
if command -v curl >/dev/null 2>&1; then
  DOWNLOADER=curl
elif command -v wget >/dev/null 2>&1; then
  DOWNLOADER=wget
else
  DOWNLOADER=
fi
mkdir -p -- "$DIR" || { error "cannot create directory $DIR"; exit 1; }

failed=0
for stem in "${STEMS[@]}"; do
  process "$stem" || failed=$((failed + 1))
done
if ((failed > 0)); then
  error "$failed of ${#STEMS[@]} files could not be fetched and verified into $DIR"
  exit 1
fi
say "MNIST ready in $DIR (train with: mnist-mlp train --data $DIR)"
