//! Command-line syntax: clap definitions and the parsers that reject bad values as usage
//! errors (exit code 2) before anything runs.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use mnist_mlp::data::default_dir;
use mnist_mlp::limits::{Limits, DEFAULT_MAX_FILE_MIB, DEFAULT_MAX_IMAGES, DEFAULT_MAX_IMAGE_SIDE};
use mnist_mlp::model::{Arch, MAX_PARAMS};

/// Train and run a multilayer-perceptron MNIST classifier on the board itself.
///
/// Reproduces the TensorFlow i.MX8 tutorial "Creating a NN from Scratch" (a 784-512-256-128-10
/// network without activations, Adam, batch 128, 1000 iterations) and offers a ReLU network
/// worth keeping. No Python, no GPU: one static binary.
#[derive(Parser, Debug)]
#[command(name = "mnist-mlp", version, max_term_width = 100)]
pub struct Cli {
    /// More diagnostics on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
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
    /// Evaluate a saved model on a test set: accuracy, per-class accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Classify 28×28 digit images (PGM or PNG), or test-set images by index.
    #[command(after_help = PREDICT_EXAMPLES)]
    Predict(PredictArgs),
    /// Measure this machine: GEMM GFLOP/s of every product of a training step, ms per step,
    /// ms to evaluate 10,000 images, share of the estimated peak. Synthetic data: no files needed.
    Bench(BenchArgs),
    /// Quantize a float32 model to int8 (TFLite's arithmetic), calibrated on training images;
    /// prints the float32 and int8 test accuracy side by side.
    Quantize(super::quantize::QuantizeArgs),
    /// Export a float32 or int8 model for another runtime: .tflite (LiteRT) or .onnx (float32).
    Export(super::export::ExportArgs),
    /// Describe the build and this machine: target, CPU and SIMD features, cores, the GEMM
    /// kernel that will run, page size.
    Info,
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  mnist-mlp train                                  the tutorial: seed arch, 1000 iterations
  mnist-mlp train --arch relu --epochs 20          the network worth keeping
  mnist-mlp train --data /data/fashion --threads 4

Output (stdout) of `mnist-mlp train` on the bundled data/mnist-10k, a line every --log-every
iterations and the test accuracy at the end:
  Iteration 0 \t| Loss = 3.25674 \t| Accuracy = 0.125
  ...
  Iteration 900 \t| Loss = 0.154491 \t| Accuracy = 0.976562

  Accuracy on test set: 0.9084
(The tutorial's TensorFlow run on the full 60k set printed 0.9206.)";

const PREDICT_EXAMPLES: &str = "\
Examples:
  mnist-mlp predict --model m.safetensors digit.png scan.pgm
  mnist-mlp predict --model m.safetensors --invert photo-of-paper.png
  mnist-mlp predict --model m.safetensors --index 0,5,17 --json

Output: one line per image, `NAME<TAB>DIGIT<TAB>PROBABILITY` (with --index, a fourth column:
the true label); with --json one object per line with the logits, all ten probabilities and,
with --index, the true label.";

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

/// `--log-every`'s default.
pub const DEFAULT_LOG_EVERY: usize = 100;

/// `--checkpoint-every`'s default.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 500;

/// `mnist-mlp train` options.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
    /// and t10k-labels-idx1-ubyte, each raw (memory-mapped) or .gz (decompressed in memory).
    /// Default: data/mnist if that directory exists (scripts/fetch-mnist.sh puts the full set
    /// there), else data/mnist-10k (the 10k-digit subset bundled with the repository); both
    /// relative to the current directory.
    #[arg(long, value_name = "DIR", default_value_os_t = default_dir())]
    pub data: PathBuf,
    /// Network architecture [default: seed].
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Hidden layer widths, comma-separated [default: 512,256,128].
    #[arg(long, value_name = "N,N,..", value_parser = parse_hidden)]
    pub hidden: Option<Hidden>,
    /// Iterations (mini-batches) to train [default: 1000].
    #[arg(long, value_name = "N", value_parser = at_least_one, conflicts_with = "epochs")]
    pub iterations: Option<usize>,
    /// Train for this many passes over the training set instead.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: 128].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub batch: Option<usize>,
    /// Adam learning rate [default: 1e-4 for seed, 1e-3 for relu].
    #[arg(long, value_name = "F", value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Seed of the initial weights and the batch order: the same seed gives the same run,
    /// whatever --threads is [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Threads for the matrix products and Adam (at most 8) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Print a progress line every N iterations.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_EVERY, value_parser = at_least_one)]
    pub log_every: usize,
    /// Learning-rate schedule: constant (the tutorial) or cosine annealing to zero over the run.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    pub lr_schedule: ScheduleArg,
    /// Take batches in file order instead of a shuffled one (to compare with other frameworks).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Save the trained network here (safetensors, PyTorch nn.Linear layout).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Start from the weights in this model file (fine-tuning); its architecture is used. A
    /// plain safetensors file (PyTorch's save_file) needs --arch.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Save the whole training state here periodically, at the end and on Ctrl-C/SIGTERM
    /// [default with --resume: the checkpoint resumed from].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Iterations between checkpoints.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHECKPOINT_EVERY, value_parser = at_least_one, requires = "checkpoint")]
    pub checkpoint_every: usize,
    /// Continue the run saved in this checkpoint, to the length it was started with (or to
    /// --iterations/--epochs in total, when given), checkpointing to the same file. The run's
    /// other settings (arch, sizes, batch, lr and its schedule, seed, order) come from the
    /// checkpoint.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["arch", "hidden", "batch", "lr", "seed", "no_shuffle", "lr_schedule"])]
    pub resume: Option<PathBuf>,
    /// Record iteration, loss, batch accuracy, elapsed ms and learning rate at every log step
    /// (and the test accuracy at the end) in this CSV file.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Ceilings on what input files may claim, so that a crafted or mistaken file is refused
/// before it can exhaust a small board's memory. A file over a limit is refused with a message
/// naming the flag that raises it.
#[derive(Args, Debug)]
#[command(next_help_heading = "Input limits (a file claiming more is refused)")]
pub struct LimitArgs {
    /// Most images (or labels) one data file may hold. MNIST has 60,000, EMNIST ByClass 697,932.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGES, value_parser = at_least_one)]
    pub max_images: usize,
    /// Most rows, and most columns, of the images of a data file. MNIST's are 28×28.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGE_SIDE, value_parser = at_least_one)]
    pub max_image_side: usize,
    /// Most MiB one file may take in memory: a .gz data file once decompressed (raw files are
    /// memory-mapped instead), a model or checkpoint file.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FILE_MIB, value_parser = at_least_one_u64)]
    pub max_file_mib: u64,
}

impl LimitArgs {
    /// The library's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_images: self.max_images,
            max_image_side: self.max_image_side,
            max_file_bytes: self.max_file_mib.saturating_mul(1 << 20),
        }
    }
}

