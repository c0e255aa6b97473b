#!/usr/bin/env bash
# The soak test (tests/soak.rs, ignored by `cargo test`): `train --arch relu` on Fashion-MNIST
# for EPOCHS epochs (default 20) with a checkpoint every 500 iterations, sampled through
# /proc every 100 ms. Fails if the peak RSS grows after epoch 2 (by more than 2 MiB), a file
# descriptor or thread leaks, a temporary file is left beside the checkpoint, or the final
# checkpoint does not load; prints the RSS curve (start, every epoch, exit) either way.
#
# Full run: about 1–2 minutes of training on a 2-core x86_64 VM; CI runs 3 epochs.
set -euo pipefail

usage() {
  cat <<EOF
Usage: scripts/soak.sh [-h|--help] [EPOCHS]

Builds and runs the soak test: EPOCHS (>= 3, default 20) epochs of Fashion-MNIST with
checkpoints, checking memory, file descriptors, threads and the checkpoint directory.

Environment:
  MNIST_MLP_SOAK_CSV     also write every sample (time, iteration, VmRSS, VmHWM, RssAnon,
                         RssFile, fds, threads) to this CSV file
  MNIST_MLP_SHARED_DATA  directory holding fashion-mnist/ [<repo>/../shared/data]
  MNIST_MLP_TEST_SCALE   'reduced': first 12,000 images, a checkpoint every 50 iterations
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac
(( $# <= 1 )) || { usage >&2; exit 2; }
epochs=${1:-20}
if ! [[ $epochs =~ ^[0-9]+$ ]] || (( 10#$epochs < 3 )); then
  echo "soak: error: EPOCHS must be a whole number >= 3, not '$epochs'" >&2
  exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
MNIST_MLP_SOAK_EPOCHS=$((10#$epochs)) exec cargo test --release --test soak -- --ignored --nocapture
