//! `mnist-mlp eval`: test accuracy, per-class accuracy and the confusion matrix of a model.

use anyhow::{Context, Result};
use mnist_mlp::data::{Dataset, Split, CLASSES};
use mnist_mlp::report::TestAccuracy;

use super::args::EvalArgs;
use super::{load_model, note_decompressed, set_threads, Out};

pub fn run(a: EvalArgs) -> Result<u8> {
    set_threads(a.threads);
    let limits = a.limits.limits();
    let model = load_model(&a.model, a.arch, &limits)
        .context("loading the model")?
        .model;
    let test = Dataset::open_with(&a.data, Split::Test, &limits).context("loading the test set")?;
    note_decompressed(&[&test]);
    let predicted = model.classify(&test)?;
    // confusion[true][predicted]
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    for (&p, &t) in predicted.iter().zip(test.labels()) {
        confusion[usize::from(t)][usize::from(p)] += 1;
    }
    let correct: usize = (0..CLASSES).map(|c| confusion[c][c]).sum();
    let mut out = Out::new();
    out.line(TestAccuracy {
        correct,
        total: test.len(),
    });
    out.line("");
    out.line("Per-class accuracy:");
    for (c, row) in confusion.iter().enumerate() {
        let n: usize = row.iter().sum();
        let acc = if n == 0 {
            String::from("-")
        } else {
            format!("{:.4}", row[c] as f64 / n as f64)
        };
        out.line(format!("  {c}: {acc} ({}/{n})", row[c]));
    }
    out.line("");
    out.line("Confusion matrix (rows: true class, columns: predicted):");
    out.line(format!(
        "     {}",
        (0..CLASSES).map(|c| format!("{c:>5}")).collect::<String>()
    ));
    for (c, row) in confusion.iter().enumerate() {
        out.line(format!(
            "  {c}: {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        ));
    }
    out.finish()?;
    Ok(0)
}
