//! The fuzzers' files on stable Rust: every committed seed (`fuzz/seeds/TARGET/`) is a valid
//! file of its kind, so the fuzzers start from inputs that reach deep into the parsers (and a
//! format change that makes them stale fails here, not silently in the fuzzers); every input in
//! `tests/fuzz-regressions/TARGET/` gives `Ok` or an error naming the file, never a panic. For
//! both, the largest single allocation must stay within the bound the fuzz target enforces, a
//! small multiple of the file's real length, whatever its header claims. The parsers are
//! called as the fuzz targets in `fuzz/fuzz_targets/` call them.
//!
//! To keep a fuzzer's finding: copy `fuzz/artifacts/TARGET/crash-…` to
//! `tests/fuzz-regressions/TARGET/` under a name saying what it is (ending in `.gz` for
//! `idx_gz`), fix the parser, and this test holds it fixed.

#[path = "common/peak_alloc.rs"]
mod peak_alloc;

use std::fs;
use std::path::{Path, PathBuf};

use mnist_mlp::data::Dataset;
use mnist_mlp::idx::{Images, Labels};
use mnist_mlp::image::read_digit;
use mnist_mlp::model_file;
use mnist_mlp::train::{Length, Trainer};
use peak_alloc::{bounded, PeakAlloc};

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// The extra tensors the CLI's `eval`/`predict` and `train --resume` accept.
const CHECKPOINT_EXTRAS: [&str; 3] = mnist_mlp::checkpoint::EXTRAS;
const TARGETS: [&str; 5] = ["idx_images", "idx_labels", "idx_gz", "model_file", "image"];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// The fuzz target's training set for checkpoints: 4 images of 28×28, labels 0..4.
fn tiny_train_set() -> Dataset {
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28];
    img.extend((0..4 * 784).map(|i| (i % 251) as u8));
    let lbl = vec![0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 3];
    let images = Images::from_vec(Path::new("train-images"), img).unwrap();
    let labels = Labels::from_vec(Path::new("train-labels"), lbl).unwrap();
    Dataset::new(images, labels).unwrap()
}

/// Parses `path` as fuzz target `target` does, within the same allocation bounds; `Err` holds
/// the message (the parser's, or the bound's).
fn parse(target: &str, path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).unwrap();
    let len = bytes.len();
    let err = |e: mnist_mlp::Error| e.to_string();
    match target {
        "idx_images" => bounded(64 << 10, path, || Images::from_vec(path, bytes))?
            .map(drop)
            .map_err(err),
        "idx_labels" => bounded(64 << 10, path, || Labels::from_vec(path, bytes))?
            .map(drop)
            .map_err(err),
        // Seeds and findings of this target are kept with a `.gz` name, as the target reads
        // them; one is valid when it reads as either kind.
        "idx_gz" => {
            let limit = 2 * 1032 * len + (1 << 20);
            let images = bounded(limit, path, || Images::open(path))?;
            let labels = bounded(limit, path, || Labels::open(path))?;
            match (images, labels) {
                (Ok(_), _) | (_, Ok(_)) => Ok(()),
                (Err(e), Err(_)) => Err(e.to_string()),
            }
        }
        "model_file" => {
            let loaded = bounded(4 * len + (1 << 20), path, || {
                model_file::decode(path, &bytes, &CHECKPOINT_EXTRAS)
            })?
            .map_err(err)?;
            if loaded.meta(path, "kind").map_err(err)? == "checkpoint" {
                let train = tiny_train_set();
                let mut t = Trainer::resume(path, Some(Length::Iterations(3)), 1, &train)
                    .map_err(|e| format!("{}: cannot resume: {e}", path.display()))?;
                t.step(&train).map_err(err)?;
            }
            Ok(())
        }
        "image" => bounded(2 * len + (1 << 20), path, || read_digit(path, false))?
            .map(drop)
            .map_err(err),
        _ => unreachable!("unknown target {target}"),
    }
}

#[test]
fn every_seed_is_a_valid_file_of_its_kind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in TARGETS {
        let seeds = files(&root.join(target));
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{target} has {} seeds",
            seeds.len()
        );
        for seed in seeds {
            if let Err(e) = parse(target, &seed) {
                panic!("seed {} is refused: {e}", seed.display());
            }
        }
    }
}

#[test]
fn every_fuzzer_finding_is_refused_with_a_message_naming_the_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    for target in TARGETS {
        for input in files(&root.join(target)) {
            if let Err(msg) = parse(target, &input) {
                assert!(
                    msg.contains(&input.display().to_string()),
                    "{}: the error does not name the file: {msg}",
                    input.display()
                );
                assert!(!msg.contains("allocated a block"), "{msg}");
            }
        }
    }
}
