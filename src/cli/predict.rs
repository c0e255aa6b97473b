//! `mnist-mlp predict`: the digit in each image (or test-set example), with its probability.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use mnist_mlp::data::{default_dir, Dataset, Split};
use mnist_mlp::image::{read_digit, SIDE};
use mnist_mlp::limits::Limits;
use mnist_mlp::loss::{argmax, softmax};
use mnist_mlp::model::{Mlp, INPUT};

use super::args::PredictArgs;
use super::{load_model, note_decompressed, Out};

/// `mnist-mlp predict`: loads the model, reads every input, then prints one line per input.
pub fn run(a: PredictArgs) -> Result<u8> {
    if mnist_mlp::quant::file::is_int8(&a.model) {
        return super::int8::predict(a);
    }
    let limits = a.limits.limits();
    let model = load_model(&a.model, a.arch, &limits)
        .context("loading the model")?
        .model;
    if model.layout().input() != INPUT {
        bail!(
            "{} takes {} inputs, not {SIDE}×{SIDE} images",
            a.model.display(),
            model.layout().input()
        );
    }
    // Every input is read before anything is printed: one bad file among many gives its error
    // and no partial output.
    let inputs = if a.index.is_empty() {
        image_files(&a)?
    } else {
        test_images(&a, &limits)?
    };
    let mut out = Out::new();
    for input in &inputs {
        out.line(prediction(&model, input, a.json));
    }
    out.finish()?;
    Ok(0)
}

/// One image to classify.
struct Input {
    /// The file's path, or `test[i]`.
    name: String,
    /// For a test-set image (`--index`): its index and true digit.
    label: Option<(usize, u8)>,
    /// `SIDE × SIDE` pixels.
    pixels: Vec<u8>,
}

/// The images `--index` names in the test set.
fn test_images(a: &PredictArgs, limits: &Limits) -> Result<Vec<Input>> {
    let dir = a.data.clone().unwrap_or_else(default_dir);
    let test = Dataset::open_with(&dir, Split::Test, limits).context("loading the test set")?;
    test.expect_pixels(INPUT)?;
    if let Some(&bad) = a.index.iter().find(|&&i| i >= test.len()) {
        bail!(
            "--index {bad} is out of range: the test set has {} images (0..={})",
            test.len(),
            test.len() - 1
        );
    }
    note_decompressed(&[&test]);
    let input = |i: usize| Input {
        name: format!("test[{i}]"),
        label: Some((i, test.labels()[i])),
        pixels: test.images().image(i).to_vec(),
    };
    Ok(a.index.iter().map(|&i| input(i)).collect())
}

/// The image files given, each read (and inverted with `--invert`); all are read before any
/// is warned about.
fn image_files(a: &PredictArgs) -> Result<Vec<Input>> {
    let digits = a
        .images
        .iter()
        .map(|path| read_digit(path, a.invert))
        .collect::<Result<Vec<_>, _>>()?;
    let input = |(path, pixels): (&PathBuf, Vec<u8>)| {
        // MNIST digits are white on black: a light image is most likely ink on paper.
        let mean = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len() as f64;
        if !a.invert && mean > 127.0 {
            log::warn!(
                "{}: mostly light (mean {mean:.0} of 255), unlike MNIST's white digits on \
                 black; if it is a dark digit on a light background, pass --invert",
                path.display()
            );
        }
        Input {
            name: path.display().to_string(),
            label: None,
            pixels,
        }
    };
    Ok(a.images.iter().zip(digits).map(input).collect())
}

/// The output line for `input`: a JSON object with `--json`, else TSV (name, digit,
/// probability, and the true digit of a test-set image).
fn prediction(model: &Mlp, input: &Input, json: bool) -> String {
    let logits = model.logits_of(&input.pixels);
    let probs = softmax(&logits);
    let digit = argmax(&logits);
    if json {
        let list = |v: &[f32]| {
            v.iter()
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let key = match input.label {
            Some((i, label)) => format!("\"index\":{i},\"label\":{label}"),
            None => format!("\"path\":{}", json_string(&input.name)),
        };
        format!(
            "{{{key},\"digit\":{digit},\"probability\":{},\"probabilities\":[{}],\"logits\":[{}]}}",
            probs[digit],
            list(&probs),
            list(&logits)
        )
    } else {
        let name = tsv_field(&input.name);
        match input.label {
            Some((_, label)) => format!("{name}\t{digit}\t{:.4}\t{label}", probs[digit]),
            None => format!("{name}\t{digit}\t{:.4}", probs[digit]),
        }
    }
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
