//! The int8 network and its engine: int8 × int8 products accumulated in int32, requantized
//! to int8 by TFLite's fixed-point multiplier and shift, ReLU as the clamp of the output
//! range, and TFLite's int8 softmax at the end.
//!
//! Layer `l` takes int8 activations with scale `s_in` and zero point `z_in` (the input's are
//! fixed: 1/255 and -128, so pixel `p` is `p - 128`), symmetric int8 weights (`(O, I)`, zero
//! point 0, one scale per tensor or per output row), an int32 bias with scale
//! `s_in · s_w`, and produces int8 outputs with scale `s_out` and zero point `z_out`:
//!
//! `y[o] = clamp(z_out + M_o(Σ_i (x[i] - z_in) · w[o, i] + b[o]), lo, hi)`
//!
//! where `M_o` multiplies by `s_in · s_w[o] / s_out` in fixed point
//! ([`multiply_by_quantized_multiplier`]) and `lo` is `max(-128, z_out)` after a ReLU, `-128`
//! otherwise. The product is computed as `Σ x·w - z_in·Σ w`, with `z_in·Σ w` folded into the
//! bias once, so the hot loop is a plain int8 dot product: on aarch64, NEON widening
//! multiplies (`smull`) and pairwise accumulates (`sadalp`).

use super::fixed::{multiply_by_quantized_multiplier, quantize_multiplier};
use super::softmax::{softmax_i8, SoftmaxParams};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Arch, EVAL_BATCH};

/// Scale of the network's int8 input: a pixel `p` in 0..=255 is `p / 255`.
pub const INPUT_SCALE: f32 = 1.0 / 255.0;
/// Zero point of the int8 input: pixel `p` is stored as `p - 128`.
pub const INPUT_ZERO_POINT: i32 = -128;

/// How weight scales are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightScales {
    /// One scale for the whole weight tensor (every delegate takes it).
    PerTensor,
    /// One scale per output row (TFLite's per-channel quantization, dimension 0).
    PerChannel,
}

impl WeightScales {
    /// The name used in model files.
    pub fn name(self) -> &'static str {
        match self {
            WeightScales::PerTensor => "per-tensor",
            WeightScales::PerChannel => "per-channel",
        }
    }
}

/// One fully connected layer, quantized.
#[derive(Clone, Debug, PartialEq)]
pub struct QLayer {
    /// Inputs `I`.
    pub inputs: usize,
    /// Outputs `O`.
    pub outputs: usize,
    /// Weights `(O, I)`, zero point 0.
    pub weight: Vec<i8>,
    /// Weight scales: one (per tensor) or `O` (per output row).
    pub weight_scale: Vec<f32>,
    /// Bias `(O)`, with scale `input scale × weight scale` and zero point 0.
    pub bias: Vec<i32>,
    /// Scale of the layer's int8 output.
    pub output_scale: f32,
    /// Zero point of the layer's int8 output.
    pub output_zero_point: i32,
    /// Whether a ReLU follows (fused into the output range).
    pub relu: bool,
}

/// What a layer's kernel precomputes: TFLite's multipliers and ranges, the folded bias.
#[derive(Clone, Debug)]
struct Kernel {
    /// `b[o] - z_in · Σ_i w[o, i]` (O).
    bias: Vec<i32>,
    /// Fixed-point multiplier of each output (O).
    multiplier: Vec<i32>,
    /// Its shift (O).
    shift: Vec<i32>,
    /// Output zero point.
    zero_point: i32,
    /// Output clamp.
    range: (i32, i32),
}

/// An int8 network ready to run.
#[derive(Clone, Debug)]
pub struct QModel {
    arch: Arch,
    scales: WeightScales,
    layers: Vec<QLayer>,
    kernels: Vec<Kernel>,
    softmax: SoftmaxParams,
}

/// The scale of a layer's input: the network input's, or the previous layer's output's.
fn input_params(layers: &[QLayer], l: usize) -> (f32, i32) {
    match l {
        0 => (INPUT_SCALE, INPUT_ZERO_POINT),
        _ => (layers[l - 1].output_scale, layers[l - 1].output_zero_point),
    }
}

