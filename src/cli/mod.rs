//! The subcommands: each turns validated arguments into library calls and prints the result.

pub mod args;
mod eval;
mod predict;
mod signals;
mod train;

use std::io::Write;

use anyhow::Result;

use args::{Cli, Command};

/// Extra tensors a model file may carry: a checkpoint is a usable model too.
pub const MODEL_EXTRAS: [&str; 3] = ["adam.m", "adam.v", "data.order"];

/// Loads the model file of `eval`, `predict` or `train --init` within `limits`. `arch` (the
/// `--arch` given) reads a plain safetensors file without our metadata; a file that names its
/// architecture must agree with it.
pub fn load_model(
    path: &std::path::Path,
    arch: Option<args::ArchArg>,
    limits: &mnist_mlp::limits::Limits,
) -> Result<mnist_mlp::model_file::Loaded> {
    let arch = arch.map(mnist_mlp::model::Arch::from);
    let f = mnist_mlp::model_file::load_as(path, &MODEL_EXTRAS, limits, arch)?;
    if let Some(a) = arch.filter(|&a| a != f.model.arch()) {
        anyhow::bail!(
            "--arch {} conflicts with {} (a {} network)",
            a.name(),
            path.display(),
            f.model.arch().name()
        );
    }
    Ok(f)
}

/// Runs the parsed command line; returns the exit code of a run that did not fail.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Bench(a) => {
            let threads = set_threads(a.threads);
            let cfg = mnist_mlp::bench::BenchConfig {
                arch: a.arch.into(),
                hidden: a.hidden.0,
                batch: a.batch,
                steps: a.steps,
                threads,
            };
            let report = mnist_mlp::bench::run(&cfg)?;
            let mut out = Out::new();
            if a.json {
                out.line(report.to_json());
            } else {
                out.line(report);
            }
            out.finish()?;
            Ok(0)
        }
        Command::Info => {
            let mut out = Out::new();
            out.line(mnist_mlp::sysinfo::SystemInfo::detect());
            out.finish()?;
            Ok(0)
        }
    }
}

/// Says which data files were decompressed into memory. Called once every input is known to
/// be good, so that a bad input's error stays the only line on stderr.
pub fn note_decompressed(sets: &[&mnist_mlp::data::Dataset]) {
    for (path, bytes) in sets.iter().flat_map(|s| s.decompressed()) {
        log::info!(
            "decompressed {} into memory ({} KiB); gunzip it to have it memory-mapped instead",
            path.display(),
            bytes.div_ceil(1024)
        );
    }
}

/// Sizes the thread pool of the matrix products and Adam to `threads` (default: one per core)
/// before any product runs; returns the number it will use.
pub fn set_threads(threads: Option<usize>) -> usize {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match mnist_mlp::gemm::set_threads(threads) {
        Some(n) => {
            if n < threads {
                log::info!("{threads} threads asked for, using at most {n}");
            }
            log::debug!("{n} GEMM threads");
            n
        }
        None => {
            log::warn!("GEMM threads already fixed; --threads {threads} ignored");
            threads
        }
    }
}

/// Diagnostics go to stderr through `log`: `info` by default, `-q` warnings only, `-v` debug,
/// `-vv` trace; `RUST_LOG`, when set, wins.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(format!("mnist_mlp={level}")),
    )
    .format(|buf, record| {
        writeln!(
            buf,
            "mnist-mlp: {}: {}",
            record.level().as_str().to_lowercase(),
            record.args()
        )
    })
    .init();
}

/// Lines for stdout, written so that a closed pipe (`| head`) ends the program quietly rather
/// than with a panic.
pub struct Out {
    out: std::io::Stdout,
    failed: Option<std::io::Error>,
}

impl Out {
    pub fn new() -> Self {
        Out {
            out: std::io::stdout(),
            failed: None,
        }
    }

    /// Writes one line; after a failure, further lines are dropped.
    pub fn line(&mut self, line: impl std::fmt::Display) {
        if self.failed.is_none() {
            if let Err(e) = writeln!(self.out.lock(), "{line}") {
                self.failed = Some(e);
            }
        }
    }

    /// Flushes, and reports a write failure other than a closed pipe.
    pub fn finish(mut self) -> Result<()> {
        if self.failed.is_none() {
            self.failed = self.out.flush().err();
        }
        match self.failed {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(e).context("writing to stdout"))
            }
            _ => Ok(()),
        }
    }
}
