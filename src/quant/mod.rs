//! int8 quantization: the format, the calibration that makes it and the engine that runs it.
//!
//! The arithmetic is TensorFlow Lite's quantization specification, so that a network
//! quantized here and exported ([`crate::export`]) gives, in LiteRT's reference kernels, the
//! very integers our engine gives: the input is int8 with scale 1/255 and zero point -128
//! (pixel `p` is `p - 128`); weights are symmetric int8 (zero point 0), per tensor or per
//! output row; activations are asymmetric int8; biases are int32 with scale input scale ×
//! weight scale; every layer requantizes its int32 accumulator with a fixed-point multiplier
//! and shift ([`fixed`]); the last layer's int8 logits go through TFLite's int8 softmax
//! ([`softmax`]), whose output has scale 1/256 and zero point -128.
//!
//! - [`fixed`]: TFLite's and gemmlowp's fixed-point primitives.
//! - [`softmax`]: the int8 softmax.
//! - [`model`]: [`QModel`], its layers, and the int8 engine.
//! - [`calibrate`]: post-training quantization of a float [`crate::model::Mlp`].
//! - [`file`]: int8 model files (safetensors).

pub mod calibrate;
pub mod file;
pub mod fixed;
pub mod model;
pub mod softmax;

pub use model::{QLayer, QModel, QWorkspace, WeightScales};
