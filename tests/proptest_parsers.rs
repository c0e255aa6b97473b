//! Property tests of every parser of untrusted input, on stable Rust (the fuzz targets in
//! `fuzz/` need nightly): the IDX images and labels parsers (raw and `.gz`), the model loader
//! and the digit image reader. Valid files parse to what was written; any truncation, any
//! flipped byte and any header value gives `Err` with a message naming the file, never a
//! panic (proptest reports a panic as a failure, with the input shrunk). Where the header is
//! random, an oracle says whether the file must be accepted: exactly when its claims are true
//! (files opened from disk may also be refused for going over a size limit), and no single
//! allocation may exceed a small multiple of the file's real length, whatever it claims.
//!
//! `tests/corruption.rs` walks every truncation of a few fixed files with a seeded generator;
//! here the files themselves are random too. Case counts are per test; under
//! `MNIST_MLP_TEST_SCALE=reduced` (emulation) each runs a sixteenth of them. The inputs differ
//! from run to run; a failure prints its shrunk input, and `PROPTEST_RNG_SEED=N` replays a run.

mod common;
#[path = "common/peak_alloc.rs"]
mod peak_alloc;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use common::{gzip, idx_images, idx_labels};
use mnist_mlp::idx::{Images, Labels, IMAGES_MAGIC, LABELS_MAGIC};
use mnist_mlp::image::read_digit;
use mnist_mlp::model::{Arch, Mlp};
use mnist_mlp::model_file;
use mnist_mlp::rng::Rng;
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// `full` cases, or a sixteenth of them at reduced scale (emulation is ≈100× slower).
fn cases(full: u32) -> ProptestConfig {
    let cases = if common::reduced() {
        (full / 16).max(8)
    } else {
        full
    };
    ProptestConfig {
        cases,
        // A failure prints its shrunk input; no regression files written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Requires `r` to be an error whose message is not empty and names `path`.
fn named_err<T>(r: mnist_mlp::Result<T>, path: &Path) -> Result<String, TestCaseError> {
    match r {
        Ok(_) => Err(TestCaseError::fail(format!(
            "{} was accepted; expected an error",
            path.display()
        ))),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !msg.trim().is_empty() && msg.contains(&path.display().to_string()),
                "the error does not name {}: {msg}",
                path.display()
            );
            Ok(msg)
        }
    }
}

/// Like [`named_err`] when `r` is an error; `Ok` values are returned for the caller to check.
fn ok_or_named<T>(r: mnist_mlp::Result<T>, path: &Path) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => named_err::<T>(Err(e), path).map(|_| None),
    }
}

/// Runs the parser call `f` on the file `path`, failing the case if it asks for any single
/// block over `limit` bytes: a small multiple of the file's real length, never its claims.
fn within<R>(limit: usize, path: &Path, f: impl FnOnce() -> R) -> Result<R, TestCaseError> {
    peak_alloc::bounded(limit, path, f).map_err(TestCaseError::fail)
}

fn ok<T>(r: mnist_mlp::Result<T>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("valid input refused: {e}")))
}

/// A scratch file holding `bytes`, in its own directory (dropped with the returned guard).
fn file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// A header dimension: small and plausible, or anything a u32 holds.
fn dim() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..6, Just(u32::MAX), Just(0x8000_0000), any::<u32>()]
}

/// A magic number: one of the two IDX kinds most of the time, else anything.
fn magic() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => Just(IMAGES_MAGIC),
        2 => Just(LABELS_MAGIC),
        1 => any::<u32>(),
    ]
}

/// An IDX file with the given header words and `body` payload bytes.
fn idx_raw(magic: u32, dims: &[u32], body: usize) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..body).map(|i| (i * 7 % 256) as u8));
    v
}

/// Whether an images file with this header and payload length must be accepted.
fn images_claims_true(magic: u32, [n, r, c]: [u32; 3], body: usize) -> bool {
    let payload = u128::from(n) * u128::from(r) * u128::from(c);
    magic == IMAGES_MAGIC && payload == body as u128 && (n == 0 || (r > 0 && c > 0))
}

