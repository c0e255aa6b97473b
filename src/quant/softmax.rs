//! The int8 softmax of TFLite's reference kernel, bit for bit: int8 logits with scale `s` in,
//! int8 probabilities with scale 1/256 and zero point -128 out.
//!
//! Its parameters come from the logits' scale alone ([`SoftmaxParams::new`], TFLite's
//! `PreprocessSoftmaxScaling` and `CalculateInputRadius` with beta 1); each row is then
//! `exp(x - max)` in fixed point (Q5.26 in, Q0.31 out), summed in Q12.19, and multiplied by
//! the sum's reciprocal. Differences below `diff_min` count as zero probability.

use super::fixed::{
    exp_on_negative_values, quantize_multiplier, reciprocal, rescale, rounding_divide_by_pot, srdhm,
};

/// Integer bits of the scaled differences fed to `exp` (Q5.26).
const SCALED_DIFF_INTEGER_BITS: i32 = 5;
/// Integer bits of the sum of exponentials (Q12.19).
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// The output's scale: TFLite's int8 softmax contract.
pub const OUTPUT_SCALE: f32 = 1.0 / 256.0;
/// The output's zero point: TFLite's int8 softmax contract.
pub const OUTPUT_ZERO_POINT: i32 = -128;

/// What the kernel precomputes from the input scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// `scale · 2^26`, as a multiplier greater than one.
    multiplier: i32,
    /// Its left shift.
    left_shift: i32,
    /// Differences from the row's maximum below this count as zero probability.
    diff_min: i32,
}

impl SoftmaxParams {
    /// The parameters for logits of scale `input_scale` (beta 1), computed as TFLite's
    /// `SoftmaxPrepare` computes them, in double precision from the f32 scale.
    pub fn new(input_scale: f32) -> Self {
        let real = (f64::from(input_scale) * f64::from(1i32 << (31 - SCALED_DIFF_INTEGER_BITS)))
            .min(f64::from((1 << 30) - 1)); // the single-rounding build's cap
        let (multiplier, left_shift) = quantize_multiplier(real);
        let left_shift = left_shift.max(0);
        // CalculateInputRadius: the largest difference whose rescaling does not overflow.
        let max_input_rescaled = f64::from((1 << SCALED_DIFF_INTEGER_BITS) - 1)
            * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
            / (1i64 << left_shift) as f64;
        SoftmaxParams {
            multiplier,
            left_shift,
            diff_min: -(max_input_rescaled.floor() as i32),
        }
    }

    /// `exp(x - max)` in Q0.31 for one difference `diff = x - max <= 0`, or `None` below
    /// `diff_min`.
    #[inline]
    fn exp(&self, diff: i32) -> Option<i32> {
        (diff >= self.diff_min).then(|| {
            let rescaled = srdhm(diff * (1 << self.left_shift), self.multiplier);
            exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
        })
    }
}

/// Softmax of one row of int8 logits into int8 probabilities (`out` as long as `logits`).
pub fn softmax_i8(params: &SoftmaxParams, logits: &[i8], out: &mut [i8]) {
    let max = logits.iter().copied().max().unwrap_or(i8::MIN);
    let diff = |x: i8| i32::from(x) - i32::from(max);
    let sum: i32 = logits
        .iter()
        .filter_map(|&x| params.exp(diff(x)))
        .map(|e| rescale(e, 0, ACCUMULATION_INTEGER_BITS))
        .fold(0i32, i32::wrapping_add);
    let (scale, bits_over_unit) = reciprocal(sum, ACCUMULATION_INTEGER_BITS);
    let exponent = (bits_over_unit + 31 - 8).clamp(0, 31);
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = match params.exp(diff(x)) {
            Some(e) => {
                let unsat = rounding_divide_by_pot(srdhm(scale, e), exponent);
                (unsat + OUTPUT_ZERO_POINT).clamp(-128, 127) as i8
            }
            None => i8::MIN,
        };
    }
}

/// An int8 probability as a real number: `(q + 128) / 256`.
pub fn dequantize(q: i8) -> f32 {
    (i32::from(q) - OUTPUT_ZERO_POINT) as f32 * OUTPUT_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float softmax of the dequantized logits, the oracle within one output step.
    fn oracle(scale: f32, logits: &[i8]) -> Vec<f64> {
        let z: Vec<f64> = logits
            .iter()
            .map(|&q| f64::from(q) * f64::from(scale))
            .collect();
        let m = z.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn probabilities_are_within_a_step_of_the_float_softmax() {
        let mut rng = crate::rng::Rng::new(3);
        for scale in [0.02f32, 0.1, 0.25, 1.0] {
            let params = SoftmaxParams::new(scale);
            for _ in 0..200 {
                let logits: Vec<i8> = (0..10).map(|_| rng.below(256) as u8 as i8).collect();
                let mut out = [0i8; 10];
                softmax_i8(&params, &logits, &mut out);
                for (q, p) in out.iter().zip(oracle(scale, &logits)) {
                    let got = f64::from(dequantize(*q));
                    assert!(
                        (got - p).abs() <= 1.0 / 256.0 + 1e-9,
                        "{logits:?} {scale}: {got} vs {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn equal_logits_share_the_probability() {
        let params = SoftmaxParams::new(0.1);
        let mut out = [0i8; 4];
        softmax_i8(&params, &[5, 5, 5, 5], &mut out);
        assert_eq!(out, [-64; 4]); // 0.25
    }
}
