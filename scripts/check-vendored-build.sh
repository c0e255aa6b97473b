#!/usr/bin/env bash
# Builds the crate the way Yocto's cargo class builds it: from a directory source holding
# exactly the crates of the recipe's list (mnist-mlp-crates.inc), `--frozen --offline`, for
# aarch64 with the recipe's `-C target-cpu=cortex-a53`, with each Rust the layer claims
# (scarthgap 1.75.0, styhead 1.79.0, walnascar 1.84.1).
#
# Why not `cargo build --locked` from the registry: in registry mode Cargo reads only the
# manifests of the crates it builds. In a directory source it reads every manifest, used or
# not, so a wasm-only crate of a dev-dependency with `edition = "2024"` fails the Yocto build
# and passes the registry build.
#
#   1. the crate list matches Cargo.lock (scripts/gen-yocto-crates.py --check);
#   2. the directory source: each crate named in the list, from Cargo's download cache
#      (`cargo fetch --locked`) or static.crates.io, its sha256 checked against the list,
#      unpacked to DIR/NAME-VERSION with the `.cargo-checksum.json` bitbake's crate fetcher
#      writes ({"files": {}, "package": SHA256});
#   3. no crate in it needs more than Rust 1.75: no `edition = "2024"`, no `rust-version`
#      above 1.75 (Cargo 1.75 fails on the first; the second is a promise we would break);
#   4. for each toolchain: `cargo build --frozen --offline --release --target
#      aarch64-unknown-linux-gnu --bin mnist-mlp` with a CARGO_HOME whose only configuration
#      is the source replacement (what cargo_common.bbclass writes), then the binary runs
#      `info` under qemu-aarch64.
#
# With --vendor-dir DIR the directory source is DIR as it is (e.g. the crates a real
# `bitbake mnist-mlp -c unpack` put in its work directory) and steps 1-2 are skipped; with
# --src DIR the crate built is the one in DIR (e.g. what bitbake unpacked) instead of this
# checkout. Exits 1 on the first failure, 2 on a usage error.
set -euo pipefail

usage() {
  cat <<EOF
Usage: scripts/check-vendored-build.sh [--toolchains LIST] [--target TRIPLE] [--vendor-dir DIR]
                                      [--src DIR] [--keep]

Builds mnist-mlp for aarch64 (or TRIPLE) from a directory source made of the Yocto recipe's crate list,
--frozen --offline, with each Rust toolchain in LIST (installed with rustup if missing).

Options:
  --toolchains LIST  comma-separated rustup toolchains [1.75.0,1.79.0,1.84.1]
  --target TRIPLE    the target to build [aarch64-unknown-linux-gnu; aarch64 builds get
                     -C target-cpu=cortex-a53, as the recipe sets for i.MX8]
  --vendor-dir DIR   use DIR as the directory source instead of making one from the list
  --src DIR          build the crate in DIR [this repository]
  --keep             keep the work directory (printed at the end)
  -h, --help         this text

Environment:
  MNIST_MLP_VENDOR_WORK  work directory [a new one under \${TMPDIR:-/tmp}]
EOF
}

die() { echo "check-vendored-build: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
toolchains=1.75.0,1.79.0,1.84.1
vendor=""
src=$repo
target=aarch64-unknown-linux-gnu
keep=0
while (($#)); do
  case $1 in
    --toolchains) toolchains=${2:?--toolchains needs a value}; shift 2 ;;
    --target) target=${2:?--target needs a value}; shift 2 ;;
    --vendor-dir) vendor=${2:?--vendor-dir needs a value}; shift 2 ;;
    --src) src=${2:?--src needs a value}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ -f $src/Cargo.toml && -f $src/Cargo.lock ]] || die "$src has no Cargo.toml and Cargo.lock"
src=$(cd "$src" && pwd)
inc=$repo/yocto/meta-mnist-mlp/recipes-ml/mnist-mlp/mnist-mlp-crates.inc
export PYTHONDONTWRITEBYTECODE=1

