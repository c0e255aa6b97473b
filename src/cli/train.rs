//! `mnist-mlp train`: opens the data, trains, prints the tutorial's lines.

use anyhow::{Context, Result};
use mnist_mlp::data::{Dataset, Split};
use mnist_mlp::gemm;
use mnist_mlp::train::{train, Length, TrainConfig};

use super::args::TrainArgs;
use super::Out;

pub fn run(a: TrainArgs) -> Result<()> {
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match gemm::set_threads(threads) {
        Some(n) if n < threads => {
            log::info!("{threads} threads asked for, matrixmultiply uses at most {n}")
        }
        Some(n) => log::debug!("{n} GEMM threads"),
        None => log::warn!("GEMM threads already fixed; --threads {threads} ignored"),
    }
    let cfg = TrainConfig {
        arch: a.arch.into(),
        hidden: a.hidden.0,
        length: match (a.iterations, a.epochs) {
            (_, Some(e)) => Length::Epochs(e),
            (Some(i), None) => Length::Iterations(i),
            (None, None) => Length::Iterations(1000),
        },
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        log_every: a.log_every,
        shuffle: true,
    };
    let train_set = Dataset::open(&a.data, Split::Train).context("loading the training set")?;
    let test_set = Dataset::open(&a.data, Split::Test).context("loading the test set")?;
    let mut out = Out::new();
    let outcome = train(&cfg, &train_set, &test_set, |line| out.line(line))?;
    out.line("");
    out.line(outcome.test);
    out.finish()
}
