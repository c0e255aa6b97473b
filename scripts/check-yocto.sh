#!/usr/bin/env bash
# Checks the Yocto side of the project (yocto/): everything that can be checked without a
# Yocto build (which takes hours and the network):
#
#   1. a venv (python3 -m venv, default <repo>/.venv-yocto) with pinned oelint-adv, kas,
#      jsonschema and PyYAML, made once and reinstalled only when the pins below change;
#   2. the crates file matches Cargo.lock (scripts/gen-yocto-crates.py --check);
#   3. the layer: layer.conf's collection, dependencies and release series; the recipe's
#      version is Cargo.toml's; the README has what yocto-check-layer's README test wants;
#      LIC_FILES_CHKSUM names LICENSE-MIT and LICENSE-APACHE with their md5;
#   4. oelint-adv over the layer for --release scarthgap, styhead and walnascar, zero
#      findings (suppressions: the layer's .oelint.cfg and `# nooelint:` comments, each with
#      its reason); then once more with the two rules suppressed only for the generated crates
#      file switched back on, over a scratch copy whose crates file is a stub;
#   5. every kas file in yocto/kas validates against the JSON schema kas ships, and its local
#      includes exist.
#
# Idempotent, leaves nothing in the tree but the venv; exits non-zero on the first failure.
# Needs Python >= 3.11 with venv, and PyPI on the first run (or after a pin changes).
set -euo pipefail