/// Random header words, with a payload that fits the claim half of the time.
fn idx_header_case() -> impl Strategy<Value = (u32, [u32; 3], usize)> {
    (magic(), [dim(), dim(), dim()], any::<bool>(), 0usize..300).prop_map(
        |(magic, dims, fit, len)| {
            let claim = dims.iter().map(|&d| u128::from(d)).product::<u128>();
            let label_claim = u128::from(dims[0]);
            let body = match (fit, magic) {
                (true, LABELS_MAGIC) if label_claim < 300 => label_claim as usize,
                (true, _) if claim < 300 => claim as usize,
                _ => len,
            };
            (magic, dims, body)
        },
    )
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn idx_raw_valid_files_parse_and_any_truncation_is_an_error(
        (n, r, c) in (0u32..5, 1u32..7, 1u32..7),
        labels in prop::collection::vec(any::<u8>(), 0..40),
        cut in any::<Index>(),
    ) {
        let name = Path::new("prop-images-idx3-ubyte");
        let valid = idx_images(n, r, c, (n * r * c) as usize);
        let images = ok(Images::from_vec(name, valid.clone()))?;
        prop_assert_eq!((images.count(), images.rows(), images.cols()), (n as usize, r as usize, c as usize));
        for i in 0..images.count() {
            let p = images.pixels();
            prop_assert_eq!(images.image(i), &valid[16 + i * p..16 + (i + 1) * p]);
        }
        let short = valid[..cut.index(valid.len())].to_vec();
        named_err(Images::from_vec(name, short), name)?;

        let name = Path::new("prop-labels-idx1-ubyte");
        let valid = idx_labels(labels.len() as u32, &labels);
        let back = ok(Labels::from_vec(name, valid.clone()))?;
        prop_assert_eq!(back.as_slice(), &labels[..]);
        let short = valid[..cut.index(valid.len())].to_vec();
        named_err(Labels::from_vec(name, short), name)?;
    }

    #[test]
    fn idx_raw_a_flipped_header_byte_is_an_error_and_a_flipped_pixel_is_read(
        (n, r, c) in (1u32..4, 1u32..6, 1u32..6),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let name = Path::new("prop-images-idx3-ubyte");
        let mut bytes = idx_images(n, r, c, (n * r * c) as usize);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        if i < 16 {
            named_err(Images::from_vec(name, bytes), name)?;
        } else {
            let images = ok(Images::from_vec(name, bytes.clone()))?;
            let p = images.pixels();
            prop_assert_eq!(images.image((i - 16) / p)[(i - 16) % p], bytes[i]);
        }
        let name = Path::new("prop-labels-idx1-ubyte");
        let mut bytes = idx_labels(n * r, &vec![3; (n * r) as usize]);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        if i < 8 {
            named_err(Labels::from_vec(name, bytes), name)?;
        } else {
            let back = ok(Labels::from_vec(name, bytes.clone()))?;
            prop_assert_eq!(back.as_slice(), &bytes[8..]);
        }
    }

    #[test]
    fn idx_raw_any_header_values_are_accepted_exactly_when_true(
        (magic, dims, body) in idx_header_case(),
    ) {
        let name = Path::new("prop-images-idx3-ubyte");
        let bytes = idx_raw(magic, &dims, body);
        let parsed = within(64 << 10, name, || Images::from_vec(name, bytes))?;
        if images_claims_true(magic, dims, body) {
            prop_assert_eq!(ok(parsed)?.count(), dims[0] as usize);
        } else {
            named_err(parsed, name)?;
        }
        let name = Path::new("prop-labels-idx1-ubyte");
        let bytes = idx_raw(magic, &dims[..1], body);
        let parsed = within(64 << 10, name, || Labels::from_vec(name, bytes))?;
        if magic == LABELS_MAGIC && dims[0] as usize == body {
            prop_assert_eq!(ok(parsed)?.as_slice().len(), body);
        } else {
            named_err(parsed, name)?;
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn idx_gz_valid_files_parse_truncations_fail_and_flips_never_change_the_data(
        (n, r, c) in (0u32..4, 1u32..6, 1u32..6),
        cut in any::<Index>(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let raw = idx_images(n, r, c, (n * r * c) as usize);
        let valid = gzip(&raw);
        let (_dir, path) = file("prop-images-idx3-ubyte.gz", &valid);
        let images = ok(Images::open(&path))?;
        prop_assert_eq!(images.count(), n as usize);
        let read_back = |images: &Images| -> Vec<u8> {
            (0..images.count()).flat_map(|i| images.image(i).to_vec()).collect()
        };
        prop_assert_eq!(read_back(&images), &raw[16..]);

        let (_dir, path) = file("prop-images-idx3-ubyte.gz", &valid[..cut.index(valid.len())]);
        named_err(Images::open(&path), &path)?;

        // A flip in the gzip header's time or OS byte changes nothing; anywhere else the CRC
        // or the decoder notices. Either way, never different pixels.
        let mut flipped = valid.clone();
        flipped[at.index(valid.len())] ^= mask;
        let (_dir, path) = file("prop-images-idx3-ubyte.gz", &flipped);
        if let Some(images) = ok_or_named(Images::open(&path), &path)? {
            prop_assert_eq!(read_back(&images), &raw[16..]);
        }

        let labels: Vec<u8> = (0..n * r).map(|i| (i % 10) as u8).collect();
        let valid = gzip(&idx_labels(labels.len() as u32, &labels));
        let (_dir, path) = file("prop-labels-idx1-ubyte.gz", &valid);
        let back = ok(Labels::open(&path))?;
        prop_assert_eq!(back.as_slice(), &labels[..]);
        let (_dir, path) = file("prop-labels-idx1-ubyte.gz", &valid[..cut.index(valid.len())]);
        named_err(Labels::open(&path), &path)?;
    }

    #[test]
    fn idx_gz_any_header_values_are_accepted_only_when_true(
        (magic, dims, body) in idx_header_case(),
    ) {
        // Files opened from disk are also held to the size limits (image count and side): a
        // true header with an enormous dimension may be refused too, a false one always is.
        let modest = |d: u32| d <= 1000;
        let gz = gzip(&idx_raw(magic, &dims, body));
        let limit = 2 * 1032 * gz.len() + (1 << 20);
        let (_dir, path) = file("prop-images-idx3-ubyte.gz", &gz);
        let opened = within(limit, &path, || Images::open(&path))?;
        if !images_claims_true(magic, dims, body) {
            named_err(opened, &path)?;
        } else if dims.iter().all(|&d| modest(d)) {
            prop_assert_eq!(ok(opened)?.count(), dims[0] as usize);
        } else if let Some(images) = ok_or_named(opened, &path)? {
            prop_assert_eq!(images.count(), dims[0] as usize);
        }
        let gz = gzip(&idx_raw(magic, &dims[..1], body));
        let limit = 2 * 1032 * gz.len() + (1 << 20);
        let (_dir, path) = file("prop-labels-idx1-ubyte.gz", &gz);
        let opened = within(limit, &path, || Labels::open(&path))?;
        if magic != LABELS_MAGIC || dims[0] as usize != body {
            named_err(opened, &path)?;
        } else {
            prop_assert_eq!(ok(opened)?.as_slice().len(), body);
        }
    }
}

/// A small network of random shape and weights.
fn small_model() -> impl Strategy<Value = Mlp> {
    (
        any::<bool>(),
        1usize..8,
        prop::collection::vec(1usize..6, 0..3),
        1usize..5,
        any::<u64>(),
    )
        .prop_map(|(relu, input, hidden, classes, seed)| {
            let arch = if relu { Arch::Relu } else { Arch::Seed };
            let mut sizes = vec![input];
            sizes.extend(hidden);
            sizes.push(classes);
            Mlp::new(arch, &sizes, &mut Rng::new(seed)).unwrap()
        })
}

fn encode(m: &Mlp) -> Vec<u8> {
    model_file::encode(m, "model", &[("seed", "1".into())], &[]).unwrap()
}

/// The tensors of an encoded model, in file order: name, dtype, shape, bytes.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn tensors(bytes: &[u8]) -> Tensors {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut ts: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    ts.sort_by(|a, b| a.0.cmp(&b.0));
    ts
}

/// A safetensors file written by hand, so every header field can lie: per tensor its name,
/// dtype name, shape and data offsets; `data` is the whole data section.
fn safetensors_by_hand(
    meta: &[(&str, String)],
    entries: &[(String, String, Vec<u64>, [u64; 2])],
    data: &[u8],
) -> Vec<u8> {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut fields = vec![format!(
        "\"__metadata__\":{{{}}}",
        meta.iter()
            .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
            .collect::<Vec<_>>()
            .join(",")
    )];
    for (name, dtype, shape, [begin, end]) in entries {
        let shape: Vec<String> = shape.iter().map(u64::to_string).collect();
        fields.push(format!(
            "{}:{{\"dtype\":{},\"shape\":[{}],\"data_offsets\":[{begin},{end}]}}",
            quote(name),
            quote(dtype),
            shape.join(",")
        ));
    }
    let header = format!("{{{}}}", fields.join(","));
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A metadata value: the true one, or a plausible or absurd lie.
fn meta_value(truth: String) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(truth),
        1 => (0usize..10).prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![
            "", "-1", "0", "1000000", "3000000", "4294967296", "18446744073709551615",
            "99999999999999999999999",
            "1e3", " 3", "x", "3,", ",", "100000,100000", "65536,65536,65536",
        ])
        .prop_map(String::from),
    ]
}

