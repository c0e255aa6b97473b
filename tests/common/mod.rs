//! Helpers shared by the integration tests: the binary, the data sets, IDX fixtures.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `mnist-mlp` binary built for these tests. When `MNIST_MLP_TEST_RUNNER` is set (e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` when testing a cross build), it runs through it.
pub fn bin() -> Command {
    let exe = env!("CARGO_BIN_EXE_mnist-mlp");
    match std::env::var("MNIST_MLP_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    }
}

/// Runs the binary with `args`, with logging at its default level and no colour.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("spawn mnist-mlp")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The 10,000-digit MNIST subset bundled with the repository (`data/mnist-10k`): the test
/// suite's own data, present in every clone.
pub fn mnist_10k() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").exists(),
        "the bundled data set {} is missing: it is part of the repository (git checkout it)",
        dir.display()
    );
    dir
}

/// A larger data set that is not bundled (`fashion-mnist`), from `$MNIST_MLP_SHARED_DATA` or
/// `../shared/data`, for the separate `shared_data` suite and the soak. Fails loudly if absent:
/// these tests are never skipped silently.
pub fn shared_data(name: &str) -> PathBuf {
    let root = std::env::var_os("MNIST_MLP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let dir = root.join(name);
    assert!(
        dir.join("train-images-idx3-ubyte.gz").exists()
            || dir.join("train-images-idx3-ubyte").exists(),
        "test data {} is missing: this test needs {name}/ in $MNIST_MLP_SHARED_DATA (or in \
         ../shared/data beside the repository) holding the four IDX files",
        dir.display()
    );
    dir
}

/// Bytes of an IDX image file whose header claims `count` images of `rows × cols` and whose
/// body holds `body` bytes of pixels.
pub fn idx_images(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..body).map(|i| (i % 251) as u8));
    v
}

/// Bytes of an IDX label file claiming `count` labels and holding `labels`.
pub fn idx_labels(count: u32, labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&count.to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A directory holding a consistent little data set of `n` 28×28 images per split, which
/// individual tests then break one file at a time.
pub fn good_dataset(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for split in ["train", "t10k"] {
        write(
            dir.path(),
            &format!("{split}-images-idx3-ubyte"),
            &idx_images(n, 28, 28, n as usize * 784),
        );
        write(
            dir.path(),
            &format!("{split}-labels-idx1-ubyte"),
            &idx_labels(n, &labels),
        );
    }
    dir
}

/// Writes `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Whether heavy tests run at reduced size: `MNIST_MLP_TEST_SCALE=reduced`, set when the suite
/// runs under emulation (≈100× slower). Reduced tests still train and check; they are never
/// skipped.
pub fn reduced() -> bool {
    match std::env::var("MNIST_MLP_TEST_SCALE").as_deref() {
        Ok("reduced") => {
            eprintln!("MNIST_MLP_TEST_SCALE=reduced: running the reduced-size variant");
            true
        }
        Ok("full") | Err(_) => false,
        Ok(other) => panic!("MNIST_MLP_TEST_SCALE must be 'full' or 'reduced', not {other:?}"),
    }
}

/// A raw (uncompressed, hence memory-mapped) copy of the first `n_train` training and
/// `n_test` test examples of the data set in `src`: a smaller real data set for tests that
/// run under emulation.
pub fn subset(src: &Path, n_train: usize, n_test: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (stem, n, per_item, header) in [
        ("train-images-idx3-ubyte", n_train, 784, 16),
        ("train-labels-idx1-ubyte", n_train, 1, 8),
        ("t10k-images-idx3-ubyte", n_test, 784, 16),
        ("t10k-labels-idx1-ubyte", n_test, 1, 8),
    ] {
        // Decompress only the part kept: under emulation inflating all of Fashion-MNIST
        // would take minutes.
        let mut bytes = Vec::new();
        let gz = std::fs::File::open(src.join(format!("{stem}.gz"))).unwrap();
        let want = (header + n * per_item) as u64;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(flate2::read::GzDecoder::new(gz), want),
            &mut bytes,
        )
        .unwrap();
        assert_eq!(
            bytes.len() as u64,
            want,
            "{stem}.gz has fewer than {n} items"
        );
        bytes[4..8].copy_from_slice(&(n as u32).to_be_bytes());
        write(dir.path(), stem, &bytes);
    }
    dir
}

/// One parsed progress line.
pub struct Line {
    pub iteration: usize,
    pub loss: f32,
    pub accuracy: f32,
}

/// Parses the tutorial's output strictly: progress lines, one empty line, the test accuracy.
pub fn parse_output(out: &str) -> (Vec<Line>, f32) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "too little output:\n{out}");
    let (progress, tail) = lines.split_at(lines.len() - 2);
    assert_eq!(
        tail[0], "",
        "an empty line before the test accuracy:\n{out}"
    );
    let acc = tail[1]
        .strip_prefix("Accuracy on test set: ")
        .unwrap_or_else(|| panic!("bad final line {:?}", tail[1]));
    let parsed = progress
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.split(" \t| ").collect();
            assert_eq!(parts.len(), 3, "bad line {l:?}");
            let it = parts[0]
                .strip_prefix("Iteration ")
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let loss = parts[1]
                .strip_prefix("Loss = ")
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let accuracy = parts[2]
                .strip_prefix("Accuracy = ")
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            // At most 6 significant digits, as the tutorial printed.
            let digits = loss
                .chars()
                .take_while(|&c| c != 'e')
                .filter(char::is_ascii_digit)
                .collect::<String>();
            assert!(
                digits.trim_start_matches('0').len() <= 6,
                "more than 6 significant digits: {loss}"
            );
            Line {
                iteration: it.parse().unwrap(),
                loss: loss.parse().unwrap(),
                accuracy: accuracy.parse().unwrap(),
            }
        })
        .collect();
    (
        parsed,
        acc.parse()
            .unwrap_or_else(|_| panic!("bad accuracy {acc:?}")),
    )
}

pub fn train_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "mnist-mlp {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The reduced variant of a long run: `args` on a 2000/1000 subset for 30 iterations; the
/// loss must fall.
pub fn reduced_training_learns(data: &Path, args: &[&str]) {
    let small = subset(data, 2000, 1000);
    let base = [
        "train",
        "--data",
        small.path().to_str().unwrap(),
        "--iterations",
        "30",
        "--log-every",
        "29",
    ];
    let out = train_ok(&[&base[..], args].concat());
    let (lines, acc) = parse_output(&out);
    assert!(
        lines[1].loss < lines[0].loss * 0.8,
        "loss should fall:\n{out}"
    );
    assert!(
        acc > 0.3,
        "far better than chance after 30 iterations:\n{out}"
    );
}
