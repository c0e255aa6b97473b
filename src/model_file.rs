//! Model and checkpoint files: safetensors, with tensors in PyTorch's `nn.Linear` layout.
//!
//! A model file holds `fc1.weight` `(O, I)`, `fc1.bias` `(O)`, … `fcL.bias` as little-endian
//! f32, and string metadata: `format` = `mnist-mlp/1`, `kind` (`model` or `checkpoint`),
//! `arch`, `hidden` (`512,256,128`), `input`, `classes`, plus facts about the run that made it.
//! `torch.nn.Sequential` of `Linear` layers or numpy load it with no conversion. A checkpoint
//! is a model file with the optimizer and data-order state added (see the train module).
//!
//! Loading trusts nothing: the metadata must be present and consistent, every tensor present
//! with the right dtype and shape, nothing unexpected, every value finite. Saving refuses
//! non-finite values, and every write is atomic (see [`crate::fsio`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView, View};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::fsio::{read_bounded, sniff, write_atomic_with, ReadError};
use crate::limits::{LimitKind, Limits};
use crate::model::{Arch, Layout, Mlp, MAX_PARAMS};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "mnist-mlp/1";

/// Largest file the loader reads: a network of [`MAX_PARAMS`] with two Adam moments, plus room
/// for the data order and the header. Anything larger is not one of ours.
/// [`Limits::max_file_bytes`] lowers this further (by default to 512 MiB).
pub const MAX_FILE_BYTES: u64 = (MAX_PARAMS as u64) * 4 * 3 + (64 << 20);

/// Largest safetensors header accepted. Ours hold a few tensor entries and a dozen metadata
/// keys (well under 4 KiB); this bounds the JSON the parser would build from a crafted one,
/// whatever number of tensors it lists.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// A tensor beyond the network's own (a checkpoint's state).
#[derive(Clone, Debug, PartialEq)]
pub struct Extra {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes.
    pub bytes: Vec<u8>,
}

/// What a file held: the network, its metadata and any extra tensors the caller allowed.
#[derive(Debug)]
pub struct Loaded {
    /// The network.
    pub model: Mlp,
    /// All metadata.
    pub metadata: HashMap<String, String>,
    /// Extra tensors by name.
    pub extras: HashMap<String, Extra>,
}

/// Names of layer `l`'s weight and bias (`fc{l+1}.weight`, `fc{l+1}.bias`).
pub fn tensor_names(l: usize) -> (String, String) {
    (format!("fc{}.weight", l + 1), format!("fc{}.bias", l + 1))
}

/// An extra tensor to save (a checkpoint's state), borrowed from where it lives: saving copies
/// nothing, so a checkpoint costs no memory beyond the run's own.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    /// A 1-D f32 tensor.
    F32(&'a [f32]),
    /// A 1-D u32 tensor.
    U32(&'a [u32]),
}

impl Data<'_> {
    /// Number of elements (of 4 bytes each).
    fn elements(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::U32(v) => v.len(),
        }
    }
}

/// A tensor on its way to the file, borrowed from where it lives.
struct TensorOut<'a> {
    data: Data<'a>,
    shape: Vec<usize>,
}

impl View for &TensorOut<'_> {
    fn dtype(&self) -> Dtype {
        match self.data {
            Data::F32(_) => Dtype::F32,
            Data::U32(_) => Dtype::U32,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.data {
            Data::F32(v) => le_bytes(v),
            Data::U32(v) => le_bytes(v),
        }
    }

    fn data_len(&self) -> usize {
        self.data.elements() * 4
    }
}

/// A file's tensors by name, in the order they are written.
type Tensors<'a> = Vec<(String, TensorOut<'a>)>;

/// The 4-byte element types of a file.
trait Word: Copy {
    fn le(self) -> [u8; 4];
}

impl Word for f32 {
    fn le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

impl Word for u32 {
    fn le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

/// `values` as the file stores them, little-endian: the memory itself on a little-endian
/// machine (every target of this crate), a converted copy elsewhere.
fn le_bytes<T: Word>(values: &[T]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: `T` is f32 or u32 (`Word` is private): 4 bytes, no padding, every byte
        // initialized; u8 needs no alignment; the length is the slice's own size in bytes, and
        // the borrow keeps `values` alive and unchanged. On a little-endian target these bytes
        // are exactly the little-endian encoding.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        })
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.le()).collect())
    }
}

