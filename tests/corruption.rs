//! Random corruption of every parser's input never panics: each truncation, flipped byte or
//! extreme header value of an IDX file (raw and .gz), a model file and a PGM/PNG image gives
//! `Ok` or an `Err` with a message. Seeded, so a failure reproduces; a panic names the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mnist_mlp::idx::{Images, Labels};
use mnist_mlp::model::{Arch, Mlp};
use mnist_mlp::rng::Rng;
use mnist_mlp::{image, model_file};

/// Runs `parse` on `bytes`; a panic fails the test with a description of the input.
fn no_panic(what: &str, bytes: &[u8], parse: &dyn Fn(&[u8]) -> Result<(), String>) {
    match catch_unwind(AssertUnwindSafe(|| parse(bytes))) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => assert!(!msg.is_empty(), "{what}: empty error message"),
        Err(_) => panic!(
            "{what}: parser panicked on {} bytes: {:02x?}",
            bytes.len(),
            &bytes[..bytes.len().min(64)]
        ),
    }
}

/// Every prefix, `flips` random single-byte changes and `flips` random multi-byte smears.
fn corruptions(valid: &[u8], flips: usize, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = (0..valid.len())
        .map(|n| (format!("truncated to {n}"), valid[..n].to_vec()))
        .collect();
    for k in 0..flips {
        let mut v = valid.to_vec();
        let i = rng.below(v.len() as u64) as usize;
        v[i] = rng.below(256) as u8;
        out.push((format!("flip {k} at {i}"), v));
        let mut v = valid.to_vec();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(v.len() as u64) as usize;
            v[i] ^= 1 << rng.below(8);
        }
        out.push((format!("smear {k}"), v));
    }
    out
}

fn idx_images(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..body).map(|i| i as u8));
    v
}

#[test]
fn idx_parsers_never_panic() {
    let mut rng = Rng::new(71);
    let name = Path::new("fuzz");
    let parse_images = |b: &[u8]| {
        Images::from_vec(name, b.to_vec())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let parse_labels = |b: &[u8]| {
        Labels::from_vec(name, b.to_vec())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let valid = idx_images(3, 4, 5, 60);
    for (what, bytes) in corruptions(&valid, 2000, &mut rng) {
        no_panic(&what, &bytes, &parse_images);
        no_panic(&what, &bytes, &parse_labels);
    }
    for count in [0, 1, 3, 0x7fff_ffff, u32::MAX] {
        for side in [0, 1, 5, 0xffff, u32::MAX] {
            no_panic(
                &format!("{count} × {side}"),
                &idx_images(count, side, side, 60),
                &parse_images,
            );
        }
    }
}

#[test]
fn gzip_idx_files_never_panic() {
    let mut rng = Rng::new(72);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &idx_images(3, 4, 5, 60)).unwrap();
    let valid = enc.finish().unwrap();
    let parse = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        Images::open(&path).map(|_| ()).map_err(|e| e.to_string())
    };
    for (what, bytes) in corruptions(&valid, 300, &mut rng) {
        no_panic(&what, &bytes, &parse);
    }
}

#[test]
fn model_loader_never_panics() {
    let mut rng = Rng::new(73);
    let model = Mlp::new(Arch::Relu, &[6, 4, 3], &mut Rng::new(1)).unwrap();
    let valid = model_file::encode(&model, "model", &[], &[]).unwrap();
    let parse = |b: &[u8]| {
        model_file::decode(Path::new("fuzz"), b, &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for (what, bytes) in corruptions(&valid, 2000, &mut rng) {
        no_panic(&what, &bytes, &parse);
    }
}

#[test]
fn image_reader_never_panics() {
    let mut rng = Rng::new(74);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let parse = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        image::read_digit(&path, false)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let mut pgm = b"P5\n28 28\n255\n".to_vec();
    pgm.extend((0..784).map(|i| i as u8));
    let ascii = format!(
        "P2 28 28 255 {}",
        (0..784)
            .map(|i| (i % 256).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 28, 28);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(&[200; 28 * 28 * 4])
            .unwrap();
    }
    for valid in [pgm, ascii.into_bytes(), png] {
        for (what, bytes) in corruptions(&valid, 300, &mut rng) {
            no_panic(&what, &bytes, &parse);
        }
    }
}
