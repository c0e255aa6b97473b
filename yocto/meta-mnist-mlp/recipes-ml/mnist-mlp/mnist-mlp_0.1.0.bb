# nooelint: oelint.var.bbclassextend,oelint.var.suggestedvar.BUGTRACKER,oelint.var.mandatoryvar.HOMEPAGE
# Lint suppressions on the line above (scripts/check-yocto.sh runs oelint-adv): no
# native/nativesdk variant (a tool for the target only); no public bug tracker and no public
# home page yet (the layer README says where to send reports).
SUMMARY = "Train and run an MLP MNIST digit classifier on the board"
SUMMARY:${PN}-data = "MNIST data set and/or model files for mnist-mlp"
DESCRIPTION = "mnist-mlp trains, evaluates and runs a multilayer-perceptron MNIST \
               classifier on the target itself (NXP i.MX8: Cortex-A53, Cortex-A72 + A53): \
               one binary, no Python, no GPU. Reads IDX files (raw or .gz), writes \
               safetensors models."
SECTION = "console/utils"
# The crate is "MIT OR Apache-2.0" (Cargo.toml); the texts are the repository's own.
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=fa6c359d2d7124a3bd2377b68fae6c00 \
                    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# Source. By default the recipe builds the mnist-mlp checkout this layer is part of (the
# layer is yocto/meta-mnist-mlp in that repository), in place, with externalsrc: the layer
# and the source are one tree, so mnist-mlp-crates.inc is the list generated from the very
# Cargo.lock being built. The repository's CI checks that the two match and builds from
# exactly the listed crates the way this class does (a directory source, --frozen
# --offline) with Rust 1.75.0, 1.79.0 and 1.84.1.
#
# To build a published commit instead, set both (local.conf, a distro file or a .bbappend):
#   MNIST_MLP_GIT_URI = "git://<host>/mnist-mlp.git;protocol=https;branch=main"
#   SRCREV:pn-mnist-mlp = "<commit>"
# with this layer taken from that same commit (its crate list must match that commit's
# Cargo.lock; do_configure checks it). Outside a checkout and with neither set, the recipe is
# skipped with a one-line reason saying so.
MNIST_MLP_GIT_URI ??= ""
SRC_URI = "${MNIST_MLP_GIT_URI}"
MNIST_MLP_CHECKOUT := "${@os.path.normpath('${THISDIR}/../../../..')}"

def mnist_mlp_checkout(d):
    """The mnist-mlp checkout this layer sits in, or "" (git source set, or not in one)."""
    import os
    root = d.getVar('MNIST_MLP_CHECKOUT')
    if d.getVar('MNIST_MLP_GIT_URI') or not os.path.isfile(os.path.join(root, 'Cargo.toml')):
        return ''
    return root

inherit externalsrc
EXTERNALSRC ??= "${@mnist_mlp_checkout(d)}"

# Parse time is the place for a one-line reason instead of a failed fetch or build later.
# Lint: oelint-adv discourages anonymous python (cost at parse); this reads three variables.
# nooelint: oelint.task.noanonpython
python __anonymous () {
    import os
    src = d.getVar('EXTERNALSRC')
    if src:
        if not os.path.isfile(os.path.join(src, 'Cargo.toml')):
            raise bb.parse.SkipRecipe("EXTERNALSRC (%s) has no Cargo.toml: point it at an mnist-mlp checkout" % src)
    elif not d.getVar('MNIST_MLP_GIT_URI'):
        raise bb.parse.SkipRecipe("this layer is not inside an mnist-mlp checkout: set MNIST_MLP_GIT_URI and SRCREV:pn-mnist-mlp, or EXTERNALSRC:pn-mnist-mlp")
    elif (d.getVar('SRCREV') or 'INVALID') == 'INVALID':
        raise bb.parse.SkipRecipe("MNIST_MLP_GIT_URI is set: set SRCREV:pn-mnist-mlp to the commit to build")
}

# Optional data set and/or model, shipped in ${PN}-data under ${datadir}/${BPN}. List paths
# relative to the recipe's FILESPATH (e.g. a .bbappend's files/ directory), e.g.
#   MNIST_MLP_DATA_FILES = "mnist/t10k-images-idx3-ubyte.gz mnist/t10k-labels-idx1-ubyte.gz relu.safetensors"
# unpack=0: .gz IDX files stay compressed (mnist-mlp reads them as they are).
MNIST_MLP_DATA_FILES ?= ""
SRC_URI += "${@' '.join('file://%s;subdir=mnist-mlp-data;unpack=0' % f for f in d.getVar('MNIST_MLP_DATA_FILES').split())}"