/// The tensors and metadata of a file holding `model` (the architecture keys are added here),
/// `facts` and `extras`, or an error if the model is not finite.
fn contents<'a>(
    model: &'a Mlp,
    kind: &str,
    facts: &[(&str, String)],
    extras: &[(&str, Data<'a>)],
) -> Result<(Tensors<'a>, BTreeMap<String, String>)> {
    if let Some(i) = model.params().iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite {
            what: format!("parameter {i} is {}", model.params()[i]),
        });
    }
    let layout = model.layout();
    let sizes = layout.sizes();
    let mut meta: BTreeMap<String, String> = facts
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("kind".into(), kind.into());
    meta.insert("arch".into(), model.arch().name().into());
    meta.insert("hidden".into(), join(&sizes[1..sizes.len() - 1]));
    meta.insert("input".into(), layout.input().to_string());
    meta.insert("classes".into(), layout.classes().to_string());

    let mut tensors = Vec::new();
    let mut add = |name: String, data, shape| tensors.push((name, TensorOut { data, shape }));
    for l in 0..layout.layers() {
        let (i, o) = layout.dims(l);
        let (w, b) = layout.split(model.params(), l);
        let (wn, bn) = tensor_names(l);
        add(wn, Data::F32(w), vec![o, i]);
        add(bn, Data::F32(b), vec![o]);
    }
    for &(name, data) in extras {
        add(name.to_string(), data, vec![data.elements()]);
    }
    Ok((tensors, meta))
}

/// The safetensors header of `tensors` and `meta`, length prefix included: a JSON object
/// whose keys (`__metadata__` and the tensor names) and metadata keys are in sorted order
/// (serde_json's map is ordered), padded with spaces to a multiple of 8 bytes as the
/// safetensors crate pads it. The same model and facts give the same bytes, run after run.
fn header(tensors: &Tensors, meta: &BTreeMap<String, String>) -> Vec<u8> {
    use serde_json::{json, Map, Value};
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!(meta));
    let mut offset = 0;
    for (name, t) in tensors {
        let end = offset + t.data_len();
        let dtype = match t.data {
            Data::F32(_) => "F32",
            Data::U32(_) => "U32",
        };
        let entry = json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, end]});
        map.insert(name.clone(), entry);
        offset = end;
    }
    let mut json = Value::Object(map).to_string().into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes
}

/// Writes the file: the header, then each tensor's bytes in the header's offset order.
fn write_file(
    out: &mut impl Write,
    tensors: &Tensors,
    meta: &BTreeMap<String, String>,
) -> io::Result<()> {
    out.write_all(&header(tensors, meta))?;
    for (_, t) in tensors {
        out.write_all(&t.data())?;
    }
    Ok(())
}

/// Serializes `model` with `metadata` (the architecture keys are added here) and `extras`, in
/// memory. [`save`] writes the same bytes to a file without building them.
pub fn encode(
    model: &Mlp,
    kind: &str,
    facts: &[(&str, String)],
    extras: &[(&str, Data)],
) -> Result<Vec<u8>> {
    let (tensors, meta) = contents(model, kind, facts, extras)?;
    let mut bytes = Vec::new();
    write_file(&mut bytes, &tensors, &meta).expect("writing to a Vec cannot fail");
    Ok(bytes)
}

/// Writes `model`, `facts` and `extras` to `path` as a file of `kind`, atomically. Each tensor
/// is written from where it lives, one after the other: the only memory used is a write
/// buffer. The bytes depend only on the contents (see [`header`]).
pub fn save(
    path: &Path,
    model: &Mlp,
    kind: &str,
    facts: &[(&str, String)],
    extras: &[(&str, Data)],
) -> Result<()> {
    let (tensors, meta) = contents(model, kind, facts, extras)?;
    write_atomic_with(path, |tmp| {
        let mut out = BufWriter::new(File::create(tmp)?);
        write_file(&mut out, &tensors, &meta)?;
        out.flush()
    })
}

