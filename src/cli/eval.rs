//! `mnist-mlp eval`: test accuracy, per-class accuracy and the confusion matrix of a model.

use anyhow::{Context, Result};
use mnist_mlp::data::{Dataset, Split, CLASSES};
use mnist_mlp::report::Confusion;

use super::args::EvalArgs;
use super::{load_model, note_decompressed, set_threads, Out};

pub fn run(a: EvalArgs) -> Result<u8> {
    set_threads(a.threads);
    let (predicted, test) = if mnist_mlp::quant::file::is_int8(&a.model) {
        super::int8::classify(&a)?
    } else {
        let limits = a.limits.limits();
        let model = load_model(&a.model, a.arch, &limits)
            .context("loading the model")?
            .model;
        let test =
            Dataset::open_with(&a.data, Split::Test, &limits).context("loading the test set")?;
        note_decompressed(&[&test]);
        (model.classify(&test)?, test)
    };
    let confusion = Confusion::new(&predicted, test.labels());
    let mut out = Out::new();
    if a.json {
        out.line(json(&confusion));
    } else {
        table(&mut out, &confusion);
    }
    out.finish()?;
    Ok(0)
}

/// The human-readable report: the tutorial's accuracy line, per-class accuracy, the matrix.
fn table(out: &mut Out, confusion: &Confusion) {
    out.line(confusion.accuracy());
    out.line("");
    out.line("Per-class accuracy:");
    for (c, (right, n)) in confusion.per_class().enumerate() {
        let acc = if n == 0 {
            String::from("-")
        } else {
            format!("{:.4}", right as f64 / n as f64)
        };
        out.line(format!("  {c}: {acc} ({right}/{n})"));
    }
    out.line("");
    out.line("Confusion matrix (rows: true class, columns: predicted):");
    out.line(format!(
        "     {}",
        (0..CLASSES).map(|c| format!("{c:>5}")).collect::<String>()
    ));
    for (c, row) in confusion.counts.iter().enumerate() {
        out.line(format!(
            "  {c}: {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        ));
    }
}

/// One JSON object: accuracy (as the text report prints it), counts, per-class accuracy
/// (null for a class with no examples) and the matrix, rows by true class.
fn json(confusion: &Confusion) -> String {
    let acc = confusion.accuracy();
    let per_class: Vec<String> = confusion
        .per_class()
        .map(|(right, n)| match n {
            0 => "null".to_string(),
            n => format!("{}", right as f64 / n as f64),
        })
        .collect();
    let rows: Vec<String> = confusion
        .counts
        .iter()
        .map(|r| format!("[{}]", r.map(|n| n.to_string()).join(",")))
        .collect();
    format!(
        "{{\"accuracy\":{},\"correct\":{},\"total\":{},\"per_class\":[{}],\"confusion\":[{}]}}",
        acc.value(),
        acc.correct,
        acc.total,
        per_class.join(","),
        rows.join(",")
    )
}