work=${MNIST_MLP_VENDOR_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-vendored.XXXXXX")}
mkdir -p "$work"
if ((keep)); then
  trap 'echo "work directory kept: $work" >&2' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

if [[ -z $vendor ]]; then
  step "crate list against Cargo.lock"
  python3 "$repo/scripts/gen-yocto-crates.py" --check --lock "$src/Cargo.lock"

  step "fetching the locked crates into Cargo's download cache"
  (cd "$src" && cargo fetch --locked --quiet)

  vendor=$work/vendor
  step "directory source from $(basename "$inc") in $vendor"
  rm -rf "$vendor"
  python3 - "$inc" "$vendor" "${CARGO_HOME:-$HOME/.cargo}" <<'EOF'
import glob, hashlib, io, json, os, re, sys, tarfile, urllib.request

inc, vendor, cargo_home = sys.argv[1:]
text = open(inc, encoding="utf-8").read()
crates = re.findall(r"crate://crates\.io/([A-Za-z0-9_-]+)/([^\s\\]+)", text)
sums = dict(re.findall(r'SRC_URI\[([^\]]+)\.sha256sum\] = "([0-9a-f]{64})"', text))
if not crates:
    sys.exit(f"check-vendored-build: error: no crate:// entries in {inc}")
os.makedirs(vendor)
fetched = 0
for name, version in crates:
    key = f"{name}-{version}"
    want = sums.get(key)
    if want is None:
        sys.exit(f"check-vendored-build: error: {key} has no sha256sum line in {inc}")
    cached = glob.glob(os.path.join(cargo_home, "registry", "cache", "*", key + ".crate"))
    if cached:
        data = open(cached[0], "rb").read()
    else:
        # Not in the lock (a stale list) or not fetched: take it where bitbake would.
        url = f"https://static.crates.io/crates/{name}/{key}.crate"
        try:
            data = urllib.request.urlopen(url, timeout=60).read()
        except OSError as e:
            sys.exit(f"check-vendored-build: error: {key}: not in Cargo's cache and {url}: {e}")
        fetched += 1
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"check-vendored-build: error: {key}: sha256 {got}, the list says {want}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if not (m.name == key or m.name.startswith(key + "/")) or not (m.isfile() or m.isdir()):
                sys.exit(f"check-vendored-build: error: {key}: unexpected member {m.name!r}")
        tar.extractall(vendor)
    with open(os.path.join(vendor, key, ".cargo-checksum.json"), "w") as f:
        json.dump({"files": {}, "package": want}, f)
print(f"{len(crates)} crates unpacked ({fetched} downloaded), every sha256 as listed")
EOF
fi
[[ -d $vendor ]] || die "no directory source at $vendor"
vendor=$(cd "$vendor" && pwd)

step "every manifest in the directory source readable by Cargo 1.75"
python3 - "$vendor" <<'EOF'
import glob, os, sys, tomllib

vendor = sys.argv[1]
ceiling = (1, 75)
bad = []
manifests = sorted(glob.glob(os.path.join(vendor, "*", "Cargo.toml")))
for path in manifests:
    name = os.path.basename(os.path.dirname(path))
    try:
        with open(path, "rb") as f:
            pkg = tomllib.load(f).get("package", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        bad.append(f"{name}: unreadable manifest: {e}")
        continue
    edition = str(pkg.get("edition", "2015"))
    if edition not in ("2015", "2018", "2021"):
        bad.append(f"{name}: edition {edition} (Cargo 1.75 knows 2015, 2018, 2021)")
    rv = pkg.get("rust-version")
    if isinstance(rv, str):
        parts = tuple(int(p) for p in rv.split(".")[:2] if p.isdigit())
        if parts > ceiling:
            bad.append(f"{name}: rust-version {rv} (above 1.75)")
if not manifests:
    sys.exit(f"check-vendored-build: error: no crates in {vendor}")
if bad:
    print("\n".join("check-vendored-build: error: " + b for b in bad), file=sys.stderr)
    sys.exit(f"check-vendored-build: error: {len(bad)} crate(s) need a newer Rust than 1.75; "
             "pin older versions in Cargo.lock (see Cargo.toml's comments) and regenerate the list")
print(f"{len(manifests)} manifests: editions 2015-2021, rust-version <= 1.75")
EOF

# What cargo_common.bbclass writes, minus bitbake's own build flags: the registry replaced by
# the directory source, nothing else.
cargo_home=$work/cargo-home
mkdir -p "$cargo_home"
cat >"$cargo_home/config.toml" <<EOF
[source.bitbake]
directory = "$vendor"

[source.crates-io]
replace-with = "bitbake"
local-registry = "/nonexistent"
EOF

rustflags=""
[[ $target == aarch64-* ]] && rustflags="-C target-cpu=cortex-a53"

IFS=, read -r -a tcs <<<"$toolchains"
for tc in "${tcs[@]}"; do
  step "Rust $tc: cargo build --frozen --offline --release --target $target (directory source)"
  if ! rustup run "$tc" rustc --version >/dev/null 2>&1 ||
    ! rustup target list --toolchain "$tc" --installed 2>/dev/null | grep -qx "$target"; then
    rustup toolchain install "$tc" --profile minimal --target "$target" >&2
  fi
  tdir=$work/target-$tc
  log=$work/build-$tc.log
  # The recipe's settings: cortex-a53, symbols kept for Yocto's -dbg split, line tables.
  if ! (cd "$src" && CARGO_HOME=$cargo_home RUSTFLAGS="$rustflags" \
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_TERM_COLOR=never \
    rustup run "$tc" cargo build --frozen --offline --release --target "$target" \
    --bin mnist-mlp --target-dir "$tdir") >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "Rust $tc: the vendored build failed (log above)"
  fi
  tail -n 1 "$log"
  bin=$tdir/$target/release/mnist-mlp
  [[ -x $bin ]] || die "Rust $tc: no binary at $bin"
  if [[ $target == "$(rustc -vV | sed -n 's/^host: //p')" ]]; then
    "$bin" info | sed -n '1,3p'
  elif [[ $target == aarch64-unknown-linux-gnu ]] && command -v qemu-aarch64 >/dev/null; then
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" info | sed -n '1,3p'
  fi
done
step "vendored builds for $target passed: ${toolchains//,/, }"