/// Saves a trained network to `path` (kind `model`), atomically.
pub fn save_model(path: &Path, model: &Mlp, facts: &[(&str, String)]) -> Result<()> {
    save(path, model, "model", facts, &[])
}

/// Loads a network from `path` within the default [`Limits`]. `extras` lists the extra
/// tensors allowed (and kept); any other tensor is an error.
pub fn load(path: &Path, extras: &[&str]) -> Result<Loaded> {
    load_with(path, extras, &Limits::default())
}

/// [`load`] within `limits`: a file larger than [`Limits::max_file_bytes`] is refused before
/// it is read.
pub fn load_with(path: &Path, extras: &[&str], limits: &Limits) -> Result<Loaded> {
    load_as(path, extras, limits, None)
}

/// Why a model file could not be read, worded for a model file.
fn read_error(path: &Path, e: ReadError, limits: &Limits) -> Error {
    match e {
        ReadError::NotFound => Error::model(path, "no such file"),
        ReadError::NotRegular { dir: true } => {
            Error::model(path, "is a directory, not a model file")
        }
        ReadError::NotRegular { dir: false } => Error::model(path, "not a regular file"),
        ReadError::TooLarge { bytes } if bytes > MAX_FILE_BYTES => Error::model(
            path,
            format!("{bytes} bytes is larger than any mnist-mlp model ({MAX_FILE_BYTES} at most)"),
        ),
        ReadError::TooLarge { bytes } => Error::limit(
            path,
            format!("the model file is {bytes} bytes"),
            LimitKind::FileBytes,
            limits.max_file_bytes,
        ),
        ReadError::Io(e) => Error::io(path, e),
    }
}

/// The architecture and layer sizes a file's metadata gives.
fn described(path: &Path, metadata: &HashMap<String, String>) -> Result<(Arch, Vec<usize>)> {
    let get = |key: &str| {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::model(path, format!("metadata key '{key}' is missing")))
    };
    let format = get("format")?;
    if format == crate::quant::file::FORMAT {
        return Err(Error::model(
            path,
            "is an int8 model (from `mnist-mlp quantize`), which only eval, predict and export \
             take; hint: train from the float32 model it was quantized from",
        ));
    }
    if format != FORMAT {
        return Err(Error::model(
            path,
            format!("format is '{format}', expected '{FORMAT}'"),
        ));
    }
    let arch: Arch = get("arch")?
        .parse()
        .map_err(|e: String| Error::model(path, e))?;
    let number = |key: &str| -> Result<usize> {
        let v = get(key)?;
        v.trim().parse().map_err(|_| {
            Error::model(
                path,
                format!("metadata '{key}' = '{v}' is not a whole number"),
            )
        })
    };
    let hidden_s = get("hidden")?;
    let hidden = if hidden_s.trim().is_empty() {
        Vec::new()
    } else {
        hidden_s
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::model(
                    path,
                    format!("metadata 'hidden' = '{hidden_s}' is not a list of widths"),
                )
            })?
    };
    let mut sizes = vec![number("input")?];
    sizes.extend(hidden);
    sizes.push(number("classes")?);
    Ok((arch, sizes))
}

/// The layer sizes of a file without metadata, from the shapes of `fc1.weight`, `fc2.weight`,
/// … (each `[out, in]`); the tensors themselves are checked against them by the caller.
fn plain(path: &Path, st: &SafeTensors, arch: Option<Arch>) -> Result<(Arch, Vec<usize>)> {
    let mut sizes = Vec::new();
    for l in 0..st.names().len() {
        let (wn, _) = tensor_names(l);
        let Ok(t) = st.tensor(&wn) else { break };
        match *t.shape() {
            [o, i] => {
                if l == 0 {
                    sizes.push(i);
                }
                sizes.push(o);
            }
            ref shape => {
                return Err(Error::model(
                    path,
                    format!("tensor {wn} has shape {shape:?}, expected [out, in]"),
                ))
            }
        }
    }
    if sizes.is_empty() {
        return Err(Error::model(
            path,
            "has no mnist-mlp metadata and no fc1.weight: not a model file (a network's \
             tensors are fc1.weight [out, in], fc1.bias [out], fc2.weight, …)",
        ));
    }
    let arch = arch.ok_or_else(|| {
        Error::model(
            path,
            format!(
                "has no mnist-mlp metadata (a plain safetensors file, e.g. from PyTorch's \
                 save_file): its tensors make a {} network, but not whether it is seed or \
                 relu; say which with --arch",
                join(&sizes)
            ),
        )
    })?;
    Ok((arch, sizes))
}

