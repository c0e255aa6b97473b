//! Exporting models for the runtimes NXP's BSP ships: TFLite (LiteRT, and through it the
//! i.MX8M Plus NPU with the VX delegate) and ONNX (ONNX Runtime).
//!
//! - [`flatbuf`]: a minimal FlatBuffers writer (no generated code).
//! - [`tflite`]: the TFLite graph of a float or an int8 network.
//! - [`onnx`]: the ONNX graph of a float network (ONNX Runtime on the CPU-only i.MX8s).

pub mod flatbuf;
pub mod onnx;
pub mod tflite;

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsio::write_atomic;

/// What a model file holds, for an exporter.
pub enum Source<'a> {
    /// A float32 network.
    Float(&'a crate::model::Mlp),
    /// An int8 network.
    Int8(&'a crate::quant::QModel),
}

/// The export formats, chosen by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.tflite`.
    Tflite,
    /// `.onnx` (float32 models only).
    Onnx,
}

impl Format {
    /// The format `path`'s extension names, if any.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "tflite" => Some(Format::Tflite),
            "onnx" => Some(Format::Onnx),
            _ => None,
        }
    }
}

/// Writes `source` to `path` in `format`, atomically.
pub fn export(source: &Source, format: Format, path: &Path) -> Result<()> {
    let bytes = match (format, source) {
        (Format::Tflite, Source::Float(m)) => tflite::float(m),
        (Format::Tflite, Source::Int8(q)) => tflite::int8(q),
        (Format::Onnx, Source::Float(m)) => onnx::float(m),
        (Format::Onnx, Source::Int8(_)) => {
            return Err(Error::config(
                "ONNX export takes float32 models only; export the float32 model it was \
                 quantized from, or this int8 model as .tflite",
            ))
        }
    };
    write_atomic(path, &bytes)
}
