//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`: small valid files
//! of each kind, made with the library's own writers where it has them.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds` (any toolchain). Model
//! files differ from run to run only in the order of their JSON metadata.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mnist_mlp::data::Dataset;
use mnist_mlp::idx::{Images, Labels};
use mnist_mlp::model::{Arch, Mlp};
use mnist_mlp::model_file;
use mnist_mlp::rng::Rng;
use mnist_mlp::train::{Length, TrainConfig, Trainer};

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..count * rows * cols).map(|i| (i % 251) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn png(
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 28, 28);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(p) = palette {
        enc.set_palette(p.to_vec());
    }
    enc.write_header().unwrap().write_image_data(data).unwrap();
    out
}

/// A 28×28 digit-like ramp: a bright square on black.
fn digit() -> Vec<u8> {
    (0..784)
        .map(|i| {
            let (r, c) = (i / 28, i % 28);
            if (8..20).contains(&r) && (10..18).contains(&c) {
                (200 + r) as u8
            } else {
                0
            }
        })
        .collect()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir: PathBuf = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        println!("{target}/{name}: {} bytes", bytes.len());
    };

    // IDX, raw and gzipped.
    let tiny = idx_images(3, 4, 5);
    let two = idx_images(2, 28, 28);
    let ten: Vec<u8> = (0..10).collect();
    write("idx_images", "3-images-4x5", &tiny);
    write("idx_images", "2-images-28x28", &two);
    write("idx_images", "0-images", &idx_images(0, 28, 28));
    write("idx_labels", "3-labels", &idx_labels(&[7, 2, 1]));
    write("idx_labels", "10-labels", &idx_labels(&ten));
    write("idx_labels", "0-labels", &idx_labels(&[]));
    write("idx_gz", "3-images-4x5.gz", &gzip(&tiny));
    write("idx_gz", "2-images-28x28.gz", &gzip(&two));
    write("idx_gz", "10-labels.gz", &gzip(&idx_labels(&ten)));

    // Models: a tiny ReLU network, a tutorial-style one without hidden layers, a 28×28 one.
    let facts = [("seed", "1".to_string())];
    let models: [(&str, Arch, &[usize]); 3] = [
        ("relu-6-4-3.safetensors", Arch::Relu, &[6, 4, 3]),
        ("seed-5-3.safetensors", Arch::Seed, &[5, 3]),
        ("relu-784-2-10.safetensors", Arch::Relu, &[784, 2, 10]),
    ];
    for (name, arch, sizes) in models {
        let m = Mlp::new(arch, sizes, &mut Rng::new(1)).unwrap();
        let bytes = model_file::encode(&m, "model", &facts, &[]).unwrap();
        write("model_file", name, &bytes);
    }
    // A checkpoint after one step on the fuzz target's training set (4 images, labels 0..4).
    let train = Dataset::new(
        Images::from_vec(Path::new("train-images"), idx_images(4, 28, 28)).unwrap(),
        Labels::from_vec(Path::new("train-labels"), idx_labels(&[0, 1, 2, 3])).unwrap(),
    )
    .unwrap();
    let cfg = TrainConfig {
        arch: Arch::Relu,
        hidden: vec![1],
        length: Length::Iterations(3),
        batch: 2,
        log_every: 1,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&cfg, &train).unwrap();
    t.step(&train).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt.safetensors");
    t.save_checkpoint(&ckpt).unwrap();
    write(
        "model_file",
        "checkpoint-784-1-10.safetensors",
        &fs::read(&ckpt).unwrap(),
    );

    // Digit images: PGM binary (8 and 16 bit) and ASCII, PNG gray, RGBA, 16-bit and palette.
    let px = digit();
    let mut p5 = b"P5\n# seed\n28 28\n255\n".to_vec();
    p5.extend_from_slice(&px);
    write("image", "digit.p5.pgm", &p5);
    let mut p5_16 = b"P5 28 28 65535\n".to_vec();
    p5_16.extend(px.iter().flat_map(|&p| (u16::from(p) * 257).to_be_bytes()));
    write("image", "digit16.p5.pgm", &p5_16);
    let ascii: Vec<String> = px.iter().map(u8::to_string).collect();
    write(
        "image",
        "digit.p2.pgm",
        format!("P2\n28 28\n255\n{}\n", ascii.join(" ")).as_bytes(),
    );
    use png::{BitDepth, ColorType};
    write(
        "image",
        "gray.png",
        &png(ColorType::Grayscale, BitDepth::Eight, &px, None),
    );
    let rgba: Vec<u8> = px.iter().flat_map(|&p| [p, p, p, 255]).collect();
    write(
        "image",
        "rgba.png",
        &png(ColorType::Rgba, BitDepth::Eight, &rgba, None),
    );
    let g16: Vec<u8> = px.iter().flat_map(|&p| [p, p]).collect();
    write(
        "image",
        "gray16.png",
        &png(ColorType::Grayscale, BitDepth::Sixteen, &g16, None),
    );
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    write(
        "image",
        "palette.png",
        &png(ColorType::Indexed, BitDepth::Eight, &px, Some(&palette)),
    );
}
