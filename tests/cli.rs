//! Command-line behaviour: usage errors exit 2 with a message naming the option, help explains.

mod common;

use common::*;

fn usage_error(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(stdout(&out).is_empty());
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in {err}");
    }
}

#[test]
fn bad_option_values_are_usage_errors() {
    usage_error(
        &["train", "--batch", "0"],
        &["--batch", "must be at least 1"],
    );
    usage_error(
        &["train", "--iterations", "0"],
        &["--iterations", "must be at least 1"],
    );
    usage_error(
        &["train", "--epochs", "0"],
        &["--epochs", "must be at least 1"],
    );
    usage_error(
        &["train", "--threads", "0"],
        &["--threads", "must be at least 1"],
    );
    usage_error(
        &["train", "--log-every", "0"],
        &["--log-every", "must be at least 1"],
    );
    usage_error(
        &["train", "--hidden", "512,,128"],
        &["--hidden", "'' is not a layer width"],
    );
    usage_error(
        &["train", "--hidden", "512,abc"],
        &["'abc' is not a layer width"],
    );
    usage_error(&["train", "--hidden", "512,0"], &["at least 1"]);
    usage_error(&["train", "--lr", "-1"], &["--lr", "positive number"]);
    usage_error(&["train", "--lr", "nan"], &["--lr", "positive number"]);
    usage_error(
        &["train", "--batch", "many"],
        &["--batch", "positive integer"],
    );
    usage_error(&["train", "--arch", "cnn"], &["--arch", "seed", "relu"]);
    usage_error(
        &["train", "--iterations", "5", "--epochs", "1"],
        &["--iterations", "--epochs", "cannot be used with"],
    );
    usage_error(&["frobnicate"], &["unrecognized subcommand"]);
    usage_error(&[], &["Usage"]);
}

#[test]
fn help_explains_the_options_and_the_output() {
    let out = run(&["train", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for n in [
        "--data",
        "--arch",
        "--hidden",
        "--iterations",
        "--epochs",
        "--batch",
        "--lr",
        "--seed",
        "--threads",
        "--log-every",
        "Accuracy on test set",
        "data/mnist",
    ] {
        assert!(help.contains(n), "help lacks {n}:\n{help}");
    }
    let top = stdout(&run(&["--help"]));
    assert!(top.contains("train") && top.contains("tutorial"), "{top}");
}

#[test]
fn batch_larger_than_the_data_is_a_clear_runtime_error() {
    let dir = good_dataset(20);
    let out = run(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--batch",
        "21",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("batch size 21 is larger than the training set (20 images)"),
        "{}",
        stderr(&out)
    );
}

/// Without --data: `data/mnist` when that directory exists, else `data/mnist-10k`, relative to
/// the current directory; with neither, the error says where it looked and what to do.
#[test]
fn default_data_is_data_mnist_else_the_bundled_subset() {
    let cwd = tempfile::tempdir().unwrap();
    let run_in = |args: &[&str]| {
        bin()
            .args(args)
            .current_dir(cwd.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .output()
            .expect("spawn mnist-mlp")
    };
    let train = ["train", "--iterations", "1", "--batch", "10", "-v"];

    let out = run_in(&train);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("data/mnist-10k/train-images-idx3-ubyte")
            && err.contains("without --data, data/mnist or else data/mnist-10k is read"),
        "{err}"
    );

    // The bundled subset's place: read when data/mnist does not exist.
    let bundled = cwd.path().join("data/mnist-10k");
    std::fs::create_dir_all(&bundled).unwrap();
    copy_dataset(good_dataset(20).path(), &bundled);
    let out = run_in(&train);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("on 20 images"), "{}", stderr(&out));

    // data/mnist, once it exists, wins even when it is the broken one.
    let fetched = cwd.path().join("data/mnist");
    std::fs::create_dir_all(&fetched).unwrap();
    let out = run_in(&train);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing data file data/mnist/train-images-idx3-ubyte"),
        "{}",
        stderr(&out)
    );
    copy_dataset(good_dataset(30).path(), &fetched);
    let out = run_in(&train);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("on 30 images"), "{}", stderr(&out));
}

fn copy_dataset(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
