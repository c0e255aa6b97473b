//! `mnist-mlp predict`: the digit in each image (or test-set example), with its probability.

use anyhow::{bail, Context, Result};
use mnist_mlp::data::{default_dir, Dataset, Split};
use mnist_mlp::image::read_digit;
use mnist_mlp::loss::{argmax, softmax};

use super::args::PredictArgs;
use super::{load_model, note_decompressed, Out};

pub fn run(a: PredictArgs) -> Result<u8> {
    if mnist_mlp::quant::file::is_int8(&a.model) {
        return super::int8::predict(a);
    }
    let limits = a.limits.limits();
    let model = load_model(&a.model, a.arch, &limits)
        .context("loading the model")?
        .model;
    if model.layout().input() != 28 * 28 {
        bail!(
            "{} takes {} inputs, not 28×28 images",
            a.model.display(),
            model.layout().input()
        );
    }
    let mut out = Out::new();
    // `label`: the true digit of a test-set image (--index).
    let mut report = |name: &str, index: Option<(usize, u8)>, pixels: &[u8]| {
        let logits = model.logits_of(pixels);
        let probs = softmax(&logits);
        let digit = argmax(&logits);
        if a.json {
            let list = |v: &[f32]| {
                v.iter()
                    .map(|x| format!("{x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let key = match index {
                Some((i, label)) => format!("\"index\":{i},\"label\":{label}"),
                None => format!("\"path\":{}", json_string(name)),
            };
            out.line(format!(
                "{{{key},\"digit\":{digit},\"probability\":{},\"probabilities\":[{}],\"logits\":[{}]}}",
                probs[digit],
                list(&probs),
                list(&logits)
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
            let label = test.labels()[i];
            report(
                &format!("test[{i}]"),
                Some((i, label)),
                test.images().image(i),
            );
        }
    } else {
        // Every image is read before anything is printed: one bad file among many gives its
        // error and no partial output.
        let digits = a
            .images
            .iter()
            .map(|path| read_digit(path, a.invert))
            .collect::<Result<Vec<_>, _>>()?;
        for (path, pixels) in a.images.iter().zip(&digits) {
            // MNIST digits are white on black: a light image is most likely ink on paper.
            let mean = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len() as f64;
            if !a.invert && mean > 127.0 {
                log::warn!(
                    "{}: mostly light (mean {mean:.0} of 255), unlike MNIST's white digits on \
                     black; if it is a dark digit on a light background, pass --invert",
                    path.display()
                );
            }
            report(&path.display().to_string(), None, pixels);
        }
    }
    out.finish()?;
    Ok(0)
}

/// `s` as a JSON string literal.
pub(super) fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `name` as one TSV field: a tab, newline or backslash in a file name is written as `\t`,
/// `\n`, `\\` (a carriage return as `\r`), so every line keeps its columns.
pub(super) fn tsv_field(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['\t', '\n', '\r', '\\']) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 2);
    for c in name.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.into()
}
