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

/// On a terminal the progress bar is cleared before any log line (none runs into it) and
/// shows the rate as `N it/s`. The terminal is a pty from util-linux's `script`.
#[test]
fn log_lines_never_run_into_the_progress_bar() {
    let exe = env!("CARGO_BIN_EXE_mnist-mlp");
    let runner = std::env::var("MNIST_MLP_TEST_RUNNER").unwrap_or_default();
    let data = mnist_10k();
    let cmd = format!(
        "{runner} {exe} train --data {} --iterations 40 --log-every 100 --hidden 32",
        data.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("util-linux `script` runs the binary on a pty (Debian: bsdutils)");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("/40 iterations"), "no bar: {tty:?}");
    let mut lines = 0;
    for (at, _) in tty.match_indices("mnist-mlp: info: ") {
        let before = &tty[..at];
        assert!(
            before.is_empty() || before.ends_with('\n') || before.ends_with("\x1b[2K"),
            "a log line runs into the bar: {:?}",
            before
                .chars()
                .rev()
                .take(80)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>()
        );
        lines += 1;
    }
    assert!(lines >= 2, "{tty:?}");
    assert!(tty.contains(" it/s"), "rate shown as N it/s: {tty:?}");
}

/// `.gz` data is decompressed into memory: one info line says so for the whole run, not one
/// per file; `predict --json` writes plain decimals (the shortest that read back exactly).
#[test]
fn one_line_about_gz_data_and_plain_decimals_in_json() {
    let data = mnist_10k();
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    let m = model.to_str().unwrap();
    let out = run(&[
        "train",
        "--data",
        d,
        "--iterations",
        "2",
        "--hidden",
        "16",
        "--save",
        m,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("decompressed")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("4 .gz data files"), "{err}");

    let out = run(&[
        "predict", "--model", m, "--data", d, "--index", "0,1", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in stdout(&out).lines() {
        let numbers = line
            .split(|c: char| !(c.is_ascii_digit() || "eE.-+".contains(c)))
            .filter(|t| t.chars().any(|c| c.is_ascii_digit()));
        for n in numbers {
            assert!(!n.contains(['e', 'E']), "exponent notation {n} in {line}");
            let v: f64 = n.parse().unwrap_or_else(|_| panic!("{n} in {line}"));
            assert_eq!(
                format!("{}", v as f32),
                n,
                "not the shortest round trip: {line}"
            );
        }
    }
}

/// An output the directory cannot take (/proc says it is writable to root, and is not) is
/// refused before any training, not after it.
#[test]
fn an_output_that_cannot_be_created_is_refused_up_front() {
    let data = good_dataset(20);
    let out = run(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--iterations",
        "1",
        "--batch",
        "10",
        "--save",
        "/proc/mnist-mlp-model.safetensors",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "trained anyway: {}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot create a file in directory /proc"),
        "{}",
        stderr(&out)
    );
}
