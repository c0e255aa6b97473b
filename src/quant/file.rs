//! int8 model files: safetensors, like the float ones, with a format of their own.
//!
//! Tensors, for each layer `fcN` (N from 1):
//!
//! | name | dtype | shape | meaning |
//! |---|---|---|---|
//! | `fcN.weight` | I8 | `[O, I]` | weights, zero point 0 |
//! | `fcN.weight_scale` | F32 | `[1]` or `[O]` | per tensor, or per output row |
//! | `fcN.bias` | I32 | `[O]` | bias, scale = input scale × weight scale, zero point 0 |
//! | `fcN.output_scale` | F32 | `[1]` | scale of the layer's int8 output |
//! | `fcN.output_zero_point` | I32 | `[1]` | its zero point, in -128..=127 |
//!
//! Metadata: `format` = [`FORMAT`], `kind` = `model`, `arch`, `hidden`, `input`, `classes`
//! (as in float files), `weight_scales` (`per-tensor` or `per-channel`), and the fixed
//! contract of the ends, for readers: `input_scale` = 1/255, `input_zero_point` = -128,
//! `softmax_scale` = 1/256, `softmax_zero_point` = -128; plus facts about the run that made it.
//! Loading checks everything [`QModel::new`] checks, and that nothing else is in the file.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

use super::model::{QLayer, QModel, WeightScales, INPUT_SCALE, INPUT_ZERO_POINT};
use super::softmax::{OUTPUT_SCALE, OUTPUT_ZERO_POINT};
use crate::error::{Error, Result};
use crate::fsio::{read_bounded, write_atomic, ReadError};
use crate::model::Arch;
use crate::model_file::{join, tensor, MAX_FILE_BYTES, MAX_HEADER_BYTES};

/// Value of the `format` metadata key of int8 model files.
pub const FORMAT: &str = "mnist-mlp-int8/1";