/// `mnist-mlp bench` options.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Network architecture.
    #[arg(long, value_enum, default_value_t = ArchArg::Seed)]
    pub arch: ArchArg,
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_name = "N,N,..", default_value = "512,256,128", value_parser = parse_hidden)]
    pub hidden: Hidden,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value = "128", value_parser = at_least_one)]
    pub batch: usize,
    /// Timed repetitions of each measurement.
    #[arg(long, value_name = "N", default_value = "50", value_parser = at_least_one)]
    pub steps: usize,
    /// Threads for the matrix products and Adam (at most 8) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `mnist-mlp eval` options.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file written by `train --save` (or a checkpoint), or a plain safetensors file of
    /// fc1.weight, fc1.bias, … as PyTorch's save_file(model.state_dict()) writes it.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Architecture of a --model without mnist-mlp metadata (PyTorch, numpy): its shapes give
    /// the sizes, not whether the hidden layers have ReLU. Checked against a file that says.
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Directory holding t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz).
    /// Default: data/mnist if that directory exists, else data/mnist-10k (bundled with the
    /// repository); both relative to the current directory.
    #[arg(long, value_name = "DIR", default_value_os_t = default_dir())]
    pub data: PathBuf,
    /// Threads for the matrix products [default: number of cores].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// One JSON object: accuracy, correct, total, per_class, confusion (rows: true class).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `mnist-mlp predict` options.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model file written by `train --save` (or a checkpoint), or a plain safetensors file of
    /// fc1.weight, fc1.bias, … as PyTorch's save_file(model.state_dict()) writes it.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Architecture of a --model without mnist-mlp metadata (PyTorch, numpy): its shapes give
    /// the sizes, not whether the hidden layers have ReLU. Checked against a file that says.
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Images to classify: 28×28 grayscale PGM (P2/P5) or PNG, white digit on black.
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    pub images: Vec<PathBuf>,
    /// Classify these test-set images of --data instead (comma-separated indices).
    #[arg(long, value_name = "I,I,..", value_delimiter = ',')]
    pub index: Vec<usize>,
    /// Directory of the test set used by --index [default: data/mnist if that directory
    /// exists, else data/mnist-10k; both relative to the current directory].
    #[arg(long, value_name = "DIR", requires = "index")]
    pub data: Option<PathBuf>,
    /// The images are dark digits on a light background: invert them first (image files
    /// only; test-set images are white on black already).
    #[arg(long, conflicts_with = "index")]
    pub invert: bool,
    /// One JSON object per line, with logits and all probabilities.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The same rate throughout.
    Constant,
    /// Cosine annealing from --lr to zero at the last iteration.
    Cosine,
}

impl From<ScheduleArg> for mnist_mlp::train::Schedule {
    fn from(s: ScheduleArg) -> Self {
        match s {
            ScheduleArg::Constant => Self::Constant,
            ScheduleArg::Cosine => Self::Cosine,
        }
    }
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
    // The network on 28×28 inputs and 10 classes must fit the largest one the engine builds.
    let mut sizes = vec![28 * 28];
    sizes.extend(&widths);
    sizes.push(10);
    let params = sizes.windows(2).try_fold(0usize, |sum, w| {
        w[1].checked_mul(w[0] + 1)?.checked_add(sum)
    });
    match params {
        Some(p) if p <= MAX_PARAMS => Ok(Hidden(widths)),
        _ => Err(format!(
            "a network of these widths has more than {MAX_PARAMS} parameters, the largest \
             mnist-mlp builds; use narrower layers"
        )),
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a positive integer".into()),
    }
}

fn at_least_one_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
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
        // Too large for the engine is a usage error too, found before any data is read.
        assert!(parse_hidden("100000,100000")
            .unwrap_err()
            .contains("more than 67108864 parameters"));
        // The largest single layer that fits: 784·w + w + 10·w + 10 ≤ 2^26.
        let w = (MAX_PARAMS - 10) / 795;
        assert!(parse_hidden(&w.to_string()).is_ok());
        assert!(parse_hidden(&(w + 1).to_string()).is_err());
    }
}
