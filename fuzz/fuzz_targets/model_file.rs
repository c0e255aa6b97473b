//! Model and checkpoint files (`model_file::decode`, which also builds the `Mlp`): any input
//! gives a finite network of the promised shape, or an `Err` naming the file, with memory
//! bounded by the file's length rather than the sizes its metadata claims. What loads is
//! then used as the CLI would: the checkpoint accessors with right and wrong lengths, one
//! forward pass when it takes 28×28 images, and, for a checkpoint, `Trainer::resume` on a
//! tiny training set and one step (whose errors must at least say something).
//!
//! Half the mutations edit the JSON header alone and rewrite its length prefix: otherwise
//! nearly every edit that changes the header's length (a longer number in `hidden`, a new
//! key) is refused at the first 8 bytes and the metadata checks are hardly reached.
#![no_main]

use std::path::Path;

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use mnist_mlp::data::Dataset;
use mnist_mlp::idx::{Images, Labels};
use mnist_mlp::model_file;
use mnist_mlp::train::{Length, Trainer};
use mnist_mlp_fuzz::{bounded_alloc, check_error, scratch_file, CHECKPOINT_EXTRAS};

/// The training set the checkpoint seeds were made on: 4 images of 28×28, labels 0..4.
fn tiny_train_set() -> Dataset {
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28];
    img.extend((0..4 * 784).map(|i| (i % 251) as u8));
    let lbl = vec![0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 3];
    let images = Images::from_vec(Path::new("train-images"), img).unwrap();
    let labels = Labels::from_vec(Path::new("train-labels"), lbl).unwrap();
    Dataset::new(images, labels).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.safetensors");
    // Copies of the tensors and the metadata: a few times the file, never what it claims.
    let limit = 4 * data.len() + (1 << 20);
    let decoded = bounded_alloc(limit, "model_file::decode", || {
        model_file::decode(name, data, &CHECKPOINT_EXTRAS)
    });
    let loaded = match decoded {
        Ok(loaded) => loaded,
        Err(e) => return check_error(&e, name),
    };
    let model = &loaded.model;
    let layout = model.layout();
    assert_eq!(model.params().len(), layout.total());
    assert!(model.params().iter().all(|v| v.is_finite()));
    let n = layout.total();
    for len in [n, n + 1, 0] {
        for tensor in ["adam.m", "adam.v"] {
            if let Err(e) = loaded.f32s(name, tensor, len) {
                check_error(&e, name);
            }
        }
        if let Err(e) = loaded.u32s(name, "data.order", len) {
            check_error(&e, name);
        }
    }
    if layout.input() == 28 * 28 {
        assert_eq!(model.logits_of(&[7; 28 * 28]).len(), layout.classes());
    }
    if loaded.metadata.get("kind").map(String::as_str) == Some("checkpoint") {
        let path = scratch_file("fuzz-checkpoint.safetensors", data);
        let train = tiny_train_set();
        let resumed = Trainer::resume(&path, Some(Length::Iterations(3)), 1, &train)
            .and_then(|mut t| t.step(&train).map(|_| ()));
        if let Err(e) = resumed {
            assert!(!e.to_string().trim().is_empty(), "empty error: {e:?}");
        }
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed & 1 == 0 {
        if let Some(n) = mutate_header(data, size, max_size) {
            return n;
        }
    }
    fuzzer_mutate(data, size, max_size)
});

/// Mutates the safetensors header of `data[..size]` (8-byte little-endian length, then JSON)
/// with libFuzzer's own mutations, keeps the tensor bytes after it, and fixes the length.
/// `None` when `data` does not start with a header that fits, or leaves no room for one
/// (libFuzzer's mutator aborts when given a maximum size of 0).
fn mutate_header(data: &mut [u8], size: usize, max_size: usize) -> Option<usize> {
    let n = usize::try_from(u64::from_le_bytes(data.get(..8)?.try_into().ok()?)).ok()?;
    let end = n.checked_add(8).filter(|&e| e <= size)?;
    let body = data[end..size].to_vec();
    let room = max_size
        .checked_sub(8 + body.len())
        .filter(|&r| r >= n && r > 0)?;
    let mut header = data[8..end].to_vec();
    header.resize(room, 0);
    let new_n = fuzzer_mutate(&mut header, n, room);
    data[..8].copy_from_slice(&(new_n as u64).to_le_bytes());
    data[8..8 + new_n].copy_from_slice(&header[..new_n]);
    data[8 + new_n..8 + new_n + body.len()].copy_from_slice(&body);
    Some(8 + new_n + body.len())
}