/// Whether `path` is an int8 model file: its safetensors header holds the metadata entry
/// `"format":"mnist-mlp-int8/1"` (as [`encode`] writes it; a byte search, not a JSON parse,
/// which keeps the binary small). Anything unreadable or unlike a safetensors file is not
/// (the float loader then says why).
pub fn is_int8(path: &Path) -> bool {
    let Ok(f) = crate::fsio::open_input(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut f = f.take(8 + MAX_HEADER_BYTES);
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return false;
    }
    let needle = format!("\"format\":\"{FORMAT}\"");
    header.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The layer tensor names of layer `l` (0-based): weight, weight_scale, bias, output_scale,
/// output_zero_point.
fn names(l: usize) -> [String; 5] {
    let p = format!("fc{}", l + 1);
    [
        format!("{p}.weight"),
        format!("{p}.weight_scale"),
        format!("{p}.bias"),
        format!("{p}.output_scale"),
        format!("{p}.output_zero_point"),
    ]
}

/// Serializes `model` with `facts` added to the metadata. The same model and facts give the
/// same bytes (sorted keys, as the float files).
pub fn encode(model: &QModel, facts: &[(&str, String)]) -> Vec<u8> {
    use serde_json::{json, Map, Value};
    let layers = model.layers();
    let mut meta: BTreeMap<String, String> = facts
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let hidden: Vec<usize> = layers[..layers.len() - 1]
        .iter()
        .map(|l| l.outputs)
        .collect();
    for (k, v) in [
        ("format", FORMAT.to_string()),
        ("kind", "model".into()),
        ("arch", model.arch().name().into()),
        ("hidden", join(&hidden)),
        ("input", model.input().to_string()),
        ("classes", model.classes().to_string()),
        ("weight_scales", model.weight_scales().name().into()),
        ("input_scale", INPUT_SCALE.to_string()),
        ("input_zero_point", INPUT_ZERO_POINT.to_string()),
        ("softmax_scale", OUTPUT_SCALE.to_string()),
        ("softmax_zero_point", OUTPUT_ZERO_POINT.to_string()),
    ] {
        meta.insert(k.into(), v);
    }
    // (name, dtype, shape, bytes) in name order, the order the header lists them.
    let mut tensors: Vec<(String, &str, Vec<usize>, Vec<u8>)> = Vec::new();
    for (l, q) in layers.iter().enumerate() {
        let [w, ws, b, os, oz] = names(l);
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i32s = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        tensors.push((
            w,
            "I8",
            vec![q.outputs, q.inputs],
            q.weight.iter().map(|&v| v as u8).collect(),
        ));
        tensors.push((ws, "F32", vec![q.weight_scale.len()], f32s(&q.weight_scale)));
        tensors.push((b, "I32", vec![q.outputs], i32s(&q.bias)));
        tensors.push((os, "F32", vec![1], f32s(&[q.output_scale])));
        tensors.push((oz, "I32", vec![1], i32s(&[q.output_zero_point])));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!(meta));
    let mut offset = 0;
    for (name, dtype, shape, bytes) in &tensors {
        let end = offset + bytes.len();
        map.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = Value::Object(map).to_string().into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    for (_, _, _, bytes) in &tensors {
        out.extend_from_slice(bytes);
    }
    out
}

/// Writes `model` to `path`, atomically.
pub fn save(path: &Path, model: &QModel, facts: &[(&str, String)]) -> Result<()> {
    write_atomic(path, &encode(model, facts))
}

/// What an int8 file held.
#[derive(Debug)]
pub struct LoadedQ {
    /// The network.
    pub model: QModel,
    /// All metadata.
    pub metadata: HashMap<String, String>,
}

/// Loads an int8 model from `path`, refusing files over `max_bytes`.
pub fn load(path: &Path, max_bytes: u64) -> Result<LoadedQ> {
    let bytes = read_bounded(path, max_bytes.min(MAX_FILE_BYTES)).map_err(|e| match e {
        ReadError::NotFound => Error::model(path, "no such file"),
        ReadError::NotRegular { .. } => Error::model(path, "not a regular file"),
        ReadError::TooLarge { bytes } => Error::model(
            path,
            format!("{bytes} bytes is larger than allowed ({max_bytes})"),
        ),
        ReadError::Io(e) => Error::io(path, e),
    })?;
    decode(path, &bytes)
}

/// [`load`] from bytes in memory; `path` names them in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<LoadedQ> {
    let bad = |problem: String| Error::model(path, problem);
    if bytes.len() < 8
        || u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0xff; 8])) > MAX_HEADER_BYTES
    {
        return Err(bad("not a safetensors int8 model file".into()));
    }
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a safetensors int8 model file ({e:?})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors int8 model file ({e:?})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let (arch, scales, sizes) = shape_of(&metadata).map_err(bad)?;
    let total: usize = sizes
        .windows(2)
        .map(|w| w[0].saturating_mul(w[1]))
        .fold(0, usize::saturating_add);
    if total > bytes.len() {
        return Err(bad(format!(
            "its metadata describes {} weights, more than the file holds",
            total
        )));
    }
    let mut expected = Vec::new();
    let mut layers = Vec::new();
    for (l, w) in sizes.windows(2).enumerate() {
        let relu = arch == Arch::Relu && l + 2 < sizes.len();
        let (layer, names) = read_layer(path, &st, l, (w[0], w[1]), (scales, relu))?;
        layers.push(layer);
        expected.extend(names);
    }
    let mut names: Vec<&String> = st.names();
    names.sort();
    if let Some(extra) = names.into_iter().find(|n| !expected.contains(n)) {
        return Err(bad(format!(
            "unexpected tensor '{extra}' (not part of a {} int8 network)",
            join(&sizes)
        )));
    }
    let model = QModel::new(arch, scales, layers).map_err(|e| bad(e.to_string()))?;
    Ok(LoadedQ { model, metadata })
}

/// What the metadata says of the network: its architecture, its kind of weight scales and its
/// layer widths, input to classes; the error says which key is missing or wrong.
fn shape_of(
    metadata: &HashMap<String, String>,
) -> Result<(Arch, WeightScales, Vec<usize>), String> {
    let get = |key: &str| {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("metadata key '{key}' is missing"))
    };
    if get("format")? != FORMAT {
        return Err(format!(
            "format is '{}', expected '{FORMAT}'",
            get("format")?
        ));
    }
    let arch: Arch = get("arch")?.parse()?;
    let scales = match get("weight_scales")? {
        "per-tensor" => WeightScales::PerTensor,
        "per-channel" => WeightScales::PerChannel,
        other => {
            return Err(format!(
                "weight_scales is '{other}' (expected per-tensor or per-channel)"
            ))
        }
    };
    let number = |key: &str| -> Result<usize, String> {
        let v = get(key)?;
        v.parse()
            .map_err(|_| format!("metadata '{key}' = '{v}' is not a whole number"))
    };
    let mut sizes = vec![number("input")?];
    let hidden = get("hidden")?;
    if !hidden.is_empty() {
        for w in hidden.split(',') {
            let width = w.parse();
            sizes.push(
                width.map_err(|_| {
                    format!("metadata 'hidden' = '{hidden}' is not a list of widths")
                })?,
            );
        }
    }
    sizes.push(number("classes")?);
    if sizes.contains(&0) {
        return Err("a layer of width 0".into());
    }
    Ok((arch, scales, sizes))
}