/// [`load`] from bytes already in memory; `path` names them in errors.
pub fn decode(path: &Path, bytes: &[u8], extras: &[&str]) -> Result<Loaded> {
    decode_as(path, bytes, extras, None)
}

/// [`load_with`] for a file that may lack mnist-mlp's metadata: a plain safetensors file of
/// `fc1.weight`, `fc1.bias`, … (PyTorch's `save_file(model.state_dict(), f)`, numpy's
/// `save_file` without metadata, either with no metadata or with only `format` = `pt`) is
/// read as a network of the shapes it holds, with `arch`,
/// which such a file cannot tell (seed and relu have the same shapes). A file with our
/// metadata is read by it, and `arch` is not used.
pub fn load_as(
    path: &Path,
    extras: &[&str],
    limits: &Limits,
    arch: Option<Arch>,
) -> Result<Loaded> {
    let max = limits.max_file_bytes.min(MAX_FILE_BYTES);
    let bytes = read_bounded(path, max).map_err(|e| read_error(path, e, limits))?;
    decode_as(path, &bytes, extras, arch)
}

/// [`decode`] with [`load_as`]'s reading of a file without metadata.
pub fn decode_as(path: &Path, bytes: &[u8], extras: &[&str], arch: Option<Arch>) -> Result<Loaded> {
    check_header(path, bytes)?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::model(path, format!("not a safetensors model file ({e:?})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::model(path, format!("not a safetensors model file ({e:?})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    // Plain: no metadata, or only the `format=pt` marker of Hugging Face's PyTorch writers.
    let ours = metadata.get("format").is_some_and(|f| f != "pt");
    let (arch, sizes) = if ours {
        described(path, &metadata)?
    } else {
        plain(path, &st, arch)?
    };
    let layout = Layout::new(&sizes).map_err(|e| Error::model(path, e.to_string()))?;
    let mut expected: Vec<String> = Vec::new();
    // Reserve what the metadata claims only as far as the file could hold it: the tensors are
    // checked one by one below, and a tiny file claiming a huge network fails on the first.
    let mut params = Vec::with_capacity(layout.total().min(bytes.len() / 4));
    for l in 0..layout.layers() {
        let (i, o) = layout.dims(l);
        let (wn, bn) = tensor_names(l);
        for (name, shape) in [(&wn, vec![o, i]), (&bn, vec![o])] {
            let t = tensor(path, &st, name, Dtype::F32, &shape)?;
            let start = params.len();
            params.extend(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            if let Some(k) = params[start..].iter().position(|v| !v.is_finite()) {
                return Err(Error::model(
                    path,
                    format!("tensor {name} holds a non-finite value at index {k}"),
                ));
            }
            expected.push(name.clone());
        }
    }
    let mut kept = HashMap::new();
    let mut names: Vec<&String> = st.names();
    names.sort();
    for name in names {
        if expected.iter().any(|e| e == name) {
            continue;
        }
        if !extras.contains(&name.as_str()) {
            return Err(Error::model(
                path,
                format!(
                    "unexpected tensor '{name}' (not part of a {} network)",
                    join(&sizes)
                ),
            ));
        }
        let t = st
            .tensor(name)
            .map_err(|e| Error::model(path, format!("tensor {name}: {e:?}")))?;
        kept.insert(
            name.clone(),
            Extra {
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                bytes: t.data().to_vec(),
            },
        );
    }
    let model = Mlp::from_params(arch, layout, params)?;
    Ok(Loaded {
        model,
        metadata,
        extras: kept,
    })
}

/// Refuses, with a message saying what the file is, anything that is not a safetensors file of
/// a plausible size: empty files, other formats, headers claiming more than the file holds or
/// more than [`MAX_HEADER_BYTES`].
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::model(path, "empty file (0 bytes), not a model"));
    }
    match sniff(bytes) {
        Some("a safetensors file") | None => {}
        Some(other) => {
            return Err(Error::model(
                path,
                format!("this is {other}, not a safetensors model file"),
            ))
        }
    }
    let Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) = bytes.get(..8) else {
        return Err(Error::model(
            path,
            format!(
                "truncated: {} bytes, not a safetensors model file",
                bytes.len()
            ),
        ));
    };
    let claimed = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    let follow = bytes.len() as u64 - 8;
    if claimed > follow {
        return Err(Error::model(
            path,
            format!(
                "truncated or not a safetensors model file: its header claims {claimed} bytes, \
                 only {follow} follow"
            ),
        ));
    }
    if claimed > MAX_HEADER_BYTES {
        return Err(Error::model(
            path,
            format!(
                "safetensors header of {claimed} bytes is larger than any mnist-mlp model's \
                 ({MAX_HEADER_BYTES} at most)"
            ),
        ));
    }
    Ok(())
}