/// A tensor's header entry: the true dtype, shape and offsets, or a lie in one of them.
fn tensor_claim(
    dtype: &str,
    shape: Vec<u64>,
    offsets: [u64; 2],
) -> impl Strategy<Value = (String, Vec<u64>, [u64; 2])> {
    let truth = (dtype.to_string(), shape.clone(), offsets);
    let big = prop_oneof![
        0u64..40,
        Just(u64::from(u32::MAX)),
        Just(1 << 40),
        Just(u64::MAX)
    ];
    prop_oneof![
        6 => Just(truth.clone()),
        1 => prop::sample::select(vec!["F16", "F64", "I32", "U32", "U8", "BOOL", "Q4"])
            .prop_map({ let t = truth.clone(); move |d| (d.to_string(), t.1.clone(), t.2) }),
        1 => prop::collection::vec(big.clone(), 0..4)
            .prop_map({ let t = truth.clone(); move |s| (t.0.clone(), s, t.2) }),
        1 => (big.clone(), big)
            .prop_map({ let t = truth; move |(a, b)| (t.0.clone(), t.1.clone(), [a, b]) }),
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn model_valid_files_load_and_any_truncation_is_an_error(
        m in small_model(),
        cut in any::<Index>(),
    ) {
        let name = Path::new("prop.safetensors");
        let bytes = encode(&m);
        let back = ok(model_file::decode(name, &bytes, &[]))?.model;
        prop_assert_eq!(back.params(), m.params());
        prop_assert_eq!(back.layout(), m.layout());
        prop_assert_eq!(back.arch(), m.arch());
        named_err(model_file::decode(name, &bytes[..cut.index(bytes.len())], &[]), name)?;
    }

    #[test]
    fn model_a_flipped_byte_never_panics_nor_changes_the_network_shape(
        m in small_model(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let name = Path::new("prop.safetensors");
        let mut bytes = encode(&m);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        if let Some(back) = ok_or_named(model_file::decode(name, &bytes, &[]), name)? {
            // A flip in a weight gives another weight (finite, or refused); the JSON header
            // cannot be changed into another consistent network by one byte.
            prop_assert_eq!(back.model.layout(), m.layout());
            prop_assert!(back.model.params().iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn model_any_metadata_values_are_accepted_exactly_when_true(
        (m, format, arch, input, hidden, classes) in small_model().prop_flat_map(|m| {
            let sizes = m.layout().sizes().to_vec();
            let hidden = model_file::join(&sizes[1..sizes.len() - 1]);
            (
                Just(m.clone()),
                prop_oneof![3 => Just(model_file::FORMAT.to_string()), 1 => Just("mnist-mlp/2".to_string())],
                prop::sample::select(vec!["seed", "relu", "gelu", ""]),
                meta_value(sizes[0].to_string()),
                meta_value(hidden),
                meta_value(sizes[sizes.len() - 1].to_string()),
            )
        }),
    ) {
        let name = Path::new("prop.safetensors");
        let ts = tensors(&encode(&m));
        let meta: std::collections::HashMap<String, String> = [
            ("format", format.clone()),
            ("arch", arch.to_string()),
            ("input", input.clone()),
            ("hidden", hidden.clone()),
            ("classes", classes.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let views: Vec<(String, TensorView)> = ts
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::tensor::serialize(views, &Some(meta)).unwrap();

        let sizes = m.layout().sizes();
        let number = |s: &str| s.trim().parse::<usize>().ok();
        let widths: Option<Vec<usize>> = if hidden.trim().is_empty() {
            Some(Vec::new())
        } else {
            hidden.split(',').map(number).collect()
        };
        let truth = format == model_file::FORMAT
            && (arch == "seed" || arch == "relu")
            && number(&input) == Some(sizes[0])
            && number(&classes) == Some(sizes[sizes.len() - 1])
            && widths.as_deref() == Some(&sizes[1..sizes.len() - 1]);
        let limit = 4 * bytes.len() + (1 << 20);
        let decoded = within(limit, name, || model_file::decode(name, &bytes, &[]))?;
        if truth {
            let back = ok(decoded)?;
            prop_assert_eq!(back.model.params(), m.params());
        } else {
            named_err(decoded, name)?;
        }
    }

    #[test]
    fn model_any_tensor_header_values_are_accepted_exactly_when_true(
        (m, claims) in small_model().prop_flat_map(|m| {
            let mut offset = 0u64;
            let claims: Vec<_> = tensors(&encode(&m))
                .into_iter()
                .map(|(_, _, shape, bytes)| {
                    let range = [offset, offset + bytes.len() as u64];
                    offset = range[1];
                    tensor_claim("F32", shape.iter().map(|&d| d as u64).collect(), range)
                })
                .collect();
            (Just(m), claims)
        }),
    ) {
        let name = Path::new("prop.safetensors");
        let ts = tensors(&encode(&m));
        let sizes = m.layout().sizes();
        let meta = [
            ("format", model_file::FORMAT.to_string()),
            ("arch", m.arch().name().to_string()),
            ("input", sizes[0].to_string()),
            ("hidden", model_file::join(&sizes[1..sizes.len() - 1])),
            ("classes", sizes[sizes.len() - 1].to_string()),
        ];
        let mut data = Vec::new();
        let mut entries = Vec::new();
        let mut truth = true;
        let mut offset = 0u64;
        for ((tname, _, shape, bytes), (dtype, claimed_shape, offsets)) in ts.iter().zip(claims) {
            let real = [offset, offset + bytes.len() as u64];
            offset = real[1];
            let real_shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            truth &= dtype == "F32" && claimed_shape == real_shape && offsets == real;
            data.extend_from_slice(bytes);
            entries.push((tname.clone(), dtype, claimed_shape, offsets));
        }
        let bytes = safetensors_by_hand(&meta, &entries, &data);
        let limit = 4 * bytes.len() + (1 << 20);
        let decoded = within(limit, name, || model_file::decode(name, &bytes, &[]))?;
        if truth {
            let back = ok(decoded)?;
            prop_assert_eq!(back.model.params(), m.params());
        } else {
            named_err(decoded, name)?;
        }
    }
}

/// 784 random pixels.
fn pixels() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 784)
}

fn pgm(kind: u8, w: &str, h: &str, max: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("P{}\n# a digit\n{w} {h}\n{max}\n", kind as char).into_bytes();
    v.extend_from_slice(body);
    v
}

fn p2_body(px: &[u8]) -> Vec<u8> {
    let mut s = px.iter().map(u8::to_string).collect::<Vec<_>>().join(" ");
    s.push('\n');
    s.into_bytes()
}

fn png_file(color: png::ColorType, px: &[u8]) -> Vec<u8> {
    let data: Vec<u8> = match color {
        png::ColorType::Rgb => px.iter().flat_map(|&p| [p, p, p]).collect(),
        png::ColorType::Rgba => px.iter().flat_map(|&p| [p, p, p, 255]).collect(),
        _ => px.to_vec(),
    };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 28, 28);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&data).unwrap();
    out
}

fn color() -> impl Strategy<Value = png::ColorType> {
    prop::sample::select(vec![
        png::ColorType::Grayscale,
        png::ColorType::Rgb,
        png::ColorType::Rgba,
    ])
}

/// A PGM header number: the true one, or a plausible or absurd lie.
fn pgm_number(truth: u64) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(truth.to_string()),
        1 => (0u64..70000).prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX])
            .prop_map(|v| v.to_string()),
        1 => Just("99999999999999999999999".to_string()),
    ]
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn image_valid_files_read_and_truncations_never_give_wrong_pixels(
        px in pixels(),
        color in color(),
        cut in any::<Index>(),
    ) {
        let p5 = pgm(b'5', "28", "28", "255", &px);
        let p2 = pgm(b'2', "28", "28", "255", &p2_body(&px));
        let png = png_file(color, &px);
        for valid in [&p5, &p2, &png] {
            let (_dir, path) = file("prop-digit", valid);
            prop_assert_eq!(&ok(read_digit(&path, false))?, &px);
            let inverted: Vec<u8> = px.iter().map(|&p| 255 - p).collect();
            prop_assert_eq!(ok(read_digit(&path, true))?, inverted);
        }
        let (_dir, path) = file("prop-digit", &p5[..cut.index(p5.len())]);
        named_err(read_digit(&path, false), &path)?;
        // An ASCII file cut inside its last number reads that number's first digits; a PNG cut
        // after its image data may still decode. Neither may change any other pixel.
        let (_dir, path) = file("prop-digit", &p2[..cut.index(p2.len())]);
        if let Some(got) = ok_or_named(read_digit(&path, false), &path)? {
            prop_assert_eq!(&got[..783], &px[..783]);
        }
        let (_dir, path) = file("prop-digit", &png[..cut.index(png.len())]);
        if let Some(got) = ok_or_named(read_digit(&path, false), &path)? {
            prop_assert_eq!(got, px);
        }
    }

    #[test]
    fn image_a_flipped_byte_gives_a_digit_or_a_named_error(
        px in pixels(),
        color in color(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        for mut bytes in [pgm(b'5', "28", "28", "255", &px), pgm(b'2', "28", "28", "255", &p2_body(&px)), png_file(color, &px)] {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
            let (_dir, path) = file("prop-digit", &bytes);
            if let Some(got) = ok_or_named(read_digit(&path, false), &path)? {
                prop_assert_eq!(got.len(), 784);
            }
        }
    }

    #[test]
    fn image_any_header_values_are_accepted_exactly_when_true(
        px in pixels(),
        (w, h, max) in (pgm_number(28), pgm_number(28), pgm_number(255)),
        body_len in prop_oneof![Just(784usize), 0usize..1600],
        (png_w, png_h) in (prop_oneof![3 => Just(28u32), 1 => any::<u32>()], prop_oneof![3 => Just(28u32), 1 => any::<u32>()]),
        (depth, color_type) in (prop::sample::select(vec![1u8, 2, 4, 8, 16, 3, 0, 255]), prop::sample::select(vec![0u8, 2, 3, 4, 6, 1, 7, 255])),
    ) {
        // PGM, binary: accepted exactly when 28×28, maxval 1..=65535 and enough pixels.
        let body: Vec<u8> = px.iter().cycle().take(body_len).copied().collect();
        let pgm_file = pgm(b'5', &w, &h, &max, &body);
        let (_dir, path) = file("prop-digit", &pgm_file);
        let read = within(2 * pgm_file.len() + (1 << 20), &path, || read_digit(&path, false))?;
        let maxval = max.parse::<u64>().ok();
        let need = if maxval.is_some_and(|m| m > 255) { 2 * 784 } else { 784 };
        if w == "28" && h == "28" && maxval.is_some_and(|m| (1..=65535).contains(&m)) && body_len >= need {
            prop_assert_eq!(ok(read)?.len(), 784);
        } else {
            named_err(read, &path)?;
        }

        // PNG, any IHDR width and height (with a valid CRC): accepted exactly when 28×28.
        let mut png = png_file(png::ColorType::Grayscale, &px);
        png[16..20].copy_from_slice(&png_w.to_be_bytes());
        png[20..24].copy_from_slice(&png_h.to_be_bytes());
        fix_ihdr_crc(&mut png);
        let (_dir, path) = file("prop-digit", &png);
        let read = within(2 * png.len() + (1 << 20), &path, || read_digit(&path, false))?;
        if (png_w, png_h) == (28, 28) {
            prop_assert_eq!(&ok(read)?, &px);
        } else {
            named_err(read, &path)?;
        }
        // Any bit depth and colour type: a digit or a named error.
        png[16..20].copy_from_slice(&28u32.to_be_bytes());
        png[20..24].copy_from_slice(&28u32.to_be_bytes());
        png[24] = depth;
        png[25] = color_type;
        fix_ihdr_crc(&mut png);
        let (_dir, path) = file("prop-digit", &png);
        if let Some(got) = ok_or_named(read_digit(&path, false), &path)? {
            prop_assert_eq!(got.len(), 784);
        }
    }
}

/// Recomputes the CRC of the IHDR chunk (bytes 12..29 of a PNG file).
fn fix_ihdr_crc(png: &mut [u8]) {
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
}