/// Layer `l` of `layers` as [`QModel::new`] checks it; the error names the layer.
fn check_layer(layers: &[QLayer], l: usize, scales: WeightScales) -> Result<(), String> {
    let q = &layers[l];
    let name = format!("fc{}", l + 1);
    if l > 0 && q.inputs != layers[l - 1].outputs {
        return Err(format!(
            "{name} takes {} inputs but fc{l} gives {}",
            q.inputs,
            layers[l - 1].outputs
        ));
    }
    if q.inputs == 0
        || q.outputs == 0
        || q.weight.len() != q.inputs * q.outputs
        || q.bias.len() != q.outputs
        || q.weight_scale.len() != scales.count(q.outputs)
    {
        return Err(format!(
            "{name}: tensor sizes do not match {}x{}",
            q.outputs, q.inputs
        ));
    }
    let positive = |s: f32| s.is_finite() && s > 0.0;
    if !q.weight_scale.iter().all(|&s| positive(s)) || !positive(q.output_scale) {
        return Err(format!("{name}: scales must be positive finite numbers"));
    }
    if !(-128..=127).contains(&q.output_zero_point) {
        return Err(format!(
            "{name}: output zero point {} is outside -128..=127",
            q.output_zero_point
        ));
    }
    Ok(())
}

impl WeightScales {
    /// How many weight scales a layer of `outputs` outputs has.
    pub fn count(self, outputs: usize) -> usize {
        match self {
            WeightScales::PerTensor => 1,
            WeightScales::PerChannel => outputs,
        }
    }
}

impl Kernel {
    /// The precomputed arithmetic of layer `l` of `layers` (checked): each output's bias with
    /// the input zero point folded in, and its requantization multiplier and shift.
    fn of(layers: &[QLayer], l: usize, scales: WeightScales) -> Result<Kernel, String> {
        let q = &layers[l];
        let name = format!("fc{}", l + 1);
        let (in_scale, in_zp) = input_params(layers, l);
        let mut k = Kernel {
            bias: Vec::with_capacity(q.outputs),
            multiplier: Vec::with_capacity(q.outputs),
            shift: Vec::with_capacity(q.outputs),
            zero_point: q.output_zero_point,
            range: if q.relu {
                (q.output_zero_point.max(-128), 127)
            } else {
                (-128, 127)
            },
        };
        let per_tensor = scales.count(q.outputs) == 1;
        for (o, (row, &b)) in q.weight.chunks_exact(q.inputs).zip(&q.bias).enumerate() {
            let w_sum: i64 = row.iter().map(|&w| i64::from(w)).sum();
            let folded = i64::from(b) - i64::from(in_zp) * w_sum;
            let folded = i32::try_from(folded).map_err(|_| {
                format!("{name}: bias {o} overflows int32 with the input zero point")
            })?;
            let w_scale = q.weight_scale[if per_tensor { 0 } else { o }];
            // TFLite: input scale × filter scale / output scale, in double from f32.
            let real = f64::from(in_scale) * f64::from(w_scale) / f64::from(q.output_scale);
            let (m, s) = quantize_multiplier(real);
            if !(-31..=30).contains(&s) {
                return Err(format!(
                    "{name}: output {o}'s rescale factor {real:e} is out of range"
                ));
            }
            k.bias.push(folded);
            k.multiplier.push(m);
            k.shift.push(s);
        }
        Ok(k)
    }
}

