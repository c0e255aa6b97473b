//! `mnist-mlp quantize`: post-training int8 quantization of a float model, with the float32
//! and int8 test accuracies side by side.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mnist_mlp::data::{default_dir, Dataset, Split};
use mnist_mlp::fsio::check_writable;
use mnist_mlp::quant::calibrate::{quantize, DEFAULT_CALIBRATION};
use mnist_mlp::quant::{file, WeightScales};
use mnist_mlp::report::Confusion;

use super::args::LimitArgs;
use super::{load_model, note_decompressed, set_threads, Out};

/// `mnist-mlp quantize` options.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Float32 model file (from `train --save`, or a checkpoint).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Directory with the training images (calibration) and the test set (accuracy), as
    /// `train` reads it [default: data/mnist if it exists, else data/mnist-10k].
    #[arg(long, value_name = "DIR", default_value_os_t = default_dir())]
    pub data: PathBuf,
    /// Where to write the int8 model (safetensors; see docs/int8.md).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Training images whose activations set the int8 ranges (the first N of the set).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CALIBRATION, value_parser = calibration_count)]
    pub calibration: usize,
    /// One weight scale per output row instead of one per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// Threads for the float matrix products [default: number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn calibration_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("calibration needs at least 1 image".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a positive number of images".into()),
    }
}

pub fn run(a: QuantizeArgs) -> Result<u8> {
    set_threads(a.threads);
    let limits = a.limits.limits();
    if file::is_int8(&a.model) {
        anyhow::bail!(
            "{}: already an int8 model; quantize takes the float32 model it came from",
            a.model.display()
        );
    }
    let model = load_model(&a.model, None, &limits)
        .context("loading the model")?
        .model;
    check_writable(&a.out, true)?;
    let train = Dataset::open_with(&a.data, Split::Train, &limits)
        .context("loading the calibration set")?;
    let test = Dataset::open_with(&a.data, Split::Test, &limits).context("loading the test set")?;
    train
        .expect_pixels(model.layout().input())
        .context("checking the calibration images")?;
    test.expect_pixels(model.layout().input())
        .context("checking the test images")?;
    note_decompressed(&[&train, &test]);
    if a.calibration > train.len() {
        log::warn!(
            "--calibration {} is more than the {} training images; using all of them",
            a.calibration,
            train.len()
        );
    }
    let n = a.calibration.min(train.len());
    let scales = if a.per_channel {
        WeightScales::PerChannel
    } else {
        WeightScales::PerTensor
    };
    let q = quantize(&model, &train, n, scales)?;
    let float = Confusion::new(&model.classify(&test)?, test.labels()).accuracy();
    let int8 = Confusion::new(&q.classify(&test)?, test.labels()).accuracy();
    let facts = [
        ("calibration", n.to_string()),
        (
            "quantized_from",
            a.model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        ("float32_test_accuracy", float.value().to_string()),
        ("int8_test_accuracy", int8.value().to_string()),
    ];
    file::save(&a.out, &q, &facts)?;
    let mut out = Out::new();
    out.line(format!(
        "Accuracy on test set: float32 {} | int8 {} ({:+.2} pp)",
        float.value(),
        int8.value(),
        (f64::from(int8.value()) - f64::from(float.value())) * 100.0
    ));
    out.finish()?;
    log::info!(
        "saved the int8 model ({} weight scales, {n} calibration images) to {}",
        scales.name(),
        a.out.display()
    );
    Ok(0)
}
