//! The `shared_data` suite: tests on data sets too large to bundle with the repository
//! (Fashion-MNIST, 60,000 + 10,000 images), read from `$MNIST_MLP_SHARED_DATA` or from
//! `../shared/data` beside the repository. Ignored by a plain `cargo test`; run them with
//!
//!     cargo test --release --test shared_data -- --ignored
//!
//! (CI does). With the data missing they fail with a message saying what to provide; they
//! never pass without it.

mod common;

use common::*;

#[test]
#[ignore = "needs fashion-mnist/ in $MNIST_MLP_SHARED_DATA or ../shared/data; run: cargo test --release --test shared_data -- --ignored"]
fn fashion_mnist_full_training_set() {
    if reduced() {
        return reduced_training_learns(&shared_data("fashion-mnist"), &["--arch", "relu"]);
    }
    let data = shared_data("fashion-mnist");
    let out = train_ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "relu",
        "--epochs",
        "1",
        "--log-every",
        "200",
    ]);
    let (lines, acc) = parse_output(&out);
    // 60,000 images at batch 128: 469 iterations, lines at 0, 200, 400.
    assert_eq!(lines.len(), 3, "{out}");
    assert!(acc >= 0.83, "Fashion-MNIST after one epoch: {acc}:\n{out}");
}