impl QModel {
    /// Checks `layers` (sizes that chain, tensors of the right lengths, positive finite
    /// scales, zero points in int8 range) and precomputes each layer's kernel.
    pub fn new(arch: Arch, scales: WeightScales, layers: Vec<QLayer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("an int8 network needs at least one layer"));
        }
        let mut kernels = Vec::with_capacity(layers.len());
        for l in 0..layers.len() {
            check_layer(&layers, l, scales).map_err(Error::config)?;
            kernels.push(Kernel::of(&layers, l, scales).map_err(Error::config)?);
        }
        let last = layers[layers.len() - 1].output_scale;
        Ok(QModel {
            arch,
            scales,
            softmax: SoftmaxParams::new(last),
            layers,
            kernels,
        })
    }

    /// The architecture the float network had.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// How the weight scales were chosen.
    pub fn weight_scales(&self) -> WeightScales {
        self.scales
    }

    /// The layers.
    pub fn layers(&self) -> &[QLayer] {
        &self.layers
    }

    /// Inputs of the first layer.
    pub fn input(&self) -> usize {
        self.layers[0].inputs
    }

    /// Outputs of the last layer.
    pub fn classes(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// Scale and zero point of the int8 logits (the last layer's output).
    pub fn logits_params(&self) -> (f32, i32) {
        let last = &self.layers[self.layers.len() - 1];
        (last.output_scale, last.output_zero_point)
    }

    /// Runs the first `bsz` rows of `pixels` (B, I) through the network in `ws`: afterwards
    /// [`QWorkspace::logits`] and [`QWorkspace::probabilities`] hold the int8 logits and the
    /// int8 softmax output (scale 1/256, zero point -128).
    pub fn forward(&self, ws: &mut QWorkspace, pixels: &[u8], bsz: usize) {
        let input = self.input();
        let x = &mut ws.acts[0][..bsz * input];
        for (q, &p) in x.iter_mut().zip(&pixels[..bsz * input]) {
            *q = (p ^ 0x80) as i8; // p - 128
        }
        for (l, (layer, kernel)) in self.layers.iter().zip(&self.kernels).enumerate() {
            let (lower, upper) = ws.acts.split_at_mut(l + 1);
            let x = &lower[l][..bsz * layer.inputs]; // (B, I)
            let y = &mut upper[0][..bsz * layer.outputs]; // (B, O)
            fully_connected(y, x, &layer.weight, kernel, layer.inputs);
        }
        let c = self.classes();
        let logits = &ws.acts[self.layers.len()][..bsz * c];
        for (z, p) in logits
            .chunks_exact(c)
            .zip(ws.probs[..bsz * c].chunks_exact_mut(c))
        {
            softmax_i8(&self.softmax, z, p);
        }
        ws.rows = bsz;
    }

    /// The class the network picks (the largest int8 logit, the first of equals) for every
    /// example of `ds`, in order.
    pub fn classify(&self, ds: &Dataset) -> Result<Vec<u8>> {
        ds.expect_pixels(self.input())?;
        let mut out = Vec::with_capacity(ds.len());
        let mut ws = QWorkspace::new(self, EVAL_BATCH.min(ds.len()).max(1));
        let images = ds.images();
        let mut pixels = vec![0u8; ws.capacity * self.input()];
        let mut start = 0;
        while start < ds.len() {
            let bsz = ws.capacity.min(ds.len() - start);
            for (r, row) in pixels.chunks_exact_mut(self.input()).take(bsz).enumerate() {
                row.copy_from_slice(images.image(start + r));
            }
            self.forward(&mut ws, &pixels, bsz);
            out.extend(
                ws.logits()
                    .chunks_exact(self.classes())
                    .map(|z| argmax_i8(z) as u8),
            );
            start += bsz;
        }
        Ok(out)
    }
}

/// Index of the largest value, the first of equals.
pub fn argmax_i8(z: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Input rows each weight row is multiplied with in turn: the weight row (I bytes) is read
/// from L2 once per `ROWS` inputs and from L1 for the rest (layer 1's weights, 392 KiB, do not
/// fit L1), and the `ROWS` input rows stay in L1.
const ROWS: usize = 8;

/// `y = requantize(x · wᵀ + b)`: `y` (B, O), `x` (B, I), `w` (O, I). On x86_64 with AVX2 the
/// same code compiled for AVX2 runs (the portable build targets SSE2, where LLVM widens 4 bytes
/// at a time); aarch64 always has NEON.
fn fully_connected(y: &mut [i8], x: &[i8], w: &[i8], k: &Kernel, inputs: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        return unsafe { fully_connected_avx2(y, x, w, k, inputs) };
    }
    fully_connected_portable(y, x, w, k, inputs)
}

/// [`fully_connected_portable`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fully_connected_avx2(y: &mut [i8], x: &[i8], w: &[i8], k: &Kernel, inputs: usize) {
    fully_connected_portable(y, x, w, k, inputs)
}

/// The kernel itself, inlined into each of its compilations.
#[inline(always)]
fn fully_connected_portable(y: &mut [i8], x: &[i8], w: &[i8], k: &Kernel, inputs: usize) {
    let outputs = k.bias.len();
    for (xb, yb) in x.chunks(ROWS * inputs).zip(y.chunks_mut(ROWS * outputs)) {
        let params = k.bias.iter().zip(k.multiplier.iter().zip(&k.shift));
        for (o, (wr, (&b, (&m, &s)))) in w.chunks_exact(inputs).zip(params).enumerate() {
            for (xr, yr) in xb.chunks_exact(inputs).zip(yb.chunks_exact_mut(outputs)) {
                let acc = dot(xr, wr).wrapping_add(b);
                let v = multiply_by_quantized_multiplier(acc, m, s).saturating_add(k.zero_point);
                yr[o] = v.clamp(k.range.0, k.range.1) as i8;
            }
        }
    }
}

/// `Σ x[i]·w[i]` in int32. Each product fits an i16 (|x·w| <= 2^14), which is what lets LLVM
/// use widening 8-bit multiplies (`smull`) and widening int32 adds (`saddw`) on NEON.
#[inline(always)]
fn dot(x: &[i8], w: &[i8]) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&a, &b)| i32::from(i16::from(a) * i16::from(b)))
        .sum()
}

