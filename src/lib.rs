//! mnist-mlp: train and run a multilayer-perceptron digit classifier on MNIST, on the board.
//!
//! The engine behind the `mnist-mlp` command, small enough to read in an afternoon:
//!
//! - [`idx`] maps IDX files (or decompresses `.gz` ones) and validates them; [`data`] pairs
//!   images with labels and draws shuffled mini-batches, converting `u8` pixels to `f32` one
//!   batch at a time.
//! - [`gemm`] is the one wrapper around `matrixmultiply::sgemm`; [`layers`] and [`loss`] are
//!   forward/backward pairs over flat slices; [`optim`] is Adam as TensorFlow 1 computes it.
//! - [`model`] holds the network (one flat parameter buffer and its layout) and its passes;
//!   [`train`] runs the tutorial's loop; [`report`] prints its lines.
//! - [`sysinfo`] describes the build and the CPU for `mnist-mlp info`.
//!
//! Two architectures: `seed`, the tutorial's 784-512-256-128-10 network with no activations
//! (kept on purpose: it is what users compare against), and `relu`, the one worth keeping.
//! Errors are one [`Error`] enum whose messages name the file and the problem.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod export;
pub mod fsio;
pub mod gemm;
pub mod idx;
pub mod image;
pub mod layers;
pub mod limits;
pub mod loss;
pub mod model;
pub mod model_file;
pub mod optim;
pub mod pool;
pub mod quant;
pub mod report;
pub mod rng;
pub mod sysinfo;
pub mod train;

pub use error::{Error, Result};
