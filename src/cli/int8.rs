//! `eval` and `predict` on an int8 model (from `quantize`): the same outputs as for a float
//! model, computed by the int8 engine; `predict --json` adds the int8 logits.

use anyhow::{bail, Context, Result};
use mnist_mlp::data::{default_dir, Dataset, Split};
use mnist_mlp::image::read_digit;
use mnist_mlp::quant::file::{load, LoadedQ};
use mnist_mlp::quant::model::argmax_i8;
use mnist_mlp::quant::softmax::dequantize;
use mnist_mlp::quant::QWorkspace;

use super::args::{EvalArgs, PredictArgs};
use super::predict::{json_string, tsv_field};
use super::{note_decompressed, Out};

/// Loads the int8 model of `eval`/`predict`, refusing `--arch` (an int8 file says its own).
fn load_q(path: &std::path::Path, arch: bool, max_bytes: u64) -> Result<LoadedQ> {
    if arch {
        bail!(
            "--arch is for plain safetensors files; {} is an int8 model that names its architecture",
            path.display()
        );
    }
    load(path, max_bytes).context("loading the model")
}

/// The predicted class of every test image of `a.data`, with the test set.
pub fn classify(a: &EvalArgs) -> Result<(Vec<u8>, Dataset)> {
    let limits = a.limits.limits();
    let q = load_q(&a.model, a.arch.is_some(), limits.max_file_bytes)?.model;
    let test = Dataset::open_with(&a.data, Split::Test, &limits).context("loading the test set")?;
    note_decompressed(&[&test]);
    Ok((q.classify(&test)?, test))
}

/// `predict` on an int8 model.
pub fn predict(a: PredictArgs) -> Result<u8> {
    let limits = a.limits.limits();
    let model = load_q(&a.model, a.arch.is_some(), limits.max_file_bytes)?.model;
    if model.input() != 28 * 28 {
        bail!(
            "{} takes {} inputs, not 28×28 images",
            a.model.display(),
            model.input()
        );
    }
    let (scale, zero_point) = model.logits_params();
    let mut ws = QWorkspace::new(&model, 1);
    let mut out = Out::new();
    let mut report = |name: &str, index: Option<(usize, u8)>, pixels: &[u8]| {
        model.forward(&mut ws, pixels, 1);
        let z = ws.logits();
        let probs: Vec<f32> = ws.probabilities().iter().map(|&q| dequantize(q)).collect();
        let digit = argmax_i8(z);
        if a.json {
            let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(",");
            let key = match index {
                Some((i, label)) => format!("\"index\":{i},\"label\":{label}"),
                None => format!("\"path\":{}", json_string(name)),
            };
            let logits = z
                .iter()
                .map(|&q| ((i32::from(q) - zero_point) as f32 * scale).to_string());
            out.line(format!(
                "{{{key},\"digit\":{digit},\"probability\":{},\"probabilities\":[{}],\"logits\":[{}],\"int8_logits\":[{}]}}",
                probs[digit],
                list(&mut probs.iter().map(|p| p.to_string())),
                list(&mut logits.into_iter()),
                list(&mut z.iter().map(|q| q.to_string())),
            ));
        } else {
            let name = tsv_field(name);
            match index {
                Some((_, label)) => {
                    out.line(format!("{name}\t{digit}\t{:.4}\t{label}", probs[digit]))
                }
                None => out.line(format!("{name}\t{digit}\t{:.4}", probs[digit])),
            }
        }
    };
    if !a.index.is_empty() {
        let dir = a.data.clone().unwrap_or_else(default_dir);
        let test =
            Dataset::open_with(&dir, Split::Test, &limits).context("loading the test set")?;
        test.expect_pixels(28 * 28)?;
        if let Some(&bad) = a.index.iter().find(|&&i| i >= test.len()) {
            bail!(
                "--index {bad} is out of range: the test set has {} images (0..={})",
                test.len(),
                test.len() - 1
            );
        }
        note_decompressed(&[&test]);
        for &i in &a.index {
            report(
                &format!("test[{i}]"),
                Some((i, test.labels()[i])),
                test.images().image(i),
            );
        }
    } else {
        let digits = a
            .images
            .iter()
            .map(|path| read_digit(path, a.invert))
            .collect::<Result<Vec<_>, _>>()?;
        for (path, pixels) in a.images.iter().zip(&digits) {
            report(&path.display().to_string(), None, pixels);
        }
    }
    out.finish()?;
    Ok(0)
}
