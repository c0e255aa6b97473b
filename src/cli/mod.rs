//! The subcommands: each turns validated arguments into library calls and prints the result.

pub mod args;
mod eval;
mod export;
mod int8;
mod predict;
mod quantize;
mod signals;
mod train;

use std::io::Write;

use anyhow::Result;

use args::{Cli, Command};

/// Loads the model file of `eval`, `predict` or `train --init` within `limits`. `arch` (the
/// `--arch` given) reads a plain safetensors file without our metadata; a file that names its
/// architecture must agree with it.
pub fn load_model(
    path: &std::path::Path,
    arch: Option<args::ArchArg>,
    limits: &mnist_mlp::limits::Limits,
) -> Result<mnist_mlp::model_file::Loaded> {
    let arch = arch.map(mnist_mlp::model::Arch::from);
    // A checkpoint is a usable model too: its extra tensors are allowed.
    let f = mnist_mlp::model_file::load_as(path, &mnist_mlp::checkpoint::EXTRAS, limits, arch)?;
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
        Command::Quantize(a) => quantize::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => {
            let threads = set_threads(a.threads);
            let cfg = mnist_mlp::bench::BenchConfig {
                arch: a.arch.into(),
                hidden: a.hidden.0,
                batch: a.batch,
                steps: a.steps,
                threads,
            };
            let report = mnist_mlp::bench::measure(&cfg)?;
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
    let files: Vec<_> = sets.iter().flat_map(|s| s.decompressed()).collect();
    if files.is_empty() {
        return;
    }
    for (path, bytes) in &files {
        log::debug!(
            "decompressed {} into memory ({} KiB)",
            path.display(),
            bytes.div_ceil(1024)
        );
    }
    let total: usize = files.iter().map(|(_, b)| b).sum();
    log::info!(
        "{} .gz data file{} decompressed into memory ({:.1} MiB); gunzip them \
         (scripts/fetch-mnist.sh --gunzip) to have them memory-mapped instead",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        total as f64 / f64::from(1 << 20)
    );
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
    let logger = env_logger::Builder::from_env(
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
    .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(BarAware(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// The progress bar on the terminal, if one is shown: log lines are written with it cleared
/// and redrawn after them, so that a line never runs into the bar.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows `bar` (a clone shares the bar) until [`hide_bar`].
pub fn show_bar(bar: &indicatif::ProgressBar) {
    if let Ok(mut b) = BAR.lock() {
        *b = Some(bar.clone());
    }
}

/// Clears the bar from the terminal; later log lines are written as they come.
pub fn hide_bar() {
    if let Some(bar) = BAR.lock().ok().and_then(|mut b| b.take()) {
        bar.finish_and_clear();
    }
}

/// env_logger, with the progress bar suspended around each line.
struct BarAware(env_logger::Logger);

impl log::Log for BarAware {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.0.matches(record) {
            return;
        }
        match BAR.lock().ok().and_then(|b| b.clone()) {
            Some(bar) => bar.suspend(|| self.0.log(record)),
            None => self.0.log(record),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
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