/// The int8 activations of a batch of up to `capacity` rows, allocated once.
pub struct QWorkspace {
    capacity: usize,
    rows: usize,
    /// `acts[0]` is the input (B, I); `acts[l + 1]` the output of layer `l`.
    acts: Vec<Vec<i8>>,
    /// Softmax output (B, C).
    probs: Vec<i8>,
}

impl QWorkspace {
    /// Buffers for batches of up to `capacity` rows of `model`.
    pub fn new(model: &QModel, capacity: usize) -> Self {
        let mut acts = vec![vec![0; capacity * model.input()]];
        acts.extend(model.layers.iter().map(|l| vec![0; capacity * l.outputs]));
        QWorkspace {
            capacity,
            rows: 0,
            probs: vec![0; capacity * model.classes()],
            acts,
        }
    }

    /// The int8 logits of the last forward pass (B, C): the tensor entering the softmax.
    pub fn logits(&self) -> &[i8] {
        let last = &self.acts[self.acts.len() - 1];
        &last[..self.rows * (last.len() / self.capacity)]
    }

    /// The int8 softmax output of the last forward pass (B, C), scale 1/256, zero point -128.
    pub fn probabilities(&self) -> &[i8] {
        &self.probs[..self.rows * (self.probs.len() / self.capacity)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive twin: the formula of the module documentation, term by term.
    #[allow(clippy::needless_range_loop)] // indexed as the formula is written
    fn naive(layer: &QLayer, in_zp: i32, x: &[i8], scales: (f32, f32)) -> Vec<i8> {
        let (in_scale, _) = scales;
        (0..layer.outputs)
            .map(|o| {
                let mut acc = layer.bias[o];
                for i in 0..layer.inputs {
                    acc +=
                        (i32::from(x[i]) - in_zp) * i32::from(layer.weight[o * layer.inputs + i]);
                }
                let ws = layer.weight_scale[if layer.weight_scale.len() == 1 { 0 } else { o }];
                let real = f64::from(in_scale) * f64::from(ws) / f64::from(layer.output_scale);
                let (m, s) = quantize_multiplier(real);
                let v = multiply_by_quantized_multiplier(acc, m, s) + layer.output_zero_point;
                let lo = if layer.relu {
                    layer.output_zero_point.max(-128)
                } else {
                    -128
                };
                v.clamp(lo, 127) as i8
            })
            .collect()
    }

    #[test]
    fn the_folded_kernel_matches_the_naive_formula() {
        let mut rng = crate::rng::Rng::new(9);
        let mut byte = || rng.below(256) as u8 as i8;
        for (scales, relu) in [
            (WeightScales::PerTensor, false),
            (WeightScales::PerChannel, true),
        ] {
            let (i, o) = (37, 5);
            let layer = QLayer {
                inputs: i,
                outputs: o,
                weight: (0..i * o).map(|_| byte()).collect(),
                weight_scale: match scales {
                    WeightScales::PerTensor => vec![0.01],
                    WeightScales::PerChannel => (0..o).map(|k| 0.003 * (k + 1) as f32).collect(),
                },
                bias: (0..o).map(|k| (k as i32 - 2) * 1000).collect(),
                output_scale: 0.2,
                output_zero_point: 7,
                relu,
            };
            let m = QModel::new(Arch::Relu, scales, vec![layer.clone()]).unwrap();
            let pixels: Vec<u8> = (0..11 * i).map(|_| byte() as u8).collect();
            let mut ws = QWorkspace::new(&m, 11);
            m.forward(&mut ws, &pixels, 11);
            for (r, row) in pixels.chunks_exact(i).enumerate() {
                let x: Vec<i8> = row.iter().map(|&p| (i32::from(p) - 128) as i8).collect();
                let want = naive(&layer, INPUT_ZERO_POINT, &x, (INPUT_SCALE, 0.0));
                assert_eq!(&ws.logits()[r * o..(r + 1) * o], &want[..]);
            }
        }
    }

    #[test]
    fn inconsistent_layers_are_refused() {
        let layer = QLayer {
            inputs: 2,
            outputs: 1,
            weight: vec![1, 2],
            weight_scale: vec![f32::NAN],
            bias: vec![0],
            output_scale: 1.0,
            output_zero_point: 0,
            relu: false,
        };
        let e = QModel::new(Arch::Seed, WeightScales::PerTensor, vec![layer]).unwrap_err();
        assert!(e.to_string().contains("positive finite"), "{e}");
    }
}
