# nooelint: oelint.var.bbclassextend,oelint.var.suggestedvar.BUGTRACKER
# Lint suppressions on the line above (scripts/check-yocto.sh runs oelint-adv): no
# native/nativesdk variant (a tool for the target only); no public bug tracker yet (the layer
# README says where to send reports).
SUMMARY = "Train and run an MLP MNIST digit classifier on the board"
SUMMARY:${PN}-data = "MNIST data set and/or model files for mnist-mlp"
DESCRIPTION = "mnist-mlp trains, evaluates and runs a multilayer-perceptron MNIST \
               classifier on the target itself (NXP i.MX8: Cortex-A53, Cortex-A72 + A53): \
               one binary, no Python, no GPU. Reads IDX files (raw or .gz), writes \
               safetensors models."
# Placeholder until the repository is published: use the address of MNIST_MLP_GIT_URI.
# Lint: oelint.vars.homepageping fetches the page; CI has no network (and the host is a
# placeholder), so it is suppressed here.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/mnist-mlp"
SECTION = "console/utils"
# The crate is "MIT OR Apache-2.0" (Cargo.toml). The repository has no license files yet, so
# the texts are checked against oe-core's copies; once LICENSE-MIT and LICENSE-APACHE are in
# the repository, point LIC_FILES_CHKSUM at them and drop the suppression.
LICENSE = "MIT | Apache-2.0"
# Lint: oelint.var.licenseremotefile wants a file from the source; none yet (see above).
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# Source: this repository at a pinned commit. Set MNIST_MLP_GIT_URI (local.conf, distro or a
# .bbappend) to where your copy of the repository is published, and SRCREV to the commit to
# build. For local development build a checkout instead (externalsrc, see the layer's README);
# the crate list still comes from this layer, so it must match that checkout's Cargo.lock.
MNIST_MLP_GIT_URI ?= "git://example.invalid/mnist-mlp.git;protocol=https;branch=main"
SRC_URI = "${MNIST_MLP_GIT_URI}"

# Optional data set and/or model, shipped in ${PN}-data under ${datadir}/${BPN}. List paths
# relative to the recipe's FILESPATH (e.g. a .bbappend's files/ directory), e.g.
#   MNIST_MLP_DATA_FILES = "mnist/t10k-images-idx3-ubyte.gz mnist/t10k-labels-idx1-ubyte.gz relu.safetensors"
# unpack=0: .gz IDX files stay compressed (mnist-mlp reads them as they are).
MNIST_MLP_DATA_FILES ?= ""
SRC_URI += "${@' '.join('file://%s;subdir=mnist-mlp-data;unpack=0' % f for f in d.getVar('MNIST_MLP_DATA_FILES').split())}"

SRCREV = "44d9122212b97a969a105f06b8820ce5f1938985"

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
