//! `quantize`, `export` and the int8 paths of `eval`, `predict` and `train`: what they print
//! and how they refuse bad input (exit 1 at run time, 2 for usage, one line naming the file and
//! the problem, nothing half-written). Small fixtures (an 8-unit hidden layer, 20 images) so
//! the file runs in seconds; `tests/python/test_litert.py` checks the arithmetic against LiteRT.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A tiny float model trained on `data` (2 iterations of a 784-8-10 network).
fn tiny_model(dir: &Path, data: &Path, arch: &str) -> PathBuf {
    let m = dir.join(format!("{arch}.safetensors"));
    let o = run(&[
        "-q",
        "train",
        "--data",
        s(data),
        "--arch",
        arch,
        "--hidden",
        "8",
        "--iterations",
        "2",
        "--batch",
        "10",
        "--save",
        s(&m),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    m
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a run failed with `code`, one error line containing every needle, and no stdout.
fn fails(args: &[&str], code: i32, needles: &[&str]) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' not in: {err}");
    }
    assert!(stdout(&o).is_empty(), "{args:?} printed: {}", stdout(&o));
}

#[test]
fn quantize_prints_both_accuracies_and_eval_agrees() {
    let data = good_dataset(20);
    let dir = tempfile::tempdir().unwrap();
    for arch in ["seed", "relu"] {
        let m = tiny_model(dir.path(), data.path(), arch);
        for flag in [None, Some("--per-channel")] {
            let q = dir.path().join(format!("{arch}-q.safetensors"));
            let mut args = vec!["quantize", "--model", s(&m), "--data", s(data.path())];
            args.extend(["--out", s(&q), "--calibration", "7"]);
            args.extend(flag);
            let o = run(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            let line = stdout(&o);
            assert!(
                line.starts_with("Accuracy on test set: float32 0."),
                "{line}"
            );
            let int8 = line
                .split("| int8 ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let e = run(&["eval", "--model", s(&q), "--data", s(data.path())]);
            assert!(e.status.success(), "{}", stderr(&e));
            let first = stdout(&e).lines().next().unwrap().to_string();
            assert_eq!(first, format!("Accuracy on test set: {int8}"));
            let p = run(&[
                "predict",
                "--model",
                s(&q),
                "--data",
                s(data.path()),
                "--index",
                "3",
                "--json",
            ]);
            assert!(p.status.success(), "{}", stderr(&p));
            assert!(stdout(&p).contains("\"int8_logits\":["), "{}", stdout(&p));
            let t = dir.path().join("q.tflite");
            let x = run(&["export", "--model", s(&q), "--out", s(&t)]);
            assert!(x.status.success(), "{}", stderr(&x));
            assert_eq!(&std::fs::read(&t).unwrap()[4..8], b"TFL3");
        }
    }
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let data = good_dataset(20);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, data.path(), "relu");
    let q = d.join("q.safetensors");
    let o = run(&[
        "quantize",
        "--model",
        s(&m),
        "--data",
        s(data.path()),
        "--out",
        s(&q),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.join("out.safetensors");

    // --calibration 0: a usage error.
    fails(
        &[
            "quantize",
            "--model",
            s(&m),
            "--data",
            s(data.path()),
            "--out",
            s(&out),
            "--calibration",
            "0",
        ],
        2,
        &["--calibration"],
    );
    // A non-finite model.
    let mut bytes = std::fs::read(&m).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan = d.join("nan.safetensors");
    std::fs::write(&nan, &bytes).unwrap();
    fails(
        &[
            "quantize",
            "--model",
            s(&nan),
            "--data",
            s(data.path()),
            "--out",
            s(&out),
        ],
        1,
        &["nan.safetensors", "non-finite"],
    );
    fails(
        &[
            "export",
            "--model",
            s(&nan),
            "--out",
            s(&d.join("n.tflite")),
        ],
        1,
        &["non-finite"],
    );
    // Calibration images of the wrong shape (10×10).
    let small = tempfile::tempdir().unwrap();
    for f in [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-labels-idx1-ubyte",
    ] {
        std::fs::copy(data.path().join(f), small.path().join(f)).unwrap();
    }
    write(
        small.path(),
        "train-images-idx3-ubyte",
        &idx_images(20, 10, 10, 2000),
    );
    fails(
        &[
            "quantize",
            "--model",
            s(&m),
            "--data",
            s(small.path()),
            "--out",
            s(&out),
        ],
        1,
        &["train-images-idx3-ubyte", "10"],
    );
    // An int8 model where only a float one will do.
    for flag in ["--init", "--resume"] {
        fails(
            &[
                "train",
                "--data",
                s(data.path()),
                flag,
                s(&q),
                "--iterations",
                "1",
            ],
            1,
            &["q.safetensors", "int8 model"],
        );
    }
    fails(
        &[
            "quantize",
            "--model",
            s(&q),
            "--data",
            s(data.path()),
            "--out",
            s(&out),
        ],
        1,
        &["already an int8 model"],
    );
    // Export of something that is not a model.
    let idx = data.path().join("t10k-labels-idx1-ubyte");
    fails(
        &[
            "export",
            "--model",
            s(&idx),
            "--out",
            s(&d.join("x.tflite")),
        ],
        1,
        &["IDX"],
    );
    // An unknown export format.
    fails(
        &["export", "--model", s(&q), "--out", s(&d.join("x.pb"))],
        2,
        &[".tflite"],
    );
    // Unwritable outputs.
    let nowhere = d.join("no/such/dir/x.tflite");
    fails(
        &["export", "--model", s(&q), "--out", s(&nowhere)],
        1,
        &["does not exist"],
    );
    let nowhere = d.join("no/such/dir/q.safetensors");
    fails(
        &[
            "quantize",
            "--model",
            s(&m),
            "--data",
            s(data.path()),
            "--out",
            s(&nowhere),
        ],
        1,
        &["does not exist"],
    );
    // Nothing half-written anywhere.
    let mut left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["nan.safetensors", "q.safetensors", "relu.safetensors"]
    );
}