/// Layer `l`, `inputs → outputs`, read from `st` with its kind of weight scales and whether a
/// ReLU follows it; also returns the names of its five tensors.
fn read_layer(
    path: &Path,
    st: &SafeTensors<'_>,
    l: usize,
    (i, o): (usize, usize),
    (scales, relu): (WeightScales, bool),
) -> Result<(QLayer, [String; 5])> {
    let [wn, wsn, bn, osn, ozn] = names(l);
    let n_scales = scales.count(o);
    let weight = tensor(path, st, &wn, Dtype::I8, &[o, i])?
        .data()
        .iter()
        .map(|&b| b as i8)
        .collect();
    let layer = QLayer {
        inputs: i,
        outputs: o,
        weight,
        weight_scale: f32s(path, st, &wsn, n_scales)?,
        bias: i32s(path, st, &bn, o)?,
        output_scale: f32s(path, st, &osn, 1)?[0],
        output_zero_point: i32s(path, st, &ozn, 1)?[0],
        relu,
    };
    Ok((layer, [wn, wsn, bn, osn, ozn]))
}

fn f32s(path: &Path, st: &SafeTensors, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = tensor(path, st, name, Dtype::F32, &[len])?;
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn i32s(path: &Path, st: &SafeTensors, name: &str, len: usize) -> Result<Vec<i32>> {
    let t = tensor(path, st, name, Dtype::I32, &[len])?;
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(scales: WeightScales) -> QModel {
        let layer = |i: usize, o: usize, relu| QLayer {
            inputs: i,
            outputs: o,
            weight: (0..i * o).map(|k| (k % 255) as u8 as i8).collect(),
            weight_scale: match scales {
                WeightScales::PerTensor => vec![0.01],
                WeightScales::PerChannel => (0..o).map(|k| 0.01 + k as f32 * 1e-3).collect(),
            },
            bias: (0..o as i32).map(|k| k * 100 - 7).collect(),
            output_scale: 0.05,
            output_zero_point: if relu { -128 } else { 3 },
            relu,
        };
        QModel::new(
            Arch::Relu,
            scales,
            vec![layer(6, 4, true), layer(4, 3, false)],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_every_value() {
        for scales in [WeightScales::PerTensor, WeightScales::PerChannel] {
            let m = small(scales);
            let bytes = encode(&m, &[("calibration", "5".into())]);
            assert_eq!(bytes, encode(&m, &[("calibration", "5".into())]));
            let back = decode(Path::new("q"), &bytes).unwrap();
            assert_eq!(back.model.layers(), m.layers());
            assert_eq!(back.model.weight_scales(), scales);
            assert_eq!(back.metadata["calibration"], "5");
            assert_eq!(back.metadata["format"], FORMAT);
        }
    }

    #[test]
    fn damaged_files_are_refused_with_the_tensor_named() {
        let m = small(WeightScales::PerTensor);
        let bytes = encode(&m, &[]);
        let e = decode(Path::new("q"), &bytes[..bytes.len() - 3]).unwrap_err();
        assert!(e.to_string().contains("not a safetensors"), "{e}");
        let e = decode(Path::new("q"), b"junk").unwrap_err();
        assert!(e.to_string().contains("not a safetensors"), "{e}");
        let at = bytes.windows(10).position(|w| w == b"per-tensor").unwrap();
        let mut renamed = bytes.clone();
        renamed[at..at + 10].copy_from_slice(b"per-tensox");
        let e = decode(Path::new("q"), &renamed).unwrap_err();
        assert!(e.to_string().contains("weight_scales"), "{e}");
    }
}