/// Tensor `name` of `st`, checked to have `dtype` and `shape`; the error names the tensor and
/// what it is instead.
pub(crate) fn tensor<'a>(
    path: &Path,
    st: &SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<TensorView<'a>> {
    let t = st
        .tensor(name)
        .map_err(|_| Error::model(path, format!("tensor {name} is missing")))?;
    if t.dtype() != dtype {
        return Err(Error::model(
            path,
            format!("tensor {name} is {:?}, expected {dtype:?}", t.dtype()),
        ));
    }
    if t.shape() != shape {
        return Err(Error::model(
            path,
            format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                t.shape()
            ),
        ));
    }
    Ok(t)
}

/// `[512, 256, 128]` → `"512,256,128"`.
pub fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Loaded {
    /// Metadata value of `key`, or an error naming the file and key.
    pub fn meta(&self, path: &Path, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::model(path, format!("metadata key '{key}' is missing")))
    }

    /// Extra tensor `name` as `len` f32 values.
    pub fn f32s(&self, path: &Path, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.extra(path, name, Dtype::F32, len)?;
        Ok(t.bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Extra tensor `name` as `len` u32 values.
    pub fn u32s(&self, path: &Path, name: &str, len: usize) -> Result<Vec<u32>> {
        let t = self.extra(path, name, Dtype::U32, len)?;
        Ok(t.bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn extra(&self, path: &Path, name: &str, dtype: Dtype, len: usize) -> Result<&Extra> {
        let t = self
            .extras
            .get(name)
            .ok_or_else(|| Error::model(path, format!("tensor {name} is missing")))?;
        if t.dtype != dtype || t.shape != [len] {
            return Err(Error::model(
                path,
                format!(
                    "tensor {name} is {:?} {:?}, expected {dtype:?} [{len}]",
                    t.dtype, t.shape
                ),
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn small() -> Mlp {
        Mlp::new(Arch::Relu, &[6, 5, 3], &mut Rng::new(4)).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_bit_and_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let m = small();
        save_model(&p, &m, &[("seed", "4".into())]).unwrap();
        let back = load(&p, &[]).unwrap();
        assert_eq!(back.model.params(), m.params());
        assert_eq!(back.model.arch(), Arch::Relu);
        assert_eq!(back.model.layout(), m.layout());
        for (k, v) in [
            ("format", "mnist-mlp/1"),
            ("arch", "relu"),
            ("hidden", "5"),
            ("input", "6"),
            ("classes", "3"),
            ("seed", "4"),
        ] {
            assert_eq!(back.metadata.get(k).map(String::as_str), Some(v), "{k}");
        }
    }

    /// The bytes depend on the contents alone, whatever order the facts come in: a header in
    /// hash-map order would differ from save to save.
    #[test]
    fn the_same_contents_give_the_same_bytes_with_keys_in_order() {
        let m = small();
        let facts: Vec<(String, String)> = (0..12)
            .map(|i| (format!("fact{i:02}"), i.to_string()))
            .collect();
        let facts: Vec<(&str, String)> =
            facts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let order = [3u32, 1, 2];
        let extras = [("data.order", Data::U32(&order))];
        let first = encode(&m, "checkpoint", &facts, &extras).unwrap();
        for _ in 0..8 {
            assert_eq!(encode(&m, "checkpoint", &facts, &extras).unwrap(), first);
        }
        let reversed: Vec<_> = facts.iter().rev().cloned().collect();
        assert_eq!(encode(&m, "checkpoint", &reversed, &extras).unwrap(), first);
        // Keys in sorted order, the header padded to 8 bytes, readable by safetensors.
        let len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(len % 8, 0);
        let json = std::str::from_utf8(&first[8..8 + len]).unwrap();
        let at = |k: &str| {
            json.find(&format!("\"{k}\""))
                .unwrap_or_else(|| panic!("{k}: {json}"))
        };
        assert!(at("__metadata__") < at("data.order") && at("data.order") < at("fc1.bias"));
        assert!(at("fc1.bias") < at("fc1.weight") && at("fc1.weight") < at("fc2.bias"));
        assert!(
            at("arch") < at("classes")
                && at("fact00") < at("fact11")
                && at("fact11") < at("format")
        );
        assert!(SafeTensors::deserialize(&first).is_ok());
    }

    #[test]
    fn save_streams_what_encode_builds_extras_included() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        let m = small();
        let (f, u) = ([1.5f32, -0.0, f32::MIN_POSITIVE, 3e38], [7u32, 0, u32::MAX]);
        let extras = [("a", Data::F32(&f)), ("b", Data::U32(&u))];
        let facts = [("seed", "4".to_string())];
        save(&p, &m, "checkpoint", &facts, &extras).unwrap();
        let streamed = std::fs::read(&p).unwrap();
        let built = encode(&m, "checkpoint", &facts, &extras).unwrap();
        // The same tensors, bytes and metadata.
        assert_eq!(streamed.len(), built.len());
        let (a, b) = (
            SafeTensors::deserialize(&streamed).unwrap(),
            SafeTensors::deserialize(&built).unwrap(),
        );
        let mut names = a.names();
        names.sort();
        assert_eq!(names.len(), 2 * 2 + 2);
        for n in names {
            let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
            assert_eq!(
                (x.dtype(), x.shape(), x.data()),
                (y.dtype(), y.shape(), y.data()),
                "{n}"
            );
        }
        let meta = |bytes: &[u8]| {
            SafeTensors::read_metadata(bytes)
                .unwrap()
                .1
                .metadata()
                .clone()
        };
        assert_eq!(meta(&streamed), meta(&built));
        assert_eq!(streamed, built, "save and encode write the same bytes");
        let back = load(&p, &["a", "b"]).unwrap();
        assert_eq!(back.f32s(&p, "a", 4).unwrap(), f);
        assert_eq!(back.u32s(&p, "b", 3).unwrap(), u);
        assert_eq!(back.model.params(), m.params());
    }

    fn broken(
        mutate: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
    ) -> String {
        let m = small();
        let bytes = encode(&m, "model", &[], &[]).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, h) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = h.metadata().clone().unwrap();
        let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
            .collect();
        mutate(&mut ts, &mut meta);
        let views: Vec<(String, TensorView)> = ts
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::tensor::serialize(views, &Some(meta)).unwrap();
        decode(Path::new("m.safetensors"), &bytes, &[])
            .unwrap_err()
            .to_string()
    }

    /// A plain safetensors file (PyTorch's `save_file(state_dict)`: no metadata) is read with
    /// the architecture the caller gives; without one, the error says what to give.
    #[test]
    fn plain_files_take_their_sizes_from_the_shapes_and_the_arch_from_the_caller() {
        let m = small();
        let ours = encode(&m, "model", &[], &[]).unwrap();
        let st = SafeTensors::deserialize(&ours).unwrap();
        let plain = |names: &dyn Fn(&str) -> String| {
            let views: Vec<(String, TensorView)> = st
                .tensors()
                .into_iter()
                .map(|(n, t)| (names(&n), t))
                .collect();
            safetensors::tensor::serialize(views, &None).unwrap()
        };
        let torch = plain(&|n| n.to_string());
        let p = Path::new("torch.safetensors");
        let e = decode(p, &torch, &[]).unwrap_err().to_string();
        assert!(
            e.contains("no mnist-mlp metadata") && e.contains("6,5,3") && e.contains("--arch"),
            "{e}"
        );
        let back = decode_as(p, &torch, &[], Some(Arch::Relu)).unwrap();
        assert_eq!(back.model.params(), m.params());
        assert_eq!(back.model.layout().sizes(), m.layout().sizes());
        assert_eq!(back.model.arch(), Arch::Relu);
        let seed = decode_as(p, &torch, &[], Some(Arch::Seed)).unwrap();
        assert_eq!(seed.model.arch(), Arch::Seed);
        // Hugging Face's writers add `format` = `pt`, and nothing else.
        let pt_meta = Some([("format".to_string(), "pt".to_string())].into());
        let views: Vec<(String, TensorView)> = st.tensors();
        let hf = safetensors::tensor::serialize(views, &pt_meta).unwrap();
        let back = decode_as(p, &hf, &[], Some(Arch::Relu)).unwrap();
        assert_eq!(back.model.params(), m.params());
        // A file that says its architecture keeps it, whatever the caller guessed.
        let said = decode_as(p, &ours, &[], Some(Arch::Seed)).unwrap();
        assert_eq!(said.model.arch(), Arch::Relu);
        // Not a state_dict of fcN layers.
        let other = plain(&|n| n.replace("fc", "layer"));
        let e = decode_as(p, &other, &[], Some(Arch::Relu))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no fc1.weight"), "{e}");
        // A missing bias is named by the tensor check.
        let mixed: Vec<(String, TensorView)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "fc2.bias")
            .collect();
        let bytes = safetensors::tensor::serialize(mixed, &None).unwrap();
        let e = decode_as(p, &bytes, &[], Some(Arch::Relu))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fc2.bias is missing"), "{e}");
    }

    #[test]
    fn every_inconsistency_is_named() {
        let e = broken(|ts, _| ts.retain(|t| t.0 != "fc2.bias"));
        assert!(e.contains("tensor fc2.bias is missing"), "{e}");
        let e = broken(|ts, _| ts[0].1 = Dtype::I32);
        assert!(e.contains("is I32, expected F32"), "{e}");
        let e = broken(|ts, _| {
            let t = ts.iter_mut().find(|t| t.0 == "fc1.weight").unwrap();
            t.2 = vec![6, 5];
        });
        assert!(
            e.contains("fc1.weight has shape [6, 5], expected [5, 6]"),
            "{e}"
        );
        let e = broken(|ts, _| ts.push(("fc3.weight".into(), Dtype::F32, vec![1], vec![0; 4])));
        assert!(e.contains("unexpected tensor 'fc3.weight'"), "{e}");
        let e = broken(|_, m| {
            m.remove("arch");
        });
        assert!(e.contains("'arch' is missing"), "{e}");
        let e = broken(|_, m| {
            m.insert("format".into(), "other/2".into());
        });
        assert!(e.contains("format is 'other/2'"), "{e}");
        let e = broken(|_, m| {
            m.insert("hidden".into(), "7".into());
        });
        assert!(
            e.contains("fc1.weight has shape [5, 6], expected [7, 6]"),
            "{e}"
        );
        let e = broken(|ts, _| {
            let t = ts.iter_mut().find(|t| t.0 == "fc1.bias").unwrap();
            t.3[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        assert!(
            e.contains("fc1.bias holds a non-finite value at index 0"),
            "{e}"
        );
        let e = decode(Path::new("x"), b"not a model", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a safetensors model file"), "{e}");
    }

    #[test]
    fn non_finite_weights_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut m = small();
        m.params_mut()[3] = f32::INFINITY;
        let e = save_model(&p, &m, &[]).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
        assert!(!p.exists());
    }
}