usage() {
  cat <<EOF
Usage: scripts/check-yocto.sh [-h|--help]

Lints and checks the Yocto layer and kas files in yocto/ (no Yocto build).

Environment:
  PYTHON             interpreter the venv is made from [python3]
  MNIST_MLP_YOCTO_VENV  the venv [<repo>/.venv-yocto]
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

die() { echo "check-yocto: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MNIST_MLP_YOCTO_VENV:-$repo/.venv-yocto}
python=${PYTHON:-python3}
layer=$repo/yocto/meta-mnist-mlp
recipe_dir=$layer/recipes-ml/mnist-mlp
export PYTHONDONTWRITEBYTECODE=1

# The tools, pinned. Bump together and rerun; the venv follows.
pins=(
  "oelint-adv==9.11.2"
  "kas==5.5"
  "jsonschema==4.26.0"
  "PyYAML==6.0.4"
)
releases=(scarthgap styhead walnascar)

[[ -d $layer ]] || die "$layer is missing"

# 1. The venv. A stamp holding the pins says what is installed.
command -v "$python" >/dev/null || die "$python not found (set PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$python is $("$python" -V 2>&1); Python >= 3.11 is needed (tomllib)"
stamp=$venv/.pins
want=$(printf '%s\n' "${pins[@]}")
if [[ ! -x $venv/bin/python ]]; then
  step "creating the venv $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv" || die "cannot create a venv with $python (Debian: apt-get install python3-venv)"
fi
# The venv keeps itself out of git, whatever .gitignore says.
[[ -f $venv/.gitignore ]] || echo '*' >"$venv/.gitignore"
if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  step "installing ${pins[*]} into the venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "$want" >"$stamp"
fi
py=$venv/bin/python
oelint=$venv/bin/oelint-adv

# 2. The crates file.
step "crates file against Cargo.lock"
"$py" "$repo/scripts/gen-yocto-crates.py" --check

# 3. Layer facts oelint-adv does not check.
step "layer.conf, recipe version, layer README"
"$py" - "$repo" <<'EOF'
import glob, os, re, sys, tomllib

repo = sys.argv[1]
layer = os.path.join(repo, "yocto", "meta-mnist-mlp")
errors = []

def assignments(path):
    """Plain `VAR = "value"` / `VAR ?= ...` / `VAR += ...` lines, continuations joined."""
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    out = {}
    for m in re.finditer(r'^([A-Za-z0-9_:${}.-]+)\s*(\?\?=|\?=|\+=|:=|=)\s*"([^"]*)"', text, re.M):
        var, op, val = m.groups()
        val = " ".join(val.split())
        out[var] = (out[var] + " " + val) if op == "+=" and var in out else val
    return out

conf = assignments(os.path.join(layer, "conf", "layer.conf"))
expect = {
    "BBFILE_COLLECTIONS": "mnist-mlp",
    "BBFILE_PATTERN_mnist-mlp": "^${LAYERDIR}/",
    "LAYERDEPENDS_mnist-mlp": "core",
    "LAYERSERIES_COMPAT_mnist-mlp": "scarthgap styhead walnascar",
}
for var, val in expect.items():
    if conf.get(var) != val:
        errors.append(f"layer.conf: {var} is {conf.get(var)!r}, expected {val!r}")

with open(os.path.join(repo, "Cargo.toml"), "rb") as f:
    pkg = tomllib.load(f)["package"]
recipes = sorted(os.path.basename(p) for p in glob.glob(os.path.join(layer, "recipes-*", "*", "*.bb")))
want = f"{pkg['name']}_{pkg['version']}.bb"
if recipes != [want]:
    errors.append(f"recipes are {recipes}, expected exactly [{want!r}] "
                  f"(Cargo.toml says version {pkg['version']}: rename the recipe)")

# What yocto-check-layer's README test (checklayer/cases/common.py) asserts: a README*
# (the shortest name is the main one), not empty, naming a maintainer, saying how to send
# patches, giving an e-mail address. (It skips the rest if the README mentions another
# README, so this one must not.)
readmes = sorted(glob.glob(os.path.join(layer, "[Rr][Ee][Aa][Dd][Mm][Ee]*")))
if not readmes:
    errors.append("the layer has no README")
else:
    data = open(readmes[0], encoding="utf-8").read()
    name = os.path.basename(readmes[0])
    if not data.strip():
        errors.append(f"{name} is empty")
    if re.search("README", data, re.IGNORECASE):
        errors.append(f"{name} mentions a README: yocto-check-layer would skip its checks")
    for word in ("maintainer", "patch"):
        if word not in data.lower():
            errors.append(f"{name} does not mention '{word}'")
    if not re.compile(r"[^@]+@[^@]+").match(data):
        errors.append(f"{name} has no e-mail address")

if errors:
    print("\n".join("check-yocto: error: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"layer.conf ok; recipe {want}; {os.path.basename(readmes[0])} ok")
EOF
# The licence files the recipe names, with their md5 (what do_populate_lic checks).
step "LIC_FILES_CHKSUM against the repository's licence files"
"$py" - "$repo" "$recipe_dir"/mnist-mlp_*.bb <<'EOF'
import hashlib, os, re, sys

repo, recipe = sys.argv[1:]
text = open(recipe, encoding="utf-8").read().replace("\\\n", " ")
m = re.search(r'^LIC_FILES_CHKSUM = "([^"]*)"', text, re.M)
if not m:
    sys.exit("check-yocto: error: the recipe has no LIC_FILES_CHKSUM")
entries = re.findall(r"file://([^;\s]+);md5=([0-9a-f]{32})", m.group(1))
want = {"LICENSE-MIT", "LICENSE-APACHE"}
errors = []
if {f for f, _ in entries} != want:
    errors.append(f"LIC_FILES_CHKSUM names {sorted(f for f, _ in entries)}, expected {sorted(want)}")
for name, md5 in entries:
    path = os.path.join(repo, name)
    try:
        got = hashlib.md5(open(path, "rb").read()).hexdigest()
    except OSError as e:
        errors.append(f"{name}: {e}")
        continue
    if got != md5:
        errors.append(f"{name}: md5 {got}, the recipe says {md5}")
if errors:
    sys.exit("\n".join("check-yocto: error: " + e for e in errors))
print("LIC_FILES_CHKSUM: " + ", ".join(f"{f} md5 {h}" for f, h in entries))
EOF

# 4. oelint-adv. It reads .oelint.cfg from the directory it runs in.
# The layer's files: layer.conf and every recipe, append and include (globbed in DIR).
run_oelint() { # DIR LABEL
  local dir=$1 label=$2 release
  for release in "${releases[@]}"; do
    step "oelint-adv $("$oelint" --version 2>&1 | awk '{print $NF}') --release $release ($label)"
    (
      cd "$dir" && shopt -s nullglob &&
        "$oelint" --quiet --relpaths --mode all --release "$release" \
          conf/layer.conf recipes-*/*/*.bb recipes-*/*/*.bbappend recipes-*/*/*.inc
    ) || die "oelint-adv found problems (release $release, $label); see above"
  done
}
run_oelint "$layer" "the layer"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-check-yocto.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp -a "$layer/." "$scratch/"
printf '# Stub: the strict lint pass of scripts/check-yocto.sh checks the hand-written files.\n' \
  >"$scratch/recipes-ml/mnist-mlp/mnist-mlp-crates.inc"
grep -v -E '^[[:space:]]+oelint\.vars\.(inconspaces|notneededspace)[[:space:]]*$' \
  "$layer/.oelint.cfg" >"$scratch/.oelint.cfg" || true
removed=$(($(wc -l <"$layer/.oelint.cfg") - $(wc -l <"$scratch/.oelint.cfg")))
((removed == 2)) || die "expected to lift 2 crates-file suppressions from .oelint.cfg, lifted $removed"
run_oelint "$scratch" "hand-written files, crates-file suppressions lifted"

# 5. kas files: each one against kas's own schema (includes are not merged), and its local
# includes (repository-relative paths) must exist.
step "kas files against kas $("$py" -c 'import importlib.metadata as m; print(m.version("kas"))') schema"
"$py" - "$repo" <<'EOF'
import glob, importlib.util, json, os, sys
import jsonschema, yaml

repo = sys.argv[1]
kasdir = importlib.util.find_spec("kas").submodule_search_locations[0]
with open(os.path.join(kasdir, "schema-kas.json"), encoding="utf-8") as f:
    schema = json.load(f)
validator = jsonschema.validators.validator_for(schema)(schema)
files = sorted(glob.glob(os.path.join(repo, "yocto", "kas", "*.yml")))
if not files:
    sys.exit("check-yocto: error: no kas files in yocto/kas")
failed = False
for path in files:
    rel = os.path.relpath(path, repo)
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    errs = sorted(validator.iter_errors(cfg), key=lambda e: list(e.path))
    for e in errs:
        where = "/".join(str(p) for p in e.path) or "(top)"
        print(f"check-yocto: error: {rel}: {where}: {e.message}", file=sys.stderr)
    for inc in (cfg or {}).get("header", {}).get("includes", []):
        if isinstance(inc, str) and not os.path.isfile(os.path.join(repo, inc)):
            print(f"check-yocto: error: {rel}: include {inc} does not exist "
                  "(kas resolves it from the repository root)", file=sys.stderr)
            errs.append(inc)
    failed |= bool(errs)
    if not errs:
        print(f"{rel}: valid (machine {cfg.get('machine', '<from includes>')})")
sys.exit(1 if failed else 0)
EOF

step "Yocto checks passed"