# scarthgap unpacks SRC_URI into WORKDIR and has no UNPACKDIR; styhead and walnascar unpack
# into UNPACKDIR (WORKDIR/sources-unpack). Not "UNPACKDIR ??= WORKDIR": bitbake.conf sets
# UNPACKDIR with ??= too and the last ??= wins, so that would move styhead+'s UNPACKDIR onto
# WORKDIR. The git fetcher unpacks into <that directory>/git on all three releases.
MNIST_MLP_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${MNIST_MLP_UNPACKDIR}/git"

CVE_PRODUCT = "mnist-mlp"

inherit cargo cargo-update-recipe-crates

# Every crate of Cargo.lock, pinned by crate:// URI and sha256: do_fetch gets them all, so the
# build itself needs no network (cargo runs --frozen against bitbake's vendored copies).
# Regenerate with scripts/gen-yocto-crates.py (or bitbake -c update_crates mnist-mlp).
require ${BPN}-crates.inc

# The crates cargo will be given must be the crates Cargo.lock names: say so before cargo
# fails on a missing one with "no matching package", and name the fix.
python mnist_mlp_check_crates () {
    import os, re
    lock = os.path.join(d.getVar('S'), d.getVar('CARGO_SRC_DIR') or '', 'Cargo.lock')
    try:
        text = open(lock, encoding='utf-8').read()
    except OSError as e:
        bb.fatal("mnist-mlp: cannot read %s: %s" % (lock, e))
    locked = set(re.findall(r'^name = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry\+[^"]*crates\.io', text, re.M))
    listed = set(re.findall(r'crate://crates\.io/([^/\s;]+)/([^/\s;]+)', d.getVar('SRC_URI')))
    missing = sorted('%s-%s' % c for c in locked - listed)
    if missing:
        bb.fatal("mnist-mlp: %s needs %d crate(s) missing from mnist-mlp-crates.inc (%s): regenerate it with scripts/gen-yocto-crates.py from that Cargo.lock" % (lock, len(missing), ', '.join(missing[:5])))
    extra = sorted('%s-%s' % c for c in listed - locked)
    if extra:
        bb.warn("mnist-mlp: mnist-mlp-crates.inc lists %d crate(s) %s does not use (%s): regenerate it with scripts/gen-yocto-crates.py" % (len(extra), lock, ', '.join(extra[:5])))
}
mnist_mlp_check_crates[doc] = "Fails when Cargo.lock names a crate mnist-mlp-crates.inc does not list"
do_configure[prefuncs] += "mnist_mlp_check_crates"

# Only the binary: the crate's library (the engine) is linked into it, not installed as .rlib.
CARGO_BUILD_FLAGS:append = " --bin mnist-mlp"

# The crate's release profile is for copying a binary to a board by hand (it may strip).
# Yocto strips the binary itself and splits the debug info into ${PN}-dbg, so let cargo keep
# the symbols (rather than skip the already-stripped QA check) and emit line tables for the
# -dbg package. Cargo reads profile settings from the environment.
export CARGO_PROFILE_RELEASE_STRIP = "false"
CARGO_PROFILE_RELEASE_DEBUG ?= "1"
export CARGO_PROFILE_RELEASE_DEBUG

# Yocto's Rust targets generic aarch64 unless told otherwise. Tune for the machine's cores:
# Cortex-A53 (i.MX8M family), Cortex-A72. The big.LITTLE tune cortexa72-cortexa53 (i.MX8QM)
# gets cortex-a53: the code must run on both clusters and LLVM has no combined model (oe-core
# makes the same choice for clang). Set MNIST_MLP_TARGET_CPU = "" for a generic build.
MNIST_MLP_TARGET_CPU ?= "${@bb.utils.contains_any('TUNE_FEATURES', 'cortexa53 cortexa72-cortexa53', 'cortex-a53', bb.utils.contains('TUNE_FEATURES', 'cortexa72', 'cortex-a72', '', d), d)}"
RUSTFLAGS:append = " ${@'-C target-cpu=' + d.getVar('MNIST_MLP_TARGET_CPU') if d.getVar('MNIST_MLP_TARGET_CPU') else ''}"

# cargo's do_install puts the binary in ${bindir}; add the optional data.
do_install:append() {
    for f in ${MNIST_MLP_DATA_FILES}; do
        install -D -m 0644 "${MNIST_MLP_UNPACKDIR}/mnist-mlp-data/$f" "${D}${datadir}/${BPN}/$f"
    done
}

PACKAGES =+ "${PN}-data"
FILES:${PN}-data += "${datadir}/${BPN}"
