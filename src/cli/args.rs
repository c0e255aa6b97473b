//! Command-line syntax: clap definitions and the parsers that reject bad values as usage
//! errors (exit code 2) before anything runs.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use mnist_mlp::model::Arch;

/// Train and run a multilayer-perceptron MNIST classifier on the board itself.
///
/// Reproduces the TensorFlow i.MX8 tutorial "Creating a NN from Scratch" (a 784-512-256-128-10
/// network without activations, Adam, batch 128, 1000 iterations) and offers a ReLU network
/// worth keeping. No Python, no GPU: one static binary.
#[derive(Parser, Debug)]
#[command(name = "mnist-mlp", version, max_term_width = 100)]
pub struct Cli {
    /// More diagnostics on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network and report its test accuracy, in the tutorial's output format.
    #[command(after_help = TRAIN_EXAMPLES)]
    Train(TrainArgs),
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  mnist-mlp train                                  the tutorial: seed arch, 1000 iterations
  mnist-mlp train --arch relu --epochs 20          the network worth keeping
  mnist-mlp train --data /data/fashion --threads 4

Output (stdout), every --log-every iterations and at the end:
  Iteration 0 \t| Loss = 3.67079 \t| Accuracy = 0.140625
  ...

  Accuracy on test set: 0.9206";

/// Network architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    /// The tutorial's network: linear layers, no activations, lr 1e-4.
    Seed,
    /// ReLU hidden layers, He init, lr 1e-3.
    Relu,
}

impl From<ArchArg> for Arch {
    fn from(a: ArchArg) -> Arch {
        match a {
            ArchArg::Seed => Arch::Seed,
            ArchArg::Relu => Arch::Relu,
        }
    }
}

/// `mnist-mlp train` options.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
    /// and t10k-labels-idx1-ubyte, each raw (memory-mapped) or .gz (decompressed in memory).
    #[arg(long, value_name = "DIR", default_value = "data/mnist")]
    pub data: PathBuf,
    /// Network architecture.
    #[arg(long, value_enum, default_value_t = ArchArg::Seed)]
    pub arch: ArchArg,
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_name = "N,N,..", default_value = "512,256,128", value_parser = parse_hidden)]
    pub hidden: Hidden,
    /// Iterations (mini-batches) to train [default: 1000].
    #[arg(long, value_name = "N", value_parser = at_least_one, conflicts_with = "epochs")]
    pub iterations: Option<usize>,
    /// Train for this many passes over the training set instead.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value = "128", value_parser = at_least_one)]
    pub batch: usize,
    /// Adam learning rate [default: 1e-4 for seed, 1e-3 for relu].
    #[arg(long, value_name = "F", value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Seed of the initial weights and the batch order: the same seed gives the same run,
    /// whatever --threads is.
    #[arg(long, value_name = "N", default_value = "0")]
    pub seed: u64,
    /// Threads for the matrix products (at most 4 are used) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Print a progress line every N iterations.
    #[arg(long, value_name = "N", default_value = "100", value_parser = at_least_one)]
    pub log_every: usize,
}

/// Hidden layer widths (a newtype so clap treats the list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden(pub Vec<usize>);

fn parse_hidden(s: &str) -> Result<Hidden, String> {
    let widths = s
        .split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(0) => Err("layer widths must be at least 1".to_string()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("'{w}' is not a layer width; expected comma-separated positive integers like 512,256,128")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Hidden(widths))
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a positive integer".into()),
    }
}

fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number like 1e-3".into()),
    }
}

/// Parses the process arguments; prints help or a usage error and exits (0 or 2) on its own.
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hidden_lists_parse_or_explain() {
        assert_eq!(parse_hidden("512,256,128"), Ok(Hidden(vec![512, 256, 128])));
        assert_eq!(parse_hidden("64"), Ok(Hidden(vec![64])));
        assert!(parse_hidden("512,,128")
            .unwrap_err()
            .contains("not a layer width"));
        assert!(parse_hidden("512,x").unwrap_err().contains("'x'"));
        assert!(parse_hidden("0").unwrap_err().contains("at least 1"));
    }
}
