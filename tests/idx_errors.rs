//! The bad-input table for data files: every case reaches the user as a clear message naming
//! the file and the problem, with exit code 1, and never as a panic or a huge allocation.
//! Each case is checked through the binary (what users see) on a small data set where one
//! file at a time is broken.

mod common;

use common::*;

/// Runs a short training on `dir` and returns stderr after checking it failed with code 1 and
/// printed nothing on stdout.
fn train_fails(dir: &std::path::Path) -> String {
    let out = run(&[
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--iterations",
        "2",
        "--batch",
        "4",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    err
}

fn assert_has(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "expected {n:?} in:\n{haystack}");
    }
}

#[test]
fn the_good_fixture_trains() {
    let dir = good_dataset(20);
    let out = run(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--iterations",
        "2",
        "--batch",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Accuracy on test set: "));
}

#[test]
fn missing_directory_says_which_file_and_how_to_get_data() {
    let dir = tempfile::tempdir().unwrap();
    let err = train_fails(&dir.path().join("nope"));
    assert_has(
        &err,
        &[
            "missing data file",
            "nope/train-images-idx3-ubyte",
            "scripts/fetch-mnist.sh",
        ],
    );
}

#[test]
fn missing_label_file_is_named() {
    let dir = good_dataset(20);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    assert_has(
        &train_fails(dir.path()),
        &["t10k-labels-idx1-ubyte", "also tried", ".gz"],
    );
}

#[test]
fn wrong_magic_number() {
    let dir = good_dataset(20);
    // A label file where the images should be.
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_labels(20, &[1; 20]),
    );
    assert_has(
        &train_fails(dir.path()),
        &[
            "train-images-idx3-ubyte",
            "wrong magic number 0x00000801",
            "expected 0x00000803",
            "labels file",
        ],
    );
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        b"GIF89a, not an IDX file at all",
    );
    assert_has(
        &train_fails(dir.path()),
        &["wrong magic number", "not an IDX file"],
    );
}

#[test]
fn truncated_file() {
    let dir = good_dataset(20);
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(20, 28, 28, 19 * 784 + 5),
    );
    assert_has(
        &train_fails(dir.path()),
        &["train-images-idx3-ubyte", "truncated", "20 images of 28×28"],
    );
    write(dir.path(), "train-images-idx3-ubyte", &[0, 0, 8, 3, 0, 0]);
    assert_has(
        &train_fails(dir.path()),
        &["truncated: 6 bytes", "header needs 16"],
    );
    write(dir.path(), "train-images-idx3-ubyte", &[]);
    assert_has(&train_fails(dir.path()), &["truncated: 0 bytes"]);
}

#[test]
fn header_counts_that_do_not_match_the_length() {
    let dir = good_dataset(20);
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(20, 28, 28, 21 * 784),
    );
    assert_has(
        &train_fails(dir.path()),
        &["header counts do not match the file length", "15680 bytes"],
    );
}

#[test]
fn image_and_label_counts_differ() {
    let dir = good_dataset(20);
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_labels(19, &[1; 19]),
    );
    assert_has(
        &train_fails(dir.path()),
        &[
            "holds 20 images",
            "holds 19 labels",
            "train-labels-idx1-ubyte",
        ],
    );
}

#[test]
fn label_above_nine() {
    let dir = good_dataset(20);
    let mut labels = [3u8; 20];
    labels[7] = 12;
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_labels(20, &labels),
    );
    assert_has(
        &train_fails(dir.path()),
        &["label 12 at index 7", "expected 0..=9"],
    );
}

#[test]
fn images_of_the_wrong_size_for_the_network() {
    let dir = good_dataset(20);
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &idx_images(20, 20, 20, 20 * 400),
    );
    assert_has(
        &train_fails(dir.path()),
        &[
            "t10k-images-idx3-ubyte",
            "20×20 = 400 pixels",
            "takes 784 inputs",
        ],
    );
}

#[test]
fn zero_images() {
    let dir = good_dataset(20);
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(0, 28, 28, 0),
    );
    write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(0, &[]));
    assert_has(
        &train_fails(dir.path()),
        &["train-images-idx3-ubyte contains no images"],
    );
}

#[test]
fn a_directory_where_a_file_should_be() {
    let dir = good_dataset(20);
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    std::fs::create_dir(dir.path().join("train-images-idx3-ubyte")).unwrap();
    assert_has(
        &train_fails(dir.path()),
        &["train-images-idx3-ubyte", "not a regular file"],
    );
}

#[test]
fn gzip_files_load_and_broken_gzip_is_reported() {
    let dir = good_dataset(20);
    let raw = std::fs::read(dir.path().join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    let gz = gzip(&raw);
    write(dir.path(), "train-images-idx3-ubyte.gz", &gz);
    let out = run(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--iterations",
        "2",
        "--batch",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("decompressed"),
        "info log about mapping: {}",
        stderr(&out)
    );

    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gz[..gz.len() / 2],
    );
    assert_has(
        &train_fails(dir.path()),
        &["train-images-idx3-ubyte.gz", "truncated"],
    );
    let mut corrupt = gz.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid..mid + 8].copy_from_slice(b"garbage!");
    write(dir.path(), "train-images-idx3-ubyte.gz", &corrupt);
    assert_has(&train_fails(dir.path()), &["train-images-idx3-ubyte.gz"]);
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        b"\x1f\x8b not really gzip",
    );
    assert_has(
        &train_fails(dir.path()),
        &["train-images-idx3-ubyte.gz", "gzip"],
    );
}

/// A header claiming 4 billion images must be refused from the file length, before any
/// allocation: the process runs under a 1 GiB address-space limit, far below the 3 TB claimed.
#[test]
fn a_header_claiming_billions_allocates_nothing() {
    let dir = good_dataset(20);
    let exe = env!("CARGO_BIN_EXE_mnist-mlp");
    let limited = |dir: &std::path::Path| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1048576 && exec {} \"$0\" train --data \"$1\" --iterations 2 --batch 4",
                std::env::var("MNIST_MLP_TEST_RUNNER").unwrap_or_default()
            ))
            .arg(exe)
            .arg(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_images(u32::MAX, 28, 28, 784),
    );
    assert_has(
        &limited(dir.path()),
        &[
            "truncated",
            "4294967295 images of 28×28",
            "only 784 bytes follow",
        ],
    );
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gzip(&idx_images(u32::MAX, 28, 28, 784)),
    );
    assert_has(
        &limited(dir.path()),
        &[
            "4294967295 images of 28×28",
            "more than a",
            "gzip file can hold",
        ],
    );
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_labels(u32::MAX, &[1; 20]),
    );
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gzip(&idx_images(20, u32::MAX, u32::MAX, 784)),
    );
    assert_has(&limited(dir.path()), &["images of 4294967295×4294967295"]);
}
