//! `mnist-mlp export`: a float32 or int8 model as a TFLite file, for LiteRT and NXP's NPU
//! delegate, or a float32 model as an ONNX file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mnist_mlp::export::{export, Format, Source};
use mnist_mlp::fsio::check_writable;
use mnist_mlp::quant::file;

use super::args::LimitArgs;
use super::load_model;

/// `mnist-mlp export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model file: float32 (from `train --save`) or int8 (from `quantize`).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Output file; its extension picks the format: .tflite (an int8 model gives a fully
    /// integer TFLite model, a float32 model a float32 one) or .onnx (float32 models).
    #[arg(long, value_name = "FILE", value_parser = output_path)]
    pub out: PathBuf,
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn output_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match Format::of(&p) {
        Some(_) => Ok(p),
        None => Err("unknown format: the file name must end in .tflite or .onnx".into()),
    }
}

pub fn run(a: ExportArgs) -> Result<u8> {
    let limits = a.limits.limits();
    let format = Format::of(&a.out).context("unknown output format")?;
    if file::is_int8(&a.model) {
        let q = file::load(&a.model, limits.max_file_bytes).context("loading the model")?;
        check_writable(&a.out, true)?;
        export(&Source::Int8(&q.model), format, &a.out)?;
    } else {
        let f = load_model(&a.model, None, &limits).context("loading the model")?;
        check_writable(&a.out, true)?;
        export(&Source::Float(&f.model), format, &a.out)?;
    }
    log::info!("wrote {}", a.out.display());
    Ok(0)
}
